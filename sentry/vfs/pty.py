"""Pseudo-terminals in the Sentry: /dev/ptmx and /dev/pts/N (devpts), with a line discipline.

A `Pty` is the pair's shared state: termios, the window size, the input side
(what the slave reads, filled by writes to the master) and the output side
(what the master reads, filled by writes to the slave and by echo).  The line
discipline is Linux's n_tty, in the parts programs rely on: ICRNL/INLCR/IGNCR,
ISIG (VINTR, VQUIT, VSUSP signal the foreground process group and flush),
ICANON line editing (VERASE, VKILL, VWERASE, VEOF, VEOL), ECHO/ECHOE/ECHOK/
ECHONL/ECHOCTL, OPOST/ONLCR/OCRNL, VMIN for raw reads.  Job control: a
process of a background group reading its controlling terminal gets SIGTTIN
(EIO if it ignores or blocks it), as Linux does.  Not modelled: VTIME,
IXON flow control, parity, baud rates (stored and reported only).
"""
from __future__ import annotations

import errno
import struct
from collections import deque

from sentry.errors import SyscallError
from sentry.pipe import POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM
from sentry.vfs.file import O_NOCTTY, O_NONBLOCK, O_PATH, File, gather, scatter
from sentry.vfs.inode import Stat
from sentry.waitq import WaitQueue

# termios bits (asm-generic/termbits.h)
ICRNL, INLCR, IGNCR, ISTRIP, IXON = 0x100, 0x40, 0x80, 0x20, 0x400
OPOST, ONLCR, OCRNL = 0x1, 0x4, 0x8
ISIG, ICANON, ECHO, ECHOE, ECHOK, ECHONL, NOFLSH, TOSTOP, ECHOCTL, ECHOKE, IEXTEN = (
    0x1, 0x2, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100, 0x200, 0x800, 0x8000)
VINTR, VQUIT, VERASE, VKILL, VEOF, VTIME, VMIN, VSWTC, VSTART, VSTOP, VSUSP, VEOL, VREPRINT, VDISCARD, \
    VWERASE, VLNEXT, VEOL2 = range(17)
TERMIOS = struct.Struct("<IIIIB19s")
DEFAULT_CC = b"\x03\x1c\x7f\x15\x04\x00\x01\x00\x11\x13\x1a\x00\x12\x0f\x17\x16\x00\x00\x00"
WINSIZE = struct.Struct("<HHHH")
TCGETS, TCSETS, TCSETSW, TCSETSF, TCSBRK, TCXONC, TCFLSH = 0x5401, 0x5402, 0x5403, 0x5404, 0x5409, 0x540A, 0x540B
TIOCSCTTY, TIOCGPGRP, TIOCSPGRP, TIOCOUTQ, TIOCGWINSZ, TIOCSWINSZ = 0x540E, 0x540F, 0x5410, 0x5411, 0x5413, 0x5414
FIONREAD, TIOCNOTTY, TIOCGSID, TIOCGPTN, TIOCSPTLCK, TIOCGPTPEER = 0x541B, 0x5422, 0x5429, 0x80045430, 0x40045431, 0x5441
TIOCGPTLCK = 0x80045439
BUF_MAX = 65536
SIGHUP, SIGINT, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU, SIGWINCH, SIGCONT = 1, 2, 3, 20, 21, 22, 28, 18


