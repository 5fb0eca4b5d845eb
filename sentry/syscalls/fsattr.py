"""Syscalls that change a file's attributes: chmod/fchmod/fchmodat/fchmodat2, chown/lchown/
fchown/fchownat, truncate/ftruncate, fallocate, and the times (utimensat, utimes, futimesat,
utime).  The checks are fsops.py's (exact errnos in Linux's order: lookup, EROFS, then
permission); the inode's `setstat` does the change.
"""
from __future__ import annotations

import errno
import stat as st
import struct

from sentry.errors import SyscallError
from sentry.syscalls.args import s32, s64, timestamp_ns, u32
from sentry.syscalls.files import AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, _path
from sentry.syscalls.registry import Support, syscall
from sentry.vfs.inode import MAY_WRITE, Dentry, may_access
from sentry.vfs.walk import AT_FDCWD, invalidate_paths

from sentry.syscalls.fsops import _check_writable_mount, _op, _resolve_fd_or_path

UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


# -- attributes: mode, owner, size, times ---------------------------------------------

def _setstat(t, d: Dentry, **kw) -> None:
    _check_writable_mount(d)
    invalidate_paths()              # a mode or owner a walk's permission checks see
    _op(d.inode, "setstat")(t, **kw)


def _chmod(t, d: Dentry, mode: int) -> int:
    creds = t.tg.creds
    s = d.inode.stat()
    _check_writable_mount(d)
    if creds.fsuid != 0 and creds.fsuid != s.uid:
        raise SyscallError(errno.EPERM)
    mode &= 0o7777
    if creds.fsuid != 0 and mode & st.S_ISGID and s.gid != creds.fsgid and s.gid not in creds.groups:
        mode &= ~st.S_ISGID
    _setstat(t, d, mode=mode)
    return 0


@syscall("chmod")
def chmod(t, path, mode):
    """chmod(2)."""
    return _chmod(t, t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path)), u32(mode))


@syscall("fchmod")
def fchmod(t, fd, mode):
    """fchmod(2)."""
    f = t.fds.get_io(s32(fd))
    if f.dentry is None:
        raise SyscallError(errno.EBADF)
    return _chmod(t, f.dentry, u32(mode))


@syscall("fchmodat")
def fchmodat(t, dirfd, path, mode):
    """fchmodat(2) (the syscall has no flags argument)."""
    return _chmod(t, t.kernel.vfs.resolve(t, s32(dirfd), _path(t, path)), u32(mode))


@syscall("fchmodat2", nr=452)
def fchmodat2(t, dirfd, path, mode, flags):
    """fchmodat2(2): AT_SYMLINK_NOFOLLOW on a symlink is EOPNOTSUPP, as on Linux."""
    flags = u32(flags)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    d = _resolve_fd_or_path(t, s32(dirfd), path, flags)
    if d.inode.is_symlink:
        raise SyscallError(errno.EOPNOTSUPP)
    return _chmod(t, d, u32(mode))


def _chown(t, d: Dentry, uid: int, gid: int) -> int:
    uid = None if uid == 0xFFFFFFFF else uid
    gid = None if gid == 0xFFFFFFFF else gid
    creds = t.tg.creds
    s = d.inode.stat()
    _check_writable_mount(d)
    if creds.fsuid != 0:
        # chown_ok()/chgrp_ok(): only the owner, only to itself, only to one of its groups.
        if (uid is not None and uid != s.uid) or \
           (gid is not None and gid != s.gid and (creds.fsuid != s.uid or
                                                 (gid != creds.fsgid and gid not in creds.groups))) or \
           (gid is not None and creds.fsuid != s.uid):
            raise SyscallError(errno.EPERM)
    if uid is None and gid is None:
        return 0
    kw = {"uid": uid, "gid": gid}
    if not d.inode.is_dir and not d.inode.is_symlink and s.mode & (st.S_ISUID | st.S_ISGID):
        # chown clears set-user-ID, and set-group-ID when group-executable (as notify_change).
        clear = st.S_ISUID | (st.S_ISGID if s.mode & st.S_IXGRP else 0)
        kw["mode"] = s.mode & 0o7777 & ~clear
    _setstat(t, d, **kw)
    return 0


