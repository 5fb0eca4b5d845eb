"""The ptrace platform: application address spaces are stub processes.

Each address space is one stub process (see `stub.py`).  Its main thread
never runs application code: it sits at the stub's `int3` and is the
thread the Sentry injects `mmap`/`munmap`/`mprotect`/`clone` into, so the
address space can be changed whatever its application threads are doing.
Each application thread is a further host thread of the stub, created by
an injected `clone(CLONE_VM|CLONE_THREAD|...)`, traced with
`PTRACE_O_TRACECLONE` and run under `PTRACE_SYSEMU`: its syscalls stop
in the Sentry and never execute on the host.  Application threads really
run in parallel on host CPUs; the Sentry handles their stops one at a time.

All ptrace calls come from the Sentry's one thread (ptrace binds a tracee
to the tracing *thread*).  `PTRACE_O_EXITKILL` and `PR_SET_PDEATHSIG`
kill every stub if the Sentry dies, so nothing is left behind.
"""
from __future__ import annotations

import os
import signal
from collections import deque

import time

from platforms import contract, hostarch
from platforms.events import INTERRUPT_EVENT, SYSCALL32_EVENT, SYSCALL_EVENT, ExitEvent, FaultEvent
from platforms.ptrace import stub as stubmod
from platforms.ptrace._ptrace_ext import ffi, lib

PTRACE_TRACEME, PTRACE_PEEKTEXT = 0, 1
PTRACE_CONT = 7
PTRACE_KILL = 8
PTRACE_GETREGS, PTRACE_SETREGS = 12, 13
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETSIGINFO = 0x4202
PTRACE_GETREGSET, PTRACE_SETREGSET = 0x4204, 0x4205
PTRACE_SYSEMU = 31
PTRACE_GETFPREGS = 14
PTRACE_SETFPREGS = 15
NT_X86_XSTATE = 0x202
PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_EXITKILL = 0x100000

SYSCALL_STOP = signal.SIGTRAP | 0x80
_SYSCALL_STATUS = (SYSCALL_STOP << 8) | 0x7F      # the wait status of a PTRACE_SYSEMU stop

CLONE_THREAD_FLAGS = (0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000)  # VM FS FILES SIGHAND THREAD SYSVSEM

MAP_SHARED = 0x01
MAP_FIXED = 0x10


class PlatformError(contract.PlatformError):
    """The host refused to drive a stub (it died, or ptrace failed)."""


def _check(r: int, what: str) -> int:
    if r < 0:
        raise PlatformError(f"{what}: {os.strerror(-r)}")
    return r


FPSTATE_SIZE = hostarch.XSTATE.max_size if hostarch.XSTATE is not None else hostarch.FXSAVE_SIZE
_REGS_SIZE = ffi.sizeof("struct user_regs_struct")
_REGS_PTR = ffi.typeof("struct user_regs_struct *")


def _cpu_clock_ns(pid: int) -> int:
    """The CPU time of host process `pid` (a stub): a process clock, which Linux lets any
    process read (CPUCLOCK id ~pid << 3 | CPUCLOCK_SCHED); another process's THREAD clocks it
    refuses, so a stub thread's own time cannot be read from here."""
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2)
    except OSError:
        return 0


