"""The Sentry's side of the Gofer channel: one method per protocol request.

The client is deliberately dumb and cheap: each call packs one msgpack array,
makes one ``sendmsg`` and one ``recvmsg`` (the only two system calls it ever
makes, so it keeps working inside the Sentry's own seccomp filter), and
unpacks the reply.  An errno reply is raised as ``OSError(errno,
strerror)``, exactly as the os module would raise it.  Calls are synchronous
and not thread safe: the Sentry is single threaded and has one request
outstanding at a time.  The only calls that may take more than one round
trip are ``walk_stat`` on a path of more than ``WALK_BATCH`` components and
``getdents64`` on a directory larger than one reply (see protocol.py).
Replies carry no request tag, so a Python exception raised between the send
and the receive (a signal handler that raises) leaves the channel out of
step; the Sentry's handlers must not raise there.

Handles are the Gofer's; the client never interprets them.  A host fd the
Gofer donates (``open_at``, ``open_create_at``) belongs to the caller, who
must close it.

``spawn_gofer`` starts the Gofer as a forked child of the caller (see
confine.py for what it does to itself before serving).
"""
from __future__ import annotations

import array
import errno
import os
import socket
from typing import Any, Callable

import msgpack

from gofer.protocol import (MAX_MESSAGE, STATFS_FIELDS, WALK_BATCH, WALK_OK, WALK_STATUS_NAMES,
                            Op, Stat, decode_reply)

__all__ = ["GoferClient", "Stat", "spawn_gofer"]

_FD_SIZE = array.array("i").itemsize
_ANC_ONE_FD = socket.CMSG_SPACE(_FD_SIZE)


