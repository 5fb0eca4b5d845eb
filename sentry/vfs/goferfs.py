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
from collections import OrderedDict

from sentry.errors import SyscallError
from sentry.vfs.file import (O_ACCMODE, O_APPEND, O_EXCL, O_NONBLOCK, O_PATH, O_TRUNC, File)
from sentry.vfs.inode import Inode, Stat
from sentry.vfs.goferfile import _HOST_OPEN_FLAGS, _KEEP_KEY, GoferDirFile, GoferFile
from sentry.vfs.walk import invalidate_paths


AT_REMOVEDIR = 0x200


def _oserror(e: OSError) -> SyscallError:
    return SyscallError(e.errno or errno.EIO)


class GoferFS:
    """One served tree.  Keeps the Gofer's handle count bounded: handles of inodes not
    used lately are closed (least recently used first) and taken again by name when
    next needed; an inode open as a file is never evicted (its name may be gone).

    The container has the tree to itself (as gVisor assumes by default), so names, modes
    and symlink targets change only through the Sentry: the VFS may cache whole walks here."""

    path_cacheable = True

    HANDLES_HIGH = 4096       # the Gofer allows 10000; leave room for bind mounts and bursts
    HANDLES_LOW = 3072

    def __init__(self, client, dev: int, readonly: bool) -> None:
        self.client = client
        self.dev = dev
        self.readonly = readonly
        self.lru: OrderedDict[GoferInode, None] = OrderedDict()
        self.evictions = 0
        # A plain dict (insertion-ordered: the first key is the oldest), cheaper than an OrderedDict.
        self.fd_cache: dict[tuple[GoferInode, int], int] = {}
        self.kernel = None                  # set at mount: prune() looks at every fd table
        self.pruned = 0
        # Inodes of hard-linked regular files by inode number: a change made through one
        # name makes the others' cached stat stale.
        self.links: dict[int, list[GoferInode]] = {}

    def note_link(self, inode: "GoferInode") -> None:
        same = self.links.setdefault(inode.ino, [])
        if inode not in same:
            same.append(inode)

    def changed(self, inode: "GoferInode") -> None:
        for other in self.links.get(inode.ino, ()):
            if other is not inode:
                other._stale = True

    def root_inode(self) -> "GoferInode":
        handle, s = self.client.mount()
        return GoferInode(self, handle, s)

    def track(self, inode: "GoferInode") -> None:
        self.lru[inode] = None
        if len(self.lru) > self.HANDLES_HIGH:
            self.evict()

    def evict(self) -> None:
        excess = len(self.lru) - self.HANDLES_LOW
        victims = []
        for inode in self.lru:
            if excess <= 0:
                break
            if inode.open_count or inode.writers or inode.parent is None:
                continue
            victims.append(inode)
            excess -= 1
        handles = []
        for inode in victims:
            del self.lru[inode]
            if inode.kept:
                self.drop_fds(inode)
            handles.append(inode._h)
            inode._h = None
        self.evictions += len(handles)
        if handles:
            try:
                self.client.close(handles)
            except OSError:
                pass
        self.prune()

    def prune(self) -> None:
        """Drop from the dentry cache the leaves whose inode has no handle left and that nothing
        holds (an open file, a cwd or root), and every negative entry: the cache stays about as
        big as the handle budget.  Post-order, so a directory emptied here goes in the same pass."""
        kernel = self.kernel
        if kernel is None:
            return
        held = set()
        for tg in kernel.thread_groups.values():
            held.add(tg.fs.cwd)
            held.add(tg.fs.root)
            for f in tg.fds.files.values():
                d = f.dentry
                while d is not None and d not in held:
                    held.add(d)
                    d = d.parent
        pruned = 0
        for m in kernel.vfs.mounts:
            if m.fs is not self:
                continue
            stack = [(m.root, False)]
            while stack:
                d, done = stack.pop()
                if not done:
                    stack.append((d, True))
                    stack.extend((c, False) for c in d.children.values() if c is not None)
                    continue
                children = d.children
                for name in [n for n, c in children.items() if c is None or (
                        not c.children and c.mounted is None and c not in held
                        and isinstance(c.inode, GoferInode) and c.inode._h is None)]:
                    del children[name]
                    pruned += 1
        self.pruned += pruned
        if pruned:
            invalidate_paths()          # a cached walk must not hand out a dentry no longer in the tree

    # Donated host fds of closed files, kept per (inode, access mode) for the next open.
    FD_CACHE_MAX = 512

    def take_fd(self, inode: "GoferInode", key: int) -> int | None:
        if not inode.kept:
            return None
        fd = self.fd_cache.pop((inode, key), None)
        if fd is not None:
            inode.kept -= 1
        return fd

    def keep_fd(self, inode: "GoferInode", key: int, fd: int) -> bool:
        cache = self.fd_cache
        if (inode, key) in cache:
            return False
        cache[(inode, key)] = fd
        inode.kept += 1
        if len(cache) > self.FD_CACHE_MAX:
            self.trim_fds()
        return True

    def trim_fds(self) -> None:
        """Close the oldest kept fds until at most FD_CACHE_MAX remain."""
        cache = self.fd_cache
        while len(cache) > self.FD_CACHE_MAX:
            old_key = next(iter(cache))
            old = cache.pop(old_key)
            old_key[0].kept -= 1
            os.close(old)

    def drop_fds(self, inode: "GoferInode") -> None:
        if not inode.kept:
            return
        for key in [k for k in self.fd_cache if k[0] is inode]:
            os.close(self.fd_cache.pop(key))
        inode.kept = 0

    def forget(self, inode: "GoferInode") -> None:
        """`inode` no longer has a name here: release its handle unless a file holds it open."""
        inode.parent = None
        self.drop_fds(inode)
        if inode.open_count or inode.writers or inode._h is None:
            return
        self.lru.pop(inode, None)
        h, inode._h = inode._h, None
        try:
            self.client.close([h])
        except OSError:
            pass