class PtraceContext:
    """One application thread: a host thread of a stub, run under PTRACE_SYSEMU."""

    __slots__ = ("tid", "regs", "shadow", "address_space", "task", "_iov", "_xbuf")

    def __init__(self, tid: int, address_space: "PtraceAddressSpace", template) -> None:
        self.tid = tid
        self.address_space = address_space
        self.regs = ffi.new("struct user_regs_struct *")
        ffi.memmove(self.regs, template, _REGS_SIZE)
        # What the host thread's registers are, as last fetched or set: resuming writes back only
        # what differs (rp_run_lean).  Unknown yet: a rip no user code has forces a full SETREGS.
        self.shadow = ffi.new("struct user_regs_struct *")
        self.shadow.rip = 0xFFFFFFFFFFFFFFFF
        self.task = None            # the Sentry's Task, set by the kernel
        self._iov = None            # the XSAVE buffer and its iovec, made on first use
        self._xbuf = None

    def clear_regs(self, rip: int, rsp: int) -> None:
        r = self.regs
        for name in ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
                     "rax", "rcx", "rdx", "rsi", "rdi", "fs_base", "gs_base"):
            setattr(r, name, 0)
        r.orig_rax = 0xFFFFFFFFFFFFFFFF
        r.rip = rip
        r.rsp = rsp
        r.eflags = 0x202

    def set_regs(self, src) -> None:
        if isinstance(src, ffi.CData) and ffi.typeof(src) is _REGS_PTR:
            ffi.memmove(self.regs, src, _REGS_SIZE)
        else:
            contract.copy_regs(self.regs, src)

    def get_fpregs(self) -> bytes:
        """The legacy 512-byte FXSAVE region only."""
        buf = ffi.new("char[512]")
        _check(lib.rp_ptrace(PTRACE_GETFPREGS, self.tid, 0, int(ffi.cast("unsigned long", buf))), "GETFPREGS")
        return bytes(ffi.buffer(buf))

    def set_fpregs(self, data: bytes) -> None:
        buf = ffi.new("char[512]", data)
        _check(lib.rp_ptrace(PTRACE_SETFPREGS, self.tid, 0, int(ffi.cast("unsigned long", buf))), "SETFPREGS")

    def _xstate_iov(self):
        if self._iov is None:
            self._xbuf = ffi.new("char[]", FPSTATE_SIZE)
            self._iov = ffi.new("unsigned long[2]", [int(ffi.cast("unsigned long", self._xbuf)), FPSTATE_SIZE])
        self._iov[1] = FPSTATE_SIZE
        return int(ffi.cast("unsigned long", self._iov))

    def get_fpstate(self) -> bytes:
        """The full XSAVE area (PTRACE_GETREGSET NT_X86_XSTATE), FPSTATE_SIZE bytes."""
        if hostarch.XSTATE is None:
            return self.get_fpregs()
        _check(lib.rp_ptrace(PTRACE_GETREGSET, self.tid, NT_X86_XSTATE, self._xstate_iov()), "GETREGSET")
        return bytes(ffi.buffer(self._xbuf, FPSTATE_SIZE))

    def set_fpstate(self, data: bytes) -> None:
        """PTRACE_SETREGSET NT_X86_XSTATE: Linux takes exactly the full size, so pad."""
        if hostarch.XSTATE is None:
            self.set_fpregs(bytes(data[:512]).ljust(512, b"\0"))
            return
        iov = self._xstate_iov()
        ffi.memmove(self._xbuf, bytes(data[:FPSTATE_SIZE]).ljust(FPSTATE_SIZE, b"\0"), FPSTATE_SIZE)
        _check(lib.rp_ptrace(PTRACE_SETREGSET, self.tid, NT_X86_XSTATE, iov), "SETREGSET")

    def cpu_time_ns(self) -> int:
        # The stub's process clock: exact for one thread per stub, an upper bound with more.
        return _cpu_clock_ns(self.address_space.pid)


