"""unshare(2), setns(2) and the namespaces clone(2) may create inside the sandbox.

The sandbox is one set of namespaces (the Sentry is its kernel); inside it, a process may
make new ones as far as the Sentry models them:

* UTS (CLONE_NEWUTS): a `UTSNamespace` with its own hostname and domainname, copied from
  the creator's; `ThreadGroup.uts` is None for the sandbox's own namespace, whose names
  live on the Kernel (both have .hostname/.domainname: `uts_of`).  Per process, not per
  thread: clone(CLONE_THREAD|CLONE_NEWUTS) is EINVAL here.
* unshare(CLONE_FILES/CLONE_FS/CLONE_SYSVSEM) and the no-op unshares of a single-threaded
  process (CLONE_THREAD, CLONE_SIGHAND, CLONE_VM) behave as Linux's.
* user (CLONE_NEWUSER): sentry/userns.py (maps; ids seen through them; all-or-nothing
  capabilities inside).  Allowed unprivileged, as Linux.
* PID (CLONE_NEWPID): sentry/pidns.py.
* IPC (CLONE_NEWIPC): an `IPCNamespace` per process (`ThreadGroup.ipcns`, None for the
  sandbox's, which sentry/ipc keeps on the Kernel).  Its `objects` hold the System V message
  queues and semaphore sets (sentry/ipc/: `ids_of`) and the POSIX message queues
  (sentry/ipc/mqueue.py: `mq_ns`), so a new one starts empty; shared memory does not exist
  yet (ENOSYS).
* mount, network, cgroup and time namespaces are not modelled: asking for
  one is EINVAL, what Linux answers when it is built without that namespace (EPERM first
  when the caller lacks CAP_SYS_ADMIN, as Linux checks the capability before).
* setns: the Sentry hands out no namespace file descriptors (/proc/PID/ns is absent), so
  every open fd is EINVAL (not a namespace) and anything else EBADF, as Linux.

CAP_SYS_ADMIN is that of sentry/userns.py's model: euid 0 in the sandbox's user namespace,
and in a namespace made inside, its creator (until it execs) and its root.
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError
from sentry.syscalls.registry import Support, syscall

CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND, CLONE_THREAD = 0x100, 0x200, 0x400, 0x800, 0x10000
CLONE_NEWNS, CLONE_SYSVSEM, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x20000, 0x40000, 0x2000000, 0x4000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWTIME = 0x8000000, 0x10000000, 0x20000000, 0x40000000, 0x80
UNSHARE_FLAGS = (CLONE_THREAD | CLONE_FS | CLONE_NEWNS | CLONE_SIGHAND | CLONE_VM | CLONE_FILES | CLONE_SYSVSEM
                 | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWCGROUP
                 | CLONE_NEWTIME)
MODELLED = CLONE_NEWUTS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWIPC
NOT_MODELLED = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWNET | CLONE_NEWTIME


class UTSNamespace:
    __slots__ = ("hostname", "domainname", "userns")

    def __init__(self, hostname: bytes, domainname: bytes, userns) -> None:
        self.hostname = hostname
        self.domainname = domainname
        self.userns = userns              # the user namespace owning it (sentry/userns.py)


def may_set_uts(t) -> bool:
    """CAP_SYS_ADMIN over the user namespace owning `t`'s UTS namespace (sethostname...)."""
    from sentry.userns import capable
    u = t.tg.uts
    return capable(t, u.userns if u is not None else None)


class IPCNamespace:
    """The IPC objects of a namespace made inside (module comment)."""
    __slots__ = ("userns", "objects")

    def __init__(self, userns) -> None:
        self.userns = userns
        self.objects: dict = {}


def ipc_of(t, kernel_ns):
    """The IPC namespace of `t`'s process: its own, or `kernel_ns` (the sandbox's)."""
    return t.tg.ipcns or kernel_ns


def uts_of(t):
    """The UTS namespace of `t`'s process: its own, or the sandbox's (the Kernel)."""
    return t.tg.uts or t.kernel


def check_new(t, flags: int) -> None:
    """The namespace part of clone/unshare's checks: EPERM without CAP_SYS_ADMIN, EINVAL for
    a namespace the Sentry does not model."""
    from sentry.userns import has_caps
    ns = flags & (MODELLED | NOT_MODELLED)
    if ns and not flags & CLONE_NEWUSER and not has_caps(t):
        raise SyscallError(errno.EPERM)
    if ns & NOT_MODELLED:
        raise SyscallError(errno.EINVAL)


def clone_namespaces(t, flags: int, child_tg) -> None:
    """A clone child's namespaces (process.do_clone, after `check_new`)."""
    parent = t.tg.uts
    child_tg.uts = parent
    child_tg.userns = t.tg.userns
    child_tg.ns_caps = t.tg.ns_caps
    if flags & CLONE_NEWUSER:
        from sentry import userns
        child_tg.userns = userns.create(t)
        child_tg.ns_caps = True
    if flags & CLONE_NEWUTS:
        u = uts_of(t)
        child_tg.uts = UTSNamespace(u.hostname, u.domainname, child_tg.userns)
    child_tg.ipcns = IPCNamespace(child_tg.userns) if flags & CLONE_NEWIPC else t.tg.ipcns
    child_tg.pidns_children = None
    if t.tg.pidns is not None or t.tg.pidns_children is not None or flags & CLONE_NEWPID:
        from sentry.pidns import for_child
        for_child(t, flags, child_tg)


