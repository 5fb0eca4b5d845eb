"""Confining the Sentry once the sandbox is up.

The Sentry holds everything it will ever need as file descriptors by the time
the init process is loaded: the Gofer sockets, the MemoryFile, the stub image,
stdio and its log.  So from then on it gives up the host, in this order:

1. New mount, IPC and UTS namespaces (and network, for --network=none), every
   mount private; an empty tmpfs is mounted over /proc in the new namespace,
   remounted read-only, and becomes the root (chroot): the Sentry has no name
   for any host file.
2. Every capability dropped (bounding, permitted, effective, inheritable,
   ambient); PR_SET_NO_NEW_PRIVS; not dumpable.
3. A seccomp allowlist (`allowlist()`: the Sentry's own ALLOWLIST below merged with
   the platform's `syscall_filters()`, as gVisor merges its platform's
   SyscallFilters(); `runsc-py debug --seccomp` prints it) of about sixty
   calls, where gVisor's Sentry allows about seventy: only the host calls the
   confined Sentry makes -- the task loop and the Python runtime under it
   here, and what the platform needs (for ptrace, platforms/ptrace/filters.py:
   its stubs inherit this filter under their own, so the calls they make
   before their own filter and the ones the Sentry injects into them are
   there too).  The set was measured, not
   guessed: with the default action at SECCOMP_RET_LOG, the fast and slow
   test suites and TCP/UDP over IPv4 and IPv6 in a sandbox (--network=none
   and =host) ran while entries of a generous first list were taken off in
   turns, until each one left was seen in the kernel's log or shown unused;
   then both suites passed with the default at kill.  A few entries only
   rare paths reach and come from reading them: tkill in the signal-
   forwarding handler, F_SETFD in the stub spawner, restart_syscall after a
   stop.  Where it matters the arguments are checked too:

   * no open, openat or execve at all (they and every other call that names
     a host path -- the stat family without AT_EMPTY_PATH, access, readlink,
     link/unlink/rename, mkdir, chdir, chmod/chown by path, xattrs by path,
     statx, inotify, the new mount API -- fail with EACCES, PATH_CALLS: the
     Python runtime still tries a path on rare paths, e.g. linecache while
     formatting a traceback, and an exception the Sentry already handles is
     the right answer there, not a dead sandbox);
   * (ptrace) execveat only of the stub image: dirfd must be the sealed stub
     memfd and AT_EMPTY_PATH set; a relative
     name against a memfd fails (ENOTDIR), an absolute one resolves in the
     empty root.  newfstatat only with AT_EMPTY_PATH (glibc's fstat()).  The
     flag does not stop a non-empty name from being resolved: in the empty
     root, or against a directory descriptor -- the Sentry holds none
     (directories are listed through the Gofer protocol), though a
     compromised Sentry could ask the Gofer for one and then stat, never
     open, host paths through it;
   * (ptrace) ptrace only with the requests the platform uses: no PTRACE_ATTACH or
     PTRACE_SEIZE, so the Sentry can only ever trace processes that asked
     for it (its stubs, PTRACE_TRACEME before exec) and their threads
     (PTRACE_O_TRACECLONE).  Without CAP_SYS_PTRACE it could not attach to a
     process holding any capability anyway;
   * (ptrace) clone only with the flags of a stub's application thread (CLONE_THREAD
     and CLONE_VM among them): the Sentry cannot fork, and it makes no
     threads of its own (so no futex: its one thread never contends);
     vfork is how a stub starts;
   * socket only for AF_INET and AF_INET6 (the sandbox's host sockets);
     fcntl, ioctl, prctl and seccomp only with the commands used (no
     TIOCSTI on a host tty, for one); kill/tgkill/tkill only with SIGKILL
     or SIGURG (ending and kicking stubs).  They still take any pid: a
     Sentry running as root without capabilities may signal processes of
     its own uid -- a PID or user namespace would close that.

   The default action is SECCOMP_RET_KILL_PROCESS, as in gVisor: a call off
   the list means a bug or a compromise, and the kernel logs the SIGSYS with
   the syscall number.  The host-reshaping calls (FATAL_CALLS: mount,
   umount2, pivot_root, chroot, kexec, module loading, bpf, reboot,
   swapon/off, settimeofday, perf_event_open, keyctl, userfaultfd, setns,
   unshare, ...) are simply not on the list, so they kill.  Stubs inherit
   the filter under their own.
"""
from __future__ import annotations

import ctypes
import errno
import os

import pyseccomp

from gofer.confine import seccomp_args as gofer_seccomp_args

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET = 0x20000, 0x04000000, 0x08000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 0x20, 0x4000, 1 << 18
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 4, 24, 38, 47
AT_EMPTY_PATH = 0x1000
SYS_CAPSET = 126

PATH_CALLS = ("open", "openat", "openat2", "creat", "execve", "stat", "lstat", "access", "faccessat",
              "faccessat2", "readlink", "readlinkat", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat",
              "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "chdir", "chmod",
              "fchmodat", "chown", "lchown", "fchownat", "utime", "utimes", "futimesat", "utimensat",
              "truncate", "mknod", "mknodat", "statfs", "statx", "getxattr", "lgetxattr", "setxattr",
              "lsetxattr", "listxattr", "llistxattr", "removexattr", "lremovexattr", "inotify_add_watch",
              "fanotify_mark", "name_to_handle_at", "open_by_handle_at", "uselib", "acct", "quotactl",
              "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr")
