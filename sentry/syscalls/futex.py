"""futex(2)."""
from __future__ import annotations

import errno
import struct
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


FUTEX2_SIZE_MASK, FUTEX2_SIZE_U32, FUTEX2_NUMA, FUTEX2_MPOL, FUTEX2_PRIVATE = 3, 2, 4, 8, 128
FUTEX2_VALID_MASK = FUTEX2_SIZE_MASK | FUTEX2_NUMA | FUTEX2_MPOL | FUTEX2_PRIVATE
FUTEX_WAITV_MAX = 128
FUTEX_WAITV = struct.Struct("<QQII")          # val, uaddr, flags, __reserved
TASK_SIZE = 0x7FFFFFFFF000


@syscall("futex_waitv", Support.PARTIAL, "32-bit words (FUTEX2_SIZE_U32, FUTEX2_PRIVATE); FUTEX2_NUMA and "
         "FUTEX2_MPOL are EINVAL (NUMA-node futexes are not modelled)")
def futex_waitv(t, waiters, nr_futexes, flags, timeout, clockid):
    """futex_waitv(2): wait on up to 128 words; the index of the one woken."""
    k = t.kernel
    st = t.resume(fx.WaitvWait)
    if st is not None:
        if st.woken:
            return st.index()
        if t.timed_out or (st.deadline is not None and st.deadline <= _time.monotonic()):
            raise SyscallError(errno.ETIMEDOUT)
        t.block([fx.queue(k, key) for key in dict.fromkeys(st.keys)], deadline=st.deadline)
    nr = u32(nr_futexes)
    if u32(flags) or not nr or nr > FUTEX_WAITV_MAX or not waiters:
        raise SyscallError(errno.EINVAL)
    deadline = None
    if timeout:
        clk = s32(clockid)
        if clk not in (0, 1):                      # CLOCK_REALTIME, CLOCK_MONOTONIC
            raise SyscallError(errno.EINVAL)
        ns = read_timespec(t, timeout)             # EFAULT, EINVAL
        deadline = _time.monotonic() + (ns - _time.clock_gettime_ns(clk)) / 1e9
    vec = []
    for i in range(nr):                            # futex_parse_waitv
        val, uaddr, fl, reserved = t.mm.read_struct(waiters + i * FUTEX_WAITV.size, FUTEX_WAITV)
        if fl & ~FUTEX2_VALID_MASK or reserved or fl & FUTEX2_SIZE_MASK != FUTEX2_SIZE_U32 \
                or fl & (FUTEX2_NUMA | FUTEX2_MPOL) or val > 0xFFFFFFFF:
            raise SyscallError(errno.EINVAL)
        vec.append((val, uaddr, fl))
    keys: list = [None] * nr
    for i, (val, uaddr, fl) in enumerate(vec):     # get_futex_key, every word first
        if uaddr & 3:
            raise SyscallError(errno.EINVAL)
        if uaddr + 4 > TASK_SIZE:
            raise SyscallError(errno.EFAULT)
        if not fl & FUTEX2_PRIVATE:
            keys[i] = fx.key_of(t.mm, uaddr)        # a shared key needs the page: EFAULT
    for i, (val, uaddr, fl) in enumerate(vec):     # then the values, in order
        if keys[i] is None:
            keys[i] = fx.key_of(t.mm, uaddr)
        if t.mm.read_u32(uaddr) != val:
            raise SyscallError(errno.EAGAIN)
    st = t.begin(fx.WaitvWait(keys, deadline))
    t.block([fx.queue(k, key) for key in dict.fromkeys(keys)], deadline=deadline)   # one park per word
