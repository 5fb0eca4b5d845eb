"""AF_INET and AF_INET6 sockets: real host sockets owned by the Sentry.

They live in the sandbox's network namespace (the Sentry's own: a fresh one
with only loopback for --network=none, the host's for --network=host, or the
one the OCI spec names), so the host kernel's TCP/IP stack does the
networking, as with gVisor's host network mode.  Every host socket is
non-blocking; a blocking application call parks its task on the host fd and
re-runs, so one slow peer never stalls the Sentry.  Addresses cross as raw
sockaddr bytes, checked for family and length.
"""
from __future__ import annotations

import errno
import socket
import struct

from sentry.errors import SyscallError
from sentry.pipe import POLLERR, POLLHUP, POLLIN, POLLOUT
from sentry.vfs.file import O_NONBLOCK, File
from sentry.vfs.inode import Stat

AF_INET, AF_INET6 = 2, 10
_ino = [9000]


def parse_inet(raw: bytes, family: int):
    if len(raw) < 2:
        raise SyscallError(errno.EINVAL)
    fam = struct.unpack_from("<H", raw)[0]
    if fam == 0 and family == AF_INET:            # AF_UNSPEC: for connect, "disconnect"
        raise SyscallError(errno.EAFNOSUPPORT)
    if fam != family:
        raise SyscallError(errno.EAFNOSUPPORT if fam not in (AF_INET, AF_INET6) else errno.EINVAL)
    if family == AF_INET:
        if len(raw) < 16:
            raise SyscallError(errno.EINVAL)
        port = struct.unpack_from(">H", raw, 2)[0]
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    if len(raw) < 24:
        raise SyscallError(errno.EINVAL)
    port, flow = struct.unpack_from(">HI", raw, 2)
    scope = struct.unpack_from("<I", raw, 24)[0] if len(raw) >= 28 else 0
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, flow, scope


def pack_inet(addr, family: int) -> bytes:
    if family == AF_INET:
        host, port = addr[:2]
        return struct.pack("<H", AF_INET) + struct.pack(">H", port) + socket.inet_pton(socket.AF_INET, host) + bytes(8)
    host, port, flow, scope = addr
    return (struct.pack("<H", AF_INET6) + struct.pack(">HI", port, flow) + socket.inet_pton(socket.AF_INET6, host)
            + struct.pack("<I", scope))


class HostSocket(File):
    def __init__(self, sock: socket.socket, flags: int) -> None:
        super().__init__(2 | (flags & O_NONBLOCK))
        sock.setblocking(False)
        self.sock = sock
        self.host_fd = sock.fileno()
        self.family = sock.family
        _ino[0] += 1
        self.ino = _ino[0]

    def stat(self) -> Stat:
        return Stat(self.ino, 0x9, 0o140777, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0)

    def proc_name(self) -> bytes:
        return f"socket:[{self.ino}]".encode()

    def readiness(self, events: int) -> int:
        from sentry.pipe import host_readiness
        return host_readiness(self.host_fd, events | POLLERR | POLLHUP) & (events | POLLERR | POLLHUP)

    def host_fds(self) -> list:
        return [(self.host_fd, POLLIN | POLLOUT)]

    def _block(self, t, events: int, flags: int = 0) -> None:
        if self.flags & O_NONBLOCK or flags & 0x40:    # MSG_DONTWAIT
            raise SyscallError(errno.EAGAIN)
        t.block(host_fd=(self.host_fd, events))

    def _call(self, t, events: int, fn, *args, flags: int = 0):
        """Run a host socket call; park on the host fd while it would block."""
        try:
            return fn(*args)
        except BlockingIOError:
            self._block(t, events, flags)
        except InterruptedError:
            self._block(t, events, flags)
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO) from None

    def read(self, t, dsts) -> int:
        return self._call(t, POLLIN, self.sock.recvmsg_into, dsts)[0]

    def write(self, t, srcs) -> int:
        try:
            return self._call(t, POLLOUT, self.sock.sendmsg, srcs, [], socket.MSG_NOSIGNAL)
        except SyscallError as e:
            if e.errno == errno.EPIPE:
                _sigpipe(t)
            raise

    def release(self) -> None:
        self.sock.close()


def _sigpipe(t) -> None:
    from sentry import process
    from sentry import signals as sg
    process.send_to_task(t.kernel, t, sg.SIGPIPE, sg.siginfo(sg.SIGPIPE, sg.SI_USER, pid=t.tg.tgid))