class PtraceAddressSpace:
    """A stub process; its main thread is the injection thread."""

    def __init__(self, platform: "PtracePlatform") -> None:
        self.platform = platform
        self.pid = platform._spawn()
        self._setup()

    def _setup(self) -> None:
        self.threads: dict[int, PtraceContext] = {}
        self.unreaped: set[int] = set()       # every host thread made in this stub and not yet reaped
        self._scratch = ffi.new("struct user_regs_struct *")
        self._template = ffi.new("struct user_regs_struct *")
        self.released = False
        # Wait for the exec stop, set options, run the stub's set-up to its int3.
        status = ffi.new("int *")
        self._waitpid(self.pid, status)
        _check(lib.rp_ptrace(PTRACE_SETOPTIONS, self.pid, 0,
                             PTRACE_O_EXITKILL | PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE), "SETOPTIONS")
        _check(lib.rp_resume(self.pid, ffi.NULL, PTRACE_CONT, 0), "CONT")
        self._waitpid(self.pid, status)
        if not os.WIFSTOPPED(status[0]) or os.WSTOPSIG(status[0]) != signal.SIGTRAP:
            raise PlatformError(f"stub did not reach its ready point (status {status[0]:#x})")
        _check(lib.rp_ptrace(12, self.pid, 0, int(ffi.cast("unsigned long", self._template))), "GETREGS")
        if self._template.rax != 0:
            raise PlatformError(f"stub could not install its seccomp filter: {os.strerror(-ffi.cast('long', self._template.rax))}")
        ffi.memmove(self._scratch, self._template, ffi.sizeof("struct user_regs_struct"))

    def _waitpid(self, pid: int, status) -> None:
        while True:
            try:
                _, st = os.waitpid(pid, os.__dict__.get("__WALL", 0x40000000))
            except InterruptedError:
                continue
            status[0] = st
            if os.WIFEXITED(st) or os.WIFSIGNALED(st):
                raise PlatformError(f"stub {pid} died during set-up (status {st:#x})")
            return

    def inject(self, nr: int, *args: int) -> int:
        a = list(args) + [0] * (6 - len(args))
        r = lib.rp_inject(self.pid, self._scratch, stubmod.STUB.site, nr, *a)
        if r < -4096 and r > -8192:
            raise PlatformError(f"injecting syscall {nr} into stub {self.pid}: {os.strerror(-r - 4096)}")
        return r

    def map(self, addr: int, length: int, prot: int, memfile_offset: int) -> None:
        r = self.inject(stubmod.SYS_mmap, addr, length, prot, MAP_SHARED | MAP_FIXED,
                        stubmod.STUB_MEMFD, memfile_offset)
        if r != addr:
            raise PlatformError(f"stub mmap({addr:#x}, {length:#x}) -> {r}")

    def unmap(self, addr: int, length: int) -> None:
        r = self.inject(stubmod.SYS_munmap, addr, length)
        if r != 0:
            raise PlatformError(f"stub munmap({addr:#x}, {length:#x}) -> {r}")

    def protect(self, addr: int, length: int, prot: int) -> None:
        r = self.inject(stubmod.SYS_mprotect, addr, length, prot)
        if r != 0:
            raise PlatformError(f"stub mprotect({addr:#x}, {length:#x}) -> {r}")

    def new_context(self) -> PtraceContext:
        """A new host thread in the stub, stopped, ready to take application registers."""
        tid = self.inject(stubmod.SYS_clone, CLONE_THREAD_FLAGS, 0, 0, 0, 0)
        if tid <= 0:
            raise PlatformError(f"stub clone -> {tid}")
        self.unreaped.add(tid)
        status = ffi.new("int *")
        self._waitpid(tid, status)          # its first stop (SIGSTOP of auto-attach)
        ctx = PtraceContext(tid, self, self._template)
        self.threads[tid] = ctx
        self.platform.contexts[tid] = ctx
        return ctx

    def release_context(self, ctx: PtraceContext) -> None:
        """End an application thread: the host thread exits at the stub's syscall site."""
        if ctx.tid not in self.threads:
            return
        del self.threads[ctx.tid]
        self.platform.contexts.pop(ctx.tid, None)
        if self.released:
            return
        r = ctx.regs
        r.rip = stubmod.STUB.site
        r.rax = stubmod.SYS_exit
        r.rdi = 0
        r.orig_rax = 0xFFFFFFFFFFFFFFFF
        if lib.rp_resume(ctx.tid, r, PTRACE_CONT, 0) == 0:
            self._reap(ctx.tid)
        else:
            # Not in a ptrace stop (running application code): stop it for good; it is reaped
            # here or, at the latest, when the whole stub is released.
            lib.rp_tgkill(self.pid, ctx.tid, signal.SIGKILL)

    def _reap(self, tid: int, timeout: float = 2.0) -> None:
        """Collect `tid`'s exit (resuming it through any stops on the way).  Bounded: a thread
        that never reports (it was reaped elsewhere) must not hang the Sentry."""
        deadline = time.monotonic() + timeout
        spins = 0
        while True:
            try:
                got, st = os.waitpid(tid, 0x40000000 | os.WNOHANG)
            except ChildProcessError:
                self.unreaped.discard(tid)
                return
            except InterruptedError:
                continue
            if got == 0:
                # A killed or exiting thread reports within microseconds: yield first, sleep later.
                spins += 1
                if spins < 2000:
                    os.sched_yield()
                    continue
                if time.monotonic() > deadline:
                    self.platform.leaked(tid)
                    return
                time.sleep(0.0005)
                continue
            if os.WIFEXITED(st) or os.WIFSIGNALED(st):
                self.unreaped.discard(tid)
                return
            lib.rp_resume(tid, ffi.NULL, PTRACE_CONT, 0)

    def cpu_time_ns(self) -> int:
        return _cpu_clock_ns(self.pid)

    def release(self) -> None:
        """Kill the stub and reap every one of its threads."""
        if self.released:
            return
        self.released = True
        for tid in list(self.threads):
            self.platform.contexts.pop(tid, None)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        # Every non-leader thread first: Linux reports a group leader only after all of them.
        for tid in list(self.unreaped | set(self.threads)):
            if tid != self.pid:
                self._reap(tid)
        self.threads.clear()
        self._reap(self.pid)


