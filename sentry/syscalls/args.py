"""Decoding the integers an application passes: raw registers and the time structures it points at.

Registers arrive as unsigned 64-bit integers; `s32`/`u32`/`s64` give them the C type the
syscall declares.  Time structures (timespec, timeval, itimerspec, itimerval) are read and
checked here, once, with Linux's rules, so that no handler converts an unchecked application
value into a float, a C integer, a `struct.pack` field or a host timeout (where a Python
exception would follow):

* `timespec64_valid`: tv_sec >= 0 and 0 <= tv_nsec < 1e9, else EINVAL (nanosleep,
  clock_nanosleep, futex, ppoll, pselect6, rt_sigtimedwait, timer_settime, epoll_pwait2...);
  `timeval_valid` for the microsecond forms (setitimer, utimes);
* a valid time too large for the kernel's clock type is clamped to KTIME_MAX (2^63-1 ns,
  timespec64_to_ktime), and deadlines are added with saturation (ktime_add_safe), so
  `nanosleep({2^63-1, 0})` simply sleeps, as on Linux;
* read and write counts are clamped to MAX_RW_COUNT (rw_verify_area).
Deadlines are CLOCK_MONOTONIC nanoseconds (ints); `deadline_s` turns one into the float
seconds the task loop's timer heap uses.
"""
from __future__ import annotations

import errno
import struct
import time as _time

from sentry.errors import SyscallError

NSEC_PER_SEC = 1_000_000_000
USEC_PER_SEC = 1_000_000
KTIME_MAX = (1 << 63) - 1            # include/linux/ktime.h: the largest time the kernel keeps (ns)
KTIME_SEC_MAX = KTIME_MAX // NSEC_PER_SEC
MAX_RW_COUNT = 0x7FFFF000            # INT_MAX & PAGE_MASK: what one read/write moves at most
TIMESPEC = struct.Struct("<qq")      # struct __kernel_timespec: tv_sec, tv_nsec (both 64-bit)
TIMEVAL = struct.Struct("<qq")       # struct __kernel_old_timeval: tv_sec, tv_usec
TIMESPEC_PAIR = struct.Struct("<qqqq")   # itimerspec / itimerval: interval, then value


def s32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def u32(x: int) -> int:
    return x & 0xFFFFFFFF


def s64(x: int) -> int:
    x &= 0xFFFFFFFFFFFFFFFF
    return x - (1 << 64) if x & (1 << 63) else x


def u64(x: int) -> int:
    return x & 0xFFFFFFFFFFFFFFFF


def rw_count(count: int) -> int:
    """A read/write byte count as rw_verify_area leaves it: at most MAX_RW_COUNT."""
    return count if count <= MAX_RW_COUNT else MAX_RW_COUNT


# -- time ----------------------------------------------------------------------------------

def ts_ns(sec: int, nsec: int) -> int:
    """A valid timespec as ktime nanoseconds: EINVAL if invalid, clamped to KTIME_MAX."""
    if sec < 0 or not 0 <= nsec < NSEC_PER_SEC:
        raise SyscallError(errno.EINVAL)
    if sec >= KTIME_SEC_MAX:
        return KTIME_MAX
    return min(sec * NSEC_PER_SEC + nsec, KTIME_MAX)


def tv_ns(sec: int, usec: int) -> int:
    """A valid timeval (timeval_valid) as ktime nanoseconds, clamped to KTIME_MAX."""
    if sec < 0 or not 0 <= usec < USEC_PER_SEC:
        raise SyscallError(errno.EINVAL)
    return ts_ns(sec, usec * 1000)


def timestamp_ns(sec: int, nsec: int) -> int:
    """A file timestamp (any tv_sec, a checked tv_nsec) as the signed 64-bit nanoseconds the
    VFS and the Gofer carry: clamped to that range, as Linux's timestamp_truncate clamps a time
    to what the filesystem holds (here: 1677..2262)."""
    return max(-KTIME_MAX - 1, min(KTIME_MAX, sec * NSEC_PER_SEC + nsec))


def read_timespec(t, addr: int) -> int:
    """struct timespec at `addr` -> nanoseconds (EFAULT, EINVAL as Linux; clamped to KTIME_MAX)."""
    return ts_ns(*t.mm.read_struct(addr, TIMESPEC))


def read_timeval(t, addr: int) -> int:
    """struct timeval at `addr` -> nanoseconds (EFAULT, EINVAL as Linux; clamped to KTIME_MAX)."""
    return tv_ns(*t.mm.read_struct(addr, TIMEVAL))


def read_select_timeval(t, addr: int) -> int:
    """select(2)'s struct timeval -> ns.  Linux normalises it first (tv_usec may exceed a second:
    tv_sec + tv_usec / 1e6 with C's truncating division, the 64-bit sum wrapping), then checks the
    result as a timespec: {-2, 2000000} is a zero timeout, a negative remainder EINVAL."""
    sec, usec = t.mm.read_struct(addr, TIMEVAL)
    q = abs(usec) // USEC_PER_SEC * (1 if usec >= 0 else -1)
    return ts_ns(s64(sec + q), (usec - q * USEC_PER_SEC) * 1000)


def read_itimerspec(t, addr: int) -> tuple[int, int]:
    """struct itimerspec -> (interval ns, value ns), each checked as a timespec."""
    isec, insec, vsec, vnsec = t.mm.read_struct(addr, TIMESPEC_PAIR)
    return ts_ns(isec, insec), ts_ns(vsec, vnsec)


def read_itimerval(t, addr: int) -> tuple[int, int]:
    """struct itimerval -> (interval ns, value ns), each checked as a timeval."""
    isec, iusec, vsec, vusec = t.mm.read_struct(addr, TIMESPEC_PAIR)
    return tv_ns(isec, iusec), tv_ns(vsec, vusec)


def split_ns(ns: int) -> tuple[int, int]:
    """Nanoseconds (>= 0) -> (tv_sec, tv_nsec)."""
    return ns // NSEC_PER_SEC, ns % NSEC_PER_SEC


def split_us(ns: int) -> tuple[int, int]:
    """Nanoseconds (>= 0) -> (tv_sec, tv_usec), rounded up to a microsecond as Linux reports
    a remaining time (never 0 for a timer that has not fired)."""
    us = -(-ns // 1000)
    return us // USEC_PER_SEC, us % USEC_PER_SEC


def write_timespec(t, addr: int, ns: int) -> None:
    t.mm.write_struct(addr, TIMESPEC, *split_ns(max(ns, 0)))


def write_timeval(t, addr: int, ns: int) -> None:
    sec, nsec = split_ns(max(ns, 0))
    t.mm.write_struct(addr, TIMEVAL, sec, nsec // 1000)


def add_safe(a: int, b: int) -> int:
    """ktime_add_safe: a + b, saturating at KTIME_MAX."""
    s = a + b
    return KTIME_MAX if s > KTIME_MAX or s < 0 else s


def deadline_after(ns: int) -> int:
    """The CLOCK_MONOTONIC time (ns) `ns` from now, saturating at KTIME_MAX."""
    return add_safe(_time.monotonic_ns(), ns)


def deadline_s(deadline_ns: int) -> float:
    """A monotonic deadline in ns as the float seconds the task loop's timer heap holds."""
    return deadline_ns / 1e9


def left_ns(deadline_ns: int) -> int:
    """Nanoseconds until a monotonic deadline (0 once it passed)."""
    return max(0, deadline_ns - _time.monotonic_ns())
