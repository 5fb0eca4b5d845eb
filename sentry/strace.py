"""--strace: one line per syscall, as gVisor's `runsc --strace` prints.

Argument decoding comes from the syscall table's prototypes (python-ptrace's
x86-64 list): string arguments are read from application memory, fds are
signed decimals, everything else hex.  Results show the errno name.
"""
from __future__ import annotations

from sentry.errors import SyscallError, errname

_STRING_ARGS = {"filename", "pathname", "oldname", "newname", "path", "name", "specialfile",
                "library", "dev_name", "dir_name", "type", "oldpath", "newpath", "target",
                "linkpath", "old", "new", "filename1", "filename2"}


def _arg(t, typ: str, name: str, value: int) -> str:
    if "char" in typ and "*" in typ and (name in _STRING_ARGS or "filename" in name) and "const" in typ:
        try:
            s = t.mm.cstring(value, 256)
            return repr(s.decode("utf-8", "backslashreplace"))[:120]
        except SyscallError:
            return f"{value:#x}"
    if typ in ("int", "unsigned int", "long", "size_t", "ssize_t", "pid_t", "uid_t", "gid_t") and "fd" in name:
        v = value & 0xFFFFFFFF
        return str(v - (1 << 32) if v >= 1 << 31 else v)
    if typ in ("int", "size_t", "long", "unsigned int", "unsigned long", "pid_t"):
        return str(value if value < 1 << 63 else value - (1 << 64))
    return f"{value:#x}"


def format_call(t, entry, result, nr: int | None = None) -> str:
    regs = t.ctx.regs
    raw = (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9)
    if entry is None:
        return f"[{t.tid:>4}] syscall_{nr}(...) = -1 ENOSYS"
    names = entry.arg_names if entry.arg_names is not None else ("",) * 6
    types = entry.arg_types if entry.arg_types is not None else ("",) * 6
    args = ", ".join(_arg(t, types[i], names[i], raw[i]) for i in range(len(names)))
    if result is None:
        res = "?"
    elif result < 0 and result > -4096:
        res = f"-1 {errname(-result)}"
    else:
        res = f"{result:#x}" if result > 0xFFFF else str(result)
    return f"[{t.tg.tgid:>4}:{t.tid:>4}] {entry.name}({args}) = {res}"
