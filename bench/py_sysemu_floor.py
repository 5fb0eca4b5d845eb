#!/usr/bin/env python3
"""py_sysemu_floor.py PROGRAM [ARGS...] — the Python floor of a ptrace sandbox.

The same tracer as bench/c/sysemu_floor.c, written in Python with ctypes:
PTRACE_SYSEMU, getpid answered with rax = 1 through PTRACE_GETREGS /
PTRACE_SETREGS, every other syscall rewound and run for real under
PTRACE_SYSCALL.  It is what the simplest possible Python Sentry loop costs
per trapped syscall (one ctypes ptrace resume, os.waitpid, GETREGS, SETREGS)
and so tells how much of runsc-py's cost is the interpreter itself and how
much is the Sentry's own work.  Pin it with the harness (cpu=...).

Exit status: the tracee's (128+signal if killed).
"""
import ctypes
import os
import sys

PTRACE_TRACEME = 0
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_SYSCALL = 24
PTRACE_SETOPTIONS = 0x4200
PTRACE_SYSEMU = 31
PTRACE_O_TRACESYSGOOD = 1
PTRACE_O_EXITKILL = 1 << 20
SYS_GETPID = 39
SYSCALL_STOP = 0x80 | 5     # SIGTRAP | 0x80
RAX, ORIG_RAX, RIP = 10, 15, 16

libc = ctypes.CDLL(None, use_errno=True)
_ptrace = libc.ptrace
_ptrace.restype = ctypes.c_long
_ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]


class Regs(ctypes.Structure):       # struct user_regs_struct (x86_64)
    _fields_ = [("r", ctypes.c_ulong * 27)]


def ptrace(req, pid, addr=None, data=None):
    if _ptrace(req, pid, addr, data) < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"ptrace({req}): {os.strerror(e)}")


def code(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 125


def main(argv):
    if not argv:
        print("usage: py_sysemu_floor.py PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    pid = os.fork()
    if pid == 0:
        try:
            ptrace(PTRACE_TRACEME, 0)
            os.execv(argv[0], argv)
        except OSError as e:
            print(f"py_sysemu_floor: {argv[0]}: {e.strerror}", file=sys.stderr)
        os._exit(127)

    _, st = os.waitpid(pid, 0)              # exec SIGTRAP stop
    if not os.WIFSTOPPED(st):
        return code(st)
    ptrace(PTRACE_SETOPTIONS, pid, None, PTRACE_O_EXITKILL | PTRACE_O_TRACESYSGOOD)

    regs = Regs()
    r = regs.r
    pregs = ctypes.addressof(regs)
    sysemu, getregs, setregs = PTRACE_SYSEMU, PTRACE_GETREGS, PTRACE_SETREGS
    waitpid, wifstopped, wstopsig = os.waitpid, os.WIFSTOPPED, os.WSTOPSIG
    sig = 0
    while True:
        if _ptrace(sysemu, pid, None, sig) < 0:
            ptrace(sysemu, pid, None, sig)  # raises with errno
        sig = 0
        _, st = waitpid(pid, 0)
        if not wifstopped(st):
            return code(st)
        if wstopsig(st) != SYSCALL_STOP:
            sig = wstopsig(st)              # deliver the signal
            continue
        _ptrace(getregs, pid, None, pregs)
        if r[ORIG_RAX] == SYS_GETPID:
            r[RAX] = 1
            _ptrace(setregs, pid, None, pregs)
            continue
        # really run it: rewind onto `syscall`, restore rax, trace it through
        r[RIP] -= 2
        r[RAX] = r[ORIG_RAX]
        ptrace(PTRACE_SETREGS, pid, None, pregs)
        stage = 0
        while stage < 2:
            ptrace(PTRACE_SYSCALL, pid, None, sig)
            sig = 0
            _, st = waitpid(pid, 0)
            if not wifstopped(st):
                return code(st)
            if wstopsig(st) == SYSCALL_STOP:
                stage += 1
            else:
                sig = wstopsig(st)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
