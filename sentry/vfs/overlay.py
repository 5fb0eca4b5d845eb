"""The rootfs overlay (`--overlay=memory`): a tmpfs upper layer over the Gofer's rootfs.

As gVisor's rootfs overlay and Linux's overlayfs: reads come from the
lower (Gofer) layer until a file is changed; the first change copies it
up into the upper layer (a tmpfs in the Sentry's memory), and from then
on the upper copy is the file.  Removing a name that exists below leaves
a *whiteout* in the upper directory; a directory made where a lower one
was removed is *opaque* (hides everything below it).  The container's
changes therefore never reach the host, and vanish with the sandbox.

Choices, as overlayfs makes them by default:
* copy-up is whole-file and happens at open for writing, truncate, and
  any attribute change; parents are copied up first (as directories only);
* renaming a directory that has lower content is EXDEV (overlayfs without
  `redirect_dir`): `mv` falls back to copying, as it does there;
* a copied-up file keeps its lower inode number in stat, so `ls -i` and
  tar's hard-link detection do not see it change.
"""
from __future__ import annotations

import errno
import os
import stat as st

from sentry.errors import SyscallError
from sentry.vfs.file import O_ACCMODE, O_PATH, O_RDONLY, O_TRUNC, File
from sentry.vfs.inode import Dentry, Inode, Stat
from sentry.vfs.tmpfs import TmpDir, TmpFile, TmpFileDescription, TmpFS, TmpInode, TmpSymlink

OVERLAYFS_SUPER_MAGIC = 0x794C7630
RENAME_EXCHANGE = 2


class Whiteout(TmpInode):
    """An upper-layer entry that hides the lower file of the same name."""

    def __init__(self, fs: TmpFS) -> None:
        super().__init__(fs, st.S_IFCHR, 0, 0)


class OverlayFS:
    def __init__(self, dev: int, lower_fs) -> None:
        self.dev = dev
        self.lower_fs = lower_fs
        self.upper = TmpFS(dev)

    def statfs(self) -> dict[str, int]:
        d = dict(self.upper.statfs())
        d["f_type"] = OVERLAYFS_SUPER_MAGIC
        return d


