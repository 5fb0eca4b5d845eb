"""splice, tee, vmsplice and sendfile: moving bytes through a pipe without the application's buffers.

Linux moves page references between a pipe and a file; the Sentry's pipes are
byte buffers (sentry/pipe.py), so here bytes are copied through a bounce
buffer, in an order that loses nothing when a side would block: from a pipe,
the bytes are peeked, written to the destination, and only then consumed;
into a pipe, no more is read from the source than the pipe has room for.  A
call that must wait parks on the pipe's wait queue and runs again, as every
blocking syscall here does (sentry/waitq.py).

The checks follow fs/splice.c and fs/read_write.c (Linux 6.12): unknown flags
EINVAL; an offset given for a pipe ESPIPE; neither side a pipe EINVAL; both
ends of one pipe EINVAL; an O_APPEND destination EINVAL; SPLICE_F_NONBLOCK
(or a non-blocking pipe) gives EAGAIN instead of waiting.  sendfile(2) to a
pipe reads from any file that can be read (a regular file, a socket, a
device) -- as Linux 5.12+ does by turning it into a splice -- and to anything
else needs a regular file as its source.
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError
from sentry.pipe import PIPE_BUF, PipeFile
from sentry.syscalls.args import s32, s64
from sentry.syscalls.registry import Support, syscall
from sentry.syscalls.vectored import iov_views, positioned
from sentry.vfs.file import MAX_RW, O_APPEND, O_NONBLOCK, File

SPLICE_F_MOVE, SPLICE_F_NONBLOCK, SPLICE_F_MORE, SPLICE_F_GIFT = 1, 2, 4, 8
SPLICE_F_ALL = 0xF
CHUNK = 1 << 20


def _room(pipe) -> int:
    """Bytes a pipe accepts now without blocking (whole free page slots)."""
    return max(0, (pipe.capacity // PIPE_BUF - len(pipe.slots)) * PIPE_BUF)


def _epipe(t) -> None:
    from sentry import process
    from sentry import signals as sg
    process.send_to_task(t.kernel, t, sg.SIGPIPE, sg.siginfo(sg.SIGPIPE, sg.SI_USER, pid=t.tg.tgid))
    raise SyscallError(errno.EPIPE)


def _wait_for_data(t, pr: PipeFile, nonblock: bool) -> bool:
    """True when the pipe behind `pr` has bytes; False at EOF (no writers); else EAGAIN or park."""
    p = pr.pipe
    if p.buf:
        return True
    if p.writers == 0:
        return False
    if nonblock or pr.flags & O_NONBLOCK:
        raise SyscallError(errno.EAGAIN)
    t.block([p.waitq])
    return False   # not reached


def _wait_for_room(t, pw: PipeFile, nonblock: bool) -> int:
    p = pw.pipe
    if p.readers == 0:
        _epipe(t)
    room = _room(p)
    if room:
        return room
    if nonblock or pw.flags & O_NONBLOCK:
        raise SyscallError(errno.EAGAIN)
    t.block([p.waitq])
    return 0   # not reached


def _consume(t, pr: PipeFile, n: int) -> None:
    if n:
        pr.read(t, [memoryview(bytearray(n))])


def from_pipe(t, pr: PipeFile, out: File, count: int, out_off: int | None, nonblock: bool) -> int:
    """Move up to `count` bytes from a pipe's read end to `out` (at `out_off`, or its file position)."""
    if not _wait_for_data(t, pr, nonblock):
        return 0
    data = memoryview(bytes(pr.pipe.buf[:min(count, CHUNK)]))
    if isinstance(out, PipeFile):
        data = data[:_wait_for_room(t, out, nonblock)]
        put = out.write(t, [data])
    elif out_off is not None:
        put = out.pwrite(t, [data], out_off)
    else:
        put = out.write(t, [data])
    _consume(t, pr, put)
    return put


def to_pipe(t, src: File, pw: PipeFile, count: int, src_off: int | None, nonblock: bool) -> int:
    """Move up to `count` bytes from `src` (at `src_off`, or its file position) into a pipe's write end."""
    room = _wait_for_room(t, pw, nonblock)
    buf = memoryview(bytearray(min(count, room, CHUNK)))
    old = src.flags
    if nonblock:
        src.flags |= O_NONBLOCK
    try:
        got = src.pread(t, [buf], src_off) if src_off is not None else src.read(t, [buf])
    finally:
        src.flags = old
    return pw.write(t, [buf[:got]]) if got else 0


def _offset(t, ptr: int) -> int:
    off = s64(t.mm.read_u64(ptr))
    if off < 0:
        raise SyscallError(errno.EINVAL)
    return off


def _readable_source(f: File) -> bool:
    """Does Linux give `f` a splice_read?  Files, sockets and devices do; pipes and directories not."""
    return not isinstance(f, PipeFile) and not (f.dentry is not None and f.dentry.inode.is_dir)


