"""Inodes, dentries and mounts: the Sentry's VFS objects.

An `Inode` is a file of some filesystem (gofer-backed, devfs, later tmpfs
and procfs) and knows how to stat, look up, list, read a link and open.
A `Dentry` names an inode within its parent and caches its children
(negative entries too); a `Mount` grafts a filesystem's root dentry onto
a mount point.  Path walking (`walk.py`) moves over dentries only.
"""
from __future__ import annotations

import errno
import stat as st

from sentry.errors import SyscallError

DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK = 0, 1, 2, 4, 6, 8, 10, 12


def dtype_of(mode: int) -> int:
    return (mode >> 12) & 0xF


# One stat shape for the whole VFS: the Gofer protocol's (a Gofer reply is used as is).
from gofer.protocol import Stat  # noqa: E402,F401


MAY_EXEC, MAY_WRITE, MAY_READ = 1, 2, 4


class Inode:
    """Base class: a filesystem object.  Subclasses override what they support."""

    def __init__(self, fs, ino: int, mode: int) -> None:
        self.fs = fs
        self.ino = ino
        self.mode = mode

    @property
    def is_dir(self) -> bool:
        return st.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return st.S_ISLNK(self.mode)

    def stat(self) -> Stat:
        raise NotImplementedError

    def perm_stat(self) -> Stat:
        """The stat a permission check needs (mode, uid, gid); a filesystem may answer it
        from a cache that is stale only in other fields."""
        return self.stat()

    def lookup(self, name: bytes) -> "Inode | None":
        raise SyscallError(errno.ENOTDIR)

    def lookup_many(self, names: list[bytes]) -> list["Inode"]:
        """Walk several plain names at once (one round trip where the fs can); may return fewer."""
        first = self.lookup(names[0])
        return [first] if first is not None else []

    def readlink(self) -> bytes:
        raise SyscallError(errno.EINVAL)

    def list(self) -> list[tuple[bytes, int, int]]:
        """(name, ino, d_type) for every entry, '.' and '..' excluded."""
        raise SyscallError(errno.ENOTDIR)

    def open(self, t, dentry: "Dentry", flags: int):
        raise SyscallError(errno.ENXIO)


class Mount:
    __slots__ = ("fs", "root", "mountpoint", "parent", "flags", "source", "fstype", "options", "mount_id",
                 "cacheable")

    def __init__(self, fs, root: "Dentry", mountpoint: "Dentry | None", parent: "Mount | None",
                 flags: frozenset = frozenset(), source: str = "none", fstype: str = "", options: str = "",
                 mount_id: int = 0) -> None:
        self.fs = fs
        self.root = root
        self.mountpoint = mountpoint
        self.parent = parent
        self.flags = flags
        self.source = source
        self.fstype = fstype
        self.options = options
        self.mount_id = mount_id
        # Walks within this filesystem may be remembered by the VFS's path cache: its names,
        # modes and symlink targets change only through the Sentry (which then invalidates).
        self.cacheable = bool(getattr(fs, "path_cacheable", False))

    @property
    def readonly(self) -> bool:
        return "ro" in self.flags


class Dentry:
    __slots__ = ("name", "parent", "inode", "children", "mount", "mounted")

    def __init__(self, name: bytes, parent: "Dentry | None", inode: Inode, mount: Mount | None) -> None:
        self.name = name
        self.parent = parent
        self.inode = inode
        self.children: dict[bytes, Dentry | None] = {}
        self.mount = mount
        self.mounted: Mount | None = None      # a mount whose mountpoint is this dentry

    def child(self, name: bytes) -> "Dentry | None":
        """Cached lookup of `name`; None when it does not exist."""
        try:
            return self.children[name]
        except KeyError:
            pass
        inode = self.inode.lookup(name)
        d = Dentry(name, self, inode, self.mount) if inode is not None else None
        self.children[name] = d
        return d

    def prefetch(self, names: list[bytes]) -> None:
        """Populate the cache along a chain of uncached plain names in one lookup where possible."""
        if len(names) < 2 or names[0] in self.children:
            return
        d = self
        for name, inode in zip(names, self.inode.lookup_many(names)):
            nd = Dentry(name, d, inode, d.mount)
            d.children[name] = nd
            d = nd

    def path(self, root: "Dentry | None" = None) -> bytes:
        """The absolute path of this dentry as seen from `root` (mount crossings followed)."""
        if self.parent is None and self.mount is None:
            return b"/" + self.name           # an unlinked file with no mount (memfd)
        parts = []
        d = self
        while True:
            if d is root:
                break
            if d.parent is None:
                m = d.mount
                if m is None or m.mountpoint is None:
                    break
                d = m.mountpoint
                continue
            parts.append(d.name)
            d = d.parent
        return b"/" + b"/".join(reversed(parts))


def may_access(inode_stat: Stat, creds, mask: int) -> bool:
    """generic_permission(): the owner/group/other bits, root passing all but exec-without-any-x."""
    mode = inode_stat.mode
    if creds.fsuid == 0:
        if mask & MAY_EXEC and not st.S_ISDIR(mode) and not mode & 0o111:
            return False
        return True
    if creds.fsuid == inode_stat.uid:
        perm = (mode >> 6) & 7
    elif creds.fsgid == inode_stat.gid or inode_stat.gid in creds.groups:
        perm = (mode >> 3) & 7
    else:
        perm = mode & 7
    return (perm & mask) == mask
