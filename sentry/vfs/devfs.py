"""devfs: the Sentry's own /dev.  Devices here never touch a host device.

`null zero full random urandom` as Linux's mem devices (randomness from the
host's getrandom(2), the only host contact); directories are synthetic.
"""
from __future__ import annotations

import errno
import os
import time

from sentry.errors import SyscallError
from sentry.vfs.file import File, O_PATH
from sentry.vfs.inode import Inode, Stat

S_IFCHR, S_IFDIR, S_IFLNK = 0o020000, 0o040000, 0o120000


def makedev(major: int, minor: int) -> int:
    return ((major & 0xFFF) << 8) | (minor & 0xFF) | ((minor & ~0xFF) << 12) | ((major & ~0xFFF) << 32)


class SynthFS:
    """A filesystem of Sentry-made inodes (devfs, and the base of procfs/sysfs later)."""

    def __init__(self, dev: int) -> None:
        self.dev = dev
        self._next_ino = 1
        self.born_ns = time.time_ns()

    def ino(self) -> int:
        self._next_ino += 1
        return self._next_ino


class SynthInode(Inode):
    def __init__(self, fs: SynthFS, mode: int, uid: int = 0, gid: int = 0, rdev: int = 0) -> None:
        super().__init__(fs, fs.ino(), mode)
        self.uid = uid
        self.gid = gid
        self.rdev = rdev

    def stat(self) -> Stat:
        t = self.fs.born_ns
        return Stat(self.ino, self.fs.dev, self.mode, 2 if self.is_dir else 1, self.uid, self.gid,
                    self.rdev, 0, 4096, 0, t, t, t)


class SynthDir(SynthInode):
    def __init__(self, fs: SynthFS, perm: int = 0o755) -> None:
        super().__init__(fs, S_IFDIR | perm)
        self.entries: dict[bytes, Inode] = {}

    def lookup(self, name: bytes) -> Inode | None:
        return self.entries.get(name)

    def list(self) -> list[tuple[bytes, int, int]]:
        return [(n, i.ino, (i.mode >> 12) & 0xF) for n, i in self.entries.items()]

    def open(self, t, dentry, flags: int) -> File:
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        return SynthDirFile(flags, dentry)

    def mkdir(self, t, name: bytes, mode: int) -> "SynthDir":
        """A plain directory (devtmpfs lets root make them; mount points under /dev need it)."""
        if name in self.entries:
            raise SyscallError(errno.EEXIST)
        d = self.entries[name] = SynthDir(self.fs, mode & 0o7777)
        return d


class SynthDirFile(File):
    def __init__(self, flags: int, dentry) -> None:
        super().__init__(flags, dentry, dentry.mount)

    def read(self, t, dsts):
        raise SyscallError(errno.EISDIR)

    def getdents(self):
        d = self.dentry
        parent = d.parent if d.parent is not None else d
        return [(b".", d.inode.ino, 4), (b"..", parent.inode.ino, 4)] + d.inode.list()

    def seek(self, offset: int, whence: int) -> int:
        if whence not in (0, 1) or offset < 0:
            raise SyscallError(errno.EINVAL)
        self.offset = offset if whence == 0 else self.offset + offset
        return self.offset


class SynthSymlink(SynthInode):
    def __init__(self, fs: SynthFS, target: bytes) -> None:
        super().__init__(fs, S_IFLNK | 0o777)
        self.target = target

    def readlink(self) -> bytes:
        return self.target


class MemDevice(SynthInode):
    """/dev/{null,zero,full,random,urandom}."""

    MINORS = {b"null": 3, b"zero": 5, b"full": 7, b"random": 8, b"urandom": 9}

    def __init__(self, fs: SynthFS, kind: bytes) -> None:
        super().__init__(fs, S_IFCHR | 0o666, rdev=makedev(1, self.MINORS[kind]))
        self.kind = kind

    def open(self, t, dentry, flags: int) -> File:
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        return MemDeviceFile(flags, dentry, self.kind)


