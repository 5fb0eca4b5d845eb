"""The Gofer's write operations: creating, linking, unlinking, renaming and changing files.

A mixin of `gofer.server.GoferServer` (which dispatches to these methods and refuses every one
of them with EROFS, before anything else, when it serves a read-only tree: MUTATING_OPS).  Kept
apart from the serving loop and the read side so each module stays readable; the rules are the
server module's (see its header): one validated component relative to a held directory Node, no
symlink followed, and a write that fails half way undone where it can be.
"""
from __future__ import annotations

import errno
import os
import stat as st_
from typing import Callable

from gofer import hostcalls
from gofer.node import Node, Reply
from gofer.protocol import AT_REMOVEDIR, RENAME_EXCHANGE, RENAME_NOREPLACE, UTIME_NOW, UTIME_OMIT, stat_to_wire

CREATE_FLAGS = os.O_ACCMODE | os.O_EXCL | os.O_APPEND | os.O_NONBLOCK | os.O_TRUNC
NO_CHANGE_ID = 0xFFFFFFFF               # chown(2)'s (uid_t)-1


class WriteOps:
    """The MUTATING_OPS of the protocol, on the server's handles (`_node`, `_dir`, `_new_handle`...)."""

    # ---- write operations (MUTATING_OPS: refused with EROFS when read-only) ----

    def _finish_create(self, parent: Node, name: bytes, uid: int, gid: int, mode: int | None,
                       undo: Callable[[], None]) -> tuple[int, os.stat_result]:
        """Give the entry just made as `name` in `parent` its owner, and a handle.

        chown(2) clears set-id bits, so `mode` (when it has any) is applied again
        afterwards.  On failure the entry is removed with `undo` and the error raised.
        """
        try:
            h, _ = self._new_handle(self._lookup(parent, name), parent, name)
        except OSError:
            undo()
            raise
        node = self._handles[h]
        try:
            hostcalls.fchown_empty(node.fd, uid, gid)
            if mode is not None and mode & 0o7000:
                self._set_mode(node, mode)
            return h, os.stat(node.fd)
        except OSError:
            self._close_handle(h)
            undo()
            raise

    def open_create_at(self, dir_handle: int, name: bytes, flags: int, mode: int, uid: int,
                       gid: int) -> Reply:
        if flags & ~CREATE_FLAGS or flags & os.O_ACCMODE == os.O_ACCMODE:
            raise OSError(errno.EINVAL, "bad open flags")
        parent = self._dir(dir_handle)
        mode &= 0o7777
        for _ in range(8):  # create, or open what exists; retried while the name flickers
            try:
                fd = hostcalls.open_beneath(parent.fd, name, flags | os.O_CREAT | os.O_EXCL, mode)
            except FileExistsError:
                if flags & os.O_EXCL:
                    raise
            else:
                return self._created_file(parent, name, fd, uid, gid, mode)
            try:
                h, st = self._new_handle(self._lookup(parent, name), parent, name)
            except FileNotFoundError:
                continue
            try:
                if st_.S_ISDIR(st.st_mode):
                    raise OSError(errno.EISDIR, "is a directory")
                fd = self._reopen(self._handles[h], flags)
            except OSError:
                self._close_handle(h)
                raise
            return [0, h, stat_to_wire(os.stat(fd))], fd
        raise OSError(errno.ENOENT, "entry keeps disappearing")

    def _created_file(self, parent: Node, name: bytes, fd: int, uid: int, gid: int,
                      mode: int) -> Reply:
        """The file just created as `name` on the open `fd`: its owner, a handle, the reply.

        Host calls in the common case (the Gofer's own uid/gid asked for, no set-id bits):
        one fstat and one open_tree, no chown and no lookup by name."""
        def undo() -> None:
            os.close(fd)
            os.unlink(name, dir_fd=parent.fd)
        try:
            st = os.stat(fd)
            if st.st_uid != uid or st.st_gid != gid:
                os.fchown(fd, uid, gid)      # clears set-id bits: the fchmod below restores them
                st = None
            if mode & 0o7000 and (st is None or st.st_mode & 0o7777 != mode):
                os.fchmod(fd, mode)
                st = None
            if st is None:
                st = os.stat(fd)
            path_fd = hostcalls.path_of_fd(fd)
            if path_fd is None:              # no open_tree: the name, checked to be this file
                path_fd = self._lookup(parent, name)
                try:
                    same = os.path.samestat(st, os.stat(path_fd))
                except OSError:
                    os.close(path_fd)
                    raise
                if not same:
                    os.close(path_fd)
                    os.close(fd)
                    raise OSError(errno.ESTALE, "created file was replaced")
        except OSError as e:
            if e.errno != errno.ESTALE:
                undo()
            raise
        try:
            h, _ = self._new_handle(path_fd, parent, name, st)
        except OSError:
            os.close(fd)
            raise
        return [0, h, stat_to_wire(st)], fd

    def mkdir_at(self, dir_handle: int, name: bytes, mode: int, uid: int, gid: int) -> Reply:
        parent = self._dir(dir_handle)
        os.mkdir(name, mode & 0o7777, dir_fd=parent.fd)
        h, st = self._finish_create(parent, name, uid, gid, mode & 0o7777,
                                    lambda: os.rmdir(name, dir_fd=parent.fd))
        return [0, h, stat_to_wire(st)], None

    def mknod_at(self, dir_handle: int, name: bytes, mode: int, uid: int, gid: int) -> Reply:
        if st_.S_IFMT(mode) not in (st_.S_IFIFO, st_.S_IFSOCK):
            raise OSError(errno.EPERM, "only fifos and sockets")
        parent = self._dir(dir_handle)
        os.mknod(name, st_.S_IFMT(mode) | (mode & 0o7777), 0, dir_fd=parent.fd)
        h, st = self._finish_create(parent, name, uid, gid, mode & 0o7777,
                                    lambda: os.unlink(name, dir_fd=parent.fd))
        return [0, h, stat_to_wire(st)], None

    def symlink_at(self, dir_handle: int, name: bytes, target: bytes, uid: int, gid: int) -> Reply:
        parent = self._dir(dir_handle)
        os.symlink(target, name, dir_fd=parent.fd)
        h, st = self._finish_create(parent, name, uid, gid, None,
                                    lambda: os.unlink(name, dir_fd=parent.fd))
        return [0, h, stat_to_wire(st)], None

    def link_at(self, dir_handle: int, name: bytes, target_handle: int) -> Reply:
        parent = self._dir(dir_handle)
        target = self._node(target_handle)
        if target.kind == st_.S_IFDIR:
            raise OSError(errno.EPERM, "hard link to a directory")
        hostcalls.link_empty(target.fd, parent.fd, name)
        h, st = self._new_handle(self._lookup(parent, name), parent, name)
        if self._handles[h].ident != target.ident:
            self._close_handle(h)
            raise OSError(errno.ESTALE, "new link was replaced")
        return [0, h, stat_to_wire(st)], None

    def unlink_at(self, dir_handle: int, name: bytes, flags: int, close: list[int]) -> Reply:
        if flags & ~AT_REMOVEDIR:
            raise OSError(errno.EINVAL, "bad unlink flags")
        parent = self._dir(dir_handle)
        for h in close:                      # checked before anything is done
            self._node(h)
        if flags & AT_REMOVEDIR:
            os.rmdir(name, dir_fd=parent.fd)
        else:
            os.unlink(name, dir_fd=parent.fd)
        # Nodes still remembered under this name would be "moved" by a later rename onto it.
        self._names.pop((*parent.ident, name), None)
        for h in close:
            if h in self._handles:           # a handle listed twice is closed once
                self._close_handle(h)
        return [0], None

    def rename_at(self, old_dir: int, old_name: bytes, new_dir: int, new_name: bytes,
                  flags: int) -> Reply:
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
            raise OSError(errno.EINVAL, "bad rename flags")
        old_parent, new_parent = self._dir(old_dir), self._dir(new_dir)
        hostcalls.renameat2(old_parent.fd, old_name, new_parent.fd, new_name, flags)
        old_key, new_key = (*old_parent.ident, old_name), (*new_parent.ident, new_name)
        if old_key == new_key:
            return [0], None
        moved = self._names.pop(old_key, set())
        displaced = self._names.pop(new_key, set())
        self._move(moved, new_parent, new_name)
        if flags & RENAME_EXCHANGE:
            self._move(displaced, old_parent, old_name)
        return [0], None

    def _move(self, nodes: set[Node], parent: Node, name: bytes) -> None:
        for node in nodes:
            old = node.parent
            assert old is not None
            node.parent, node.name = parent, name
            parent.refs += 1
            self._index(node)
            self._release(old)

    def set_stat(self, handle: int, mode: int | None, uid: int | None, gid: int | None,
                 size: int | None, atime_ns: int | None, mtime_ns: int | None) -> Reply:
        node = self._node(handle)
        # Owner first: chown(2) clears set-id bits, so a mode given alongside must come after.
        if uid is not None or gid is not None:
            hostcalls.fchown_empty(node.fd, NO_CHANGE_ID if uid is None else uid,
                                   NO_CHANGE_ID if gid is None else gid)
        if mode is not None:
            self._set_mode(node, mode & 0o7777)
        if size is not None:
            if node.kind == st_.S_IFDIR:
                raise OSError(errno.EISDIR, "is a directory")
            if node.kind != st_.S_IFREG:
                raise OSError(errno.EINVAL, "not a regular file")
            fd = self._reopen(node, os.O_WRONLY)
            try:
                os.ftruncate(fd, size)
            finally:
                os.close(fd)
        if atime_ns is not None or mtime_ns is not None:
            hostcalls.utimens_empty(node.fd, UTIME_OMIT if atime_ns is None else atime_ns,
                                    UTIME_OMIT if mtime_ns is None else mtime_ns,
                                    UTIME_NOW, UTIME_OMIT)
        return [0, stat_to_wire(os.stat(node.fd))], None

    def _set_mode(self, node: Node, mode: int) -> None:
        if node.kind == st_.S_IFLNK:
            raise OSError(errno.EOPNOTSUPP, "symlinks have no mode")
        if hostcalls.fchmod_empty(node.fd, mode):
            return
        fd = self._reopen(node, os.O_RDONLY)    # kernels before fchmodat2 (6.6)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
