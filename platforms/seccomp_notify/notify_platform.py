"""The seccomp_notify platform: the ptrace platform's stubs, with a seccomp user-notification
fast path for calls that only return a value (`--platform=seccomp_notify`).

Each address space is a stub process as in platforms/ptrace (same injection of mmap/munmap/
mprotect/clone at its site, same pool), but application threads run under PTRACE_CONT and the
stub's filter (seccomp_notify/stub.py) decides how each syscall reaches the Sentry:

* FAST numbers -> SECCOMP_RET_USER_NOTIF: the thread blocks in the host kernel; the Sentry
  receives the call on the stub's listener (nr, the six arguments, rip) and answers with
  NOTIF_SEND(val) -- never SECCOMP_USER_NOTIF_FLAG_CONTINUE.  Measured floor about half of a
  PTRACE_SYSEMU round trip (bench/notif_floor.py).
* everything else (and int $0x80) -> SECCOMP_RET_TRACE: a ptrace stop with all registers, as
  under SYSEMU; resuming forces orig_rax = -1, so the host skips the call.
  (SYSEMU itself cannot be used: it skips the call before seccomp runs, so no notification
  would ever be sent.)

At a notification the Sentry knows only the argument registers.  So a context's `regs` is a
`NotifyRegs`, whose other fields (rsp, rbx, eflags, fs_base...) are *lazy* while the thread waits
in a notification: reading or writing one converts the wait into a ptrace stop first
(`materialize`: a SIGURG interrupts the notification, the thread stops in signal-delivery-stop
with its real registers, the Sentry's edits of the known ones are kept).  Resuming a context
whose registers changed only in rax is one NOTIF_SEND; any other change goes the ptrace way
(SETREGS with orig_rax = -1, which also stops the host from restarting the interrupted call).
So signal frames, sigreturn, clone, execve are always built from real registers.

A signal that interrupts a notification before the Sentry received it leaves the thread in a
signal-delivery-stop with rax = -ERESTARTSYS: reported as INTERRUPT_EVENT with the registers
rewound to before the `syscall` (it issues the call again when resumed), as if it had not
entered it.  The Sentry reads application memory through the MemoryFile, never /proc/PID/mem,
so the NOTIF_ID_VALID check Linux asks of supervisors that read the target's memory has no
race to close here; NOTIF_SEND's ENOENT tells a vanished waiter.
"""
from __future__ import annotations

import errno
import fcntl
import os
import signal
import struct

from platforms import contract
from platforms.contract import GPR_NAMES, NO_SYSCALL
from platforms.events import INTERRUPT_EVENT, SYSCALL_EVENT, ExitEvent
from platforms.ptrace import tracer
from platforms.ptrace._ptrace_ext import ffi as pffi, lib as plib
from platforms.ptrace.tracer import PlatformError, PtraceAddressSpace, PtraceContext, PtracePlatform, _check
from platforms.seccomp_notify import stub as stubmod
from platforms.seccomp_notify._notify_ext import ffi, lib

PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_TRACEFORK = 0x2
STUB_OPTIONS = (tracer.PTRACE_O_EXITKILL | tracer.PTRACE_O_TRACESYSGOOD | tracer.PTRACE_O_TRACECLONE
                | PTRACE_O_TRACEFORK | PTRACE_O_TRACESECCOMP)
CLONE_PARENT = 0x8000
SYS_clone = 56
PTRACE_EVENT_SECCOMP = 7
_SECCOMP_STOP = ((signal.SIGTRAP | (PTRACE_EVENT_SECCOMP << 8)) << 8) | 0x7F
_ERESTART = {(-e) & 0xFFFFFFFFFFFFFFFF for e in (512, 513, 514, 516)}   # ERESTARTSYS..RESTART_RESTARTBLOCK
_ENOSYS = (-errno.ENOSYS) & 0xFFFFFFFFFFFFFFFF
_WALL = 0x40000000
_unpack_notif = struct.Struct("<QIIiIQ6Q").unpack_from     # struct seccomp_notif

# What a notification tells: the arguments, the number, rip (and rcx, which `syscall` sets to
# rip).  Every other register is lazy while a context waits in a notification.
KNOWN = ("rax", "orig_rax", "rdi", "rsi", "rdx", "r10", "r8", "r9", "rip", "rcx")
LAZY = tuple(n for n in GPR_NAMES if n not in KNOWN)
RUNNING, NOTIF, PSTOP = 0, 1, 2


