"""seccomp(2) and prctl(PR_SET_SECCOMP/PR_GET_SECCOMP): an application's own syscall filters.

The filters are kept on the task (sentry/seccomp_bpf.py runs them before each of its
syscalls); nothing is installed on the host.  The order of the checks is kernel/seccomp.c's:
flags, then copying struct sock_fprog (EFAULT), its length (EINVAL), no_new_privs or
CAP_SYS_ADMIN (EACCES; here: euid 0, as capget), the program (EFAULT, EINVAL), the current
mode (EINVAL after strict mode), the chain's size (ENOMEM), then TSYNC's check of the
other threads.  User notification listeners are not provided: SECCOMP_FILTER_FLAG_NEW_LISTENER
is EINVAL, and a filter returning SECCOMP_RET_USER_NOTIF makes the syscall fail with ENOSYS,
as Linux does when no listener exists.
"""
from __future__ import annotations

import errno
import struct

from sentry import seccomp_bpf as bpf
from sentry.errors import SyscallError
from sentry.syscalls.args import s32, u32
from sentry.syscalls.registry import Support, syscall

SECCOMP_SET_MODE_STRICT, SECCOMP_SET_MODE_FILTER, SECCOMP_GET_ACTION_AVAIL, SECCOMP_GET_NOTIF_SIZES = 0, 1, 2, 3
FLAG_TSYNC, FLAG_LOG, FLAG_SPEC_ALLOW, FLAG_NEW_LISTENER, FLAG_TSYNC_ESRCH, FLAG_WAIT_KILLABLE_RECV = 1, 2, 4, 8, 16, 32
FLAG_MASK = 0x3F
MODE_DISABLED, MODE_STRICT, MODE_FILTER = 0, 1, 2
PR_GET_SECCOMP, PR_SET_SECCOMP = 21, 22
SOCK_FPROG = struct.Struct("<H6xQ")
NOTIF_SIZES = struct.Struct("<HHH")      # seccomp_notif, seccomp_notif_resp, seccomp_data


def mode(t) -> int:
    s = t.seccomp
    return MODE_DISABLED if s is None else MODE_STRICT if s is bpf.STRICT else MODE_FILTER


def _kick(t) -> None:
    """The task now has filters: back to the run loop, which keeps it off the `_serve` fast
    path (that path does not look for filters)."""
    t.kernel.enqueue(t, first=True)


def _set_strict(t, flags: int, uargs: int) -> int:
    if flags or uargs:
        raise SyscallError(errno.EINVAL)
    if mode(t) not in (MODE_DISABLED, MODE_STRICT):
        raise SyscallError(errno.EINVAL)
    t.seccomp = bpf.STRICT
    _kick(t)
    return 0


def _prepare(t, uargs: int) -> tuple:
    length, addr = t.mm.read_struct(uargs, SOCK_FPROG)
    if length == 0 or length > bpf.BPF_MAXINSNS:
        raise SyscallError(errno.EINVAL)
    if not t.tg.no_new_privs and t.tg.creds.euid != 0:
        raise SyscallError(errno.EACCES)
    return bpf.check(t.mm.read(addr, length * 8))


def _set_filter(t, flags: int, uargs: int) -> int:
    if flags & ~FLAG_MASK:
        raise SyscallError(errno.EINVAL)
    if flags & FLAG_TSYNC and flags & FLAG_NEW_LISTENER and not flags & FLAG_TSYNC_ESRCH:
        raise SyscallError(errno.EINVAL)
    if flags & FLAG_WAIT_KILLABLE_RECV and not flags & FLAG_NEW_LISTENER:
        raise SyscallError(errno.EINVAL)
    insns = _prepare(t, uargs)
    if flags & FLAG_NEW_LISTENER:
        raise SyscallError(errno.EINVAL)          # no user-notification listeners (module doc)
    if mode(t) == MODE_STRICT:
        raise SyscallError(errno.EINVAL)
    old = t.seccomp or ()
    if len(insns) + sum(len(f.insns) + 4 for f in old) > bpf.MAX_INSNS_PER_PATH:
        raise SyscallError(errno.ENOMEM)
    new = (bpf.Filter(insns, bool(flags & FLAG_LOG)),) + old
    others = [x for x in t.tg.tasks if x is not t and not x.exited]
    if flags & FLAG_TSYNC:
        for x in others:
            s = x.seccomp
            if s is None or (s is not bpf.STRICT and len(s) <= len(old) and old[len(old) - len(s):] == s):
                continue                          # no filters, or an ancestor of the caller's
            if flags & FLAG_TSYNC_ESRCH:
                raise SyscallError(errno.ESRCH)
            return x.tid                          # the thread that cannot be synchronised
        for x in others:
            x.seccomp = new
    t.seccomp = new
    _kick(t)
    return 0


def do_seccomp(t, op: int, flags: int, uargs: int) -> int:
    if op == SECCOMP_SET_MODE_STRICT:
        return _set_strict(t, flags, uargs)
    if op == SECCOMP_SET_MODE_FILTER:
        return _set_filter(t, flags, uargs)
    if op == SECCOMP_GET_ACTION_AVAIL:
        if flags:
            raise SyscallError(errno.EINVAL)
        action = t.mm.read_u32(uargs)
        if action not in bpf.ACTIONS:
            raise SyscallError(errno.EOPNOTSUPP)
        return 0
    if op == SECCOMP_GET_NOTIF_SIZES:
        if flags:
            raise SyscallError(errno.EINVAL)
        t.mm.write(uargs, NOTIF_SIZES.pack(80, 24, 64))
        return 0
    raise SyscallError(errno.EINVAL)


@syscall("seccomp", Support.PARTIAL,
         "strict and filter modes (classic BPF run by the Sentry, every action, TSYNC, LOG, inherited "
         "by fork/clone/execve), GET_ACTION_AVAIL, GET_NOTIF_SIZES; no user-notification listener "
         "(NEW_LISTENER is EINVAL, RET_USER_NOTIF gives ENOSYS) and no tracer (RET_TRACE gives ENOSYS)")
def seccomp(t, op, flags, uargs):
    """seccomp(2)."""
    return do_seccomp(t, u32(op), u32(flags), uargs)


def prctl_seccomp(t, option: int, a2: int, a3: int) -> int:
    """prctl(PR_GET_SECCOMP) and prctl(PR_SET_SECCOMP, mode, filter) (processes.prctl)."""
    if option == PR_GET_SECCOMP:
        return mode(t)
    m = s32(a2)
    if m == MODE_STRICT:
        return do_seccomp(t, SECCOMP_SET_MODE_STRICT, 0, 0)
    if m == MODE_FILTER:
        return do_seccomp(t, SECCOMP_SET_MODE_FILTER, 0, a3)
    raise SyscallError(errno.EINVAL)
