"""futex(2)."""
from __future__ import annotations

import errno
import time as _time

from sentry import futex as fx
from sentry.errors import SyscallError
from sentry.syscalls.args import s32, u32
from sentry.syscalls.registry import Support, syscall
from sentry.syscalls.time import read_timespec
from sentry.task import FutexWait

FUTEX_WAIT, FUTEX_WAKE, FUTEX_FD, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 2, 3, 4, 5
FUTEX_LOCK_PI, FUTEX_UNLOCK_PI, FUTEX_TRYLOCK_PI, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 6, 7, 8, 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
BITSET_ANY = 0xFFFFFFFF


def _wait(t, uaddr: int, val: int, timeout: int, bitset: int, absolute: bool, realtime: bool) -> int:
    st = t.resume(FutexWait)
    if st is not None:
        if st.woken:
            return 0
        if t.timed_out or (st.deadline is not None and st.deadline <= _time.monotonic()):
            raise SyscallError(errno.ETIMEDOUT)
        if not t.in_syscall:
            # restart_syscall after a stop: Linux's futex_wait_restart checks the word again
            if t.mm.read_u32(uaddr) != val:
                raise SyscallError(errno.EAGAIN)
        t.block([fx.queue(t.kernel, st.key)], deadline=st.deadline)
    if bitset == 0:
        raise SyscallError(errno.EINVAL)
    key = fx.key_of(t.mm, uaddr)
    deadline = None
    if timeout:
        ns = read_timespec(t, timeout)
        if absolute:
            now = _time.clock_gettime_ns(0 if realtime else 1)
            deadline = _time.monotonic() + (ns - now) / 1e9
        else:
            deadline = _time.monotonic() + ns / 1e9
    if t.mm.read_u32(uaddr) != val:
        raise SyscallError(errno.EAGAIN)
    t.begin(FutexWait(key, bitset, deadline))
    t.block([fx.queue(t.kernel, key)], deadline=deadline)


def _wake_op(t, uaddr: int, n: int, n2: int, uaddr2: int, encoded: int) -> int:
    op, cmp = (encoded >> 28) & 0xF, (encoded >> 24) & 0xF
    oparg, cmparg = (encoded >> 12) & 0xFFF, encoded & 0xFFF
    if op & 8:
        op &= 7
        oparg = 1 << oparg if oparg < 32 else 0
    old = t.mm.read_u32(uaddr2)
    new = {0: oparg, 1: old + oparg, 2: old | oparg, 3: old & ~oparg, 4: old ^ oparg}.get(op)
    if new is None:
        raise SyscallError(errno.ENOSYS)
    t.mm.write_u32(uaddr2, new & 0xFFFFFFFF)
    woken = fx.wake(t.kernel, t.mm, uaddr, n, BITSET_ANY)
    sold = s32(old)
    ok = {0: sold == cmparg, 1: sold != cmparg, 2: sold < cmparg, 3: sold <= cmparg, 4: sold > cmparg,
          5: sold >= cmparg}.get(cmp)
    if ok is None:
        raise SyscallError(errno.ENOSYS)
    if ok:
        woken += fx.wake(t.kernel, t.mm, uaddr2, n2, BITSET_ANY)
    return woken


@syscall("futex", Support.PARTIAL, "WAIT WAKE REQUEUE CMP_REQUEUE WAKE_OP WAIT_BITSET WAKE_BITSET; PI futexes ENOSYS")
def futex(t, uaddr, op, val, timeout, uaddr2, val3):
    """futex(2)."""
    op = u32(op)
    cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
    realtime = bool(op & FUTEX_CLOCK_REALTIME)
    val, val3 = u32(val), u32(val3)
    k = t.kernel
    if realtime and cmd not in (FUTEX_WAIT, FUTEX_WAIT_BITSET, FUTEX_LOCK_PI):
        raise SyscallError(errno.ENOSYS)
    if cmd == FUTEX_WAIT:
        return _wait(t, uaddr, val, timeout, BITSET_ANY, False, realtime)
    if cmd == FUTEX_WAIT_BITSET:
        return _wait(t, uaddr, val, timeout, val3, True, realtime)
    if cmd == FUTEX_WAKE:
        return fx.wake(k, t.mm, uaddr, s32(val), BITSET_ANY)
    if cmd == FUTEX_WAKE_BITSET:
        if val3 == 0:
            raise SyscallError(errno.EINVAL)
        return fx.wake(k, t.mm, uaddr, s32(val), val3)
    if cmd in (FUTEX_REQUEUE, FUTEX_CMP_REQUEUE):
        n2 = s32(timeout & 0xFFFFFFFF)
        if s32(val) < 0 or n2 < 0:
            raise SyscallError(errno.EINVAL)
        if cmd == FUTEX_CMP_REQUEUE and t.mm.read_u32(uaddr) != val3:
            raise SyscallError(errno.EAGAIN)
        return fx.requeue(k, t.mm, uaddr, val, n2, uaddr2)
    if cmd == FUTEX_WAKE_OP:
        return _wake_op(t, uaddr, s32(val), s32(timeout & 0xFFFFFFFF), uaddr2, val3)
    raise SyscallError(errno.ENOSYS)


@syscall("get_robust_list")
def get_robust_list(t, pid, head_ptr, len_ptr):
    """get_robust_list(2): the head a thread registered with set_robust_list."""
    pid = s32(pid)
    target = t if pid == 0 else t.kernel.tasks.get(pid)
    if target is None or pid < 0:
        raise SyscallError(errno.ESRCH)
    t.mm.write_u64(head_ptr, target.robust_list)
    t.mm.write_u64(len_ptr, target.robust_len or 24)
    return 0
