"""tmpfs: a filesystem that lives entirely in the Sentry's memory.

Used for the `tmpfs` mounts config.json asks for and for /dev/shm.  The
tree is ordinary Python objects (no Gofer, no host file); every change is
made here and the Sentry's dentry cache is kept by the syscall layer.

File data is a `bytearray` per file, not MemoryFile pages.  Why: reads and
writes are then one slice copy into the application's memoryviews with no
page bookkeeping, growth is amortised by bytearray itself, and a freed file
gives its memory back at once.  The cost is that the data lives on the
Sentry's heap rather than in the memfd, so a tmpfs file cannot be mapped
`MAP_SHARED` coherently; `mmap` of files copies their bytes in for now
(sentry/syscalls/memory.py), which only needs `pread`.  The `size=` limit
is enforced on page-rounded file sizes, as Linux's tmpfs counts blocks:
a write that would pass it writes what fits, then fails with ENOSPC.
"""
from __future__ import annotations

import errno
import os
import stat as st
import time

from sentry.errors import SyscallError
from sentry.vfs.file import O_APPEND, O_PATH, O_TRUNC, File
from sentry.vfs.inode import Inode, Stat

TMPFS_MAGIC = 0x01021994
PAGE = 4096
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


try:
    _DEFAULT_LIMIT = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
except (ValueError, OSError):
    _DEFAULT_LIMIT = 1 << 32


def _pages(n: int) -> int:
    return (n + PAGE - 1) // PAGE


class TmpFS:
    def __init__(self, dev: int, size_limit: int | None = None, nr_inodes: int | None = None) -> None:
        self.dev = dev
        self.size_limit = size_limit          # bytes, None for unlimited
        self.used_pages = 0
        self._next_ino = 1
        self.nr_inodes = nr_inodes

    def ino(self) -> int:
        self._next_ino += 1
        return self._next_ino

    def charge(self, old_size: int, new_size: int) -> None:
        """Account a file growing or shrinking; ENOSPC past the size limit.  Without one, past half
        of the host's memory (Linux's default tmpfs size): file data is held densely here, so an
        application's ftruncate(fd, 2^40) must be refused, never attempted (a MemoryError)."""
        delta = _pages(new_size) - _pages(old_size)
        limit = self.size_limit if self.size_limit is not None else _DEFAULT_LIMIT
        if delta > 0 and (self.used_pages + delta) * PAGE > limit:
            raise SyscallError(errno.ENOSPC)
        self.used_pages += delta

    def room(self) -> int | None:
        """Bytes still allowed past what is charged (None: no limit)."""
        if self.size_limit is None:
            return None
        return max(0, self.size_limit - self.used_pages * PAGE)

    def statfs(self) -> dict[str, int]:
        total = (self.size_limit // PAGE) if self.size_limit is not None else 1 << 20
        free = max(0, total - self.used_pages)
        return {"f_type": TMPFS_MAGIC, "f_bsize": PAGE, "f_blocks": total, "f_bfree": free, "f_bavail": free,
                "f_files": 1 << 20, "f_ffree": (1 << 20) - self._next_ino, "f_namelen": 255, "f_frsize": PAGE}


class TmpInode(Inode):
    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int, rdev: int = 0) -> None:
        super().__init__(fs, fs.ino(), mode)
        self.uid = uid
        self.gid = gid
        self.rdev = rdev
        self.nlink = 1
        now = time.time_ns()
        self.atime = self.mtime = self.ctime = now
        self.xattrs: dict[bytes, bytes] = {}

    def size(self) -> int:
        return 0

    def stat(self) -> Stat:
        size = self.size()
        return Stat(self.ino, self.fs.dev, self.mode, self.nlink, self.uid, self.gid, self.rdev, size,
                    PAGE, _pages(size) * 8, self.atime, self.mtime, self.ctime)

    def touch(self, ctime_only: bool = False) -> None:
        now = time.time_ns()
        self.ctime = now
        if not ctime_only:
            self.mtime = now

    def setstat(self, t, mode=None, uid=None, gid=None, size=None, atime_ns=None, mtime_ns=None) -> None:
        now = time.time_ns()
        if size is not None:
            if self.is_dir:
                raise SyscallError(errno.EISDIR)
            if not isinstance(self, TmpFile):
                raise SyscallError(errno.EINVAL)
            self.truncate(size)
        if uid is not None:
            self.uid = uid
        if gid is not None:
            self.gid = gid
        if mode is not None:
            self.mode = (self.mode & ~0o7777) | (mode & 0o7777)
        if atime_ns is not None:
            self.atime = now if atime_ns == UTIME_NOW else atime_ns
        if mtime_ns is not None:
            self.mtime = now if mtime_ns == UTIME_NOW else mtime_ns
        self.ctime = now

    def statfs(self) -> dict[str, int]:
        return self.fs.statfs()

    # Extended attributes: kept per inode, for the trusted.*/security.*/user.* namespaces as tmpfs does.
    def getxattr(self, name: bytes) -> bytes:
        try:
            return self.xattrs[name]
        except KeyError:
            raise SyscallError(errno.ENODATA) from None

    def listxattr(self) -> list[bytes]:
        return list(self.xattrs)

    def setxattr(self, t, name: bytes, value: bytes, flags: int) -> None:
        if name.startswith(b"system."):
            raise SyscallError(errno.EOPNOTSUPP)
        if flags & 1 and name in self.xattrs:       # XATTR_CREATE
            raise SyscallError(errno.EEXIST)
        if flags & 2 and name not in self.xattrs:   # XATTR_REPLACE
            raise SyscallError(errno.ENODATA)
        self.xattrs[name] = value
        self.touch(ctime_only=True)

    def removexattr(self, t, name: bytes) -> None:
        if self.xattrs.pop(name, None) is None:
            raise SyscallError(errno.ENODATA)
        self.touch(ctime_only=True)

    def open(self, t, dentry, flags: int) -> File:
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        if st.S_ISFIFO(self.mode):
            from sentry.vfs.fifo import open_fifo
            return open_fifo(t, self, dentry, flags)
        raise SyscallError(errno.ENXIO)


