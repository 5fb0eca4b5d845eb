"""Path resolution (Linux's namei), over the Sentry's dentry tree.

Rules, as path_resolution(7) gives them: an absolute path starts at the
task's root, a relative one at the cwd or `dirfd`; `..` never climbs above
the task's root (so no path leaves the sandbox), and crosses mount points
upward; absolute symlink targets restart at the task's root, relative ones
at the link's directory; at most 40 symlinks per resolution (ELOOP); every
directory passed through needs search permission; a trailing slash demands
a directory.  The Gofer never sees `..` or a multi-component name.

This is the Sentry's one path walker: every path syscall resolves through `VFS.resolve` or
`VFS.resolve_parent`.  openat2(2)'s RESOLVE_* restrictions are a `Scope` passed to the same
walk (checked at each step, as Linux's namei does with LOOKUP_* flags), so the security rules
of a scoped walk and a plain one cannot drift apart.
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
RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS = 0x01, 0x02, 0x04
RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_CACHED = 0x08, 0x10, 0x20


class Scope:
    """openat2(2)'s restrictions on one resolution (openat2(2), "resolve"):
    RESOLVE_NO_XDEV (no mount crossing: EXDEV), RESOLVE_NO_SYMLINKS (ELOOP),
    RESOLVE_NO_MAGICLINKS (no /proc/PID links: ELOOP), RESOLVE_BENEATH (nothing outside
    dirfd: EXDEV), RESOLVE_IN_ROOT (dirfd is "/" for the walk: ".." and absolute paths stay in).
    `base` is where relative paths start (dirfd), `root` what "/" and ".." stop at."""
    __slots__ = ("flags", "base", "root")

    def __init__(self, flags: int, base: "Dentry", root: "Dentry") -> None:
        self.flags = flags
        self.base = base
        self.root = root

    @classmethod
    def for_openat2(cls, vfs: "VFS", t, dirfd: int, flags: int) -> "Scope":
        base = vfs.start(t, dirfd, b"x")
        return cls(flags, base, base if flags & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) else t.tg.fs.root)


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

    def resolve(self, t, dirfd: int, path: bytes, follow: bool = True, empty_ok: bool = False,
                scope: Scope | None = None) -> Dentry:
        """The dentry `path` names; ENOENT for an empty path unless `empty_ok` (AT_EMPTY_PATH).
        Under a `scope` (openat2) the walk starts at its base and is never cached."""
        procfs = self.procfs
        if procfs is not None:
            procfs.current = t            # for /proc/self
        if scope is not None:
            if not path:
                raise SyscallError(errno.ENOENT)
            if len(path) >= PATH_MAX:
                raise SyscallError(errno.ENAMETOOLONG)
            return self._walk(t, scope.base, path, follow, [MAXSYMLINKS, False], scope)
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

    def resolve_parent(self, t, dirfd: int, path: bytes, scope: Scope | None = None) -> tuple[Dentry, bytes]:
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
            if scope is not None:         # "/" itself, as the scope allows it (EXDEV beneath)
                return self._walk(t, scope.base, b"/", True, [MAXSYMLINKS, False], scope), b"."
            return t.tg.fs.root, b"."
        head, _, name = stripped.rpartition(b"/")
        start = scope.base if scope is not None else self.start(t, dirfd, path)
        if head or stripped.startswith(b"/"):
            parent = self._walk(t, start, head or b"/", True, [MAXSYMLINKS, False], scope)
        else:
            parent = start
        if not parent.inode.is_dir:
            raise SyscallError(errno.ENOTDIR)
        if len(name) > NAME_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        return parent, name

    def _walk(self, t, d: Dentry, path: bytes, follow_last: bool, state: list,
              scope: Scope | None = None) -> Dentry:
        """Walk `path` from `d`.  `state` is [symlinks left, cacheable so far]: the second
        turns False as soon as the walk enters a mount whose filesystem is not path-cacheable.
        `scope`: openat2's RESOLVE_* rules, checked at each step (`flags` is 0 without one)."""
        if scope is None:
            root = t.tg.fs.root
            flags = 0
        else:
            root = scope.root
            flags = scope.flags
            state[1] = False
        if path[:1] == b"/":
            if flags:
                if flags & RESOLVE_BENEATH:
                    raise SyscallError(errno.EXDEV)
                if flags & RESOLVE_NO_XDEV and root.mount is not d.mount:
                    raise SyscallError(errno.EXDEV)
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
                if flags and d is root and flags & RESOLVE_BENEATH:
                    raise SyscallError(errno.EXDEV)
                up = dotdot(d, root)
                if flags & RESOLVE_NO_XDEV and up.mount is not d.mount:
                    raise SyscallError(errno.EXDEV)
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
                if flags & RESOLVE_NO_XDEV and m is not d.mount:
                    raise SyscallError(errno.EXDEV)
            cinode = child.inode
            if cinode.mode & S_IFMT == S_IFLNK and (i < last or follow_last or trailing):
                if flags:
                    if flags & RESOLVE_NO_SYMLINKS:
                        raise SyscallError(errno.ELOOP)
                    if getattr(cinode, "magic", False):
                        if flags & RESOLVE_NO_MAGICLINKS:
                            raise SyscallError(errno.ELOOP)
                        if flags & (RESOLVE_BENEATH | RESOLVE_IN_ROOT):
                            raise SyscallError(errno.EXDEV)   # Linux: not safe for scoped lookups
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
                    child = self._walk(t, d, target, True, state, scope)
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
