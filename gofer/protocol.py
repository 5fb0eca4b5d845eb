"""The Gofer wire protocol: the one schema shared by the Sentry (client) and the Gofer (server).

Design
------
The channel is a ``SOCK_SEQPACKET`` unix socketpair.  SEQPACKET keeps message
boundaries and is connection oriented, so there is no length prefix to parse
and the peer closing is an ordinary EOF.  Each message is one msgpack array:

* request: ``[op, arg, arg, ...]`` where ``op`` is an ``Op`` number and the
  arguments follow the per-op schema in ``REQUESTS`` below;
* reply:   ``[0, result, ...]`` on success, ``[errno]`` on failure.

Host file descriptors travel beside a reply as ``SCM_RIGHTS`` ancillary data
(``OpenAt``, ``OpenCreateAt``); requests never carry descriptors, and the
server gives the kernel no room for ancillary data when it receives, so any
descriptor a confused or hostile client attaches is discarded by the kernel
before the Gofer ever holds it.

As in gVisor's LISAFS the Sentry never names a file by path: it names a file
by a *handle*, a small integer the Gofer gave it (``Mount`` for the root,
``WalkStat`` for everything below), plus at most one path *component* for
operations that create or remove a directory entry.  A component is checked
here, on both ends, to be a non-empty byte string of at most NAME_MAX bytes
without ``/`` or NUL and not ``.`` or ``..``; so the Gofer can only ever move
one directory entry at a time from a directory it already holds.

Trade-offs
----------
* msgpack arrays, not maps: field names would double the size of the hot
  ``WalkStat``/``FStat`` replies and buy nothing, since both ends share this
  module.  A ``Stat`` is a flat array of 13 integers.
* One outstanding request at a time (the Sentry is single threaded), so there
  are no request tags.
* Messages are capped at ``MAX_MESSAGE`` bytes, well below the default socket
  send buffer (a larger SEQPACKET datagram would fail with EMSGSIZE).  The two
  requests whose reply size depends on the data are paged by the client:
  ``WalkStat`` sends at most ``WALK_BATCH`` components per request and
  ``Getdents64`` continues from a directory offset cookie.
* Validation is strict and total: ``decode_request`` either returns an op and
  arguments of exactly the schema's types and ranges, or raises
  ``ProtocolError`` carrying the errno to answer (EINVAL for a malformed
  message or an unknown op, ENAMETOOLONG for an oversized component).  The
  server never sees an argument it has to type-check again.
"""
from __future__ import annotations

import enum
import errno
import os
from typing import Any, Callable, NamedTuple

import msgpack

MAX_MESSAGE = 64 * 1024
WALK_BATCH = 128
NAME_MAX = 255
PATH_MAX = 4096
GETDENTS_BUFFER = 32 * 1024        # raw getdents64 bytes per Getdents64 reply: encodes to less
MAX_HANDLE = (1 << 31) - 1

# Linux values the protocol carries verbatim (x86_64).
AT_REMOVEDIR = 0x200
RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


class Op(enum.IntEnum):
    """Request types; the numbers are the wire format and must never be reused."""
    MOUNT = 1
    WALK_STAT = 2
    OPEN_AT = 3
    GETDENTS64 = 4
    READLINK_AT = 5
    FSTAT = 6
    CLOSE = 7
    OPEN_CREATE_AT = 8
    MKDIR_AT = 9
    MKNOD_AT = 10
    SYMLINK_AT = 11
    LINK_AT = 12
    UNLINK_AT = 13
    RENAME_AT = 14
    SET_STAT = 15
    FSTATFS = 16
    FSYNC = 17


# Ops that modify the tree: a read-only Gofer answers them EROFS before looking at them further.
MUTATING_OPS = frozenset({Op.OPEN_CREATE_AT, Op.MKDIR_AT, Op.MKNOD_AT, Op.SYMLINK_AT, Op.LINK_AT,
                          Op.UNLINK_AT, Op.RENAME_AT, Op.SET_STAT})

# WalkStat reply statuses.
WALK_OK = 0
WALK_SYMLINK = 1
WALK_MISSING = 2
WALK_STATUS_NAMES = {WALK_OK: "ok", WALK_SYMLINK: "symlink", WALK_MISSING: "missing"}