class TmpFile(TmpInode):
    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int) -> None:
        super().__init__(fs, st.S_IFREG | (mode & 0o7777), uid, gid)
        self.data = bytearray()
        self.open_count = 0
        self.shared_map = None     # pages of MAP_SHARED mappings while any exist (sentry/mm/filemap.py)
        self.seals = 0             # memfd seals (F_ADD_SEALS)

    def size(self) -> int:
        return len(self.data)

    def truncate(self, size: int) -> None:
        old = len(self.data)
        if size == old:
            return
        if (size < old and self.seals & 0x2) or (size > old and self.seals & 0x4):
            raise SyscallError(errno.EPERM)             # F_SEAL_SHRINK / F_SEAL_GROW
        if self.shared_map is not None:
            self.shared_map.truncated(size)
        self.fs.charge(old, size)
        if size < old:
            del self.data[size:]
        else:
            self.data.extend(bytes(size - old))
        self.touch()

    def write_at(self, srcs, offset: int) -> int:
        data = self.data
        total = sum(len(s) for s in srcs)
        if total == 0:
            return 0
        end = offset + total
        if self.seals & 0x8 or (end > len(data) and self.seals & 0x4):
            raise SyscallError(errno.EPERM)             # F_SEAL_WRITE / F_SEAL_GROW
        if end > len(data):
            room = self.fs.room()
            if room is not None:
                limit = _pages(len(data)) * PAGE + room
                if end > limit:
                    end = max(offset, limit)
                    if end == offset:
                        raise SyscallError(errno.ENOSPC)
            self.fs.charge(len(data), max(end, len(data)))
            if offset > len(data):
                data.extend(bytes(offset - len(data)))
        n = 0
        for s in srcs:
            take = min(len(s), end - offset - n)
            if take <= 0:
                break
            data[offset + n:offset + n + take] = s[:take]
            n += take
        if self.shared_map is not None:
            self.shared_map.wrote(srcs, offset, n)
        self.touch()
        return n

    def read_at(self, dsts, offset: int) -> int:
        if self.shared_map is not None:
            return self.shared_map.read(dsts, offset)
        data = self.data
        n = 0
        for mv in dsts:
            chunk = data[offset + n:offset + n + len(mv)]
            mv[:len(chunk)] = chunk
            n += len(chunk)
            if len(chunk) < len(mv):
                break
        return n

    def open(self, t, dentry, flags: int) -> File:
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        if flags & O_TRUNC and flags & 3:
            self.truncate(0)
        return TmpFileDescription(flags, dentry, self)

    def release_data(self) -> None:
        self.fs.charge(len(self.data), 0)
        self.data = bytearray()


