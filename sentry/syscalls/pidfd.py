"""Process file descriptors and cross-process calls: pidfd_open, pidfd_send_signal,
pidfd_getfd, CLONE_PIDFD, clone3, process_vm_readv and process_vm_writev.

A pidfd (`PidFd`) holds a thread group, not a number, so it never names a
recycled pid: once the process has exited, signals through it are ESRCH and
poll reports it readable (POLLIN; POLLHUP too once it has been reaped), as
kernel/pid.c's pidfd_poll.  Its wakeups come from the queue the exit already
wakes: the parent's `child_waitq`.

clone3 reads `struct clone_args` with kernel/fork.c's checks (size between
VER0 and a page, unknown trailing bytes zero, exit_signal a valid signal and
not in flags, a stack given with its size) and then is clone(2): the new stack
pointer is stack + stack_size.  CLONE_CLEAR_SIGHAND resets every caught
signal to its default in the child.

"May this task act on that process" (pidfd_getfd, process_vm_*) is ptrace's
PTRACE_MODE_ATTACH_REALCREDS: the same real, effective and saved uid, or root.
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError
from sentry.pidns import sent_from_outside
from sentry.pipe import POLLHUP, POLLIN, POLLRDNORM
from sentry.syscalls.args import s32
from sentry.syscalls.registry import Support, syscall
from sentry.vfs.file import O_CLOEXEC, O_NONBLOCK, O_RDWR, File, gather, scatter
from sentry.vfs.inode import Stat

PIDFD_NONBLOCK = O_NONBLOCK
PIDFD_THREAD = 0o200          # O_EXCL
CLONE_PIDFD, CLONE_PARENT_SETTID, CLONE_DETACHED, CLONE_THREAD = 0x1000, 0x100000, 0x400000, 0x10000
CLONE_PARENT, CLONE_SIGHAND = 0x8000, 0x800
CLONE_CLEAR_SIGHAND, CLONE_INTO_CGROUP = 0x100000000, 0x200000000
CSIGNAL = 0xFF
CLONE_ARGS_SIZE_VER0, CLONE_ARGS_SIZE_VER2 = 64, 88
PAGE = 4096
UIO_MAXIOV = 1024


class PidFd(File):
    """A process, held open (anon_inode:[pidfd])."""

    def __init__(self, tg, flags: int) -> None:
        super().__init__(O_RDWR | (flags & O_NONBLOCK))
        self.tg = tg

    def stat(self) -> Stat:
        return Stat(self.tg.tgid, 0xE, 0o600, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0)

    def exited(self) -> bool:
        return self.tg.zombie or self.tg.reaped or self.tg.exit_status is not None

    def readiness(self, events: int) -> int:
        r = 0
        if self.exited():
            r |= POLLIN | POLLRDNORM
            if self.tg.reaped:
                r |= POLLHUP
        return r & (events | POLLHUP)

    def wait_queues(self) -> list:
        parent = self.tg.parent
        return [parent.child_waitq] if parent is not None else []


def _pidfd(t, fd: int) -> PidFd:
    f = t.fds.get(s32(fd))
    if not isinstance(f, PidFd):
        raise SyscallError(errno.EBADF)
    return f


def _may_attach(t, tg) -> bool:
    """PTRACE_MODE_ATTACH_REALCREDS, in this Sentry's capability model (root holds them all)."""
    c, o = t.tg.creds, tg.creds
    return c.euid == 0 or (c.ruid == o.ruid == o.euid == o.suid and c.rgid == o.rgid == o.egid == o.sgid)


def new_pidfd(t, tg, flags: int = 0) -> int:
    """Install a pidfd for `tg` in the caller's table (always close-on-exec, as Linux)."""
    return t.fds.install(PidFd(tg, flags), True, limit=t.tg.rlimits[7][0])


@syscall("pidfd_open", Support.PARTIAL, "flags 0, PIDFD_NONBLOCK and PIDFD_THREAD (a thread's pidfd signals "
         "its process); reading a pidfd is EINVAL as Linux")
def pidfd_open(t, pid, flags):
    """pidfd_open(2)."""
    pid, flags = s32(pid), flags & 0xFFFFFFFF
    if flags & ~(PIDFD_NONBLOCK | PIDFD_THREAD) or pid <= 0:
        raise SyscallError(errno.EINVAL)
    task = t.kernel.tasks.get(pid)
    if task is None:
        tg = t.kernel.thread_groups.get(pid)
        if tg is None or tg.reaped:
            raise SyscallError(errno.ESRCH)
    else:
        tg = task.tg
        if tg.tgid != pid and not flags & PIDFD_THREAD:
            raise SyscallError(errno.ENOENT)       # not a thread-group leader
    return new_pidfd(t, tg, flags)


