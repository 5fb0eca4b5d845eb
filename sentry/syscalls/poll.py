"""pipe, pipe2, eventfd, and readiness: poll, ppoll, select, pselect6.

Readiness is asked of each File (`readiness(events)`); a caller that must
wait parks on every file's wait queues (Sentry files) and host fds (stdio),
with a deadline, and re-checks everything when any of them fires.
"""
from __future__ import annotations

import errno
import struct
import time as _time

from sentry.errors import SyscallError
from sentry.pipe import (POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLPRI, POLLRDNORM, POLLWRNORM,
                         EventFile, host_readiness, make_pipe)
from sentry.syscalls.args import s32, s64, u32
from sentry.syscalls.registry import syscall
from sentry.syscalls.args import read_select_timeval
from sentry.syscalls.time import read_timespec
from sentry.task import Deadline
from sentry.vfs.file import O_CLOEXEC, O_DIRECT, O_NONBLOCK, HostFDFile

POLLFD = struct.Struct("<ihh")


@syscall("pipe")
def pipe(t, fds):
    """pipe(2)."""
    return pipe2(t, fds, 0)


@syscall("pipe2")
def pipe2(t, fds, flags):
    """pipe2(2)."""
    flags = u32(flags)
    if flags & ~(O_CLOEXEC | O_NONBLOCK | O_DIRECT):
        raise SyscallError(errno.EINVAL)
    r, w = make_pipe(flags)
    t.fds.install_pair(t, r, w, bool(flags & O_CLOEXEC), fds)
    return 0


@syscall("eventfd2")
def eventfd2(t, initval, flags):
    """eventfd2(2)."""
    flags = u32(flags)
    if flags & ~(O_CLOEXEC | O_NONBLOCK | 1):
        raise SyscallError(errno.EINVAL)
    return t.fds.install(EventFile(u32(initval), flags), bool(flags & O_CLOEXEC), limit=t.tg.rlimits[7][0])


@syscall("eventfd")
def eventfd(t, initval):
    """eventfd(2)."""
    return eventfd2(t, initval, 0)


def file_readiness(f, events: int) -> int:
    fn = getattr(f, "readiness", None)
    if fn is not None:
        return fn(events)
    if isinstance(f, HostFDFile) and not f.seekable:
        return host_readiness(f.host_fd, events) & (events | POLLERR | POLLHUP)
    # Regular files and devices are always ready.
    return (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM) & events


def _park(t, files, deadline) -> None:
    queues, host = [], []
    for f in files:
        qs = getattr(f, "wait_queues", None)
        hf = getattr(f, "host_fds", None)
        if qs is not None:
            queues += qs()
        elif hf is not None:
            host += hf()
        elif isinstance(f, HostFDFile) and not f.seekable:
            host.append((f.host_fd, POLLIN | POLLOUT | POLLPRI))
    t.block(queues, deadline=deadline, host_fd=host or None)


def _deadline(t, ns: int | None):
    """The wait's deadline, fixed when it began and kept across its parks and a restart after a
    stop (the `Deadline` continuation, sentry/task.py)."""
    c = t.resume(Deadline)
    if c is None:
        c = t.begin(Deadline(None if ns is None else _time.monotonic() + ns / 1e9))
    return c.deadline


def do_poll(t, fds_addr: int, nfds: int, timeout_ns: int | None) -> int:
    if nfds > t.tg.rlimits[7][0] and nfds > 16:
        raise SyscallError(errno.EINVAL)
    raw = t.mm.read(fds_addr, POLLFD.size * nfds) if nfds else b""
    entries = [POLLFD.unpack_from(raw, i * POLLFD.size) for i in range(nfds)]
    deadline = _deadline(t, timeout_ns)
    out = bytearray(raw)
    ready = 0
    files = []
    for i, (fd, events, _) in enumerate(entries):
        rev = 0
        if fd >= 0:
            f = t.fds.files.get(fd)
            if f is None:
                rev = POLLNVAL
            else:
                rev = file_readiness(f, events & 0xFFFF)
                files.append(f)
        struct.pack_into("<h", out, i * POLLFD.size + 6, rev)
        if rev:
            ready += 1
    if ready or (deadline is not None and deadline <= _time.monotonic()) or t.timed_out:
        t.mm.write(fds_addr, bytes(out))
        return ready
    _park(t, files, deadline)


