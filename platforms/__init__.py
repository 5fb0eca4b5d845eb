"""Platforms: where application code runs.

The contract every platform implements is `platforms.contract` (Platform, AddressSpace,
Context, the Regs register file, the seccomp Filters format) with the events of
`platforms.events` (SyscallEvent, FaultEvent, InterruptEvent, ExitEvent); both are
re-exported here.  Host CPU facts every platform shares (rdtsc, CPUID's XSAVE layout, the
host auxv) are `platforms.hostarch`.  The Sentry imports only these; a platform's own
package (platforms.ptrace, platforms.kvm) is imported by `get_platform`, by name.
"""
from __future__ import annotations

import importlib

from platforms.contract import (INTERRUPT_EVENT, NO_SYSCALL, SYSCALL32_EVENT, SYSCALL_EVENT, AddressSpace,
                                Context, ExitEvent, FaultEvent, Filters, InterruptEvent, Platform,
                                PlatformError, PlatformUnavailable, Regs, RegisterFile, SyscallEvent,
                                copy_regs)

__all__ = ["Platform", "AddressSpace", "Context", "Regs", "RegisterFile", "copy_regs", "Filters",
           "PlatformError", "PlatformUnavailable", "SyscallEvent", "FaultEvent", "InterruptEvent",
           "ExitEvent", "SYSCALL_EVENT", "SYSCALL32_EVENT", "INTERRUPT_EVENT", "NO_SYSCALL",
           "PLATFORMS", "get_platform", "platform_class", "preload"]

# name -> (module, class): the implementations, imported only when chosen.
PLATFORMS = {
    "ptrace": ("platforms.ptrace.tracer", "PtracePlatform"),
    "kvm": ("platforms.kvm", "KvmPlatform"),
    "seccomp_notify": ("platforms.seccomp_notify", "SeccompNotifyPlatform"),
}


def platform_class(name: str):
    """The class of platform `name` (imports its package; may raise PlatformUnavailable)."""
    try:
        module, cls = PLATFORMS[name]
    except KeyError:
        raise ValueError(f"unknown platform {name!r} (known: {', '.join(PLATFORMS)})") from None
    return getattr(importlib.import_module(module), cls)


def preload(name: str) -> None:
    """Import platform `name`'s code now (before the Sentry confines itself, or in a factory
    that forks Sentries); a platform that cannot import here fails later, in get_platform."""
    try:
        platform_class(name)
    except Exception:
        pass


def get_platform(name: str, memfile) -> Platform:
    return platform_class(name)(memfile)
