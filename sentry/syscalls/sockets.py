"""Socket syscalls: AF_UNIX in the Sentry, AF_INET/AF_INET6 on host sockets (sentry/socket/)."""
from __future__ import annotations

import errno
import socket as pysocket
import stat as st
import struct

from sentry.errors import SyscallError
from sentry.socket import host as hs
from sentry.socket import unix as ux
from sentry.syscalls.args import s32, u32
from sentry.syscalls.registry import Support, syscall
from sentry.task import Marker
from sentry.vfs.file import O_CLOEXEC, O_NONBLOCK, hold, put

AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
SOCK_TYPE_MASK = 0xF
SOCK_NONBLOCK, SOCK_CLOEXEC = O_NONBLOCK, O_CLOEXEC
SOL_SOCKET = 1
SO_REUSEADDR, SO_TYPE, SO_ERROR, SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE = 2, 3, 4, 7, 8, 9
SO_PASSCRED, SO_PEERCRED, SO_ACCEPTCONN, SO_DOMAIN, SO_PROTOCOL = 16, 17, 30, 39, 38
SCM_RIGHTS, SCM_CREDENTIALS = 1, 2
MSG_TRUNC, MSG_CTRUNC, MSG_CMSG_CLOEXEC = 0x20, 0x8, 0x40000000
MSGHDR = struct.Struct("<QI4xQQQQi4x")
CMSGHDR = struct.Struct("<Qii")
MAX_ADDR = 128


def _sock(t, fd: int):
    f = t.fds.get(s32(fd))
    if not isinstance(f, (ux.UnixSocket, hs.HostSocket)):
        raise SyscallError(errno.ENOTSOCK)
    return f


def _read_addr(t, addr: int, length: int) -> bytes:
    length = s32(length)
    if length < 0 or length > MAX_ADDR:
        raise SyscallError(errno.EINVAL)
    return t.mm.read(addr, length)


def _write_addr(t, addr: int, lenp: int, data: bytes) -> None:
    if not addr or not lenp:
        return
    n = s32(t.mm.read_u32(lenp))
    if n < 0:
        raise SyscallError(errno.EINVAL)
    t.mm.write(addr, data[:n])
    t.mm.write_u32(lenp, len(data))


@syscall("socket", Support.PARTIAL, "AF_UNIX (stream, dgram, seqpacket) in the Sentry; AF_INET/AF_INET6 as host sockets in the sandbox's netns; other families EAFNOSUPPORT")
def socket(t, domain, stype, protocol):
    """socket(2)."""
    domain, stype, protocol = s32(domain), s32(stype), s32(protocol)
    flags = stype & (SOCK_NONBLOCK | SOCK_CLOEXEC)
    if stype & ~(SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC):
        raise SyscallError(errno.EINVAL)
    base = stype & SOCK_TYPE_MASK
    if domain == AF_UNIX:
        if base not in (ux.SOCK_STREAM, ux.SOCK_DGRAM, ux.SOCK_SEQPACKET):
            raise SyscallError(errno.ESOCKTNOSUPPORT)
        if protocol not in (0, AF_UNIX):
            raise SyscallError(errno.EPROTONOSUPPORT)
        f = ux.UnixSocket(t.kernel, base, flags)
    elif domain in (AF_INET, AF_INET6):
        try:
            f = hs.HostSocket(pysocket.socket(domain, base, protocol), flags)
        except OSError as e:
            raise SyscallError(e.errno or errno.EINVAL) from None
    else:
        raise SyscallError(errno.EAFNOSUPPORT)
    return t.fds.install(f, bool(flags & SOCK_CLOEXEC), limit=t.tg.rlimits[7][0])


@syscall("socketpair")
def socketpair(t, domain, stype, protocol, sv):
    """socketpair(2): AF_UNIX only, as Linux."""
    domain, stype, protocol = s32(domain), s32(stype), s32(protocol)
    if domain != AF_UNIX:
        raise SyscallError(errno.EAFNOSUPPORT if domain not in (AF_INET, AF_INET6) else errno.EOPNOTSUPP)
    flags = stype & (SOCK_NONBLOCK | SOCK_CLOEXEC)
    base = stype & SOCK_TYPE_MASK
    if stype & ~(SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC):
        raise SyscallError(errno.EINVAL)
    if base not in (ux.SOCK_STREAM, ux.SOCK_DGRAM, ux.SOCK_SEQPACKET):
        raise SyscallError(errno.ESOCKTNOSUPPORT)
    if protocol not in (0, AF_UNIX):
        raise SyscallError(errno.EPROTONOSUPPORT)
    a, b = ux.socketpair(t.kernel, t, base, flags)
    t.fds.install_pair(t, a, b, bool(flags & SOCK_CLOEXEC), sv)
    return 0


