"""signalfd, signalfd4: pending signals read as file descriptors (fs/signalfd.c).

A `SignalFd` holds only a mask.  Like Linux's, it has no process of its own:
read(2) dequeues from the *reading* thread's pending signals (its own queue
first, then its process's, as dequeue_signal), and poll/epoll look at the
*polling* thread's (the Sentry names it: Kernel.current).  So after fork the
child's copy of the descriptor reads the child's signals, and a signal
pending for another thread is not seen.  Each read fills one 128-byte
`struct signalfd_siginfo` per signal from the queued kernel siginfo
(signalfd_copyinfo: which fields are copied depends on the siginfo's layout,
siginfo_layout); a signal taken this way is never delivered to a handler.

Waiting: Linux keeps one wait queue per sighand (signalfd_wqh) that every
signal queued for it wakes (signalfd_notify).  Here it is
`ThreadGroup.signalfd_waitq`, made when a thread of that process first waits
on a signalfd; sentry/process.py wakes it (`_signalfd_notify`) when it queues a
signal, and a mask update here (`notify`).
A blocked read parks on it and re-runs; a signal of the mask that the reader
left unblocked is taken by the re-run read, as Linux's loop dequeues before it
looks for signals; one not in the mask interrupts the read as any other (EINTR,
or a restart).
"""
from __future__ import annotations

import errno
import struct

from sentry import signals as sg
from sentry.errors import SyscallError
from sentry.pipe import POLLIN, POLLRDNORM
from sentry.syscalls.args import s32
from sentry.syscalls.registry import Support, syscall
from sentry.vfs.file import O_CLOEXEC, O_NONBLOCK, O_RDWR, File, scatter
from sentry.vfs.inode import Stat
from sentry.waitq import WaitQueue

SFD_CLOEXEC, SFD_NONBLOCK = O_CLOEXEC, O_NONBLOCK
SIGSET_SIZE = 8
SSI_SIZE = 128
# struct signalfd_siginfo: signo errno code pid uid fd tid band overrun trapno status int ptr utime
# stime addr addr_lsb pad2 syscall call_addr arch, then 28 bytes of padding.
SSI = struct.Struct("<IiiIIiIIIIiiQQQQHHiQI28x")
assert SSI.size == SSI_SIZE

# Synchronous signals are dequeued first (SYNCHRONOUS_MASK in kernel/signal.c).
SYNCHRONOUS = sg.bit(sg.SIGSEGV) | sg.bit(sg.SIGBUS) | sg.bit(sg.SIGILL) | sg.bit(sg.SIGTRAP) | \
    sg.bit(sg.SIGFPE) | sg.bit(sg.SIGSYS)

# siginfo_layout(): the si_code ranges each signal's kernel-generated codes have (NSIG* of
# asm-generic/siginfo.h) and the union member they use.
_KILL, _TIMER, _POLL, _FAULT, _MCEERR, _CHLD, _RT, _SYS = range(8)
_SICODES = {sg.SIGILL: (11, _FAULT), sg.SIGFPE: (15, _FAULT), sg.SIGSEGV: (9, _FAULT),
            sg.SIGBUS: (5, _FAULT), sg.SIGTRAP: (6, _FAULT), sg.SIGCHLD: (6, _CHLD),
            sg.SIGIO: (6, _POLL), sg.SIGSYS: (2, _SYS)}
SI_SIGIO, BUS_MCEERR_AR, BUS_MCEERR_AO, NSIGPOLL = -5, 4, 5, 6
_U32 = 0xFFFFFFFF


def _layout(signo: int, code: int) -> int:
    if sg.SI_USER < code < sg.SI_KERNEL:
        limit = _SICODES.get(signo)
        if limit is not None and code <= limit[0]:
            if signo == sg.SIGBUS and BUS_MCEERR_AR <= code <= BUS_MCEERR_AO:
                return _MCEERR
            return limit[1]
        return _POLL if code <= NSIGPOLL else _KILL
    if code == sg.SI_TIMER:
        return _TIMER
    if code == SI_SIGIO:
        return _POLL
    return _RT if code < 0 else _KILL


def signalfd_siginfo(info: bytes) -> bytes:
    """The 128-byte signalfd_siginfo for a queued kernel siginfo (signalfd_copyinfo)."""
    signo, err, code = struct.unpack_from("<iii", info, 0)
    pid = uid = fd = tid = band = overrun = status = sival = utime = stime = addr = lsb = 0
    nr = call_addr = arch = 0
    kind = _layout(signo, code)
    if kind in (_KILL, _RT, _CHLD):
        pid, uid = struct.unpack_from("<iI", info, 16)
        if kind == _RT:
            (sival,) = struct.unpack_from("<Q", info, 24)
        elif kind == _CHLD:
            status, utime, stime = struct.unpack_from("<i4xqq", info, 24)
    elif kind == _TIMER:
        tid, overrun, sival = struct.unpack_from("<iiQ", info, 16)
    elif kind == _POLL:
        band, fd = struct.unpack_from("<qi", info, 16)
    elif kind == _SYS:
        call_addr, nr, arch = struct.unpack_from("<QiI", info, 16)
    else:
        addr, lsb = struct.unpack_from("<Qh", info, 16)
        if kind != _MCEERR:
            lsb = 0
    ssi_int = s32(sival & _U32)
    return SSI.pack(signo & _U32, err, code, pid & _U32, uid, fd, tid & _U32, band & _U32, overrun & _U32, 0,
                    status, ssi_int, sival, utime & 2**64 - 1, stime & 2**64 - 1, addr, lsb & 0xFFFF, 0, nr,
                    call_addr, arch)


