"""Signal delivery at the task loop: interrupted syscalls, pending signals, host signals.

A mixin of Kernel (sentry/kernel.py).  Before a task resumes, the loop
delivers its unblocked pending signals (a handler frame, a stop, a default
kill); a syscall a signal interrupted ends here with its partial result,
EINTR or a restart, by the signal's disposition and the syscall's restart
rules (sentry/signals.py); host signals sent to runsc-py go to the
container's init (or the terminal's foreground group) as runc forwards them.
Queueing a signal is sentry/process.py's; building the frame, signals.py's.
"""
from __future__ import annotations

import errno
import signal
from typing import TYPE_CHECKING

from sentry.errors import SyscallError
from sentry.faults import signame as _signame
from sentry.syscalls import TABLE
from sentry.syscalls.registry import MAX_NR

if TYPE_CHECKING:
    from sentry.task import Task

MASK64 = 0xFFFFFFFFFFFFFFFF


class SignalDelivery:
    """Kernel's signal paths (uses wake, strace, strace_line, log, debug, init, exit_thread_group)."""

    def interrupt(self, t: Task) -> None:
        """A signal arrived for a task parked in a syscall: stop waiting."""
        if not t.in_syscall or t.exited or t.uninterruptible:
            return
        t.interrupted = True
        self.wake(t)

    def _finish_interrupted(self, t: Task) -> None:
        """End an interrupted syscall: the partial result its continuation recorded (bytes that
        moved win, as on Linux), else EINTR, or a restart if the signal's disposition allows it.
        A restart with no handler run (a stop, an ignored signal) keeps a continuation that
        says so (`restart_keeps`: sleeps and timeouts go on to the same deadline); any other
        restart runs the call from the start."""
        from sentry import signals as sg
        t.interrupted = False
        regs = t.ctx.regs
        nr = regs.orig_rax
        cont = t.cont
        t.cont = None
        t.in_syscall = False
        partial = cont.interrupted() if cont is not None else None
        if partial is not None:
            regs.rax = partial & MASK64
            if self.strace:
                self.strace_line(t, TABLE[nr] if nr < MAX_NR else None, partial, nr=nr)
            return
        name = TABLE[nr].name if nr < MAX_NR else ""
        sig = self._next_signal(t)
        restart = sig is None          # nothing left to deliver: carry on as if never interrupted
        no_handler = True
        if sig is not None:
            act = t.tg.sigactions[sig]
            if act.handler in (sg.SIG_DFL, sg.SIG_IGN):
                restart = name not in sg.NEVER_RESTART
            else:
                no_handler = False
                restart = bool(act.flags & sg.SA_RESTART) and name not in sg.NO_RESTART_WITH_HANDLER
        if restart:
            regs.rip -= 2
            regs.rax = regs.orig_rax
            if no_handler and cont is not None and cont.restart_keeps:
                t.cont = cont             # restart_syscall(2): what is left, not all of it again
        else:
            if cont is not None:
                cont.eintr(t)
            regs.rax = (-errno.EINTR) & MASK64
            if self.strace:
                self.strace_line(t, TABLE[nr] if nr < MAX_NR else None, -errno.EINTR, nr=nr)
        if t.saved_sigmask is not None and sig is None:
            t.sigmask = t.saved_sigmask
            t.saved_sigmask = None

    def _next_signal(self, t: Task) -> int | None:
        mask = t.sigmask
        best = None
        for pend in (t.pending, t.tg.shared_pending):
            for sig in pend:
                if not (mask >> (sig - 1)) & 1 and (best is None or sig < best):
                    best = sig
        return best

    def deliver_signals(self, t: Task) -> bool:
        """Deliver pending unblocked signals before `t` resumes; False if it must not resume."""
        from sentry import process
        from sentry import signals as sg
        while True:
            sig = self._next_signal(t)
            if sig is None:
                if t.saved_sigmask is not None and not t.in_syscall:
                    t.sigmask = t.saved_sigmask
                    t.saved_sigmask = None
                return True
            info = sg.take(t.pending if sig in t.pending else t.tg.shared_pending, sig)
            act = t.tg.sigactions[sig]
            if act.handler == sg.SIG_IGN:
                continue
            if act.handler == sg.SIG_DFL:
                action = sg.default_action(sig)
                if action in ("ignore", "continue"):
                    continue
                if (t.tg is self.init or t.tg.pidns is not None and t.tg.pidns.init is t.tg) \
                        and sig not in (signal.SIGKILL, signal.SIGSTOP) and sig not in t.forced:
                    continue      # the namespace's init is not killed by signals it does not handle
                if action == "stop":
                    process.stop_group(self, t.tg, sig)
                    self._park_stopped(t)
                    return False
                status = sig              # no core file is written, so no WCOREDUMP flag
                self.debug(f"task {t.tid}: killed by {_signame(sig)}")
                self.exit_thread_group(t.tg, status)
                return False
            try:
                sg.setup_frame(t, sig, info, act)
            except SyscallError:
                # No room for the frame: SIGSEGV with the default action, as Linux's force_sigsegv.
                self.exit_thread_group(t.tg, sg.SIGSEGV)
                return False
            if self.strace:
                self.log.strace(f"[{t.tg.tgid:>4}:{t.tid:>4}] --- {_signame(sig)} (handler {act.handler:#x}) ---")
            return True

    def _park_stopped(self, t: Task) -> None:
        q = t.tg.stop_waitq
        q.add(t)
        t.wait_queues = [q]

    def forward(self, sigs: list[int]) -> None:
        """Host signals sent to runsc-py go to the container's init, as runc forwards them."""
        from sentry import process
        from sentry import signals as sg
        if self.init is None or self.init.exiting:
            return
        console = getattr(self.vfs, "console", None)
        for sig in sigs:
            if console is not None and sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGWINCH):
                # From the terminal (^C, ^\, ^Z, a resize): to its foreground process group,
                # as the line discipline would send them.
                pgrp = self.tty_fg_pgrp or self.init.pgid
                targets = [g for g in self.thread_groups.values() if g.pgid == pgrp and not g.exiting]
                if targets:
                    self.debug(f"forwarding host {_signame(sig)} to process group {pgrp}")
                    for g in targets:
                        process.send_to_group(self, g, sig, sg.siginfo(sig, sg.SI_KERNEL), force=True)
                    continue
            if sig not in (signal.SIGKILL, signal.SIGSTOP) and self.init.sigactions[sig].handler == sg.SIG_DFL:
                # pid_namespaces(7): from an ancestor namespace, init gets only the signals it
                # handles (and SIGKILL/SIGSTOP).  So `docker stop` of a plain `sleep` waits, then kills.
                self.debug(f"host {_signame(sig)} to PID 1 ignored: no handler")
                continue
            self.debug(f"forwarding host {_signame(sig)} to PID 1")
            process.send_to_group(self, self.init, sig, sg.siginfo(sig, sg.SI_USER), force=True)