class Stat(NamedTuple):
    """stat(2) of a file as the Gofer saw it; every field an int, times in nanoseconds."""
    ino: int
    dev: int
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blksize: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int


STATFS_FIELDS = ("f_type", "f_bsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree",
                 "f_namelen", "f_frsize", "f_flags")


class ProtocolError(Exception):
    """A request that cannot be served as sent; `errno` is the reply."""

    def __init__(self, err: int, why: str = "") -> None:
        super().__init__(err, why or errno.errorcode.get(err, str(err)))
        self.errno = err


# ---- argument validators: each returns the value or raises ProtocolError(EINVAL/ENAMETOOLONG) ----
# (The range checks are written out in each one rather than shared: they run for every
# argument of every request, and a call less each is a tenth of the Gofer's per-request time.)

def _bad_int(_value: Any = None) -> int:
    raise ProtocolError(errno.EINVAL, "bad integer argument")


def _int(value: Any, lo: int, hi: int) -> int:
    # bool is an int subclass in Python but a distinct msgpack type; refuse it.
    if type(value) is not int or not lo <= value <= hi:
        _bad_int()
    return value


def handle(value: Any) -> int:
    if type(value) is int and 0 <= value <= MAX_HANDLE:
        return value
    return _bad_int()


def u32(value: Any) -> int:
    if type(value) is int and 0 <= value <= 0xFFFFFFFF:
        return value
    return _bad_int()


def u64(value: Any) -> int:
    if type(value) is int and 0 <= value <= 0xFFFFFFFFFFFFFFFF:
        return value
    return _bad_int()


def opt_u32(value: Any) -> int | None:
    return None if value is None else u32(value)


def opt_u64(value: Any) -> int | None:
    return None if value is None else u64(value)


def opt_time(value: Any) -> int | None:
    """Nanoseconds since the epoch (negative before 1970), or UTIME_NOW/UTIME_OMIT, or None."""
    return None if value is None else _int(value, -(1 << 63), (1 << 63) - 1)


_NOT_NAMES = frozenset((b"", b".", b".."))


def check_name(value: Any) -> bytes:
    """One path component: bytes, not '', '.', '..', no '/' or NUL, at most NAME_MAX bytes."""
    if type(value) is not bytes or value in _NOT_NAMES or b"/" in value or b"\0" in value:
        raise ProtocolError(errno.EINVAL, "bad path component")
    if len(value) > NAME_MAX:
        raise ProtocolError(errno.ENAMETOOLONG, "path component too long")
    return value


def names(value: Any) -> list[bytes]:
    if type(value) is not list or len(value) > WALK_BATCH:
        raise ProtocolError(errno.EINVAL, "bad component list")
    for v in value:
        check_name(v)
    return value


def handles(value: Any) -> list[int]:
    if type(value) is not list or len(value) > WALK_BATCH * 8:
        raise ProtocolError(errno.EINVAL, "bad handle list")
    for v in value:
        if type(v) is not int or not 0 <= v <= MAX_HANDLE:
            _bad_int()
    return value


def symlink_target(value: Any) -> bytes:
    """symlink(2)'s target: ENOENT when empty, ENAMETOOLONG past PATH_MAX-1 bytes, EINVAL with NUL."""
    if type(value) is not bytes or b"\0" in value:
        raise ProtocolError(errno.EINVAL, "bad symlink target")
    if not value:
        raise ProtocolError(errno.ENOENT, "empty symlink target")
    if len(value) >= PATH_MAX:
        raise ProtocolError(errno.ENAMETOOLONG, "symlink target too long")
    return value


Validator = Callable[[Any], Any]