class GoferClient:
    """A connection to one Gofer over a SOCK_SEQPACKET socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # Replies are received into one reused buffer and packed by one reused Packer.
        self._buf = memoryview(bytearray(MAX_MESSAGE))
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self.requests: dict[int, int] = {}      # op number -> requests sent (runsc-py metrics)
        self.on_lost: Callable[[], None] | None = None   # called when the channel reads as closed

    # ---- transport ----

    def _roundtrip(self, request: list[Any]) -> tuple[int, list[tuple[int, int, bytes]]]:
        """Send `request`, receive the reply into the buffer: (length, ancillary data).

        A Gofer that has gone away is EIO, as a failed disk would be; never EPIPE
        (nor SIGPIPE: MSG_NOSIGNAL), which the Sentry could mistake for a pipe's.
        """
        op = request[0]
        self.requests[op] = self.requests.get(op, 0) + 1
        try:
            self.sock.sendmsg([self._pack(request)], (), socket.MSG_NOSIGNAL)
            n, anc, _, _ = self.sock.recvmsg_into([self._buf], _ANC_ONE_FD)
        except (BrokenPipeError, ConnectionResetError):
            self._lost()
            raise OSError(errno.EIO, "gofer: channel closed") from None
        if not n:
            for fd in self._fds(anc):
                os.close(fd)
            self._lost()
            raise OSError(errno.EIO, "gofer: channel closed")
        return n, anc

    def _lost(self) -> None:
        """The Gofer is gone: tell whoever owns the sandbox (sentry/lifeline.py) at once."""
        if self.on_lost is not None:
            self.on_lost()

    def _call(self, request: list[Any]) -> list[Any]:
        """One round trip with no descriptor in the reply."""
        n, anc = self._roundtrip(request)
        if anc:
            for fd in self._fds(anc):
                os.close(fd)
        return decode_reply(self._buf[:n])

    def _call_fd(self, request: list[Any]) -> tuple[list[Any], int]:
        """One round trip whose success reply carries exactly one descriptor."""
        n, anc = self._roundtrip(request)
        fds = self._fds(anc)
        try:
            reply = decode_reply(self._buf[:n])
            if len(fds) != 1:
                raise OSError(errno.EIO, "gofer: reply without its descriptor")
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return reply, fds[0]

    @staticmethod
    def _fds(anc: list[tuple[int, int, bytes]]) -> list[int]:
        fds = array.array("i")
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % _FD_SIZE])
        return list(fds)

    # ---- read half ----

    def mount(self) -> tuple[int, Stat]:
        """A new handle on the root of the served tree, and its stat."""
        r = self._call([Op.MOUNT])
        return r[1], Stat(*r[2])

    def walk_stat(self, handle: int, names: list[bytes]) -> tuple[list[tuple[int, Stat]], str]:
        """Walk `names` one component at a time from directory `handle`.

        Returns the (handle, stat) of every component reached and "ok" (all
        walked), "symlink" (stopped at a symlink, the last entry) or "missing"
        (the next component does not exist).  Raises OSError(ENOTDIR) when a
        component before the last is not a directory, or the host's errno.
        Every returned handle is the caller's to close.
        """
        out: list[tuple[int, Stat]] = []
        start = 0
        cur = handle
        while True:
            batch = names[start:start + WALK_BATCH]
            try:
                r = self._call([Op.WALK_STAT, cur, batch])
            except OSError:
                if out:            # an earlier batch's handles are ours to give back
                    self.close([h for h, _ in out])
                raise
            status = r[1]
            out += [(h, Stat(*s)) for h, s in r[2]]
            start += len(batch)
            if status != WALK_OK or start >= len(names):
                return out, WALK_STATUS_NAMES[status]
            cur = out[-1][0]

    def open_at(self, handle: int, flags: int) -> int:
        """A new host fd for the file `handle` names (O_RDONLY/O_WRONLY/O_RDWR, O_DIRECTORY,
        O_APPEND, O_NONBLOCK, O_TRUNC).  ELOOP for a symlink, EPERM for a device."""
        return self._call_fd([Op.OPEN_AT, handle, flags])[1]

    def getdents64(self, handle: int) -> list[tuple[int, int, bytes]]:
        """(d_ino, d_type, name) of every entry of directory `handle`, '.' and '..' included."""
        out: list[tuple[int, int, bytes]] = []
        cookie = 0
        while True:
            r = self._call([Op.GETDENTS64, handle, cookie])
            flat, cookie, eof = r[1], r[2], r[3]
            out += zip(flat[0::3], flat[1::3], flat[2::3])
            if eof:
                return out

    def readlink_at(self, handle: int) -> bytes:
        """The target of the symlink `handle` names (EINVAL if it is not a symlink)."""
        return self._call([Op.READLINK_AT, handle])[1]

    def fstat(self, handle: int) -> Stat:
        return Stat(*self._call([Op.FSTAT, handle])[1])

    def close(self, handles: list[int]) -> None:
        """Release handles.  EBADF if any was unknown (the known ones are released anyway)."""
        for i in range(0, len(handles), WALK_BATCH * 8):
            self._call([Op.CLOSE, handles[i:i + WALK_BATCH * 8]])

    def fstatfs(self, handle: int) -> dict[str, int]:
        return dict(zip(STATFS_FIELDS, self._call([Op.FSTATFS, handle])[1]))

    def fsync(self, handle: int) -> None:
        self._call([Op.FSYNC, handle])

    # ---- write half: EROFS when the tree is served read-only ----

    def open_create_at(self, dir_handle: int, name: bytes, flags: int, mode: int, uid: int,
                       gid: int) -> tuple[int, Stat, int]:
        """open(name, flags|O_CREAT, mode) in `dir_handle`: (handle, stat, host fd).

        A newly made file gets owner uid:gid; an existing one is opened as is
        (EEXIST with O_EXCL).  flags: access mode, O_EXCL, O_TRUNC, O_APPEND, O_NONBLOCK.
        """
        r, fd = self._call_fd([Op.OPEN_CREATE_AT, dir_handle, name, flags, mode, uid, gid])
        return r[1], Stat(*r[2]), fd

    def mkdir_at(self, dir_handle: int, name: bytes, mode: int, uid: int,
                 gid: int) -> tuple[int, Stat]:
        r = self._call([Op.MKDIR_AT, dir_handle, name, mode, uid, gid])
        return r[1], Stat(*r[2])

    def mknod_at(self, dir_handle: int, name: bytes, mode: int, uid: int,
                 gid: int) -> tuple[int, Stat]:
        """Make a FIFO or socket node (`mode` carries S_IFIFO/S_IFSOCK); EPERM for anything else."""
        r = self._call([Op.MKNOD_AT, dir_handle, name, mode, uid, gid])
        return r[1], Stat(*r[2])

    def symlink_at(self, dir_handle: int, name: bytes, target: bytes, uid: int,
                   gid: int) -> tuple[int, Stat]:
        r = self._call([Op.SYMLINK_AT, dir_handle, name, target, uid, gid])
        return r[1], Stat(*r[2])

    def link_at(self, dir_handle: int, name: bytes, target_handle: int) -> tuple[int, Stat]:
        """A hard link `name` in `dir_handle` to the file `target_handle` names."""
        r = self._call([Op.LINK_AT, dir_handle, name, target_handle])
        return r[1], Stat(*r[2])

    def unlink_at(self, dir_handle: int, name: bytes, flags: int, close: list[int] | None = None) -> None:
        """unlinkat(2); flags 0 or AT_REMOVEDIR.  The handles in `close` (the removed file's) are
        closed by the same request once the entry is gone, and stay open if it fails."""
        self._call([Op.UNLINK_AT, dir_handle, name, flags, close or []])

    def rename_at(self, old_dir: int, old_name: bytes, new_dir: int, new_name: bytes,
                  flags: int) -> None:
        """renameat2(2); flags 0, RENAME_NOREPLACE or RENAME_EXCHANGE."""
        self._call([Op.RENAME_AT, old_dir, old_name, new_dir, new_name, flags])

    def set_stat(self, handle: int, *, mode: int | None = None, uid: int | None = None,
                 gid: int | None = None, size: int | None = None, atime_ns: int | None = None,
                 mtime_ns: int | None = None) -> Stat:
        """Change what is given, in the order owner, mode, size, times; return the new stat.

        atime_ns/mtime_ns may be UTIME_NOW or UTIME_OMIT.  Not atomic: on an
        error, changes made before it stay.
        """
        r = self._call([Op.SET_STAT, handle, mode, uid, gid, size, atime_ns, mtime_ns])
        return Stat(*r[1])


def spawn_gofer(rootfs: str, readonly: bool = False) -> tuple[int, GoferClient]:
    """Fork a Gofer serving `rootfs` (the caller must be root); return (pid, client).

    Returns once the child is confined and ready.  The child exits 0 when the
    client's socket closes; the caller reaps it.  Raises OSError if the child
    could not confine itself.
    """
    from gofer import confine                # everything the child needs, loaded before fork

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            ours.close()
            status = confine.confine_and_serve(theirs, rootfs, readonly)
        finally:
            os._exit(status)
    theirs.close()
    data, _, _, _ = ours.recvmsg(MAX_MESSAGE)
    try:
        if not data:
            raise OSError(errno.EIO, "gofer exited during setup")
        decode_reply(data)
    except OSError:
        ours.close()
        os.waitpid(pid, 0)
        raise
    return pid, GoferClient(ours)
