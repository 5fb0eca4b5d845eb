"""What a platform reports when an application thread stops running (`platforms.contract`).

A platform's `run`/`wait` return `(context, event)`; the event is one of these.  The common
ones are singletons so that the Sentry's per-syscall path compares by identity (`ev is
SYSCALL_EVENT`) rather than by type.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, eq=False)
class SyscallEvent:
    """The thread made a system call; the context's registers hold it (orig_rax = number,
    rdi rsi rdx r10 r8 r9 = arguments, rip just past the instruction).  `abi` says which
    entry it came through: "x86_64" (`syscall`) or "i386" (`int $0x80`, which the Sentry
    does not implement: it answers ENOSYS and never runs it as the 64-bit call)."""
    abi: str = "x86_64"


@dataclass(slots=True)
class FaultEvent:
    """A synchronous fault of application code: the signal Linux would send (SIGSEGV, SIGBUS,
    SIGFPE, SIGILL, SIGTRAP), its si_code (> 0: from the CPU, e.g. SEGV_MAPERR) and address
    (si_addr: the faulting data address for SIGSEGV/SIGBUS, the instruction for the others)."""
    signo: int
    code: int
    addr: int


@dataclass(slots=True, eq=False)
class InterruptEvent:
    """The thread stopped without doing anything the application asked for: it was kicked
    (`Platform.kick`) or the host interrupted it.  The Sentry just runs it again (after
    delivering whatever signal made it kick)."""


@dataclass(slots=True)
class ExitEvent:
    """The host thread behind the context is gone (killed from outside, or the platform lost
    it); `status` is the host wait status.  The context must not be run again."""
    status: int


SYSCALL_EVENT = SyscallEvent()
SYSCALL32_EVENT = SyscallEvent("i386")
INTERRUPT_EVENT = InterruptEvent()