# The schema: for each op, the validators of its arguments, in wire order.
REQUESTS: dict[Op, tuple[Validator, ...]] = {
    Op.MOUNT: (),
    Op.WALK_STAT: (handle, names),
    Op.OPEN_AT: (handle, u32),                                   # handle, flags
    Op.GETDENTS64: (handle, u64),                                # handle, offset cookie (0 = start)
    Op.READLINK_AT: (handle,),
    Op.FSTAT: (handle,),
    Op.CLOSE: (handles,),
    Op.OPEN_CREATE_AT: (handle, check_name, u32, u32, u32, u32),  # dir, name, flags, mode, uid, gid
    Op.MKDIR_AT: (handle, check_name, u32, u32, u32),           # dir, name, mode, uid, gid
    Op.MKNOD_AT: (handle, check_name, u32, u32, u32),           # dir, name, mode, uid, gid
    Op.SYMLINK_AT: (handle, check_name, symlink_target, u32, u32),  # dir, name, target, uid, gid
    Op.LINK_AT: (handle, check_name, handle),                   # dir, name, target handle
    # dir, name, flags, handles to close once the entry is gone (the removed file's own, so
    # an unlink costs one round trip, not two); all must be known or nothing is done (EBADF)
    Op.UNLINK_AT: (handle, check_name, u32, handles),
    Op.RENAME_AT: (handle, check_name, handle, check_name, u32),  # old dir, old name, new dir, new name, flags
    # handle, mode, uid, gid, size, atime_ns, mtime_ns; None = leave unchanged
    Op.SET_STAT: (handle, opt_u32, opt_u32, opt_u32, opt_u64, opt_time, opt_time),
    Op.FSTATFS: (handle,),
    Op.FSYNC: (handle,),
}


def encode(message: list[Any]) -> bytes:
    """Pack one request or reply; bytes go out as msgpack bin, str as msgpack str."""
    return msgpack.packb(message, use_bin_type=True)


# REQUESTS indexed by op number, for decode_op: (op, validators, argument count + 1) or None.
SCHEMA_BY_NUMBER: list[tuple[Op, tuple[Validator, ...], int] | None] = [None] * (max(Op) + 1)
for _op, _checks in REQUESTS.items():
    SCHEMA_BY_NUMBER[_op] = (_op, _checks, len(_checks) + 1)
del _op, _checks
_unpackb = msgpack.unpackb
_UNPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException)


def decode_op(data: bytes | memoryview) -> tuple[int, list[Any]]:
    """decode_request for the Gofer's loop: (op number, the whole message [op, args...]).

    The same checks (a message it accepts holds exactly the schema's types and ranges),
    without building an Op or an argument list: the arguments are message[1:]."""
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(errno.EMSGSIZE, "request too large")
    try:
        message = _unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except _UNPACK_ERRORS as e:
        # msgpack's ExtraData/FormatError/StackError and UnicodeDecodeError are all ValueErrors.
        raise ProtocolError(errno.EINVAL, f"not msgpack: {e}") from None
    if type(message) is not list or not message or type(message[0]) is not int:
        raise ProtocolError(errno.EINVAL, "request is not [op, args...]")
    op = message[0]
    if not 0 < op < len(SCHEMA_BY_NUMBER) or (entry := SCHEMA_BY_NUMBER[op]) is None:
        raise ProtocolError(errno.EINVAL, "unknown op")
    checks = entry[1]
    if len(message) != entry[2]:
        raise ProtocolError(errno.EINVAL, "wrong argument count")
    i = 1
    for check in checks:        # each raises ProtocolError, or returns its argument unchanged
        check(message[i])
        i += 1
    return op, message


def decode_request(data: bytes | memoryview) -> tuple[Op, list[Any]]:
    """Parse and validate a request.  Raises ProtocolError with the errno to answer."""
    op, message = decode_op(data)
    return SCHEMA_BY_NUMBER[op][0], message[1:]


def decode_reply(data: bytes | memoryview) -> list[Any]:
    """Parse a reply into its result list; raise OSError(errno) for an error reply.

    A reply that is not a msgpack array headed by an int is the peer breaking
    the protocol; it is reported as EIO, as a failing disk would be.
    """
    try:
        message = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise OSError(errno.EIO, "gofer: malformed reply") from None
    if type(message) is not list or not message or type(message[0]) is not int:
        raise OSError(errno.EIO, "gofer: malformed reply")
    err = message[0]
    if err:
        detail = message[1] if len(message) > 1 and type(message[1]) is str else ""
        raise OSError(err, f"{_strerror(err)}: {detail}" if detail else _strerror(err))
    return message


def _strerror(err: int) -> str:
    try:
        return os.strerror(err)
    except ValueError:
        return f"errno {err}"


def stat_to_wire(st: Any) -> list[int]:
    """An os.stat_result as the 13-int wire form of Stat."""
    return [st.st_ino, st.st_dev, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_rdev,
            st.st_size, st.st_blksize, st.st_blocks, st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns]
