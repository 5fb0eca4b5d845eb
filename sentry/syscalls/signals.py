"""Signal syscalls.  Handlers and masks are kept per Linux's rules; delivery
(frames, sigreturn) arrives with the process-and-signals work."""
from __future__ import annotations

import errno
import signal
import struct

from sentry.errors import SyscallError
from sentry.syscalls.args import s32
from sentry.syscalls.registry import Support, syscall
from sentry.task import SignalAction

SIGACTION = struct.Struct("<QQQQ")
UNBLOCKABLE = (1 << (signal.SIGKILL - 1)) | (1 << (signal.SIGSTOP - 1))
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2


@syscall("rt_sigaction", Support.PARTIAL, "dispositions recorded; delivery not yet implemented")
def rt_sigaction(t, sig, act, oact, sigsetsize):
    """rt_sigaction(2)."""
    sig = s32(sig)
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    if sig < 1 or sig > 64:
        raise SyscallError(errno.EINVAL)
    new = t.mm.read_struct(act, SIGACTION) if act else None
    if new is not None and sig in (signal.SIGKILL, signal.SIGSTOP):
        raise SyscallError(errno.EINVAL)
    cur = t.tg.sigactions[sig]
    old = (cur.handler, cur.flags, cur.restorer, cur.mask)
    if new is not None:
        handler, flags, restorer, mask = new
        t.tg.sigactions[sig] = SignalAction(handler, flags, restorer, mask & ~UNBLOCKABLE)
    if oact:
        t.mm.write_struct(oact, SIGACTION, *old)
    return 0


@syscall("rt_sigprocmask")
def rt_sigprocmask(t, how, nset, oset, sigsetsize):
    """rt_sigprocmask(2)."""
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    how = s32(how)
    old = t.sigmask
    if nset:
        new = t.mm.read_u64(nset)
        if how == SIG_BLOCK:
            mask = old | new
        elif how == SIG_UNBLOCK:
            mask = old & ~new
        elif how == SIG_SETMASK:
            mask = new
        else:
            raise SyscallError(errno.EINVAL)
        t.sigmask = mask & ~UNBLOCKABLE
    if oset:
        t.mm.write_u64(oset, old)
    return 0
