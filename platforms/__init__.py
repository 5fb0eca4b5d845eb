"""Platforms: where application code runs.

Both platforms (ptrace, kvm) implement one contract, so the Sentry above
never knows which one runs:

* `Platform.new_address_space() -> AddressSpace`, with
  `AddressSpace.map(addr, length, prot, memfile_offset)`, `.unmap(addr, length)`,
  `.protect(addr, length, prot)` and `.release()`.
* `AddressSpace.new_context() -> Context`: one application thread.  A context
  has `regs` (the general registers, fields named as `struct user_regs_struct`).
* Running.  DESIGN.md describes a blocking `Context.switch(regs) -> event`;
  the Sentry is one single-threaded event loop over many application threads,
  so the contract has the split form as well:
  `Platform.resume(ctx)` (start it running with its `regs`),
  `Platform.run(ctx) -> (ctx2, event)` (resume `ctx`, then wait for the next
  event of ANY context: the common case of one runnable thread costs one
  call), and `Platform.wait(timeout_ns, host_fds) -> (ctx, event) | (None, revents)`.
  `Context.switch()` is `run` when only that context runs.

Events (`platforms.events`): `SyscallEvent` (registers hold the call),
`FaultEvent` (signal number, si_code, address: SIGSEGV, SIGBUS, SIGFPE,
SIGILL, SIGTRAP), `ExitEvent` (the host thread died, e.g. killed).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SyscallEvent:
    pass


@dataclass(slots=True)
class FaultEvent:
    signo: int
    code: int
    addr: int


@dataclass(slots=True)
class ExitEvent:
    status: int          # host wait status


SYSCALL_EVENT = SyscallEvent()
# A syscall stop the platform could not confirm came from the 64-bit `syscall` instruction
# (ptrace: rcx != rip, as `int $0x80` leaves it): the Sentry looks at the instruction.
SYSCALL_SUSPECT = SyscallEvent()


def get_platform(name: str, memfile):
    if name == "ptrace":
        from platforms.ptrace.tracer import PtracePlatform
        return PtracePlatform(memfile)
    if name == "kvm":
        from platforms.kvm import KvmPlatform   # noqa: F401  (raises if unavailable)
        return KvmPlatform(memfile)
    raise ValueError(f"unknown platform {name!r}")