@syscall("splice", Support.PARTIAL, "copies through a Sentry buffer (no page moving); SPLICE_F_MOVE/MORE are hints")
def splice(t, fd_in, off_in, fd_out, off_out, length, flags):
    """splice(2)."""
    flags = flags & 0xFFFFFFFF
    if flags & ~SPLICE_F_ALL:
        raise SyscallError(errno.EINVAL)
    src = t.fds.get_io(s32(fd_in))
    dst = t.fds.get_io(s32(fd_out))
    if not src.readable or not dst.writable:
        raise SyscallError(errno.EBADF)
    if length == 0:
        return 0
    count = min(length, MAX_RW)
    nonblock = bool(flags & SPLICE_F_NONBLOCK)
    in_pipe, out_pipe = isinstance(src, PipeFile), isinstance(dst, PipeFile)
    if in_pipe and out_pipe:
        if off_in or off_out:
            raise SyscallError(errno.ESPIPE)
        if src.pipe is dst.pipe:
            raise SyscallError(errno.EINVAL)
        return from_pipe(t, src, dst, count, None, nonblock)
    if in_pipe:
        if off_in:
            raise SyscallError(errno.ESPIPE)
        out_pos = None
        if off_out:
            if not positioned(dst):
                raise SyscallError(errno.ESPIPE)
            out_pos = _offset(t, off_out)
        if dst.flags & O_APPEND:
            raise SyscallError(errno.EINVAL)
        n = from_pipe(t, src, dst, count, out_pos, nonblock)
        if off_out:
            t.mm.write_u64(off_out, out_pos + n)
        return n
    if out_pipe:
        if off_out:
            raise SyscallError(errno.ESPIPE)
        in_pos = None
        if off_in:
            if not positioned(src):
                raise SyscallError(errno.ESPIPE)
            in_pos = _offset(t, off_in)
        if not _readable_source(src):
            raise SyscallError(errno.EINVAL)
        n = to_pipe(t, src, dst, count, in_pos, nonblock)
        if off_in:
            t.mm.write_u64(off_in, in_pos + n)
        return n
    raise SyscallError(errno.EINVAL)


@syscall("tee")
def tee(t, fd_in, fd_out, length, flags):
    """tee(2): copy bytes from one pipe to another without consuming them."""
    flags = flags & 0xFFFFFFFF
    if flags & ~SPLICE_F_ALL:
        raise SyscallError(errno.EINVAL)
    if length == 0:
        return 0
    src = t.fds.get_io(s32(fd_in))
    dst = t.fds.get_io(s32(fd_out))
    if not src.readable or not dst.writable:
        raise SyscallError(errno.EBADF)
    if not isinstance(src, PipeFile) or not isinstance(dst, PipeFile) or src.pipe is dst.pipe:
        raise SyscallError(errno.EINVAL)
    nonblock = bool(flags & SPLICE_F_NONBLOCK)
    if not _wait_for_data(t, src, nonblock):
        return 0
    room = _wait_for_room(t, dst, nonblock)
    data = memoryview(bytes(src.pipe.buf[:min(length, MAX_RW, room)]))
    return dst.write(t, [data])


@syscall("vmsplice", Support.PARTIAL, "copies (SPLICE_F_GIFT is a hint; the pages are never shared with the pipe)")
def vmsplice(t, fd, iov, nr_segs, flags):
    """vmsplice(2): application memory into a pipe's write end, or out of its read end."""
    flags = flags & 0xFFFFFFFF
    if flags & ~SPLICE_F_ALL:
        raise SyscallError(errno.EINVAL)
    f = t.fds.get_io(s32(fd))
    if not f.writable and not f.readable:
        raise SyscallError(errno.EBADF)
    to_pipe_ = f.writable
    views = iov_views(t, iov, nr_segs, not to_pipe_)
    if not views:
        return 0
    if not isinstance(f, PipeFile):
        raise SyscallError(errno.EBADF)
    old = f.flags
    if flags & SPLICE_F_NONBLOCK:
        f.flags |= O_NONBLOCK
    try:
        return f.write(t, views) if to_pipe_ else f.read(t, views)
    finally:
        f.flags = old


@syscall("sendfile", Support.PARTIAL, "to a pipe from any readable file, socket or device; to anything else from "
         "a regular file (as Linux); copies through a Sentry buffer")
def sendfile(t, out_fd, in_fd, offset_ptr, count):
    """sendfile(2), in fs/read_write.c do_sendfile's order of checks."""
    src = t.fds.get_io(s32(in_fd))
    if not src.readable:
        raise SyscallError(errno.EBADF)
    if offset_ptr and not positioned(src):
        raise SyscallError(errno.ESPIPE)
    pos = _offset(t, offset_ptr) if offset_ptr else None
    dst = t.fds.get_io(s32(out_fd))
    if not dst.writable:
        raise SyscallError(errno.EBADF)
    count = min(count, MAX_RW)
    if isinstance(dst, PipeFile):
        if not _readable_source(src):
            raise SyscallError(errno.EINVAL)
        if count == 0:
            return 0
        n = to_pipe(t, src, dst, count, pos, False)
    else:
        if dst.flags & O_APPEND:
            raise SyscallError(errno.EINVAL)
        d = src.dentry
        if d is None or (d.inode.mode & 0o170000) not in (0o100000, 0o060000):
            raise SyscallError(errno.EINVAL)
        if count == 0:
            return 0
        n = _file_to_file(t, src, dst, count, pos if pos is not None else src.offset)
        if pos is None:
            src.offset += n
    if offset_ptr:
        t.mm.write_u64(offset_ptr, pos + n)
    return n


def _file_to_file(t, src: File, dst: File, count: int, pos: int) -> int:
    """Copy from a regular file at `pos` to `dst`'s position; stops short when the destination does."""
    from sentry.task import Blocked
    done = 0
    buf = memoryview(bytearray(min(count, CHUNK)))
    while done < count:
        want = min(count - done, len(buf))
        got = src.pread(t, [buf[:want]], pos + done)
        if got == 0:
            break
        try:
            put = dst.write(t, [buf[:got]])
        except (Blocked, SyscallError):
            if done:
                break
            raise
        done += put
        if put < got:
            break
    return done