class GoferInode(Inode):
    """A file of the served tree.  Its stat is cached: refreshed after our own changes
    (`invalidate`), and read from an open writable host fd while one exists, so
    fstat/stat after write(2) show the new size without a Gofer round trip."""

    tracks_writers = True           # GoferFile registers its writable host fds in `writers`

    def __init__(self, fs: GoferFS, handle: int, s, parent: "GoferInode | None" = None,
                 name: bytes = b"") -> None:
        super().__init__(fs, s[0], s[2])
        self._h: int | None = handle
        self.parent = parent                # where to take a handle again after eviction
        self.name = name
        self._stat = s
        self._built_from = None             # stat() caches the Stat it built from `_stat`
        self._built: Stat | None = None
        self._stale = False
        self._target: bytes | None = None
        self.writers: list[int] = []        # host fds of open writable files of this inode
        self.open_count = 0
        self.kept = 0                       # host fds of closed files kept in fs.fd_cache
        fs.track(self)
        if s[3] > 1 and st.S_ISREG(s[2]):
            fs.note_link(self)

    @property
    def handle(self) -> int:
        h = self._h
        if h is None:
            return self._reacquire()
        self.fs.lru.move_to_end(self)
        return h

    def _reacquire(self) -> int:
        parent = self.parent
        if parent is None:
            raise SyscallError(errno.ESTALE)
        try:
            entries, _ = self.fs.client.walk_stat(parent.handle, [self.name])
        except OSError as e:
            raise _oserror(e) from None
        if not entries:
            raise SyscallError(errno.ESTALE)
        h, s = entries[0]
        if s[0] != self.ino or (s[2] ^ self.mode) & 0o170000:
            self.fs.client.close([h])
            raise SyscallError(errno.ESTALE)
        self._h = h
        self.fs.track(self)
        return h

    def moved(self, new_parent: "GoferInode", new_name: bytes) -> None:
        """rename(2) gave this inode a new name (the dentry cache moved it too)."""
        self.parent, self.name = new_parent, new_name

    def unlinked(self) -> None:
        self.fs.forget(self)

    def stat(self) -> Stat:
        if self.writers:
            try:
                h = os.fstat(self.writers[-1])
            except OSError as e:
                raise _oserror(e) from None
            self._stat = s = (h.st_ino, 0, h.st_mode, h.st_nlink, h.st_uid, h.st_gid, h.st_rdev, h.st_size,
                              h.st_blksize, h.st_blocks, h.st_atime_ns, h.st_mtime_ns, h.st_ctime_ns)
        elif self._stale:
            self._stale = False
            self.refresh()
        s = self._stat
        if self._built_from is s:           # the Stat built from this very reply, reused
            return self._built
        self._built_from = s
        self._built = r = Stat(s[0], self.fs.dev, s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11],
                              s[12])
        return r

    def perm_stat(self) -> Stat:
        """For permission checks.  A directory's mode and owner change only through setstat
        (which takes the Gofer's new stat as it is), never by a change inside it: a directory
        made stale by a create or unlink in it (times, nlink, size) answers from its cached
        stat, without the round trip a walk or create through it would otherwise cost."""
        if self._stale and self.mode & 0o170000 == 0o040000:
            s = self._stat
            if self._built_from is not s:
                self._built_from = s
                self._built = Stat(s[0], self.fs.dev, s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10],
                                   s[11], s[12])
            return self._built
        return self.stat()

    def invalidate(self) -> None:
        """Our own change made the cached stat stale (mtime, nlink, size...): refetch on next stat."""
        self._stale = True

    def refresh(self) -> Stat:
        old = self._stat
        try:
            self._stat = s = self.fs.client.fstat(self.handle)
        except OSError as e:
            raise _oserror(e) from None
        self._stale = False
        self.mode = s[2]
        if s[2] != old[2] or s[4] != old[4] or s[5] != old[5]:
            invalidate_paths()          # mode or owner changed: a walk's permission checks differ
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
                first = self.lookup(names[0])
                return [first] if first is not None else []
            raise _oserror(e) from None
        out = []
        parent = self
        for (h, s), name in zip(entries, names):
            parent = GoferInode(self.fs, h, s, parent, name)
            out.append(parent)
        return out

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
        fmt = self.mode & 0o170000
        if fmt == 0o040000:
            return GoferDirFile(flags, dentry)
        if fmt == 0o010000:
            from sentry.vfs.fifo import open_fifo
            return open_fifo(t, self, dentry, flags)
        host_flags = flags & _HOST_OPEN_FLAGS
        fd = None
        if self.kept and fmt == 0o100000:            # fs.take_fd(), inlined: the open(2) hot path
            fd = self.fs.fd_cache.pop((self, flags & _KEEP_KEY), None)
            if fd is not None:
                self.kept -= 1
        if fd is not None:
            if flags & O_TRUNC and flags & O_ACCMODE:
                try:
                    os.ftruncate(fd, 0)
                except OSError as e:
                    os.close(fd)
                    raise _oserror(e) from None
        else:
            try:
                fd = self.fs.client.open_at(self.handle, host_flags)
            except OSError as e:
                raise _oserror(e) from None
        if flags & O_TRUNC:
            self._stale = True
        return GoferFile(fd, flags, dentry, dentry.mount, self)


    # -- changes: each one Gofer request; the caller (fsops) keeps the dentry cache ----------

    def _new_owner(self, t) -> tuple[int, int]:
        """(uid, gid) of a file made in this directory: the fsgid, or the directory's group if setgid."""
        c = t.tg.creds
        s = self.perm_stat()
        return c.fsuid, (s.gid if s.mode & st.S_ISGID else c.fsgid)

    # create() with O_EXCL fails with EEXIST by itself when the name exists (symlinks, dangling or
    # not, included): do_open may skip the lookup of a name it does not know.
    create_excl_finds = True

    def create(self, t, parent, name: bytes, flags: int, mode: int) -> File:
        """open(O_CREAT) of a name that did not exist: a new file and an open host fd on it."""
        uid, gid = self._new_owner(t)
        host_flags = flags & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_TRUNC | O_EXCL)
        try:
            h, s, fd = self.fs.client.open_create_at(self.handle, name, host_flags, mode, uid, gid)
        except OSError as e:
            raise _oserror(e) from None
        inode = GoferInode(self.fs, h, s, self, name)
        self._stale = True
        d = _add_child(parent, name, inode)
        return GoferFile(fd, flags, d, d.mount)

    def mkdir(self, t, name: bytes, mode: int) -> "GoferInode":
        uid, gid = self._new_owner(t)
        if self.perm_stat().mode & st.S_ISGID:
            mode |= st.S_ISGID
        return self._made(self.fs.client.mkdir_at, name, mode, uid, gid)

    def mknod(self, t, name: bytes, mode: int, rdev: int) -> "GoferInode":
        if st.S_IFMT(mode) not in (st.S_IFIFO, st.S_IFSOCK, st.S_IFREG):
            raise SyscallError(errno.EPERM)
        if st.S_ISREG(mode):
            uid, gid = self._new_owner(t)
            try:
                h, s, fd = self.fs.client.open_create_at(self.handle, name, O_EXCL, mode & 0o7777, uid, gid)
            except OSError as e:
                raise _oserror(e) from None
            os.close(fd)
            self._stale = True
            return GoferInode(self.fs, h, s, self, name)
        return self._made(self.fs.client.mknod_at, name, mode, *self._new_owner(t))

    def symlink(self, t, name: bytes, target: bytes) -> "GoferInode":
        return self._made(self.fs.client.symlink_at, name, target, *self._new_owner(t))

    def link(self, t, name: bytes, target: Inode) -> "GoferInode":
        if not isinstance(target, GoferInode) or target.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        inode = self._made(self.fs.client.link_at, name, target.handle)
        target._stale = True
        self.fs.note_link(target)
        self.fs.note_link(inode)
        self.fs.changed(inode)
        return inode

    def _made(self, op, name: bytes, *args) -> "GoferInode":
        try:
            h, s = op(self.handle, name, *args)
        except OSError as e:
            raise _oserror(e) from None
        self._stale = True
        return GoferInode(self.fs, h, s, self, name)

    def unlink(self, t, name: bytes, child: Inode, rmdir: bool) -> None:
        # The removed file's handle goes with the same request (fs.forget would close it
        # next), unless a file still holds it open.  The directory's handle first: taking it
        # again (after eviction) may evict others, the child's too.
        dir_h = self.handle
        close = []
        if isinstance(child, GoferInode) and child.fs is self.fs and child._h is not None \
                and not child.open_count and not child.writers:
            close.append(child._h)
        try:
            self.fs.client.unlink_at(dir_h, name, AT_REMOVEDIR if rmdir else 0, close)
        except OSError as e:
            raise _oserror(e) from None
        if close:
            self.fs.lru.pop(child, None)
            child._h = None
        self._stale = True
        if isinstance(child, GoferInode):
            child._stale = True
            if child.ino in self.fs.links:
                self.fs.changed(child)          # the other names' nlink
            child.unlinked()        # its dentry leaves the cache; open files keep the handle

    def rename(self, t, old_name: bytes, new_dir: Inode, new_name: bytes, flags: int) -> None:
        if not isinstance(new_dir, GoferInode) or new_dir.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        try:
            self.fs.client.rename_at(self.handle, old_name, new_dir.handle, new_name, flags)
        except OSError as e:
            raise _oserror(e) from None
        self._stale = new_dir._stale = True

    def setstat(self, t, mode=None, uid=None, gid=None, size=None, atime_ns=None, mtime_ns=None) -> None:
        if size is not None and self.writers:
            # Truncate through our own fd: no round trip, and the cached stat follows.
            try:
                os.ftruncate(self.writers[-1], size)
            except OSError as e:
                raise _oserror(e) from None
            size = None
            if mode is uid is gid is atime_ns is mtime_ns is None:
                return
        try:
            self._stat = self.fs.client.set_stat(self.handle, mode=mode, uid=uid, gid=gid, size=size,
                                                 atime_ns=atime_ns, mtime_ns=mtime_ns)
        except OSError as e:
            raise _oserror(e) from None
        self._stale = False
        self.mode = self._stat[2]
        if mode is not None or uid is not None or gid is not None:
            invalidate_paths()
        if self.ino in self.fs.links:
            self.fs.changed(self)

    def statfs(self) -> dict[str, int]:
        try:
            return self.fs.client.fstatfs(self.handle)
        except OSError as e:
            raise _oserror(e) from None

    def fsync(self) -> None:
        try:
            self.fs.client.fsync(self.handle)
        except OSError as e:
            raise _oserror(e) from None


def _add_child(parent, name: bytes, inode: Inode):
    from sentry.vfs.inode import Dentry
    invalidate_paths()
    d = Dentry(name, parent, inode, parent.mount)
    parent.children[name] = d
    return d
