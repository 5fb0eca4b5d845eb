"""AF_UNIX sockets, implemented entirely in the Sentry (no host socket is involved).

Names: a pathname is bound by creating a socket node in the sandbox's own
VFS (so `ls -l` shows it, and unlink removes the name); the listening socket
is found again through that node's identity (filesystem device and inode).
Abstract names (leading NUL) live in a table of the kernel.  Autobind gives
a 5-hex-digit abstract name, as Linux.

Data: each socket has a receive queue of messages (bytes, the Files of
SCM_RIGHTS, the sender's credentials, its address).  SOCK_STREAM reads run
across messages but stop before one that carries descriptors (as Linux stops
at an skb with different ancillary data); SOCK_SEQPACKET and SOCK_DGRAM read
one message per call, truncating with MSG_TRUNC.  Queues are bounded (bytes
for stream/seqpacket, messages for datagrams) so writers block, or get
EAGAIN, as on Linux.

A blocking stream send queues what fits and waits for room for the rest; a
recv(MSG_WAITALL) waits until the buffer is full.  Both record the bytes moved
in a `Transfer` continuation (sentry/task.py), so a signal returns that count,
as Linux does, and only a call that moved nothing fails with EINTR.

References: the Files of an SCM_RIGHTS message in flight hold one reference
each (`hold`/`put`, sentry/vfs/file.py), taken by `send` and either dropped
with the message (socket released) or handed to the receiver: `recv` returns
files whose references the caller owns -- the message's own when it is
consumed, fresh ones for MSG_PEEK -- and the caller installs them or puts them
back (read(2), which has no room for descriptors, discards them).
"""
from __future__ import annotations

import errno
import os
import struct
from collections import deque

from sentry.errors import SyscallError
from sentry.pipe import POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM
from sentry.task import Transfer
from sentry.vfs.file import O_NONBLOCK, File, gather, hold, put, scatter as _scatter
from sentry.vfs.inode import Stat
from sentry.waitq import WaitQueue

SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET = 1, 2, 5
AF_UNIX = 1
POLLRDHUP = 0x2000
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT, MSG_WAITALL, MSG_NOSIGNAL, MSG_CMSG_CLOEXEC = 0x2, 0x20, 0x40, 0x100, 0x4000, 0x40000000
RCVBUF = 212992
MAX_DGRAM_QLEN = 512
_ino = [5000]


class Message:
    __slots__ = ("data", "files", "creds", "addr")

    def __init__(self, data: bytes, files: list, creds: tuple[int, int, int], addr: bytes) -> None:
        self.data = data
        self.files = files
        self.creds = creds
        self.addr = addr