def _unix_key_for_bind(t, name: bytes):
    """Create the socket node for a pathname (EADDRINUSE if it exists); return its lookup key."""
    if name[:1] == b"\0":
        return ("abstract", name)
    from sentry.syscalls.fsops import _add, _create_target, _op
    from sentry.vfs.walk import AT_FDCWD
    try:
        parent, last = _create_target(t, AT_FDCWD, name)
    except SyscallError as e:
        raise SyscallError(errno.EADDRINUSE if e.errno == errno.EEXIST else e.errno) from None
    inode = _op(parent.inode, "mknod")(t, last, st.S_IFSOCK | (0o777 & ~t.tg.fs.umask), 0)
    _add(parent, last, inode)
    s = inode.stat()
    return ("path", s.dev, s.ino)


def _unix_lookup(t, name: bytes):
    if name[:1] == b"\0":
        target = t.kernel.unix_names.get(("abstract", name))
        if target is None:
            raise SyscallError(errno.ECONNREFUSED)
        return target
    from sentry.vfs.inode import MAY_WRITE, may_access
    from sentry.vfs.walk import AT_FDCWD
    d = t.kernel.vfs.resolve(t, AT_FDCWD, name)
    s = d.inode.stat()
    if not may_access(s, t.tg.creds, MAY_WRITE):
        raise SyscallError(errno.EACCES)
    if not st.S_ISSOCK(s.mode):
        raise SyscallError(errno.ECONNREFUSED)
    target = t.kernel.unix_names.get(("path", s.dev, s.ino))
    if target is None:
        raise SyscallError(errno.ECONNREFUSED)
    return target


@syscall("bind")
def bind(t, fd, addr, addrlen):
    """bind(2)."""
    s = _sock(t, fd)
    raw = _read_addr(t, addr, addrlen)
    if isinstance(s, ux.UnixSocket):
        name = ux.parse_sockaddr_un(raw)
        if not name:
            s.autobind()
            return 0
        if s.name is not None:
            raise SyscallError(errno.EINVAL)
        key = _unix_key_for_bind(t, name)
        s.bind(t, key, name)
        return 0
    s._call(t, 0, s.sock.bind, hs.parse_inet(raw, s.family))
    return 0


@syscall("listen")
def listen(t, fd, backlog):
    """listen(2)."""
    s = _sock(t, fd)
    backlog = s32(backlog)
    backlog = 4096 if backlog < 0 or backlog > 4096 else backlog
    if isinstance(s, ux.UnixSocket):
        s.listen(t, backlog)
        return 0
    s._call(t, 0, s.sock.listen, backlog)
    return 0


@syscall("connect")
def connect(t, fd, addr, addrlen):
    """connect(2)."""
    s = _sock(t, fd)
    raw = _read_addr(t, addr, addrlen)
    if isinstance(s, ux.UnixSocket):
        target = _unix_lookup(t, ux.parse_sockaddr_un(raw))
        s.connect(t, target)
        return 0
    if t.resume(Marker) is not None:            # woken: the connection in progress ended
        err = s.sock.getsockopt(pysocket.SOL_SOCKET, pysocket.SO_ERROR)
        if err:
            raise SyscallError(err)
        return 0
    err = s.sock.connect_ex(hs.parse_inet(raw, s.family))
    if err in (0, errno.EISCONN):
        return 0 if err == 0 else (_ for _ in ()).throw(SyscallError(errno.EISCONN))
    if err == errno.EINPROGRESS:
        if s.flags & O_NONBLOCK:
            raise SyscallError(errno.EINPROGRESS)
        t.begin(Marker())
        t.block(host_fd=(s.host_fd, 0x4))
    raise SyscallError(err)