class Pty:
    def __init__(self, index: int, devpts) -> None:
        self.index = index
        self.devpts = devpts
        self.iflag, self.oflag, self.cflag, self.lflag = ICRNL | IXON, OPOST | ONLCR, 0xBF, 0x8A3B
        self.cc = bytearray(DEFAULT_CC)
        self.winsize = (24, 80, 0, 0)
        self.inq: deque[bytes] = deque()     # committed input: canonical lines (b"" = EOF), or raw bytes
        self.line = bytearray()              # the canonical line being edited
        self.outq = bytearray()
        self.waitq = WaitQueue()
        self.master_open = True
        self.slave_opens = 0
        self.slave_ever_opened = False
        self.locked = True
        self.fg_pgrp = 0
        self.sid = 0
        self.kernel = None

    # -- helpers -------------------------------------------------------------------------

    def in_bytes(self) -> int:
        return sum(len(c) for c in self.inq)

    def _signal_fg(self, sig: int) -> None:
        from sentry import process
        from sentry import signals as sg
        k = self.kernel
        if k is None or not self.fg_pgrp:
            return
        for g in list(k.thread_groups.values()):
            if g.pgid == self.fg_pgrp and not g.exiting:
                process.send_to_group(k, g, sig, sg.siginfo(sig, sg.SI_KERNEL))

    def _out(self, data: bytes) -> None:
        """Output processing (OPOST) into what the master reads."""
        if self.oflag & OPOST:
            if self.oflag & OCRNL:
                data = data.replace(b"\r", b"\n")
            if self.oflag & ONLCR:
                data = data.replace(b"\n", b"\r\n")
        self.outq += data

    def _echo(self, c: int) -> None:
        if not self.lflag & ECHO:
            if c == 10 and self.lflag & ECHONL and self.lflag & ICANON:
                self._out(b"\n")
            return
        if self.lflag & ECHOCTL and c < 32 and c not in (9, 10) or c == 127 and self.lflag & ECHOCTL:
            self._out(b"^" + bytes([c + 64 if c < 32 else 63]))
        else:
            self._out(bytes([c]))

    def _commit_raw(self) -> None:
        if self.line:
            self.inq.append(bytes(self.line))
            self.line.clear()

    # -- the line discipline: input from the master -------------------------------------------

    def input(self, data: bytes) -> None:
        cc = self.cc
        for c in data:
            if self.iflag & ISTRIP:
                c &= 0x7F
            if c == 13:
                if self.iflag & IGNCR:
                    continue
                if self.iflag & ICRNL:
                    c = 10
            elif c == 10 and self.iflag & INLCR:
                c = 13
            if self.lflag & ISIG and c in (cc[VINTR], cc[VQUIT], cc[VSUSP]) and c != 0:
                sig = SIGINT if c == cc[VINTR] else SIGQUIT if c == cc[VQUIT] else SIGTSTP
                if not self.lflag & NOFLSH:
                    self.inq.clear()
                    self.line.clear()
                self._echo(c)
                self._signal_fg(sig)
                continue
            if self.lflag & ICANON:
                if c == cc[VERASE] and c != 0:
                    if self.line:
                        self.line.pop()
                        if self.lflag & ECHO and self.lflag & ECHOE:
                            self._out(b"\b \b")
                    continue
                if c == cc[VKILL] and c != 0:
                    if self.lflag & ECHO and self.lflag & (ECHOK | ECHOKE):
                        self._out(b"\b \b" * len(self.line) if self.lflag & ECHOKE else b"\n")
                    self.line.clear()
                    continue
                if c == cc[VWERASE] and c != 0 and self.lflag & IEXTEN:
                    while self.line and self.line[-1] in b" \t":
                        self.line.pop()
                    while self.line and self.line[-1] not in b" \t":
                        self.line.pop()
                        if self.lflag & ECHO and self.lflag & ECHOE:
                            self._out(b"\b \b")
                    continue
                if c == cc[VEOF] and c != 0:
                    self.inq.append(bytes(self.line))     # empty: end of file for the reader
                    self.line.clear()
                    continue
                self.line.append(c)
                self._echo(c)
                if c == 10 or (c in (cc[VEOL], cc[VEOL2]) and c != 0):
                    self.inq.append(bytes(self.line))
                    self.line.clear()
            else:
                self.line.append(c)
                self._echo(c)
                self._commit_raw()
        self.waitq.wake_all()

    def set_termios(self, raw: bytes, flush: bool) -> None:
        iflag, oflag, cflag, lflag, _line, cc = TERMIOS.unpack(raw)
        was_canon = self.lflag & ICANON
        self.iflag, self.oflag, self.cflag, self.lflag = iflag, oflag, cflag, lflag
        self.cc[:] = cc
        if flush:
            self.inq.clear()
            self.line.clear()
        elif was_canon and not lflag & ICANON:
            self._commit_raw()
        self.waitq.wake_all()

    def get_termios(self) -> bytes:
        return TERMIOS.pack(self.iflag, self.oflag, self.cflag, self.lflag, 0, bytes(self.cc))


