"""`runsc-py fs ID MOUNTPOINT [--rw]`: a FUSE view of a running sandbox's `/`, on the host.

What appears under MOUNTPOINT is what the sandbox's processes see at `/`: the
Gofer-backed rootfs, the overlay's upper layer, tmpfs mounts, the sandbox's
/proc -- because every FUSE request is answered by the Sentry's own VFS over
the control channel (sentry/fsview.py).  This process never holds a host
path or descriptor of the rootfs; it knows one control socket.

Read-only unless --rw (mounted `ro`, and writing requests are refused here
before they reach the Sentry).  Runs in the foreground until the sandbox
stops (then it unmounts and exits 0) or it is interrupted (unmounts too).
Attribute and entry caching is off: the view is live.

pyfuse3 is the `fuse` extra (`pip install 'runsc-py[fuse]'`, needs libfuse3);
without it the command fails with one line saying so.
"""
from __future__ import annotations

import errno
import os
import signal
import stat as st
import sys

from runsc_py.errors import UserError
from runsc_py.state import StateStore

CONTROL_SOCKET = "control.sock"
POLL = 0.5                  # seconds between checks that the sandbox still runs
CHUNK = 128 * 1024          # what one fs_read returns at most (sentry/fsview.py)


def _import_pyfuse3():
    try:
        import pyfuse3
        import trio
    except ImportError as e:
        raise UserError(f"runsc-py fs needs pyfuse3 (and trio): install the fuse extra, "
                        f"pip install 'runsc-py[fuse]' (libfuse3 required) -- {e}") from None
    return pyfuse3, trio


def make_operations(pyfuse3, control: str, rw: bool, container: str | None = None):
    from sentry.control import ControlError, request

    def call(op: str, **kw) -> dict:
        try:
            return request(control, op, container=container, **kw)
        except ControlError as e:
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None

    class SandboxView(pyfuse3.Operations):
        def __init__(self) -> None:
            super().__init__()
            self.paths: dict[int, bytes] = {pyfuse3.ROOT_INODE: b"/"}
            self.inodes: dict[bytes, int] = {b"/": pyfuse3.ROOT_INODE}
            self.next_ino = pyfuse3.ROOT_INODE + 1
            self.dirs: dict[int, list] = {}
            self.next_fh = 1

        # -- names <-> FUSE inode numbers (the sandbox's own inos may repeat across mounts)
        def _ino(self, path: bytes) -> int:
            ino = self.inodes.get(path)
            if ino is None:
                ino = self.inodes[path] = self.next_ino
                self.paths[ino] = path
                self.next_ino += 1
            return ino

        def _path(self, ino: int) -> bytes:
            try:
                return self.paths[ino]
            except KeyError:
                raise pyfuse3.FUSEError(errno.ESTALE) from None

        @staticmethod
        def _join(parent: bytes, name: bytes) -> bytes:
            return parent.rstrip(b"/") + b"/" + name

        def _attr(self, path: bytes, s: list) -> "pyfuse3.EntryAttributes":
            (ino, _dev, mode, nlink, uid, gid, rdev, size, blksize, blocks, atime, mtime, ctime) = s
            a = pyfuse3.EntryAttributes()
            a.st_ino = self._ino(path)
            a.generation = 0
            a.entry_timeout = 0
            a.attr_timeout = 0
            a.st_mode, a.st_nlink, a.st_uid, a.st_gid, a.st_rdev = mode, nlink, uid, gid, rdev
            a.st_size, a.st_blksize, a.st_blocks = size, blksize or 4096, blocks
            a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns = atime, mtime, ctime
            return a

        def _stat(self, path: bytes):
            return self._attr(path, call("fs_lstat", path=path)["stat"])

        def _writable(self) -> None:
            if not rw:
                raise pyfuse3.FUSEError(errno.EROFS)

        # -- reading
        async def lookup(self, parent_inode, name, ctx=None):
            return self._stat(self._join(self._path(parent_inode), name))

        async def getattr(self, inode, ctx=None):
            return self._stat(self._path(inode))

        async def readlink(self, inode, ctx):
            return bytes(call("fs_readlink", path=self._path(inode))["target"])

        async def opendir(self, inode, ctx):
            path = self._path(inode)
            entries, start, more = [], 0, True
            while more:                     # the Sentry answers in pages (sentry/fsview.py)
                page = call("fs_readdir", path=path, start=start)
                entries += page["entries"]
                start, more = int(page.get("next", 0)), bool(page.get("more"))
            fh = self.next_fh
            self.next_fh += 1
            self.dirs[fh] = [(bytes(name), self._join(path, bytes(name)), s) for name, s in entries]
            return fh

        async def readdir(self, fh, start_id, token):
            entries = self.dirs.get(fh, [])
            for i in range(start_id, len(entries)):
                name, path, s = entries[i]
                if not pyfuse3.readdir_reply(token, name, self._attr(path, s), i + 1):
                    return

        async def releasedir(self, fh):
            self.dirs.pop(fh, None)

        async def open(self, inode, flags, ctx):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
                self._writable()
                if flags & os.O_TRUNC:
                    call("fs_truncate", path=self._path(inode), size=0)
            return pyfuse3.FileInfo(fh=inode, direct_io=True)     # sizes of /proc files lie: no page cache

        async def read(self, fh, off, size):
            out = bytearray()
            path = self._path(fh)
            while len(out) < size:
                data = bytes(call("fs_read", path=path, offset=off + len(out),
                                  length=min(size - len(out), CHUNK))["data"])
                if not data:
                    break
                out += data
            return bytes(out)

        async def release(self, fh):
            pass

        async def statfs(self, ctx):
            s = pyfuse3.StatvfsData()
            got = call("fs_statfs", path=b"/").get("statfs", {})
            s.f_bsize = s.f_frsize = int(got.get("f_bsize", 4096)) or 4096
            s.f_blocks = int(got.get("f_blocks", 0))
            s.f_bfree = int(got.get("f_bfree", 0))
            s.f_bavail = int(got.get("f_bavail", 0))
            s.f_files = int(got.get("f_files", 0))
            s.f_ffree = s.f_favail = int(got.get("f_ffree", 0))
            s.f_namemax = int(got.get("f_namelen", 255)) or 255
            return s

        # -- writing (--rw only)
        async def write(self, fh, off, buf):
            self._writable()
            return int(call("fs_write", path=self._path(fh), offset=off, data=bytes(buf))["written"])

        async def create(self, parent_inode, name, mode, flags, ctx):
            self._writable()
            path = self._join(self._path(parent_inode), name)
            a = self._attr(path, call("fs_create", path=path, mode=st.S_IMODE(mode))["stat"])
            return pyfuse3.FileInfo(fh=a.st_ino, direct_io=True), a

        async def mkdir(self, parent_inode, name, mode, ctx):
            self._writable()
            path = self._join(self._path(parent_inode), name)
            return self._attr(path, call("fs_mkdir", path=path, mode=st.S_IMODE(mode))["stat"])

        async def unlink(self, parent_inode, name, ctx):
            self._writable()
            call("fs_unlink", path=self._join(self._path(parent_inode), name))

        async def rmdir(self, parent_inode, name, ctx):
            self._writable()
            call("fs_rmdir", path=self._join(self._path(parent_inode), name))

        async def setattr(self, inode, attr, fields, fh, ctx):
            path = self._path(inode)
            if fields.update_size:
                self._writable()
                call("fs_truncate", path=path, size=attr.st_size)
            elif fields.update_mode or fields.update_uid or fields.update_gid:
                raise pyfuse3.FUSEError(errno.ENOTSUP)
            return self._stat(path)

    return SandboxView()