@syscall("pidfd_send_signal")
def pidfd_send_signal(t, pidfd, sig, info, flags):
    """pidfd_send_signal(2): as kill(2) (or rt_sigqueueinfo(2) with `info`) on the pidfd's process."""
    from sentry import process
    from sentry import signals as sg
    from sentry.syscalls.signals import _may_signal
    sig = s32(sig)
    if flags & 0xFFFFFFFF:
        raise SyscallError(errno.EINVAL)
    f = _pidfd(t, pidfd)
    if sig < 0 or sig > 64:
        raise SyscallError(errno.EINVAL)
    tg = f.tg
    if tg.reaped:
        raise SyscallError(errno.ESRCH)
    if info:
        raw = bytearray(t.mm.read(info, 128))
        signo = int.from_bytes(raw[0:4], "little", signed=True)
        code = int.from_bytes(raw[8:12], "little", signed=True)
        if signo != sig:
            raise SyscallError(errno.EINVAL)
        if (code >= 0 or code == sg.SI_TKILL) and tg is not t.tg:
            raise SyscallError(errno.EPERM)
        data = bytes(raw)
    else:
        data = sg.siginfo(sig, sg.SI_USER, pid=t.tg.tgid, uid=t.tg.creds.ruid)
    if not _may_signal(t, tg):
        raise SyscallError(errno.EPERM)
    if sig and not (tg.zombie or tg.exiting):          # a zombie takes (and drops) the signal: 0
        process.send_to_group(t.kernel, tg, sig, data, force=sent_from_outside(t.tg, tg))
    return 0


@syscall("pidfd_getfd")
def pidfd_getfd(t, pidfd, targetfd, flags):
    """pidfd_getfd(2): a duplicate of another process's descriptor (close-on-exec in the caller)."""
    if flags & 0xFFFFFFFF:
        raise SyscallError(errno.EINVAL)
    f = _pidfd(t, pidfd)
    tg = f.tg
    if f.exited() or tg.exiting:
        raise SyscallError(errno.ESRCH)
    if not _may_attach(t, tg):
        raise SyscallError(errno.EPERM)
    target = tg.fds.get(s32(targetfd))            # EBADF
    return t.fds.install(target, True, limit=t.tg.rlimits[7][0])


# -- clone with CLONE_PIDFD, and clone3 ------------------------------------------------------------

def _after_clone(t, tid: int, flags: int, pidfd_addr: int) -> None:
    tg = t.kernel.thread_groups.get(tid)
    child = t.kernel.tasks.get(tid)
    if flags & CLONE_CLEAR_SIGHAND and child is not None:
        from sentry.task import SignalAction
        child.tg.sigactions = [a if a.handler in (0, 1) else SignalAction() for a in child.tg.sigactions]
    if flags & CLONE_PIDFD:
        if tg is None and child is not None:
            tg = child.tg
        if tg is not None:
            t.mm.write_u32(pidfd_addr, new_pidfd(t, tg))


def clone_pidfd(t, flags: int, stack: int, ptid: int, ctid: int, tls: int) -> int:
    """clone(2) with CLONE_PIDFD: the pidfd is written to *parent_tid (so CLONE_PARENT_SETTID is EINVAL)."""
    from sentry.syscalls.processes import _clone
    if flags & (CLONE_PARENT_SETTID | CLONE_DETACHED | CLONE_THREAD):
        raise SyscallError(errno.EINVAL)
    tid = _clone(t, flags & ~CLONE_PIDFD, stack, ptid, ctid, tls)
    _after_clone(t, tid, flags, ptid)
    return tid


@syscall("clone3", Support.PARTIAL, "every clone(2) flag, CLONE_PIDFD and CLONE_CLEAR_SIGHAND; set_tid is EPERM "
         "and CLONE_INTO_CGROUP EINVAL (the sandbox has one pid namespace and no cgroup tree)")