# Not on the allowlist, so they kill (the default action); listed so that tests and
# `runsc-py debug --seccomp` can say so, and so that build_filter() can check it.
FATAL_CALLS = ("mount", "umount2", "pivot_root", "chroot", "kexec_load", "kexec_file_load", "init_module",
               "finit_module", "delete_module", "bpf", "reboot", "swapon", "swapoff", "settimeofday",
               "clock_settime", "clock_adjtime", "adjtimex", "perf_event_open", "keyctl", "add_key",
               "request_key", "userfaultfd", "setns", "unshare", "ioperm", "iopl", "lookup_dcookie",
               "sethostname", "setdomainname", "syslog", "vhangup", "process_vm_writev", "process_vm_readv")

# Argument values the allowlist checks.
AF_INET, AF_INET6 = 2, 10
F_SETFD, F_GETFL, F_SETFL, F_SETOWN, F_DUPFD_CLOEXEC = 2, 3, 4, 8, 1030
TCGETS, TCSETS, TCSETSW, TCSETSF, TIOCGWINSZ, TIOCSWINSZ = 0x5401, 0x5402, 0x5403, 0x5404, 0x5413, 0x5414
FIONBIO = 0x5421

# The allowlist as data -- build_filter() loads it and `runsc-py debug --seccomp`
# prints it.  Syscall name -> alternatives: the call is allowed when every check
# of one alternative holds.  A check is (argument index, argument name, op,
# value, value name): op "==" compares the argument with value, "has" means
# every bit of value is set in it, "lacks" that none is.
Check = tuple[int, str, str, int | str, str]
ALWAYS: tuple[tuple[Check, ...], ...] = ((),)     # one alternative without checks


def one_of(index: int, arg: str, *values: tuple[int, str]) -> tuple[tuple[Check, ...], ...]:
    """Alternatives: argument `index` equals one of `values` ((value, name) pairs)."""
    return tuple(((index, arg, "==", v, name),) for v, name in values)


def when(*checks: Check) -> tuple[tuple[Check, ...], ...]:
    """One alternative: all `checks` hold."""
    return (checks,)


ALLOWLIST: dict[str, tuple[tuple[Check, ...], ...]] = {
    # Memory: the Python allocator and the MemoryFile mapping; mmap/munmap/mprotect/clone/exit are
    # also what the Sentry injects into stubs, and munmap/prctl/seccomp what a stub does at start.
    "brk": ALWAYS, "mmap": ALWAYS, "munmap": ALWAYS, "mprotect": ALWAYS, "mremap": ALWAYS, "madvise": ALWAYS,
    # Waiting and time: the task loop (ppoll), reaping the Gofer (wait4), the application's clocks.
    "ppoll": ALWAYS, "poll": ALWAYS, "clock_gettime": ALWAYS, "clock_nanosleep": ALWAYS,
    "restart_syscall": ALWAYS, "sched_yield": ALWAYS, "sched_getaffinity": ALWAYS, "sysinfo": ALWAYS,
    "wait4": ALWAYS,
    # membarrier(2) for the application: the host's global barrier (sentry/syscalls/sched.py).
    "membarrier": when((0, "cmd", "==", 1, "MEMBARRIER_CMD_GLOBAL")),
    # Signals: forwarded host signals.
    "rt_sigaction": ALWAYS, "rt_sigprocmask": ALWAYS, "rt_sigreturn": ALWAYS,
    # Descriptors the Sentry already holds: Gofer-donated files, the MemoryFile, stdio, pipes, sockets.
    "read": ALWAYS, "write": ALWAYS, "readv": ALWAYS, "writev": ALWAYS, "pread64": ALWAYS,
    "preadv2": ALWAYS, "pwritev2": ALWAYS, "lseek": ALWAYS, "close": ALWAYS, "close_range": ALWAYS,
    "dup2": ALWAYS, "pipe2": ALWAYS, "ftruncate": ALWAYS, "fsync": ALWAYS, "getrandom": ALWAYS,
    "newfstatat": when((3, "flags", "has", AT_EMPTY_PATH, "AT_EMPTY_PATH")),
    "fcntl": one_of(1, "cmd", (F_SETFD, "F_SETFD"), (F_GETFL, "F_GETFL"), (F_SETFL, "F_SETFL"),
                    (F_SETOWN, "F_SETOWN"), (F_DUPFD_CLOEXEC, "F_DUPFD_CLOEXEC")),
    "ioctl": one_of(1, "request", (TCGETS, "TCGETS"), (TCSETS, "TCSETS"), (TCSETSW, "TCSETSW"),
                    (TCSETSF, "TCSETSF"), (TIOCGWINSZ, "TIOCGWINSZ"), (TIOCSWINSZ, "TIOCSWINSZ"),
                    (FIONBIO, "FIONBIO")),
    # The sandbox's inet sockets are host sockets in its network namespace; the control socket;
    # the Gofer channels (sendmsg/recvmsg with SCM_RIGHTS).
    "socket": one_of(0, "domain", (AF_INET, "AF_INET"), (AF_INET6, "AF_INET6")),
    "bind": ALWAYS, "listen": ALWAYS, "accept4": ALWAYS, "connect": ALWAYS, "shutdown": ALWAYS,
    "getsockname": ALWAYS, "getpeername": ALWAYS, "getsockopt": ALWAYS, "setsockopt": ALWAYS,
    "sendmsg": ALWAYS, "recvmsg": ALWAYS,
    "getpid": ALWAYS, "exit_group": ALWAYS,
}
# Not the Sentry's own: the platform's (syscall_filters()), merged in by allowlist().
DEFAULT_ACTION = "kill"        # SECCOMP_RET_KILL_PROCESS
REFUSED_ERRNO = errno.EACCES   # what PATH_CALLS (and the path forms of newfstatat, execveat) get


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _check(ret: int, what: str) -> None:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"confining the Sentry: {what}: {os.strerror(err)}")


