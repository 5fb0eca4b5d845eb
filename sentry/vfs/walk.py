"""Path resolution (Linux's namei), over the Sentry's dentry tree.

Rules, as path_resolution(7) gives them: an absolute path starts at the
task's root, a relative one at the cwd or `dirfd`; `..` never climbs above
the task's root (so no path leaves the sandbox), and crosses mount points
upward; absolute symlink targets restart at the task's root, relative ones
at the link's directory; at most 40 symlinks per resolution (ELOOP); every
directory passed through needs search permission; a trailing slash demands
a directory.  The Gofer never sees `..` or a multi-component name.
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError
from sentry.vfs.inode import MAY_EXEC, Dentry, Mount, may_access

AT_FDCWD = -100
PATH_MAX = 4096
NAME_MAX = 255
MAXSYMLINKS = 40


def follow_mounts(d: Dentry) -> Dentry:
    while d.mounted is not None:
        d = d.mounted.root
    return d


def dotdot(d: Dentry, root: Dentry) -> Dentry:
    while True:
        if d is root:
            return d
        if d.parent is None:
            m = d.mount
            if m is None or m.mountpoint is None:
                return d
            d = m.mountpoint
            continue
        return d.parent


class VFS:
    def __init__(self) -> None:
        self.mounts: list[Mount] = []
        self.root: Dentry | None = None
        self._next_mount_id = 1

    def mount_root(self, fs, inode, **kw) -> Mount:
        m = Mount(fs, None, None, None, mount_id=self._alloc_id(), **kw)  # type: ignore[arg-type]
        m.root = Dentry(b"/", None, inode, m)
        self.mounts.append(m)
        self.root = m.root
        return m

    def mount_at(self, mountpoint: Dentry, fs, inode, **kw) -> Mount:
        m = Mount(fs, None, mountpoint, mountpoint.mount, mount_id=self._alloc_id(), **kw)  # type: ignore[arg-type]
        m.root = Dentry(mountpoint.name, None, inode, m)
        mountpoint.mounted = m
        self.mounts.append(m)
        return m

    def _alloc_id(self) -> int:
        self._next_mount_id += 1
        return self._next_mount_id

    # -- resolution ---------------------------------------------------------

    def start(self, t, dirfd: int, path: bytes) -> Dentry:
        if path[:1] == b"/":
            return t.tg.fs.root
        if dirfd == AT_FDCWD:
            return t.tg.fs.cwd
        f = t.fds.get(dirfd)
        d = f.dentry
        if d is None or not d.inode.is_dir:
            raise SyscallError(errno.ENOTDIR)
        return d

    def resolve(self, t, dirfd: int, path: bytes, follow: bool = True, empty_ok: bool = False) -> Dentry:
        """The dentry `path` names; ENOENT for an empty path unless `empty_ok` (AT_EMPTY_PATH)."""
        if not path:
            if empty_ok:
                if dirfd == AT_FDCWD:
                    return t.tg.fs.cwd
                d = t.fds.get(dirfd).dentry
                if d is None:
                    raise SyscallError(errno.EBADF)
                return d
            raise SyscallError(errno.ENOENT)
        if len(path) >= PATH_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        return self._walk(t, self.start(t, dirfd, path), path, follow, [MAXSYMLINKS])

    def resolve_parent(self, t, dirfd: int, path: bytes) -> tuple[Dentry, bytes]:
        """(the parent directory, the last component) for create/unlink-style calls.

        The last component may be '.' or '..' (callers reject as their syscall does)."""
        if not path:
            raise SyscallError(errno.ENOENT)
        if len(path) >= PATH_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        stripped = path.rstrip(b"/")
        if not stripped:
            return t.tg.fs.root, b"."
        head, _, name = stripped.rpartition(b"/")
        start = self.start(t, dirfd, path)
        if head or stripped.startswith(b"/"):
            parent = self._walk(t, start, head or b"/", True, [MAXSYMLINKS])
        else:
            parent = start
        if not parent.inode.is_dir:
            raise SyscallError(errno.ENOTDIR)
        if len(name) > NAME_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        return parent, name

    def _walk(self, t, d: Dentry, path: bytes, follow_last: bool, budget: list[int]) -> Dentry:
        root = t.tg.fs.root
        if path[:1] == b"/":
            d = root
        comps = [c for c in path.split(b"/") if c]
        trailing = path.endswith(b"/")
        creds = t.tg.creds
        check_perm = creds.fsuid != 0
        n = len(comps)
        for i, name in enumerate(comps):
            inode = d.inode
            if not inode.is_dir:
                raise SyscallError(errno.ENOTDIR)
            if check_perm and not may_access(inode.stat(), creds, MAY_EXEC):
                raise SyscallError(errno.EACCES)
            if name == b".":
                continue
            if name == b"..":
                d = dotdot(d, root)
                continue
            if len(name) > NAME_MAX:
                raise SyscallError(errno.ENAMETOOLONG)
            if name not in d.children and i + 1 < n:
                rest = []
                for c in comps[i:]:
                    if c in (b".", b".."):
                        break
                    rest.append(c)
                d.prefetch(rest)
            child = d.child(name)
            if child is None:
                raise SyscallError(errno.ENOENT)
            child = follow_mounts(child)
            if child.inode.is_symlink and (i + 1 < n or follow_last or trailing):
                budget[0] -= 1
                if budget[0] < 0:
                    raise SyscallError(errno.ELOOP)
                target = child.inode.readlink()
                if not target:
                    raise SyscallError(errno.ENOENT)
                child = self._walk(t, d, target, True, budget)
            d = child
        if trailing and not d.inode.is_dir:
            raise SyscallError(errno.ENOTDIR)
        return d
