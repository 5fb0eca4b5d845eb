"""sendmmsg and recvmmsg: several messages in one call, each through sendmsg/recvmsg (sockets.py).

As net/socket.c __sys_sendmmsg/do_recvmmsg: at most UIO_MAXIOV (1024) messages
are handled per call (more is truncated, not an error); each message's byte
count lands in its `msg_len`; an error after at least one message went
through ends the call with that count.  The Sentry runs a syscall again from
the start after it parks, so a message that would block after the first is
not waited for: the call returns the messages done so far (Linux would wait;
both are results Linux documents, and callers loop on the count).
MSG_WAITFORONE makes every receive after the first non-blocking; recvmmsg's
timeout, as in Linux, is checked only after each received message.
"""
from __future__ import annotations

import errno
import time as _time

from sentry.errors import SyscallError
from sentry.syscalls import sockets
from sentry.syscalls.args import s32, s64, u32
from sentry.syscalls.registry import syscall

UIO_MAXIOV = 1024
MMSGHDR_SIZE = 64            # struct msghdr (56) + unsigned msg_len, padded
MSG_LEN_OFFSET = 56
MSG_DONTWAIT, MSG_WAITFORONE = 0x40, 0x10000


def _each(t, msgvec: int, vlen: int, flags: int, one, deadline: float | None = None) -> int:
    from sentry.task import Blocked
    vlen = min(u32(vlen), UIO_MAXIOV)
    done = 0
    for i in range(vlen):
        hdr = msgvec + i * MMSGHDR_SIZE
        f = flags | (MSG_DONTWAIT if done and flags & MSG_WAITFORONE else 0)
        try:
            n = one(t, hdr, f & ~MSG_WAITFORONE)
        except (Blocked, SyscallError):
            if done:
                break
            raise
        t.mm.write_u32(hdr + MSG_LEN_OFFSET, n)
        done += 1
        if deadline is not None and _time.monotonic() >= deadline:
            break
    return done


@syscall("sendmmsg")
def sendmmsg(t, fd, msgvec, vlen, flags):
    """sendmmsg(2)."""
    fd, flags = s32(fd), u32(flags)
    sockets._sock(t, fd)                        # EBADF / ENOTSOCK before anything is read
    return _each(t, msgvec, vlen, flags, lambda t, hdr, f: sockets.sendmsg(t, fd, hdr, f))


@syscall("recvmmsg")
def recvmmsg(t, fd, msgvec, vlen, flags, timeout):
    """recvmmsg(2)."""
    fd, flags = s32(fd), u32(flags)
    sockets._sock(t, fd)
    deadline = None
    if timeout:
        sec, nsec = s64(t.mm.read_u64(timeout)), s64(t.mm.read_u64(timeout + 8))
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            raise SyscallError(errno.EINVAL)
        deadline = _time.monotonic() + sec + nsec / 1e9
    return _each(t, msgvec, vlen, flags, lambda t, hdr, f: sockets.recvmsg(t, fd, hdr, f), deadline)
