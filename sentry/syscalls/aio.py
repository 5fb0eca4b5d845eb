"""Linux AIO (io_setup, io_submit, io_getevents, io_pgetevents, io_cancel, io_destroy) as
synchronous completion.

Each request is carried out while io_submit runs, through the same file objects
pread/pwrite/fsync use, and its completion (struct io_event) is queued on the
context; io_getevents takes completions and waits (with its timeout) only for
requests another thread has yet to submit.  A request that would block (a read
from an empty pipe) completes with -EAGAIN instead of stalling the submitter.
IOCB_FLAG_RESFD signals the given eventfd per completion, as fs/aio.c does.

A context belongs to its address space (`mm.aio_contexts`), as Linux's
mm->ioctx_table: not inherited by fork, gone at exec.  Its id is the address
of a read-only page mapped for it, so ids are unique and look like Linux's (the
address of the completion ring); that page's ring header is zero, which tells
libaio to use the syscalls rather than read the ring itself.
"""
from __future__ import annotations

import errno
import struct

from sentry.errors import SyscallError
from sentry.syscalls.args import TIMESPEC, s32, s64, ts_ns
from sentry.syscalls.registry import Support, syscall
from sentry.waitq import WaitQueue

IOCB = struct.Struct("<QIiHhIQQqQII")   # data, key, rw_flags, opcode, reqprio, fildes, buf, nbytes, offset, reserved2, flags, resfd
IO_EVENT = struct.Struct("<QQqq")
IOCB_CMD_PREAD, IOCB_CMD_PWRITE, IOCB_CMD_FSYNC, IOCB_CMD_FDSYNC = 0, 1, 2, 3
IOCB_CMD_POLL, IOCB_CMD_NOOP, IOCB_CMD_PREADV, IOCB_CMD_PWRITEV = 5, 6, 7, 8
IOCB_FLAG_RESFD, IOCB_FLAG_IOPRIO = 1, 2
AIO_MAX_NR = 65536
PAGE = 4096


class AioContext:
    def __init__(self, nr_events: int) -> None:
        self.nr_events = nr_events
        self.done: list[bytes] = []
        self.waitq = WaitQueue()


def _contexts(mm) -> dict[int, AioContext]:
    if not hasattr(mm, "aio_contexts"):
        mm.aio_contexts = {}
    return mm.aio_contexts


def _ctx(t, ctx_id: int) -> AioContext:
    ctx = _contexts(t.mm).get(ctx_id)
    if ctx is None:
        raise SyscallError(errno.EINVAL)
    return ctx


@syscall("io_setup")
def io_setup(t, nr_events, ctxp):
    """io_setup(2): EINVAL for 0 or too many events or a non-zero *ctxp."""
    nr = s32(nr_events)
    if nr <= 0 or nr > AIO_MAX_NR:
        raise SyscallError(errno.EINVAL)
    if t.mm.read_u64(ctxp) != 0:
        raise SyscallError(errno.EINVAL)
    ctx_id = t.mm.mmap_anon(0, PAGE, 1, 0x22, name="[aio]")     # PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS
    _contexts(t.mm)[ctx_id] = AioContext(nr)
    t.mm.write_u64(ctxp, ctx_id)
    return 0


@syscall("io_destroy")
def io_destroy(t, ctx_id):
    """io_destroy(2)."""
    ctx = _contexts(t.mm).pop(ctx_id, None)
    if ctx is None:
        raise SyscallError(errno.EINVAL)
    t.mm.munmap(ctx_id, PAGE)
    ctx.waitq.wake_all()
    return 0


def _run(t, opcode: int, fd: int, buf: int, nbytes: int, offset: int, rw_flags: int) -> int:
    """One request, done now; the result an io_event carries (bytes, or -errno)."""
    from sentry.syscalls import vectored
    from sentry.task import Blocked
    from sentry.vfs.file import O_NONBLOCK
    f = t.fds.get_io(fd)
    old = f.flags
    f.flags |= O_NONBLOCK
    try:
        if opcode in (IOCB_CMD_PREAD, IOCB_CMD_PWRITE):
            write = opcode == IOCB_CMD_PWRITE
            views = t.mm.iovecs(buf, nbytes, not write) if nbytes else []
            if not (f.writable if write else f.readable):
                return -errno.EBADF
            if not vectored.positioned(f):
                return -errno.ESPIPE
            return f.pwrite(t, views, offset) if write else f.pread(t, views, offset)
        if opcode in (IOCB_CMD_PREADV, IOCB_CMD_PWRITEV):
            return vectored._rw(t, fd, buf, nbytes, offset, rw_flags, opcode == IOCB_CMD_PWRITEV)
        if opcode in (IOCB_CMD_FSYNC, IOCB_CMD_FDSYNC):
            from sentry.syscalls.fsdata import _fsync
            return _fsync(t, fd)
        if opcode == IOCB_CMD_NOOP:
            return 0
    except SyscallError as e:
        return -e.errno
    except Blocked:
        return -errno.EAGAIN
    finally:
        f.flags = old
    return -errno.EINVAL


