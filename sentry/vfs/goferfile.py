"""Open files of the gofer-backed filesystem (sentry/vfs/goferfs.py): a regular file on the host
descriptor the Gofer donated (data moves over it directly: no Gofer round trip per read or
write), and a directory listed through the Gofer's Getdents64."""
from __future__ import annotations

import errno
import os

from sentry.errors import SyscallError
from sentry.vfs.file import O_ACCMODE, O_APPEND, O_NONBLOCK, O_PATH, O_RDWR, O_TRUNC, O_WRONLY, File, HostFDFile, _seek_common


def _oserror(e: OSError) -> SyscallError:
    return SyscallError(e.errno or errno.EIO)


_HOST_OPEN_FLAGS = O_ACCMODE | O_APPEND | O_NONBLOCK | O_TRUNC     # what the Gofer's open is given
_KEEP_KEY = O_ACCMODE | O_APPEND                                   # a kept fd serves opens in its mode


class GoferFile(HostFDFile):
    """A regular file (or fifo/socket) of the served tree, open on a donated host fd.

    While open for writing its fd is the inode's source of truth for stat."""

    # What HostFDFile.__init__ works out for a regular file (almost every GoferFile), as class
    # defaults: a regular file's constructor stores only what differs per open.  Other types
    # (sockets, devices) run HostFDFile.__init__, whose instance values override these.
    owns_fd = True
    host_seekable = True
    seekable = True
    is_tty = False
    _tracked = False

    def __init__(self, host_fd: int, flags: int, dentry, mount, inode=None) -> None:
        # The inode is given where the dentry's is another filesystem's view of it (overlay).
        if inode is None:
            inode = dentry.inode
        mode = inode.mode
        if mode & 0o170000 == 0o100000:         # S_ISREG: HostFDFile.__init__, inlined
            self.flags = flags
            self.dentry = dentry
            self.mount = mount
            self.host_fd = host_fd
            self._host_mode = mode
        else:
            HostFDFile.__init__(self, host_fd, flags, dentry, mount, True, False, mode)
        self.inode = inode
        inode.open_count += 1
        acc = flags & O_ACCMODE
        # A GoferInode learns its size from its writers' fds (an overlay's own inode does not).
        if (acc == O_WRONLY or acc == O_RDWR) and not flags & O_PATH and self.seekable \
                and getattr(inode, "tracks_writers", False):
            self._tracked = True
            inode.writers.append(host_fd)

    def release(self) -> None:
        inode = self.inode
        if self._tracked:
            try:
                inode.stat()             # keep what this fd last saw
            except SyscallError:
                pass
            inode.writers.remove(self.host_fd)
            self._tracked = False
            if inode.ino in inode.fs.links:
                inode.fs.changed(inode)
        inode.open_count -= 1
        if self.owns_fd and self.seekable and inode.parent is not None:
            # Kept for the next open of this file in the same mode: no Gofer round trip then.
            # (GoferFS.keep_fd, inlined: the close(2) hot path.)
            fs = inode.fs
            cache = fs.fd_cache
            key = (inode, self.flags & _KEEP_KEY)
            if key not in cache:
                cache[key] = self.host_fd
                inode.kept += 1
                if len(cache) > fs.FD_CACHE_MAX:
                    fs.trim_fds()
                return
        if self.owns_fd:                 # HostFDFile.release
            os.close(self.host_fd)

    def fsync(self) -> None:
        try:
            os.fsync(self.host_fd)
        except OSError as e:
            raise _oserror(e) from None


class GoferDirFile(File):
    """An open directory: getdents64 over the Gofer's listing, offsets are entry indexes."""

    def __init__(self, flags: int, dentry) -> None:
        super().__init__(flags, dentry, dentry.mount)
        dentry.inode.open_count += 1

    def release(self) -> None:
        self.dentry.inode.open_count -= 1

    def read(self, t, dsts):
        raise SyscallError(errno.EISDIR)

    def write(self, t, srcs):
        raise SyscallError(errno.EBADF)

    def pread(self, t, dsts, offset):
        raise SyscallError(errno.EISDIR)

    def getdents(self) -> list[tuple[bytes, int, int]]:
        d = self.dentry
        parent = d.parent if d.parent is not None else d
        entries = [(b".", d.inode.ino, 4), (b"..", parent.inode.ino, 4)]
        entries += d.inode.list()
        return entries

    def seek(self, offset: int, whence: int) -> int:
        return _seek_common(self, offset, whence, 0 if whence != 0 else offset)
