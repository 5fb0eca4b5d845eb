"""The Sentry's kernel: tasks, the run queue, timers, and the task loop.

The task loop is the whole Sentry: `switch` an application thread into
the platform, take the event it comes back with (a syscall, a fault, an
exit), dispatch it, update the registers, run again.  It is one thread
and one event loop, as DESIGN.md says: many application threads may run
at once on host CPUs, but their syscalls are handled one at a time, so
kernel state needs no locks.  A handler that must wait raises `Blocked`
(via `Task.block`); the task is parked on wait queues, a deadline and/or
a host fd, and re-runs its syscall when woken.

Fast path: when exactly one task is runnable and nothing else is pending
(no sleeper, no host-fd wait), resuming it and waiting for its next stop
is a single C call (`Platform.run`).
"""
from __future__ import annotations

import errno
import heapq
import itertools
import signal
import time
from collections import deque

from platforms.events import INTERRUPT_EVENT, SYSCALL32_EVENT, SYSCALL_EVENT, ExitEvent, FaultEvent
from sentry.errors import SyscallError
from sentry.cpulimit import CpuLimits
from sentry.delivery import SignalDelivery
from sentry.faults import INTERNAL_ERROR, Faults, signame as _signame  # noqa: F401  (INTERNAL_ERROR: re-exported)
from sentry.lifeline import Lifelines
from sentry.vfs.lock import FileLocks
from sentry.seccomp_bpf import filtered as seccomp_filtered
from sentry.syscalls import TABLE

DISPATCH = [(e.handler, e.nargs) for e in TABLE]     # (handler, arity) by number: one lookup per call
from sentry.syscalls.registry import MAX_NR
from sentry.task import Blocked, Task, ThreadGroup

MASK64 = 0xFFFFFFFFFFFFFFFF
MAX_HOST_WAIT_S = 3600.0          # the longest one host wait of the loop lasts
FORWARDED_SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                     signal.SIGUSR2, signal.SIGWINCH, signal.SIGIO]     # SIGIO: the control channel
CORE_SIGNALS = {signal.SIGQUIT, signal.SIGILL, signal.SIGTRAP, signal.SIGABRT, signal.SIGBUS,
                signal.SIGFPE, signal.SIGSEGV, signal.SIGSYS, signal.SIGXCPU, signal.SIGXFSZ}


class TaskExited(Exception):
    """Raised by exit paths: the task must not be resumed."""


