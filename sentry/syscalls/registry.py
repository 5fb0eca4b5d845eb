"""The one syscall table: number -> name, handler, support level, note, argument formats.

gVisor keeps a single table (linux64.go) from which dispatch, `--strace`
decoding and the documentation are all derived; this is ours.  Handler
modules (files, memory, processes, signals, time, poll, sockets, misc)
register with the `syscall` decorator; `sentry.syscalls.TABLE` is the
finished, number-indexed list the task loop dispatches through.

Names and argument prototypes come from python-ptrace, so the x86-64
numbering is not retyped here.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

try:
    # A snapshot of python-ptrace's tables written by install.sh (tools/snapshot_syscall_tables.py):
    # importing python-ptrace's syscall package costs more than the rest of start-up.
    import os as _os
    from sentry.syscalls._ptrace_tables import SOURCES, SYSCALL_NAMES, SYSCALL_PROTOTYPES
    if any(not _os.path.exists(path) or _os.stat(path).st_mtime_ns != mtime for path, mtime in SOURCES):
        raise ImportError("stale snapshot")
except ImportError:
    from ptrace.syscall.linux.x86_64 import SYSCALL_NAMES
    from ptrace.syscall.prototypes import SYSCALL_PROTOTYPES

MAX_NR = 512
# python-ptrace's table also lists the x32 numbers (512 and up) under the same names.
NR_BY_NAME: dict[str, int] = {name: nr for nr, name in sorted(SYSCALL_NAMES.items(), reverse=True) if nr < MAX_NR}


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


def build_table() -> list[Syscall]:
    """The dispatch list, indexed by number; unregistered numbers get an UNIMPLEMENTED entry."""
    table: list[Syscall] = []
    for number in range(MAX_NR):
        entry = _REGISTERED.get(number)
        if entry is None:
            name = SYSCALL_NAMES.get(number, f"syscall_{number}")
            names, types = _prototype(name)
            entry = Syscall(number, name, None, Support.UNIMPLEMENTED, "returns ENOSYS", names, types)
        table.append(entry)
    return table
