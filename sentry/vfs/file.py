"""Open file descriptions and the descriptor table.

A `File` is Linux's `struct file`: flags, offset, and the object behind it.
`dup` shares one File between descriptors; it is released when the last
reference closes.  Data moves between a File and application memory as
lists of memoryviews into the MemoryFile (`MemoryManager.iovecs`), so a
read from a host fd lands in application memory with one `preadv`.
"""
from __future__ import annotations

import errno
import os
import select
import stat as st

from sentry.errors import SyscallError
from sentry.vfs.inode import Stat

O_ACCMODE = 0o3
O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC, O_APPEND, O_NONBLOCK = 0o100, 0o200, 0o400, 0o1000, 0o2000, 0o4000
O_DSYNC, O_ASYNC, O_DIRECT, O_LARGEFILE, O_DIRECTORY, O_NOFOLLOW = 0o10000, 0o20000, 0o40000, 0o100000, 0o200000, 0o400000
O_NOATIME, O_CLOEXEC, O_SYNC, O_PATH, O_TMPFILE = 0o1000000, 0o2000000, 0o4010000, 0o10000000, 0o20200000
STATUS_FLAGS_SETTABLE = O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME | O_NONBLOCK
SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE = 0, 1, 2, 3, 4
MAX_RW = 0x7FFFF000


class File:
    """Base open file description."""

    # Initial values shared by every new File (ints and None: an assignment makes the instance's
    # own), so opening a file does not spend a store on each.
    offset = 0
    refs = 0
    min_read = 0          # read(2) of fewer bytes is EINVAL, even of 0 (signalfd: one 128-byte record)
    dir_cursor: list | None = None

    def __init__(self, flags: int, dentry=None, mount=None) -> None:
        self.flags = flags
        self.dentry = dentry
        self.mount = mount

    # Access checks shared by every file type.
    @property
    def readable(self) -> bool:
        return (self.flags & O_ACCMODE) in (O_RDONLY, O_RDWR) and not self.flags & O_PATH

    @property
    def writable(self) -> bool:
        return (self.flags & O_ACCMODE) in (O_WRONLY, O_RDWR) and not self.flags & O_PATH

    def stat(self) -> Stat:
        if self.dentry is not None:
            return self.dentry.inode.stat()
        raise SyscallError(errno.EBADF)

    def read(self, t, dsts: list[memoryview]) -> int:
        raise SyscallError(errno.EINVAL)

    def write(self, t, srcs: list[memoryview]) -> int:
        raise SyscallError(errno.EINVAL)

    def pread(self, t, dsts: list[memoryview], offset: int) -> int:
        raise SyscallError(errno.ESPIPE)

    def pwrite(self, t, srcs: list[memoryview], offset: int) -> int:
        raise SyscallError(errno.ESPIPE)

    def seek(self, offset: int, whence: int) -> int:
        raise SyscallError(errno.ESPIPE)

    def ioctl(self, t, request: int, arg: int) -> int:
        raise SyscallError(errno.ENOTTY)

    def transfer_without_buffer(self, t, write: bool, count: int) -> int:
        """read/write whose buffer is not accessible: Linux faults only if bytes would move."""
        raise SyscallError(errno.EFAULT)

    def getdents(self) -> list[tuple[bytes, int, int]]:
        raise SyscallError(errno.ENOTDIR)

    def release(self) -> None:
        pass


def _seek_common(file: File, offset: int, whence: int, size: int) -> int:
    if whence == SEEK_SET:
        new = offset
    elif whence == SEEK_CUR:
        new = file.offset + offset
    elif whence == SEEK_END:
        new = size + offset
    elif whence == SEEK_DATA:
        if offset >= size:
            raise SyscallError(errno.ENXIO)
        new = offset
    elif whence == SEEK_HOLE:
        if offset >= size:
            raise SyscallError(errno.ENXIO)
        new = size
    else:
        raise SyscallError(errno.EINVAL)
    if new < 0:
        raise SyscallError(errno.EINVAL)
    file.offset = new
    return new


