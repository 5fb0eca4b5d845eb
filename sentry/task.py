"""Tasks and thread groups.

`Task` is one application thread (Linux's task_struct); `ThreadGroup`
is a process: the address space (`mm`), file descriptors, filesystem
context (root, cwd, umask), credentials and resource limits its threads
share.  IDs are the sandbox's own PID namespace: the container's first
process is PID 1, and nothing here ever reveals a host pid.
"""
from __future__ import annotations

import errno
from typing import NamedTuple, TypeVar

from sentry.errors import SyscallError
from sentry.waitq import WaitQueue

C = TypeVar("C", bound="Continuation")
RLIM_INFINITY = 0xFFFFFFFFFFFFFFFF

RLIMIT_NAMES = ["RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
                "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
                "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME"]


def default_rlimits() -> list[list[int]]:
    inf = RLIM_INFINITY
    lim = [[inf, inf] for _ in RLIMIT_NAMES]
    lim[3] = [8 << 20, inf]          # STACK
    lim[4] = [0, inf]                # CORE
    lim[6] = [63439, 63439]          # NPROC
    lim[7] = [1024, 4096]            # NOFILE (hard limited: the Sentry's own host limit is 20000)
    lim[8] = [8 << 20, 8 << 20]      # MEMLOCK
    lim[11] = [63439, 63439]         # SIGPENDING
    lim[12] = [819200, 819200]       # MSGQUEUE
    lim[13] = [0, 0]                 # NICE (Linux's INIT_RLIMITS: no raising priority unprivileged)
    lim[14] = [0, 0]                 # RTPRIO (no real-time policy unprivileged)
    return lim


class Credentials:
    __slots__ = ("ruid", "euid", "suid", "fsuid", "rgid", "egid", "sgid", "fsgid", "groups")

    def __init__(self, uid: int, gid: int, groups: list[int]) -> None:
        self.ruid = self.euid = self.suid = self.fsuid = uid
        self.rgid = self.egid = self.sgid = self.fsgid = gid
        self.groups = list(groups)

    def copy(self) -> "Credentials":
        c = Credentials.__new__(Credentials)
        for k in Credentials.__slots__:
            v = getattr(self, k)
            setattr(c, k, list(v) if isinstance(v, list) else v)
        return c


class FSContext:
    """root, cwd and umask (shared by CLONE_FS)."""
    __slots__ = ("root", "cwd", "umask")

    def __init__(self, root, cwd, umask: int = 0o022) -> None:
        self.root = root
        self.cwd = cwd
        self.umask = umask


class SignalAction(NamedTuple):
    """One signal's disposition (struct k_sigaction).  Immutable: sigaction(2) and the resets
    replace an entry, so fork copies a thread group's table as a list of shared tuples."""
    handler: int = 0
    flags: int = 0
    restorer: int = 0
    mask: int = 0


_DEFAULT_ACTIONS = [SignalAction()] * 65


