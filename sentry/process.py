"""Process lifecycle: clone, thread and process exit, zombies, reaping, reparenting,
and signal generation.  Functions here take the Kernel and mutate its tables;
the syscall handlers in sentry/syscalls/processes.py and signals.py are thin
wrappers around them.

Linux semantics kept: a thread group dies when its last thread exits (or at
once on exit_group / a fatal signal); it stays a zombie, holding its exit
status, until its parent reaps it; a parent that ignores SIGCHLD (or sets
SA_NOCLDWAIT) never has zombies; orphans go to the nearest subreaper or to
PID 1; when PID 1 dies, everything else in the sandbox is killed.
"""
from __future__ import annotations

import errno

from sentry import signals as sg
from sentry.errors import SyscallError
from sentry.task import FSContext, Marker, Task, ThreadGroup

CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_PIDFD, CLONE_PTRACE, CLONE_VFORK, CLONE_PARENT, CLONE_THREAD = 0x1000, 0x2000, 0x4000, 0x8000, 0x10000
CLONE_NEWNS, CLONE_SYSVSEM, CLONE_SETTLS, CLONE_PARENT_SETTID = 0x20000, 0x40000, 0x80000, 0x100000
CLONE_CHILD_CLEARTID, CLONE_DETACHED, CLONE_UNTRACED, CLONE_CHILD_SETTID = 0x200000, 0x400000, 0x800000, 0x1000000
CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_IO = (
    0x2000000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000, 0x80000000)
NAMESPACE_FLAGS = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET

from sentry.pidns import any_init, reaper, to_ns  # noqa: E402  (PID namespaces made inside)