def mount(store: StateStore, container_id: str, mountpoint: str, rw: bool) -> int:
    """Mount, serve until the sandbox stops or we are interrupted, unmount.  Exit status 0."""
    pyfuse3, trio = _import_pyfuse3()
    with store.locked(container_id, exclusive=False) as state:
        if state.live_status() == "stopped":
            raise UserError("container is not running")
    control = store.path(container_id, CONTROL_SOCKET)
    if not os.path.isdir(mountpoint):
        raise UserError(f"mount point {mountpoint}: not a directory")
    ops = make_operations(pyfuse3, control, rw, container_id)     # a pod member: its own root
    try:
        ops._stat(b"/")                 # the sandbox answers before anything is mounted
    except pyfuse3.FUSEError as e:
        raise UserError(f"cannot reach the sandbox's filesystem: {os.strerror(e.errno)}") from None
    options = set(pyfuse3.default_options)
    options.discard("default_permissions")      # the Sentry checks as root; the host user is root too
    options |= {f"fsname=runsc-py:{container_id}", "subtype=runsc-py", "rw" if rw else "ro"}
    try:
        pyfuse3.init(ops, mountpoint, options)
    except RuntimeError as e:
        raise UserError(f"cannot mount {mountpoint}: {e}") from None

    def stopped() -> bool:
        try:
            with store.locked(container_id, exclusive=False) as state:
                return state.live_status() == "stopped"
        except UserError:
            return True                 # deleted

    async def watch() -> None:
        while not stopped():
            await trio.sleep(POLL)
        pyfuse3.terminate()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as sigs:
                nursery.start_soon(_on_signal, sigs, pyfuse3)
                print(f"runsc-py fs: {container_id} mounted at {mountpoint} ({'rw' if rw else 'ro'})",
                      file=sys.stderr, flush=True)
                await pyfuse3.main()
                nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        pyfuse3.close(unmount=True)
    return 0


async def _on_signal(sigs, pyfuse3) -> None:
    async for _ in sigs:
        pyfuse3.terminate()
        return
