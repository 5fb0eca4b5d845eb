"""The host syscalls the ptrace platform makes, for the Sentry's seccomp allowlist.

`PtracePlatform.syscall_filters()` returns these (gVisor's SyscallFilters()); sentry/confine.py
merges them into the Sentry's own list.  They cover the platform's calls from the Sentry's
thread and the stubs' calls, which inherit the Sentry's filter under their own: what a stub does
before its own filter (prctl, munmap, seccomp) and what the Sentry injects into it
(stub.INJECTABLE: mmap, munmap, mprotect, clone, exit...).  Arguments are checked where it
matters: ptrace only with the requests used (never PTRACE_ATTACH or PTRACE_SEIZE: the Sentry
can trace only processes that asked for it, its stubs, and their threads); clone only with a
stub thread's flags (the Sentry cannot fork); execveat only of the sealed stub image;
signals only SIGKILL (ending stubs) and SIGURG (kicking them).
"""
from __future__ import annotations

from platforms.contract import Filters

PTRACE_REQUESTS = (
    (0, "PTRACE_TRACEME"), (1, "PTRACE_PEEKTEXT"), (6, "PTRACE_POKEUSER"), (7, "PTRACE_CONT"),
    (31, "PTRACE_SYSEMU"),
    (12, "PTRACE_GETREGS"), (13, "PTRACE_SETREGS"), (14, "PTRACE_GETFPREGS"), (15, "PTRACE_SETFPREGS"),
    (0x4200, "PTRACE_SETOPTIONS"), (0x4202, "PTRACE_GETSIGINFO"), (0x4204, "PTRACE_GETREGSET"),
    (0x4205, "PTRACE_SETREGSET"),
)
# A stub's application thread, as tracer.py injects it: VM FS FILES SIGHAND THREAD SYSVSEM.
CLONE_STUB_THREAD = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000
AT_EMPTY_PATH = 0x1000
PR_SET_PDEATHSIG, PR_SET_NAME, PR_SET_NO_NEW_PRIVS = 1, 15, 38
SECCOMP_SET_MODE_FILTER = 1
F_SETFD = 2
SIGKILL, SIGURG = 9, 23
ALWAYS = ((),)


def _one_of(index: int, arg: str, *values: tuple[int, str]):
    return tuple(((index, arg, "==", v, name),) for v, name in values)


def syscall_filters(stub_fd: int | str) -> Filters:
    """The rules; `stub_fd` is the stub image memfd (a placeholder name where it is unknown)."""
    return {
        # Spawning a stub (rp_spawn_stub): vfork, then in the child setpgid, prctl, PTRACE_TRACEME,
        # close_range, F_SETFD or dup2, execveat of the sealed image; reaping with wait4.
        "vfork": ALWAYS, "setpgid": ALWAYS, "wait4": ALWAYS, "close_range": ALWAYS, "dup2": ALWAYS,
        "fcntl": _one_of(1, "cmd", (F_SETFD, "F_SETFD")),
        "execveat": (((0, "dirfd", "==", stub_fd, "the stub image memfd"),
                      (4, "flags", "has", AT_EMPTY_PATH, "AT_EMPTY_PATH")),),
        # The stub's own set-up, under this filter before its own.
        "prctl": _one_of(0, "option", (PR_SET_PDEATHSIG, "PR_SET_PDEATHSIG"), (PR_SET_NAME, "PR_SET_NAME"),
                         (PR_SET_NO_NEW_PRIVS, "PR_SET_NO_NEW_PRIVS")),
        "seccomp": _one_of(0, "operation", (SECCOMP_SET_MODE_FILTER, "SECCOMP_SET_MODE_FILTER")),
        # What the Sentry injects at the stub's syscall site.
        "mmap": ALWAYS, "munmap": ALWAYS, "mprotect": ALWAYS, "mremap": ALWAYS, "madvise": ALWAYS,
        "clone": _one_of(0, "flags", (CLONE_STUB_THREAD, "CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|"
                                                          "CLONE_THREAD|CLONE_SYSVSEM")),
        "exit": ALWAYS,
        # Driving stubs.
        "ptrace": _one_of(0, "request", *PTRACE_REQUESTS),
        # Waiting for stops and host fds at once (SIGCHLD as a signalfd), the forwarded-signal
        # handler and its wake-up pipe, ending and kicking stubs.
        "ppoll": ALWAYS, "signalfd4": ALWAYS, "rt_sigaction": ALWAYS, "rt_sigprocmask": ALWAYS,
        "pipe2": ALWAYS, "sched_yield": ALWAYS, "clock_gettime": ALWAYS, "clock_nanosleep": ALWAYS,
        "kill": _one_of(1, "sig", (SIGKILL, "SIGKILL")),
        "tgkill": _one_of(2, "sig", (SIGKILL, "SIGKILL"), (SIGURG, "SIGURG")),
        "tkill": _one_of(1, "sig", (SIGURG, "SIGURG")),
    }

