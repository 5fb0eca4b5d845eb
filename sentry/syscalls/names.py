"""Where the syscall table's names and numbers come from: the kernel's own lists, never retyped.

Three sources, each a copy of the kernel's x86-64 table (arch/x86/entry/syscalls/syscall_64.tbl):

* the host's kernel headers, `asm/unistd_64.h` (linux-libc-dev), the first authority;
* libseccomp's resolver (`seccomp_syscall_resolve_num_arch`), which often knows a few numbers
  more than the headers of the same distribution;
* the `system-calls` package (a table generated from the newest kernel's headers for every
  architecture), so the list reaches the newest numbers even on an older distribution.

They are merged number by number; two sources naming one number differently is a build error
(`NameConflict`), not a silent choice.  tools/snapshot_syscall_tables.py writes the merged list
into sentry/syscalls/_syscall_tables.py at install time (reading all three costs ~30 ms that
every sandbox start would otherwise pay); the registry falls back to `merged_names()` when that
snapshot is missing or older than its sources (`source_stamps()` says which files it depends on).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import re

# x86-64 numbers below this; 512 and up are the x32 ABI's (__X32_SYSCALL_BIT is 0x40000000,
# but the x32 entries of syscall_64.tbl start at 512).
MAX_NR = 512

HEADER_PATHS = ("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "/usr/include/asm/unistd_64.h")
AUDIT_ARCH_X86_64 = 0xC000003E

_DEFINE = re.compile(r"^#define\s+__NR_(\w+)\s+(\d+)\s*$", re.M)


class NameConflict(RuntimeError):
    """Two sources give one syscall number different names."""


def header_path() -> str | None:
    """The host's asm/unistd_64.h, or None when no kernel headers are installed."""
    return next((p for p in HEADER_PATHS if os.path.exists(p)), None)


def from_header(path: str | None = None) -> dict[int, str]:
    """`#define __NR_name N` lines of asm/unistd_64.h as {N: name}."""
    path = path or header_path()
    if path is None:
        return {}
    with open(path) as f:
        return {int(nr): name for name, nr in _DEFINE.findall(f.read()) if int(nr) < MAX_NR}


def _libseccomp() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("seccomp")
    if not name:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def libseccomp_path() -> str | None:
    """The file of the libseccomp the resolver is loaded from (for the snapshot's staleness check)."""
    lib = _libseccomp()
    if lib is None:
        return None
    libc = ctypes.CDLL(None)
    info = (ctypes.c_void_p * 4)()      # Dl_info: dli_fname, dli_fbase, dli_sname, dli_saddr
    if not libc.dladdr(ctypes.cast(lib.seccomp_syscall_resolve_num_arch, ctypes.c_void_p), info) or not info[0]:
        return None
    return os.path.realpath(ctypes.string_at(info[0]).decode())


def from_libseccomp() -> dict[int, str]:
    """libseccomp's x86-64 names, {N: name}; {} without libseccomp."""
    lib = _libseccomp()
    if lib is None:
        return {}
    resolve = lib.seccomp_syscall_resolve_num_arch
    resolve.restype = ctypes.c_void_p
    resolve.argtypes = (ctypes.c_uint32, ctypes.c_int)
    free = ctypes.CDLL(None).free
    free.argtypes = (ctypes.c_void_p,)
    out: dict[int, str] = {}
    for nr in range(MAX_NR):
        p = resolve(AUDIT_ARCH_X86_64, nr)
        if p:
            out[nr] = ctypes.string_at(p).decode()
            free(p)
    return out


def system_calls_path() -> str | None:
    try:
        import system_calls.tables.x86_64 as mod
    except ImportError:
        return None
    return mod.__file__


def from_system_calls() -> dict[int, str]:
    """The `system-calls` package's x86-64 table, {N: name}; {} when it is not installed."""
    try:
        from system_calls.tables.x86_64 import syscalls_x86_64
    except ImportError:
        return {}
    return {nr: name for name, nr in syscalls_x86_64.items() if 0 <= nr < MAX_NR}


def system_calls_version() -> str | None:
    try:
        from system_calls.linux_version import linux_version
    except ImportError:
        return None
    return linux_version


def merged_names() -> tuple[dict[int, str], dict[str, int]]:
    """{N: name} from every source, and how many numbers each source contributed.

    Raises NameConflict when two sources disagree on a number's name.
    """
    sources = (("asm/unistd_64.h", from_header()), ("libseccomp", from_libseccomp()),
               ("system-calls", from_system_calls()))
    names: dict[int, str] = {}
    origin: dict[int, str] = {}
    for label, table in sources:
        for nr, name in table.items():
            if nr in names and names[nr] != name:
                raise NameConflict(f"syscall {nr}: {origin[nr]} says {names[nr]!r}, {label} says {name!r}")
            if nr not in names:
                names[nr], origin[nr] = name, label
    counts = {label: sum(1 for o in origin.values() if o == label) for label, _ in sources}
    return dict(sorted(names.items())), counts


def source_stamps() -> list[tuple[str, int]]:
    """(path, mtime_ns) of every file the merged list is read from, and of this module."""
    paths = [header_path(), libseccomp_path(), system_calls_path(), os.path.abspath(__file__)]
    return [(p, os.stat(p).st_mtime_ns) for p in paths if p and os.path.exists(p)]


def prototypes(names: dict[int, str]) -> dict[str, tuple]:
    """python-ptrace's argument prototypes (for `--strace`), keyed by the kernel's names.

    python-ptrace names a few numbers differently (283 is its "timerfd"); the prototype is found
    through its name for the same number.
    """
    from ptrace.syscall.linux.x86_64 import SYSCALL_NAMES as ptrace_names
    from ptrace.syscall.prototypes import SYSCALL_PROTOTYPES
    out: dict[str, tuple] = {}
    for nr, name in names.items():
        proto = SYSCALL_PROTOTYPES.get(name) or SYSCALL_PROTOTYPES.get(ptrace_names.get(nr, ""))
        if proto:
            out[name] = proto
    return out


def prototype_stamps() -> list[tuple[str, int]]:
    """(path, mtime_ns) of python-ptrace's files that `prototypes` reads."""
    import importlib.util
    out = []
    for mod in ("ptrace.syscall.linux.x86_64", "ptrace.syscall.prototypes"):
        spec = importlib.util.find_spec(mod)
        if spec and spec.origin:
            out.append((spec.origin, os.stat(spec.origin).st_mtime_ns))
    return out
