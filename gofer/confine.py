"""Confining the Gofer process: mount namespace, chroot, capabilities, seccomp.

The Gofer is the only part of the sandbox that touches the host filesystem,
so it is confined as tightly as its job allows, in this order (each step
needs privileges the next one takes away):

1. ``unshare(CLONE_NEWNS)`` and make every mount private, so nothing the
   Gofer mounts leaks to the host and host mount events do not reach it.
   New network, IPC and UTS namespaces too: the Gofer needs none of them,
   so a compromised Gofer finds an empty network stack (seccomp refuses
   socket(2) anyway; this is the second wall).
   A read-only tree is bind-mounted onto itself and remounted read-only, so
   the kernel answers EROFS even if a protocol check were missed.
2. ``chroot(rootfs)``, ``chdir("/")``: the Gofer has no name for any host
   file.  chroot rather than pivot_root keeps ``/proc/PID/root`` showing the
   rootfs from the host (useful to operators and tests); the usual chroot
   escapes need CAP_SYS_CHROOT (dropped), a descriptor from outside (all are
   closed) or a second chroot/mount (not in the seccomp allowlist).
3. Every descriptor is closed except the socket.  fds 0-2 are pointed at an
   O_PATH descriptor of the new root rather than left free: a free fd 2 would
   be the next file the Gofer opens, and a stray C-level stderr write would
   then land in a container file.
4. Capabilities: the bounding set, permitted and effective sets keep only
   CHOWN (give new files the caller's owner), DAC_OVERRIDE and
   DAC_READ_SEARCH (the Sentry does permission checks, as in gVisor; also
   linkat(AT_EMPTY_PATH)), FOWNER (chmod/utimes of files owned by others) and
   FSETID (keep set-id bits on chmod).  ``PR_SET_NO_NEW_PRIVS`` and
   ``PR_SET_DUMPABLE=0`` (no ptrace of the Gofer by the unprivileged).
5. seccomp: an allowlist (ALLOWLIST; ``runsc-py debug --seccomp`` prints it) of
   the forty-odd calls the serving loop and the Python runtime make, with
   argument checks where they are cheap: send/recvmsg only on the socket,
   openat only with O_NOFOLLOW, mmap/mprotect never with PROT_EXEC.  The
   default action is KILL_PROCESS, not ERRNO(EPERM): the set is fixed and
   exercised by the tests, so an unlisted call means a bug or a
   compromise, and for both the right outcome is a dead Gofer (the Sentry sees
   EOF and fails file operations with EIO; the kernel logs the SIGSYS), not an
   attacker free to probe the filter one EPERM at a time.

Everything the child needs is imported before step 2, since no module can be
found after the chroot.
"""
from __future__ import annotations

import ctypes
import errno
import gc
import os
import resource
import signal
import socket
import sys

import pyseccomp

from gofer.protocol import encode
from gofer.server import DEFAULT_MAX_HANDLES, GoferServer

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID = 0, 1, 2, 3, 4
KEPT_CAPS = (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID)
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
SYS_CAPSET = 126
SYS_FCHMODAT2 = 452
SYS_OPEN_TREE = 428
OPEN_TREE_PATH_FLAGS = 0o2000000 | 0x1000 | 0x100     # OPEN_TREE_CLOEXEC|AT_EMPTY_PATH|AT_SYMLINK_NOFOLLOW

PROT_EXEC = 0x4
F_GETFL, F_SETFL = 3, 4


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _check(ret: int, what: str) -> None:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(_libc.mount(None if source is None else os.fsencode(source), os.fsencode(target),
                       None, ctypes.c_ulong(flags), None), f"mount {target}")


def enter_rootfs(rootfs: str, readonly: bool) -> None:
    """Steps 1 and 2: private mount (and net, IPC, UTS) namespaces, then chroot into `rootfs`."""
    rootfs = os.path.realpath(rootfs)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    _mount(None, "/", MS_REC | MS_PRIVATE)
    if readonly:
        _mount(rootfs, rootfs, MS_BIND | MS_REC)
        _mount(None, rootfs, MS_BIND | MS_REMOUNT | MS_RDONLY)
    os.chroot(rootfs)
    os.chdir("/")


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def close_fds_except(keep: set[int], filler: int) -> None:
    """Step 3: close every descriptor not in `keep`; fds 0-2 become dups of `filler`."""
    for fd in (0, 1, 2):
        if fd not in keep:
            os.dup2(filler, fd, inheritable=False)
    low = 3
    for fd in sorted(keep | {2}):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[1])


def read_last_cap() -> int:
    """The highest capability number this kernel knows (read before the chroot hides /proc)."""
    with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
        return int(f.read())


def drop_capabilities(last_cap: int) -> None:
    """Step 4: only KEPT_CAPS remain (bounding, permitted, effective); none inheritable or ambient."""
    for cap in range(last_cap + 1):
        if cap not in KEPT_CAPS:
            _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"PR_CAPBSET_DROP {cap}")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient caps")
    mask = sum(1 << c for c in KEPT_CAPS)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(_CapData(mask, mask, 0), _CapData(0, 0, 0))
    _check(_libc.syscall(ctypes.c_long(SYS_CAPSET), ctypes.byref(header), data), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "PR_SET_DUMPABLE")


# The allowlist as data -- build_seccomp_filter() loads it and `runsc-py debug --seccomp`
# prints it (the Sentry's, sentry/confine.py, has the same shape).  Syscall name ->
# alternatives: the call is allowed when every check of one alternative holds.  A check is
# (argument index, argument name, op, value, value name): op "==" compares the argument
# with value, "has" means every bit of value is set in it, "lacks" that none is.  SOCK_FD
# stands for the descriptor of the Sentry's socket, known when the filter is built.
SOCK_FD = "sock_fd"
_ALWAYS: tuple = ((),)


