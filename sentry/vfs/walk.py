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
S_IFMT, S_IFDIR, S_IFLNK = 0o170000, 0o040000, 0o120000


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
        self.procfs = None                  # set when /proc is mounted: resolution records the task
        self._paths: dict[tuple, Dentry] = {}
        self._gen = -1

    def mount_root(self, fs, inode, **kw) -> Mount:
        invalidate_paths()
        m = Mount(fs, None, None, None, mount_id=self._alloc_id(), **kw)  # type: ignore[arg-type]
        m.root = Dentry(b"/", None, inode, m)
        self.mounts.append(m)
        self.root = m.root
        return m

    def mount_at(self, mountpoint: Dentry, fs, inode, **kw) -> Mount:
        invalidate_paths()
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
        procfs = self.procfs
        if procfs is not None:
            procfs.current = t            # for /proc/self
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
        tg = t.tg
        fs = tg.fs
        root = fs.root
        if path[0] == 47:                 # b"/"
            start = root
        elif dirfd == AT_FDCWD:
            start = fs.cwd
        else:
            start = self.start(t, dirfd, path)
        # The path cache: (start, root, path, follow[, credentials]) -> the dentry a full walk
        # found.  Cleared by `invalidate_paths()` on every change of the tree, a mount or an
        # attribute; only walks that stayed on path-cacheable filesystems are entered.
        creds = tg.creds
        if creds.fsuid == 0:
            key = (start, root, path, follow)
        else:
            key = (start, root, path, follow, creds.fsuid, creds.fsgid, tuple(creds.groups))
        if self._gen == _GEN[0]:
            d = self._paths.get(key)
            if d is not None:
                return d
        else:
            self._paths.clear()
            self._gen = _GEN[0]
        state = [MAXSYMLINKS, True]
        d = self._walk(t, start, path, follow, state)
        if state[1] and self._gen == _GEN[0] and len(path) <= PATH_CACHE_LEN:
            paths = self._paths
            if len(paths) >= PATH_CACHE_MAX:
                paths.clear()
            paths[key] = d
        return d

    def resolve_parent(self, t, dirfd: int, path: bytes) -> tuple[Dentry, bytes]:
        """(the parent directory, the last component) for create/unlink-style calls.

        The last component may be '.' or '..' (callers reject as their syscall does)."""
        procfs = self.procfs
        if procfs is not None:
            procfs.current = t
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
            parent = self._walk(t, start, head or b"/", True, [MAXSYMLINKS, False])
        else:
            parent = start
        if not parent.inode.is_dir:
            raise SyscallError(errno.ENOTDIR)
        if len(name) > NAME_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        return parent, name

    def _walk(self, t, d: Dentry, path: bytes, follow_last: bool, state: list) -> Dentry:
        """Walk `path` from `d`.  `state` is [symlinks left, cacheable so far]: the second
        turns False as soon as the walk enters a mount whose filesystem is not path-cacheable."""
        root = t.tg.fs.root
        if path[:1] == b"/":
            d = root
        m = d.mount
        if m is None or not m.cacheable:
            state[1] = False
        comps = path.split(b"/")
        if b"" in comps:
            comps = [c for c in comps if c]
        trailing = path[-1:] == b"/"
        creds = t.tg.creds
        check_perm = creds.fsuid != 0
        last = len(comps) - 1
        i = -1
        for name in comps:
            i += 1
            inode = d.inode
            if inode.mode & S_IFMT != S_IFDIR:
                raise SyscallError(errno.ENOTDIR)
            if check_perm and not may_access(inode.perm_stat(), creds, MAY_EXEC):
                raise SyscallError(errno.EACCES)
            if name == b".":
                continue
            if name == b"..":
                up = dotdot(d, root)
                if up.mount is not d.mount and (up.mount is None or not up.mount.cacheable):
                    state[1] = False
                d = up
                continue
            if len(name) > NAME_MAX:
                raise SyscallError(errno.ENAMETOOLONG)
            child = d.children.get(name, _MISSING)
            if child is _MISSING:
                if i < last:
                    rest = []
                    for c in comps[i:]:
                        if c == b"." or c == b"..":
                            break
                        rest.append(c)
                    d.prefetch(rest)
                child = d.child(name)
            if child is None:
                raise SyscallError(errno.ENOENT)
            if child.mounted is not None:
                child = follow_mounts(child)
                m = child.mount
                if m is None or not m.cacheable:
                    state[1] = False
            cinode = child.inode
            if cinode.mode & S_IFMT == S_IFLNK and (i < last or follow_last or trailing):
                state[0] -= 1
                if state[0] < 0:
                    raise SyscallError(errno.ELOOP)
                jump = getattr(cinode, "jump", None)
                if jump is not None:            # a magic link (/proc/PID/root, cwd): to its dentry
                    child = jump()
                    state[1] = False
                else:
                    target = cinode.readlink()
                    if not target:
                        raise SyscallError(errno.ENOENT)
                    child = self._walk(t, d, target, True, state)
            d = child
        if trailing and d.inode.mode & S_IFMT != S_IFDIR:
            raise SyscallError(errno.ENOTDIR)
        return d


# The path cache's generation: bumped by every change that could make a cached walk give
# another answer (see `invalidate_paths`); each VFS drops its cache when it sees a new one.
_GEN = [0]
PATH_CACHE_MAX = 4096                # entries; the cache starts over when full
PATH_CACHE_LEN = 256                 # longer paths are walked every time (bounds its memory)
_MISSING = object()


def invalidate_paths() -> None:
    """Forget every cached path walk (of every VFS): call on any change to the dentry tree
    (create, unlink, rename, symlink, link, mount, prune), to an inode's mode or owner, or to
    anything else a walk looks at."""
    _GEN[0] += 1
