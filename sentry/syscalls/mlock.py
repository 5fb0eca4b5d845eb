"""mlock, munlock, mlock2, mlockall, munlockall: locked ranges with RLIMIT_MEMLOCK accounting.

Every page of the sandbox lives in the MemoryFile, which is never swapped out
by the Sentry, so "locked in RAM" holds for any mapped page; what an
application can observe, and what these keep exactly as mm/mlock.c does, is the
accounting: which ranges are locked (counted against RLIMIT_MEMLOCK unless the
caller has CAP_IPC_LOCK -- here euid 0, as capget says), EPERM when the limit
is 0 and the caller is unprivileged, ENOMEM past the limit or over a hole in
the address space, EINVAL for bad flags.

The locked ranges are kept on the address space (`mm.mlocked`, a list of
[start, end) page ranges) and counted against what is mapped now, so a munmap
releases its share without the memory manager knowing about locks.
MCL_FUTURE is recorded; mappings made after it are not charged to the limit.
Locks are not inherited by fork and end at exec (both give a new address space).
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError
from sentry.syscalls.registry import Support, syscall

PAGE = 4096
RLIMIT_MEMLOCK = 8
MLOCK_ONFAULT = 1
MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4


def _ranges(mm) -> list[tuple[int, int]]:
    return getattr(mm, "mlocked", [])


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _subtract(ranges, start: int, end: int) -> list[tuple[int, int]]:
    out = []
    for s, e in ranges:
        if e <= start or s >= end:
            out.append((s, e))
            continue
        if s < start:
            out.append((s, start))
        if e > end:
            out.append((end, e))
    return out


def _mapped_bytes(mm, start: int, end: int) -> int:
    """How much of [start, end) is mapped now."""
    return sum(max(0, min(end, v.end) - max(start, v.start)) for v in mm.vmas if v.end > start and v.start < end)


def locked_bytes(mm) -> int:
    """The address space's locked and still mapped bytes (Linux's mm->locked_vm, in bytes)."""
    return sum(_mapped_bytes(mm, s, e) for s, e in _ranges(mm))


def _page_range(addr: int, length: int) -> tuple[int, int]:
    start = addr & ~(PAGE - 1)
    end = (addr + length + PAGE - 1) & ~(PAGE - 1)
    if end < start or end > 1 << 64:
        raise SyscallError(errno.ENOMEM)
    return start, end


def _capable(t) -> bool:
    return t.tg.creds.euid == 0


def _can_do_mlock(t) -> None:
    if t.tg.rlimits[RLIMIT_MEMLOCK][0] == 0 and not _capable(t):
        raise SyscallError(errno.EPERM)


def _lock(t, addr: int, length: int) -> int:
    _can_do_mlock(t)
    start, end = _page_range(addr, length)
    if start == end:
        return 0
    mm = t.mm
    ranges = _ranges(mm)
    already = sum(_mapped_bytes(mm, max(s, start), min(e, end)) for s, e in ranges if e > start and s < end)
    limit = t.tg.rlimits[RLIMIT_MEMLOCK][0]
    if not _capable(t) and locked_bytes(mm) + (end - start) - already > limit:
        raise SyscallError(errno.ENOMEM)
    if _mapped_bytes(mm, start, end) != end - start:
        raise SyscallError(errno.ENOMEM)
    mm.mlocked = _merge(ranges + [(start, end)])
    return 0


@syscall("mlock", Support.PARTIAL, "locked ranges kept and charged to RLIMIT_MEMLOCK as Linux; every page is "
         "resident anyway (the MemoryFile is not swapped by the Sentry)")
def mlock(t, addr, length):
    """mlock(2)."""
    return _lock(t, addr, length)


@syscall("mlock2", Support.PARTIAL, "as mlock; MLOCK_ONFAULT accepted (pages are resident anyway)")
def mlock2(t, addr, length, flags):
    """mlock2(2)."""
    if flags & ~MLOCK_ONFAULT:
        raise SyscallError(errno.EINVAL)
    return _lock(t, addr, length)


@syscall("munlock")
def munlock(t, addr, length):
    """munlock(2): ENOMEM over a hole, as mlock."""
    start, end = _page_range(addr, length)
    if start == end:
        return 0
    mm = t.mm
    if _mapped_bytes(mm, start, end) != end - start:
        raise SyscallError(errno.ENOMEM)
    mm.mlocked = _subtract(_ranges(mm), start, end)
    return 0


@syscall("mlockall", Support.PARTIAL, "MCL_CURRENT locks and charges what is mapped; MCL_FUTURE is recorded but "
         "later mappings are not charged to RLIMIT_MEMLOCK")
def mlockall(t, flags):
    """mlockall(2)."""
    if not flags or flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) or flags == MCL_ONFAULT:
        raise SyscallError(errno.EINVAL)
    _can_do_mlock(t)
    mm = t.mm
    if flags & MCL_CURRENT:
        total = sum(v.end - v.start for v in mm.vmas)
        if not _capable(t) and total > t.tg.rlimits[RLIMIT_MEMLOCK][0]:
            raise SyscallError(errno.ENOMEM)
        mm.mlocked = _merge([(v.start, v.end) for v in mm.vmas])
    mm.mlock_future = bool(flags & MCL_FUTURE)
    return 0


@syscall("munlockall")
def munlockall(t):
    """munlockall(2)."""
    t.mm.mlocked = []
    t.mm.mlock_future = False
    return 0