def do_clone(k, t: Task, flags: int, stack: int, ptid: int, ctid: int, tls: int) -> int:
    """clone(2) for threads and processes; returns the child's tid in the sandbox."""
    csig = flags & 0xFF
    if flags & CLONE_SIGHAND and not flags & CLONE_VM:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_THREAD and not flags & CLONE_SIGHAND:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_FS and flags & CLONE_NEWNS:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_SETTLS and tls >= t.mm.top:
        # do_set_thread_area_64: a TLS base outside the user address space is EPERM (as
        # arch_prctl); set as is, the host refused the child's registers at its first resume.
        raise SyscallError(errno.EPERM)
    if flags & NAMESPACE_FLAGS:
        # New namespaces: those the Sentry models (syscalls/namespaces.py), else EPERM/EINVAL.
        from sentry.syscalls.namespaces import check_new
        if flags & CLONE_THREAD or (flags & CLONE_NEWUSER and flags & CLONE_FS):
            raise SyscallError(errno.EINVAL)
        check_new(t, flags)
    if csig > 64:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_PARENT and any_init(k, t.tg):
        raise SyscallError(errno.EINVAL)         # an init makes no siblings (copy_process)
    if t.tg.pidns is not None or t.tg.pidns_children is not None:
        from sentry.pidns import check_clone
        check_clone(t, flags)                    # PID namespaces made inside (sentry/pidns.py)
    if len(k.tasks) >= t.tg.rlimits[6][0] and t.tg.creds.ruid != 0:
        raise SyscallError(errno.EAGAIN)
    limit = k.pids_limit
    if limit is not None and limit > 0 and len(k.tasks) >= limit:
        raise SyscallError(errno.EAGAIN)
    parent_tg = t.tg
    regs = t.ctx.regs
    if flags & CLONE_THREAD:
        tg = parent_tg
        mm = tg.mm
        ctx = mm.space.new_context()
        tid = k.alloc_id()
    else:
        if flags & CLONE_VM:
            mm = parent_tg.mm
            mm.users += 1
            ctx = mm.space.new_context()
        else:
            mm = parent_tg.mm.fork()
            ctx = mm.space.new_context()
        tid = k.alloc_id()
        fds = parent_tg.fds if flags & CLONE_FILES else parent_tg.fds.fork()
        if flags & CLONE_FILES:
            fds.users = getattr(fds, "users", 1) + 1
        pfs = parent_tg.fs
        fs = pfs if flags & CLONE_FS else FSContext(pfs.root, pfs.cwd, pfs.umask)
        real_parent = parent_tg.parent if flags & CLONE_PARENT else parent_tg
        tg = ThreadGroup(k, tid, mm, fds, fs, parent_tg.creds.copy(), real_parent)
        tg.rlimits = [list(r) for r in parent_tg.rlimits]
        if flags & CLONE_SIGHAND:
            tg.sigactions = parent_tg.sigactions
        else:
            tg.sigactions = list(parent_tg.sigactions)       # SignalActions are immutable: shared
        tg.pgid, tg.sid = parent_tg.pgid, parent_tg.sid
        tg.ctty = parent_tg.ctty
        tg.no_new_privs = parent_tg.no_new_privs
        from sentry.syscalls.namespaces import clone_namespaces
        clone_namespaces(t, flags, tg)
        tg.comm, tg.argv, tg.envp, tg.exe = parent_tg.comm, parent_tg.argv, parent_tg.envp, parent_tg.exe
        # A sibling takes the caller's exit signal, not the one asked for (copy_process): a
        # process cannot give its parent -- maybe an init -- a child that dies with SIGKILL.
        tg.exit_signal = parent_tg.exit_signal if flags & CLONE_PARENT else csig
        tg.start_monotonic = k.now()
        if real_parent is not None:
            real_parent.children.append(tg)
        k.thread_groups[tid] = tg
    child = Task(k, tid, tg, ctx)
    child.sigmask = t.sigmask
    child.seccomp = t.seccomp             # seccomp filters are inherited (copy_seccomp)
    # copy_process: a thread sharing the address space starts with no alternate signal stack
    # (sas_ss_reset); fork and vfork children inherit it.  Handing a new thread its creator's
    # altstack makes two threads run signal handlers on one stack (Go adopts an inherited one).
    share = (flags & (CLONE_VM | CLONE_VFORK)) == CLONE_VM
    child.altstack = (0, sg.SS_DISABLE, 0) if share else t.altstack
    if not flags & CLONE_THREAD:
        tg.leader = child
    tg.tasks.append(child)
    k.tasks[tid] = child
    if flags & CLONE_THREAD and tg.pidns is not None:
        from sentry.pidns import register
        register(tg.pidns, tid)
    # Registers: the parent's, returning 0, on the new stack and TLS if given.
    ctx.set_regs(regs)
    cr = ctx.regs
    cr.rax = 0
    if stack:
        cr.rsp = stack
    if flags & CLONE_SETTLS:
        cr.fs_base = tls
    try:
        ctx.set_fpstate(t.ctx.get_fpstate())
    except Exception as e:       # a dead stub thread: the child will die at its first stop
        k.debug(f"clone: copying FPU state failed: {e}")
    if flags & CLONE_PARENT_SETTID:
        t.mm.write_u32(ptid, tid if t.tg.pidns is None else to_ns(t.tg.pidns, tid))
    if flags & CLONE_CHILD_SETTID:
        child.mm.write_u32(ctid, tid if tg.pidns is None else to_ns(tg.pidns, tid))
    if flags & CLONE_CHILD_CLEARTID:
        child.clear_child_tid = ctid
    k.enqueue(child)
    if flags & CLONE_VFORK:
        child.vfork_parent = t
        t.begin(Marker(tid))          # the vfork parent waits for this child (processes._clone)
    return tid


def vfork_done(k, child: Task) -> None:
    """The vfork child exec'd or exited: its parent may run again."""
    p = child.vfork_parent
    if p is not None:
        child.vfork_parent = None
        p.vfork_released = True
        if p.in_syscall and not p.exited:
            k.wake(p)


def exit_task(k, t: Task, wait_status: int) -> None:
    """exit(2) of one thread: the process ends only with its last thread."""
    tg = t.tg
    if len([x for x in tg.tasks if not x.exited]) <= 1:
        exit_thread_group(k, tg, wait_status)
        return
    _release_thread(k, t)
    tg.tasks.remove(t)


def _release_thread(k, t: Task) -> None:
    """Thread teardown that user space can see: CLONE_CHILD_CLEARTID and the robust list."""
    if t.exited:
        return
    from sentry import futex
    futex.exit_robust_list(k, t)          # owners of robust mutexes died: FUTEX_OWNER_DIED
    vfork_done(k, t)
    if t.clear_child_tid and t.tg.mm is not None and t.tg.mm.users > 0 and not t.tg.mm.space.released:
        try:
            t.mm.write_u32(t.clear_child_tid, 0)
            from sentry import futex
            futex.wake(k, t.mm, t.clear_child_tid, 1, 0xFFFFFFFF, shared=False)
        except SyscallError:
            pass
    k.task_gone(t)
    if t.ctx is not None and t.ctx.address_space is not None and not t.ctx.address_space.released:
        t.ctx.address_space.release_context(t.ctx)