class ThreadGroup:
    def __init__(self, kernel, tgid: int, mm, fds, fs: FSContext, creds: Credentials, parent=None) -> None:
        self.kernel = kernel
        self.tgid = tgid
        self.mm = mm
        self.fds = fds
        self.fs = fs
        self.creds = creds
        self.parent = parent
        self.tasks: list[Task] = []
        self.leader: Task | None = None
        self.rlimits = default_rlimits()
        self.sigactions = list(_DEFAULT_ACTIONS)
        self.exiting = False
        self.exit_status: int | None = None      # wait status once dead
        self.comm = b""
        self.argv: list[bytes] = []
        self.envp: list[bytes] = []
        self.exe = b""
        self.pgid = tgid
        self.sid = tgid
        self.children: list[ThreadGroup] = []
        self.child_waitq = WaitQueue()         # parents in wait4/waitid park here
        self.zombie = False
        self.reaped = False
        self.shared_pending: dict[int, list] = {}   # signo -> queued siginfos (process-directed)
        self.signalfd_waitq = None             # signalfd readers/pollers park here (syscalls/signalfd.py)
        self.group_stopped = False
        self.stop_state = None                 # job control: None | "stopped" | "continued" (for waiters)
        self.stop_reported = True
        self.vfork_waitq = WaitQueue()
        self.exit_signal = 17                  # SIGCHLD unless clone() said otherwise
        self.subreaper = False
        self.start_monotonic = 0.0
        self.utime = self.stime = 0
        self.cutime = self.cstime = 0
        self.nice = 0                          # setpriority(2)
        self.execed = False                    # has called execve (setpgid of a child: EACCES)
        self.dumpable = 1                      # prctl(PR_SET_DUMPABLE)
        self.no_new_privs = False              # prctl(PR_SET_NO_NEW_PRIVS)
        self.uts = None                        # its own UTS namespace (syscalls/namespaces.py), or None
        self.userns = None                     # its user namespace (sentry/userns.py), None: the sandbox's
        self.ns_caps = False                   # holds the capabilities of that namespace (not the sandbox's)
        self.pidns = None                      # its PID namespace (sentry/pidns.py), None: the sandbox's
        self.pidns_children = None             # where its next children go, if not there (unshare)
        self.ipcns = None                      # its IPC namespace (syscalls/namespaces.py), None: the sandbox's
        self.ctty = None                       # controlling terminal (vfs/pty.py)
        self.stop_waitq = WaitQueue()          # its threads parked by a group stop
        self.on_exit = None                    # called when the process has exited (exec of a pod member...)
        self.maxrss_kb = 0                     # getrusage ru_maxrss of the exited process
        self.children_maxrss_kb = 0            # the largest of its waited-for descendants
        self.personality = 0                   # personality(2)
        self.itimers: list = [None, None, None]   # ITIMER_REAL/VIRTUAL/PROF (syscalls/timers.Timer)
        self.posix_timers: dict = {}            # timer_create id -> syscalls/timers.Timer


class Task:
    """One application thread, bound to a platform context."""

    def __init__(self, kernel, tid: int, tg: ThreadGroup, ctx) -> None:
        self.kernel = kernel
        self.tid = tid
        self.tg = tg
        self.ctx = ctx
        self.mm = tg.mm
        self.fds = tg.fds
        self.sigmask = 0
        self.clear_child_tid = 0
        self.robust_list = 0
        self.robust_len = 0
        self.cont: Continuation | None = None   # what the parked syscall has done so far
        self.wait_queues: list = []      # queues this task is parked on
        self.deadline: float | None = None
        self.timer_handle = None
        self.host_wait: tuple[int, int] | None = None
        self.timed_out = False
        self.exited = False
        self.in_syscall = False          # parked inside a syscall; re-dispatch when woken
        self.pending: dict[int, list] = {}   # signo -> queued siginfos (thread-directed)
        self.altstack = (0, 2, 0)        # ss_sp, ss_flags (SS_DISABLE), ss_size
        self.saved_sigmask: int | None = None   # restored after a handler (sigsuspend, ppoll)
        self.vfork_parent: "Task | None" = None
        self.pdeathsig = 0
        self.running = False
        self.interrupted = False
        self.uninterruptible = False
        self.in_runq = False
        self.forced: set[int] = set()    # synchronous signals that kill even init
        self.vfork_released = False
        self.sched_attr = (0, 0, False)  # sched_setattr: policy (SCHED_OTHER), priority, reset-on-fork
        self.ioprio = 0                  # ioprio_set(2)
        self.seccomp = None              # seccomp filters (sentry/seccomp_bpf.py): None, STRICT or a tuple
        if ctx is not None:
            ctx.task = self

    @property
    def creds(self) -> Credentials:
        return self.tg.creds

    def block(self, queues=(), deadline: float | None = None, host_fd: tuple[int, int] | None = None):
        """Park this task until a queue wakes it, the deadline (CLOCK_MONOTONIC seconds) passes,
        or the host fd becomes ready; then the syscall runs again.  Never returns."""
        raise Blocked(tuple(queues), deadline, host_fd)

    @property
    def syscall_state(self):
        """Read-only old name of `cont`, for code not yet moved to typed continuations."""
        return self.cont

    def resume(self, cls: "type[C]") -> "C | None":
        """The continuation of the syscall being re-run, if it parked with a `cls` (else None)."""
        c = self.cont
        if type(c) is cls and c.nr == self.ctx.regs.orig_rax:
            return c
        return None

    def begin(self, c: "C") -> "C":
        """Start recording `c` for the current syscall (it survives the park; kernel.py ends it)."""
        c.nr = self.ctx.regs.orig_rax
        self.cont = c
        return c

    def check_rlimit_nofile(self, fd: int) -> None:
        if fd >= self.tg.rlimits[7][0]:
            raise SyscallError(errno.EMFILE)