class TmpFileDescription(File):
    def __init__(self, flags: int, dentry, inode: "TmpFile | None" = None) -> None:
        super().__init__(flags, dentry, dentry.mount)
        # The inode is given where the dentry's is another filesystem's view of it (overlay).
        self.inode: TmpFile = inode if inode is not None else dentry.inode
        self.inode.open_count += 1

    def read(self, t, dsts) -> int:
        n = self.inode.read_at(dsts, self.offset)
        self.offset += n
        return n

    def pread(self, t, dsts, offset: int) -> int:
        if not self.readable:
            raise SyscallError(errno.EBADF)
        return self.inode.read_at(dsts, offset)

    def write(self, t, srcs) -> int:
        if self.flags & O_APPEND:
            self.offset = len(self.inode.data)
        n = self.inode.write_at(srcs, self.offset)
        self.offset += n
        return n

    def pwrite(self, t, srcs, offset: int) -> int:
        if not self.writable:
            raise SyscallError(errno.EBADF)
        if self.flags & O_APPEND:
            offset = len(self.inode.data)
        return self.inode.write_at(srcs, offset)

    def seek(self, offset: int, whence: int) -> int:
        from sentry.vfs.file import _seek_common
        return _seek_common(self, offset, whence, len(self.inode.data))

    def truncate(self, size: int) -> None:
        self.inode.truncate(size)

    def allocate(self, offset: int, length: int) -> None:
        if offset + length > len(self.inode.data):
            self.inode.truncate(offset + length)

    def fsync(self) -> None:
        pass

    def release(self) -> None:
        inode = self.inode
        inode.open_count -= 1
        if inode.nlink == 0 and inode.open_count <= 0:
            inode.release_data()


class TmpSymlink(TmpInode):
    def __init__(self, fs: TmpFS, target: bytes, uid: int, gid: int) -> None:
        super().__init__(fs, st.S_IFLNK | 0o777, uid, gid)
        self.target = target

    def size(self) -> int:
        return len(self.target)

    def readlink(self) -> bytes:
        return self.target


