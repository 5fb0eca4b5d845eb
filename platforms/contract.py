"""The platform contract: what every platform (ptrace, kvm, ...) gives the Sentry, as code.

The Sentry imports this module (and `platforms.events`, `platforms.hostarch`), never a
platform's own package: the platform is chosen by name (`platforms.get_platform`) and used
only through these three roles, as gVisor's `platform.Platform` / `AddressSpace` / `Context`.

* `Platform`: one per sandbox.  Makes address spaces; runs contexts and waits for their
  events (one event loop for all application threads, so `run`/`wait` report the next event
  of ANY context); kicks a running context; forwards host signals into that wait; says which
  host syscalls it needs (`syscall_filters`, merged into the Sentry's seccomp allowlist by
  sentry/confine.py) and which user addresses exist (`min_user_address`, `max_user_address`,
  `reserved`).
* `AddressSpace`: one per application mm.  Mirrors the MemoryManager's VMAs
  (`map`/`unmap`/`protect` of MemoryFile ranges), makes contexts, has a CPU-time clock.
* `Context`: one per application thread.  `regs` is its general register file (named x86-64
  fields, see `Regs`), read and written in place by the Sentry between runs and loaded into the
  thread when it runs again; `get_fpstate`/`set_fpstate` move the FULL extended FPU state
  (XSAVE standard format, `Platform.fpstate_size` bytes) on demand; `cpu_time_ns` is its clock.

Running: `resume(ctx)` starts `ctx`; `run(ctx)` resumes it and waits for the next event of any
context (the per-syscall path: one call); `wait(timeout_ns, fds)` waits for an event or host fd
readiness.  Events are `platforms.events`: SYSCALL_EVENT / SYSCALL32_EVENT (`int $0x80`),
FaultEvent, INTERRUPT_EVENT (kicked or host-interrupted: just run it again), ExitEvent.

The checks are `typing.Protocol`s (runtime_checkable): `isinstance(p, Platform)` checks that
the members exist; tests/test_platform_contract.py also compares method signatures.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol, runtime_checkable

from platforms.events import (INTERRUPT_EVENT, SYSCALL32_EVENT, SYSCALL_EVENT, ExitEvent, FaultEvent,
                              InterruptEvent, SyscallEvent)

__all__ = ["Platform", "AddressSpace", "Context", "Regs", "RegisterFile", "GPR_NAMES", "copy_regs",
           "Filters", "PlatformError", "PlatformUnavailable", "SyscallEvent", "FaultEvent", "ExitEvent",
           "InterruptEvent", "SYSCALL_EVENT", "SYSCALL32_EVENT", "INTERRUPT_EVENT", "NO_SYSCALL"]


class PlatformError(Exception):
    """The host refused to drive application code (a host thread died, a host call failed)."""


class PlatformUnavailable(PlatformError):
    """The platform cannot run on this host (e.g. no usable /dev/kvm): one line for the user."""


# -- registers ----------------------------------------------------------------

# The general registers of an x86-64 thread, by the names Linux's `struct user_regs_struct` uses
# (and in its order).  orig_rax: the syscall number at a syscall stop; NO_SYSCALL elsewhere.
GPR_NAMES = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
             "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base",
             "ds", "es", "fs", "gs")
NO_SYSCALL = 0xFFFFFFFFFFFFFFFF
USER_CS, USER_DS = 0x33, 0x2B        # the flat 64-bit user segments of Linux's GDT


@runtime_checkable
class Regs(Protocol):
    """A register file: every name of GPR_NAMES is an int attribute (unsigned 64-bit).  What a
    platform keeps behind it (a ptrace struct, a kvm_run sync-regs page, plain slots) is its
    own affair."""
    r15: int; r14: int; r13: int; r12: int; rbp: int; rbx: int; r11: int; r10: int   # noqa: E702
    r9: int; r8: int; rax: int; rcx: int; rdx: int; rsi: int; rdi: int                # noqa: E702
    orig_rax: int; rip: int; cs: int; eflags: int; rsp: int; ss: int                   # noqa: E702
    fs_base: int; gs_base: int; ds: int; es: int; fs: int; gs: int                     # noqa: E702


class RegisterFile:
    """A plain-Python `Regs` (for platforms without a native layout, and for saved copies)."""
    __slots__ = GPR_NAMES

    def __init__(self, **values: int) -> None:
        for name in GPR_NAMES:
            setattr(self, name, 0)
        for name, v in values.items():
            setattr(self, name, v)


def copy_regs(dst: Regs, src: Regs) -> None:
    """Every general register of `src` into `dst` (any two `Regs`)."""
    for name in GPR_NAMES:
        setattr(dst, name, getattr(src, name))


# -- seccomp ----------------------------------------------------------------

# The host syscalls a platform needs, in sentry/confine.py's ALLOWLIST format: syscall name ->
# alternatives; an alternative is a tuple of checks (arg index, arg name, op, value, value
# name) that must all hold, op one of "==", "has" (all bits set), "lacks" (none set); () allows
# the call with any arguments.  Values are ints (the platform fills in its own descriptors).
Check = tuple[int, str, str, int, str]
Filters = dict[str, tuple[tuple[Check, ...], ...]]


# -- the three roles -----------------------------------------------------------

@runtime_checkable
class Context(Protocol):
    """One application thread."""
    regs: Regs                       # live: loaded into the thread by resume/run
    task: Any                        # the Sentry's Task (set and cleared by the Sentry)
    address_space: "AddressSpace"

    def clear_regs(self, rip: int, rsp: int) -> None:
        """The register state of a fresh execve: all zero but rip, rsp, eflags (IF), the user
        segments, orig_rax = NO_SYSCALL.  General registers only: a context from new_context()
        already has the initial FPU state."""

    def set_regs(self, src: Regs) -> None:
        """Copy every general register from `src` (another context's, or a saved RegisterFile)."""

    def get_fpstate(self) -> bytes:
        """The full extended FPU state: an XSAVE area in the standard (non-compacted) format,
        `Platform.fpstate_size` bytes (legacy FXSAVE region, XSAVE header, every component)."""

    def set_fpstate(self, data: bytes) -> None:
        """Load an XSAVE area as get_fpstate returns it (shorter: zero-padded).  Components whose
        XSTATE_BV bit is clear take their initial values.  A malformed header raises
        PlatformError (the Sentry validates what applications give it first)."""

    def cpu_time_ns(self) -> int:
        """CPU time this thread has used running application code.  A platform that cannot
        measure one thread returns its address space's (an upper bound) and says so."""


@runtime_checkable
class AddressSpace(Protocol):
    """The host side of one application address space."""
    released: bool

    def map(self, addr: int, length: int, prot: int, memfile_offset: int) -> None:
        """Make [addr, addr+length) the MemoryFile's pages from `memfile_offset`, with `prot`
        (PROT_READ|PROT_WRITE|PROT_EXEC); replaces whatever was there."""

    def unmap(self, addr: int, length: int) -> None: ...

    def protect(self, addr: int, length: int, prot: int) -> None: ...

    def new_context(self) -> Context:
        """A new thread in this address space, stopped, registers to be set by the Sentry."""

    def release_context(self, ctx: Context) -> None:
        """End a thread (its host resources go; any event it had pending is dropped)."""

    def release(self) -> None:
        """End the address space and every thread in it."""

    def cpu_time_ns(self) -> int:
        """CPU time used by every thread that ran in this address space (a process clock)."""


@runtime_checkable
class Platform(Protocol):
    name: str
    min_user_address: int            # lowest address an application may map (mmap_min_addr)
    max_user_address: int            # one past the highest (TASK_SIZE, or lower)
    reserved: tuple[tuple[int, int], ...]   # [start, end) ranges the platform keeps for itself
    fpstate_size: int                # bytes of Context.get_fpstate() (the user XSAVE max size)
    # Optional (not checked as a member): `xstate`, a hostarch.XstateLayout -- the XSAVE layout
    # application code sees (its CPUID leaf 0xD and XCR0) when it differs from the host's
    # (hostarch.XSTATE), e.g. a KVM guest offered fewer features.  Signal frames and
    # AT_MINSIGSTKSZ follow it (sentry/fpframe.py); get_fpstate() is in that layout.
    # The task loop polls this on every iteration: a bitmask of forwarded host signals since
    # the last call (bit N: signal N), cleared by the call.  Cheap: a C function, ideally.
    forwarded_bits: Callable[[], int]
    # resume(ctx) then wait for the next event of any context: (context, event), or
    # (None, None) when a forwarded host signal interrupted the wait or the stop was not a
    # context's.  The per-syscall path; may be a closure rather than a method.
    run: Callable[[Context], tuple[Context | None, Any]]

    def new_address_space(self) -> AddressSpace: ...

    def resume(self, ctx: Context) -> None:
        """Start `ctx` running with its `regs` (its next event comes from run/wait)."""

    def wait(self, timeout_ns: int, fds: list[tuple[int, int]]) -> tuple[Context | None, Any]:
        """Block until a context's event (-> (ctx, event)), readiness of one of the host `fds`
        ((fd, poll events) pairs; -> (None, [revents per fd])), a forwarded host signal or the
        timeout (-> (None, [0...]) or (None, None)).  timeout_ns < 0: no timeout."""

    def kick(self, ctx: Context) -> None:
        """Make a context that is running application code stop soon (an INTERRUPT_EVENT, or its
        own event if it had one first).  Harmless if it is already stopped."""

    def forward_host_signals(self, sigs: Iterable[int]) -> None:
        """Catch these host signals (meant for the container); each interrupts run/wait and
        shows in forwarded_bits()."""

    def decode_forwarded(self, bits: int) -> list[int]: ...

    def idle(self) -> None:
        """The Sentry is about to block: spare time for the platform (e.g. pre-make stubs)."""

    def release_pool(self) -> None:
        """The sandbox is ending: release every resource kept for later (pools, caches)."""

    def syscall_filters(self) -> Filters:
        """The host syscalls this platform makes from the Sentry's process (and from anything
        that inherits its filter, e.g. ptrace stubs), to be merged into the Sentry's seccomp
        allowlist (gVisor's SyscallFilters())."""


ROLES = (Platform, AddressSpace, Context)
