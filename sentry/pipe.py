"""Pipes and eventfds inside the Sentry (pipefs): no host pipe is involved.

A Pipe is a byte buffer bounded, as in Linux, by page slots (capacity //
4096; a write's sub-page tail may merge into the last slot, every further
page takes a slot), with one wait queue, woken on every state
change (data in, data out, an end closed); readers, writers and pollers all
park on it and re-check.  Linux semantics kept: writes of at most PIPE_BUF
bytes are atomic; a blocking write of more completes fully (it may be
interleaved); reading with no writers left is EOF; writing with no readers
raises SIGPIPE and fails with EPIPE; F_SETPIPE_SZ rounds up to a power of two
pages and refuses to shrink below the buffered amount (EBUSY).
"""
from __future__ import annotations

import errno
import select
import struct
from collections import deque
from itertools import repeat

from sentry.errors import SyscallError
from sentry.task import Transfer
from sentry.vfs.file import O_NONBLOCK, O_RDONLY, O_WRONLY, File, append_from, gather, scatter as _scatter
from sentry.vfs.inode import Stat
from sentry.waitq import WaitQueue

PIPE_BUF = 4096
DEFAULT_PIPE_SIZE = 65536
MAX_PIPE_SIZE = 1048576
POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
POLLRDNORM, POLLWRNORM = 0x40, 0x100
FIONREAD = 0x541B

_next_ino = [1000]
_FULL_SLOT = (0, PIPE_BUF)


class Pipe:
    def __init__(self, named: bool = False) -> None:
        self.buf = bytearray()
        self.capacity = DEFAULT_PIPE_SIZE
        # Linux counts a pipe in page slots (capacity // 4096), not bytes:
        # (offset, length) of each slot's data, in order; sum of lengths == len(buf).
        # Tuples in a deque: a 64 KiB write or read is a C-level extend or clear.
        self.slots: deque[tuple[int, int]] = deque()
        self.readers = 0
        self.writers = 0
        self.waitq = WaitQueue()
        _next_ino[0] += 1
        self.ino = _next_ino[0]
        self.born_ns = 0


