"""File data and filesystem-wide syscalls: the sync family, statfs/fstatfs,
copy_file_range (a copy through a Sentry buffer; sendfile is in splice.py), and flock.

Handlers are thin: a File's own `fsync`/`truncate`/`allocate` does the work
where it has one, the filesystem's `statfs` reports its numbers, and whole-file
locks live in sentry/vfs/lock.py.
"""
from __future__ import annotations

import errno
import stat as st
import struct

from sentry.errors import SyscallError
from sentry.syscalls.args import s32, s64, u32
from sentry.syscalls.files import _path
from sentry.syscalls.registry import Support, syscall
from sentry.vfs.inode import Dentry
from sentry.vfs.walk import AT_FDCWD


# -- sync ---------------------------------------------------------------------

def _fsync(t, fd: int) -> int:
    f = t.fds.get_io(fd)
    sync = getattr(f, "fsync", None)
    if sync is not None:
        sync()
        return 0
    if f.dentry is None:
        raise SyscallError(errno.EINVAL)
    return 0


@syscall("fsync")
def fsync(t, fd):
    """fsync(2)."""
    return _fsync(t, s32(fd))


@syscall("fdatasync")
def fdatasync(t, fd):
    """fdatasync(2)."""
    return _fsync(t, s32(fd))


@syscall("sync", Support.PARTIAL, "a no-op: file data goes straight to host fds, which the host flushes")
def sync(t):
    """sync(2)."""
    return 0


@syscall("syncfs")
def syncfs(t, fd):
    """syncfs(2)."""
    t.fds.get_io(s32(fd))
    return 0


@syscall("sync_file_range")
def sync_file_range(t, fd, offset, nbytes, flags):
    """sync_file_range(2)."""
    offset, nbytes, flags = s64(offset), s64(nbytes), u32(flags)
    if flags & ~7 or offset < 0 or nbytes < 0:
        raise SyscallError(errno.EINVAL)
    f = t.fds.get_io(s32(fd))
    if f.dentry is None:
        raise SyscallError(errno.ESPIPE)
    return 0


# -- statfs -------------------------------------------------------------------

STATFS = struct.Struct("<qqQQQQQiiqqq32x")
ST_RDONLY, ST_NOSUID, ST_NODEV, ST_NOEXEC, ST_RELATIME, ST_VALID = 1, 2, 4, 8, 0x400, 0x20
_MOUNT_FLAG_BITS = {"ro": ST_RDONLY, "nosuid": ST_NOSUID, "nodev": ST_NODEV, "noexec": ST_NOEXEC,
                    "relatime": ST_RELATIME}


def statfs_of(d: Dentry) -> dict[str, int]:
    """The statfs(2) fields of the filesystem `d` is on, flags from the Sentry's mount."""
    fn = getattr(d.inode, "statfs", None) or getattr(d.inode.fs, "statfs", None)
    s = dict(fn()) if fn is not None else {"f_type": 0x01021994, "f_bsize": 4096, "f_blocks": 0, "f_bfree": 0,
                                           "f_bavail": 0, "f_files": 0, "f_ffree": 0, "f_namelen": 255,
                                           "f_frsize": 4096}
    flags = ST_VALID
    for name in (d.mount.flags if d.mount is not None else ()):     # no mount: an internal one (memfd...)
        flags |= _MOUNT_FLAG_BITS.get(name, 0)
    s["f_flags"] = flags
    return s


def _write_statfs(t, buf: int, d: Dentry) -> int:
    s = statfs_of(d)
    t.mm.write(buf, STATFS.pack(s["f_type"], s["f_bsize"], s["f_blocks"], s["f_bfree"], s["f_bavail"],
                                s["f_files"], s["f_ffree"], 0, 0, s["f_namelen"], s["f_frsize"], s["f_flags"]))
    return 0


@syscall("statfs")
def statfs(t, path, buf):
    """statfs(2)."""
    return _write_statfs(t, buf, t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path)))


