"""The Gofer's serving loop: file operations on held descriptors, answered over one socket.

What a handle is
----------------
A handle names a ``Node``: one ``O_PATH|O_NOFOLLOW`` descriptor for one file
of the served tree (gVisor's LISAFS calls it a ControlFD).  Nodes are only
ever made by opening a single, validated component relative to a directory
Node (``openat2`` with ``RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
RESOLVE_NO_MAGICLINKS``, or ``openat(O_NOFOLLOW)`` on older kernels), starting
from the root the Gofer was chrooted into.  No request carries a path, no
symlink is ever followed (a symlink becomes a Node of its own and the Sentry
resolves it), so no request can name a file outside the tree.

Opening a file for I/O
----------------------
An ``O_PATH`` descriptor cannot be read, and it cannot be reopened without a
path: ``openat(fd, "")`` does not exist, and ``/proc/self/fd/N`` is a magic
link that we refuse to depend on (it is how container escapes are made, and
the chroot has no /proc anyway).  So:

* a directory is reopened as ``openat(node_fd, ".")``: the same directory by
  construction, whatever happened to its name since;
* any other file remembers the directory Node it was found in and its name,
  and is reopened as that one component with ``O_NOFOLLOW``.  The name may
  have been replaced since the walk, so the opened descriptor's (st_dev,
  st_ino) must equal the Node's, or the answer is ESTALE.  Renames made
  through the Gofer update the remembered (directory, name) of every Node
  they move (``_names`` index), so the Sentry's handles stay valid across
  rename(2) as its dentries do.  Only non-directories keep a parent, so a
  Node keeps at most one other descriptor alive and the descriptor count is
  bounded by twice the handle cap.

A file made by ``OpenCreateAt`` gets its Node the other way round: from the descriptor
the create opened, by ``open_tree(fd, "", AT_EMPTY_PATH)`` (an O_PATH descriptor of that
very file, no name looked up, so nothing to compare); where open_tree is refused, by a
lookup of the name whose (st_dev, st_ino) must match the fd's (ESTALE otherwise).

Device nodes are never opened (EPERM): the Sentry serves /dev itself, and a
device node in an image must not hand the sandbox a host device.  FIFOs are
opened with O_NONBLOCK, because the Gofer is one thread and an open(2) of a
FIFO without a peer would block every other request; the Sentry does the
blocking.  Other files are opened O_NONBLOCK too, and made blocking again once
the descriptor is known to be the Node's file (see ``_reopen``).

Trade-offs
----------
* Single threaded, one request at a time, no locks: the Sentry is single
  threaded too, and host file operations on a local tree are fast next to the
  socket round trip.
* A write request that fails half way (created, then chown refused) is undone
  where it can be (the new entry is unlinked) so the Sentry never sees a file
  it was told was not made.
* Any exception a handler raises becomes an errno reply (EIO if it is not an
  OSError) and is counted in ``statistics()``: a bug in one operation must not
  take a container's whole filesystem down.
"""
from __future__ import annotations

import array
import errno
import fcntl
import os
import socket
import stat as st_
from typing import Any, Callable

import msgpack

from gofer import hostcalls
from gofer.node import Node, Reply
from gofer.writes import WriteOps
from gofer.protocol import (GETDENTS_BUFFER, MAX_MESSAGE, MUTATING_OPS,
                            STATFS_FIELDS, WALK_MISSING, WALK_OK, WALK_SYMLINK, Op, ProtocolError,
                            decode_op, encode, stat_to_wire)

DEFAULT_MAX_HANDLES = 10000
OPEN_FLAGS = os.O_ACCMODE | os.O_DIRECTORY | os.O_APPEND | os.O_NONBLOCK | os.O_TRUNC
_MSG_TRUNC = int(socket.MSG_TRUNC)      # a plain int: IntFlag's & is a Python-level call
_SOL_SOCKET, _SCM_RIGHTS, _MSG_NOSIGNAL = socket.SOL_SOCKET, socket.SCM_RIGHTS, int(socket.MSG_NOSIGNAL)