@syscall("chown")
def chown(t, path, uid, gid):
    """chown(2)."""
    return _chown(t, t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path)), u32(uid), u32(gid))


@syscall("lchown")
def lchown(t, path, uid, gid):
    """lchown(2)."""
    return _chown(t, t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path), follow=False), u32(uid), u32(gid))


@syscall("fchown")
def fchown(t, fd, uid, gid):
    """fchown(2)."""
    f = t.fds.get_io(s32(fd))
    if f.dentry is None:
        raise SyscallError(errno.EBADF)
    return _chown(t, f.dentry, u32(uid), u32(gid))


@syscall("fchownat")
def fchownat(t, dirfd, path, uid, gid, flags):
    """fchownat(2)."""
    flags = u32(flags)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    return _chown(t, _resolve_fd_or_path(t, s32(dirfd), path, flags), u32(uid), u32(gid))


def _truncate_checks(t, d: Dentry, length: int) -> None:
    if length < 0:
        raise SyscallError(errno.EINVAL)
    inode = d.inode
    if inode.is_dir:
        raise SyscallError(errno.EISDIR)
    if not st.S_ISREG(inode.mode):
        raise SyscallError(errno.EINVAL)


@syscall("truncate")
def truncate(t, path, length):
    """truncate(2)."""
    length = s64(length)
    d = t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path))
    if d.inode.is_dir:
        raise SyscallError(errno.EISDIR)
    if not st.S_ISREG(d.inode.mode):
        raise SyscallError(errno.EINVAL)
    _check_writable_mount(d)
    creds = t.tg.creds
    if creds.fsuid != 0 and not may_access(d.inode.stat(), creds, MAY_WRITE):
        raise SyscallError(errno.EACCES)
    if length < 0:
        raise SyscallError(errno.EINVAL)
    _setstat(t, d, size=length)
    return 0


@syscall("ftruncate")
def ftruncate(t, fd, length):
    """ftruncate(2): EINVAL unless open for writing on a regular file."""
    length = s64(length)
    f = t.fds.get_io(s32(fd))
    if length < 0:
        raise SyscallError(errno.EINVAL)
    d = f.dentry
    if d is None or not f.writable or not st.S_ISREG(d.inode.mode):
        raise SyscallError(errno.EINVAL)
    trunc = getattr(f, "truncate", None)
    if trunc is not None:
        trunc(length)
    else:
        _op(d.inode, "setstat")(t, size=length)
    return 0


FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2


@syscall("fallocate", Support.PARTIAL, "mode 0 and FALLOC_FL_KEEP_SIZE; other modes EOPNOTSUPP")
def fallocate(t, fd, mode, offset, length):
    """fallocate(2)."""
    mode, offset, length = s32(mode), s64(offset), s64(length)
    f = t.fds.get_io(s32(fd))
    if offset < 0 or length <= 0:
        raise SyscallError(errno.EINVAL)
    if not f.writable:
        raise SyscallError(errno.EBADF)
    d = f.dentry
    if d is None:
        raise SyscallError(errno.ESPIPE)
    if d.inode.is_dir:
        raise SyscallError(errno.EISDIR)
    if not st.S_ISREG(d.inode.mode):
        raise SyscallError(errno.ENODEV)
    if offset + length > (1 << 63) - 1:
        raise SyscallError(errno.EFBIG)
    if mode & ~FALLOC_FL_KEEP_SIZE:
        raise SyscallError(errno.EOPNOTSUPP)
    if mode & FALLOC_FL_KEEP_SIZE:
        return 0
    alloc = getattr(f, "allocate", None)
    if alloc is not None:
        alloc(offset, length)
    elif d.inode.stat().size < offset + length:
        _op(d.inode, "setstat")(t, size=offset + length)
    return 0