class TmpDir(TmpInode):
    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int) -> None:
        super().__init__(fs, st.S_IFDIR | (mode & 0o7777), uid, gid)
        self.entries: dict[bytes, TmpInode] = {}
        self.nlink = 2

    def size(self) -> int:
        return 40 + 20 * len(self.entries)

    def lookup(self, name: bytes) -> Inode | None:
        return self.entries.get(name)

    def list(self) -> list[tuple[bytes, int, int]]:
        return [(n, i.ino, (i.mode >> 12) & 0xF) for n, i in self.entries.items()]

    def open(self, t, dentry, flags: int) -> File:
        from sentry.vfs.devfs import SynthDirFile
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        return SynthDirFile(flags, dentry)

    # -- tree changes (the syscall layer has checked names, permissions and the cache) --

    def _owner(self, t) -> tuple[int, int]:
        c = t.tg.creds
        return c.fsuid, (self.gid if self.mode & st.S_ISGID else c.fsgid)

    def _insert(self, name: bytes, inode: TmpInode) -> TmpInode:
        if name in self.entries:
            raise SyscallError(errno.EEXIST)
        self.entries[name] = inode
        if inode.is_dir:
            self.nlink += 1
        self.touch()
        return inode

    def create(self, t, parent, name: bytes, flags: int, mode: int) -> File:
        from sentry.vfs.inode import Dentry
        inode = self._insert(name, TmpFile(self.fs, mode, *self._owner(t)))
        d = Dentry(name, parent, inode, parent.mount)
        parent.children[name] = d
        return TmpFileDescription(flags, d)

    def tmpfile(self, t, dentry, flags: int, mode: int) -> File:
        """O_TMPFILE: a file with no name (nlink 0), freed when closed unless linked first."""
        from sentry.vfs.inode import Dentry
        inode = TmpFile(self.fs, mode, *self._owner(t))
        inode.nlink = 0
        inode.linkable = not flags & 0o200               # O_EXCL: never to be linked
        d = Dentry(b"#%d" % inode.ino, dentry, inode, dentry.mount)
        return TmpFileDescription(flags, d, inode)

    def mkdir(self, t, name: bytes, mode: int) -> TmpInode:
        if self.mode & st.S_ISGID:
            mode |= st.S_ISGID
        return self._insert(name, TmpDir(self.fs, mode, *self._owner(t)))

    def mknod(self, t, name: bytes, mode: int, rdev: int) -> TmpInode:
        if st.S_ISREG(mode):
            return self._insert(name, TmpFile(self.fs, mode, *self._owner(t)))
        inode = TmpInode(self.fs, mode, *self._owner(t), rdev=rdev)
        return self._insert(name, inode)

    def symlink(self, t, name: bytes, target: bytes) -> TmpInode:
        return self._insert(name, TmpSymlink(self.fs, target, *self._owner(t)))

    def link(self, t, name: bytes, target: Inode) -> TmpInode:
        if not isinstance(target, TmpInode) or target.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        if target.nlink == 0 and not getattr(target, "linkable", False):
            raise SyscallError(errno.ENOENT)
        target.linkable = False
        self._insert(name, target)
        target.nlink += 1
        target.touch(ctime_only=True)
        return target

    def unlink(self, t, name: bytes, child: Inode, rmdir: bool) -> None:
        inode = self.entries.get(name)
        if inode is None:
            raise SyscallError(errno.ENOENT)
        if rmdir:
            if not inode.is_dir:
                raise SyscallError(errno.ENOTDIR)
            if inode.entries:
                raise SyscallError(errno.ENOTEMPTY)
            self.nlink -= 1
            inode.nlink = 0
        else:
            if inode.is_dir:
                raise SyscallError(errno.EISDIR)
            inode.nlink -= 1
            inode.touch(ctime_only=True)
            if inode.nlink == 0 and isinstance(inode, TmpFile) and inode.open_count <= 0:
                inode.release_data()
        del self.entries[name]
        self.touch()

    def rename(self, t, old_name: bytes, new_dir: Inode, new_name: bytes, flags: int) -> None:
        if not isinstance(new_dir, TmpDir) or new_dir.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        src = self.entries.get(old_name)
        if src is None:
            raise SyscallError(errno.ENOENT)
        dst = new_dir.entries.get(new_name)
        if flags & 2:                                   # RENAME_EXCHANGE
            if dst is None:
                raise SyscallError(errno.ENOENT)
            self.entries[old_name], new_dir.entries[new_name] = dst, src
            if src.is_dir != dst.is_dir and self is not new_dir:
                delta = 1 if src.is_dir else -1
                new_dir.nlink += delta
                self.nlink -= delta
        else:
            if dst is not None:
                if dst.is_dir:
                    if dst.entries:
                        raise SyscallError(errno.ENOTEMPTY)
                    new_dir.nlink -= 1
                    dst.nlink = 0
                else:
                    dst.nlink -= 1
                    if dst.nlink == 0 and isinstance(dst, TmpFile) and dst.open_count <= 0:
                        dst.release_data()
            del self.entries[old_name]
            new_dir.entries[new_name] = src
            if src.is_dir and self is not new_dir:
                self.nlink -= 1
                new_dir.nlink += 1
        src.touch(ctime_only=True)
        self.touch()
        new_dir.touch()


def make_tmpfs(dev: int, options: dict[str, str], uid: int = 0, gid: int = 0,
               default_mode: int = 0o1777) -> tuple[TmpFS, TmpDir]:
    """A new tmpfs and its root, from mount options (size=, mode=, uid=, gid=, nr_inodes=)."""
    size = parse_size(options["size"]) if "size" in options else None
    fs = TmpFS(dev, size or None)
    mode = int(options["mode"], 8) if "mode" in options else default_mode
    root = TmpDir(fs, mode, int(options.get("uid", uid)), int(options.get("gid", gid)))
    return fs, root


def parse_size(s: str) -> int:
    """tmpfs's size=: bytes with an optional k/m/g suffix (a % of memory is taken as unlimited here)."""
    s = s.strip().lower()
    if s.endswith("%"):
        return 0
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}.get(s[-1:], 1)
    if mult != 1:
        s = s[:-1]
    return int(s) * mult