class Kernel(SignalDelivery, Faults):
    def __init__(self, cfg, platform, memfile, vfs, log) -> None:
        self.cfg = cfg
        self.platform = platform
        self.memfile = memfile
        self.vfs = vfs
        self.log = log
        self.hostname = cfg.hostname.encode()
        self.domainname = b"(none)"
        self.boot_monotonic = time.monotonic()
        self.tasks: dict[int, Task] = {}
        self.thread_groups: dict[int, ThreadGroup] = {}
        self.runq: deque[Task] = deque()
        self.timers: list = []          # heap of (deadline, seq, task)
        self._seq = itertools.count()
        self.host_waits: dict[Task, tuple[int, int]] = {}
        self._next_id = 1
        self.init: ThreadGroup | None = None
        self.exit_code: int | None = None
        self.strace = cfg.strace
        self._enosys_logged: set[int] = set()
        self.watchers: dict[int, object] = {}
        self.lifelines = Lifelines(self)    # host processes the sandbox dies with (its Gofers)
        self.cpu_limits = CpuLimits(self)   # RLIMIT_CPU (sentry/cpulimit.py)
        self.file_locks = FileLocks()       # flock/POSIX/OFD lock tables (sentry/vfs/lock.py)
        self.futex_queues: dict = {}        # futex wait queues by MemoryFile offset (sentry/futex.py)
        self.fifos: dict = {}               # named pipes by (filesystem, inode) (sentry/vfs/fifo.py)
        self.unix_names: dict = {}
        self.current: Task | None = None   # the task whose syscall is being answered (poll of a signalfd)
        # Set by the modules that own them (declared here, so nothing needs getattr defaults):
        self.hooks = None               # sentry/policy.py: syscall policy, --compat, audit log
        self.memfd_fs = None            # syscalls/memory.py: the tmpfs behind memfd_create
        self.page_cache = None          # mm/pagecache.py: file pages shared by mappings
        self.tty_fg_pgrp: int | None = None   # vfs/tty.py: the console's foreground process group
        self.pod_members = None         # sentry/pod.py: containers of a pod in this sandbox
        self.pod_serial = 0             # sentry/pod.py: the last member serial handed out
        self._loop_errors = 0           # consecutive internal errors with no task to blame
        self._internal_seen: dict = {}  # where internal errors happened -> how often (log once)
        from sentry.vdso import Vdso
        from platforms.hostarch import rdtsc
        self.vdso = Vdso(memfile, rdtsc) if getattr(cfg, "vdso", True) else None
        self.pids_limit: int | None = cfg.pids_limit
        self.memory_limit: int | None = cfg.memory_limit                 # bound AF_UNIX names -> listening/dgram socket     # host fd -> callback (the control channel)
        # (handler, arity) by number.  A policy, --compat or syscall counting installs a copy whose
        # named entries are wrapped (sentry/policy.py); every other entry is the very same tuple.
        self.dispatch = DISPATCH
        # Always-on accounting for `runsc-py metrics-server`/`events` (sentry/metrics.py): syscalls
        # by number (one list increment on the hot path) and faults the platform reported.
        self.syscall_counts = [0] * (MAX_NR + 1)
        self.fault_count = 0
        self.start_time = time.time()

    def charge_memory(self, nbytes: int) -> None:
        """linux.resources.memory.limit: ENOMEM when what is in use plus `nbytes` would pass it."""
        limit = self.memory_limit
        if limit is not None and limit > 0 and self.memfile.used() + nbytes > limit:
            raise SyscallError(errno.ENOMEM)

    def alloc_id(self) -> int:
        i = self._next_id
        while i in self.tasks or i in self.thread_groups:
            i += 1
        self._next_id = i + 1
        return i

    # -- scheduling ---------------------------------------------------------

    def enqueue(self, t: Task, first: bool = False) -> None:
        """Make `t` runnable (once: a task woken by two events is still resumed once).
        `first`: ahead of the others (the task whose syscall just finished goes on before the
        tasks it woke, as a waker keeps its CPU on Linux)."""
        if not t.in_runq and not t.exited:
            t.in_runq = True
            if first:
                self.runq.appendleft(t)
            else:
                self.runq.append(t)

    def wake(self, t: Task) -> None:
        for q in t.wait_queues:
            q.remove(t)
        t.wait_queues = []
        if t.timer_handle is not None:
            t.timer_handle[2] = None        # cancelled entry stays in the heap, ignored
            t.timer_handle = None
        self.host_waits.pop(t, None)
        self.enqueue(t)

    def _park(self, t: Task, b: Blocked) -> None:
        for q in b.queues:
            q.add(t)
        t.wait_queues = list(b.queues)
        if b.deadline is not None:
            entry = [b.deadline, next(self._seq), t]
            t.timer_handle = entry
            heapq.heappush(self.timers, entry)
        if b.host_fd is not None:
            self.host_waits[t] = b.host_fd if isinstance(b.host_fd, list) else [b.host_fd]

    def _fire_timers(self) -> float | None:
        """Wake tasks whose deadline passed; return the next deadline (monotonic) or None."""
        timers = self.timers
        while timers:
            deadline, _, t = timers[0]
            if t is None:
                heapq.heappop(timers)
                continue
            if deadline > time.monotonic():
                return deadline
            heapq.heappop(timers)
            if not isinstance(t, Task):
                t.fire()                  # an interval timer (alarm, setitimer, timer_create)
                continue
            t.timer_handle = None
            t.timed_out = True
            self.wake(t)
        return None

    def run(self) -> int:
        """Run until the container's init process has exited; return runsc-py's exit code."""
        plat = self.platform
        runq = self.runq
        plat.forward_host_signals(FORWARDED_SIGNALS)
        if self.watchers:
            self.poll_watchers()        # a control request that came before the SIGIO handler did
        forwarded_bits = plat.forwarded_bits
        plat_run = plat.run
        syscall = self.syscall
        popleft = runq.popleft
        serve = self._serve
        backlog = getattr(plat, "backlog", ())   # stops taken from the host, not yet handled
        while self.exit_code is None:
            cur = None             # the task whose event is being handled (containment)
            try:
                bits = forwarded_bits()
                if bits:
                    self._forwarded(bits)
                    continue
                next_deadline = self._fire_timers() if self.timers else None
                if runq:
                    t = cur = popleft()
                    t.in_runq = False
                    if t.exited:
                        continue
                    if t.in_syscall:
                        if t.interrupted and TABLE[t.ctx.regs.orig_rax].name == "rt_sigtimedwait":
                            t.interrupted = False      # the awaited signal is taken by the syscall itself
                        # Re-run it: a syscall whose condition is already met completes (as Linux
                        # checks before signal_pending); one that would block again is interrupted.
                        self.syscall(t)
                        continue
                    tg = t.tg
                    if tg.group_stopped:
                        self._park_stopped(t)
                        continue
                    if (t.pending or tg.shared_pending) and not self.deliver_signals(t):
                        continue
                    if runq or next_deadline is not None or self.host_waits or backlog:
                        t.running = True
                        plat.resume(t.ctx)
                        if runq:
                            continue
                        ctx, ev = self._wait(next_deadline)
                    else:
                        t.running = True
                        ctx, ev = plat_run(t.ctx)
                        if ev is SYSCALL_EVENT and ctx is t.ctx and not self.strace and t.seccomp is None:
                            ctx, ev = serve(t)          # its syscalls, while nothing else needs the loop
                            if ctx is None:
                                continue
                else:
                    ctx, ev = self._wait(next_deadline)
                if ctx is None or ctx.task is None:
                    continue
                task = cur = ctx.task
                task.running = False
                if ev is SYSCALL_EVENT:
                    syscall(task)
                elif ev is INTERRUPT_EVENT:
                    self.enqueue(task)      # kicked (a signal to deliver) or host-interrupted
                elif ev is SYSCALL32_EVENT:
                    self.syscall32(task)
                elif isinstance(ev, FaultEvent):
                    self.fault(task, ev)
                elif isinstance(ev, ExitEvent):
                    self.host_thread_died(task, ev.status)
            except Exception as e:     # a Sentry bug: that task's process pays, never the sandbox
                self.contain(cur, e)

        return self.exit_code

    def _forwarded(self, bits: int) -> None:
        """Host signals caught since the last look (`Platform.forwarded_bits`)."""
        forwarded = self.platform.decode_forwarded(bits)
        if signal.SIGIO in forwarded:
            forwarded.remove(signal.SIGIO)
            self.poll_watchers()
        if forwarded:
            self.forward(forwarded)

    def _serve(self, t: Task):
        """The task loop's fast path: `t`, the only runnable task, stopped at a syscall (nothing
        else pending: no other runnable task, timer or host-fd wait).  Answer it and resume `t`
        directly, again and again, for as long as the loop would do nothing else between: what
        `syscall` and one turn of `run` do, without the run queue and the frames.

        Returns the next event for the loop, (context, event), when it is not a plain syscall of
        `t`; or (None, None) with `t` queued (as `syscall` leaves it) when the loop has work:
        a syscall blocked or failed, another task became runnable, a signal is pending, `t` has a
        new context (execve), etc."""
        ctx = t.ctx
        regs = ctx.regs
        runq = self.runq
        plat = self.platform
        plat_run = plat.run
        forwarded_bits = plat.forwarded_bits
        backlog = getattr(plat, "backlog", ())
        dispatch = self.dispatch
        counts = self.syscall_counts
        self.current = t
        while True:
            t.running = False
            nr = regs.orig_rax
            handler = dispatch[nr][0] if nr < MAX_NR else None
            if handler is None:
                self.syscall(t)             # ENOSYS, logged once
                return None, None
            counts[nr] += 1
            n = dispatch[nr][1]
            try:                            # the dispatch of `syscall`, inlined: the hot path
                if n == 0:
                    r = handler(t)
                elif n == 1:
                    r = handler(t, regs.rdi)
                elif n == 2:
                    r = handler(t, regs.rdi, regs.rsi)
                elif n == 3:
                    r = handler(t, regs.rdi, regs.rsi, regs.rdx)
                elif n == 4:
                    r = handler(t, regs.rdi, regs.rsi, regs.rdx, regs.r10)
                else:
                    r = handler(t, *(regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9)[:n])
                regs.rax = r & MASK64
            except Exception as e:
                self._raised(t, nr, e)
                return None, None
            if t.in_syscall or t.cont is not None:
                self._completed(t)
                self.enqueue(t, first=True)
                return None, None
            # `syscall` would queue `t` first here, and the loop take it straight back unless
            # something else needs it: look for that something, as the loop would.
            tg = t.tg
            if runq or self.timers or self.host_waits or backlog or self.exit_code is not None or t.exited \
                    or t.ctx is not ctx or tg.group_stopped or t.pending or tg.shared_pending:
                self.enqueue(t, first=True)
                return None, None
            bits = forwarded_bits()
            if bits:
                self.enqueue(t, first=True)
                self._forwarded(bits)
                return None, None
            t.running = True
            ctx2, ev = plat_run(ctx)
            if ev is not SYSCALL_EVENT or ctx2 is not ctx:
                return ctx2, ev

    def poll_watchers(self) -> None:
        import select as _select
        for fd, cb in list(self.watchers.items()):
            if fd in self.watchers:
                p = _select.poll()
                p.register(fd, _select.POLLIN)
                if p.poll(0):
                    cb()

    def _wait(self, next_deadline):
        self.platform.idle()          # spare time: e.g. a parent waiting for its child
        if self.vdso is not None:
            self.vdso.refresh()
        lifelines = self.lifelines.poll_fds      # the Gofers' pidfds (sentry/lifeline.py)
        if next_deadline is None and not self.host_waits:
            if not any(t.running for t in self.tasks.values()):
                # Nothing runs and nothing can wake anything: a deadlock in the application.
                # Linux would hang too; so do we, but say so once in the debug log.
                self.debug("all tasks blocked with no timer or host fd: waiting for a signal")
            if not lifelines:
                return self.platform.wait(-1, [])
        # At most an hour at a time: a deadline years away (nanosleep of 2^63-1 ns, clamped to
        # KTIME_MAX) must not overflow the host call's timeout; the loop just looks again.
        timeout = -1 if next_deadline is None else \
            max(0, int(min(next_deadline - time.monotonic(), MAX_HOST_WAIT_S) * 1e9))
        waits = [(t, fdev) for t, lst in self.host_waits.items() for fdev in lst]
        ctx, res = self.platform.wait(timeout, [fdev for _, fdev in waits] + lifelines)
        if ctx is None and res:
            if lifelines and any(res[len(waits):]):
                self.lifelines.check()
            for (t, _), rev in zip(waits, res):
                if rev and t in self.host_waits:
                    self.wake(t)
        return ctx, res

    # -- syscalls -----------------------------------------------------------

    def syscall32(self, t: Task) -> None:
        """`int $0x80` (the platform tells, SYSCALL32_EVENT): the i386 syscall ABI, which the
        Sentry does not implement.  Never run it as the x86-64 call of the same number."""
        if -1 not in self._enosys_logged:
            self._enosys_logged.add(-1)
            self.warn("32-bit syscall (int $0x80) attempted: returning ENOSYS")
        t.ctx.regs.rax = (-errno.ENOSYS) & MASK64
        self.enqueue(t, first=True)

    def syscall(self, t: Task) -> None:
        regs = t.ctx.regs
        self.current = t
        nr = regs.orig_rax
        if nr >= MAX_NR and nr & 0xFFFFFFFF < MAX_NR:
            # Linux takes the number from eax alone (do_syscall_64's `int nr`): 2^32 + 39 is getpid.
            nr = regs.orig_rax = nr & 0xFFFFFFFF
        if t.seccomp is not None and not t.in_syscall and seccomp_filtered(self, t, nr):
            return                        # its seccomp filters answered (sentry/seccomp_bpf.py)
        if nr < MAX_NR:
            handler, n = self.dispatch[nr]
            self.syscall_counts[nr] += 1
        else:
            handler = None
            self.syscall_counts[MAX_NR] += 1         # out of range: counted as one "unknown"
        entry = None
        try:
            if handler is None:
                entry = TABLE[nr] if nr < MAX_NR else None
                key = nr if nr < MAX_NR else MAX_NR   # numbers past the table: one line for all
                if key not in self._enosys_logged:
                    self._enosys_logged.add(key)
                    name = entry.name if entry is not None else f"syscall_{nr}"
                    self.warn(f"unimplemented syscall {name} ({nr}): returning ENOSYS"
                              + ("" if nr < MAX_NR else " (not logged again for numbers past the table)"))
                raise SyscallError(errno.ENOSYS)
            if n == 0:
                r = handler(t)
            elif n == 1:
                r = handler(t, regs.rdi)
            elif n == 2:
                r = handler(t, regs.rdi, regs.rsi)
            elif n == 3:
                r = handler(t, regs.rdi, regs.rsi, regs.rdx)
            elif n == 4:                  # openat, newfstatat...: no six-field tuple to slice
                r = handler(t, regs.rdi, regs.rsi, regs.rdx, regs.r10)
            else:
                r = handler(t, *(regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9)[:n])
            regs.rax = r & MASK64
            if self.strace:
                self.strace_line(t, TABLE[nr], r)
            if not t.in_syscall and t.cont is None:
                if not t.in_runq:                 # enqueue(t, first=True), inlined: the hot path
                    t.in_runq = True
                    self.runq.appendleft(t)
                return
        except Exception as e:
            self._raised(t, nr, e)
            return
        if t.in_syscall or t.cont is not None:
            self._completed(t)
        self.enqueue(t, first=True)

    def _raised(self, t: Task, nr: int, e: Exception) -> None:
        """Syscall `nr` of `t` raised `e`: its errno, a park (Blocked), nothing (the task
        exited), or a Sentry bug's SIGSYS; `t` queued again where it goes on."""
        if isinstance(e, SyscallError):
            t.ctx.regs.rax = (-e.errno) & MASK64
            if self.strace:
                self.strace_line(t, TABLE[nr] if nr < MAX_NR else None, -e.errno, nr=nr)
        elif isinstance(e, Blocked):
            t.in_syscall = True
            if t.interrupted:
                self._finish_interrupted(t)
                self.enqueue(t, first=True)
                return
            self._park(t, e)
            return
        elif isinstance(e, TaskExited):
            if self.strace:
                self.strace_line(t, TABLE[nr], None)
            return
        else:                             # a Sentry bug: this process dies, the sandbox lives on
            self.internal_error(t, TABLE[nr] if nr < MAX_NR else None, nr, e)
            return
        if t.in_syscall or t.cont is not None:
            self._completed(t)
        self.enqueue(t, first=True)

    @staticmethod
    def _completed(t: Task) -> None:
        """A syscall that had parked (or kept restart state) finished after all."""
        t.cont = None
        t.timed_out = False
        t.in_syscall = False
        t.interrupted = False             # it completed after all: no EINTR

    # -- signals (delivery at the task loop: sentry/delivery.py) ---------------

    def now(self) -> float:
        return time.monotonic()


    # -- exits (faults and contained bugs: sentry/faults.py) ------------------

    def host_thread_died(self, t: Task, status: int) -> None:
        self.warn(f"task {t.tid}: host thread died (status {status:#x}); killing its process")
        self.exit_thread_group(t.tg, signal.SIGKILL)

    def kill_thread_group(self, tg: ThreadGroup, signo: int) -> None:
        self.exit_thread_group(tg, signo)       # no core dumps: never the 0x80 flag

    def exit_thread_group(self, tg: ThreadGroup, wait_status: int) -> None:
        from sentry import process
        process.exit_thread_group(self, tg, wait_status)

    def init_exited(self, wait_status: int) -> None:
        """PID 1 is gone: every other process dies, and runsc-py exits with its status."""
        init = self.init
        for tg in list(self.thread_groups.values()):
            if tg is not init and not tg.exiting:
                tg.parent = None
                self.exit_thread_group(tg, signal.SIGKILL)
        if wait_status & 0x7F:            # killed by a signal: 128+N, as runc reports
            self.exit_code = 128 + (wait_status & 0x7F)
        else:
            self.exit_code = (wait_status >> 8) & 0xFF

    def task_gone(self, task: Task) -> None:
        task.exited = True
        self.tasks.pop(task.tid, None)
        self.host_waits.pop(task, None)
        for q in task.wait_queues:
            q.remove(task)
        task.wait_queues = []
        if task.timer_handle is not None:
            task.timer_handle[2] = None
            task.timer_handle = None
        if task.in_runq:
            try:
                self.runq.remove(task)
            except ValueError:
                pass
            task.in_runq = False
        if task.ctx is not None:
            task.ctx.task = None

    # -- logging ------------------------------------------------------------

    def warn(self, msg: str) -> None:
        self.log.warning(msg)

    def debug(self, msg: str) -> None:
        if self.cfg.debug:
            self.log.debug(msg)

    def strace_line(self, t: Task, entry, result, nr: int | None = None) -> None:
        from sentry import strace
        self.log.strace(strace.format_call(t, entry, result, nr))
