"""File syscalls that look, not touch: the stat family (stat, lstat, fstat, newfstatat, statx),
getdents64, getcwd/chdir/fchdir, access/faccessat/faccessat2 and readlink/readlinkat.

Thin handlers, as in files.py: decode, check with exact errnos, resolve through the one path
walker (sentry/vfs/walk.py), and let the inode answer.
"""
from __future__ import annotations

import errno
import struct

from sentry.errors import SyscallError
from sentry.syscalls.args import s32, u32
from sentry.syscalls.files import AT_EACCESS, AT_EMPTY_PATH, AT_NO_AUTOMOUNT, AT_STATX_SYNC_TYPE, AT_SYMLINK_NOFOLLOW, _path
from sentry.syscalls.registry import syscall
from sentry.vfs.inode import MAY_EXEC, MAY_READ, MAY_WRITE, may_access
from sentry.vfs.walk import AT_FDCWD

STAT = struct.Struct("<QQQIIIiQqqqqqqqqq24x")
STATX_TS = struct.Struct("<qIi")

# -- stat -------------------------------------------------------------------

def pack_stat(s) -> bytes:
    """struct stat of `s`.  A Stat is immutable, and a filesystem hands out the same object while
    nothing changed (GoferInode.stat), so the last one packed is remembered by identity."""
    last = _PACKED
    if last[0] is s:
        return last[1]
    b = STAT.pack(s.dev, s.ino, s.nlink, s.mode, s.uid, s.gid, 0, s.rdev, s.size, s.blksize, s.blocks,
                  s.atime_ns // 10**9, s.atime_ns % 10**9, s.mtime_ns // 10**9, s.mtime_ns % 10**9,
                  s.ctime_ns // 10**9, s.ctime_ns % 10**9)
    last[0] = s
    last[1] = b
    return b


_PACKED: list = [None, b""]         # [the Stat last packed, its bytes]


def _stat_at(t, dirfd: int, path_addr: int, flags: int):
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE):
        raise SyscallError(errno.EINVAL)
    path = _path(t, path_addr)
    if not path and flags & AT_EMPTY_PATH:
        if dirfd == AT_FDCWD:
            return t.tg.fs.cwd.inode.stat()
        return t.fds.get(dirfd).stat()
    return t.kernel.vfs.resolve(t, dirfd, path, follow=not flags & AT_SYMLINK_NOFOLLOW).inode.stat()


@syscall("fstat")
def fstat(t, fd, buf):
    """fstat(2)."""
    s = t.fds.get(s32(fd)).stat()
    t.mm.write(buf, pack_stat(s))
    return 0


@syscall("stat")
def stat_(t, path, buf):
    """stat(2)."""
    t.mm.write(buf, pack_stat(_stat_at(t, AT_FDCWD, path, 0)))
    return 0


@syscall("lstat")
def lstat(t, path, buf):
    """lstat(2)."""
    t.mm.write(buf, pack_stat(_stat_at(t, AT_FDCWD, path, AT_SYMLINK_NOFOLLOW)))
    return 0


@syscall("newfstatat")
def newfstatat(t, dirfd, path, buf, flags):
    """newfstatat(2) (fstatat)."""
    flags = u32(flags)
    if flags & AT_STATX_SYNC_TYPE:
        raise SyscallError(errno.EINVAL)
    t.mm.write(buf, pack_stat(_stat_at(t, s32(dirfd), path, flags)))
    return 0


STATX_BASIC_STATS = 0x7FF
STATX_MNT_ID = 0x1000


