"""Process syscalls: pids, resource limits, umask, exit, clone, process groups, execve, prctl.

The uid/gid calls are in creds.py, wait4/waitid in wait.py."""
from __future__ import annotations

import errno
import struct

from sentry.errors import SyscallError
from sentry.syscalls.args import s32, u32
from sentry.syscalls.registry import Support, syscall
from sentry.task import Marker
from sentry.pidns import kill_target, to_ns

RLIM_NLIMITS = 16
NR_OPEN = 1048576


@syscall("getpid")
def getpid(t):
    """getpid(2): the thread group id in its PID namespace (sentry/pidns.py)."""
    return t.tg.tgid if t.tg.pidns is None else to_ns(t.tg.pidns, t.tg.tgid)


@syscall("gettid")
def gettid(t):
    """gettid(2)."""
    return t.tid if t.tg.pidns is None else to_ns(t.tg.pidns, t.tid)


@syscall("getppid")
def getppid(t):
    """getppid(2): 0 for the container's init, as in a fresh PID namespace."""
    p = t.tg.parent
    if p is not None and t.tg.pidns is not None:
        return to_ns(t.tg.pidns, p.tgid)            # 0: a parent outside its PID namespace
    return p.tgid if p is not None else 0


# The ids a process reads are those of its user namespace (sentry/userns.py); the stored
# credentials are the sandbox's.
@syscall("set_tid_address")
def set_tid_address(t, tidptr):
    """set_tid_address(2): remembered for CLONE_CHILD_CLEARTID semantics at thread exit."""
    t.clear_child_tid = tidptr
    return t.tid if t.tg.pidns is None else to_ns(t.tg.pidns, t.tid)


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
    if resource == 0:                     # RLIMIT_CPU: sampled while any process has one
        t.kernel.cpu_limits.changed()


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

@syscall("exit")
def exit_(t, status):
    """exit(2): this thread ends; the process ends with its last thread."""
    from sentry import process
    from sentry.kernel import TaskExited
    process.exit_task(t.kernel, t, (status & 0xFF) << 8)
    raise TaskExited()


@syscall("exit_group")
def exit_group(t, status):
    """exit_group(2): every thread of the process exits."""
    from sentry.kernel import TaskExited
    t.kernel.exit_thread_group(t.tg, (status & 0xFF) << 8)
    raise TaskExited()


# -- clone / fork / vfork ----------------------------------------------------------

def _clone(t, flags: int, stack: int, ptid: int, ctid: int, tls: int) -> int:
    from sentry import process
    st = t.resume(Marker)
    if st is not None:
        # Woken: the vfork child has exec'd or exited.
        if t.vfork_released:
            t.vfork_released = False
            t.uninterruptible = False
            return st.value if t.tg.pidns is None else to_ns(t.tg.pidns, st.value)
        t.block()
    tid = process.do_clone(t.kernel, t, flags, stack, ptid, ctid, tls)
    from sentry.syscalls.sched import inherit
    inherit(t, t.kernel.tasks[tid])
    if t.tg.pidns is not None:
        tid = to_ns(t.tg.pidns, tid)              # the child as the parent's PID namespace numbers it
    if flags & process.CLONE_VFORK:
        t.vfork_released = False
        t.uninterruptible = True      # like Linux's killable-only vfork wait: signals wait for the child
        t.block()
    return tid


@syscall("clone")
def clone(t, flags, stack, ptid, ctid, tls):
    """clone(2) (x86-64 argument order: flags, stack, parent_tid, child_tid, tls)."""
    if flags & 0x1000:                          # CLONE_PIDFD: syscalls/pidfd.py
        from sentry.syscalls.pidfd import clone_pidfd
        return clone_pidfd(t, flags & 0xFFFFFFFF, stack, ptid, ctid, tls)
    return _clone(t, flags & 0xFFFFFFFF, stack, ptid, ctid, tls)


@syscall("fork")
def fork(t):
    """fork(2)."""
    return _clone(t, 17, 0, 0, 0, 0)


