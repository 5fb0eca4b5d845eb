"""Futexes: wait queues keyed by the MemoryFile offset of the futex word.

Every application page is a MemoryFile page, so the offset of a word names it
uniquely: private futexes of one process, and shared futexes across processes
mapping the same pages (MAP_SHARED, shared memory), fall out of one rule.
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError
from sentry.task import FutexWait
from sentry.waitq import WaitQueue

def key_of(mm, addr: int) -> int:
    if addr & 3:
        raise SyscallError(errno.EINVAL)
    v = mm.find(addr)
    if v is None or not v.prot:
        raise SyscallError(errno.EFAULT)
    if v.cow is not None:
        # Shared copy-on-write since a fork: a later write would move the word to a copy (a new
        # key), so the page is made this process's own now.
        mm.unshare(addr & ~4095, (addr & ~4095) + 4096)
        v = mm.find(addr)
    return v.offset + (addr - v.start)


def queue(k, key: int) -> WaitQueue:
    """The wait queue of the futex word at MemoryFile offset `key` (the kernel's table: `k.futex_queues`)."""
    q = k.futex_queues.get(key)
    if q is None:
        q = k.futex_queues[key] = WaitQueue()
    return q


def wake(k, mm, addr: int, n: int, bitset: int, shared: bool = False) -> int:
    """Wake up to `n` waiters on `addr` whose bitset intersects `bitset`; return how many.
    A count of 0 or less wakes one, as Linux's futex_wake (`++ret >= nr_wake`)."""
    key = key_of(mm, addr)
    n = max(n, 1)
    q = k.futex_queues.get(key)
    if q is None:
        return 0
    woken = 0
    for t in list(q.waiters):
        if woken >= n:
            break
        state = t.cont
        if not isinstance(state, FutexWait) or not state.bitset & bitset:
            continue
        state.woken = True
        state.key = key                  # which word woke it (futex_waitv returns its index)
        k.wake(t)
        woken += 1
    if not q.waiters:
        k.futex_queues.pop(key, None)
    return woken


class WaitvWait(FutexWait):
    """A futex_waitv wait: parked on every word's queue; `key` is set to the word that woke it.
    Linux's futex_wait_multiple returns -ERESTARTSYS: a restart checks the values again."""
    __slots__ = ("keys",)
    restart_keeps = False

    def __init__(self, keys: list[int], deadline: float | None) -> None:
        super().__init__(None, 0xFFFFFFFF, deadline)
        self.keys = keys

    def index(self) -> int:
        return self.keys.index(self.key) if self.key in self.keys else 0

    def interrupted(self) -> int | None:
        return self.index() if self.woken else None


def requeue(k, mm, addr: int, n_wake: int, n_requeue: int, addr2: int) -> int:
    key1, key2 = key_of(mm, addr), key_of(mm, addr2)
    q1 = k.futex_queues.get(key1)
    if q1 is None:
        return 0
    done = 0
    for t in list(q1.waiters):
        if done < n_wake:
            t.cont.woken = True
            k.wake(t)
        elif done < n_wake + n_requeue:
            q1.remove(t)
            q2 = queue(k, key2)
            q2.add(t)
            t.wait_queues = [q2 if q is q1 else q for q in t.wait_queues]
            if isinstance(t.cont, WaitvWait):          # its word at key1 now waits at key2
                t.cont.keys = [key2 if x == key1 else x for x in t.cont.keys]
            t.cont.key = key2
        else:
            break
        done += 1
    if not q1.waiters:
        k.futex_queues.pop(key1, None)
    return done


# -- robust futex lists (set_robust_list) -------------------------------------------

FUTEX_WAITERS = 0x80000000
FUTEX_OWNER_DIED = 0x40000000
FUTEX_TID_MASK = 0x3FFFFFFF
ROBUST_LIST_LIMIT = 2048


def _futex_death(k, t, uaddr: int) -> None:
    """A lock word still owned by the dying thread: mark FUTEX_OWNER_DIED, wake one waiter."""
    uval = t.mm.read_u32(uaddr)
    if uval & FUTEX_TID_MASK != t.tid:
        return
    t.mm.write_u32(uaddr, (uval & FUTEX_WAITERS) | FUTEX_OWNER_DIED)
    if uval & FUTEX_WAITERS:
        wake(k, t.mm, uaddr, 1, 0xFFFFFFFF)


def exit_robust_list(k, t) -> None:
    """Walk the thread's robust list at its exit, as Linux's exit_robust_list does.

    To be called once per exiting thread, before CLONE_CHILD_CLEARTID is
    handled, while its address space is still mapped.  A bad list is
    silently abandoned (Linux gives up the same way)."""
    head = t.robust_list
    if not head or t.mm is None:
        return
    try:
        entry = t.mm.read_u64(head)
        offset = t.mm.read_u64(head + 8)
        if offset >= 1 << 63:
            offset -= 1 << 64
        pending = t.mm.read_u64(head + 16) & ~1
        limit = ROBUST_LIST_LIMIT
        while entry & ~1 != head and limit > 0:
            e = entry & ~1
            nxt = t.mm.read_u64(e)
            if e != pending:
                _futex_death(k, t, (e + offset) & 0xFFFFFFFFFFFFFFFF)
            entry = nxt
            limit -= 1
        if pending:
            _futex_death(k, t, (pending + offset) & 0xFFFFFFFFFFFFFFFF)
    except SyscallError:
        pass
    t.robust_list = 0