def _accept(t, fd: int, addr: int, lenp: int, flags: int) -> int:
    if flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC):
        raise SyscallError(errno.EINVAL)
    s = _sock(t, fd)
    if isinstance(s, ux.UnixSocket):
        if s.stype == ux.SOCK_DGRAM:
            raise SyscallError(errno.EOPNOTSUPP)
        new = s.accept(t, flags)
        peer_name = new.peer.name if new.peer is not None else None
        data = ux.pack_sockaddr_un(peer_name)
    else:
        hfd, raddr = s._call(t, 0x1, s.sock._accept)
        new = hs.HostSocket(pysocket.socket(s.family, s.sock.type, s.sock.proto, fileno=hfd), flags)
        data = hs.pack_inet(raddr if s.family == AF_INET6 or isinstance(raddr, tuple) else raddr, s.family) \
            if isinstance(raddr, tuple) else b""
    newfd = t.fds.install(new, bool(flags & SOCK_CLOEXEC), limit=t.tg.rlimits[7][0])
    try:
        _write_addr(t, addr, lenp, data)
    except SyscallError:
        t.fds.close(newfd)
        raise
    return newfd


@syscall("accept")
def accept(t, fd, addr, lenp):
    """accept(2)."""
    return _accept(t, fd, addr, lenp, 0)


@syscall("accept4")
def accept4(t, fd, addr, lenp, flags):
    """accept4(2)."""
    return _accept(t, fd, addr, lenp, u32(flags))


@syscall("getsockname")
def getsockname(t, fd, addr, lenp):
    """getsockname(2)."""
    s = _sock(t, fd)
    if isinstance(s, ux.UnixSocket):
        data = ux.pack_sockaddr_un(s.name)
    else:
        data = hs.pack_inet(s._call(t, 0, s.sock.getsockname), s.family)
    _write_addr(t, addr, lenp, data)
    return 0


@syscall("getpeername")
def getpeername(t, fd, addr, lenp):
    """getpeername(2)."""
    s = _sock(t, fd)
    if isinstance(s, ux.UnixSocket):
        if s.peer is None or not s.connected:
            raise SyscallError(errno.ENOTCONN)
        data = ux.pack_sockaddr_un(s.peer.name)
    else:
        data = hs.pack_inet(s._call(t, 0, s.sock.getpeername), s.family)
    _write_addr(t, addr, lenp, data)
    return 0


@syscall("shutdown")
def shutdown(t, fd, how):
    """shutdown(2)."""
    s = _sock(t, fd)
    how = s32(how)
    if isinstance(s, ux.UnixSocket):
        s.shutdown(how)
        return 0
    if how not in (0, 1, 2):
        raise SyscallError(errno.EINVAL)
    s._call(t, 0, s.sock.shutdown, how)
    return 0


# -- data ---------------------------------------------------------------------------

def _unix_target(t, s, name_addr: int, name_len: int):
    if not name_addr or not name_len:
        return None
    raw = _read_addr(t, name_addr, name_len)
    return _unix_lookup(t, ux.parse_sockaddr_un(raw))