class MemDeviceFile(File):
    def __init__(self, flags: int, dentry, kind: bytes) -> None:
        super().__init__(flags, dentry, dentry.mount)
        self.kind = kind

    def read(self, t, dsts) -> int:
        if not self.readable:
            raise SyscallError(errno.EBADF)
        if self.kind == b"null":
            return 0
        n = 0
        for mv in dsts:
            if self.kind in (b"random", b"urandom"):
                mv[:] = os.urandom(len(mv))
            else:
                mv[:] = bytes(len(mv))
            n += len(mv)
        return n

    def write(self, t, srcs) -> int:
        if not self.writable:
            raise SyscallError(errno.EBADF)
        if self.kind == b"full":
            raise SyscallError(errno.ENOSPC)
        return sum(len(s) for s in srcs)

    def transfer_without_buffer(self, t, write: bool, count: int) -> int:
        if self.kind == b"null":
            return count if write else 0  # /dev/null never touches the buffer
        if write and self.kind in (b"zero", b"random", b"urandom"):
            return count
        raise SyscallError(errno.EFAULT)

    def pread(self, t, dsts, offset: int) -> int:
        return self.read(t, dsts)

    def pwrite(self, t, srcs, offset: int) -> int:
        return self.write(t, srcs)

    def seek(self, offset: int, whence: int) -> int:
        self.offset = 0
        return 0


def make_devfs(dev: int) -> tuple[SynthFS, SynthDir]:
    fs = SynthFS(dev)
    root = SynthDir(fs)
    for kind in MemDevice.MINORS:
        root.entries[kind] = MemDevice(fs, kind)
    root.entries[b"fd"] = SynthSymlink(fs, b"/proc/self/fd")
    root.entries[b"stdin"] = SynthSymlink(fs, b"/proc/self/fd/0")
    root.entries[b"stdout"] = SynthSymlink(fs, b"/proc/self/fd/1")
    root.entries[b"stderr"] = SynthSymlink(fs, b"/proc/self/fd/2")
    root.entries[b"ptmx"] = SynthSymlink(fs, b"pts/ptmx")
    root.entries[b"tty"] = TtyDevice(fs)
    for name in (b"shm", b"pts", b"mqueue"):
        root.entries[name] = SynthDir(fs, 0o1777 if name == b"shm" else 0o755)
    fs.devpts = DevPts(fs, root.entries[b"pts"])
    return fs, root


class TtyDevice(SynthInode):
    """/dev/tty: the controlling terminal.  Sandbox processes have none yet: ENXIO, as Linux says then."""

    def __init__(self, fs: SynthFS) -> None:
        super().__init__(fs, S_IFCHR | 0o666, rdev=makedev(5, 0))

    def open(self, t, dentry, flags: int) -> File:
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        ctty = t.tg.ctty
        if ctty is not None:                     # a pty of the sandbox's devpts
            from sentry.vfs.pty import PtySlave
            if not ctty.master_open:
                raise SyscallError(errno.EIO)
            return PtySlave(flags, ctty.devpts.slave_dentry(ctty), ctty)
        console = getattr(t.kernel.vfs, "console", None)
        if console is not None:                  # the container's terminal is its controlling tty
            return console.inode.open(t, console, flags)
        raise SyscallError(errno.ENXIO)


class HostTtyInode(SynthInode):
    """/dev/pts/N standing for a host terminal the container was given as stdio.

    runc gives the container the slave of a pty as its console; ours is a host
    pty slave too, named here so ttyname(3), /proc/self/fd and `tty` agree:
    the open files on it carry this dentry, so fstat() and stat() match."""

    def __init__(self, fs: SynthFS, host_fd: int, index: int) -> None:
        s = os.fstat(host_fd)
        super().__init__(fs, s.st_mode, uid=s.st_uid, gid=s.st_gid, rdev=makedev(136, index))
        self.host_fd = host_fd

    def open(self, t, dentry, flags: int) -> File:
        from sentry.vfs.file import HostFDFile
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        return HostFDFile(os.dup(self.host_fd), flags, dentry, dentry.mount, host_offset=True)


