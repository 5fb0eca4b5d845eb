"""Shared file mappings: one set of MemoryFile pages per mapped file.

A `MAP_SHARED` mapping of a regular file must stay coherent with read(2) and
write(2) on the same file and with every other shared mapping of it.  The
Sentry keeps the file's bytes in one MemoryFile range (`FileMapping`), loaded
from the host file when first mapped, and mapped into every address space
that shares it.  While it exists, reads and writes through any open file of
that inode go through those pages (write(2) also writes through to the host
file), so all views agree.  Dirty pages reach the host file on msync(2) and
when the last mapping goes (munmap, exit, exec) -- until then a process
*outside* the sandbox reading the file may see older bytes (as with a host
page cache that has not been flushed to a network filesystem).

Trade-offs: loaded eagerly (the file is read once at the first mmap), the
whole mapped span written back (no dirty tracking), and the range is sized
at the first mmap with room to grow to twice that; a later mapping beyond it
is ENOMEM.
"""
from __future__ import annotations

import errno
import os

from sentry.errors import SyscallError

PAGE = 4096


def _page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


class HostSource:
    """A Gofer file: its bytes on the host, reached through a donated fd."""

    def __init__(self, host_fd: int) -> None:
        self.host_fd = os.dup(host_fd)

    def size(self) -> int:
        return os.fstat(self.host_fd).st_size

    def load(self, view, pos: int) -> int:
        return os.preadv(self.host_fd, [view], pos)

    def store(self, view, pos: int) -> None:
        os.pwritev(self.host_fd, [view], pos)

    def set_writable_fd(self, host_fd: int) -> None:
        os.close(self.host_fd)
        self.host_fd = os.dup(host_fd)

    def close(self) -> None:
        os.close(self.host_fd)


class TmpSource:
    """A tmpfs file (or memfd): its bytes in the Sentry (TmpFile.data)."""

    def __init__(self, inode) -> None:
        self.inode = inode

    def size(self) -> int:
        return len(self.inode.data)

    def load(self, view, pos: int) -> int:
        chunk = self.inode.data[pos:pos + len(view)]
        view[:len(chunk)] = chunk
        return len(chunk)

    def store(self, view, pos: int) -> None:
        self.inode.data[pos:pos + len(view)] = view

    def set_writable_fd(self, host_fd: int) -> None:
        pass

    def close(self) -> None:
        pass


class FileMapping:
    def __init__(self, memfile, inode, source, writable: bool, need: int) -> None:
        from sentry.mm.manager import Backing
        self.memfile = memfile
        self.inode = inode
        self.source = source
        self.writable = writable
        size = source.size()
        cap = max(_page_up(size), _page_up(need), PAGE) * 2
        self.backing = Backing(memfile.allocate(cap), cap)
        self.backing.live = 0
        self.backing.on_release = self.release
        view = memfile.view
        if size:
            source.load(view[self.backing.offset:self.backing.offset + min(size, cap)], 0)
        inode.shared_map = self

    @property
    def capacity(self) -> int:
        return self.backing.length

    def _size(self) -> int:
        return self.source.size()

    # -- the file's read/write paths while mapped ------------------------------------

    def read(self, dsts, pos: int) -> int:
        size = self._size()
        view = self.memfile.view
        base = self.backing.offset
        n = 0
        for mv in dsts:
            if pos >= size:
                break
            take = min(len(mv), size - pos)
            if pos + take > self.capacity:
                # Past the cached span: the file itself holds it.
                got = self.source.load(mv[:take], pos)
            else:
                mv[:take] = view[base + pos:base + pos + take]
                got = take
            n += got
            pos += got
            if got < len(mv):
                break
        return n

    def wrote(self, srcs, pos: int, n: int) -> None:
        """write(2) put `n` bytes of `srcs` at `pos` in the host file: mirror them into the pages."""
        view = self.memfile.view
        base = self.backing.offset
        done = 0
        for sv in srcs:
            if done >= n:
                break
            take = min(len(sv), n - done)
            lo, hi = pos + done, min(pos + done + take, self.capacity)
            if lo < hi:
                view[base + lo:base + hi] = sv[:hi - lo]
            done += take

    def truncated(self, size: int) -> None:
        if size < self.capacity:
            off = self.backing.offset + size
            end = self.backing.offset + self.capacity
            self.memfile.view[off:end] = bytes(end - off)

    def writeback(self) -> None:
        if not self.writable:
            return
        size = min(self._size(), self.capacity)
        if size:
            base = self.backing.offset
            try:
                self.source.store(self.memfile.view[base:base + size], 0)
            except OSError as e:
                raise SyscallError(e.errno or errno.EIO) from None

    def release(self) -> None:
        """The last mapping went: write back, drop the pages, forget."""
        try:
            self.writeback()
        except SyscallError:
            pass
        self.memfile.free(self.backing.offset, self.backing.length)
        if getattr(self.inode, "shared_map", None) is self:
            self.inode.shared_map = None
        self.source.close()


def mapping_for(memfile, f, need: int):
    """The shared mapping of open file `f`'s inode (made on first use), or None if it cannot be mapped."""
    from sentry.vfs.file import HostFDFile
    inode = getattr(f, "inode", None) or (f.dentry.inode if f.dentry is not None else None)
    if inode is None:
        return None
    fm = getattr(inode, "shared_map", None)
    if fm is None:
        if isinstance(f, HostFDFile):
            if not f.seekable:
                return None
            source = HostSource(f.host_fd)
        elif hasattr(inode, "data") and isinstance(inode.data, bytearray):
            source = TmpSource(inode)
        else:
            return None
        fm = FileMapping(memfile, inode, source, f.writable, need)
    elif f.writable and not fm.writable:
        fm.writable = True
        if isinstance(f, HostFDFile):
            fm.source.set_writable_fd(f.host_fd)
    return fm