class NotifyRegs:
    """A plain register file (every GPR_NAMES slot)."""
    __slots__ = GPR_NAMES + ("_ctx",)


_SLOT = {n: NotifyRegs.__dict__[n] for n in GPR_NAMES}


def _lazy(name: str) -> property:
    slot = _SLOT[name]

    def get(self):
        self._ctx.materialize()
        return slot.__get__(self)

    def set(self, value):
        self._ctx.materialize()
        slot.__set__(self, value)
    return property(get, set)


class LazyRegs(NotifyRegs):
    """A NotifyRegs while its thread waits in a notification: the LAZY fields materialize."""
    __slots__ = ()


for _n in LAZY:
    setattr(LazyRegs, _n, _lazy(_n))


class NotifyContext(PtraceContext):
    """One application thread: a stub thread under PTRACE_CONT and the stub's notify filter."""

    __slots__ = ("creg", "state", "notif_id", "lfd", "early", "snap")

    def __init__(self, tid: int, address_space: "NotifyAddressSpace", template) -> None:
        self.tid = tid
        self.address_space = address_space
        self.task = None
        self._iov = self._xbuf = None
        self.creg = pffi.new("struct user_regs_struct *")      # the C side: GETREGS/SETREGS
        pffi.memmove(self.creg, template, tracer._REGS_SIZE)
        self.shadow = None
        self.regs = NotifyRegs()
        self.regs._ctx = self
        self._from_c()
        self.state = PSTOP
        self.notif_id = 0
        self.lfd = address_space.lfd
        self.early = False          # its ptrace stop was collected while the Sentry held its notification
        self.snap = None

    def _from_c(self, names=GPR_NAMES) -> None:
        c, r = self.creg, self.regs
        for n in names:
            _SLOT[n].__set__(r, getattr(c, n))

    def _to_c(self) -> None:
        c, r = self.creg, self.regs
        for n in GPR_NAMES:
            setattr(c, n, _SLOT[n].__get__(r))

    def materialize(self, kick: bool = True) -> None:
        """Turn the notification this context waits in into a ptrace stop with its real
        registers (the Sentry's edits of the KNOWN ones kept)."""
        if self.state != NOTIF:
            return
        self.state = PSTOP
        self.notif_id = 0
        regs = self.regs
        regs.__class__ = NotifyRegs
        if not self.early:
            if kick:
                plib.rp_tgkill(self.address_space.pid, self.tid, signal.SIGURG)
            st = self._wait_stop()
            if st is None:
                return                 # it died: the exit is queued for the Sentry
        self.early = False
        self._from_c(LAZY)

    def _wait_stop(self):
        while True:
            try:
                pid, st = os.waitpid(self.tid, _WALL)
            except InterruptedError:
                continue
            except ChildProcessError:
                return None
            if os.WIFSTOPPED(st):
                if plib.rp_ptrace(tracer.PTRACE_GETREGS, self.tid, 0, int(pffi.cast("uintptr_t", self.creg))) == 0:
                    return st
                continue
            plat = self.address_space.platform
            plat.backlog.append(plat._exited(self, st))
            return None

    def get_fpstate(self) -> bytes:
        self.materialize()
        return super().get_fpstate()

    def set_fpstate(self, data: bytes) -> None:
        self.materialize()
        super().set_fpstate(data)

    def get_fpregs(self) -> bytes:
        self.materialize()
        return super().get_fpregs()


