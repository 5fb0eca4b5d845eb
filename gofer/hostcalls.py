"""The handful of host system calls the Gofer needs that the os module does not expose.

Every Gofer operation starts from a held ``O_PATH`` descriptor, and the
descriptor-relative forms the kernel offers for that (``AT_EMPTY_PATH`` on
fchownat/linkat/utimensat, ``fchmodat2``, ``openat2``'s ``RESOLVE_*``,
``renameat2``'s flags, raw ``getdents64`` with d_ino/d_type/d_off) are not
reachable through ``os``: Python's ``os.chown("", dir_fd=fd)`` does not pass
AT_EMPTY_PATH, and glibc emulates ``fchmodat(AT_SYMLINK_NOFOLLOW)`` by opening
``/proc/self/fd/N``, a magic link the Gofer must never use.  So these are thin
``ctypes`` calls of ``syscall(2)`` by number (x86_64), each raising
``OSError(errno)`` like the os module does.

ctypes, not cffi: these calls are one per request at most and the Gofer's
cost is dominated by the socket round trip; ctypes needs no build step and
no compiler inside a chroot.  Everything here is resolved at import time,
before the Gofer chroots, because nothing can be loaded afterwards.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# x86_64 syscall numbers.
SYS_FSTATFS = 138
SYS_GETDENTS64 = 217
SYS_FCHOWNAT = 260
SYS_LINKAT = 265
SYS_UTIMENSAT = 280
SYS_RENAMEAT2 = 316
SYS_OPEN_TREE = 428
SYS_OPENAT2 = 437
SYS_FCHMODAT2 = 452

AT_EMPTY_PATH = 0x1000
AT_SYMLINK_NOFOLLOW = 0x100
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
# open_tree(2)'s flags for path_of_fd, the only ones the Gofer's seccomp filter lets through:
# never OPEN_TREE_CLONE (a detached mount copy) or AT_RECURSIVE.
OPEN_TREE_PATH_FLAGS = OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08

# The resolution every Gofer openat2 uses: stay beneath the starting directory, never
# follow any symlink (a trailing one is returned as an O_PATH fd when asked for with
# O_PATH|O_NOFOLLOW), never a /proc magic link.  Mount crossings are allowed: bind
# mounts inside the container's rootfs are part of the tree it serves.
RESOLVE_GOFER = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS

_DIRENT_HEAD = struct.Struct("=QqHB")          # d_ino, d_off, d_reclen, d_type


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("f_bsize", ctypes.c_long),
                ("f_blocks", ctypes.c_uint64), ("f_bfree", ctypes.c_uint64),
                ("f_bavail", ctypes.c_uint64), ("f_files", ctypes.c_uint64),
                ("f_ffree", ctypes.c_uint64), ("f_fsid", ctypes.c_int * 2),
                ("f_namelen", ctypes.c_long), ("f_frsize", ctypes.c_long),
                ("f_flags", ctypes.c_long), ("f_spare", ctypes.c_long * 4)]


_openat2_works = True
_open_tree_works = True
_fchmodat2_works = True


def _check(ret: int) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _int(v: int) -> ctypes.c_long:
    return ctypes.c_long(v)


# openat2's own entry point: argument types declared once (no c_long wrapping per call), and
# one open_how reused (the Gofer is single threaded), passed by its address.
_openat2_call = _libc["syscall"]
_openat2_call.restype = ctypes.c_long
_openat2_call.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)
_how = _OpenHow(0, 0, RESOLVE_GOFER)
_how_addr = ctypes.addressof(_how)
_HOW_SIZE = ctypes.sizeof(_OpenHow)
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY


def open_beneath(dirfd: int, name: bytes, flags: int, mode: int = 0) -> int:
    """Open one component `name` of directory `dirfd`, never following a symlink.

    Uses openat2(RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS|RESOLVE_NO_SYMLINKS) where the
    kernel has it, and otherwise openat(O_NOFOLLOW), which for a single component
    that is neither '.' nor '..' resolves exactly the same entry.
    """
    global _openat2_works
    if flags & os.O_PATH:
        flags = _PATH_FLAGS | (flags & os.O_DIRECTORY)      # openat2 allows no more
    else:
        flags |= _OPEN_FLAGS
    if _openat2_works:
        how = _how
        how.flags = flags
        how.mode = mode if flags & os.O_CREAT else 0
        ret = _openat2_call(SYS_OPENAT2, dirfd, name, _how_addr, _HOW_SIZE)
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        if err != errno.ENOSYS:
            raise OSError(err, os.strerror(err))
        _openat2_works = False
    return os.open(name, flags, mode, dir_fd=dirfd)


_open_tree_call = _libc["syscall"]
_open_tree_call.restype = ctypes.c_long
_open_tree_call.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_char_p, ctypes.c_ulong)


def path_of_fd(fd: int) -> int | None:
    """An O_PATH descriptor of the very file the open descriptor `fd` names, made from `fd`
    itself: open_tree(fd, "", AT_EMPTY_PATH|AT_SYMLINK_NOFOLLOW|OPEN_TREE_CLOEXEC), which
    without OPEN_TREE_CLONE is openat(O_PATH) of that file (Linux 5.2), no name looked up.

    None when the kernel (or a container runtime's filter: Docker's refuses open_tree without
    CAP_SYS_ADMIN) does not allow it; the caller then looks the name up and compares.
    """
    global _open_tree_works
    if not _open_tree_works:
        return None
    ret = _open_tree_call(SYS_OPEN_TREE, fd, b"", OPEN_TREE_PATH_FLAGS)
    if ret >= 0:
        return ret
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM):
        _open_tree_works = False
        return None
    raise OSError(err, os.strerror(err))


def fchown_empty(fd: int, uid: int, gid: int) -> None:
    """Change the owner of the file `fd` (an O_PATH fd, symlinks included) itself."""
    _check(_syscall(_int(SYS_FCHOWNAT), _int(fd), b"", _int(uid), _int(gid),
                    _int(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)))


def fchmod_empty(fd: int, mode: int) -> bool:
    """chmod the file `fd` (O_PATH) names via fchmodat2(AT_EMPTY_PATH).

    Returns False when the kernel predates fchmodat2 (Linux 6.6); the caller
    then reopens the file for real and uses fchmod(2).
    """
    global _fchmodat2_works
    if not _fchmodat2_works:
        return False
    ret = _syscall(_int(SYS_FCHMODAT2), _int(fd), b"", _int(mode), _int(AT_EMPTY_PATH))
    if ret < 0 and ctypes.get_errno() == errno.ENOSYS:
        _fchmodat2_works = False
        return False
    _check(ret)
    return True


def link_empty(fd: int, newdirfd: int, newname: bytes) -> None:
    """linkat(fd, "", newdirfd, newname, AT_EMPTY_PATH): needs CAP_DAC_READ_SEARCH."""
    _check(_syscall(_int(SYS_LINKAT), _int(fd), b"", _int(newdirfd), newname, _int(AT_EMPTY_PATH)))


def renameat2(olddirfd: int, oldname: bytes, newdirfd: int, newname: bytes, flags: int) -> None:
    _check(_syscall(_int(SYS_RENAMEAT2), _int(olddirfd), oldname, _int(newdirfd), newname,
                    _int(flags)))


def _timespec(ns: int, utime_now: int, utime_omit: int) -> _Timespec:
    if ns in (utime_now, utime_omit):
        return _Timespec(0, ns)
    sec, nsec = divmod(ns, 1_000_000_000)
    return _Timespec(sec, nsec)


def utimens_empty(fd: int, atime_ns: int, mtime_ns: int, utime_now: int, utime_omit: int) -> None:
    """Set the times of the file `fd` (O_PATH) names, without following a symlink."""
    times = (_Timespec * 2)(_timespec(atime_ns, utime_now, utime_omit),
                            _timespec(mtime_ns, utime_now, utime_omit))
    _check(_syscall(_int(SYS_UTIMENSAT), _int(fd), b"", times,
                    _int(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)))


def fstatfs(fd: int) -> dict[str, int]:
    """statfs(2) of the filesystem holding `fd` (O_PATH is fine)."""
    buf = _Statfs()
    _check(_syscall(_int(SYS_FSTATFS), _int(fd), ctypes.byref(buf)))
    return {"f_type": buf.f_type, "f_bsize": buf.f_bsize, "f_blocks": buf.f_blocks,
            "f_bfree": buf.f_bfree, "f_bavail": buf.f_bavail, "f_files": buf.f_files,
            "f_ffree": buf.f_ffree, "f_namelen": buf.f_namelen, "f_frsize": buf.f_frsize,
            "f_flags": buf.f_flags}


class DirentReader:
    """Raw getdents64(2) into one reusable buffer, parsed to (ino, d_type, name, d_off)."""

    def __init__(self, size: int) -> None:
        self._buf = ctypes.create_string_buffer(size)
        self.size = size

    def read(self, fd: int, room: int) -> tuple[list[tuple[int, int, bytes, int]], int]:
        """One getdents64 call of at most `room` bytes: (entries, bytes used); no entries at the end."""
        n = _check(_syscall(_int(SYS_GETDENTS64), _int(fd), self._buf, _int(min(room, self.size))))
        raw = self._buf.raw[:n]
        out = []
        pos = 0
        while pos < n:
            ino, off, reclen, dtype = _DIRENT_HEAD.unpack_from(raw, pos)
            name_start = pos + _DIRENT_HEAD.size
            end = raw.index(b"\0", name_start, pos + reclen)
            out.append((ino, dtype, raw[name_start:end], off))
            pos += reclen
        return out, n