class Continuation:
    """What a blocking syscall has done so far, kept while it is parked.

    A handler that must wait raises `Blocked`; when woken it runs again from
    its saved registers and picks its continuation up with `t.resume(Cls)`.
    One typed object per syscall (never a shared slot): the kernel ends it
    when the call completes (`Kernel._completed`) and asks it, when a signal
    ends the wait (`Kernel._finish_interrupted`), what Linux returns then:

    * `interrupted()`: a result that wins over EINTR and over a restart --
      a transfer that already moved bytes returns their count, as Linux's
      pipe_write / unix_stream_sendmsg / recvmsg(MSG_WAITALL) do.
    * `eintr(t)`: side effects of failing with EINTR (nanosleep's `rem`).
    * `restart_keeps`: the call restarts with no handler run (a stop, an
      ignored signal) and carries on where it was, as restart_syscall(2)
      does for sleeps, poll and futex timeouts; any other restart starts over.
    """
    __slots__ = ("nr",)
    restart_keeps = False

    def interrupted(self) -> int | None:
        return None

    def eintr(self, t) -> None:
        pass


class Transfer(Continuation):
    """read/write/send/recv: the bytes moved so far; once any moved, a signal returns them."""
    __slots__ = ("done", "files_sent")

    def __init__(self) -> None:
        self.done = 0
        self.files_sent = False

    def interrupted(self) -> int | None:
        return self.done or None


class Deadline(Continuation):
    """A wait with a timeout (poll, select, epoll_wait, rt_sigtimedwait, futex): the absolute
    CLOCK_MONOTONIC deadline in seconds (None: no timeout), fixed when the wait began."""
    __slots__ = ("deadline",)
    restart_keeps = True

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline


class Sleep(Continuation):
    """nanosleep/clock_nanosleep: the deadline (monotonic ns) and where to report the time left
    on EINTR (0: nowhere, as for TIMER_ABSTIME)."""
    __slots__ = ("deadline_ns", "rem")
    restart_keeps = True

    def __init__(self, deadline_ns: int, rem: int) -> None:
        self.deadline_ns = deadline_ns
        self.rem = rem

    def eintr(self, t) -> None:
        if self.rem:
            import time
            from sentry.syscalls.time import write_timespec
            try:
                write_timespec(t, self.rem, max(0, self.deadline_ns - time.monotonic_ns()))
            except SyscallError:
                pass


class FutexWait(Continuation):
    """A futex wait: the word's key (changed by a requeue), its bitset, its deadline, and whether
    a wake picked it."""
    __slots__ = ("key", "bitset", "deadline", "woken")
    restart_keeps = True

    def __init__(self, key: int, bitset: int, deadline: float | None) -> None:
        self.key = key
        self.bitset = bitset
        self.deadline = deadline
        self.woken = False

    def interrupted(self) -> int | None:
        return 0 if self.woken else None      # woken before the signal: the wait succeeded


class Marker(Continuation):
    """A wait that only needs to know it already began (rt_sigsuspend, connect in progress,
    the parent of a vfork child: `value` says which child)."""
    __slots__ = ("value",)

    def __init__(self, value=None) -> None:
        self.value = value


class Blocked(Exception):
    __slots__ = ("queues", "deadline", "host_fd")

    def __init__(self, queues, deadline, host_fd) -> None:
        self.queues = queues
        self.deadline = deadline
        self.host_fd = host_fd
