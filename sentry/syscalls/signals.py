"""Signal syscalls.  Handlers and masks are kept per Linux's rules; delivery
(frames, sigreturn) arrives with the process-and-signals work."""
from __future__ import annotations

import errno
import signal
import struct

from sentry.errors import SyscallError
from sentry.syscalls.args import s32
from sentry.syscalls.registry import Support, syscall
from sentry.pidns import kill_target, sent_from_outside
from sentry.task import Deadline, Marker, SignalAction

SIGACTION = struct.Struct("<QQQQ")
UNBLOCKABLE = (1 << (signal.SIGKILL - 1)) | (1 << (signal.SIGSTOP - 1))
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
# The sa_flags bits Linux keeps (UAPI_SA_FLAGS on x86: the rest are cleared, so they read back as 0).
UAPI_SA_FLAGS = 0x1 | 0x2 | 0x4 | 0x800 | 0x04000000 | 0x08000000 | 0x10000000 | 0x40000000 | 0x80000000


@syscall("rt_sigaction")
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
        t.tg.sigactions[sig] = SignalAction(handler, flags & UAPI_SA_FLAGS, restorer, mask & ~UNBLOCKABLE)
        sg.disposition_changed(t.tg, sig)
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


# -- delivery-related syscalls --------------------------------------------------

from sentry import signals as sg  # noqa: E402


@syscall("rt_sigreturn")
def rt_sigreturn(t):
    """rt_sigreturn(2): back from a handler to the interrupted context."""
    return sg.sigreturn(t)


def _siginfo_from_sender(t, sig: int, code: int) -> bytes:
    return sg.siginfo(sig, code, pid=t.tg.tgid, uid=t.tg.creds.ruid)


def _may_signal(t, target_tg) -> bool:
    c, tc = t.tg.creds, target_tg.creds
    return c.euid == 0 or c.euid in (tc.ruid, tc.suid) or c.ruid in (tc.ruid, tc.suid)


@syscall("kill")
def kill(t, pid, sig):
    """kill(2): pid > 0, 0 (own group), -1 (everyone we may signal but init and ourselves), < -1 (a group)."""
    from sentry import process
    pid, sig = s32(pid), s32(sig)
    if sig < 0 or sig > 64:
        raise SyscallError(errno.EINVAL)
    k = t.kernel
    ns = t.tg.pidns                               # a PID namespace made inside (sentry/pidns.py)
    if ns is not None:
        pid = kill_target(ns, pid)
    if pid > 0:
        tg = k.thread_groups.get(pid)
        if tg is None or tg.zombie or tg.exiting:
            if tg is not None and (tg.zombie or tg.exiting):
                return 0
            raise SyscallError(errno.ESRCH)
        targets = [tg]
    elif pid == -1:
        targets = [g for g in k.thread_groups.values() if g.tgid != 1 and g is not t.tg and not g.exiting
                   and (ns is None or (g.tgid in ns.g2n and g is not ns.init))]
        if not targets:
            raise SyscallError(errno.ESRCH)
    else:
        pgid = t.tg.pgid if pid == 0 else -pid
        targets = [g for g in k.thread_groups.values() if g.pgid == pgid and not g.exiting]
        if not targets:
            raise SyscallError(errno.ESRCH)
    allowed = [g for g in targets if _may_signal(t, g)]
    if not allowed:
        raise SyscallError(errno.EPERM)
    if sig == 0:
        return 0
    info = _siginfo_from_sender(t, sig, sg.SI_USER)
    for g in allowed:
        process.send_to_group(k, g, sig, info, force=sent_from_outside(t.tg, g))
    return 0


def _thread_kill(t, tgid: int, tid: int, sig: int) -> int:
    from sentry import process
    if sig < 0 or sig > 64 or tid <= 0:
        raise SyscallError(errno.EINVAL)
    if t.tg.pidns is not None:
        tid, tgid = kill_target(t.tg.pidns, tid), kill_target(t.tg.pidns, tgid) if tgid > 0 else tgid
    target = t.kernel.tasks.get(tid)
    if target is None or (tgid > 0 and target.tg.tgid != tgid) or target.exited:
        raise SyscallError(errno.ESRCH)
    if not _may_signal(t, target.tg):
        raise SyscallError(errno.EPERM)
    if sig == 0:
        return 0
    process.send_to_task(t.kernel, target, sig, _siginfo_from_sender(t, sig, sg.SI_TKILL),
                         force=sent_from_outside(t.tg, target.tg))
    return 0


@syscall("tkill")
def tkill(t, tid, sig):
    """tkill(2)."""
    return _thread_kill(t, -1, s32(tid), s32(sig))


@syscall("tgkill")
def tgkill(t, tgid, tid, sig):
    """tgkill(2)."""
    tgid = s32(tgid)
    if tgid <= 0:
        raise SyscallError(errno.EINVAL)
    return _thread_kill(t, tgid, s32(tid), s32(sig))