@syscall("fstatfs")
def fstatfs(t, fd, buf):
    """fstatfs(2)."""
    f = t.fds.get(s32(fd))
    if f.dentry is None:
        # pipes and sockets: their pseudo filesystems
        t.mm.write(buf, STATFS.pack(0x50495045, 4096, 0, 0, 0, 0, 0, 0, 0, 255, 4096, ST_VALID))
        return 0
    return _write_statfs(t, buf, f.dentry)


# -- copy_file_range ---------------------------------------------------

COPY_CHUNK = 128 * 1024


def _copy(t, src, dst, count: int, src_off: int | None, dst_off: int | None) -> tuple[int, int]:
    """Copy up to `count` bytes through a bounce buffer; (copied, bytes consumed from src).

    Seekable sources are read with pread and only advanced by what was written,
    so a write that blocks or fails loses nothing."""
    from sentry.task import Blocked
    seekable_src = src_off is not None
    done = 0
    buf = bytearray(min(count, COPY_CHUNK))
    while done < count:
        want = min(count - done, len(buf))
        view = memoryview(buf)[:want]
        try:
            got = src.pread(t, [view], src_off + done) if seekable_src else src.read(t, [view])
        except (Blocked, SyscallError):
            if done:
                break
            raise
        if got == 0:
            break
        try:
            if dst_off is not None:
                put = dst.pwrite(t, [view[:got]], dst_off + done)
            else:
                put = dst.write(t, [view[:got]])
        except (Blocked, SyscallError):
            if done or not seekable_src:
                break
            raise
        done += put
        if put < got or got < want:
            break
    return done, done


def _is_seekable(f) -> bool:
    d = f.dentry
    return d is not None and st.S_ISREG(d.inode.mode)


# sendfile(2) lives in splice.py: to a pipe it is a splice.


@syscall("copy_file_range")
def copy_file_range(t, fd_in, off_in, fd_out, off_out, length, flags):
    """copy_file_range(2), as a read/write loop in the Sentry."""
    from sentry.vfs.file import MAX_RW, O_APPEND
    if u32(flags):
        raise SyscallError(errno.EINVAL)
    src = t.fds.get_io(s32(fd_in))
    dst = t.fds.get_io(s32(fd_out))
    if not src.readable or not dst.writable or dst.flags & O_APPEND:
        raise SyscallError(errno.EBADF)
    for f in (src, dst):
        if f.dentry is not None and f.dentry.inode.is_dir:
            raise SyscallError(errno.EISDIR)
        if not _is_seekable(f):
            raise SyscallError(errno.EINVAL)
    s_off = s64(t.mm.read_u64(off_in)) if off_in else src.offset
    d_off = s64(t.mm.read_u64(off_out)) if off_out else dst.offset
    if s_off < 0 or d_off < 0:
        raise SyscallError(errno.EINVAL)
    length = min(length, MAX_RW)
    if src.dentry.inode is dst.dentry.inode and s_off < d_off + length and d_off < s_off + length:
        raise SyscallError(errno.EINVAL)
    if length == 0:
        return 0
    n, _ = _copy(t, src, dst, length, s_off, d_off)
    if off_in:
        t.mm.write_u64(off_in, s_off + n)
    else:
        src.offset += n
    if off_out:
        t.mm.write_u64(off_out, d_off + n)
    else:
        dst.offset += n
    return n


# -- flock ----------------------------------------------------------------------

LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = 1, 2, 4, 8


@syscall("flock")
def flock(t, fd, operation):
    """flock(2): whole-file locks owned by the open file description (sentry/vfs/lock.py)."""
    op = s32(operation)
    f = t.fds.get_io(s32(fd))
    kind = op & ~LOCK_NB
    if kind not in (LOCK_SH, LOCK_EX, LOCK_UN):
        raise SyscallError(errno.EINVAL)
    if f.dentry is None:
        raise SyscallError(errno.EINVAL)
    tab = t.kernel.file_locks.table_for(f.dentry.inode)
    if kind == LOCK_UN:
        tab.unflock(f)
    else:
        tab.flock(t, f, kind == LOCK_EX, bool(op & LOCK_NB))
    return 0
