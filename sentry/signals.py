"""Signal generation and delivery, as Linux does it for x86-64.

Generation queues a siginfo on a thread (tkill, faults) or on the thread
group (kill), and makes sure some thread that does not block it notices:
a thread parked in a syscall is interrupted; a thread running application
code on a host CPU is kicked with a host SIGURG, which ptrace turns into a
stop the Sentry swallows (the stub never acts on host signals).

Delivery happens just before a thread is resumed: the lowest pending,
unblocked signal is taken; its disposition decides: ignore, a default
action (terminate, core, stop, continue), or a handler, for which an
`rt_sigframe` is built on the application stack exactly as
arch/x86/kernel/signal.c lays it out (pretcode, ucontext with the
sigcontext and the old mask, siginfo, and the full XSAVE area with its
magic words: sentry/fpframe.py), aligned as Linux aligns it, so glibc's
and musl's `sa_restorer` (`rt_sigreturn`) and anything reading the
ucontext work unchanged, and AVX/AVX-512 state survives a handler.
"""
from __future__ import annotations

import errno
import signal as _sig
import struct

from platforms import PlatformError
from sentry import fpframe

from sentry.errors import SyscallError

SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE = 1, 2, 3, 4, 5, 6, 7, 8
SIGKILL, SIGUSR1, SIGSEGV, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM = 9, 10, 11, 12, 13, 14, 15
SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG = 17, 18, 19, 20, 21, 22, 23
SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR, SIGSYS = 24, 25, 26, 27, 28, 29, 30, 31

SIG_DFL, SIG_IGN = 0, 1
SA_NOCLDSTOP, SA_NOCLDWAIT, SA_SIGINFO, SA_RESTORER = 1, 2, 4, 0x04000000
SA_ONSTACK, SA_RESTART, SA_NODEFER, SA_RESETHAND = 0x08000000, 0x10000000, 0x40000000, 0x80000000
SS_ONSTACK, SS_DISABLE = 1, 2

SI_USER, SI_KERNEL, SI_QUEUE, SI_TIMER, SI_TKILL = 0, 0x80, -1, -2, -6
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_TRAPPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 4, 5, 6

CORE = {SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGSYS, SIGXCPU, SIGXFSZ}
STOP = {SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU}
IGNORE = {SIGCHLD, SIGURG, SIGWINCH, SIGCONT}
UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))

# Syscalls that a signal with a handler never restarts, even with SA_RESTART
# (Linux answers them with ERESTARTNOHAND or ERESTART_RESTARTBLOCK).
NO_RESTART_WITH_HANDLER = {"nanosleep", "clock_nanosleep", "poll", "ppoll", "select", "pselect6",
                           "epoll_wait", "epoll_pwait", "epoll_pwait2", "rt_sigsuspend", "rt_sigtimedwait",
                           "pause", "io_getevents", "msgrcv", "msgsnd", "semop", "semtimedop"}
NEVER_RESTART = {"rt_sigsuspend", "pause", "rt_sigtimedwait", "semop", "semtimedop"}   # semop: Linux's -EINTR

SIGINFO_SIZE = 128
SIGCONTEXT = struct.Struct("<17QQHHHHQQQQQ64x")      # r8..rip, eflags, cs gs fs ss, err trapno oldmask cr2 fpstate
UC_HEAD = struct.Struct("<QQQi4xQ")                # uc_flags, uc_link, ss_sp, ss_flags, ss_size
FRAME_SIZE = 8 + UC_HEAD.size + SIGCONTEXT.size + 8 + SIGINFO_SIZE
FXSAVE_SIZE = 512
_GPR_ORDER = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx", "rdx", "rax",
              "rcx", "rsp", "rip")
# Flags a handler may change through the sigcontext (FIX_EFLAGS).
FIX_EFLAGS = 0x40000 | 0x800 | 0x400 | 0x100 | 0x80 | 0x40 | 0x10 | 0x4 | 0x1 | 0x10000


_U64 = 0xFFFFFFFFFFFFFFFF
_MXCSR = struct.Struct("<I")