def _files_from_control(t, control: bytes) -> list:
    files = []
    pos = 0
    while pos + CMSGHDR.size <= len(control):
        clen, level, ctype = CMSGHDR.unpack_from(control, pos)
        if clen < CMSGHDR.size or pos + clen > len(control):
            raise SyscallError(errno.EINVAL)
        data = control[pos + CMSGHDR.size:pos + clen]
        if level == SOL_SOCKET and ctype == SCM_RIGHTS:
            for (fd,) in struct.iter_unpack("<i", data[:len(data) // 4 * 4]):
                files.append(t.fds.get(fd))
        elif level == SOL_SOCKET and ctype == SCM_CREDENTIALS:
            pass        # the receiver gets the sender's real credentials
        else:
            raise SyscallError(errno.EINVAL)
        pos += (clen + 7) & ~7
    if len(files) > 253:
        raise SyscallError(errno.EINVAL)
    return [hold(f) for f in files]         # the message's references, from now until received


def _control_out(t, s, files: list, creds, space: int, cloexec: bool) -> tuple[bytes, int]:
    out = b""
    flags = 0
    if files:
        room = (space - CMSGHDR.size) // 4 if space >= CMSGHDR.size else 0
        fds = []
        for i, f in enumerate(files):
            if i < room:
                try:
                    fds.append(t.fds.install(f, cloexec, limit=t.tg.rlimits[7][0]))
                except SyscallError:
                    flags |= MSG_CTRUNC
            else:
                flags |= MSG_CTRUNC
            put(f)                   # the reference recv handed us (install took its own)
        if fds:
            body = struct.pack(f"<{len(fds)}i", *fds)
            out += CMSGHDR.pack(CMSGHDR.size + len(body), SOL_SOCKET, SCM_RIGHTS) + body
            out += bytes((-len(out)) % 8)
    if s.passcred:
        body = struct.pack("<iII", *creds)
        cm = CMSGHDR.pack(CMSGHDR.size + len(body), SOL_SOCKET, SCM_CREDENTIALS) + body
        cm += bytes((-len(cm)) % 8)
        if len(out) + len(cm) <= space:
            out += cm
        else:
            flags |= MSG_CTRUNC
    return out, flags


def _sendmsg(t, s, views: list, name_addr: int, name_len: int, control: bytes, flags: int) -> int:
    if isinstance(s, ux.UnixSocket):
        target = _unix_target(t, s, name_addr, name_len)
        files = _files_from_control(t, control) if control else []
        return s.send(t, b"".join(bytes(v) for v in views), files, target, flags)   # owns `files`
    addr = hs.parse_inet(_read_addr(t, name_addr, name_len), s.family) if name_addr and name_len else None
    # The flags go to the host as the C int Linux's unsigned int becomes there (bit 31 included).
    args = (views, [], s32(flags | pysocket.MSG_NOSIGNAL)) + ((addr,) if addr is not None else ())
    try:
        return s._call(t, 0x4, s.sock.sendmsg, *args, flags=flags)
    except SyscallError as e:
        if e.errno == errno.EPIPE and not flags & ux.MSG_NOSIGNAL:
            hs._sigpipe(t)
        raise


def _recvmsg(t, s, views: list, flags: int, control_space: int):
    """(returned length, data bytes length, from-address bytes, control bytes, msg_flags)."""
    if isinstance(s, ux.UnixSocket):
        n, files, creds, addr = s.recv(t, views, flags)
        control, mflags = _control_out(t, s, files, creds, control_space, bool(flags & MSG_CMSG_CLOEXEC))
        ret = n
        if getattr(s, "last_truncated", False):
            mflags |= MSG_TRUNC
            if flags & MSG_TRUNC:
                ret = s.last_full_len
        return ret, ux.pack_sockaddr_un(addr) if addr else struct.pack("<H", AF_UNIX), control, mflags
    n, _anc, mflags, addr = s._call(t, 0x1, s.sock.recvmsg_into, views, 0, s32(flags & ~MSG_CMSG_CLOEXEC),
                                 flags=flags)
    data = hs.pack_inet(addr, s.family) if isinstance(addr, tuple) and addr else b""
    return n, data, b"", mflags


MSG_CMSG_COMPAT = 0x80000000      # never valid from a 64-bit caller: sendmsg/recvmsg EINVAL, ignored by sendto/recvfrom
OPTMEM_MAX = 131072               # net.core.optmem_max (Linux 6.x default): the largest control buffer sendmsg takes


@syscall("sendto")
def sendto(t, fd, buf, length, flags, addr, addrlen):
    """sendto(2)."""
    s = _sock(t, fd)
    views = t.mm.iovecs(buf, length, False) if length else []
    return _sendmsg(t, s, views, addr, addrlen, b"", u32(flags) & ~MSG_CMSG_COMPAT)


@syscall("recvfrom")
def recvfrom(t, fd, buf, length, flags, addr, lenp):
    """recvfrom(2)."""
    s = _sock(t, fd)
    views = t.mm.iovecs(buf, length, True) if length else []
    n, data, _control, _mflags = _recvmsg(t, s, views, u32(flags) & ~MSG_CMSG_COMPAT, 0)
    _write_addr(t, addr, lenp, data)
    return n


def _msg_views(t, iov: int, iovlen: int, write: bool) -> list:
    if iovlen > 1024:
        raise SyscallError(errno.EMSGSIZE)
    views = []
    for base, ln in t.mm.read_iovec(iov, iovlen):
        if ln:
            views += t.mm.iovecs(base, ln, write)
    return views


@syscall("sendmsg")
def sendmsg(t, fd, msg, flags):
    """sendmsg(2)."""
    s = _sock(t, fd)
    if u32(flags) & MSG_CMSG_COMPAT:           # __sys_sendmsg: the 32-bit ABI's flag
        raise SyscallError(errno.EINVAL)
    name, namelen, iov, iovlen, control, controllen, _ = t.mm.read_struct(msg, MSGHDR)
    if controllen > OPTMEM_MAX:                # sock_kmalloc of the control buffer fails
        raise SyscallError(errno.ENOBUFS)
    ctl = t.mm.read(control, controllen) if control and controllen else b""
    return _sendmsg(t, s, _msg_views(t, iov, iovlen, False), name, namelen, ctl, u32(flags))


@syscall("recvmsg")
def recvmsg(t, fd, msg, flags):
    """recvmsg(2)."""
    s = _sock(t, fd)
    if u32(flags) & MSG_CMSG_COMPAT:
        raise SyscallError(errno.EINVAL)
    name, namelen, iov, iovlen, control, controllen, _ = t.mm.read_struct(msg, MSGHDR)
    n, data, ctl, mflags = _recvmsg(t, s, _msg_views(t, iov, iovlen, True), u32(flags),
                                    controllen if control else 0)
    if name and namelen:
        t.mm.write(name, data[:namelen])
    t.mm.write_u32(msg + 8, len(data) if name else 0)
    if control:
        t.mm.write(control, ctl[:controllen])
    t.mm.write_u64(msg + 40, len(ctl) if control else 0)
    t.mm.write_u32(msg + 48, mflags)
    return n


# -- options ----------------------------------------------------------------------------

_UNIX_ACCEPTED = {SO_REUSEADDR, SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE, 13, 20, 21, 32, 33}


@syscall("getsockopt")
def getsockopt(t, fd, level, opt, val, lenp):
    """getsockopt(2)."""
    s = _sock(t, fd)
    level, opt = s32(level), s32(opt)
    n = s32(t.mm.read_u32(lenp))
    if n < 0:
        raise SyscallError(errno.EINVAL)
    if isinstance(s, hs.HostSocket):
        # Python's getsockopt takes at most 1024 bytes of buffer; no option is longer.
        out = s._call(t, 0, s.sock.getsockopt, level, opt, min(n, 1024) or 4)
    else:
        if level != SOL_SOCKET:
            raise SyscallError(errno.EOPNOTSUPP if level == 6 else errno.ENOPROTOOPT)
        if opt == SO_PEERCRED:
            out = struct.pack("<iII", *s.peer_creds)
        else:
            v = {SO_TYPE: s.stype, SO_ERROR: s.take_error() if opt == SO_ERROR else s.error, SO_DOMAIN: AF_UNIX, SO_PROTOCOL: 0,
                 SO_ACCEPTCONN: int(s.listening), SO_SNDBUF: s.sndbuf, SO_RCVBUF: ux.RCVBUF,
                 SO_PASSCRED: int(s.passcred), SO_REUSEADDR: 0, SO_KEEPALIVE: 0}.get(opt)
            if v is None:
                raise SyscallError(errno.ENOPROTOOPT)
            out = struct.pack("<i", v)
    out = out[:n]
    t.mm.write(val, out)
    t.mm.write_u32(lenp, len(out))
    return 0


@syscall("setsockopt")
def setsockopt(t, fd, level, opt, val, length):
    """setsockopt(2)."""
    s = _sock(t, fd)
    level, opt, length = s32(level), s32(opt), s32(length)
    if length < 0:
        raise SyscallError(errno.EINVAL)
    data = t.mm.read(val, length) if length else b""
    if isinstance(s, hs.HostSocket):
        s._call(t, 0, s.sock.setsockopt, level, opt, data)
        return 0
    if level != SOL_SOCKET:
        raise SyscallError(errno.EOPNOTSUPP if level == 6 else errno.ENOPROTOOPT)
    if opt == SO_PASSCRED:
        if length < 4:
            raise SyscallError(errno.EINVAL)
        s.passcred = bool(struct.unpack_from("<i", data)[0])
        return 0
    if opt in _UNIX_ACCEPTED:
        if length < 4 and opt not in (13, 20, 21):
            raise SyscallError(errno.EINVAL)
        if opt == SO_SNDBUF:
            # sock_setsockopt: doubled, clamped to wmem_max (212992) and SOCK_MIN_SNDBUF (4608).
            v = max(0, struct.unpack_from("<i", data)[0])
            s.sndbuf = max(min(v, ux.RCVBUF) * 2, 4608)
        return 0
    raise SyscallError(errno.ENOPROTOOPT)