class PtyEnd(File):
    """What both ends share: termios and window ioctls."""

    def __init__(self, flags: int, dentry, pty: Pty) -> None:
        super().__init__(flags, dentry, dentry.mount if dentry is not None else None)
        self.pty = pty

    def wait_queues(self) -> list:
        return [self.pty.waitq]

    def common_ioctl(self, t, request: int, arg: int) -> int:
        p = self.pty
        mm = t.mm
        if request == TCGETS:
            mm.write(arg, p.get_termios())
            return 0
        if request in (TCSETS, TCSETSW, TCSETSF):
            p.set_termios(mm.read(arg, TERMIOS.size), request == TCSETSF)
            return 0
        if request == TIOCGWINSZ:
            mm.write(arg, WINSIZE.pack(*p.winsize))
            return 0
        if request == TIOCSWINSZ:
            new = WINSIZE.unpack(mm.read(arg, WINSIZE.size))
            if new != p.winsize:
                p.winsize = new
                p._signal_fg(SIGWINCH)
            return 0
        if request == TCFLSH:
            if arg not in (0, 1, 2):
                raise SyscallError(errno.EINVAL)
            if arg in (0, 2):
                p.inq.clear()
                p.line.clear()
            if arg in (1, 2):
                p.outq.clear()
            p.waitq.wake_all()
            return 0
        if request in (TCSBRK, TCXONC):
            return 0
        raise SyscallError(errno.ENOTTY)


class PtyMaster(PtyEnd):
    def stat(self) -> Stat:
        return self.pty.devpts.ptmx_inode.stat()

    def read(self, t, dsts) -> int:
        p = self.pty
        if not p.outq:
            if p.slave_ever_opened and p.slave_opens == 0:
                raise SyscallError(errno.EIO)
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN)
            t.block([p.waitq])
        n = scatter(dsts, p.outq)
        del p.outq[:n]
        p.waitq.wake_all()
        return n

    def write(self, t, srcs) -> int:
        p = self.pty
        data = gather(srcs)
        if p.in_bytes() + len(p.line) >= BUF_MAX:
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN)
            t.block([p.waitq])
        p.input(data[:max(1, BUF_MAX - p.in_bytes())])
        return min(len(data), max(1, BUF_MAX - p.in_bytes())) if len(data) > BUF_MAX else len(data)

    def readiness(self, events: int) -> int:
        p = self.pty
        r = 0
        if p.outq:
            r |= POLLIN | POLLRDNORM
        if p.slave_ever_opened and p.slave_opens == 0:
            r |= POLLHUP
        if p.in_bytes() < BUF_MAX:
            r |= POLLOUT | POLLWRNORM
        return r & (events | POLLERR | POLLHUP)

    def ioctl(self, t, request: int, arg: int) -> int:
        p = self.pty
        if request == TIOCGPTN:
            t.mm.write_u32(arg, p.index)
            return 0
        if request == TIOCSPTLCK:
            p.locked = bool(t.mm.read_u32(arg))
            return 0
        if request == TIOCGPTLCK:
            t.mm.write_u32(arg, int(p.locked))
            return 0
        if request == TIOCGPTPEER:
            d = p.devpts.slave_dentry(p)
            f = d.inode.open(t, d, arg & ~O_PATH)
            return t.fds.install(f, bool(arg & 0o2000000), limit=t.tg.rlimits[7][0])
        if request == FIONREAD:
            t.mm.write_u32(arg, len(p.outq))
            return 0
        if request == TIOCGPGRP:
            t.mm.write_u32(arg, p.fg_pgrp)
            return 0
        return self.common_ioctl(t, request, arg)

    def release(self) -> None:
        p = self.pty
        p.master_open = False
        p._signal_fg(SIGHUP)
        p._signal_fg(SIGCONT)
        p.waitq.wake_all()
        p.devpts.forget(p)