class PipeFile(File):
    def __init__(self, pipe: Pipe, flags: int) -> None:
        super().__init__(flags)
        self.pipe = pipe
        if self.readable:
            pipe.readers += 1
        if self.writable:
            pipe.writers += 1

    def stat(self) -> Stat:
        return Stat(self.pipe.ino, 0xC, 0o010600, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0)

    def read(self, t, dsts) -> int:
        p = self.pipe
        if not p.buf:
            if p.writers == 0:
                return 0
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN)
            t.block([p.waitq])
        n = _scatter(dsts, p.buf)
        slots = p.slots
        if n == len(p.buf):
            slots.clear()               # drained (the usual case): every slot is free
        else:
            left = n
            while left:
                off, length = slots[0]
                if length > left:
                    slots[0] = (off + left, length - left)
                    break
                slots.popleft()
                left -= length
        del p.buf[:n]
        p.waitq.wake_all(POLLOUT)
        return n

    def write(self, t, srcs) -> int:
        p = self.pipe
        total = len(srcs[0]) if len(srcs) == 1 else sum(len(s) for s in srcs)
        if total == 0:
            return 0
        xfer = t.resume(Transfer)
        done = xfer.done if xfer is not None else 0
        if p.readers == 0:
            from sentry import process
            from sentry import signals as sg
            process.send_to_task(t.kernel, t, sg.SIGPIPE, sg.siginfo(sg.SIGPIPE, sg.SI_USER, pid=t.tg.tgid))
            if done:
                return done
            raise SyscallError(errno.EPIPE)
        need = total - done
        # As Linux: first the write's sub-page tail merges into the last slot
        # if it fits there, then every further page needs a free slot.  So a
        # write of at most PIPE_BUF is all or nothing (atomic).
        merge = need & (PIPE_BUF - 1) if not done else 0
        last = p.slots[-1] if p.slots else None
        can_merge = bool(merge) and last is not None and last[0] + last[1] + merge <= PIPE_BUF
        free = p.capacity // PIPE_BUF - len(p.slots)
        if not can_merge and free <= 0:
            if self.flags & O_NONBLOCK:
                if done:
                    return done
                raise SyscallError(errno.EAGAIN)
            t.block([p.waitq])
        if can_merge:
            assert last is not None
            append_from(p.buf, srcs, done, merge)
            p.slots[-1] = (last[0], last[1] + merge)
            done += merge
        free = p.capacity // PIPE_BUF - len(p.slots)
        take = min(total - done, free * PIPE_BUF)
        if take > 0:
            append_from(p.buf, srcs, done, take)
            p.slots.extend(repeat(_FULL_SLOT, take // PIPE_BUF))
            if take % PIPE_BUF:
                p.slots.append((0, take % PIPE_BUF))
            done += take
        p.waitq.wake_all(POLLIN)
        if done < total and not self.flags & O_NONBLOCK:
            # The rest waits for room; a signal now returns what was written (Transfer).
            if xfer is None:
                xfer = t.begin(Transfer())
            xfer.done = done
            t.block([p.waitq])
        return done

    def readiness(self, events: int) -> int:
        p = self.pipe
        r = 0
        if self.readable:
            if p.buf:
                r |= POLLIN | POLLRDNORM
            if p.writers == 0:
                r |= POLLHUP
        if self.writable:
            if len(p.slots) < p.capacity // PIPE_BUF:
                r |= POLLOUT | POLLWRNORM
            if p.readers == 0:
                r |= POLLERR
        return r & (events | POLLERR | POLLHUP)

    def wait_queues(self) -> list:
        return [self.pipe.waitq]

    def ioctl(self, t, request: int, arg: int) -> int:
        if request == FIONREAD:
            t.mm.write_u32(arg, len(self.pipe.buf))
            return 0
        raise SyscallError(errno.ENOTTY)

    def set_size(self, size: int) -> int:
        if size <= 0 or size > MAX_PIPE_SIZE:
            raise SyscallError(errno.EINVAL if size <= 0 else errno.EPERM)
        n = 4096
        while n < size:
            n <<= 1
        if n // PIPE_BUF < len(self.pipe.slots):
            raise SyscallError(errno.EBUSY)
        self.pipe.capacity = n
        self.pipe.waitq.wake_all()
        return n

    def release(self) -> None:
        p = self.pipe
        if self.readable:
            p.readers -= 1
        if self.writable:
            p.writers -= 1
        p.waitq.wake_all()


def make_pipe(flags: int) -> tuple[PipeFile, PipeFile]:
    p = Pipe()
    extra = flags & O_NONBLOCK
    return PipeFile(p, O_RDONLY | extra), PipeFile(p, O_WRONLY | extra)


EFD_SEMAPHORE = 1


class EventFile(File):
    """eventfd(2): a 64-bit counter."""
    min_read = 8            # a read of fewer bytes, even 0, is EINVAL (eventfd_read)

    def __init__(self, initval: int, flags: int) -> None:
        super().__init__(2 | (flags & O_NONBLOCK))
        self.count = initval
        self.semaphore = bool(flags & EFD_SEMAPHORE)
        self.waitq = WaitQueue()

    def stat(self) -> Stat:
        return Stat(1, 0xD, 0o600, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0)

    def read(self, t, dsts) -> int:
        if sum(len(d) for d in dsts) < 8:
            raise SyscallError(errno.EINVAL)
        if self.count == 0:
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN)
            t.block([self.waitq])
        v = 1 if self.semaphore else self.count
        self.count -= v
        _scatter(dsts, struct.pack("<Q", v))
        self.waitq.wake_all(POLLOUT)
        return 8

    def write(self, t, srcs) -> int:
        data = gather(srcs)
        if len(data) < 8:
            raise SyscallError(errno.EINVAL)
        v = struct.unpack_from("<Q", data)[0]
        if v == 0xFFFFFFFFFFFFFFFF:
            raise SyscallError(errno.EINVAL)
        if self.count + v > 0xFFFFFFFFFFFFFFFE:
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN)
            t.block([self.waitq])
        self.count += v
        self.waitq.wake_all(POLLIN)
        return 8

    def readiness(self, events: int) -> int:
        r = 0
        if self.count > 0:
            r |= POLLIN | POLLRDNORM
        if self.count < 0xFFFFFFFFFFFFFFFE:
            r |= POLLOUT | POLLWRNORM
        return r & (events | POLLERR | POLLHUP)

    def wait_queues(self) -> list:
        return [self.waitq]


def host_readiness(host_fd: int, events: int) -> int:
    p = select.poll()
    p.register(host_fd, events)
    r = p.poll(0)
    return r[0][1] if r else 0