@syscall("vfork")
def vfork(t):
    """vfork(2): the parent waits until the child execs or exits."""
    from sentry import process
    return _clone(t, process.CLONE_VM | process.CLONE_VFORK | 17, 0, 0, 0, 0)


# clone3(2) is in syscalls/pidfd.py, beside CLONE_PIDFD.


# -- process groups and sessions ----------------------------------------------------

@syscall("setpgid")
def setpgid(t, pid, pgid):
    """setpgid(2)."""
    pid, pgid = s32(pid), s32(pgid)
    if pgid < 0:
        raise SyscallError(errno.EINVAL)
    if t.tg.pidns is not None:
        pid, pgid = (kill_target(t.tg.pidns, v) if v > 0 else v for v in (pid, pgid))
    k = t.kernel
    target = t.tg if pid == 0 else k.thread_groups.get(pid)
    if target is None or (target is not t.tg and target.parent is not t.tg):
        raise SyscallError(errno.ESRCH)
    if target.sid == target.tgid:
        raise SyscallError(errno.EPERM)           # a session leader
    if target.sid != t.tg.sid:
        raise SyscallError(errno.EPERM)
    if target is not t.tg and target.execed:
        raise SyscallError(errno.EACCES)
    pgid = pgid or target.tgid
    if pgid != target.tgid and not any(g.pgid == pgid and g.sid == t.tg.sid for g in k.thread_groups.values()):
        raise SyscallError(errno.EPERM)
    target.pgid = pgid
    return 0


@syscall("getpgid")
def getpgid(t, pid):
    """getpgid(2)."""
    pid = s32(pid)
    tg = t.tg if pid == 0 else t.kernel.thread_groups.get(kill_target(t.tg.pidns, pid) if pid > 0 else pid)
    if tg is None:
        raise SyscallError(errno.ESRCH)
    return to_ns(t.tg.pidns, tg.pgid)


@syscall("getpgrp")
def getpgrp(t):
    """getpgrp(2)."""
    return to_ns(t.tg.pidns, t.tg.pgid)


@syscall("setsid")
def setsid(t):
    """setsid(2)."""
    tg = t.tg
    if any(g.pgid == tg.tgid for g in t.kernel.thread_groups.values()):
        raise SyscallError(errno.EPERM)
    tg.sid = tg.pgid = tg.tgid
    tg.ctty = None                 # a new session has no controlling terminal
    return to_ns(tg.pidns, tg.sid)


@syscall("getsid")
def getsid(t, pid):
    """getsid(2)."""
    pid = s32(pid)
    tg = t.tg if pid == 0 else t.kernel.thread_groups.get(kill_target(t.tg.pidns, pid) if pid > 0 else pid)
    if tg is None:
        raise SyscallError(errno.ESRCH)
    return to_ns(t.tg.pidns, tg.sid)


# -- execve ---------------------------------------------------------------------

MAX_ARG_STRINGS = 0x7FFFFFFF


def read_string_array(t, addr: int, limit_bytes: int) -> list[bytes]:
    """argv/envp: NULL-terminated pointer array; E2BIG past the byte budget, as Linux."""
    from sentry.loader import MAX_ARG_STRLEN
    out: list[bytes] = []
    if not addr:
        return out
    total = 0
    while True:
        p = t.mm.read_u64(addr + 8 * len(out))
        if p == 0:
            return out
        try:
            s = t.mm.cstring(p, MAX_ARG_STRLEN - 1)
        except SyscallError as e:
            if e.errno == errno.ENAMETOOLONG:
                raise SyscallError(errno.E2BIG) from None
            raise
        total += len(s) + 1 + 8
        if total > limit_bytes:
            raise SyscallError(errno.E2BIG)
        out.append(s)