@syscall("statx")
def statx(t, dirfd, path, flags, mask, buf):
    """statx(2): the basic stats (no birth time, as many filesystems)."""
    flags, mask = u32(flags), u32(mask)
    if flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE or mask & 0x80000000:
        raise SyscallError(errno.EINVAL)
    s = _stat_at(t, s32(dirfd), path, flags)
    dev_major, dev_minor = (s.dev >> 8) & 0xFFF, (s.dev & 0xFF) | ((s.dev >> 12) & 0xFFF00)
    r_major, r_minor = (s.rdev >> 8) & 0xFFF, (s.rdev & 0xFF) | ((s.rdev >> 12) & 0xFFF00)

    def ts(ns: int) -> bytes:
        return STATX_TS.pack(ns // 10**9, ns % 10**9, 0)

    out = struct.pack("<IIQIIIHxxQQQQ", STATX_BASIC_STATS, s.blksize, 0, s.nlink, s.uid, s.gid, s.mode & 0xFFFF,
                      s.ino, s.size, s.blocks, 0)
    out += ts(s.atime_ns) + ts(0) + ts(s.ctime_ns) + ts(s.mtime_ns)
    out += struct.pack("<IIIIQ", r_major, r_minor, dev_major, dev_minor, 0)
    out = out.ljust(256, b"\0")
    t.mm.write(buf, out)
    return 0


# -- directories ------------------------------------------------------------

@syscall("getdents64")
def getdents64(t, fd, dirp, count):
    """getdents64(2): offsets are entry indexes; a buffer too small for one entry is EINVAL."""
    f = t.fds.get_io(s32(fd))
    count = u32(count)
    if f.dentry is None or not f.dentry.inode.is_dir:
        raise SyscallError(errno.ENOTDIR)
    if f.offset == 0 or f.dir_cursor is None:
        f.dir_cursor = f.getdents()
    entries = f.dir_cursor
    out = bytearray()
    i = f.offset
    while i < len(entries):
        name, ino, dtype = entries[i]
        reclen = (19 + len(name) + 1 + 7) & ~7
        if len(out) + reclen > count:
            break
        out += struct.pack("<QqHB", ino, i + 1, reclen, dtype) + name + b"\0" * (reclen - 19 - len(name))
        i += 1
    if not out and i < len(entries):
        raise SyscallError(errno.EINVAL)
    t.mm.write(dirp, out)
    f.offset = i
    return len(out)


@syscall("getcwd")
def getcwd(t, buf, size):
    """getcwd(2): returns the length including the NUL; ERANGE if it does not fit."""
    path = t.tg.fs.cwd.path(t.tg.fs.root) + b"\0"
    if len(path) > size:
        raise SyscallError(errno.ERANGE)
    t.mm.write(buf, path)
    return len(path)


def _chdir_to(t, d) -> int:
    if not d.inode.is_dir:
        raise SyscallError(errno.ENOTDIR)
    if not may_access(d.inode.stat(), t.tg.creds, MAY_EXEC):
        raise SyscallError(errno.EACCES)
    t.tg.fs.cwd = d
    return 0


@syscall("chdir")
def chdir(t, path):
    """chdir(2)."""
    return _chdir_to(t, t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path)))


@syscall("fchdir")
def fchdir(t, fd):
    """fchdir(2)."""
    f = t.fds.get(s32(fd))
    if f.dentry is None:
        raise SyscallError(errno.ENOTDIR)
    return _chdir_to(t, f.dentry)


def _access(t, dirfd: int, path_addr: int, mode: int, flags: int) -> int:
    if mode & ~7:
        raise SyscallError(errno.EINVAL)
    if flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    path = _path(t, path_addr)
    d = t.kernel.vfs.resolve(t, dirfd, path, follow=not flags & AT_SYMLINK_NOFOLLOW,
                             empty_ok=bool(flags & AT_EMPTY_PATH))
    if mode == 0:
        return 0
    creds = t.tg.creds
    if not flags & AT_EACCESS:
        creds = creds.copy()
        creds.fsuid, creds.fsgid = creds.ruid, creds.rgid
    s = d.inode.stat()
    if mode & 2 and d.mount is not None and d.mount.readonly and (s.mode & 0o170000) in (0o100000, 0o040000, 0o120000):
        raise SyscallError(errno.EROFS)
    want = (MAY_READ if mode & 4 else 0) | (MAY_WRITE if mode & 2 else 0) | (MAY_EXEC if mode & 1 else 0)
    if not may_access(s, creds, want):
        raise SyscallError(errno.EACCES)
    return 0


@syscall("access")
def access(t, path, mode):
    """access(2)."""
    return _access(t, AT_FDCWD, path, u32(mode), 0)


@syscall("faccessat")
def faccessat(t, dirfd, path, mode):
    """faccessat(2) (the syscall has no flags argument)."""
    return _access(t, s32(dirfd), path, u32(mode), 0)


@syscall("faccessat2", nr=439)
def faccessat2(t, dirfd, path, mode, flags):
    """faccessat2(2)."""
    return _access(t, s32(dirfd), path, u32(mode), u32(flags))


def _readlink(t, dirfd: int, path_addr: int, buf: int, size: int) -> int:
    size = s32(size)
    if size <= 0:
        raise SyscallError(errno.EINVAL)
    path = _path(t, path_addr)
    d = t.kernel.vfs.resolve(t, dirfd, path, follow=False, empty_ok=True)
    if not d.inode.is_symlink:
        raise SyscallError(errno.EINVAL if path else errno.ENOENT)
    target = d.inode.readlink()
    target = target[:size]
    t.mm.write(buf, target)
    return len(target)


@syscall("readlink")
def readlink(t, path, buf, size):
    """readlink(2)."""
    return _readlink(t, AT_FDCWD, path, buf, size)


@syscall("readlinkat")
def readlinkat(t, dirfd, path, buf, size):
    """readlinkat(2)."""
    return _readlink(t, s32(dirfd), path, buf, size)