@syscall("rt_sigqueueinfo")
def rt_sigqueueinfo(t, tgid, sig, uinfo):
    """rt_sigqueueinfo(2): only negative si_codes may be forged (EPERM otherwise), as Linux."""
    from sentry import process
    tgid, sig = s32(tgid), s32(sig)
    if sig < 1 or sig > 64:
        raise SyscallError(errno.EINVAL)
    info = bytearray(t.mm.read(uinfo, 128))
    code = int.from_bytes(info[8:12], "little", signed=True)
    if t.tg.pidns is not None and tgid > 0:
        tgid = kill_target(t.tg.pidns, tgid)
    tg = t.kernel.thread_groups.get(tgid)
    if tg is None:
        raise SyscallError(errno.ESRCH)
    if (code >= 0 or code == sg.SI_TKILL) and tg is not t.tg:
        raise SyscallError(errno.EPERM)
    info[0:4] = sig.to_bytes(4, "little")
    process.send_to_group(t.kernel, tg, sig, bytes(info), force=sent_from_outside(t.tg, tg))
    return 0


STACK_T = struct.Struct("<Qi4xQ")
MINSIGSTKSZ = 2048


@syscall("sigaltstack")
def sigaltstack(t, ss, old):
    """sigaltstack(2)."""
    regs = t.ctx.regs
    sp, flags, size = t.altstack
    on = bool(size) and sp <= regs.rsp < sp + size and not flags & sg.SS_DISABLE
    new = t.mm.read_struct(ss, STACK_T) if ss else None
    if old:
        t.mm.write_struct(old, STACK_T, sp, sg.SS_ONSTACK if on else (flags & sg.SS_DISABLE), size)
    if new is not None:
        nsp, nflags, nsize = new
        if on:
            raise SyscallError(errno.EPERM)
        if nflags & ~(sg.SS_DISABLE | 0x80000000) or (nflags & ~0x80000000) not in (0, sg.SS_DISABLE, sg.SS_ONSTACK):
            raise SyscallError(errno.EINVAL)
        if nflags & sg.SS_DISABLE:
            t.altstack = (0, sg.SS_DISABLE, 0)
        else:
            if nsize < MINSIGSTKSZ:
                raise SyscallError(errno.ENOMEM)
            t.altstack = (nsp, 0, nsize)
    return 0


def _pending_mask(t) -> int:
    m = 0
    for s in list(t.pending) + list(t.tg.shared_pending):
        m |= sg.bit(s)
    return m


@syscall("rt_sigpending")
def rt_sigpending(t, setp, sigsetsize):
    """rt_sigpending(2): pending signals that are blocked."""
    if sigsetsize > 8:
        raise SyscallError(errno.EINVAL)
    t.mm.write(setp, (_pending_mask(t) & t.sigmask).to_bytes(8, "little")[:sigsetsize])
    return 0


@syscall("rt_sigsuspend")
def rt_sigsuspend(t, mask, sigsetsize):
    """rt_sigsuspend(2): wait for a signal with a temporary mask; always EINTR."""
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    if t.resume(Marker) is None:
        new = t.mm.read_u64(mask) & ~UNBLOCKABLE
        t.saved_sigmask = t.sigmask
        t.sigmask = new
        t.begin(Marker())
        # A signal already pending that the new mask unblocks ends the wait at
        # once (nothing would wake a parked task for it): EINTR, then the
        # handler runs with the saved mask restored on its return.
        for pend in (t.pending, t.tg.shared_pending):
            if any(not (new >> (sig - 1)) & 1 for sig in pend):
                raise SyscallError(errno.EINTR)
    t.block()


@syscall("pause")
def pause(t):
    """pause(2)."""
    t.block()


@syscall("rt_sigtimedwait")
def rt_sigtimedwait(t, uthese, uinfo, uts, sigsetsize):
    """rt_sigtimedwait(2): take a pending signal from the set without running its handler."""
    from sentry.syscalls.time import read_timespec
    import time as _time
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    these = t.mm.read_u64(uthese) & ~UNBLOCKABLE
    for pend in (t.pending, t.tg.shared_pending):
        for sig in sorted(pend):
            if these & sg.bit(sig):
                info = sg.take(pend, sig)
                if uinfo:
                    t.mm.write(uinfo, info)
                if t.saved_sigmask is not None:
                    t.sigmask, t.saved_sigmask = t.saved_sigmask, None
                return sig
    st = t.resume(Deadline)
    if st is None:
        deadline = None
        if uts:
            deadline = _time.monotonic() + read_timespec(t, uts) / 1e9
        st = t.begin(Deadline(deadline))
        # While waiting, the awaited signals are unblocked so they interrupt us (and are then taken above).
        t.saved_sigmask = t.sigmask
        t.sigmask &= ~these
    elif t.timed_out:
        t.sigmask, t.saved_sigmask = t.saved_sigmask, None
        raise SyscallError(errno.EAGAIN)
    if st.deadline is not None and st.deadline <= _time.monotonic():
        t.sigmask, t.saved_sigmask = t.saved_sigmask, None
        raise SyscallError(errno.EAGAIN)
    t.block(deadline=st.deadline)