def do_execve(t, dirfd: int, path_addr: int, argv_addr: int, envp_addr: int, flags: int) -> int:
    from sentry.exec import exec_path
    from sentry.syscalls.files import AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, _path
    if flags & ~(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW):
        raise SyscallError(errno.EINVAL)
    path = _path(t, path_addr)
    budget = min(t.tg.rlimits[3][0] // 4, 0x7FFFFFFF) if t.tg.rlimits[3][0] else 0x7FFFFFFF
    argv = read_string_array(t, argv_addr, budget)
    envp = read_string_array(t, envp_addr, budget - sum(len(a) + 9 for a in argv))
    if not path:
        if not flags & AT_EMPTY_PATH:
            raise SyscallError(errno.ENOENT)
        f = t.fds.get(dirfd)
        if f.dentry is None:
            raise SyscallError(errno.EACCES)
        path = f.dentry.path(t.tg.fs.root)
    elif path[:1] != b"/" and dirfd != -100:
        base = t.kernel.vfs.start(t, dirfd, path)
        path = base.path(t.tg.fs.root).rstrip(b"/") + b"/" + path
    if flags & AT_SYMLINK_NOFOLLOW:
        d = t.kernel.vfs.resolve(t, -100, path, follow=False)
        if d.inode.is_symlink:
            raise SyscallError(errno.ELOOP)
    exec_path(t, path, argv or [], envp)
    return 0


@syscall("execve")
def execve(t, path, argv, envp):
    """execve(2)."""
    return do_execve(t, -100, path, argv, envp, 0)


@syscall("execveat")
def execveat(t, dirfd, path, argv, envp, flags):
    """execveat(2)."""
    return do_execve(t, s32(dirfd), path, argv, envp, u32(flags))


# -- prctl ----------------------------------------------------------------------

PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 2, 3, 4
PR_SET_NAME, PR_GET_NAME = 15, 16
PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 38, 39
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37
PR_CAPBSET_READ = 23
PR_SET_VMA = 0x53564D41


@syscall("prctl", Support.PARTIAL, "names, pdeathsig, dumpable, no_new_privs, child subreaper, capbset read, PR_SET_VMA")
def prctl(t, option, a2, a3, a4, a5):
    """prctl(2)."""
    option = s32(option)
    tg = t.tg
    if option == PR_SET_NAME:
        name = t.mm.read(a2, 16).split(b"\0", 1)[0]
        tg.comm = name[:15]
        return 0
    if option == PR_GET_NAME:
        t.mm.write(a2, tg.comm[:15].ljust(16, b"\0"))
        return 0
    if option == PR_SET_PDEATHSIG:
        if a2 > 64:
            raise SyscallError(errno.EINVAL)
        t.pdeathsig = a2
        return 0
    if option == PR_GET_PDEATHSIG:
        t.mm.write_u32(a2, t.pdeathsig)
        return 0
    if option == PR_GET_DUMPABLE:
        return tg.dumpable
    if option == PR_SET_DUMPABLE:
        if a2 not in (0, 1):
            raise SyscallError(errno.EINVAL)
        tg.dumpable = a2
        return 0
    if option == PR_SET_NO_NEW_PRIVS:
        if a2 != 1 or a3 or a4 or a5:
            raise SyscallError(errno.EINVAL)
        tg.no_new_privs = True
        return 0
    if option == PR_GET_NO_NEW_PRIVS:
        if a2 or a3 or a4 or a5:
            raise SyscallError(errno.EINVAL)
        return 1 if tg.no_new_privs else 0
    if option == PR_SET_CHILD_SUBREAPER:
        tg.subreaper = bool(a2)
        return 0
    if option == PR_GET_CHILD_SUBREAPER:
        t.mm.write_u32(a2, 1 if tg.subreaper else 0)
        return 0
    if option == PR_CAPBSET_READ:
        if a2 > 40:
            raise SyscallError(errno.EINVAL)
        return 1 if tg.creds.euid == 0 else 0
    if option == PR_SET_VMA:
        return 0
    if option in (21, 22):                      # PR_GET_SECCOMP, PR_SET_SECCOMP
        from sentry.syscalls.seccomp import prctl_seccomp
        return prctl_seccomp(t, option, a2, a3)
    raise SyscallError(errno.EINVAL)
