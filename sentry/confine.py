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
3. A seccomp filter: calls that name a host path (open*, creat, execve, the
   *stat family without AT_EMPTY_PATH, access, readlink, link/unlink/rename,
   mkdir, chdir, chmod/chown by path, xattrs by path, inotify, mount and
   friends) fail with EACCES; calls that could reshape the host (mount,
   umount2, pivot_root, chroot, kexec, module loading, bpf, reboot,
   swapon/off, settimeofday, perf_event_open, keyctl, userfaultfd, ...) kill
   the Sentry.  Default allow: the Python runtime's needs are not a fixed,
   small set as the Gofer's are, and what matters for the promise -- no host
   path, no host reconfiguration -- is enforced by name.  Stubs and later
   Gofers inherit this filter on top of their own.

`execveat(fd, "", ..., AT_EMPTY_PATH)` stays allowed: it is how a stub is
started (from a sealed memfd) and it names no path.
"""
from __future__ import annotations

import ctypes
import errno
import os

import pyseccomp

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
              "truncate", "mknod", "mknodat", "statfs", "getxattr", "lgetxattr", "setxattr", "lsetxattr",
              "listxattr", "llistxattr", "removexattr", "lremovexattr", "inotify_add_watch",
              "fanotify_mark", "name_to_handle_at", "open_by_handle_at", "uselib", "acct", "quotactl",
              "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr")
FATAL_CALLS = ("mount", "umount2", "pivot_root", "chroot", "kexec_load", "kexec_file_load", "init_module",
               "finit_module", "delete_module", "bpf", "reboot", "swapon", "swapoff", "settimeofday",
               "clock_settime", "clock_adjtime", "adjtimex", "perf_event_open", "keyctl", "add_key",
               "request_key", "userfaultfd", "setns", "unshare", "ioperm", "iopl", "lookup_dcookie",
               "sethostname", "setdomainname", "syslog", "vhangup", "process_vm_writev")


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


def build_filter() -> pyseccomp.SyscallFilter:
    f = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    for name in PATH_CALLS:
        try:
            f.add_rule(pyseccomp.ERRNO(errno.EACCES), name)
        except (RuntimeError, ValueError, OSError):
            pass                                   # not a syscall on this architecture
    for name in FATAL_CALLS:
        try:
            f.add_rule(pyseccomp.KILL_PROCESS, name)
        except (RuntimeError, ValueError, OSError):
            pass
    # The fd forms stay: fstatat/statx/execveat with AT_EMPTY_PATH name no path.
    f.add_rule(pyseccomp.ERRNO(errno.EACCES), "newfstatat", pyseccomp.Arg(3, pyseccomp.MASKED_EQ, AT_EMPTY_PATH, 0))
    f.add_rule(pyseccomp.ERRNO(errno.EACCES), "statx", pyseccomp.Arg(2, pyseccomp.MASKED_EQ, AT_EMPTY_PATH, 0))
    f.add_rule(pyseccomp.ERRNO(errno.EACCES), "execveat", pyseccomp.Arg(4, pyseccomp.MASKED_EQ, AT_EMPTY_PATH, 0))
    return f


def _loopback_up() -> None:
    """A fresh network namespace has `lo` down: bring it up (runc's --network=none has it up)."""
    import fcntl
    import socket
    import struct
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", 0x1 | 0x8 | 0x40))   # SIOCSIFFLAGS: UP|LOOPBACK|RUNNING


def confine(network: str) -> None:
    """Give up the host (see the module docstring).  Irreversible for this process."""
    with open("/proc/sys/kernel/cap_last_cap", "rb") as fh:
        last_cap = int(fh.read())
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
    build_filter().load()