class OvInode(Inode):
    """One file of the merged tree: its upper copy (once made), its lower file (if any)."""

    def __init__(self, fs: OverlayFS, upper: TmpInode | None, lower: Inode | None,
                 parent: "OvInode | None", name: bytes) -> None:
        self.fs = fs
        self.upper = upper
        self.lower = lower
        self.parent = parent
        self.name = name
        self._ino = lower.ino if lower is not None else upper.ino | (1 << 40)   # type: ignore[union-attr]

    # The active layer decides mode and content.
    @property
    def active(self) -> Inode:
        up = self.upper
        if up is not None:
            return up
        # Copied up through another view of the same name (a lookup made inside rename)?
        p = self.parent
        if p is not None and p.upper is not None:
            cand = p.upper.entries.get(self.name)              # type: ignore[union-attr]
            if cand is not None and not isinstance(cand, Whiteout) and \
                    (self.lower is None or (cand.mode ^ self.lower.mode) & 0o170000 == 0):
                self.upper = cand
                if not cand.is_dir:
                    self.lower = None
                return cand
        return self.lower                                        # type: ignore[return-value]

    @property
    def mode(self) -> int:               # type: ignore[override]
        return self.active.mode

    @mode.setter
    def mode(self, value: int) -> None:
        pass

    @property
    def ino(self) -> int:                # type: ignore[override]
        return self._ino

    @ino.setter
    def ino(self, value: int) -> None:
        pass

    def stat(self) -> Stat:
        s = self.active.stat()
        return s._replace(ino=self._ino, dev=self.fs.dev)

    def statfs(self) -> dict[str, int]:
        return self.fs.statfs()

    def readlink(self) -> bytes:
        return self.active.readlink()

    # -- directories --------------------------------------------------------

    def _opaque(self) -> bool:
        return self.upper is not None and getattr(self.upper, "opaque", False)

    def lookup(self, name: bytes) -> "OvInode | None":
        if not self.is_dir:
            raise SyscallError(errno.ENOTDIR)
        up = self.upper.entries.get(name) if self.upper is not None else None    # type: ignore[union-attr]
        if isinstance(up, Whiteout):
            return None
        low = None
        if self.lower is not None and not self._opaque() and (up is None or up.is_dir):
            low = self.lower.lookup(name)
            if up is not None and (low is None or not low.is_dir or getattr(up, "opaque", False)):
                low = None
        if up is None and low is None:
            return None
        return OvInode(self.fs, up, low, self, name)

    def list(self) -> list[tuple[bytes, int, int]]:
        out: dict[bytes, tuple[bytes, int, int]] = {}
        hidden = set()
        if self.upper is not None:
            for name, inode in self.upper.entries.items():       # type: ignore[union-attr]
                if isinstance(inode, Whiteout):
                    hidden.add(name)
                else:
                    out[name] = (name, inode.ino | (1 << 40), (inode.mode >> 12) & 0xF)
        if self.lower is not None and not self._opaque():
            for name, ino, dt in self.lower.list():
                if name in hidden:
                    continue
                if name in out:
                    out[name] = (name, ino, out[name][2])
                else:
                    out[name] = (name, ino, dt)
        return list(out.values())

    # -- open ---------------------------------------------------------------

    def open(self, t, dentry, flags: int) -> File:
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        if self.is_dir:
            from sentry.vfs.devfs import SynthDirFile
            return SynthDirFile(flags, dentry)
        if (flags & O_ACCMODE != O_RDONLY or flags & O_TRUNC) and st.S_ISREG(self.mode):
            self.copy_up(t)
        active = self.active
        if isinstance(active, TmpFile):
            if flags & O_TRUNC and flags & O_ACCMODE:
                active.truncate(0)
            return TmpFileDescription(flags, dentry, active)
        if self.upper is not None:
            return self.upper.open(t, dentry, flags)
        from sentry.vfs.goferfs import GoferInode
        if isinstance(active, GoferInode):
            f = active.open(t, _Alias(dentry, active), flags)
            f.dentry = dentry
            return f
        return active.open(t, dentry, flags)

    # -- copy-up ------------------------------------------------------------

    def copy_up(self, t) -> TmpInode:
        """Give this file an upper copy (its parents first); return it."""
        if self.active is self.upper and self.upper is not None:
            return self.upper
        parent = self.parent
        if parent is None:
            raise SyscallError(errno.EIO)
        pdir = parent.copy_up(t)
        low = self.lower
        s = low.stat()                                  # type: ignore[union-attr]
        fs = self.fs.upper
        if st.S_ISDIR(s.mode):
            up: TmpInode = TmpDir(fs, s.mode, s.uid, s.gid)
        elif st.S_ISLNK(s.mode):
            up = TmpSymlink(fs, low.readlink(), s.uid, s.gid)    # type: ignore[union-attr]
        elif st.S_ISREG(s.mode):
            up = TmpFile(fs, s.mode, s.uid, s.gid)
            data = _read_all(t, low)
            fs.charge(0, len(data))
            up.data = bytearray(data)
        else:
            up = TmpInode(fs, s.mode, s.uid, s.gid, s.rdev)
        up.atime, up.mtime, up.ctime = s.atime_ns, s.mtime_ns, s.ctime_ns
        old = pdir.entries.get(self.name)                          # type: ignore[union-attr]
        pdir.entries[self.name] = up                               # type: ignore[union-attr]
        if up.is_dir and not isinstance(old, TmpDir):
            pdir.nlink += 1
        self.upper = up
        if not up.is_dir:
            self.lower = None if st.S_ISREG(s.mode) else self.lower
        return up

    def moved(self, new_parent: "OvInode", new_name: bytes) -> None:
        self.parent, self.name = new_parent, new_name

    # -- changes to a directory's entries ------------------------------------------

    def _prepare_entry(self, t, name: bytes) -> TmpDir:
        """Copy this directory up and clear a whiteout at `name`; return the upper directory."""
        up = self.copy_up(t)
        if isinstance(up.entries.get(name), Whiteout):      # type: ignore[union-attr]
            del up.entries[name]                            # type: ignore[union-attr]
            return up                                       # type: ignore[return-value]
        return up                                           # type: ignore[return-value]

    def _had_whiteout(self, name: bytes) -> bool:
        return self.upper is not None and isinstance(self.upper.entries.get(name), Whiteout)  # type: ignore[union-attr]

    def _lower_has(self, name: bytes) -> bool:
        return self.lower is not None and not self._opaque() and self.lower.lookup(name) is not None

    def _wrap(self, up: TmpInode, name: bytes) -> "OvInode":
        return OvInode(self.fs, up, None, self, name)

    def create(self, t, parent, name: bytes, flags: int, mode: int) -> File:
        up = self._prepare_entry(t, name)
        inode = up.mknod(t, name, st.S_IFREG | mode, 0)
        ov = self._wrap(inode, name)
        d = Dentry(name, parent, ov, parent.mount)
        parent.children[name] = d
        return TmpFileDescription(flags, d, inode)          # type: ignore[arg-type]

    def mkdir(self, t, name: bytes, mode: int) -> "OvInode":
        whiteout = self._had_whiteout(name) or self._lower_has(name)
        up = self._prepare_entry(t, name)
        inode = up.mkdir(t, name, mode)
        if whiteout:
            inode.opaque = True                             # type: ignore[attr-defined]
        return self._wrap(inode, name)

    def mknod(self, t, name: bytes, mode: int, rdev: int) -> "OvInode":
        return self._wrap(self._prepare_entry(t, name).mknod(t, name, mode, rdev), name)

    def symlink(self, t, name: bytes, target: bytes) -> "OvInode":
        return self._wrap(self._prepare_entry(t, name).symlink(t, name, target), name)

    def link(self, t, name: bytes, target: Inode) -> "OvInode":
        if not isinstance(target, OvInode) or target.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        src = target.copy_up(t)
        self._prepare_entry(t, name).link(t, name, src)
        return self._wrap(src, name)

    def unlink(self, t, name: bytes, child: Inode, rmdir: bool) -> None:
        assert isinstance(child, OvInode)
        if rmdir:
            if not child.is_dir:
                raise SyscallError(errno.ENOTDIR)
            if child.list():
                raise SyscallError(errno.ENOTEMPTY)
        elif child.is_dir:
            raise SyscallError(errno.EISDIR)
        below = self._lower_has(name)
        up = self.copy_up(t)
        if child.upper is not None:
            if rmdir:
                child.upper.entries.clear()                 # type: ignore[union-attr]   # only whiteouts
            up.unlink(t, name, child.upper, rmdir)          # type: ignore[union-attr]
        if below:
            up.entries[name] = Whiteout(self.fs.upper)      # type: ignore[union-attr]
        up.touch()

    def rename(self, t, old_name: bytes, new_dir: Inode, new_name: bytes, flags: int) -> None:
        if not isinstance(new_dir, OvInode) or new_dir.fs is not self.fs:
            raise SyscallError(errno.EXDEV)
        src = self.lookup(old_name)
        if src is None:
            raise SyscallError(errno.ENOENT)
        if src.is_dir and src.lower is not None or flags & RENAME_EXCHANGE:
            raise SyscallError(errno.EXDEV)
        dst = new_dir.lookup(new_name)
        if dst is not None and dst.is_dir:
            if not src.is_dir:
                raise SyscallError(errno.EISDIR)
            if dst.list():
                raise SyscallError(errno.ENOTEMPTY)
        below_old = self._lower_has(old_name)
        src_up = src.copy_up(t)
        if src_up.is_dir and new_dir._lower_has(new_name):
            src_up.opaque = True                            # type: ignore[attr-defined]
        new_up = new_dir._prepare_entry(t, new_name)
        if dst is not None and dst.upper is not None and dst.is_dir:
            dst.upper.entries.clear()                       # type: ignore[union-attr]
        old_up = self.copy_up(t)
        old_up.rename(t, old_name, new_up, new_name, flags)  # type: ignore[union-attr]
        if below_old:
            old_up.entries[old_name] = Whiteout(self.fs.upper)   # type: ignore[union-attr]

    # -- attributes -----------------------------------------------------------

    def setstat(self, t, **kw) -> None:
        self.copy_up(t).setstat(t, **kw)

    def getxattr(self, name: bytes) -> bytes:
        if self.upper is None:
            raise SyscallError(errno.ENODATA)
        return self.upper.getxattr(name)

    def listxattr(self) -> list[bytes]:
        return self.upper.listxattr() if self.upper is not None else []

    def setxattr(self, t, name: bytes, value: bytes, flags: int) -> None:
        self.copy_up(t).setxattr(t, name, value, flags)

    def removexattr(self, t, name: bytes) -> None:
        self.copy_up(t).removexattr(t, name)