class PtracePlatform:
    name = "ptrace"
    max_user_address = stubmod.STUB_BASE       # the stub's page and everything above stay off-limits
    min_user_address = 0x10000                 # the host's mmap_min_addr default
    reserved = ((stubmod.STUB_BASE, stubmod.STUB_BASE + stubmod.STUB_SIZE),)
    fpstate_size = FPSTATE_SIZE

    def __init__(self, memfile) -> None:
        self.memfile = memfile
        self.stub_fd = os.memfd_create("runsc-py-stub", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.write(self.stub_fd, stubmod.STUB.elf)
        import fcntl
        fcntl.fcntl(self.stub_fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
        self.contexts: dict[int, PtraceContext] = {}
        self._pool: list[PtraceAddressSpace] = []
        self._status = ffi.new("int *")
        self._other = ffi.new("struct user_regs_struct *")
        self._regsize = ffi.sizeof("struct user_regs_struct")
        self.run = self._make_run()
        # Stops already taken from the host and not yet handed to the Sentry (`wait`): one round.
        self.backlog: deque = deque()
        self._other_addr = int(ffi.cast("uintptr_t", self._other))

    def syscall_filters(self) -> contract.Filters:
        from platforms.ptrace.filters import syscall_filters
        return syscall_filters(self.stub_fd)

    def _spawn(self) -> int:
        return _check(lib.rp_spawn_stub(self.stub_fd, self.memfile.fd, stubmod.STUB_MEMFD), "spawn stub")

    POOL_TARGET = 2

    def new_address_space(self) -> PtraceAddressSpace:
        if self._pool:
            return self._pool.pop()
        return PtraceAddressSpace(self)

    def idle(self) -> None:
        """The Sentry is about to wait: top up the pool of ready stubs (fork, exec take from it)."""
        if len(self._pool) < self.POOL_TARGET:
            self._pool.append(PtraceAddressSpace(self))

    def release_pool(self) -> None:
        while self._pool:
            self._pool.pop().release()

    # -- running -----------------------------------------------------------

    def resume(self, ctx: PtraceContext) -> None:
        _check(lib.rp_resume_lean(ctx.tid, ctx.regs, ctx.shadow, PTRACE_SYSEMU, 0), "resume")

    def _make_run(self):
        """`run`: resume `ctx`, wait for the next event of any context: (context, event).

        A closure over its constants: this is the per-syscall path."""
        rp_run, status_p, other = lib.rp_run_lean, self._status, self._other
        sysemu, syscall_status, event = PTRACE_SYSEMU, _SYSCALL_STATUS, SYSCALL_EVENT
        contexts, drain = self.contexts, self._drain

        def run(ctx: PtraceContext):
            pid = rp_run(ctx.tid, ctx.regs, ctx.shadow, sysemu, 0, status_p, other)
            if pid == ctx.tid:
                status = status_p[0]
                if status == syscall_status:
                    r = ctx, event
                elif status == syscall_status | (1 << 30):
                    r = ctx, self._suspect(ctx)
                else:
                    r = ctx, self._decode(ctx, status)
            elif pid == -4:            # EINTR: a forwarded host signal is waiting
                return None, None
            elif pid < 0:
                raise PlatformError(f"run: {os.strerror(-pid)}")
            else:
                r = self._event_for(pid)
            if len(contexts) > 1:
                # Other threads may be stopped too, and waitpid(-1) would hand us the newest one
                # first, every time: take them now; the Sentry serves them in order (`wait`).
                drain()
            return r
        return run

    def wait(self, timeout_ns: int, fds: list[tuple[int, int]]):
        """Block until a context stops, a host fd is ready, or the timeout passes.

        Returns (context, event) for a stop, or (None, [revents per fd]).

        Stops are handed out in rounds: waitpid(-1) reports the most recently attached tracee
        first, so taking one stop per call would serve the newest thread again and again while
        the older ones sit stopped (40 threads of one Python program: the newest made millions
        of syscalls, the oldest a few hundred, and the main thread never got the GIL back).  So
        when one stop arrives, every other stop already pending is taken too, and the round is
        served oldest first before the host is asked again."""
        backlog = self.backlog
        if backlog:
            return backlog.popleft()
        n = len(fds)
        cfds = ffi.new("int[]", [fd for fd, _ in fds] or [0])
        cev = ffi.new("short[]", [ev for _, ev in fds] or [0])
        crev = ffi.new("short[]", max(n, 1))
        pid = lib.rp_wait_event(timeout_ns, cfds, cev, crev, n, self._status, self._other)
        if pid < 0:
            raise PlatformError(f"wait: {os.strerror(-pid)}")
        if pid == 0:
            return None, [crev[i] for i in range(n)]
        first = self._event_for(pid)
        self._drain()
        if not backlog:
            return first
        backlog.append(first)
        return backlog.popleft()

    def _drain(self) -> None:
        """Take every stop already pending into the backlog, oldest tracee first out."""
        status, backlog = self._status, self.backlog
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG | 0x40000000)     # __WALL
            except ChildProcessError:
                return
            if pid == 0:
                return
            status[0] = st
            if os.WIFSTOPPED(st) and lib.rp_ptrace(PTRACE_GETREGS, pid, 0, self._other_addr) != 0:
                continue             # gone between the wait and the fetch: its exit comes next
            backlog.appendleft(self._event_for(pid))     # newest first in, so oldest first out

    def leaked(self, tid: int) -> None:
        """A host thread we could not collect (it stays a zombie until the Sentry exits)."""
        self.leaks = getattr(self, "leaks", 0) + 1

    def kick(self, ctx: PtraceContext) -> None:
        """Make a context running application code stop soon: a host SIGURG, which ptrace turns
        into a stop that `_decode` reports as INTERRUPT_EVENT (the stub never acts on it)."""
        lib.rp_tgkill(ctx.address_space.pid, ctx.tid, signal.SIGURG)

    def forward_host_signals(self, sigs: list[int]) -> None:
        _check(lib.rp_forward_signals(ffi.new("int[]", sigs), len(sigs)), "sigaction")

    # The task loop polls this every iteration: the raw C call, no Python frame.
    forwarded_bits = staticmethod(lib.rp_take_forwarded)

    @staticmethod
    def decode_forwarded(bits: int) -> list[int]:
        return [s for s in range(1, 65) if bits >> s & 1]

    def take_forwarded(self) -> list[int] | None:
        bits = lib.rp_take_forwarded()
        return self.decode_forwarded(bits) if bits else None

    def _event_for(self, pid: int):
        ctx = self.contexts.get(pid)
        if ctx is None:
            return None, None        # a stub main thread or an already-released thread
        if os.WIFSTOPPED(self._status[0]):
            ffi.memmove(ctx.regs, self._other, self._regsize)
            ffi.memmove(ctx.shadow, self._other, self._regsize)
        return ctx, self._decode(ctx, self._status[0])

    @staticmethod
    def _suspect(ctx: PtraceContext):
        """A syscall stop with rcx != rip: `syscall` always leaves them equal, `int $0x80` need
        not.  The two bytes before rip tell (PEEKTEXT reads them whatever the page's prot)."""
        word = lib.rp_ptrace(PTRACE_PEEKTEXT, ctx.tid, ctx.regs.rip - 2, 0)
        return SYSCALL32_EVENT if word & 0xFFFF == 0x80CD else SYSCALL_EVENT

    def _decode(self, ctx: PtraceContext, status: int):
        if status & (1 << 30):
            return self._suspect(ctx) if status & ~(1 << 30) == _SYSCALL_STATUS else self._decode(ctx, status & ~(1 << 30))
        if os.WIFSTOPPED(status):
            sig = os.WSTOPSIG(status)
            if sig == SYSCALL_STOP and status >> 16 == 0:
                return SYSCALL_EVENT
            signo = ffi.new("int *"); code = ffi.new("int *"); addr = ffi.new("unsigned long *"); err = ffi.new("int *")
            if lib.rp_getsiginfo(ctx.tid, signo, code, addr, err) != 0:
                return INTERRUPT_EVENT
            if code[0] <= 0 or signo[0] == signal.SIGURG:
                # Sent by the host (our own kick, someone's kill, a group-stop's SIGSTOP): never
                # the application's.  The stub never acts on host signals: suppressed on resume.
                return INTERRUPT_EVENT
            return FaultEvent(signo[0], code[0], addr[0])
        self.contexts.pop(ctx.tid, None)
        ctx.address_space.threads.pop(ctx.tid, None)
        ctx.address_space.unreaped.discard(ctx.tid)
        return ExitEvent(status)
