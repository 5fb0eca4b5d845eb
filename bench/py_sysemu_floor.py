#!/usr/bin/env python3
"""py_sysemu_floor.py [--cffi] PROGRAM [ARGS...] — the Python floor of a ptrace sandbox.

The same tracer as bench/c/sysemu_floor.c, written in Python with ctypes
(or, with --cffi, with a cffi API-mode extension compiled on demand into
bench/.build/, the kind of binding DESIGN.md's platforms/ptrace uses):
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

BUILD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".build")

libc = ctypes.CDLL(None, use_errno=True)
_ptrace = libc.ptrace
_ptrace.restype = ctypes.c_long
_ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]


def load_cffi():
    """Build (once) and import bench/.build/_bench_ptrace, a cffi API-mode
    module exposing ptrace() and a regs buffer."""
    sys.path.insert(0, BUILD_DIR)
    try:
        import _bench_ptrace
        return _bench_ptrace
    except ImportError:
        pass
    import cffi
    ffi = cffi.FFI()
    ffi.cdef("long bench_ptrace(long req, long pid, void *addr, void *data);"
             "struct user_regs_struct { unsigned long long rax, orig_rax, rip; ...; };")
    ffi.set_source("_bench_ptrace", """
        #include <sys/ptrace.h>
        #include <sys/user.h>
        static long bench_ptrace(long req, long pid, void *addr, void *data)
        { return ptrace(req, pid, addr, data); }
    """, extra_compile_args=["-O2"])
    os.makedirs(BUILD_DIR, exist_ok=True)
    ffi.compile(tmpdir=BUILD_DIR, verbose=False)
    import _bench_ptrace
    return _bench_ptrace


def loop_cffi(pid, mod):
    """The SYSEMU loop with cffi calls; returns the exit code."""
    lib, ffi = mod.lib, mod.ffi
    p = lib.bench_ptrace
    regs = ffi.new("struct user_regs_struct *")
    waitpid, wifstopped, wstopsig = os.waitpid, os.WIFSTOPPED, os.WSTOPSIG
    NULL = ffi.NULL
    sig = 0
    while True:
        if p(PTRACE_SYSEMU, pid, NULL, ffi.cast("void *", sig)) < 0:
            raise OSError(ffi.errno, "PTRACE_SYSEMU")
        sig = 0
        _, st = waitpid(pid, 0)
        if not wifstopped(st):
            return code(st)
        if wstopsig(st) != SYSCALL_STOP:
            sig = wstopsig(st)
            continue
        p(PTRACE_GETREGS, pid, NULL, regs)
        if regs.orig_rax == SYS_GETPID:
            regs.rax = 1
            p(PTRACE_SETREGS, pid, NULL, regs)
            continue
        regs.rip -= 2
        regs.rax = regs.orig_rax
        p(PTRACE_SETREGS, pid, NULL, regs)
        stage = 0
        while stage < 2:
            p(PTRACE_SYSCALL, pid, NULL, ffi.cast("void *", sig))
            sig = 0
            _, st = waitpid(pid, 0)
            if not wifstopped(st):
                return code(st)
            if wstopsig(st) == SYSCALL_STOP:
                stage += 1
            else:
                sig = wstopsig(st)


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
    mod = None
    if argv[:1] == ["--cffi"]:
        argv = argv[1:]
        try:
            mod = load_cffi()
        except Exception as e:      # no cffi / compiler: say so on one line
            print(f"py_sysemu_floor: cannot build the cffi module: {e}".splitlines()[0],
                  file=sys.stderr)
            return 125
    if not argv:
        print("usage: py_sysemu_floor.py [--cffi] PROGRAM [ARGS...]", file=sys.stderr)
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
    if mod is not None:
        return loop_cffi(pid, mod)

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