class GoferServer(WriteOps):
    """Serves one tree, rooted at the O_PATH directory `root_fd`, on `sock` until EOF."""

    def __init__(self, sock: socket.socket, root_fd: int, readonly: bool = False,
                 max_handles: int = DEFAULT_MAX_HANDLES) -> None:
        self._sock = sock
        self._readonly = readonly
        self._max_handles = max_handles
        self._handles: dict[int, Node] = {}
        self._free: list[int] = []
        self._next_handle = 1
        # (dev, ino) of a directory + name -> non-directory Nodes remembered under it.
        self._names: dict[tuple[int, int, bytes], set[Node]] = {}
        self._root = Node(root_fd, os.stat(root_fd), None, b"")
        self._root.refs = 1                          # the server's own reference
        self._dirents = hostcalls.DirentReader(GETDENTS_BUFFER)
        self._stats = {"requests": 0, "errors": 0, "internal_errors": 0}
        self._pack = msgpack.Packer(use_bin_type=True).pack    # one Packer for every reply
        ops: dict[Op, Callable[..., Reply]] = {
            Op.MOUNT: self.mount, Op.WALK_STAT: self.walk_stat, Op.OPEN_AT: self.open_at,
            Op.GETDENTS64: self.getdents64, Op.READLINK_AT: self.readlink_at,
            Op.FSTAT: self.fstat, Op.CLOSE: self.close, Op.OPEN_CREATE_AT: self.open_create_at,
            Op.MKDIR_AT: self.mkdir_at, Op.MKNOD_AT: self.mknod_at,
            Op.SYMLINK_AT: self.symlink_at, Op.LINK_AT: self.link_at,
            Op.UNLINK_AT: self.unlink_at, Op.RENAME_AT: self.rename_at,
            Op.SET_STAT: self.set_stat, Op.FSTATFS: self.fstatfs, Op.FSYNC: self.fsync,
        }
        # Dispatch by op number (decode_op has checked it names an op): the handler, or None
        # when the tree is read-only and the op would change it (EROFS before anything else).
        self._dispatch: list[Callable[..., Reply] | None] = [None] * (max(Op) + 1)
        for op, fn in ops.items():
            self._dispatch[op] = None if readonly and op in MUTATING_OPS else fn

    # ---- the loop ----

    def serve(self) -> int:
        """Answer requests until the peer closes the socket; return the exit status (0)."""
        sock = self._sock
        buf = memoryview(bytearray(MAX_MESSAGE))
        while True:
            # No ancillary buffer: descriptors a client attaches are discarded by the kernel.
            try:
                n, _, msg_flags, _ = sock.recvmsg_into([buf])
            except (ConnectionResetError, BrokenPipeError):
                return 0
            data = buf[:n]
            if not n:
                # EOF.  (A zero-length SEQPACKET message reads the same; only the Sentry can
                # send one, and ending its own file server is all it achieves.)
                return 0
            reply, fd = self.handle_message(data, msg_flags)
            try:
                if not self._send(reply, fd):
                    return 0
            finally:
                if fd is not None:
                    os.close(fd)

    def _send(self, reply: list[Any], fd: int | None) -> bool:
        """Send one reply (and donate `fd`); False when the peer is gone."""
        anc = () if fd is None else [(_SOL_SOCKET, _SCM_RIGHTS, array.array("i", (fd,)))]
        try:
            self._sock.sendmsg((self._pack(reply),), anc, _MSG_NOSIGNAL)
        except (ConnectionResetError, BrokenPipeError):
            return False
        except OSError as e:
            # A reply the socket cannot take (EMSGSIZE would be a bug in the paging) is still
            # answered, so the client is not left waiting forever.
            self._stats["internal_errors"] += 1
            try:
                self._sock.sendmsg([encode([e.errno or errno.EIO])], [], socket.MSG_NOSIGNAL)
            except (ConnectionResetError, BrokenPipeError):
                return False
        return True

    def handle_message(self, data: bytes | memoryview, msg_flags: int = 0) -> Reply:
        """Decode, check and run one request; every failure is an errno reply."""
        self._stats["requests"] += 1
        try:
            if msg_flags & _MSG_TRUNC:
                raise ProtocolError(errno.EMSGSIZE, "request too large")
            op, message = decode_op(data)
            fn = self._dispatch[op]
            if fn is None:
                raise ProtocolError(errno.EROFS)
            return fn(*message[1:])
        except ProtocolError as e:
            err = e.errno
        except OSError as e:
            err = e.errno or errno.EIO
        except Exception:  # noqa: BLE001 - a handler bug answers EIO instead of killing the Gofer
            self._stats["internal_errors"] += 1
            err = errno.EIO
        self._stats["errors"] += 1
        return [err], None

    def statistics(self) -> dict[str, int]:
        """Counters for debugging: requests, error replies, handler bugs, live handles."""
        return dict(self._stats, handles=len(self._handles))

    # ---- handles and nodes ----

    def _node(self, handle: int) -> Node:
        try:
            return self._handles[handle]
        except KeyError:
            raise OSError(errno.EBADF, "unknown handle") from None

    def _dir(self, handle: int) -> Node:
        node = self._node(handle)
        if node.kind != st_.S_IFDIR:
            raise OSError(errno.ENOTDIR, "not a directory")
        return node

    def _add_handle(self, node: Node) -> int:
        if len(self._handles) >= self._max_handles:
            raise OSError(errno.EMFILE, "too many gofer handles")
        if self._free:
            handle = self._free.pop()
        else:
            handle = self._next_handle
            self._next_handle += 1
        self._handles[handle] = node
        node.refs += 1
        return handle

    def _close_handle(self, handle: int) -> None:
        node = self._handles.pop(handle)
        self._free.append(handle)
        self._release(node)

    def _release(self, node: Node) -> None:
        node.refs -= 1
        if node.refs:
            return
        os.close(node.fd)
        parent = node.parent
        if parent is not None:
            self._unindex(node)
            self._release(parent)

    def _index(self, node: Node) -> None:
        assert node.parent is not None
        self._names.setdefault((*node.parent.ident, node.name), set()).add(node)

    def _unindex(self, node: Node) -> None:
        assert node.parent is not None
        key = (*node.parent.ident, node.name)
        nodes = self._names.get(key)
        if nodes is not None:
            nodes.discard(node)
            if not nodes:
                del self._names[key]

    def _new_handle(self, fd: int, parent: Node, name: bytes,
                    st: os.stat_result | None = None) -> tuple[int, os.stat_result]:
        """Make a Node of the O_PATH `fd`, found as `name` in `parent`, and a handle for it.
        `st` is the file's stat when the caller has it already.

        Takes ownership of `fd` (closed on failure).
        """
        if st is None:
            try:
                st = os.stat(fd)
            except OSError:
                os.close(fd)
                raise
        node = Node(fd, st, None, name)
        if node.kind != st_.S_IFDIR:
            node.parent = parent
            parent.refs += 1
            self._index(node)
        node.refs = 1                        # held while we try to add the handle
        try:
            return self._add_handle(node), st
        finally:
            self._release(node)

    def _lookup(self, parent: Node, name: bytes) -> int:
        return hostcalls.open_beneath(parent.fd, name, os.O_PATH)

    def _reopen(self, node: Node, flags: int) -> int:
        """A new I/O descriptor for `node`, opened with `flags` (see the module comment)."""
        kind = node.kind
        if kind == st_.S_IFLNK:
            raise OSError(errno.ELOOP, "is a symbolic link")
        if kind == st_.S_IFDIR:
            return hostcalls.open_beneath(node.fd, b".", flags)
        if kind in (st_.S_IFCHR, st_.S_IFBLK):
            raise OSError(errno.EPERM, "gofer does not open device files")
        assert node.parent is not None
        # Always O_NONBLOCK: if the name was swapped for a FIFO since the walk (by
        # another container sharing a volume, say), open(2) must not block the Gofer.
        fd = hostcalls.open_beneath(node.parent.fd, node.name, flags | os.O_NONBLOCK)
        try:
            st = os.stat(fd)
            if (st.st_dev, st.st_ino) != node.ident:
                raise OSError(errno.ESTALE, "file was replaced")
            if not flags & os.O_NONBLOCK and kind != st_.S_IFIFO:
                # fcntl, not os.set_blocking: that is ioctl(FIONBIO), which seccomp refuses.
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        except OSError:
            os.close(fd)
            raise
        return fd

    # ---- read operations ----

    def mount(self) -> Reply:
        handle = self._add_handle(self._root)
        return [0, handle, stat_to_wire(os.stat(self._root.fd))], None

    def walk_stat(self, handle: int, names: list[bytes]) -> Reply:
        cur = self._node(handle)
        entries: list[list[Any]] = []
        made: list[int] = []
        status = WALK_OK
        try:
            for name in names:
                if cur.kind != st_.S_IFDIR:
                    raise OSError(errno.ENOTDIR, "not a directory")
                try:
                    fd = self._lookup(cur, name)
                except FileNotFoundError:
                    status = WALK_MISSING
                    break
                h, st = self._new_handle(fd, cur, name)
                made.append(h)
                entries.append([h, stat_to_wire(st)])
                cur = self._handles[h]
                if cur.kind == st_.S_IFLNK:
                    status = WALK_SYMLINK
                    break
        except OSError:
            for h in made:
                self._close_handle(h)
            raise
        return [0, status, entries], None

    def open_at(self, handle: int, flags: int) -> Reply:
        if flags & ~OPEN_FLAGS or flags & os.O_ACCMODE == os.O_ACCMODE:
            raise OSError(errno.EINVAL, "bad open flags")
        node = self._node(handle)
        if node.kind == st_.S_IFDIR:
            # Never a directory descriptor: with one, fd-relative calls the Sentry's filter must
            # allow (fstatat with AT_EMPTY_PATH and a path) could look up `..` past the rootfs.
            # The Sentry lists directories with Getdents64 and needs none.
            raise OSError(errno.EISDIR, "the gofer gives out no directory descriptors")
        if self._readonly and (flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC):
            raise OSError(errno.EROFS, "read-only file system")
        return [0], self._reopen(node, flags)

    def getdents64(self, handle: int, cookie: int) -> Reply:
        fd = hostcalls.open_beneath(self._dir(handle).fd, b".", os.O_RDONLY | os.O_DIRECTORY)
        out: list[Any] = []
        eof = False
        try:
            if cookie:
                os.lseek(fd, cookie, os.SEEK_SET)
            room = GETDENTS_BUFFER
            while room >= 1024:
                ents, used = self._dirents.read(fd, room)
                if not ents:
                    eof = True
                    break
                for ino, dtype, name, _ in ents:
                    out += (ino, dtype, name)
                cookie = ents[-1][3]
                room -= used
        finally:
            os.close(fd)
        return [0, out, cookie, eof], None

    def readlink_at(self, handle: int) -> Reply:
        node = self._node(handle)
        if node.kind != st_.S_IFLNK:
            raise OSError(errno.EINVAL, "not a symbolic link")
        return [0, os.readlink(b"", dir_fd=node.fd)], None

    def fstat(self, handle: int) -> Reply:
        return [0, stat_to_wire(os.stat(self._node(handle).fd))], None

    def close(self, handles: list[int]) -> Reply:
        unknown = False
        for h in handles:
            if h in self._handles:
                self._close_handle(h)
            else:
                unknown = True
        if unknown:
            raise OSError(errno.EBADF, "unknown handle")
        return [0], None

    def fstatfs(self, handle: int) -> Reply:
        fs = hostcalls.fstatfs(self._node(handle).fd)
        return [0, [fs[k] for k in STATFS_FIELDS]], None

    def fsync(self, handle: int) -> Reply:
        node = self._node(handle)
        if node.kind not in (st_.S_IFREG, st_.S_IFDIR):
            raise OSError(errno.EINVAL, "cannot fsync this file type")
        fd = self._reopen(node, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return [0], None