class HostFDFile(File):
    """A file whose data is a host fd: a Gofer-donated regular file, or the container's stdio.

    Regular files use preadv/pwritev at the Sentry-kept offset.  Streams
    (pipes, ttys, sockets given as stdio) are polled first so a read that
    would block parks the task instead of stalling the Sentry.
    """

    def __init__(self, host_fd: int, flags: int, dentry=None, mount=None, owns_fd: bool = True,
                 host_offset: bool = False, mode: int | None = None) -> None:
        super().__init__(flags, dentry, mount)
        self.host_fd = host_fd
        self.owns_fd = owns_fd
        if mode is None:                  # callers that know the file type spare a host fstat
            mode = os.fstat(host_fd).st_mode
        # Stdio handed in by the caller shares its open file description (and offset) with the
        # host: e.g. `runsc-py run ... >> log` must append where the shell's offset is.
        fmt = mode & 0o170000
        self.host_seekable = hs = fmt == 0o100000 or fmt == 0o060000         # S_ISREG, S_ISBLK
        self.seekable = hs and not host_offset
        self.is_tty = fmt == 0o020000 and os.isatty(host_fd)               # S_ISCHR
        self._host_mode = mode

    def stat(self) -> Stat:
        if self.dentry is not None:
            return self.dentry.inode.stat()
        s = os.fstat(self.host_fd)
        return Stat(s.st_ino, 0x10, s.st_mode, s.st_nlink, s.st_uid, s.st_gid, s.st_rdev, s.st_size,
                    s.st_blksize, s.st_blocks, s.st_atime_ns, s.st_mtime_ns, s.st_ctime_ns)

    def _wait(self, t, events: int) -> None:
        p = select.poll()
        p.register(self.host_fd, events)
        if not p.poll(0):
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN)
            t.block(host_fd=(self.host_fd, events))

    def read(self, t, dsts: list[memoryview]) -> int:
        if not self.readable:
            raise SyscallError(errno.EBADF)
        try:
            if self.seekable:
                fm = self._shared_map()
                n = fm.read(dsts, self.offset) if fm is not None else os.preadv(self.host_fd, dsts, self.offset)
                self.offset += n
                return n
            self._wait(t, select.POLLIN | select.POLLHUP)
            return os.readv(self.host_fd, dsts)
        except OSError as e:
            raise SyscallError(e.errno) from None

    def write(self, t, srcs: list[memoryview]) -> int:
        if not self.writable:
            raise SyscallError(errno.EBADF)
        try:
            if self.seekable:
                if self.flags & O_APPEND:
                    self.offset = os.fstat(self.host_fd).st_size
                n = os.pwritev(self.host_fd, srcs, self.offset)
                fm = self._shared_map()
                if fm is not None:
                    fm.wrote(srcs, self.offset, n)
                self.offset += n
                return n
            self._wait(t, select.POLLOUT)
            return os.writev(self.host_fd, srcs)
        except BrokenPipeError:
            raise SyscallError(errno.EPIPE) from None
        except OSError as e:
            raise SyscallError(e.errno) from None

    def pread(self, t, dsts: list[memoryview], offset: int) -> int:
        if not self.host_seekable:
            raise SyscallError(errno.ESPIPE)
        if not self.readable:
            raise SyscallError(errno.EBADF)
        try:
            fm = self._shared_map()
            return fm.read(dsts, offset) if fm is not None else os.preadv(self.host_fd, dsts, offset)
        except OSError as e:
            raise SyscallError(e.errno) from None

    def pwrite(self, t, srcs: list[memoryview], offset: int) -> int:
        if not self.host_seekable:
            raise SyscallError(errno.ESPIPE)
        if not self.writable:
            raise SyscallError(errno.EBADF)
        try:
            n = os.pwritev(self.host_fd, srcs, offset)
        except OSError as e:
            raise SyscallError(e.errno) from None
        fm = self._shared_map()
        if fm is not None:
            fm.wrote(srcs, offset, n)
        return n

    def _shared_map(self):
        """The inode's shared file mapping, if it is mapped MAP_SHARED somewhere (sentry/mm/filemap.py)."""
        d = self.dentry
        return getattr(d.inode, "shared_map", None) if d is not None else None

    def seek(self, offset: int, whence: int) -> int:
        if not self.seekable:
            if not self.host_seekable:
                raise SyscallError(errno.ESPIPE)
            try:
                return os.lseek(self.host_fd, offset, whence)   # stdio: the shared host offset
            except OSError as e:
                raise SyscallError(e.errno) from None
        return _seek_common(self, offset, whence, os.fstat(self.host_fd).st_size)

    def transfer_without_buffer(self, t, write: bool, count: int) -> int:
        if not write and self.seekable and self.offset >= os.fstat(self.host_fd).st_size:
            return 0                      # at EOF nothing is copied, so no fault
        raise SyscallError(errno.EFAULT)

    def ioctl(self, t, request: int, arg: int) -> int:
        from sentry.vfs import tty
        if self.is_tty:
            return tty.host_tty_ioctl(t, self.host_fd, request, arg)
        raise SyscallError(errno.ENOTTY)

    def release(self) -> None:
        if self.owns_fd:
            os.close(self.host_fd)


# -- references -------------------------------------------------------------------
# A File is held by descriptors (FDTable), by SCM_RIGHTS messages in flight
# (sentry/socket/unix.py) and by mappings; each holder takes one reference with
# `hold` and gives it back with `put`, which releases the File at the last one.
# New holders go through these two; nothing else should touch `refs`.