class MotherStub(PtraceAddressSpace):
    """The stub every address space is forked from, spawned when the platform is made: before
    the Sentry confines itself, so stubs do not inherit the Sentry's seccomp filter.  (Its
    application syscalls must reach the stub's own filter: under PTRACE_CONT, the Sentry's
    filter, which kills for anything outside its allowlist, would take precedence over the
    stub's TRACE/USER_NOTIF.)  As gVisor makes its stubs from an initial stub.  `lfd` is the
    Sentry's copy of the listener, which every stub forked from it shares (one filter)."""

    def _setup(self) -> None:
        self.threads = {}
        self.unreaped = set()
        self._scratch = pffi.new("struct user_regs_struct *")
        self._template = pffi.new("struct user_regs_struct *")
        self.released = False
        status = pffi.new("int *")
        self._waitpid(self.pid, status)
        _check(plib.rp_ptrace(tracer.PTRACE_SETOPTIONS, self.pid, 0, STUB_OPTIONS), "SETOPTIONS")
        _check(plib.rp_resume(self.pid, pffi.NULL, tracer.PTRACE_CONT, 0), "CONT")
        self._waitpid(self.pid, status)
        if not os.WIFSTOPPED(status[0]) or os.WSTOPSIG(status[0]) != signal.SIGTRAP:
            raise PlatformError(f"stub did not reach its ready point (status {status[0]:#x})")
        _check(plib.rp_ptrace(tracer.PTRACE_GETREGS, self.pid, 0, int(pffi.cast("unsigned long", self._template))),
               "GETREGS")
        listener = int(pffi.cast("long", self._template.rax))
        if listener < 0:
            raise PlatformError(f"stub could not install its seccomp filter: {os.strerror(-listener)}")
        self.lfd = _check(lib.sn_getfd(self.pid, listener), "pidfd_getfd of the stub's listener")
        pffi.memmove(self._scratch, self._template, tracer._REGS_SIZE)

    def fork(self) -> int:
        """A new stub: fork(CLONE_PARENT) injected here, so the Sentry is its parent (it reaps it)
        and its tracer (PTRACE_O_TRACEFORK attaches it); stopped at its first stop."""
        pid = self.inject(SYS_clone, CLONE_PARENT | signal.SIGCHLD, 0, 0, 0, 0)
        if pid <= 0:
            raise PlatformError(f"stub fork -> {pid}")
        return pid


class NotifyAddressSpace(PtraceAddressSpace):
    """A stub forked from the platform's MotherStub."""

    def __init__(self, platform: "SeccompNotifyPlatform") -> None:
        self.platform = platform
        self.pid = platform._mother.fork()
        self.lfd = platform._mother.lfd
        self.threads = {}
        self.unreaped = set()
        self._scratch = pffi.new("struct user_regs_struct *")
        self._template = pffi.new("struct user_regs_struct *")
        self.released = False
        status = pffi.new("int *")
        self._waitpid(self.pid, status)            # its auto-attach stop
        pffi.memmove(self._template, platform._mother._template, tracer._REGS_SIZE)
        pffi.memmove(self._scratch, self._template, tracer._REGS_SIZE)

    def new_context(self) -> NotifyContext:
        tid = self.inject(tracer.stubmod.SYS_clone, tracer.CLONE_THREAD_FLAGS, 0, 0, 0, 0)
        if tid <= 0:
            raise PlatformError(f"stub clone -> {tid}")
        self.unreaped.add(tid)
        status = pffi.new("int *")
        self._waitpid(tid, status)
        ctx = NotifyContext(tid, self, self._template)
        self.threads[tid] = ctx
        self.platform.contexts[tid] = ctx
        return ctx

    def release_context(self, ctx: NotifyContext) -> None:
        if ctx.state == NOTIF and not ctx.early:
            # Waiting in a notification: not in a ptrace stop, so the base kills it.
            ctx.state = RUNNING
        elif ctx.state == NOTIF:
            ctx.state = PSTOP
        ctx.regs.__class__ = NotifyRegs
        r = ctx.regs
        r.rip, r.rax, r.rdi, r.orig_rax = tracer.stubmod.STUB.site, tracer.stubmod.SYS_exit, 0, NO_SYSCALL
        ctx._to_c()
        if ctx.tid not in self.threads:
            return
        del self.threads[ctx.tid]
        self.platform.contexts.pop(ctx.tid, None)
        if self.released:
            return
        if ctx.state == PSTOP and plib.rp_resume(ctx.tid, ctx.creg, tracer.PTRACE_CONT, 0) == 0:
            self._reap(ctx.tid)
        else:
            plib.rp_tgkill(self.pid, ctx.tid, signal.SIGKILL)


