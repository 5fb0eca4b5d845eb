"""epoll: an interest list over Sentry files, answered with the same readiness
checks poll(2) uses.

Level-triggered semantics are exact.  EPOLLET follows Linux's ready list: a
registration watches its file's wait queues (WaitQueue.watch) and becomes
pending on every wake whose poll mask concerns it (each write to a pipe is a
new edge, even with earlier data unread); epoll_wait reports a pending
registration once, with the file's full ready mask, and only again after the
next wake.  A file without wait queues (a host fd) falls back to reporting
when its readiness changed.  EPOLLONESHOT disarms after one report;
EPOLLEXCLUSIVE is accepted.
"""
from __future__ import annotations

import errno
import struct

from sentry.errors import SyscallError
from sentry.vfs.file import File
from sentry.vfs.inode import Stat
from sentry.waitq import WaitQueue

EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP = 0x1, 0x4, 0x8, 0x10, 0x2000
EPOLLEXCLUSIVE, EPOLLWAKEUP, EPOLLONESHOT, EPOLLET = 1 << 28, 1 << 29, 1 << 30, 1 << 31
EPOLL_EVENT = struct.Struct("<IQ")        # packed on x86-64: 12 bytes


class Registration:
    __slots__ = ("file", "events", "data", "last", "armed", "pending", "queues", "ep")

    def __init__(self, ep, file, events: int, data: int) -> None:
        self.ep = ep
        self.file = file
        self.events = events
        self.data = data
        self.last = 0
        self.armed = True
        self.pending = True               # EPOLLET: checked at the next epoll_wait (ep_insert polls once)
        self.queues: list = []

    def woken(self, key: int) -> None:
        """A wake on one of the file's queues (key: its poll mask, 0 = unknown): a new edge."""
        if not key or key & (self.events | EPOLLERR | EPOLLHUP):
            self.pending = True
            self.ep.waitq.wake_all(EPOLLIN)

    def watch(self) -> None:
        if self.events & EPOLLET:
            fn = getattr(self.file, "wait_queues", None)
            self.queues = fn() if fn is not None else []
            for q in self.queues:
                q.watch(self.woken)

    def unwatch(self) -> None:
        for q in self.queues:
            q.unwatch(self.woken)
        self.queues = []


class EpollFile(File):
    def __init__(self, flags: int) -> None:
        super().__init__(2 | flags)
        self.interest: dict[int, Registration] = {}
        self.waitq = WaitQueue()

    def stat(self) -> Stat:
        return Stat(2, 0xD, 0o600, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0)

    def ready(self, max_events: int, consume: bool = True) -> list[tuple[int, int]]:
        """Up to `max_events` (events, data) to report; `consume`: as epoll_wait (edges are
        taken, one-shots disarmed), else only a look (poll of the epoll fd itself)."""
        from sentry.syscalls.poll import file_readiness
        out = []
        for fd, reg in list(self.interest.items()):
            if not reg.armed:
                continue
            et = reg.events & EPOLLET
            if et and reg.queues and not reg.pending:
                continue
            mask = reg.events & 0xFFFF
            rev = file_readiness(reg.file, mask | EPOLLERR | EPOLLHUP) & (mask | EPOLLERR | EPOLLHUP)
            if et:
                if reg.queues:
                    if consume:
                        reg.pending = False       # reported (or not ready): until the next wake
                else:
                    fresh = rev & ~reg.last       # no queues to watch: a change of readiness
                    if consume:
                        reg.last = rev
                    rev = rev if fresh else 0
            if rev:
                out.append((rev, reg.data))
                if consume and reg.events & EPOLLONESHOT:
                    reg.armed = False
                if len(out) >= max_events:
                    break
        return out

    def readiness(self, events: int) -> int:
        return EPOLLIN & events if self.ready(1, consume=False) else 0

    def release(self) -> None:
        for reg in self.interest.values():
            reg.unwatch()
        self.interest.clear()

    def wait_queues(self) -> list:
        qs = [self.waitq]
        for reg in self.interest.values():
            fn = getattr(reg.file, "wait_queues", None)
            if fn is not None:
                qs += fn()
        return qs

    def host_fds(self) -> list[tuple[int, int]]:
        from sentry.vfs.file import HostFDFile
        out = []
        for r in self.interest.values():
            hf = getattr(r.file, "host_fds", None)
            if hf is not None:
                out += [(fd, (r.events & 0xFFFF) | EPOLLERR | EPOLLHUP) for fd, _ in hf()]
            elif isinstance(r.file, HostFDFile) and not r.file.seekable:
                out.append((r.file.host_fd, (r.events & 0xFFFF) | EPOLLERR | EPOLLHUP))
        return out

    def ctl(self, op: int, fd: int, target, events: int, data: int) -> None:
        if target is self:
            raise SyscallError(errno.EINVAL)
        if op == 1:                     # EPOLL_CTL_ADD
            if fd in self.interest:
                raise SyscallError(errno.EEXIST)
            reg = self.interest[fd] = Registration(self, target, events, data)
            reg.watch()
        elif op == 2:                   # EPOLL_CTL_DEL
            reg = self.interest.pop(fd, None)
            if reg is None:
                raise SyscallError(errno.ENOENT)
            reg.unwatch()
        elif op == 3:                   # EPOLL_CTL_MOD
            reg = self.interest.get(fd)
            if reg is None:
                raise SyscallError(errno.ENOENT)
            if reg.events & EPOLLEXCLUSIVE:
                raise SyscallError(errno.EINVAL)
            reg.unwatch()
            reg.events, reg.data, reg.last, reg.armed, reg.pending = events, data, 0, True, True
            reg.watch()
        else:
            raise SyscallError(errno.EINVAL)
        self.waitq.wake_all()