def _mount(source: bytes | None, target: bytes, fstype: bytes | None, flags: int, data: bytes | None) -> None:
    _check(_libc.mount(source, target, fstype, ctypes.c_ulong(flags), data), f"mount {target!r}")


def allowlist(platform_filters: dict | None = None) -> dict[str, tuple[tuple[Check, ...], ...]]:
    """The Sentry's ALLOWLIST merged with a platform's syscall_filters(): a call allowed by
    either is allowed, under the alternatives of both (any unchecked one makes it unchecked)."""
    merged = {name: tuple(alts) for name, alts in ALLOWLIST.items()}
    for name, alts in (platform_filters or {}).items():
        both = merged.get(name, ()) + tuple(alts)
        if any(not checks for checks in both):
            both = ALWAYS
        merged[name] = tuple(dict.fromkeys(both))
    return merged


def seccomp_args(checks: tuple[Check, ...]) -> list[pyseccomp.Arg] | None:
    """libseccomp argument comparisons for one alternative of the allowlist."""
    return gofer_seccomp_args(checks, {})


def build_filter(platform_filters: dict | None = None) -> pyseccomp.SyscallFilter:
    """Step 3's filter: allowlist(platform_filters) allowed, PATH_CALLS refused with EACCES,
    anything else kills."""
    rules = allowlist(platform_filters)
    overlap = set(rules) & set(FATAL_CALLS + PATH_CALLS)
    if overlap:
        raise ValueError(f"the Sentry's allowlist names refused calls: {sorted(overlap)}")
    f = pyseccomp.SyscallFilter(defaction=pyseccomp.KILL_PROCESS)
    for name, alternatives in rules.items():
        for checks in alternatives:
            args = seccomp_args(checks)
            if args is not None:
                f.add_rule(pyseccomp.ALLOW, name, *args)
    refuse = pyseccomp.ERRNO(REFUSED_ERRNO)
    for name in PATH_CALLS:
        try:
            f.add_rule(refuse, name)
        except (RuntimeError, ValueError, OSError):
            pass                                   # not a syscall on this architecture
    # The path forms of the two fd calls on the list are refused the same way.
    f.add_rule(refuse, "newfstatat", pyseccomp.Arg(3, pyseccomp.MASKED_EQ, AT_EMPTY_PATH, 0))
    f.add_rule(refuse, "execveat", pyseccomp.Arg(4, pyseccomp.MASKED_EQ, AT_EMPTY_PATH, 0))
    return f


def _loopback_up() -> None:
    """A fresh network namespace has `lo` down: bring it up (runc's --network=none has it up)."""
    import fcntl
    import socket
    import struct
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", 0x1 | 0x8 | 0x40))   # SIOCSIFFLAGS: UP|LOOPBACK|RUNNING


def confine(network: str, platform_filters: dict | None = None) -> None:
    """Give up the host (see the module docstring).  Irreversible for this process.
    `platform_filters`: the platform's syscall_filters(), merged into the allowlist."""
    with open("/proc/sys/kernel/cap_last_cap", "rb") as fh:
        last_cap = int(fh.read())
    seccomp_filter = build_filter(platform_filters)
    flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | (CLONE_NEWNET if network == "none" else 0)
    _check(_libc.unshare(flags), "unshare")
    if network == "none":
        _loopback_up()
    _mount(None, b"/", None, MS_REC | MS_PRIVATE, None)
    _mount(b"none", b"/proc", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=4k,mode=555")
    _mount(None, b"/proc", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    os.chroot("/proc")
    os.chdir("/")
    for cap in range(last_cap + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"PR_CAPBSET_DROP {cap}")
    _check(_libc.prctl(PR_CAP_AMBIENT, 4, 0, 0, 0), "clear ambient capabilities")
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)(_CapData(0, 0, 0), _CapData(0, 0, 0))
    _check(_libc.syscall(ctypes.c_long(SYS_CAPSET), ctypes.byref(header), data), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "PR_SET_DUMPABLE")
    seccomp_filter.load()
