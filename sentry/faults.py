"""What happens when something goes wrong in a task: a CPU fault, or a bug of the Sentry's own.

A mixin of Kernel (sentry/kernel.py).  A fault the platform reports is
first the Sentry's to resolve (a copy-on-write page, the stack growing, a
file mapping past its end becomes SIGBUS) and otherwise a forced signal,
Linux's force_sig_info.  A Python exception while handling one task's
syscall or event is a Sentry bug: it is contained to that task's process
(SIGSYS in a syscall, SIGSEGV elsewhere), logged once per spot with its
traceback to the debug log, never to the application's stderr, and the
sandbox goes on.
"""
from __future__ import annotations

import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from platforms.events import FaultEvent
    from sentry.task import Task

INTERNAL_ERROR = "internal error"   # the marker of a Sentry bug in the log (tests grep for it)


def signame(sig: int) -> str:
    from sentry.signals import name
    return name(sig)


class Faults:
    """Kernel's fault and containment paths (uses enqueue, debug, warn, exit_thread_group, task_gone)."""

    def fault(self, t: Task, ev: FaultEvent) -> None:
        if ev.code <= 0:
            # Not from the CPU (platforms report kicks and host signals as INTERRUPT_EVENT; this
            # is the guard should one slip through): never the application's.
            self.enqueue(t)
            return
        self.fault_count += 1
        self.debug(f"task {t.tid}: fault {signame(ev.signo)} code {ev.code} addr {ev.addr:#x} "
                   f"at rip {t.ctx.regs.rip:#x}")
        sig, code = ev.signo, ev.code
        if sig == signal.SIGSEGV:
            v = t.mm.find(ev.addr)
            if v is not None and v.eof and ev.addr >= v.eof and v.prot:
                sig, code = signal.SIGBUS, 2          # BUS_ADRERR: past the end of the mapped file
        if sig == signal.SIGSEGV and ev.code == 2 and t.mm.cow_fault(ev.addr):
            self.enqueue(t)               # a write to a page shared copy-on-write: copied, run it again
            return
        if sig == signal.SIGSEGV and ev.code == 1 and t.mm.grow_stack(ev.addr, t.tg.rlimits[3][0]):
            self.enqueue(t)               # the stack grew under the fault: run the instruction again
            return
        self.force_signal(t, sig, code, ev.addr)
        self.enqueue(t)

    def force_signal(self, t: Task, sig: int, code: int, addr: int = 0) -> None:
        """Linux's force_sig_info: a synchronous signal (a fault, a bad sigreturn frame) for `t`;
        blocked or ignored, it is unblocked and reset to the default action, and it kills even init."""
        from sentry import signals as sg
        act = t.tg.sigactions[sig]
        if t.sigmask & sg.bit(sig) or act.handler == sg.SIG_IGN:
            from sentry.task import SignalAction
            t.tg.sigactions[sig] = SignalAction()
            t.sigmask &= ~sg.bit(sig)
        t.pending.setdefault(sig, []).append(sg.siginfo(sig, code, addr=addr))
        t.forced.add(sig)

    def internal_error(self, t: Task, entry, nr: int, e: Exception) -> None:
        """Syscall `nr` of `t` raised a Python exception (a Sentry bug): its process dies with SIGSYS."""
        name = entry.name if entry is not None else f"syscall_{nr}"
        self._log_internal(f"in {name} for task {t.tid}", e, "killing its process with SIGSYS")
        t.in_syscall = False
        self._kill_for_bug(t, signal.SIGSYS)

    def contain(self, t: Task | None, e: Exception) -> None:
        """The task loop caught `e` while handling an event of `t` (delivering its signals, its
        fault, finishing its syscall): a Sentry bug.  Only `t`'s process dies (SIGSEGV, as Linux's
        force_sigsegv when it cannot set up a signal); the sandbox goes on.  With no task to blame
        (the loop itself), the error is logged and the loop goes on, unless it keeps repeating."""
        if t is None or t.exited:
            self._loop_errors += 1
            self._log_internal("in the task loop", e, f"({self._loop_errors} in a row)")
            if self._loop_errors > 100:
                raise e
            return
        self._loop_errors = 0
        self._log_internal(f"handling task {t.tid}", e, "killing its process with SIGSEGV")
        t.in_syscall = False
        self._kill_for_bug(t, signal.SIGSEGV)

    def _log_internal(self, where: str, e: Exception, what: str) -> None:
        """One warning per internal error, with the traceback the first time a given spot fails
        (the same bug hit again is one line); never a traceback on the application's stderr."""
        import traceback
        tb = traceback.extract_tb(e.__traceback__)
        spot = (type(e).__name__, tb[-1].filename, tb[-1].lineno) if tb else (type(e).__name__,)
        seen = self._internal_seen.get(spot, 0)
        self._internal_seen[spot] = seen + 1
        msg = f"{INTERNAL_ERROR} {where}: {type(e).__name__}: {e}: {what}"
        if seen == 0 and self.log.fd != 2:
            msg += "\n" + "".join(traceback.format_exception(e)).rstrip()
        elif seen:
            msg += f" (seen {seen + 1} times)"
        self.warn(msg)

    def _kill_for_bug(self, t: Task, signo: int) -> None:
        tg = t.tg
        try:
            self.exit_thread_group(tg, signo)
        except Exception as e2:           # the exit path failed too: at least never run it again
            self._log_internal(f"killing process {tg.tgid}", e2, "dropping its tasks")
            for task in list(tg.tasks):
                self.task_gone(task)
            tg.exiting = True
            if tg is self.init and self.exit_code is None:
                self.exit_code = 128 + signo      # no PID 1 left: the sandbox ends, as it would