class _Alias:
    """A dentry stand-in whose inode is the lower file (GoferInode.open reads dentry.inode)."""

    def __init__(self, dentry, inode) -> None:
        self.name = dentry.name
        self.parent = dentry.parent
        self.mount = dentry.mount
        self.inode = inode


def _read_all(t, lower: Inode) -> bytes:
    """The whole content of a lower regular file (for copy-up)."""
    from sentry.vfs.goferfs import GoferInode
    if isinstance(lower, GoferInode):
        try:
            fd = lower.fs.client.open_at(lower.handle, os.O_RDONLY)
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO) from None
        try:
            chunks = []
            off = 0
            while True:
                b = os.pread(fd, 1 << 20, off)
                if not b:
                    break
                chunks.append(b)
                off += len(b)
            return b"".join(chunks)
        finally:
            os.close(fd)
    raise SyscallError(errno.EXDEV)


def make_overlay(lower_fs, lower_root: Inode, dev: int) -> tuple[OverlayFS, OvInode]:
    fs = OverlayFS(dev, lower_fs)
    s = lower_root.stat()
    up = TmpDir(fs.upper, s.mode, s.uid, s.gid)
    up.atime, up.mtime, up.ctime = s.atime_ns, s.mtime_ns, s.ctime_ns
    root = OvInode(fs, up, lower_root, None, b"/")
    return fs, root