def name(sig: int) -> str:
    """SIGTERM, ..., SIGRTMIN+3 (signal.Signals has no names for most real-time signals)."""
    try:
        return _sig.Signals(sig).name
    except ValueError:
        return f"SIGRTMIN+{sig - 34}" if 34 <= sig <= 64 else f"signal {sig}"


def bit(sig: int) -> int:
    return 1 << (sig - 1)


def siginfo(signo: int, code: int, *, pid: int = 0, uid: int = 0, status: int = 0, addr: int = 0,
            value: int = 0, tid: int = 0, overrun: int = 0, errno_: int = 0) -> bytes:
    head = struct.pack("<iii4x", signo, errno_, code)
    if code > 0 and (signo == SIGCHLD or (status and signo not in (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP))):
        # the child-status layout, also for a clone child's exit_signal other than SIGCHLD
        body = struct.pack("<iIi4xqq", pid, uid, status, 0, 0)
    elif code > 0 and signo in (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP):
        body = struct.pack("<Q", addr)
    elif code == SI_TIMER:
        body = struct.pack("<iiQ", tid, overrun, value)
    else:
        body = struct.pack("<iIQ", pid, uid, value)
    return (head + body).ljust(SIGINFO_SIZE, b"\0")


def default_action(sig: int) -> str:
    if sig in CORE:
        return "core"
    if sig in STOP:
        return "stop"
    if sig == SIGCONT:
        return "continue"
    if sig in IGNORE:
        return "ignore"
    return "term"


def is_ignored(tg, sig: int) -> bool:
    act = tg.sigactions[sig]
    if act.handler == SIG_IGN:
        return True
    return act.handler == SIG_DFL and default_action(sig) == "ignore"


def disposition_changed(tg, sig: int) -> None:
    """rt_sigaction changed `sig`'s action.  Now ignored: its pending instances are discarded in
    every thread, blocked or not (Linux's flush_sigqueue_mask in do_sigaction); a timer's signal
    discarded so parks its timer.  No longer ignored: POSIX timers parked on it queue their signal
    again (posixtimer_sig_unignore)."""
    from sentry.syscalls.timers import signal_unignored
    if not is_ignored(tg, sig):
        signal_unignored(tg, sig)
        return
    for pend in [tg.shared_pending] + [t.pending for t in tg.tasks]:
        for info in pend.pop(sig, ()):
            if type(info) is not bytes:
                info.timer.discarded(info)


def take(pend: dict, sig: int) -> bytes:
    """Dequeue the first siginfo of `sig` from a pending set (dequeue_signal): a timer's re-arms
    its timer and carries the overrun."""
    infos = pend[sig]
    info = infos.pop(0)
    if not infos:
        del pend[sig]
    if type(info) is not bytes:
        info = info.dequeued()
    return info


def _on_sig_stack(t, sp: int) -> bool:
    """__on_sig_stack: `sp` is inside the alternate stack (which grows down from its top)."""
    ss_sp, ss_flags, ss_size = t.altstack
    return bool(ss_size) and not ss_flags & SS_DISABLE and ss_sp < sp and sp - ss_sp <= ss_size