def _next_signal(pend: dict, mask: int) -> int | None:
    """next_signal(): the lowest pending signal of `mask`, a synchronous one first."""
    best = None
    for sig in pend:
        if mask & sg.bit(sig) and (best is None or (not sg.bit(sig) & SYNCHRONOUS, sig)
                                   < (not sg.bit(best) & SYNCHRONOUS, best)):
            best = sig
    return best


def pending_in(t, mask: int) -> bool:
    return _next_signal(t.pending, mask) is not None or _next_signal(t.tg.shared_pending, mask) is not None


def dequeue(t, mask: int) -> bytes | None:
    """dequeue_signal(): the thread's own pending signals first, then its process's."""
    for pend in (t.pending, t.tg.shared_pending):
        sig = _next_signal(pend, mask)
        if sig is not None:
            return sg.take(pend, sig)
    return None


def waitq(tg) -> WaitQueue:
    q = tg.signalfd_waitq
    if q is None:
        q = tg.signalfd_waitq = WaitQueue()
    return q


def notify(tg) -> None:
    """A signal was queued for `tg` or one of its threads (signalfd_notify)."""
    q = tg.signalfd_waitq
    if q is not None and (q.waiters or q.watchers):
        q.wake_all(POLLIN | POLLRDNORM)


class SignalFd(File):
    """A signal mask, read against the caller's pending signals (anon_inode:[signalfd])."""

    min_read = SSI_SIZE

    def __init__(self, k, mask: int, flags: int) -> None:
        super().__init__(O_RDWR | (flags & O_NONBLOCK))
        self.k = k
        self.mask = mask

    def stat(self) -> Stat:
        return Stat(1, 0xE, 0o600, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0)

    def seek(self, offset: int, whence: int) -> int:
        return self.offset                  # noop_llseek

    def fdinfo(self) -> str:
        return f"sigmask:\t{self.mask:016x}\n"

    def _take(self, t, first: bool) -> bytes | None:
        """One signal for the reader; park (or EAGAIN) when none is pending and none was read yet."""
        info = dequeue(t, self.mask)
        if info is None and first:
            if self.flags & O_NONBLOCK:
                raise SyscallError(errno.EAGAIN)
            t.block([waitq(t.tg)])
        return info

    def read(self, t, dsts) -> int:
        count = sum(len(d) for d in dsts) // SSI_SIZE
        if not count:
            raise SyscallError(errno.EINVAL)
        out = bytearray()
        while count:
            info = self._take(t, not out)
            if info is None:
                break
            out += signalfd_siginfo(info)
            count -= 1
        scatter(dsts, out)
        return len(out)

    def transfer_without_buffer(self, t, write: bool, count: int) -> int:
        """A buffer that cannot be written: Linux dequeues first, so the signal is lost and the
        read fails with EFAULT (a short buffer is EINVAL first; nothing pending: waits/EAGAIN)."""
        if write:
            raise SyscallError(errno.EINVAL)
        if count < SSI_SIZE:
            raise SyscallError(errno.EINVAL)
        self._take(t, True)
        raise SyscallError(errno.EFAULT)

    def readiness(self, events: int) -> int:
        t = self.k.current
        if t is None or t.exited:
            return 0
        return (POLLIN | POLLRDNORM) & events if pending_in(t, self.mask) else 0

    def wait_queues(self) -> list:
        t = self.k.current
        return [waitq(t.tg)] if t is not None else []


def _mask(t, user_mask: int, sizemask: int) -> int:
    if sizemask != SIGSET_SIZE:
        raise SyscallError(errno.EINVAL)
    return t.mm.read_u64(user_mask) & ~sg.UNBLOCKABLE      # EFAULT for a bad pointer


NOTE = ("a read whose buffer is mapped for its first records but not all fails whole with EFAULT "
        "and loses the first signal (Linux returns the records it copied and loses the one that faulted)")


@syscall("signalfd4", Support.PARTIAL, NOTE)
def signalfd4(t, ufd, user_mask, sizemask, flags):
    """signalfd4(2): a new signalfd (ufd -1) or a new mask for an existing one."""
    mask = _mask(t, user_mask, sizemask)
    flags, ufd = s32(flags), s32(ufd)
    if flags & ~(SFD_CLOEXEC | SFD_NONBLOCK):
        raise SyscallError(errno.EINVAL)
    if ufd == -1:
        return t.fds.install(SignalFd(t.kernel, mask, flags), bool(flags & SFD_CLOEXEC),
                             limit=t.tg.rlimits[7][0])
    f = t.fds.get_io(ufd)                                   # EBADF (also for O_PATH, as fdget)
    if not isinstance(f, SignalFd):
        raise SyscallError(errno.EINVAL)
    f.mask = mask
    notify(t.tg)
    return ufd


@syscall("signalfd", Support.PARTIAL, NOTE)
def signalfd(t, ufd, user_mask, sizemask):
    """signalfd(2): signalfd4 without flags."""
    return signalfd4(t, ufd, user_mask, sizemask, 0)
