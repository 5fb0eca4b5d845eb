"""The one syscall table: number -> name, handler, support level, note, argument formats.

gVisor keeps a single table (linux64.go) from which dispatch, `--strace`
decoding and the documentation are all derived; this is ours.  Handler
modules (files, memory, processes, signals, time, poll, sockets, misc)
register with the `syscall` decorator; `sentry.syscalls.TABLE` is the
finished, number-indexed list the task loop dispatches through.

Names and numbers come from the kernel's own lists (asm/unistd_64.h, libseccomp, the
`system-calls` package; see names.py), argument prototypes from python-ptrace, so the x86-64
numbering is not retyped here.  A handler registered under a name that is not the kernel's
name for its number is a start-up error.

`LINUX_RELEASE` is the Linux release whose ABI the table implements: `uname -r` reports it, and
numbers that release does not have are listed as unimplemented with a note saying so.
"""
from __future__ import annotations

import enum
import os as _os
from dataclasses import dataclass
from typing import Callable

from sentry.syscalls.names import MAX_NR

try:
    # The snapshot install.sh writes (tools/snapshot_syscall_tables.py): reading the sources costs
    # more than the rest of start-up.
    from sentry.syscalls._syscall_tables import SOURCES, SYSCALL_NAMES, SYSCALL_PROTOTYPES
    if any(not _os.path.exists(path) or _os.stat(path).st_mtime_ns != mtime for path, mtime in SOURCES):
        raise ImportError("stale snapshot")
except ImportError:
    from sentry.syscalls import names as _names
    SYSCALL_NAMES = _names.merged_names()[0]
    SYSCALL_PROTOTYPES = _names.prototypes(SYSCALL_NAMES)

# The release the table implements (an LTS; its highest number is 462, mseal).  Version-gated
# programs read it from uname(2) and /proc/sys/kernel/osrelease.
LINUX_RELEASE = "6.12.0"
LINUX_RELEASE_LAST_NR = 462
LINUX_VERSION = "#1 SMP PREEMPT_DYNAMIC Sun Nov 17 14:15:08 UTC 2024"   # uname -v: that release's date
# Numbers Linux still reserves but answers ENOSYS itself (the entry points were removed).
REMOVED_FROM_LINUX = frozenset({"uselib", "_sysctl", "create_module", "get_kernel_syms", "query_module",
                                "nfsservctl", "getpmsg", "putpmsg", "afs_syscall", "tuxcall", "security",
                                "vserver"})
# Numbers whose ENOSYS has a reason worth more than "not implemented yet".
UNIMPLEMENTED_NOTES = {
    "uretprobe": "only callable from the kernel's uprobe trampolines; the Sentry has no uprobes: ENOSYS",
    "uprobe": "only callable from the kernel's uprobe trampolines; the Sentry has no uprobes: ENOSYS",
}

NR_BY_NAME: dict[str, int] = {name: nr for nr, name in SYSCALL_NAMES.items()}


class Support(enum.Enum):
    FULL = "full"
    PARTIAL = "partial"          # implemented, with documented gaps (see the note)
    ERROR = "error"              # deliberately answers an error (the note says which and why)
    UNIMPLEMENTED = "unimplemented"  # not written yet: ENOSYS, logged once


@dataclass(slots=True)
class Syscall:
    nr: int
    name: str
    handler: Callable[..., int] | None
    support: Support
    note: str
    arg_names: tuple[str, ...] | None
    arg_types: tuple[str, ...] | None
    nargs: int = 0         # how many raw arguments the handler takes


_REGISTERED: dict[int, Syscall] = {}


def _prototype(name: str) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """Argument names and types; None when python-ptrace has no prototype (strace then shows 6)."""
    proto = SYSCALL_PROTOTYPES.get(name)
    if not proto:
        return None, None
    args = proto[1]
    return tuple(a[1] for a in args), tuple(a[0] for a in args)


def syscall(name: str, support: Support = Support.FULL, note: str = "", nr: int | None = None):
    """Register the decorated function as the handler of syscall `name`.

    The handler is called as `handler(task, a0, a1, ...)` with as many raw
    integer arguments as its signature takes, and returns the result (an
    int >= 0) or raises `SyscallError`.
    """
    def register(fn: Callable[..., int]) -> Callable[..., int]:
        number = NR_BY_NAME[name] if nr is None else nr
        if SYSCALL_NAMES.get(number, name) != name:
            raise RuntimeError(f"syscall {number} is {SYSCALL_NAMES[number]!r} in the kernel's table, not {name!r}")
        if number in _REGISTERED:
            raise RuntimeError(f"syscall {name} registered twice")
        names, types = _prototype(name)
        nargs = fn.__code__.co_argcount - 1 if not fn.__code__.co_flags & 0x04 else 6
        _REGISTERED[number] = Syscall(number, name, fn, support, note, names, types, nargs)
        return fn
    return register


def error_syscall(name: str, err: int, note: str) -> None:
    """Register `name` as deliberately failing with `err` (e.g. clone3 -> ENOSYS so glibc falls back)."""
    from sentry.errors import SyscallError

    def handler(t, *args):
        raise SyscallError(err)
    handler.__name__ = name
    syscall(name, Support.ERROR, note)(handler)


def unimplemented_note(nr: int, name: str) -> str:
    """Why an unregistered number answers ENOSYS."""
    if name in UNIMPLEMENTED_NOTES:
        return UNIMPLEMENTED_NOTES[name]
    if name in REMOVED_FROM_LINUX:
        return "removed from Linux, which answers ENOSYS too"
    if nr > LINUX_RELEASE_LAST_NR:
        return f"added after Linux {LINUX_RELEASE}, the release this table implements: ENOSYS"
    return "not implemented yet: ENOSYS"


def build_table() -> list[Syscall]:
    """The dispatch list, indexed by number; unregistered numbers get an UNIMPLEMENTED entry."""
    table: list[Syscall] = []
    for number in range(MAX_NR):
        entry = _REGISTERED.get(number)
        if entry is None:
            name = SYSCALL_NAMES.get(number, f"syscall_{number}")
            names, types = _prototype(name)
            entry = Syscall(number, name, None, Support.UNIMPLEMENTED, unimplemented_note(number, name), names, types)
        table.append(entry)
    return table