def clone3(t, uargs, size):
    """clone3(2)."""
    from sentry.syscalls.processes import _clone
    if size > PAGE:
        raise SyscallError(errno.E2BIG)
    if size < CLONE_ARGS_SIZE_VER0:
        raise SyscallError(errno.EINVAL)
    raw = t.mm.read(uargs, size)
    if any(raw[CLONE_ARGS_SIZE_VER2:]):
        raise SyscallError(errno.E2BIG)
    raw = raw[:CLONE_ARGS_SIZE_VER2].ljust(CLONE_ARGS_SIZE_VER2, b"\0")
    (flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size,
     cgroup) = (int.from_bytes(raw[i:i + 8], "little") for i in range(0, CLONE_ARGS_SIZE_VER2, 8))
    if set_tid_size > 32 or (not set_tid and set_tid_size) or (set_tid and not set_tid_size):
        raise SyscallError(errno.EINVAL)
    if exit_signal & ~CSIGNAL or exit_signal > 64:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_INTO_CGROUP and (cgroup > 0x7FFFFFFF or size < CLONE_ARGS_SIZE_VER2):
        raise SyscallError(errno.EINVAL)
    if (flags & ~(0xFFFFFFFF | CLONE_CLEAR_SIGHAND | CLONE_INTO_CGROUP) or flags & (CLONE_DETACHED | CSIGNAL)
            or flags & (CLONE_SIGHAND | CLONE_CLEAR_SIGHAND) == CLONE_SIGHAND | CLONE_CLEAR_SIGHAND
            or (flags & (CLONE_THREAD | CLONE_PARENT) and exit_signal)
            or (stack == 0 and stack_size) or (stack and not stack_size)):
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_INTO_CGROUP:
        raise SyscallError(errno.EINVAL)
    if set_tid:
        raise SyscallError(errno.EPERM)
    legacy = (flags & 0xFFFFFFFF & ~CLONE_PIDFD) | exit_signal
    tid = _clone(t, legacy, stack + stack_size if stack else 0, parent_tid, child_tid, tls)
    _after_clone(t, tid, flags, pidfd)
    return tid


# -- process_vm_readv / process_vm_writev -----------------------------------------------------------

def _vm_rw(t, pid: int, liov: int, liovcnt: int, riov: int, riovcnt: int, flags: int, write: bool) -> int:
    if flags:
        raise SyscallError(errno.EINVAL)
    if liovcnt > UIO_MAXIOV or riovcnt > UIO_MAXIOV:
        raise SyscallError(errno.EINVAL)
    local = [(b, n) for b, n in t.mm.read_iovec(liov, liovcnt) if n]
    remote = [(b, n) for b, n in t.mm.read_iovec(riov, riovcnt) if n]
    task = t.kernel.tasks.get(s32(pid))
    if task is None or task.tg.mm is None:
        raise SyscallError(errno.ESRCH)
    if not _may_attach(t, task.tg):
        raise SyscallError(errno.EPERM)
    lviews = [v for b, n in local for v in t.mm.iovecs(b, n, not write)]       # EFAULT: nothing moved
    total = sum(len(v) for v in lviews)
    rmm = task.tg.mm
    done = 0
    for base, n in remote:
        n = min(n, total - done)
        if n <= 0:
            break
        got = _accessible(rmm, base, n, write)
        if got:
            rviews = rmm.iovecs(base, got, write)
            if write:
                scatter(rviews, gather(_slice(lviews, done, got)))
            else:
                scatter(_slice(lviews, done, got), gather(rviews))
            done += got
        if got < n:
            break
    if not done and remote and total:
        raise SyscallError(errno.EFAULT)
    return done


def _accessible(mm, addr: int, n: int, write: bool) -> int:
    """How many bytes from `addr` can be moved before the first inaccessible page."""
    try:
        mm.iovecs(addr, n, write)
        return n
    except SyscallError:
        pass
    ok = 0
    page_end = (addr // PAGE + 1) * PAGE
    while ok < n:
        step = min(n - ok, page_end - (addr + ok))
        try:
            mm.iovecs(addr + ok, step, write)
        except SyscallError:
            break
        ok += step
        page_end += PAGE
    return ok


def _slice(views: list[memoryview], skip: int, n: int) -> list[memoryview]:
    out = []
    for v in views:
        if skip >= len(v):
            skip -= len(v)
            continue
        part = v[skip:skip + n]
        skip = 0
        out.append(part)
        n -= len(part)
        if n <= 0:
            break
    return out


@syscall("process_vm_readv")
def process_vm_readv(t, pid, liov, liovcnt, riov, riovcnt, flags):
    """process_vm_readv(2): bytes from another process of the sandbox; short at its first bad page."""
    return _vm_rw(t, pid, liov, liovcnt, riov, riovcnt, flags, False)


@syscall("process_vm_writev")
def process_vm_writev(t, pid, liov, liovcnt, riov, riovcnt, flags):
    """process_vm_writev(2)."""
    return _vm_rw(t, pid, liov, liovcnt, riov, riovcnt, flags, True)
