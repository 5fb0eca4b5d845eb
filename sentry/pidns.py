"""PID namespaces made inside the sandbox (clone/unshare with CLONE_NEWPID).

The Sentry numbers every task once, in the sandbox's own PID namespace (`Task.tid`,
`ThreadGroup.tgid`: the "global" ids, never reused: Kernel.alloc_id only counts up).  A
process in a namespace made inside has, besides, one number in that namespace and in each
namespace between it and the sandbox's (`PidNamespace.g2n`/`n2g`); the first process of a
namespace is its pid 1, its init.  `ThreadGroup.pidns` is the namespace a process lives in
(None: the sandbox's) and `pidns_children` the one its next children go to
(unshare(CLONE_NEWPID) changes only that one, as Linux).

What the application sees through `to_ns` / `from_ns`: getpid, gettid, getppid (0 for a
parent outside its namespace), clone's result, wait4/waitid, kill/tkill/tgkill's targets,
SIGCHLD's si_pid, the process-group calls.  A namespace's init: unhandled signals sent from
inside its namespace do not kill it; orphans of the namespace are reparented to it; when it
exits, every other process of the namespace is killed with SIGKILL and a later fork into
the namespace fails with ENOMEM.  Not modelled: /proc shows the sandbox's numbers (as a
/proc mounted before the namespace does; mount(2) is EPERM in the sandbox, so no
`--mount-proc`), si_pid of kill/sigqueue signals, and pid_max per namespace.
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError

MAX_LEVEL = 32                       # MAX_PID_NS_LEVEL


class PidNamespace:
    __slots__ = ("parent", "level", "g2n", "n2g", "next", "init", "dead", "__weakref__")

    def __init__(self, parent: "PidNamespace | None") -> None:
        self.parent = parent
        self.level = (parent.level if parent is not None else 0) + 1
        self.g2n: dict[int, int] = {}
        self.n2g: dict[int, int] = {}
        self.next = 1
        self.init = None                  # its pid 1 (a ThreadGroup), once created
        self.dead = False                 # its init has exited: no new process (ENOMEM)


def new(t) -> PidNamespace:
    parent = t.tg.pidns_children if t.tg.pidns_children is not None else t.tg.pidns
    if parent is not None and parent.level >= MAX_LEVEL:
        raise SyscallError(errno.ENOSPC)
    return PidNamespace(parent)


def check_clone(t, flags: int) -> None:
    """clone's PID-namespace checks, before anything is made: a thread stays in its process's
    namespace (EINVAL after unshare(CLONE_NEWPID)), and no process enters a namespace whose
    init has exited (ENOMEM)."""
    tg = t.tg
    target = tg.pidns_children if tg.pidns_children is not None else tg.pidns
    if flags & 0x10000:                          # CLONE_THREAD
        if target is not tg.pidns:
            raise SyscallError(errno.EINVAL)
        return
    if flags & 0x20000000:                       # CLONE_NEWPID
        if target is not tg.pidns:
            raise SyscallError(errno.EINVAL)     # copy_pid_ns: after unshare(CLONE_NEWPID)
        if target is not None and target.level >= MAX_LEVEL:
            raise SyscallError(errno.ENOSPC)
    if not flags & 0x20000000 and target is not None and target.dead:
        raise SyscallError(errno.ENOMEM)


def for_child(t, flags: int, child_tg) -> None:
    """A new process's PID namespace (namespaces.clone_namespaces): numbered in it."""
    tg = t.tg
    ns = tg.pidns_children if tg.pidns_children is not None else tg.pidns
    if flags & 0x20000000:                       # CLONE_NEWPID: its first process
        ns = new(t)
    child_tg.pidns = ns
    if ns is not None:
        register(ns, child_tg.tgid, child_tg)


def register(ns: PidNamespace, gid: int, tg=None) -> None:
    """Number global id `gid` in `ns` and every namespace above it (alloc_pid); `tg`: the new
    process, which becomes the init of a namespace it is the first of."""
    if ns.dead:
        raise SyscallError(errno.ENOMEM)
    n = ns
    while n is not None:
        pid = n.next
        n.next += 1
        n.g2n[gid] = pid
        n.n2g[pid] = gid
        if pid == 1 and tg is not None:
            n.init = tg
        n = n.parent


def to_ns(ns: "PidNamespace | None", gid: int) -> int:
    """Global id `gid` as namespace `ns` numbers it; 0 when it is not in `ns`."""
    if ns is None:
        return gid
    return ns.g2n.get(gid, 0)


def from_ns(ns: "PidNamespace | None", pid: int) -> int | None:
    """Pid `pid` of namespace `ns` as a global id; None when `ns` has no such pid."""
    if ns is None:
        return pid
    return ns.n2g.get(pid)


NO_SUCH_ID = 0x7FFFFFFF                   # a global id never given (ids count up from 1)


def kill_target(ns: "PidNamespace | None", pid: int) -> int:
    """kill/wait's pid argument (> 0 a process, < -1 a group) from namespace `ns` to global ids."""
    if ns is None or pid in (0, -1):
        return pid
    g = ns.n2g.get(abs(pid), NO_SUCH_ID)
    return g if pid > 0 else -g


def visible(ns: "PidNamespace | None", tg) -> bool:
    """Is process `tg` in namespace `ns` (or below it)?"""
    return ns is None or tg.tgid in ns.g2n


def is_init(tg) -> bool:
    """Is `tg` the init of the namespace it lives in (not the sandbox's: Kernel.init)?"""
    ns = tg.pidns
    return ns is not None and ns.init is tg


def any_init(k, tg) -> bool:
    """Is `tg` the init of any PID namespace: the sandbox's (Kernel.init) or one made inside?"""
    return tg is k.init or is_init(tg)


def sent_from_outside(sender_tg, target_tg) -> bool:
    """Linux's `force` for a signal a process sends (kernel/signal.c, send_signal_locked): the
    sender has no pid in the target's namespace, so it is an ancestor's process, to which the
    namespace's init is killable."""
    ns = target_tg.pidns
    return ns is not None and sender_tg.tgid not in ns.g2n


def init_exited(k, tg) -> None:
    """The init of a namespace made inside exited (zap_pid_ns_processes): every other process
    of the namespace gets SIGKILL, and no process enters it any more."""
    ns = tg.pidns
    ns.dead = True
    for g in list(k.thread_groups.values()):
        if g is not tg and not g.exiting and g.tgid in ns.g2n:
            k.exit_thread_group(g, 9)


def reaper(k, tg):
    """The process that adopts `tg`'s orphans when no subreaper does: its namespace's init."""
    ns = tg.pidns
    if ns is not None and ns.init is not None and ns.init is not tg and not ns.init.exiting:
        return ns.init
    return k.init