def exit_thread_group(k, tg: ThreadGroup, wait_status: int) -> None:
    """Every thread of `tg` ends; it becomes a zombie (or is reaped at once); its parent hears."""
    if tg.exiting:
        return
    tg.exiting = True
    tg.exit_status = wait_status
    if tg.mm is not None and not tg.mm.space.released:
        tg.maxrss_kb = max(tg.maxrss_kb, tg.mm.resident_bytes() // 1024)
    for task in list(tg.tasks):
        _release_thread(k, task)
    tg.tasks.clear()
    if getattr(tg, "sem_undo", None):
        from sentry.ipc.sem import exit_sem
        exit_sem(tg)                             # SEM_UNDO adjustments (Linux's exit_sem)
    mm = tg.mm
    if mm is not None:
        mm.users -= 1
        if mm.users == 0:
            # The address space's CPU time stays with the process (its clock ends with it).
            tg.utime += mm.space.cpu_time_ns()
            mm.release()
    fds = tg.fds
    users = getattr(fds, "users", 1) - 1
    fds.users = users
    if users <= 0:
        fds.close_all()
    if tg is k.init:
        k.init_exited(wait_status)
        return
    if tg.pidns is not None and tg.pidns.init is tg:
        from sentry.pidns import init_exited
        init_exited(k, tg)                       # the init of a PID namespace made inside
    _parent_death_signals(k, tg)
    _reparent_children(k, tg)
    parent = tg.parent
    tg.zombie = True
    on_exit = tg.on_exit
    if on_exit is not None:
        on_exit(wait_status)
    if parent is None or parent.exiting:
        reap(k, tg)
        return
    _notify_parent(k, tg, parent)


def _notify_parent(k, tg: ThreadGroup, parent: ThreadGroup) -> None:
    """A zombie tells its parent (do_notify_parent): its exit signal, a wake-up of wait, and
    no zombie at all when the parent ignores SIGCHLD or set SA_NOCLDWAIT."""
    act = parent.sigactions[sg.SIGCHLD]
    auto_reap = tg.exit_signal == sg.SIGCHLD and (act.handler == sg.SIG_IGN or act.flags & sg.SA_NOCLDWAIT)
    if tg.exit_signal:
        code, status = child_code(tg.exit_status)
        send_to_group(k, parent, tg.exit_signal,
                      sg.siginfo(tg.exit_signal, code, pid=to_ns(parent.pidns, tg.tgid), uid=tg.creds.ruid, status=status,
                                 utime=tg.utime // 10_000_000, stime=tg.stime // 10_000_000))  # USER_HZ ticks
    parent.child_waitq.wake_all()
    if auto_reap:
        reap(k, tg)


def child_code(wait_status: int) -> tuple[int, int]:
    if wait_status & 0x7F:
        return (sg.CLD_DUMPED if wait_status & 0x80 else sg.CLD_KILLED), wait_status & 0x7F
    return sg.CLD_EXITED, (wait_status >> 8) & 0xFF


def _parent_death_signals(k, tg: ThreadGroup) -> None:
    """PR_SET_PDEATHSIG: children asked for a signal when their parent dies."""
    for c in list(tg.children):
        for t in c.tasks:
            if t.pdeathsig and not t.exited:
                send_to_task(k, t, t.pdeathsig, sg.siginfo(t.pdeathsig, sg.SI_USER, pid=tg.tgid))


def _reparent_children(k, tg: ThreadGroup) -> None:
    if not tg.children:
        return
    new_parent = None
    p = tg.parent
    while p is not None:
        if p.subreaper and not p.exiting:
            new_parent = p
            break
        p = p.parent
    if new_parent is None:
        new_parent = k.init if tg.pidns is None else reaper(k, tg)
    children, tg.children = tg.children, []
    for c in children:
        c.parent = new_parent
        c.exit_signal = sg.SIGCHLD          # reparent_leader: "we don't want people slaying init"
        if new_parent is not None and not new_parent.exiting:
            new_parent.children.append(c)
            if c.zombie:
                _notify_parent(k, c, new_parent)      # an adopted zombie is announced anew
        elif c.zombie:
            reap(k, c)


def reap(k, tg: ThreadGroup) -> None:
    """Forget a zombie: its id is free again."""
    if tg.reaped:
        return
    tg.reaped = True
    if tg.parent is not None:
        try:
            tg.parent.children.remove(tg)
        except ValueError:
            pass
        tg.parent.cutime += tg.utime + tg.cutime
        tg.parent.cstime += tg.stime + tg.cstime
        tg.parent.children_maxrss_kb = max(tg.parent.children_maxrss_kb, tg.maxrss_kb,
                                           tg.children_maxrss_kb)
    k.thread_groups.pop(tg.tgid, None)


# -- signal generation ---------------------------------------------------------

def _init_keeps(k, tg: ThreadGroup, sig: int, force: bool) -> bool:
    """A namespace's init (the sandbox's or one made inside: SIGNAL_UNKILLABLE) takes SIGKILL
    and SIGSTOP only when they are forced: sent from outside its namespace (the host, `runsc-py
    kill`, a parent in an ancestor namespace) or by the kernel itself (RLIMIT_CPU).  Whatever
    path a signal comes by from inside -- kill, tgkill, sigqueue, pidfd, an orphan's exit
    signal, a timer, a message queue -- it is dropped at generation, as sig_task_ignored does.
    (Other default-action signals are queued, so sigtimedwait can take them, and dropped at
    delivery: SignalDelivery.deliver_signals.)"""
    return not force and (sig == sg.SIGKILL or sig == sg.SIGSTOP) and any_init(k, tg)


def send_to_task(k, t: Task, sig: int, info: bytes, force: bool = False) -> None:
    """Thread-directed (tkill/tgkill, synchronous faults); `force`: see _init_keeps."""
    tg = t.tg
    if _init_keeps(k, tg, sig, force):
        return
    if _preprocess(k, tg, sig):
        return
    if sig < 32 and sig in t.pending:
        return
    t.pending.setdefault(sig, []).append(info)
    _notify(k, t, sig)
    if tg.signalfd_waitq is not None:
        _signalfd_notify(tg)


def send_to_group(k, tg: ThreadGroup, sig: int, info: bytes, force: bool = False) -> None:
    """Process-directed (kill); `force`: see _init_keeps."""
    if tg.exiting or _init_keeps(k, tg, sig, force):
        return
    if _preprocess(k, tg, sig):
        return
    if sig < 32 and sig in tg.shared_pending:
        return
    tg.shared_pending.setdefault(sig, []).append(info)
    if tg.signalfd_waitq is not None:
        _signalfd_notify(tg)
    # Prefer a thread that does not block it.
    for t in tg.tasks:
        if not t.exited and not t.sigmask & sg.bit(sig):
            _notify(k, t, sig)
            return


def _preprocess(k, tg: ThreadGroup, sig: int) -> bool:
    """Signals acting at generation time; True if the signal is consumed here."""
    if tg.exiting:
        return True
    if sig == sg.SIGKILL:
        k.exit_thread_group(tg, sg.SIGKILL)
        return True
    if sig == sg.SIGCONT:
        for s in sg.STOP:
            tg.shared_pending.pop(s, None)
            for t in tg.tasks:
                t.pending.pop(s, None)
        if tg.group_stopped:
            continue_group(k, tg)
    elif sig in sg.STOP:
        tg.shared_pending.pop(sg.SIGCONT, None)
        for t in tg.tasks:
            t.pending.pop(sg.SIGCONT, None)
    # Ignored signals are dropped at generation unless blocked -- counting the mask that
    # sigtimedwait/sigsuspend saved (Linux's real_blocked): a waiter in sigtimedwait must get them.
    if sg.is_ignored(tg, sig) and not all((t.sigmask | (t.saved_sigmask or 0)) & sg.bit(sig)
                                          for t in tg.tasks if not t.exited):
        return True
    return False


def _signalfd_notify(tg: ThreadGroup) -> None:
    """signalfd_notify: a signal was queued; wake the readers and pollers of the process's
    signalfds (sentry/syscalls/signalfd.py), which look again at what is pending."""
    tg.signalfd_waitq.wake_all(0x41)        # POLLIN | POLLRDNORM


def _notify(k, t: Task, sig: int) -> None:
    if t.sigmask & sg.bit(sig) or t.exited:
        return
    if t.in_syscall:
        k.interrupt(t)
    elif t.running:
        k.platform.kick(t.ctx)


def stop_group(k, tg: ThreadGroup, sig: int) -> None:
    tg.group_stopped = True
    tg.stop_state = "stopped"
    tg.stop_sig = sig
    tg.stop_reported = False
    for t in tg.tasks:
        if t.running:
            k.platform.kick(t.ctx)
    parent = tg.parent
    if parent is not None and not parent.exiting:
        if not parent.sigactions[sg.SIGCHLD].flags & sg.SA_NOCLDSTOP:
            send_to_group(k, parent, sg.SIGCHLD, sg.siginfo(sg.SIGCHLD, sg.CLD_STOPPED, pid=tg.tgid,
                                                            uid=tg.creds.ruid, status=sig))
        parent.child_waitq.wake_all()


def continue_group(k, tg: ThreadGroup) -> None:
    tg.group_stopped = False
    tg.stop_state = "continued"
    tg.stop_reported = False
    tg.stop_waitq.wake_all()
    parent = tg.parent
    if parent is not None and not parent.exiting:
        if not parent.sigactions[sg.SIGCHLD].flags & sg.SA_NOCLDSTOP:
            send_to_group(k, parent, sg.SIGCHLD, sg.siginfo(sg.SIGCHLD, sg.CLD_CONTINUED, pid=tg.tgid,
                                                            uid=tg.creds.ruid, status=sg.SIGCONT))
        parent.child_waitq.wake_all()


# -- new processes from outside (the container's init, runsc-py exec) -------------------

class ProcessSpawnError(Exception):
    """A process could not be started: one line for the user, and runc's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def create_process(k, args: list[str], env: list[str], cwd: str, uid: int, gid: int, groups: list[int],
                   stdio: list[int], rlimits: dict, parent: ThreadGroup | None = None,
                   root=None) -> ThreadGroup:
    """A new thread group running `args`, its fds 0-2 dups of the host fds in `stdio`; queued to run.
    `root`: its root directory (a pod member's tree, sentry/pod.py); the sandbox's root by default."""
    import fcntl
    import os
    from sentry.exec import exec_path, lookup_path
    from sentry.task import RLIMIT_NAMES, Credentials
    from sentry.vfs.file import O_ACCMODE, FDTable, HostFDFile
    from sentry.vfs.walk import AT_FDCWD
    fds = FDTable()
    for app_fd, host_fd in enumerate(stdio):
        try:
            dup = fcntl.fcntl(host_fd, fcntl.F_DUPFD_CLOEXEC, 10)
        except OSError:
            continue
        acc = fcntl.fcntl(dup, fcntl.F_GETFL) & (O_ACCMODE | os.O_APPEND | os.O_NONBLOCK)
        dentry = None
        if os.isatty(dup):
            from sentry.vfs.devfs import attach_host_tty
            dentry = attach_host_tty(k.vfs, dup, root)
        fds.install_at(app_fd, HostFDFile(dup, acc | 0o100000, dentry, dentry.mount if dentry else None,
                                          host_offset=True), False)
    root = k.vfs.root if root is None else root
    tgid = k.alloc_id()
    tg = ThreadGroup(k, tgid, None, fds, FSContext(root, root), Credentials(uid, gid, groups), parent)
    for name, (soft, hard) in rlimits.items():
        if name in RLIMIT_NAMES:
            tg.rlimits[RLIMIT_NAMES.index(name)] = [soft, hard]
    tg.start_monotonic = k.now()
    t = Task(k, tgid, tg, None)
    tg.tasks.append(t)
    tg.leader = t

    def fail(msg: str, code: int):
        fds.close_all()
        raise ProcessSpawnError(msg, code)

    try:
        d = k.vfs.resolve(t, AT_FDCWD, cwd.encode())
        if not d.inode.is_dir:
            raise SyscallError(errno.ENOTDIR)
        tg.fs.cwd = d
    except SyscallError as e:
        fail(f"chdir to cwd ({cwd!r}) set in config.json failed: {os.strerror(e.errno)}", 1)
    argv = [a.encode() for a in args]
    envp = [e.encode() for e in env]
    try:
        path = lookup_path(t, argv[0], envp)
    except SyscallError as e:
        if e.errno == errno.ENOENT and b"/" not in argv[0]:
            fail(f'exec: "{args[0]}": executable file not found in $PATH', 127)
        fail(f'exec: "{args[0]}": {os.strerror(e.errno)}', 126 if e.errno == errno.EACCES else 127)
    try:
        exec_path(t, path, argv, envp)
    except SyscallError as e:
        fail(f'exec: "{args[0]}": {os.strerror(e.errno)}', 126 if e.errno in (errno.EACCES, errno.ENOEXEC) else 127)
    k.tasks[tgid] = t
    k.thread_groups[tgid] = tg
    if parent is not None:
        parent.children.append(tg)
    k.cpu_limits.changed()            # process.rlimits may set RLIMIT_CPU
    k.enqueue(t)
    return tg