class UnixSocket(File):
    def __init__(self, kernel, stype: int, flags: int) -> None:
        super().__init__(2 | (flags & O_NONBLOCK))
        self.kernel = kernel
        self.stype = stype
        self.rq: deque[Message] = deque()
        self.rq_bytes = 0
        self.waitq = WaitQueue()
        self.name: bytes | None = None        # sockaddr_un path bytes as bound (b"\0..." abstract)
        self.bound_key = None
        self.peer: UnixSocket | None = None
        self.listening = False
        self.backlog = 0
        self.accept_q: deque[UnixSocket] = deque()
        self.shut_rd = self.shut_wr = False
        self.peer_gone = False
        self.connected = False
        self.peer_creds = (0, 0, 0)
        self.passcred = False
        _ino[0] += 1
        self.ino = _ino[0]
        self.error = 0
        self.sndbuf = RCVBUF                  # SO_SNDBUF: bounds what this socket has in flight

    # -- File ---------------------------------------------------------------------

    def stat(self) -> Stat:
        return Stat(self.ino, 0x9, 0o140777, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0)

    def proc_name(self) -> bytes:
        return f"socket:[{self.ino}]".encode()

    def wait_queues(self) -> list:
        return [self.waitq]

    def readiness(self, events: int) -> int:
        r = 0
        if self.listening:
            if self.accept_q:
                r |= POLLIN | POLLRDNORM
            return r & events
        if self.rq or self.shut_rd or self.peer_gone:
            r |= POLLIN | POLLRDNORM
        if self.error:
            r |= POLLERR
        if self.peer_gone or self.shut_rd:
            r |= POLLRDHUP
        if (self.shut_rd and self.shut_wr) or (self.peer_gone and self.stype != SOCK_DGRAM):
            r |= POLLHUP
        if self._can_send():
            r |= POLLOUT | POLLWRNORM
        return r & (events | POLLERR | POLLHUP)

    def _can_send(self) -> bool:
        if self.stype == SOCK_DGRAM:
            p = self.peer
            return p is None or len(p.rq) < MAX_DGRAM_QLEN
        p = self.peer
        return self.connected and p is not None and not self.peer_gone and p.rq_bytes < min(RCVBUF, self.sndbuf)

    def read(self, t, dsts) -> int:
        n, files, _, _ = self.recv(t, dsts, 0)
        put_files(files)              # read(2) has no room for descriptors: they are closed
        return n

    def write(self, t, srcs) -> int:
        return self.send(t, gather(srcs), [], None, 0)

    def release(self) -> None:
        p = self.peer
        if p is not None and p.peer is self and self.stype != SOCK_DGRAM and self.rq:
            p.error = errno.ECONNRESET        # unix_release_sock: closed with data unread
        for m in self.rq:
            put_files(m.files)
            m.files = []
        self.rq.clear()
        if self.bound_key is not None:
            self.kernel.unix_names.pop(self.bound_key, None)
        for pending in self.accept_q:
            pending.release()
        self.accept_q.clear()
        p = self.peer
        if p is not None and p.peer is self:
            p.peer_gone = True
            p.waitq.wake_all()
        self.waitq.wake_all()

    # -- naming -------------------------------------------------------------------

    def bind(self, t, key, name: bytes) -> None:
        if self.name is not None:
            raise SyscallError(errno.EINVAL)
        names = self.kernel.unix_names
        if key in names:
            raise SyscallError(errno.EADDRINUSE)
        names[key] = self
        self.name = name
        self.bound_key = key

    def autobind(self) -> None:
        if self.name is not None:
            return
        names = self.kernel.unix_names
        n = 0
        while ("abstract", b"\0" + f"{n:05x}".encode()) in names:
            n += 1
        name = b"\0" + f"{n:05x}".encode()
        self.bind(None, ("abstract", name), name)

    def listen(self, t, backlog: int) -> None:
        if self.stype == SOCK_DGRAM:
            raise SyscallError(errno.EOPNOTSUPP)
        if self.connected:
            raise SyscallError(errno.EINVAL)
        if self.name is None:
            raise SyscallError(errno.EINVAL)
        self.listening = True
        self.listen_creds = (t.tg.tgid, t.tg.creds.euid, t.tg.creds.egid)
        self.backlog = max(0, min(backlog, 4096))
        self.waitq.wake_all()

    # -- connections -----------------------------------------------------------------

    def connect(self, t, target: "UnixSocket") -> None:
        if self.stype == SOCK_DGRAM:
            if target.stype != SOCK_DGRAM:
                raise SyscallError(errno.EPROTOTYPE)
            self.peer = target
            self.connected = True
            return
        if self.listening:
            raise SyscallError(errno.EINVAL)
        if self.connected:
            raise SyscallError(errno.EISCONN)
        if target.stype != self.stype:
            raise SyscallError(errno.EPROTOTYPE)
        if not target.listening:
            raise SyscallError(errno.ECONNREFUSED)
        if len(target.accept_q) > target.backlog:
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN)
            t.block([target.waitq])
        server = UnixSocket(self.kernel, self.stype, 0)
        server.name = target.name
        server.peer, self.peer = self, server
        server.connected = self.connected = True
        me = (t.tg.tgid, t.tg.creds.euid, t.tg.creds.egid)
        server.peer_creds = me
        self.peer_creds = target.listen_creds
        target.accept_q.append(server)
        target.waitq.wake_all()

    def accept(self, t, flags: int) -> "UnixSocket":
        if not self.listening:
            raise SyscallError(errno.EINVAL)
        if not self.accept_q:
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN)
            t.block([self.waitq])
        s = self.accept_q.popleft()
        s.flags = 2 | (flags & O_NONBLOCK)
        self.waitq.wake_all()
        return s

    def shutdown(self, how: int) -> None:
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise SyscallError(errno.EINVAL)
        if not self.connected and self.stype != SOCK_DGRAM:
            raise SyscallError(errno.ENOTCONN)
        if how in (SHUT_RD, SHUT_RDWR):
            self.shut_rd = True
        if how in (SHUT_WR, SHUT_RDWR):
            self.shut_wr = True
            if self.peer is not None:
                self.peer.shut_rd = True          # the peer reads EOF
                self.peer.waitq.wake_all()
        self.waitq.wake_all()

    def take_error(self) -> int:
        """The pending socket error (SO_ERROR), cleared as it is reported."""
        e, self.error = self.error, 0
        return e

    # -- data ------------------------------------------------------------------------

    def send(self, t, data: bytes, files: list, target: "UnixSocket | None", flags: int) -> int:
        """Queue `data` (and `files`, whose references this call owns from now on: they go into
        the first message or are put back) to the peer or `target`; the bytes sent."""
        try:
            return self._send(t, data, files, target, flags)
        finally:
            if files and not (self.sent_files is files):
                put_files(files)
            self.sent_files = None

    sent_files = None

    def _send(self, t, data: bytes, files: list, target, flags: int) -> int:
        from sentry import process
        from sentry import signals as sg
        nonblock = self.flags & O_NONBLOCK or flags & MSG_DONTWAIT
        creds = (t.tg.tgid, t.tg.creds.euid, t.tg.creds.egid)
        if self.stype == SOCK_DGRAM:
            dest = target or self.peer
            if dest is None:
                raise SyscallError(errno.ENOTCONN if target is None else errno.ECONNREFUSED)
            if self.peer is not None and target is not None and target is not self.peer:
                raise SyscallError(errno.EISCONN)
            if dest.peer is not None and dest.peer is not self and dest.connected:
                raise SyscallError(errno.EPERM)
            if len(data) > RCVBUF:
                raise SyscallError(errno.EMSGSIZE)
            if len(dest.rq) >= MAX_DGRAM_QLEN:
                if nonblock:
                    raise SyscallError(errno.EAGAIN)
                t.block([dest.waitq])
            if self.name is None and dest is not self and dest.passcred:
                self.autobind()
            dest.rq.append(Message(data, files, creds, self.name or b""))
            self.sent_files = files
            dest.rq_bytes += len(data)
            dest.waitq.wake_all(POLLIN)
            return len(data)
        if target is not None and not self.connected:
            raise SyscallError(errno.EOPNOTSUPP)
        if not self.connected:
            raise SyscallError(errno.ENOTCONN)
        xfer = t.resume(Transfer)
        done = xfer.done if xfer is not None else 0
        if t.in_syscall and self.error:
            # Woken while waiting for room: the socket's error first (sock_alloc_send_pskb).
            err = self.take_error()
            if done:
                return done
            raise SyscallError(err)
        if self.shut_wr or self.peer_gone or self.peer is None:
            if done:
                return done               # unix_stream_sendmsg: `sent ?: err`, no SIGPIPE then
            if not flags & MSG_NOSIGNAL:
                process.send_to_task(t.kernel, t, sg.SIGPIPE, sg.siginfo(sg.SIGPIPE, sg.SI_USER, pid=t.tg.tgid))
            raise SyscallError(errno.EPIPE)
        p = self.peer
        if self.stype == SOCK_SEQPACKET and len(data) > RCVBUF:
            raise SyscallError(errno.EMSGSIZE)
        total = len(data)
        limit = min(RCVBUF, self.sndbuf)
        if p.rq_bytes >= limit or (self.stype == SOCK_SEQPACKET and limit - p.rq_bytes < total):
            if nonblock:
                if done:
                    return done
                raise SyscallError(errno.EAGAIN)
            t.block([p.waitq])
        if self.stype == SOCK_SEQPACKET:
            p.rq.append(Message(data, files, creds, self.name or b""))
            self.sent_files = files
            p.rq_bytes += total
            p.waitq.wake_all(POLLIN)
            return total
        # Stream: whole "skbs" of up to half the send buffer, while what is in flight is below
        # it (sock_alloc_send_pskb waits only at or above sk_sndbuf), the files with the first.
        skb = max(limit // 2 - 64, 1)
        first = xfer is None or not xfer.files_sent
        while done < total and p.rq_bytes < limit:
            chunk = data[done:done + skb]
            p.rq.append(Message(chunk, files if first else [], creds, self.name or b""))
            if first:
                self.sent_files = files
                first = False
            p.rq_bytes += len(chunk)
            done += len(chunk)
        p.waitq.wake_all(POLLIN)
        if done < total and not nonblock:
            # The rest waits for room; a signal now returns what was sent (Transfer).
            if xfer is None:
                xfer = t.begin(Transfer())
            xfer.done = done
            xfer.files_sent = True
            t.block([p.waitq])
        return done

    def recv(self, t, dsts, flags: int):
        """(bytes read, files, sender creds, sender addr) -- see recvmsg.  The caller owns one
        reference to each file returned (installs it, then puts it back)."""
        if self.listening or (self.stype != SOCK_DGRAM and not self.connected and not self.rq):
            raise SyscallError(errno.EINVAL if self.listening else errno.ENOTCONN)
        peek = bool(flags & MSG_PEEK)
        stream = self.stype == SOCK_STREAM
        xfer = t.resume(Transfer) if stream else None
        done = xfer.done if xfer is not None else 0
        if done:
            dsts = _skip(dsts, done)
        if not self.rq:
            if self.error and not done and not peek:
                raise SyscallError(self.take_error())     # once, before EOF (sock_error)
            if self.shut_rd or self.peer_gone:
                return done, [], (0, 0, 0), b""
            if self.flags & O_NONBLOCK or flags & MSG_DONTWAIT:
                if done:
                    return done, [], (0, 0, 0), b""
                raise SyscallError(errno.EAGAIN)
            t.block([self.waitq])
        space = sum(len(d) for d in dsts)
        if not stream:
            m = self.rq[0]
            n = _scatter(dsts, m.data)
            if peek:
                files = [hold(f) for f in m.files]
            else:
                files, m.files = m.files, []
                self.rq.popleft()
                self.rq_bytes -= len(m.data)
                self.waitq.wake_all(POLLOUT)          # room: senders blocked on our queue
                if self.peer is not None:
                    self.peer.waitq.wake_all(POLLOUT)
            self.last_truncated = len(m.data) > n
            self.last_full_len = len(m.data)
            return n, files, m.creds, m.addr
        # Stream: gather across messages, stopping before one with descriptors.
        out = bytearray()
        files: list = []
        creds = self.rq[0].creds
        i = 0
        q = self.rq
        at_files = False
        while i < len(q) and len(out) < space:
            m = q[i]
            if m.files and (out or files or done):
                at_files = True           # its descriptors go with the next call
                break
            take = min(space - len(out), len(m.data))
            out += m.data[:take]
            if m.files:
                if peek:
                    files = [hold(f) for f in m.files]
                else:
                    files, m.files = m.files, []
            if not peek:
                if take == len(m.data):
                    q.popleft()
                    self.rq_bytes -= take
                    continue
                m.data = m.data[take:]
                self.rq_bytes -= take
                break
            i += 1
        if not peek:
            if self.peer is not None:
                self.peer.waitq.wake_all(POLLOUT)
            self.waitq.wake_all(POLLOUT)
        n = _scatter(dsts, bytes(out))
        self.last_truncated = False
        done += n
        self.last_full_len = done
        if flags & MSG_WAITALL and not peek and n < space and not files and not at_files \
                and not (self.shut_rd or self.peer_gone) and not (self.flags & O_NONBLOCK or flags & MSG_DONTWAIT):
            # MSG_WAITALL: wait for the rest; a signal now returns what arrived (Transfer).
            if xfer is None:
                xfer = t.begin(Transfer())
            xfer.done = done
            t.block([self.waitq])
        return done, files, creds, b""


def _skip(dsts, n: int) -> list:
    """The memoryviews `dsts` after their first `n` bytes."""
    out = []
    for mv in dsts:
        if n >= len(mv):
            n -= len(mv)
            continue
        out.append(mv[n:] if n else mv)
        n = 0
    return out


def put_files(files: list) -> None:
    """Put back one reference to each of `files` (SCM_RIGHTS files dropped unreceived)."""
    for f in files:
        put(f)


def socketpair(kernel, t, stype: int, flags: int) -> tuple[UnixSocket, UnixSocket]:
    a, b = UnixSocket(kernel, stype, flags), UnixSocket(kernel, stype, flags)
    a.peer, b.peer = b, a
    a.connected = b.connected = True
    me = (t.tg.tgid, t.tg.creds.euid, t.tg.creds.egid)
    a.peer_creds = b.peer_creds = me
    return a, b


def parse_sockaddr_un(raw: bytes) -> bytes:
    """The sun_path bytes of a sockaddr_un (abstract names keep their leading NUL)."""
    if len(raw) < 2 or struct.unpack_from("<H", raw)[0] != AF_UNIX:
        raise SyscallError(errno.EINVAL if len(raw) < 2 else errno.EAFNOSUPPORT)
    path = raw[2:]
    if path[:1] == b"\0":
        return path
    return path.split(b"\0", 1)[0]


def pack_sockaddr_un(name: bytes | None) -> bytes:
    return struct.pack("<H", AF_UNIX) + (name or b"") + (b"\0" if name and name[:1] != b"\0" else b"")
