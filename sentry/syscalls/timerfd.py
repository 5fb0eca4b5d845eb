"""timerfd_create, timerfd_settime, timerfd_gettime: timers read as file descriptors (fs/timerfd.c).

A `TimerFd` keeps its expiry in CLOCK_MONOTONIC nanoseconds and sits in the
kernel's deadline heap (the one sleeping tasks and interval timers use) only
while it is armed and not yet expired.  At expiry it wakes its readers and
pollers and leaves the heap; the expirations of an interval timer are counted
when they are read or polled (1 + the whole intervals since), so no interval,
however short, keeps the Sentry busy -- the same rule Linux's hrtimer_forward
gives read(2).  An absolute time on CLOCK_REALTIME is turned into a monotonic
deadline when set (a later change of the realtime clock is not followed; the
Sentry never changes it, so TFD_TIMER_CANCEL_ON_SET is accepted and never
fires).  The alarm clocks need CAP_WAKE_ALARM (EPERM otherwise) and behave as
their plain clocks.
"""
from __future__ import annotations

import errno
import heapq
import struct
import time as _time

from sentry.errors import SyscallError
from sentry.pipe import POLLIN, POLLRDNORM
from sentry.syscalls.args import TIMESPEC_PAIR, add_safe, read_itimerspec, s32
from sentry.syscalls.registry import syscall
from sentry.syscalls.time import clock_ns
from sentry.vfs.file import O_CLOEXEC, O_NONBLOCK, O_RDWR, File, scatter
from sentry.vfs.inode import Stat
from sentry.waitq import WaitQueue

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM = 0, 1, 7, 8, 9
CLOCKS = (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM)
TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET = 1, 2
TFD_CLOEXEC, TFD_NONBLOCK = O_CLOEXEC, O_NONBLOCK
TFD_IOC_SET_TICKS = 0x40085400


class TimerFd(File):
    """One timer (anon_inode:[timerfd])."""
    min_read = 8            # a read of fewer bytes, even 0, is EINVAL (timerfd_read)

    def __init__(self, k, clock: int, flags: int) -> None:
        super().__init__(O_RDWR | (flags & O_NONBLOCK))
        self.k = k
        self.clock = clock
        self.expires: int | None = None      # monotonic ns of the next expiry; None: disarmed
        self.interval = 0
        self.ticks = 0                       # expirations counted and not yet read
        self.entry = None
        self.waitq = WaitQueue()

    def stat(self) -> Stat:
        return Stat(1, 0xE, 0o600, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0)

    # -- the heap ---------------------------------------------------------------------------------

    def _cancel(self) -> None:
        if self.entry is not None:
            self.entry[2] = None
            self.entry = None

    def _schedule(self) -> None:
        self._cancel()
        if self.expires is not None:
            self.entry = [self.expires / 1e9, next(self.k._seq), self]
            heapq.heappush(self.k.timers, self.entry)

    def fire(self) -> None:
        """The heap reached `expires`: wake readers; the count is made by `_collect`."""
        self.entry = None
        self.waitq.wake_all()

    def _collect(self) -> None:
        """Count the expirations up to now and move an interval timer's next expiry past it."""
        if self.expires is None:
            return
        now = _time.monotonic_ns()
        if now < self.expires:
            return
        if self.interval:
            n = (now - self.expires) // self.interval + 1
            self.ticks += n
            self.expires = add_safe(self.expires, n * self.interval)
        else:
            self.ticks += 1
            self.expires = None
        self._schedule()

    # -- the syscalls' work ------------------------------------------------------------------------

    def arm(self, t, flags: int, value: int, interval: int) -> None:
        self.ticks = 0
        self.interval = interval
        if value == 0:
            self.expires = None
        elif flags & TFD_TIMER_ABSTIME:
            self.expires = add_safe(_time.monotonic_ns(), max(0, value - clock_ns(t, self.clock)))
        else:
            self.expires = add_safe(_time.monotonic_ns(), value)
        self._schedule()
        self.waitq.wake_all()

    def remaining(self) -> tuple[int, int]:
        """(interval, time to the next expiry) as timerfd_gettime reports them."""
        self._collect()
        if self.expires is None:
            return self.interval, 0
        return self.interval, max(1, self.expires - _time.monotonic_ns())

    def read(self, t, dsts) -> int:
        if sum(len(d) for d in dsts) < 8:
            raise SyscallError(errno.EINVAL)
        self._collect()
        if not self.ticks:
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN)
            t.block([self.waitq])
        n, self.ticks = self.ticks, 0
        scatter(dsts, struct.pack("<Q", n))
        return 8

    def write(self, t, srcs) -> int:
        raise SyscallError(errno.EINVAL)

    def readiness(self, events: int) -> int:
        self._collect()
        return (POLLIN | POLLRDNORM) & events if self.ticks else 0

    def wait_queues(self) -> list:
        return [self.waitq]

    def release(self) -> None:
        self._cancel()


def _timerfd(t, fd: int) -> TimerFd:
    f = t.fds.get(s32(fd))
    if not isinstance(f, TimerFd):
        raise SyscallError(errno.EINVAL)
    return f


def _write_itimerspec(t, addr: int, interval: int, value: int) -> None:
    t.mm.write_struct(addr, TIMESPEC_PAIR, interval // 10**9, interval % 10**9, value // 10**9, value % 10**9)


@syscall("timerfd_create")
def timerfd_create(t, clockid, flags):
    """timerfd_create(2)."""
    clockid, flags = s32(clockid), s32(flags)
    if clockid not in CLOCKS or flags & ~(TFD_CLOEXEC | TFD_NONBLOCK):
        raise SyscallError(errno.EINVAL)
    if clockid in (CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM) and t.tg.creds.euid != 0:
        raise SyscallError(errno.EPERM)
    return t.fds.install(TimerFd(t.kernel, clockid, flags), bool(flags & TFD_CLOEXEC), limit=t.tg.rlimits[7][0])


@syscall("timerfd_settime")
def timerfd_settime(t, fd, flags, new, old):
    """timerfd_settime(2): the old setting is written to `old` when given."""
    flags = s32(flags)
    if flags & ~(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET):
        raise SyscallError(errno.EINVAL)
    interval, value = read_itimerspec(t, new)       # EFAULT, EINVAL for a bad timespec
    f = _timerfd(t, fd)
    if old:
        _write_itimerspec(t, old, *f.remaining())
    f.arm(t, flags, value, interval)
    return 0


@syscall("timerfd_gettime")
def timerfd_gettime(t, fd, cur):
    """timerfd_gettime(2)."""
    f = _timerfd(t, fd)
    _write_itimerspec(t, cur, *f.remaining())
    return 0
