"""Time syscalls.  The application never reaches the host's vDSO, so every
clock read arrives here; the host's clocks answer (CPU clocks are the platform's:
`Context.cpu_time_ns`, `AddressSpace.cpu_time_ns`)."""
from __future__ import annotations

import errno
import struct
import time as _time

from sentry.errors import SyscallError
from sentry.syscalls.args import (TIMESPEC, TIMEVAL, deadline_after, deadline_s, left_ns, read_timespec,  # noqa: F401
                                  s32, u32, write_timespec)
from sentry.syscalls.registry import syscall
from sentry.task import Sleep
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME = 4, 5, 6, 7
CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM, CLOCK_TAI = 8, 9, 11
_HOST_CLOCKS = {0, 1, 4, 5, 6, 7, 8, 9, 11}
TIMER_ABSTIME = 1


def clock_ns(t, clock: int) -> int:
    if clock in _HOST_CLOCKS:
        host = {8: 0, 9: 7}.get(clock, clock)
        return _time.clock_gettime_ns(host)
    if clock == CLOCK_PROCESS_CPUTIME_ID:
        return process_cpu_ns(t)
    if clock == CLOCK_THREAD_CPUTIME_ID:
        # The platform's thread clock (ptrace: the stub's process clock stands in, as Linux
        # lets no other process read a thread's clock: exact for one thread, else an upper bound).
        return t.ctx.cpu_time_ns()
    raise SyscallError(errno.EINVAL)


def process_cpu_ns(t) -> int:
    """CPU ns of t's process: its address space's clock plus what ended before (an exec'd-away
    address space, tg.utime)."""
    return t.tg.utime + t.tg.mm.space.cpu_time_ns()


def _vdso_due(t) -> None:
    """A clock syscall: the vDSO is not answering (yet) -- publish its page if it is due."""
    v = t.kernel.vdso
    if v is not None:
        v.refresh()


@syscall("clock_gettime")
def clock_gettime(t, clock, tp):
    """clock_gettime(2)."""
    _vdso_due(t)
    write_timespec(t, tp, clock_ns(t, s32(clock)))
    return 0


@syscall("clock_getres")
def clock_getres(t, clock, res):
    """clock_getres(2)."""
    clock = s32(clock)
    if clock not in _HOST_CLOCKS and clock not in (2, 3):
        raise SyscallError(errno.EINVAL)
    if res:
        ns = 4_000_000 if clock in (CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE) else 1
        write_timespec(t, res, ns)
    return 0


@syscall("gettimeofday")
def gettimeofday(t, tv, tz):
    """gettimeofday(2)."""
    _vdso_due(t)
    if tv:
        ns = _time.time_ns()
        t.mm.write_struct(tv, TIMEVAL, ns // 1_000_000_000, (ns // 1000) % 1_000_000)
    if tz:
        t.mm.write(tz, bytes(8))
    return 0


@syscall("time")
def time_(t, tloc):
    """time(2)."""
    now = _time.time_ns() // 1_000_000_000
    if tloc:
        t.mm.write_u64(tloc, now)
    return now


def _sleep_until(t, deadline_ns_mono: int) -> int:
    """Park until CLOCK_MONOTONIC reaches the deadline (kept across the block/restart)."""
    if _time.monotonic_ns() >= deadline_ns_mono:
        return 0
    t.block(deadline=deadline_s(deadline_ns_mono))


@syscall("nanosleep")
def nanosleep(t, req, rem):
    """nanosleep(2): an invalid timespec is EINVAL; a huge one is clamped to KTIME_MAX and sleeps."""
    c = t.resume(Sleep)             # EINTR writes `rem`; a restart after a stop sleeps what is left
    if c is None:
        c = t.begin(Sleep(deadline_after(read_timespec(t, req)), rem))
    return _sleep_until(t, c.deadline_ns)


@syscall("clock_nanosleep")
def clock_nanosleep(t, clock, flags, req, rem):
    """clock_nanosleep(2)."""
    clock, flags = s32(clock), u32(flags)
    c = t.resume(Sleep)
    if c is None:
        if clock == CLOCK_THREAD_CPUTIME_ID:
            raise SyscallError(errno.EOPNOTSUPP)
        if clock not in (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_TAI, CLOCK_PROCESS_CPUTIME_ID,
                         CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM):
            raise SyscallError(errno.EINVAL)
        ns = read_timespec(t, req)
        if flags & TIMER_ABSTIME:
            ns -= clock_ns(t, clock)
        # TIMER_ABSTIME leaves `rem` alone on EINTR.
        c = t.begin(Sleep(deadline_after(max(ns, 0)), 0 if flags & TIMER_ABSTIME else rem))
    return _sleep_until(t, c.deadline_ns)
