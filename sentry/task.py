"""Tasks and thread groups.

`Task` is one application thread (Linux's task_struct); `ThreadGroup`
is a process: the address space (`mm`), file descriptors, filesystem
context (root, cwd, umask), credentials and resource limits its threads
share.  IDs are the sandbox's own PID namespace: the container's first
process is PID 1, and nothing here ever reveals a host pid.
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError
from sentry.waitq import WaitQueue

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


class SignalAction:
    __slots__ = ("handler", "flags", "restorer", "mask")

    def __init__(self, handler: int = 0, flags: int = 0, restorer: int = 0, mask: int = 0) -> None:
        self.handler = handler
        self.flags = flags
        self.restorer = restorer
        self.mask = mask


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
        self.sigactions = [SignalAction() for _ in range(65)]
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
        self.group_stopped = False
        self.stop_state = None                 # job control: None | "stopped" | "continued" (for waiters)
        self.stop_reported = True
        self.vfork_waitq = WaitQueue()
        self.exit_signal = 17                  # SIGCHLD unless clone() said otherwise
        self.subreaper = False
        self.start_monotonic = 0.0
        self.utime = self.stime = 0
        self.cutime = self.cstime = 0


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
        self.syscall_state = None        # survives a block/restart of the current syscall
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
        self.on_eintr = None             # callback when a signal interrupts the parked syscall
        self.vfork_parent: "Task | None" = None
        self.pdeathsig = 0
        self.running = False
        self.interrupted = False
        self.uninterruptible = False
        self.in_runq = False
        self.forced: set[int] = set()    # synchronous signals that kill even init
        self.vfork_released = False
        if ctx is not None:
            ctx.task = self

    @property
    def creds(self) -> Credentials:
        return self.tg.creds

    def block(self, queues=(), deadline: float | None = None, host_fd: tuple[int, int] | None = None):
        """Park this task until a queue wakes it, the deadline (CLOCK_MONOTONIC seconds) passes,
        or the host fd becomes ready; then the syscall runs again.  Never returns."""
        raise Blocked(tuple(queues), deadline, host_fd)

    def check_rlimit_nofile(self, fd: int) -> None:
        if fd >= self.tg.rlimits[7][0]:
            raise SyscallError(errno.EMFILE)


class Blocked(Exception):
    __slots__ = ("queues", "deadline", "host_fd")

    def __init__(self, queues, deadline, host_fd) -> None:
        self.queues = queues
        self.deadline = deadline
        self.host_fd = host_fd
