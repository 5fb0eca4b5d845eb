"""epoll: an interest list over Sentry files, answered with the same readiness
checks poll(2) uses.

Level-triggered semantics are exact.  EPOLLET is approximated: an event is
reported again only after the file's readiness changed since the last report
(tracked per registration), which is what edge-triggered users rely on.
EPOLLONESHOT disarms after one report; EPOLLEXCLUSIVE is accepted.
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
    __slots__ = ("file", "events", "data", "last", "armed")

    def __init__(self, file, events: int, data: int) -> None:
        self.file = file
        self.events = events
        self.data = data
        self.last = 0
        self.armed = True


class EpollFile(File):
    def __init__(self, flags: int) -> None:
        super().__init__(2 | flags)
        self.interest: dict[int, Registration] = {}
        self.waitq = WaitQueue()

    def stat(self) -> Stat:
        return Stat(2, 0xD, 0o600, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0)

    def ready(self, max_events: int) -> list[tuple[int, int]]:
        from sentry.syscalls.poll import file_readiness
        out = []
        for fd, reg in list(self.interest.items()):
            if not reg.armed:
                continue
            mask = reg.events & 0xFFFF
            rev = file_readiness(reg.file, mask | EPOLLERR | EPOLLHUP) & (mask | EPOLLERR | EPOLLHUP)
            if reg.events & EPOLLET:
                fresh = rev & ~reg.last
                reg.last = rev
                rev = fresh
            if rev:
                out.append((rev, reg.data))
                if reg.events & EPOLLONESHOT:
                    reg.armed = False
                if len(out) >= max_events:
                    break
        return out

    def readiness(self, events: int) -> int:
        return EPOLLIN & events if self.ready(1) else 0

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
            self.interest[fd] = Registration(target, events, data)
        elif op == 2:                   # EPOLL_CTL_DEL
            if self.interest.pop(fd, None) is None:
                raise SyscallError(errno.ENOENT)
        elif op == 3:                   # EPOLL_CTL_MOD
            reg = self.interest.get(fd)
            if reg is None:
                raise SyscallError(errno.ENOENT)
            if reg.events & EPOLLEXCLUSIVE:
                raise SyscallError(errno.EINVAL)
            reg.events, reg.data, reg.last, reg.armed = events, data, 0, True
        else:
            raise SyscallError(errno.EINVAL)
        self.waitq.wake_all()