# Times.

def _now_ok_or_owner(t, d: Dentry, explicit: bool) -> None:
    """utimes permission: explicit times need ownership; 'now' also allows write access."""
    creds = t.tg.creds
    if creds.fsuid == 0:
        return
    s = d.inode.stat()
    if creds.fsuid == s.uid:
        return
    if explicit:
        raise SyscallError(errno.EPERM)
    if not may_access(s, creds, MAY_WRITE):
        raise SyscallError(errno.EACCES)


def _set_times(t, d: Dentry, atime, mtime) -> int:
    """atime/mtime: ns, UTIME_NOW or UTIME_OMIT."""
    _check_writable_mount(d)
    explicit = any(x not in (UTIME_NOW, UTIME_OMIT) for x in (atime, mtime))
    _now_ok_or_owner(t, d, explicit)
    if atime == UTIME_OMIT and mtime == UTIME_OMIT:
        return 0
    _setstat(t, d, atime_ns=None if atime == UTIME_OMIT else atime,
             mtime_ns=None if mtime == UTIME_OMIT else mtime)
    return 0


TIMESPEC2 = struct.Struct("<qqqq")


def _timespecs(t, addr: int):
    if not addr:
        return UTIME_NOW, UTIME_NOW
    a_s, a_ns, m_s, m_ns = t.mm.read_struct(addr, TIMESPEC2)

    def one(sec, ns):
        if ns in (UTIME_NOW, UTIME_OMIT):
            return ns
        if not 0 <= ns < 10**9:
            raise SyscallError(errno.EINVAL)
        return timestamp_ns(sec, ns)
    return one(a_s, a_ns), one(m_s, m_ns)


def _timevals(t, addr: int):
    if not addr:
        return UTIME_NOW, UTIME_NOW
    a_s, a_us, m_s, m_us = t.mm.read_struct(addr, TIMESPEC2)
    if not (0 <= a_us < 10**6 and 0 <= m_us < 10**6):
        raise SyscallError(errno.EINVAL)
    return timestamp_ns(a_s, a_us * 1000), timestamp_ns(m_s, m_us * 1000)


@syscall("utimensat")
def utimensat(t, dirfd, path, times, flags):
    """utimensat(2): a NULL path means dirfd itself."""
    dirfd, flags = s32(dirfd), u32(flags)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    atime, mtime = _timespecs(t, times)
    if atime == UTIME_OMIT and mtime == UTIME_OMIT:
        return 0
    if not path:
        if flags & AT_SYMLINK_NOFOLLOW:
            raise SyscallError(errno.EINVAL)
        if dirfd == AT_FDCWD:
            raise SyscallError(errno.EFAULT)
        f = t.fds.get(dirfd)
        if f.dentry is None:
            raise SyscallError(errno.EBADF)
        d = f.dentry
    else:
        d = _resolve_fd_or_path(t, dirfd, path, flags)
    return _set_times(t, d, atime, mtime)


@syscall("utimes")
def utimes(t, path, times):
    """utimes(2)."""
    atime, mtime = _timevals(t, times)
    return _set_times(t, t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path)), atime, mtime)


@syscall("futimesat")
def futimesat(t, dirfd, path, times):
    """futimesat(2)."""
    atime, mtime = _timevals(t, times)
    return _set_times(t, t.kernel.vfs.resolve(t, s32(dirfd), _path(t, path)), atime, mtime)


@syscall("utime")
def utime(t, path, times):
    """utime(2): struct utimbuf {actime, modtime} in seconds."""
    if times:
        a, m = t.mm.read_struct(times, struct.Struct("<qq"))
        atime, mtime = timestamp_ns(a, 0), timestamp_ns(m, 0)
    else:
        atime = mtime = UTIME_NOW
    return _set_times(t, t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path)), atime, mtime)