class SeccompNotifyPlatform(PtracePlatform):
    name = "seccomp_notify"

    def __init__(self, memfile) -> None:
        self.memfile = memfile
        self.stub_fd = os.memfd_create("runsc-py-stub", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.write(self.stub_fd, stubmod.STUB.elf)
        fcntl.fcntl(self.stub_fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
        from collections import deque
        self.contexts: dict[int, NotifyContext] = {}
        self._pool = []
        self._status = ffi.new("int *")
        self._other = pffi.new("struct user_regs_struct *")
        self._regsize = tracer._REGS_SIZE
        self.backlog: deque = deque()
        self._lfds: list[int] = []
        self._clfds = ffi.new("int[1]")
        self._notif = ffi.new("struct sn_notif *")
        self._which = ffi.new("int *")
        self._notif_buf = ffi.buffer(self._notif)
        self._none = (ffi.new("int[1]"), ffi.new("short[1]"), ffi.new("short[1]"))
        _check(lib.sn_notif_size(), "SECCOMP_GET_NOTIF_SIZES")
        self._mother = MotherStub(self)
        self._add_listener(self._mother.lfd)
        self.run = self._make_run()

    def syscall_filters(self) -> contract.Filters:
        from platforms.seccomp_notify.filters import syscall_filters
        return syscall_filters(self.stub_fd)

    def _add_listener(self, fd: int) -> None:
        self._lfds.append(fd)
        self._clfds = ffi.new("int[]", self._lfds)

    def _drop_listener(self, fd: int) -> None:
        if fd in self._lfds:
            self._lfds.remove(fd)
            self._clfds = ffi.new("int[]", self._lfds or [0])

    def release_pool(self) -> None:
        """The sandbox is ending: the pool and the mother stub go (with the listener)."""
        super().release_pool()
        if not self._mother.released:
            self._mother.release()
            self._drop_listener(self._mother.lfd)
            os.close(self._mother.lfd)

    def new_address_space(self) -> NotifyAddressSpace:
        if self._pool:
            return self._pool.pop()
        return NotifyAddressSpace(self)

    def idle(self) -> None:
        if len(self._pool) < self.POOL_TARGET:
            self._pool.append(NotifyAddressSpace(self))

    # -- running -----------------------------------------------------------

    def resume(self, ctx: NotifyContext) -> None:
        if ctx.state == NOTIF:
            regs = ctx.regs
            if regs.__class__ is LazyRegs and ctx.snap == (regs.orig_rax, regs.rdi, regs.rsi, regs.rdx, regs.r10,
                                                           regs.r8, regs.r9, regs.rip, regs.rcx) and not ctx.early:
                r = lib.sn_reply(ctx.lfd, ctx.notif_id, regs.rax)
                if r == 0:
                    ctx.state = RUNNING
                    ctx.notif_id = 0
                    return
                if r != -errno.ENOENT:
                    raise PlatformError(f"NOTIF_SEND: {os.strerror(-r)}")
                ctx.materialize(kick=False)     # interrupted meanwhile: its signal stop comes
            else:
                ctx.materialize()
            if ctx.tid not in self.contexts:
                return                          # it died; its ExitEvent is in the backlog
        ctx._to_c()
        ctx.creg.orig_rax = NO_SYSCALL          # never let the host run or restart the call
        ctx.state = RUNNING
        _check(plib.rp_resume(ctx.tid, ctx.creg, tracer.PTRACE_CONT, 0), "resume")

    def _make_run(self):
        """`run`: the per-syscall path.  A context that waits in a notification and whose
        registers changed only in rax is answered and the next event awaited in one C call."""
        resume, wait, reply_wait = self.resume, self.wait, lib.sn_reply_wait
        notif, which, status, other = self._notif, self._which, self._status, self._other
        on_notif, on_stop, backlog = self._on_notif, self._on_stop, self.backlog

        def run(ctx: NotifyContext):
            regs = ctx.regs
            if ctx.state == NOTIF and regs.__class__ is LazyRegs and not ctx.early and not backlog \
                    and ctx.snap == (regs.orig_rax, regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9,
                                     regs.rip, regs.rcx):
                r = reply_wait(ctx.lfd, ctx.notif_id, regs.rax, self._clfds, len(self._lfds), status, other,
                               notif, which)
                if r > -4096:
                    ctx.state = RUNNING
                    ctx.notif_id = 0
                    if r < 0:
                        raise PlatformError(f"wait: {os.strerror(-r)}")
                    if r == 0:
                        return None, None
                    ev = on_notif(notif) if r == 1 else on_stop(which[0], status[0])
                    return ev if ev is not None else wait(-1, [])
                # The answer failed (the thread was interrupted or died): the slow way.
            resume(ctx)
            return wait(-1, [])
        return run

    def wait(self, timeout_ns: int, fds: list[tuple[int, int]]):
        backlog = self.backlog
        if backlog:
            return backlog.popleft()
        n = len(fds)
        if n:
            cfds = ffi.new("int[]", [fd for fd, _ in fds])
            cev = ffi.new("short[]", [ev for _, ev in fds])
            crev = ffi.new("short[]", n)
        else:
            cfds, cev, crev = self._none
        notif, which, status = self._notif, self._which, self._status
        while True:
            r = lib.sn_wait(timeout_ns, self._clfds, len(self._lfds), cfds, cev, crev, n, status, self._other,
                            notif, which)
            if r < 0:
                raise PlatformError(f"wait: {os.strerror(-r)}")
            if r == 0:
                return None, [crev[i] for i in range(n)]
            if r == 1:
                ev = self._on_notif(notif)
            else:
                ev = self._on_stop(which[0], status[0])
            if ev is not None:
                return ev

    def _on_notif(self, n):
        ctx = self.contexts.get(n.pid)
        if ctx is None:
            # Not a thread of ours (a stub's main thread cannot make FAST calls): refuse, never run.
            for lfd in self._lfds:
                if lib.sn_reply(lfd, n.id, _ENOSYS) == 0:
                    break
            return None
        regs = ctx.regs
        _, _, _, nr, _, ip, a0, a1, a2, a3, a4, a5 = _unpack_notif(self._notif_buf)
        regs.orig_rax = nr
        regs.rax = _ENOSYS
        regs.rdi = a0
        regs.rsi = a1
        regs.rdx = a2
        regs.r10 = a3
        regs.r8 = a4
        regs.r9 = a5
        regs.rip = regs.rcx = ip
        regs.__class__ = LazyRegs
        ctx.snap = (nr, a0, a1, a2, a3, a4, a5, ip, ip)
        ctx.state = NOTIF
        ctx.notif_id = n.id
        ctx.early = False
        return ctx, SYSCALL_EVENT

    def _exited(self, ctx: NotifyContext, status: int):
        self.contexts.pop(ctx.tid, None)
        ctx.address_space.threads.pop(ctx.tid, None)
        ctx.address_space.unreaped.discard(ctx.tid)
        return ctx, ExitEvent(status)

    def _on_stop(self, pid: int, status: int):
        ctx = self.contexts.get(pid)
        if ctx is None:
            return None, None          # a stub main thread or an already-released thread
        if not os.WIFSTOPPED(status):
            return self._exited(ctx, status)
        if ctx.state == NOTIF:
            # The Sentry holds its notification, and a signal interrupted the wait: keep the
            # stop for `materialize`/`resume`.
            pffi.memmove(ctx.creg, self._other, self._regsize)
            ctx.early = True
            return None
        pffi.memmove(ctx.creg, self._other, self._regsize)
        ctx.regs.__class__ = NotifyRegs
        ctx._from_c()
        ctx.state = PSTOP
        regs = ctx.regs
        if status == _SECCOMP_STOP:
            return ctx, self._suspect(ctx) if regs.rcx != regs.rip else SYSCALL_EVENT
        if regs.orig_rax != NO_SYSCALL and regs.rax in _ERESTART:
            # Interrupted while waiting in a notification nobody received: as if it had not
            # entered the call yet.
            regs.rip -= 2
            regs.rax = regs.orig_rax
            regs.orig_rax = NO_SYSCALL
        return ctx, self._decode(ctx, status)

    def kick(self, ctx: NotifyContext) -> None:
        if ctx.state == RUNNING:
            plib.rp_tgkill(ctx.address_space.pid, ctx.tid, signal.SIGURG)

    def forward_host_signals(self, sigs) -> None:
        sigs = list(sigs)
        _check(lib.sn_forward_signals(ffi.new("int[]", sigs), len(sigs)), "sigaction")

    forwarded_bits = staticmethod(lib.sn_take_forwarded)

    def take_forwarded(self):
        bits = lib.sn_take_forwarded()
        return self.decode_forwarded(bits) if bits else None
