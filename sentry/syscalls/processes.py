"""Process syscalls: ids, credentials, resource limits, umask, exit."""
from __future__ import annotations

import errno
import struct

from sentry.errors import SyscallError
from sentry.syscalls.args import s32, u32
from sentry.syscalls.registry import Support, syscall

RLIM_NLIMITS = 16
NR_OPEN = 1048576


@syscall("getpid")
def getpid(t):
    """getpid(2): the thread group id in the sandbox's PID namespace."""
    return t.tg.tgid


@syscall("gettid")
def gettid(t):
    """gettid(2)."""
    return t.tid


@syscall("getppid")
def getppid(t):
    """getppid(2): 0 for the container's init, as in a fresh PID namespace."""
    p = t.tg.parent
    return p.tgid if p is not None else 0


@syscall("getuid")
def getuid(t):
    return t.tg.creds.ruid


@syscall("geteuid")
def geteuid(t):
    return t.tg.creds.euid


@syscall("getgid")
def getgid(t):
    return t.tg.creds.rgid


@syscall("getegid")
def getegid(t):
    return t.tg.creds.egid


@syscall("getgroups")
def getgroups(t, size, lst):
    """getgroups(2)."""
    size = s32(size)
    groups = t.tg.creds.groups
    if size < 0:
        raise SyscallError(errno.EINVAL)
    if size == 0:
        return len(groups)
    if size < len(groups):
        raise SyscallError(errno.EINVAL)
    t.mm.write(lst, struct.pack(f"<{len(groups)}I", *groups))
    return len(groups)


@syscall("getresuid")
def getresuid(t, r, e, s):
    c = t.tg.creds
    t.mm.write_u32(r, c.ruid)
    t.mm.write_u32(e, c.euid)
    t.mm.write_u32(s, c.suid)
    return 0


@syscall("getresgid")
def getresgid(t, r, e, s):
    c = t.tg.creds
    t.mm.write_u32(r, c.rgid)
    t.mm.write_u32(e, c.egid)
    t.mm.write_u32(s, c.sgid)
    return 0


@syscall("set_tid_address")
def set_tid_address(t, tidptr):
    """set_tid_address(2): remembered for CLONE_CHILD_CLEARTID semantics at thread exit."""
    t.clear_child_tid = tidptr
    return t.tid


@syscall("set_robust_list")
def set_robust_list(t, head, length):
    """set_robust_list(2): the list is walked at thread exit."""
    if length != 24:
        raise SyscallError(errno.EINVAL)
    t.robust_list, t.robust_len = head, length
    return 0


@syscall("umask")
def umask(t, mask):
    """umask(2)."""
    old = t.tg.fs.umask
    t.tg.fs.umask = u32(mask) & 0o777
    return old


# -- resource limits ----------------------------------------------------------

RLIMIT = struct.Struct("<QQ")


def _target_tg(t, pid: int):
    if pid == 0 or pid == t.tg.tgid:
        return t.tg
    tg = t.kernel.thread_groups.get(pid)
    if tg is None:
        raise SyscallError(errno.ESRCH)
    return tg


def _set_rlimit(t, tg, resource: int, soft: int, hard: int) -> None:
    if soft > hard:
        raise SyscallError(errno.EINVAL)
    old_soft, old_hard = tg.rlimits[resource]
    if hard > old_hard and t.tg.creds.euid != 0:
        raise SyscallError(errno.EPERM)
    if resource == 7 and hard > NR_OPEN:
        raise SyscallError(errno.EPERM)
    tg.rlimits[resource] = [soft, hard]


@syscall("prlimit64")
def prlimit64(t, pid, resource, new, old):
    """prlimit64(2)."""
    pid, resource = s32(pid), u32(resource)
    if resource >= RLIM_NLIMITS:
        raise SyscallError(errno.EINVAL)
    new_val = t.mm.read_struct(new, RLIMIT) if new else None
    tg = _target_tg(t, pid)
    prev = tuple(tg.rlimits[resource])
    if new_val is not None:
        _set_rlimit(t, tg, resource, *new_val)
    if old:
        t.mm.write_struct(old, RLIMIT, *prev)
    return 0


@syscall("getrlimit")
def getrlimit(t, resource, rlim):
    """getrlimit(2)."""
    resource = u32(resource)
    if resource >= RLIM_NLIMITS:
        raise SyscallError(errno.EINVAL)
    t.mm.write_struct(rlim, RLIMIT, *t.tg.rlimits[resource])
    return 0


@syscall("setrlimit")
def setrlimit(t, resource, rlim):
    """setrlimit(2)."""
    resource = u32(resource)
    if resource >= RLIM_NLIMITS:
        raise SyscallError(errno.EINVAL)
    soft, hard = t.mm.read_struct(rlim, RLIMIT)
    _set_rlimit(t, t.tg, resource, soft, hard)
    return 0


# -- exit -----------------------------------------------------------------------

@syscall("exit", Support.PARTIAL, "ends the whole process while threads are not yet supported")
def exit_(t, status):
    """exit(2)."""
    from sentry.kernel import TaskExited
    t.kernel.exit_thread_group(t.tg, (status & 0xFF) << 8)
    raise TaskExited()


@syscall("exit_group")
def exit_group(t, status):
    """exit_group(2): every thread of the process exits."""
    from sentry.kernel import TaskExited
    t.kernel.exit_thread_group(t.tg, (status & 0xFF) << 8)
    raise TaskExited()