def hold(f: "File") -> "File":
    """Take a reference to `f` (returned, for chaining)."""
    f.refs += 1
    return f


def put(f: "File") -> None:
    """Give back one reference to `f`; the last one releases it."""
    f.refs -= 1
    if f.refs == 0:
        f.release()


def scatter(dsts, data) -> int:
    """Copy `data` into the memoryviews `dsts` in order; return the bytes copied.

    One copy per byte: `data` is sliced through a memoryview (a slice of bytes or a
    bytearray would copy first), released before returning so a bytearray may be resized."""
    pos = 0
    n = len(data)
    with memoryview(data) as src:
        for mv in dsts:
            if pos >= n:
                break
            take = min(len(mv), n - pos)
            mv[:take] = src[pos:pos + take]
            pos += take
    return pos


def append_from(buf: bytearray, srcs, skip: int, n: int) -> None:
    """Append `n` bytes of the memoryviews `srcs`, after the first `skip`, to `buf`: one copy
    (what `buf += gather(srcs)[skip:skip + n]` does with three)."""
    for mv in srcs:
        size = len(mv)
        if skip >= size:
            skip -= size
            continue
        take = min(size - skip, n)
        buf += mv[skip:skip + take]
        n -= take
        skip = 0
        if n <= 0:
            return


def gather(srcs) -> bytes:
    """The bytes of the memoryviews `srcs`, concatenated."""
    return bytes(srcs[0]) if len(srcs) == 1 else b"".join(bytes(s) for s in srcs)


class FDTable:
    """fd -> (File, close-on-exec)."""

    def __init__(self) -> None:
        self.files: dict[int, File] = {}
        self.cloexec: set[int] = set()      # only ever open fds (close takes an fd out)
        self.free_hint = 0                  # every fd below it is open: the search for a free one starts there

    def get(self, fd: int) -> File:
        try:
            return self.files[fd]
        except KeyError:
            raise SyscallError(errno.EBADF) from None

    def get_io(self, fd: int) -> File:
        """A file for I/O: O_PATH descriptors are EBADF here."""
        f = self.get(fd)
        if f.flags & O_PATH:
            raise SyscallError(errno.EBADF)
        return f

    def install(self, file: File, cloexec: bool = False, minfd: int = 0, limit: int = 1024) -> int:
        """The lowest free fd >= `minfd`, below `limit` (EMFILE), now holding `file`."""
        hint = self.free_hint
        fd = minfd if minfd > hint else hint
        files = self.files
        while fd in files:
            fd += 1
        if fd >= limit:
            raise SyscallError(errno.EMFILE)
        if minfd <= hint:
            self.free_hint = fd + 1     # fd was the lowest free one
        hold(file)                      # install_at(), for a free slot
        files[fd] = file
        if cloexec:                     # (a free fd is never in cloexec: nothing to discard)
            self.cloexec.add(fd)
        return fd

    def install_at(self, fd: int, file: File, cloexec: bool) -> None:
        old = self.files.get(fd)
        hold(file)
        self.files[fd] = file
        if cloexec:
            self.cloexec.add(fd)
        else:
            self.cloexec.discard(fd)
        if old is not None:
            self._drop(old)

    def close(self, fd: int) -> File:
        """Remove `fd` (EBADF if it is not open); return its File, released if that was the last reference."""
        f = self.files.pop(fd, None)
        if f is None:
            raise SyscallError(errno.EBADF)
        if fd < self.free_hint:
            self.free_hint = fd
        cloexec = self.cloexec
        if cloexec:
            cloexec.discard(fd)
        put(f)
        return f

    def _drop(self, f: File) -> None:
        put(f)

    def install_pair(self, t, a: File, b: File, cloexec: bool, out_addr: int) -> None:
        """pipe2/socketpair: install both, write the two fds to `out_addr`; undo all on failure."""
        import struct
        limit = t.tg.rlimits[7][0]
        fa = self.install(a, cloexec, limit=limit)
        try:
            fb = self.install(b, cloexec, limit=limit)
        except SyscallError:
            self.close(fa)
            raise
        try:
            t.mm.write(out_addr, struct.pack("<ii", fa, fb))
        except SyscallError:
            self.close(fa)
            self.close(fb)
            raise

    def fork(self) -> "FDTable":
        n = FDTable()
        for fd, f in self.files.items():
            n.files[fd] = hold(f)
        n.cloexec = set(self.cloexec)
        n.free_hint = self.free_hint
        return n

    def close_on_exec(self) -> None:
        for fd in list(self.cloexec):
            self.close(fd)

    def close_all(self) -> None:
        for fd in list(self.files):
            self.close(fd)