def setup_frame(t, sig: int, info: bytes, act) -> None:
    """Build an rt_sigframe on the stack (get_sigframe, __setup_rt_frame) and point the
    registers at the handler, which starts with the initial FPU state."""
    ctx = t.ctx
    regs = ctx.regs
    mm = t.mm
    layout = fpframe.for_platform(t.kernel.platform)
    ss_sp, ss_flags, ss_size = t.altstack
    on_alt = _on_sig_stack(t, regs.rsp)             # a nested signal on the alternate stack
    sp = regs.rsp - 128                             # the x86-64 red zone
    entering = False
    if act.flags & SA_ONSTACK and ss_size and not ss_flags & SS_DISABLE and not _on_sig_stack(t, sp):
        sp = ss_sp + ss_size
        entering = True
    # Unsigned 64-bit arithmetic, as the kernel's: a stack pointer near 0 wraps to an address
    # no mapping holds, so the write below fails (EFAULT) and the caller forces SIGSEGV.
    sp = (sp - layout.frame_fp_size) & ~63 & _U64   # the XSAVE area, 64-byte aligned
    fp_addr = sp
    sp = (((sp - FRAME_SIZE) & ~15) - 8) & _U64     # (rsp + 8) % 16 == 0, as after a call
    frame = sp
    if (on_alt or entering) and not _on_sig_stack(t, sp):
        raise SyscallError(errno.EFAULT)            # the frame overflows the alternate stack
    old_mask = t.saved_sigmask if t.saved_sigmask is not None else t.sigmask
    t.saved_sigmask = None
    gprs = [getattr(regs, n) for n in _GPR_ORDER]
    sc = SIGCONTEXT.pack(*gprs, regs.eflags, regs.cs & 0xFFFF, 0, 0, regs.ss & 0xFFFF, 0, 0, old_mask & 0xFFFFFFFFFFFFFFFF,
                         0, fp_addr)
    alt_flags = SS_DISABLE if ss_flags & SS_DISABLE else (SS_ONSTACK if on_alt else 0)
    uc = UC_HEAD.pack(layout.uc_flags, 0, ss_sp, alt_flags, ss_size) + sc + struct.pack("<Q", old_mask)
    data = struct.pack("<Q", act.restorer) + uc + info
    fpstate = ctx.get_fpstate()
    mm.write(frame, data)                           # EFAULT -> SIGSEGV, handled by the caller
    mm.write(fp_addr, layout.frame_image(fpstate))
    ctx.set_fpstate(layout.handler_state())         # fpu__clear_user_states
    regs.rdi = sig
    regs.rsi = frame + 8 + len(uc)
    regs.rdx = frame + 8
    regs.rax = 0
    regs.rip = act.handler
    regs.rsp = frame
    regs.eflags &= ~(0x400 | 0x100 | 0x10000)       # DF, TF, RF cleared, as Linux
    regs.orig_rax = 0xFFFFFFFFFFFFFFFF
    mask = t.sigmask | act.mask
    if not act.flags & SA_NODEFER:
        mask |= bit(sig)
    t.sigmask = mask & ~UNBLOCKABLE
    if act.flags & SA_RESETHAND:
        from sentry.task import SignalAction
        t.tg.sigactions[sig] = SignalAction()


def sigreturn(t) -> int:
    """rt_sigreturn(2): restore what setup_frame saved; returns the restored rax.

    A frame that cannot be read (or an FPU image the CPU would refuse: reserved MXCSR bits, an
    XSAVE header XRSTOR faults on) is Linux's `badframe`: nothing is restored and the thread
    gets a forced SIGSEGV.  The FPU state: sentry/fpframe.py (a legacy-only frame restores the
    FXSAVE part, the rest initial; no fpstate at all resets it)."""
    regs = t.ctx.regs
    mm = t.mm
    uc = regs.rsp
    try:
        _flags, _link, ss_sp, ss_flags, ss_size = mm.read_struct(uc, UC_HEAD)
        vals = mm.read_struct(uc + UC_HEAD.size, SIGCONTEXT)
        mask = mm.read_u64(uc + UC_HEAD.size + SIGCONTEXT.size)
        fp = vals[26]
        layout = fpframe.for_platform(t.kernel.platform)
        fpbuf = layout.restore_buffer(mm.read, fp) if fp else layout.handler_state()
    except (SyscallError, fpframe.BadFrame):
        fpbuf = None
    if fpbuf is None:
        t.kernel.force_signal(t, SIGSEGV, SI_KERNEL)
        return regs.rax
    for name, v in zip(_GPR_ORDER, vals[:17]):
        setattr(regs, name, v)
    regs.eflags = (regs.eflags & ~FIX_EFLAGS) | (vals[17] & FIX_EFLAGS)
    regs.orig_rax = 0xFFFFFFFFFFFFFFFF
    try:
        t.ctx.set_fpstate(fpbuf)
    except PlatformError:                           # refused by the host's own checks: bad frame
        t.kernel.force_signal(t, SIGSEGV, SI_KERNEL)
    t.sigmask = mask & ~UNBLOCKABLE
    if not ss_flags & SS_ONSTACK:
        t.altstack = (ss_sp, ss_flags & SS_DISABLE, ss_size) if ss_size or ss_flags & SS_DISABLE else t.altstack
    return regs.rax