class PtySlave(PtyEnd):
    def __init__(self, flags: int, dentry, pty: Pty) -> None:
        super().__init__(flags, dentry, pty)
        pty.slave_opens += 1
        pty.slave_ever_opened = True

    def stat(self) -> Stat:
        return self.dentry.inode.stat()

    def _job_control_read(self, t) -> None:
        """A background process reading its controlling terminal: SIGTTIN, or EIO if it cannot stop."""
        from sentry import process
        from sentry import signals as sg
        p = self.pty
        tg = t.tg
        if tg.ctty is not p or not p.fg_pgrp or tg.pgid == p.fg_pgrp:
            return
        act = tg.sigactions[SIGTTIN]
        if act.handler == sg.SIG_IGN or t.sigmask & sg.bit(SIGTTIN):
            raise SyscallError(errno.EIO)
        for g in list(t.kernel.thread_groups.values()):
            if g.pgid == tg.pgid:
                process.send_to_group(t.kernel, g, SIGTTIN, sg.siginfo(SIGTTIN, sg.SI_KERNEL))
        t.block([p.waitq])

    def read(self, t, dsts) -> int:
        p = self.pty
        self._job_control_read(t)
        if not p.inq:
            if not p.master_open:
                return 0
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN)
            t.block([p.waitq])
        space = sum(len(d) for d in dsts)
        if p.lflag & ICANON:
            chunk = p.inq[0]
            data = chunk[:space]
            if len(chunk) > space:
                p.inq[0] = chunk[space:]
            else:
                p.inq.popleft()
        else:
            vmin = p.cc[VMIN]
            if vmin and p.in_bytes() < vmin and p.master_open and not self.flags & O_NONBLOCK \
                    and p.in_bytes() < space:
                t.block([p.waitq])
            out = bytearray()
            while p.inq and len(out) < space:
                chunk = p.inq.popleft()
                if len(out) + len(chunk) > space:
                    p.inq.appendleft(chunk[space - len(out):])
                    chunk = chunk[:space - len(out)]
                out += chunk
            data = bytes(out)
        pos = scatter(dsts, data)
        p.waitq.wake_all()
        return pos

    def write(self, t, srcs) -> int:
        p = self.pty
        if not p.master_open:
            raise SyscallError(errno.EIO)
        if len(p.outq) >= BUF_MAX:
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN)
            t.block([p.waitq])
        data = gather(srcs)
        p._out(data)
        p.waitq.wake_all()
        return len(data)

    def readiness(self, events: int) -> int:
        p = self.pty
        r = 0
        if p.inq or not p.master_open:
            r |= POLLIN | POLLRDNORM
        if not p.master_open:
            r |= POLLHUP
        elif len(p.outq) < BUF_MAX:
            r |= POLLOUT | POLLWRNORM
        return r & (events | POLLERR | POLLHUP)

    def ioctl(self, t, request: int, arg: int) -> int:
        p = self.pty
        tg = t.tg
        k = t.kernel
        if request == TIOCSCTTY:
            if tg.ctty is p:
                return 0
            if tg.sid != tg.tgid or tg.ctty is not None:
                raise SyscallError(errno.EPERM)
            if p.sid and p.sid != tg.sid and not (arg == 1 and tg.creds.euid == 0):
                raise SyscallError(errno.EPERM)
            _make_ctty(k, tg, p)
            return 0
        if request in (TIOCNOTTY, TIOCGPGRP, TIOCSPGRP, TIOCGSID) and tg.ctty is not p:
            raise SyscallError(errno.ENOTTY)          # these speak of the caller's controlling terminal
        if request == TIOCNOTTY:
            tg.ctty = None
            return 0
        if request == TIOCGPGRP:
            t.mm.write_u32(arg, p.fg_pgrp)
            return 0
        if request == TIOCSPGRP:
            pgrp = int.from_bytes(t.mm.read(arg, 4), "little", signed=True)
            if pgrp < 0:
                raise SyscallError(errno.EINVAL)
            if not any(g.pgid == pgrp and g.sid == tg.sid for g in k.thread_groups.values()):
                raise SyscallError(errno.EPERM)
            p.fg_pgrp = pgrp
            return 0
        if request == TIOCGSID:
            t.mm.write_u32(arg, p.sid)
            return 0
        if request == FIONREAD:
            t.mm.write_u32(arg, p.in_bytes())
            return 0
        if request == TIOCOUTQ:
            t.mm.write_u32(arg, len(p.outq))
            return 0
        return self.common_ioctl(t, request, arg)

    def release(self) -> None:
        p = self.pty
        p.slave_opens -= 1
        p.waitq.wake_all()
        if not p.master_open and p.slave_opens == 0:
            p.devpts.forget(p)


def _make_ctty(k, tg, p: Pty) -> None:
    tg.ctty = p
    p.sid = tg.sid
    p.fg_pgrp = tg.pgid
    p.kernel = k
    for g in k.thread_groups.values():
        if g.sid == tg.sid:
            g.ctty = p