@syscall("io_submit", Support.PARTIAL, "PREAD PWRITE PREADV PWRITEV FSYNC FDSYNC, done synchronously "
         "(a request that would block completes with -EAGAIN); IOCB_CMD_POLL is EINVAL (NOOP is EINVAL in Linux too)")
def io_submit(t, ctx_id, nr, iocbpp):
    """io_submit(2): returns how many were submitted; an error only if the first one fails."""
    from sentry import pipe
    ctx = _ctx(t, ctx_id)
    nr = s64(nr)
    if nr < 0:
        raise SyscallError(errno.EINVAL)
    nr = min(nr, ctx.nr_events)
    done = 0
    for i in range(nr):
        try:
            addr = t.mm.read_u64(iocbpp + 8 * i)
            (data, _key, rw_flags, opcode, _prio, fd, buf, nbytes, offset, reserved2, flags,
             resfd) = t.mm.read_struct(addr, IOCB)
            if reserved2 or flags & ~(IOCB_FLAG_RESFD | IOCB_FLAG_IOPRIO):
                raise SyscallError(errno.EINVAL)
            t.fds.get(s32(fd))                                        # EBADF at submission
            efile = None
            if flags & IOCB_FLAG_RESFD:
                efile = t.fds.get(s32(resfd))
                if not isinstance(efile, pipe.EventFile):
                    raise SyscallError(errno.EINVAL)
            if opcode not in (IOCB_CMD_PREAD, IOCB_CMD_PWRITE, IOCB_CMD_FSYNC, IOCB_CMD_FDSYNC,
                              IOCB_CMD_PREADV, IOCB_CMD_PWRITEV):              # NOOP too is EINVAL in Linux
                raise SyscallError(errno.EINVAL)
        except SyscallError:
            if done:
                break
            raise
        res = _run(t, opcode, s32(fd), buf, nbytes, offset, rw_flags)
        ctx.done.append(IO_EVENT.pack(data, addr, res, 0))
        if efile is not None:
            efile.count = min(efile.count + 1, 0xFFFFFFFFFFFFFFFE)
            efile.waitq.wake_all()
        done += 1
    ctx.waitq.wake_all()
    return done


def _getevents(t, ctx_id: int, min_nr: int, nr: int, events: int, timeout: int) -> int:
    from sentry.syscalls.poll import _deadline
    ctx = _ctx(t, ctx_id)
    min_nr, nr = s64(min_nr), s64(nr)
    if min_nr < 0 or nr < 0 or min_nr > nr:
        raise SyscallError(errno.EINVAL)
    timeout_ns = None
    if timeout:
        timeout_ns = ts_ns(*t.mm.read_struct(timeout, TIMESPEC))
    deadline = _deadline(t, timeout_ns)
    if len(ctx.done) < min_nr and not t.timed_out and (timeout_ns is None or timeout_ns > 0):
        import time as _time
        if deadline is None or deadline > _time.monotonic():
            t.block([ctx.waitq], deadline=deadline)
    take, ctx.done = ctx.done[:nr], ctx.done[nr:]
    if take:
        t.mm.write(events, b"".join(take))
    return len(take)


@syscall("io_getevents")
def io_getevents(t, ctx_id, min_nr, nr, events, timeout):
    """io_getevents(2)."""
    return _getevents(t, ctx_id, min_nr, nr, events, timeout)


@syscall("io_pgetevents")
def io_pgetevents(t, ctx_id, min_nr, nr, events, timeout, usig):
    """io_pgetevents(2): io_getevents with a signal mask for the wait ({sigmask, sigsetsize})."""
    from sentry.syscalls import poll
    if usig:
        mask, size = struct.unpack("<QQ", t.mm.read(usig, 16))
        poll._with_sigmask(t, mask, size)
        try:
            r = _getevents(t, ctx_id, min_nr, nr, events, timeout)
        except SyscallError:
            poll._restore_sigmask(t)
            raise
        poll._restore_sigmask(t)
        return r
    return _getevents(t, ctx_id, min_nr, nr, events, timeout)


@syscall("io_cancel")
def io_cancel(t, ctx_id, iocb, result):
    """io_cancel(2): every request completed when submitted, so none is in flight: EINVAL (as for a
    request Linux has already completed)."""
    _ctx(t, ctx_id)
    t.mm.read_struct(iocb, IOCB)
    raise SyscallError(errno.EINVAL)