def attach_host_tty(vfs, host_fd: int, root=None):
    """Name the host tty `host_fd` as /dev/pts/0 (once); returns its dentry, or None without a devfs.
    `root`: the tree whose /dev to use (a pod member's, sentry/pod.py); the sandbox's by default."""
    from sentry.vfs.inode import Dentry
    own = root is None or root is vfs.root
    root = vfs.root if root is None else root
    dev = root.child(b"dev")
    if dev is None:
        return None
    while dev.mounted is not None:
        dev = dev.mounted.root
    pts = dev.child(b"pts")
    if pts is None or not isinstance(pts.inode, SynthDir):
        return None
    existing = pts.child(b"0")
    if existing is not None:
        return existing
    inode = HostTtyInode(pts.inode.fs, os.dup(host_fd), 0)
    pts.inode.entries[b"0"] = inode
    pts.children.pop(b"0", None)
    d = pts.child(b"0")
    if own:
        vfs.console = d
    return d


class DevPts:
    """The sandbox's devpts: allocates pty pairs and names their slaves /dev/pts/N."""

    def __init__(self, fs: SynthFS, pts_dir: SynthDir) -> None:
        self.fs = fs
        self.dir = pts_dir
        self.ptys: dict[int, object] = {}
        self.ptmx_inode = PtmxInode(fs, self)
        pts_dir.entries[b"ptmx"] = self.ptmx_inode
        self.dentry = None

    def allocate(self, kernel):
        from sentry.vfs.pty import Pty
        i = 0
        while i in self.ptys or str(i).encode() in self.dir.entries:
            i += 1
        p = Pty(i, self)
        p.kernel = kernel
        self.ptys[i] = p
        self.dir.entries[str(i).encode()] = PtySlaveInode(self.fs, p)
        self._uncache(str(i).encode())
        return p

    def forget(self, p) -> None:
        if self.ptys.pop(p.index, None) is not None:
            name = str(p.index).encode()
            self.dir.entries.pop(name, None)
            self._uncache(name)

    def _uncache(self, name: bytes) -> None:
        if self.dentry is not None:
            self.dentry.children.pop(name, None)

    def slave_dentry(self, p):
        from sentry.vfs.inode import Dentry
        name = str(p.index).encode()
        if self.dentry is not None:
            d = self.dentry.child(name)
            if d is not None:
                return d
        return Dentry(name, self.dentry, self.dir.entries[name], self.dentry.mount if self.dentry else None)


class PtmxInode(SynthInode):
    """/dev/pts/ptmx (and /dev/ptmx): each open makes a new pty pair."""

    def __init__(self, fs: SynthFS, devpts: DevPts) -> None:
        super().__init__(fs, S_IFCHR | 0o666, rdev=makedev(5, 2))
        self.devpts = devpts

    def open(self, t, dentry, flags: int) -> File:
        from sentry.vfs.pty import PtyMaster
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        if self.devpts.dentry is None and dentry.parent is not None:
            self.devpts.dentry = dentry.parent
        return PtyMaster(flags, dentry, self.devpts.allocate(t.kernel))


class PtySlaveInode(SynthInode):
    def __init__(self, fs: SynthFS, pty) -> None:
        super().__init__(fs, S_IFCHR | 0o620, rdev=makedev(136, pty.index))
        self.pty = pty

    def open(self, t, dentry, flags: int) -> File:
        from sentry.vfs.file import O_NOCTTY
        from sentry.vfs.pty import PtySlave, _make_ctty
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        p = self.pty
        if p.locked:
            raise SyscallError(errno.EIO)
        if not p.master_open:
            raise SyscallError(errno.EIO)
        f = PtySlave(flags, dentry, p)
        tg = t.tg
        if not flags & O_NOCTTY and tg.sid == tg.tgid and tg.ctty is None and not p.sid:
            _make_ctty(t.kernel, tg, p)
        return f
