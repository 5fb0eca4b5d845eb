"""The gofer-backed filesystem: the container's rootfs and bind mounts.

Every inode holds a Gofer handle (an `O_PATH` fd in the Gofer process).
The Sentry never opens a host path: lookups are `WalkStat` requests,
opens are `OpenAt` requests answered with a donated host fd, and data
then moves over that fd directly (no Gofer round trip per read).  `..`
is never sent to the Gofer: the Sentry walks up its own dentry tree.
"""
from __future__ import annotations

import errno
import os
import stat as st

from sentry.errors import SyscallError
from sentry.vfs.file import (O_ACCMODE, O_APPEND, O_DIRECTORY, O_NONBLOCK, O_PATH, O_RDONLY, O_TRUNC,
                             File, HostFDFile, _seek_common)
from sentry.vfs.inode import Inode, Stat


def _oserror(e: OSError) -> SyscallError:
    return SyscallError(e.errno or errno.EIO)


class GoferFS:
    def __init__(self, client, dev: int, readonly: bool) -> None:
        self.client = client
        self.dev = dev
        self.readonly = readonly

    def root_inode(self) -> "GoferInode":
        handle, s = self.client.mount()
        return GoferInode(self, handle, s)


class GoferInode(Inode):
    def __init__(self, fs: GoferFS, handle: int, s) -> None:
        super().__init__(fs, s[0], s[2])
        self.handle = handle
        self._stat = s
        self._target: bytes | None = None

    def stat(self) -> Stat:
        s = self._stat
        return Stat(s[0], self.fs.dev, s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11], s[12])

    def refresh(self) -> Stat:
        try:
            self._stat = self.fs.client.fstat(self.handle)
        except OSError as e:
            raise _oserror(e) from None
        return self.stat()

    def lookup(self, name: bytes) -> "GoferInode | None":
        found = self.lookup_many([name])
        return found[0] if found else None

    def lookup_many(self, names: list[bytes]) -> list["GoferInode"]:
        if not self.is_dir:
            raise SyscallError(errno.ENOTDIR)
        try:
            entries, _status = self.fs.client.walk_stat(self.handle, list(names))
        except OSError as e:
            if e.errno == errno.ENOTDIR and len(names) > 1:
                return [self.lookup(names[0])] if self.lookup(names[0]) else []
            raise _oserror(e) from None
        return [GoferInode(self.fs, h, s) for h, s in entries]

    def readlink(self) -> bytes:
        if not self.is_symlink:
            raise SyscallError(errno.EINVAL)
        if self._target is None:
            try:
                self._target = self.fs.client.readlink_at(self.handle)
            except OSError as e:
                raise _oserror(e) from None
        return self._target

    def list(self) -> list[tuple[bytes, int, int]]:
        try:
            ents = self.fs.client.getdents64(self.handle)
        except OSError as e:
            raise _oserror(e) from None
        return [(name, ino, dt) for ino, dt, name in ents if name not in (b".", b"..")]

    def open(self, t, dentry, flags: int) -> File:
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        mode = self.mode
        if st.S_ISDIR(mode):
            return GoferDirFile(flags, dentry)
        host_flags = flags & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_TRUNC)
        try:
            fd = self.fs.client.open_at(self.handle, host_flags)
        except OSError as e:
            raise _oserror(e) from None
        if flags & O_TRUNC:
            self.refresh()
        return HostFDFile(fd, flags, dentry, dentry.mount)


class GoferDirFile(File):
    """An open directory: getdents64 over the Gofer's listing, offsets are entry indexes."""

    def __init__(self, flags: int, dentry) -> None:
        super().__init__(flags, dentry, dentry.mount)

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