def _when(*checks: tuple) -> tuple:
    return (checks,)


ALLOWLIST: dict[str, tuple] = {
    # Calls the serving loop makes (see server.py and hostcalls.py) ...
    **{name: _ALWAYS for name in (
        "close", "fstat", "newfstatat", "statx", "lseek", "getdents64", "readlinkat", "mkdirat",
        "mknodat", "symlinkat", "linkat", "unlinkat", "renameat", "renameat2", "fchownat", "fchown",
        "fchmod", "ftruncate", "utimensat", "fstatfs", "fsync", "openat2", "fchmodat2")},
    "openat": _when((2, "flags", "has", os.O_NOFOLLOW, "O_NOFOLLOW")),
    "sendmsg": _when((0, "fd", "==", SOCK_FD, "the Sentry's socket")),
    "recvmsg": _when((0, "fd", "==", SOCK_FD, "the Sentry's socket")),
    "fcntl": (((1, "cmd", "==", F_GETFL, "F_GETFL"),), ((1, "cmd", "==", F_SETFL, "F_SETFL"),)),  # O_NONBLOCK
    # A created file's O_PATH handle, made from its open fd (hostcalls.path_of_fd): with exactly
    # these flags (no OPEN_TREE_CLONE, so no mount copy, and CAP_SYS_ADMIN is gone anyway) it is
    # openat(O_PATH|O_NOFOLLOW), which the openat rule already allows.
    "open_tree": _when((2, "flags", "==", OPEN_TREE_PATH_FLAGS,
                        "OPEN_TREE_CLOEXEC|AT_EMPTY_PATH|AT_SYMLINK_NOFOLLOW")),
    # ... and the Python runtime under it: memory (never executable), signals, the GIL's futex, exit.
    "mmap": _when((2, "prot", "lacks", PROT_EXEC, "PROT_EXEC")),
    "mprotect": _when((2, "prot", "lacks", PROT_EXEC, "PROT_EXEC")),
    **{name: _ALWAYS for name in (
        "brk", "munmap", "mremap", "madvise", "futex", "rt_sigprocmask", "rt_sigreturn",
        "sigaltstack", "getpid", "gettid", "clock_gettime", "exit", "exit_group")},
}
DEFAULT_ACTION = "kill"        # SECCOMP_RET_KILL_PROCESS (see step 5)
# Newer than some libseccomp releases know by name (runsc_py/debug_cmd.py prints from this too).
SYSCALL_NUMBERS = {"fchmodat2": SYS_FCHMODAT2, "open_tree": SYS_OPEN_TREE}


def seccomp_args(checks: tuple, placeholders: dict[str, int | None]) -> list[pyseccomp.Arg] | None:
    """libseccomp comparisons for one alternative of an allowlist (this one's or the Sentry's).
    A value may name a descriptor known only at load time (`placeholders`); None when one of
    those is missing, i.e. the alternative cannot apply."""
    out = []
    for index, _, op, value, _ in checks:
        if isinstance(value, str):
            value = placeholders.get(value)
            if value is None:
                return None
        if op == "==":
            out.append(pyseccomp.Arg(index, pyseccomp.EQ, value))
        elif op == "has":
            out.append(pyseccomp.Arg(index, pyseccomp.MASKED_EQ, value, value))
        elif op == "lacks":
            out.append(pyseccomp.Arg(index, pyseccomp.MASKED_EQ, value, 0))
        else:
            raise ValueError(f"unknown check {op!r}")
    return out


def build_seccomp_filter(sock_fd: int) -> pyseccomp.SyscallFilter:
    """Step 5's filter (built before the chroot, loaded last): ALLOWLIST, anything else kills."""
    f = pyseccomp.SyscallFilter(defaction=pyseccomp.KILL_PROCESS)
    for name, alternatives in ALLOWLIST.items():
        for checks in alternatives:
            f.add_rule(pyseccomp.ALLOW, SYSCALL_NUMBERS.get(name, name), *seccomp_args(checks, {SOCK_FD: sock_fd}))
    return f


def confine_and_serve(sock: socket.socket, rootfs: str, readonly: bool) -> int:
    """The Gofer child's whole life after fork: confine, say ready, serve; return the exit status.

    A setup failure is reported to the parent as an errno reply carrying a
    message (``[errno, "what failed"]``) instead of the ready reply ``[0]``.
    """
    # Objects inherited from the parent must never be finalized here: their
    # descriptors are closed below and the numbers reused for served files.
    gc.freeze()
    sys.stdout = sys.stderr = None
    # Python-level handlers the parent installed must not run in the Gofer.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    sock_fd = sock.fileno()
    try:
        last_cap = read_last_cap()
        seccomp_filter = build_seccomp_filter(sock_fd)
        hard_limit = raise_fd_limit()
        os.umask(0)                              # the Sentry applies the application's umask
        enter_rootfs(rootfs, readonly)
        root_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        close_fds_except({sock_fd, root_fd}, root_fd)
        drop_capabilities(last_cap)
        seccomp_filter.load()
    except OSError as e:
        sock.sendmsg([encode([e.errno or errno.EIO, str(e)])])
        return 1
    # Each handle may keep its parent directory open too; keep clear of RLIMIT_NOFILE.
    max_handles = max(16, min(DEFAULT_MAX_HANDLES, (hard_limit - 64) // 2))
    server = GoferServer(sock, root_fd, readonly=readonly, max_handles=max_handles)
    sock.sendmsg([encode([0])])
    return server.serve()