def proc_uts_file(fs, field: str):
    """/proc/sys/kernel/hostname or domainname: the reader's UTS namespace, and a write is
    sethostname/setdomainname's (EPERM without CAP_SYS_ADMIN, EINVAL past 64 bytes; one
    trailing newline dropped, as proc_do_uts_string)."""
    from sentry.vfs.procfs import O_PATH, File, ProcFile, SeqFile

    class UTSSeq(SeqFile):
        def write(self, t, srcs) -> int:
            data = b"".join(bytes(s) for s in srcs)
            if not may_set_uts(t):
                raise SyscallError(errno.EPERM)
            value = data[:-1] if data.endswith(b"\n") else data
            if len(value) > 64:
                raise SyscallError(errno.EINVAL)
            setattr(uts_of(t), field, value.split(b"\0")[0])
            return len(data)

        def pwrite(self, t, srcs, offset: int) -> int:
            return self.write(t, srcs)

    class UTSFile(ProcFile):
        def open(self, t, dentry, flags: int):
            if flags & O_PATH:
                return File(flags, dentry, dentry.mount)
            return UTSSeq(flags, dentry, getattr(uts_of(t), field) + b"\n", writable=True)

    return UTSFile(fs, ("sys", field.encode()), None, None, 0o644)


@syscall("unshare", Support.PARTIAL,
         "CLONE_NEWUTS, CLONE_NEWUSER (uid/gid maps, ids seen through them, all-or-nothing "
         "capabilities inside; no chroot check), CLONE_NEWPID (pids, init, reaping; /proc keeps the "
         "sandbox's numbers, no --mount-proc: mount is EPERM), CLONE_FILES, CLONE_FS, CLONE_SYSVSEM "
         "and the single-thread no-ops; CLONE_NEWIPC (its own SysV message queues and semaphores, and POSIX message queues); "
         "mount, net, cgroup and time namespaces are not modelled (EINVAL)")
def unshare(t, flags):
    """unshare(2)."""
    flags &= 0xFFFFFFFF
    if flags & ~UNSHARE_FLAGS:
        raise SyscallError(errno.EINVAL)
    tg = t.tg
    # check_unshare_flags: sharing threads, handlers or memory with others cannot be undone.
    if flags & (CLONE_THREAD | CLONE_SIGHAND | CLONE_VM):
        if len([x for x in tg.tasks if not x.exited]) > 1:
            raise SyscallError(errno.EINVAL)
    if flags & CLONE_VM and getattr(tg.mm, "users", 1) > 1:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_NEWUSER:
        # unshare_userns implies CLONE_THREAD and CLONE_FS: a lone thread, its fs not shared.
        if len([x for x in tg.tasks if not x.exited]) > 1 or any(
                o is not tg and o.fs is tg.fs and not o.exiting for o in t.kernel.thread_groups.values()):
            raise SyscallError(errno.EINVAL)
    if flags & CLONE_NEWPID and tg.pidns_children is not None and tg.pidns_children is not tg.pidns:
        raise SyscallError(errno.EINVAL)         # copy_pid_ns: its children already go elsewhere
    check_new(t, flags)
    if flags & CLONE_NEWUSER:
        from sentry import userns
        tg.userns = userns.create(t)
        tg.ns_caps = True
    if flags & CLONE_FS:
        from sentry.task import FSContext
        fs = tg.fs
        tg.fs = FSContext(fs.root, fs.cwd, fs.umask)
    if flags & CLONE_FILES and getattr(tg.fds, "users", 1) > 1:
        old = tg.fds
        new = old.fork()
        old.users -= 1
        new.users = 1
        tg.fds = new
        for x in tg.tasks:
            x.fds = new
    if flags & CLONE_NEWUTS:
        u = uts_of(t)
        tg.uts = UTSNamespace(u.hostname, u.domainname, tg.userns)
    if flags & CLONE_NEWIPC:
        tg.ipcns = IPCNamespace(tg.userns)
    if flags & CLONE_NEWPID:
        # Only the children to come enter it (pid_ns_for_children); the caller stays where it is.
        from sentry.pidns import new
        tg.pidns_children = new(t)
    return 0


@syscall("setns", Support.PARTIAL, "no namespace file descriptors exist (/proc/PID/ns is absent): EINVAL "
         "for any open fd, EBADF otherwise")
def setns(t, fd, nstype):
    """setns(2)."""
    t.fds.get(fd & 0xFFFFFFFF if fd < (1 << 31) else -1)
    raise SyscallError(errno.EINVAL)
