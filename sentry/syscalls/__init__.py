"""Syscall handlers, grouped by family, and the table built from them.

Importing this package imports every family module (each registers its
handlers) and builds `TABLE`, indexed by syscall number.
"""
from sentry.syscalls import registry
from sentry.syscalls import files, fsops, memory, processes, signals, time, misc, futex, poll, timers, sockets  # noqa: F401  (registration)

TABLE = registry.build_table()


def all_syscalls() -> list[registry.Syscall]:
    """Every x86-64 syscall number with its name, support level and note (for `runsc-py syscalls`)."""
    from ptrace.syscall.linux.x86_64 import SYSCALL_NAMES
    return [TABLE[nr] for nr in sorted(SYSCALL_NAMES) if nr < registry.MAX_NR]