@syscall("poll")
def poll(t, fds, nfds, timeout):
    """poll(2)."""
    ms = s32(timeout)
    return do_poll(t, fds, u32(nfds), None if ms < 0 else ms * 1_000_000)


def _with_sigmask(t, sigmask_addr: int, size: int) -> None:
    """ppoll/pselect6: install the temporary mask (restored when the call returns or a handler runs)."""
    if sigmask_addr and t.saved_sigmask is None:
        from sentry.signals import UNBLOCKABLE
        if size != 8:
            raise SyscallError(errno.EINVAL)
        t.saved_sigmask = t.sigmask
        t.sigmask = new = t.mm.read_u64(sigmask_addr) & ~UNBLOCKABLE
        # A pending signal the temporary mask unblocks ends the call at once
        # with EINTR; the saved mask comes back when its handler returns.
        for pend in (t.pending, t.tg.shared_pending):
            if any(not (new >> (sig - 1)) & 1 for sig in pend):
                raise SyscallError(errno.EINTR)


def _restore_sigmask(t) -> None:
    if t.saved_sigmask is not None:
        t.sigmask, t.saved_sigmask = t.saved_sigmask, None


def _write_time_left(t, tsp: int) -> None:
    """ppoll/pselect6 write the time left back into their timespec, as Linux does."""
    st = t.resume(Deadline)
    if tsp and st is not None and st.deadline is not None:
        left = max(0, int((st.deadline - _time.monotonic()) * 1e9))
        t.mm.write(tsp, struct.pack("<qq", left // 1_000_000_000, left % 1_000_000_000))


@syscall("ppoll")
def ppoll(t, fds, nfds, tsp, sigmask, sigsetsize):
    """ppoll(2)."""
    ns = read_timespec(t, tsp) if tsp and t.resume(Deadline) is None else None
    _with_sigmask(t, sigmask, sigsetsize)
    try:
        r = do_poll(t, fds, u32(nfds), ns)
    except SyscallError as e:
        if e.errno != errno.EINTR:
            _restore_sigmask(t)
        raise
    _restore_sigmask(t)
    _write_time_left(t, tsp)
    return r


def do_select(t, nfds: int, rp: int, wp: int, ep: int, timeout_ns: int | None) -> int:
    if nfds < 0 or nfds > 1024 * 1024:
        raise SyscallError(errno.EINVAL)
    nbytes = ((nfds + 63) // 64) * 8
    sets = [int.from_bytes(t.mm.read(p, nbytes), "little") if p else 0 for p in (rp, wp, ep)]
    deadline = _deadline(t, timeout_ns)
    res = [0, 0, 0]
    ready = 0
    files = []
    for fd in range(nfds):
        want = ((sets[0] >> fd) & 1) | (((sets[1] >> fd) & 1) << 1) | (((sets[2] >> fd) & 1) << 2)
        if not want:
            continue
        f = t.fds.files.get(fd)
        if f is None:
            raise SyscallError(errno.EBADF)
        files.append(f)
        rev = file_readiness(f, POLLIN | POLLOUT | POLLPRI)
        if want & 1 and rev & (POLLIN | POLLHUP | POLLERR):
            res[0] |= 1 << fd
            ready += 1
        if want & 2 and rev & (POLLOUT | POLLERR):
            res[1] |= 1 << fd
            ready += 1
        if want & 4 and rev & POLLPRI:
            res[2] |= 1 << fd
            ready += 1
    if ready or (deadline is not None and deadline <= _time.monotonic()) or t.timed_out:
        for p, v in zip((rp, wp, ep), res):
            if p:
                t.mm.write(p, v.to_bytes(nbytes, "little"))
        return ready
    _park(t, files, deadline)


@syscall("select")
def select_(t, nfds, rp, wp, ep, tvp):
    """select(2): the timeout is updated with the time left, as Linux does."""
    ns = None
    if tvp:
        ns = read_select_timeval(t, tvp)
    r = do_select(t, s32(nfds), rp, wp, ep, ns)
    st = t.resume(Deadline)
    if tvp and st is not None and st.deadline is not None:
        left = max(0, int((st.deadline - _time.monotonic()) * 1e6))
        t.mm.write(tvp, struct.pack("<qq", left // 1_000_000, left % 1_000_000))
    return r


@syscall("pselect6")
def pselect6(t, nfds, rp, wp, ep, tsp, sig):
    """pselect6(2): the last argument points at {const sigset_t *ss; size_t ss_len}."""
    ns = read_timespec(t, tsp) if tsp and t.resume(Deadline) is None else None
    if sig and t.saved_sigmask is None:
        ss, sslen = t.mm.read_struct(sig, struct.Struct("<QQ"))
        _with_sigmask(t, ss, sslen)
    try:
        r = do_select(t, s32(nfds), rp, wp, ep, ns)
    except SyscallError as e:
        if e.errno != errno.EINTR:
            _restore_sigmask(t)
        raise
    _restore_sigmask(t)
    _write_time_left(t, tsp)
    return r


# -- epoll ------------------------------------------------------------------------------

from sentry.epoll import EPOLL_EVENT, EpollFile  # noqa: E402


@syscall("epoll_create1")
def epoll_create1(t, flags):
    """epoll_create1(2)."""
    flags = u32(flags)
    if flags & ~O_CLOEXEC:
        raise SyscallError(errno.EINVAL)
    return t.fds.install(EpollFile(0), bool(flags & O_CLOEXEC), limit=t.tg.rlimits[7][0])


@syscall("epoll_create")
def epoll_create(t, size):
    """epoll_create(2): size must be positive."""
    if s32(size) <= 0:
        raise SyscallError(errno.EINVAL)
    return epoll_create1(t, 0)


@syscall("epoll_ctl")
def epoll_ctl(t, epfd, op, fd, event):
    """epoll_ctl(2)."""
    ep = t.fds.get(s32(epfd))
    target = t.fds.get(s32(fd))
    if not isinstance(ep, EpollFile):
        raise SyscallError(errno.EINVAL)
    if target.dentry is not None and not hasattr(target, "readiness") and not isinstance(target, HostFDFile):
        raise SyscallError(errno.EPERM)          # regular files cannot be watched
    if isinstance(target, HostFDFile) and target.seekable:
        raise SyscallError(errno.EPERM)
    op = s32(op)
    events, data = (t.mm.read_struct(event, EPOLL_EVENT) if op != 2 else (0, 0))
    ep.ctl(op, s32(fd), target, events, data)
    return 0


def _epoll_wait(t, epfd: int, events: int, maxevents: int, timeout_ns: int | None) -> int:
    ep = t.fds.get(s32(epfd))
    if not isinstance(ep, EpollFile):
        raise SyscallError(errno.EINVAL)
    maxevents = s32(maxevents)
    if maxevents <= 0 or maxevents > 0x7FFFFFFF // EPOLL_EVENT.size:
        raise SyscallError(errno.EINVAL)
    deadline = _deadline(t, timeout_ns)
    ready = ep.ready(maxevents)
    if ready:
        t.mm.write(events, b"".join(EPOLL_EVENT.pack(ev, data) for ev, data in ready))
        return len(ready)
    if (deadline is not None and deadline <= _time.monotonic()) or t.timed_out:
        return 0
    t.block(ep.wait_queues(), deadline=deadline, host_fd=ep.host_fds() or None)


@syscall("epoll_wait")
def epoll_wait(t, epfd, events, maxevents, timeout):
    """epoll_wait(2)."""
    ms = s32(timeout)
    return _epoll_wait(t, epfd, events, maxevents, None if ms < 0 else ms * 1_000_000)


@syscall("epoll_pwait")
def epoll_pwait(t, epfd, events, maxevents, timeout, sigmask, sigsetsize):
    """epoll_pwait(2)."""
    ms = s32(timeout)
    _with_sigmask(t, sigmask, sigsetsize)
    try:
        r = _epoll_wait(t, epfd, events, maxevents, None if ms < 0 else ms * 1_000_000)
    except SyscallError:
        _restore_sigmask(t)
        raise
    _restore_sigmask(t)
    return r
