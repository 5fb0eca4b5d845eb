"""Positioned vectored I/O: preadv, pwritev, preadv2, pwritev2, and readahead.

Thin handlers over the open file objects (`File.read/write/pread/pwrite`), with
Linux's check order (fs/read_write.c do_preadv/vfs_readv): a negative offset is
EINVAL before the descriptor is looked up, a file without positioned I/O
(pipe, socket, tty) is ESPIPE, then access (EBADF), then the iovec (EINVAL past
UIO_MAXIOV, EFAULT), and an empty iovec returns 0 without touching the file.

preadv2/pwritev2 take offset -1 to mean "the file position" (like readv and
writev, so they work on pipes) and RWF_* flags, accepted as Linux 6.12 accepts
them: HIPRI (a polling hint: no effect here), DSYNC/SYNC (data is written
through to the host file at once), NOWAIT (the call fails with EAGAIN rather
than block), APPEND/NOAPPEND (per-call O_APPEND), ATOMIC (writes only; no
Sentry file advertises atomic writes, so EOPNOTSUPP); anything else is
EOPNOTSUPP.
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError
from sentry.syscalls.args import s32, s64
from sentry.syscalls.registry import Support, syscall
from sentry.vfs.file import MAX_RW, O_APPEND, O_NONBLOCK, File, HostFDFile

UIO_MAXIOV = 1024
RWF_HIPRI, RWF_DSYNC, RWF_SYNC, RWF_NOWAIT, RWF_APPEND, RWF_NOAPPEND, RWF_ATOMIC = 1, 2, 4, 8, 0x10, 0x20, 0x40
RWF_SUPPORTED = RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND | RWF_NOAPPEND | RWF_ATOMIC


def positioned(f: File) -> bool:
    """Does `f` have positioned I/O (Linux's FMODE_PREAD/PWRITE)?  Pipes, sockets and ttys do not."""
    if isinstance(f, HostFDFile):
        return f.host_seekable
    return type(f).pread is not File.pread


def iov_views(t, iov: int, iovcnt: int, to_app: bool) -> list[memoryview]:
    """The application buffers an iovec names, clamped to MAX_RW bytes in all (import_iovec)."""
    if iovcnt > UIO_MAXIOV:
        raise SyscallError(errno.EINVAL)
    views: list[memoryview] = []
    total = 0
    for base, ln in t.mm.read_iovec(iov, iovcnt):
        if ln > 0x7FFFFFFFFFFFFFFF:
            raise SyscallError(errno.EINVAL)
        ln = min(ln, MAX_RW - total)
        if ln <= 0:
            continue
        views += t.mm.iovecs(base, ln, to_app)
        total += ln
    return views


def _is_dir(f: File) -> bool:
    return f.dentry is not None and f.dentry.inode.is_dir


def _rw(t, fd: int, iov: int, iovcnt: int, offset: int, flags: int, write: bool) -> int:
    """The shared body of preadv/pwritev and their v2 forms; offset -1 means the file position."""
    fd, offset, flags = s32(fd), s64(offset), flags & 0xFFFFFFFF
    if offset < -1:
        raise SyscallError(errno.EINVAL)
    f = t.fds.get_io(fd)
    if offset != -1 and not positioned(f):
        raise SyscallError(errno.ESPIPE)
    if not (f.writable if write else f.readable):
        raise SyscallError(errno.EBADF)
    if flags & ~RWF_SUPPORTED:
        raise SyscallError(errno.EOPNOTSUPP)
    if flags & RWF_ATOMIC:
        raise SyscallError(errno.EOPNOTSUPP)      # reads never, and no file here can write atomically
    if iovcnt > 0xFFFFFFFF_FFFFFFFF >> 1:
        raise SyscallError(errno.EINVAL)
    views = iov_views(t, iov, iovcnt, not write)
    if not views:
        return 0
    if _is_dir(f):
        raise SyscallError(errno.EISDIR)
    old_flags = f.flags
    if flags & RWF_NOWAIT:
        f.flags |= O_NONBLOCK
    if write and flags & RWF_APPEND:
        f.flags |= O_APPEND
    elif write and flags & RWF_NOAPPEND:
        f.flags &= ~O_APPEND
    try:
        if offset == -1:
            n = f.write(t, views) if write else f.read(t, views)
        elif write and f.flags & O_APPEND:
            # Linux appends whatever offset an O_APPEND (or RWF_APPEND) pwrite names.
            n = f.pwrite(t, views, f.stat().size)
        else:
            n = f.pwrite(t, views, offset) if write else f.pread(t, views, offset)
    finally:
        f.flags = old_flags
    return n


@syscall("preadv")
def preadv(t, fd, iov, iovcnt, pos_l, pos_h):
    """preadv(2): on x86-64 the offset is pos_l whole (pos_h is the 32-bit ABIs' high word)."""
    if s64(pos_l) < 0:
        raise SyscallError(errno.EINVAL)
    return _rw(t, fd, iov, iovcnt, pos_l, 0, False)


@syscall("pwritev")
def pwritev(t, fd, iov, iovcnt, pos_l, pos_h):
    """pwritev(2)."""
    if s64(pos_l) < 0:
        raise SyscallError(errno.EINVAL)
    return _rw(t, fd, iov, iovcnt, pos_l, 0, True)


@syscall("preadv2", Support.PARTIAL, "offset -1 and RWF_HIPRI/DSYNC/SYNC/NOWAIT accepted; RWF_NOWAIT never "
         "sees an uncached page (reads of regular files do not return EAGAIN); RWF_ATOMIC EOPNOTSUPP as Linux")
def preadv2(t, fd, iov, iovcnt, pos_l, pos_h, flags):
    """preadv2(2)."""
    return _rw(t, fd, iov, iovcnt, pos_l, flags & ~(RWF_APPEND | RWF_NOAPPEND), False)


@syscall("pwritev2", Support.PARTIAL, "offset -1 and RWF_HIPRI/DSYNC/SYNC/NOWAIT/APPEND/NOAPPEND; RWF_ATOMIC is "
          "EOPNOTSUPP (no file here advertises atomic writes)")
def pwritev2(t, fd, iov, iovcnt, pos_l, pos_h, flags):
    """pwritev2(2)."""
    return _rw(t, fd, iov, iovcnt, pos_l, flags, True)


@syscall("readahead", Support.PARTIAL, "checked as Linux checks it, then a no-op: the Sentry keeps no page cache "
         "to fill (reads go to the host file)")
def readahead(t, fd, offset, count):
    """readahead(2): EBADF unless readable, EINVAL unless a regular file (or block device)."""
    f = t.fds.get(s32(fd))
    if not f.readable:
        raise SyscallError(errno.EBADF)
    d = f.dentry
    if d is None or (d.inode.mode & 0o170000) not in (0o100000, 0o060000):
        raise SyscallError(errno.EINVAL)
    return 0
