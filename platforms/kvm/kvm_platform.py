"""KvmPlatform, KvmAddressSpace, KvmContext: the platform contract (platforms/contract.py) on
the VM of platforms/kvm/machine.py.

An address space is a PML4 in platform memory; a context is a vCPU whose CR3 is that PML4 and
whose registers the Sentry reads and writes as a `struct user_regs_struct` (copied to and from
the kvm_run page by `rk_run`).  `resume` only queues a context: KVM_RUN runs in the Sentry's
thread, so contexts run when the Sentry waits (`run`, `wait`), one at a time, round robin, each
for at most TIMESLICE_NS while anything else (another context, a timer, a host fd) waits.
"""
from __future__ import annotations

import os
import select
import time
from collections import deque

from platforms import contract, hostarch
from platforms.events import INTERRUPT_EVENT, SYSCALL32_EVENT, SYSCALL_EVENT, ExitEvent, FaultEvent
from platforms.kvm import machine as mc
from platforms.kvm._kvm_ext import ffi, lib

_REGS_SIZE = ffi.sizeof("struct user_regs_struct")
_REGS_PTR = ffi.typeof("struct user_regs_struct *")
FPSTATE_SIZE = hostarch.XSTATE.max_size if hostarch.XSTATE is not None else hostarch.FXSAVE_SIZE


class KvmContext:
    """One application thread: a vCPU of the sandbox's VM."""

    __slots__ = ("regs", "address_space", "task", "vcpu", "_xbuf", "_xsize", "kicked")

    def __init__(self, address_space: "KvmAddressSpace", vcpu) -> None:
        self.address_space = address_space
        self.vcpu = vcpu
        self.regs = ffi.new("struct user_regs_struct *")
        self.regs.cs, self.regs.ss = contract.USER_CS, contract.USER_DS
        self.regs.eflags = 0x202
        self.regs.orig_rax = contract.NO_SYSCALL
        self.task = None
        self._xsize = address_space.platform.xsave_size
        self._xbuf = ffi.new("char[]", self._xsize)
        self.kicked = False

    def clear_regs(self, rip: int, rsp: int) -> None:
        r = self.regs
        for name in ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
                     "rax", "rcx", "rdx", "rsi", "rdi", "fs_base", "gs_base"):
            setattr(r, name, 0)
        r.orig_rax = contract.NO_SYSCALL
        r.rip, r.rsp, r.eflags = rip, rsp, 0x202
        r.cs, r.ss = contract.USER_CS, contract.USER_DS
        self.set_fpstate(self.address_space.platform.initial_fpstate)

    def set_regs(self, src) -> None:
        if isinstance(src, ffi.CData) and ffi.typeof(src) is _REGS_PTR:
            ffi.memmove(self.regs, src, _REGS_SIZE)
        else:
            contract.copy_regs(self.regs, src)

    def get_fpstate(self) -> bytes:
        """KVM_GET_XSAVE2: the standard XSAVE format (components where the guest's CPUID leaf 0xD
        puts them: Platform.xstate), zero-padded to `fpstate_size`, the host's size, as the
        contract test asks (the AMX components' XSTATE_BV bits are clear: initial)."""
        mc._check(lib.rk_xsave(self.vcpu.fd, self._xbuf, 0), "KVM_GET_XSAVE2")
        size = self.address_space.platform.fpstate_size
        return bytes(ffi.buffer(self._xbuf, min(size, self._xsize))).ljust(size, b"\0")

    def set_fpstate(self, data: bytes) -> None:
        data = bytes(data[:self._xsize]).ljust(self._xsize, b"\0")
        if len(data) >= 520:
            # Components the guest cannot hold (XCR0) are dropped: KVM refuses their bits.
            bv = int.from_bytes(data[512:520], "little") & self.address_space.platform.machine.xcr0
            data = data[:512] + bv.to_bytes(8, "little") + data[520:]
        ffi.memmove(self._xbuf, data, self._xsize)
        mc._check(lib.rk_xsave(self.vcpu.fd, self._xbuf, 1), "KVM_SET_XSAVE")

    def get_fpregs(self) -> bytes:
        return self.get_fpstate()[:512]

    def set_fpregs(self, data: bytes) -> None:
        cur = self.get_fpstate()
        self.set_fpstate(bytes(data[:512]).ljust(512, b"\0") + cur[512:])

    def cpu_time_ns(self) -> int:
        return self.vcpu.cpu_ns


class KvmAddressSpace:
    """One application address space: a PML4 in platform memory."""

    def __init__(self, platform: "KvmPlatform") -> None:
        self.platform = platform
        self.machine = platform.machine
        self.space = self.machine.new_space()
        self.threads: list[KvmContext] = []
        self.released = False
        self._cpu_ns_gone = 0

    @staticmethod
    def _flags(prot: int) -> int:
        if not prot & (mc.PROT_READ | mc.PROT_WRITE | mc.PROT_EXEC):
            return 0
        f = mc.PTE_P | mc.PTE_U
        if prot & mc.PROT_WRITE:
            f |= mc.PTE_W
        if not prot & mc.PROT_EXEC:
            f |= mc.PTE_NX
        return f

    def _range(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > mc.PLAT_VA or addr % mc.PAGE or length % mc.PAGE:
            raise contract.PlatformError(f"kvm: bad range {addr:#x}+{length:#x}")

    def map(self, addr: int, length: int, prot: int, memfile_offset: int) -> None:
        self._range(addr, length)
        m = self.machine
        m.ensure_slots(memfile_offset, length)
        flags = self._flags(prot)
        # PROT_NONE keeps the address in a non-present entry (protect can bring it back).
        m.edit(lib.rk_pt_map, self.space, addr, length, memfile_offset, flags or mc.PTE_NONE)

    def unmap(self, addr: int, length: int) -> None:
        self._range(addr, length)
        self.machine.edit(lib.rk_pt_map, self.space, addr, length, 0, 0)

    def protect(self, addr: int, length: int, prot: int) -> None:
        self._range(addr, length)
        self.machine.edit(lib.rk_pt_protect, self.space, addr, length, self._flags(prot))

    def new_context(self) -> KvmContext:
        v = self.platform._take_vcpu(self.space)
        ctx = KvmContext(self, v)
        self.threads.append(ctx)
        return ctx

    def release_context(self, ctx: KvmContext) -> None:
        if ctx in self.threads:
            self.threads.remove(ctx)
            self._cpu_ns_gone += ctx.vcpu.cpu_ns
            self.platform._drop(ctx)

    def cpu_time_ns(self) -> int:
        return self._cpu_ns_gone + sum(c.vcpu.cpu_ns for c in self.threads)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        for ctx in list(self.threads):
            self.release_context(ctx)
        lib.rk_pt_free_tree(self.machine.pool, self.space, 255)    # retired until the next flush


class KvmPlatform:
    name = "kvm"
    min_user_address = 0x10000
    max_user_address = mc.PLAT_VA
    reserved = ((mc.PLAT_VA, 1 << 47),)
    fpstate_size = FPSTATE_SIZE

    def __init__(self, memfile) -> None:
        self.machine = mc.Machine(memfile)
        self.memfile = memfile
        self.xstate = self.machine.xstate          # contract (optional): the guest's XSAVE layout
        self._spare: list = []                 # vCPUs of ended threads, for reuse
        self.runnable: deque[KvmContext] = deque()
        # KVM_GET_XSAVE2 writes the guest FPU's whole user size; never less than the host's.
        self.xsave_size = max(4096, FPSTATE_SIZE, lib.rk_ioctl_int(self.machine.vm, mc.KVM_CHECK_EXTENSION,
                                                                   mc.KVM_CAP_XSAVE2))
        self._timer = lib.rk_timer_init(mc.TICK_SIGNAL) == 0
        v = self.machine.new_vcpu(self.machine.gpa(mc.PG_PDPT))
        buf = ffi.new("char[]", self.xsave_size)
        mc._check(lib.rk_xsave(v.fd, buf, 0), "KVM_GET_XSAVE2")
        self.initial_fpstate = bytes(ffi.buffer(buf, self.xsave_size))
        self._spare.append(v)
        self.run = self._make_run()

    def syscall_filters(self) -> contract.Filters:
        from platforms.kvm.filters import syscall_filters
        return syscall_filters()

    def _take_vcpu(self, space):
        """A vCPU for a new context of `space` (its CR3 follows space.root from its next run)."""
        v = self._spare.pop() if self._spare else self.machine.new_vcpu(space.root)
        v.space = space
        v.cpu_ns = 0
        v.in_kernel = 1
        return v

    def _drop(self, ctx: KvmContext) -> None:
        try:
            self.runnable.remove(ctx)
        except ValueError:
            pass
        ctx.vcpu.space = ffi.NULL
        self._spare.append(ctx.vcpu)

    def new_address_space(self) -> KvmAddressSpace:
        return KvmAddressSpace(self)

    def idle(self) -> None:
        pass

    def release_pool(self) -> None:
        pass

    # -- running ---------------------------------------------------------------

    def resume(self, ctx: KvmContext) -> None:
        if ctx not in self.runnable:
            self.runnable.append(ctx)

    def _event(self, ctx: KvmContext, rc: int):
        """The event of an exit other than a syscall."""
        if rc == mc.RK_FAULT:
            v = ctx.vcpu
            if (v.vector == 13 and v.errcode == mc.INT80_GP_ERRCODE) or \
                    (v.vector == 6 and self.machine.read(ctx.address_space.space, ctx.regs.rip, 2) == b"\xcd\x80"):
                # `int $0x80`: the IDT has no gate 0x80 (a #GP naming that vector), and kvm_pvm
                # makes it a #UD.  Report the i386 syscall as ptrace does (the Sentry answers
                # ENOSYS and never runs it as the 64-bit call).
                ctx.regs.rip += 2
                ctx.regs.orig_rax = ctx.regs.rax
                return SYSCALL32_EVENT
            ev = self.machine.fault_event(v)
            if ev.addr == -1:
                ev.addr = ctx.regs.rip
            return ev
        if rc == mc.RK_INTR:
            return None
        if rc < 0:
            raise contract.PlatformError(f"kvm: KVM_RUN: {os.strerror(-rc)}")
        v = ctx.vcpu
        reason = v.exit_reason
        # A triple fault or an exit the platform does not expect: the thread cannot go on in
        # this vCPU state.  Reset the vCPU and report a SIGSEGV to the application.
        self.machine.setup.cr3 = ctx.address_space.space.root
        lib.rk_vcpu_setup(self.machine.kvm, v.fd, self.machine.setup)
        cpu_ns = v.cpu_ns
        lib.rk_vcpu_reseed(v)
        v.space, v.cpu_ns = ctx.address_space.space, cpu_ns
        return FaultEvent(11, mc.SI_KERNEL, 0) if reason != 8 else ExitEvent(0x8B)   # 0x8b: SIGSEGV

    def _make_run(self):
        rk_run, layout, runnable = lib.rk_run, self.machine.layout, self.runnable
        syscall_rc, event = mc.RK_SYSCALL, SYSCALL_EVENT

        def run(ctx: KvmContext):
            if runnable and (len(runnable) > 1 or runnable[0] is not ctx):
                self.resume(ctx)
                return self.wait(-1, [])
            if ctx.kicked:
                ctx.kicked = False
                return ctx, INTERRUPT_EVENT
            rc = rk_run(ctx.vcpu, ctx.regs, layout, 0)
            if rc == syscall_rc:
                if runnable:
                    runnable.clear()
                return ctx, event
            ev = self._event(ctx, rc)
            if ev is None:                  # interrupted by a host signal: still runnable
                self.resume(ctx)
                return None, None
            try:
                runnable.remove(ctx)
            except ValueError:
                pass
            return ctx, ev
        return run

    def wait(self, timeout_ns: int, fds: list[tuple[int, int]]):
        deadline = None if timeout_ns < 0 else time.monotonic_ns() + timeout_ns
        n = len(fds)
        cfds = ffi.new("int[]", [fd for fd, _ in fds] or [0])
        cev = ffi.new("short[]", [ev for _, ev in fds] or [0])
        crev = ffi.new("short[]", max(n, 1))
        while True:
            if self.runnable:
                ctx = self.runnable[0]
                if ctx.kicked:
                    ctx.kicked = False
                    self.runnable.popleft()
                    return ctx, INTERRUPT_EVENT
                if n:
                    r = lib.rk_poll(cfds, cev, crev, n, 0)
                    if r > 0:
                        return None, [crev[i] for i in range(n)]
                slice_ns = mc.TIMESLICE_NS
                if deadline is not None:
                    slice_ns = max(1, min(slice_ns, deadline - time.monotonic_ns()))
                alone = len(self.runnable) == 1 and not n and deadline is None
                rc = lib.rk_run(ctx.vcpu, ctx.regs, self.machine.layout, 0 if alone else slice_ns)
                if rc == mc.RK_SYSCALL:
                    self.runnable.popleft()
                    return ctx, SYSCALL_EVENT
                ev = self._event(ctx, rc)
                if ev is not None:
                    self.runnable.popleft()
                    return ctx, ev
                # Interrupted: the time slice or a host signal.  Next context's turn.
                self.runnable.rotate(-1)
                if self._forward_pending():
                    return None, None
                if deadline is not None and time.monotonic_ns() >= deadline:
                    return None, [0] * n
                continue
            timeout = -1 if deadline is None else max(0, deadline - time.monotonic_ns())
            r = lib.rk_poll(cfds, cev, crev, n, timeout)
            if r == -4:
                return None, None
            if r < 0:
                raise contract.PlatformError(f"kvm: ppoll: {os.strerror(-r)}")
            return None, [crev[i] for i in range(n)]

    def _forward_pending(self) -> bool:
        bits = lib.rk_take_forwarded()
        if bits:
            self._held |= bits
            return True
        return False

    _held = 0

    def _take(self) -> int:
        bits = self._held | lib.rk_take_forwarded()
        self._held = 0
        return bits

    def kick(self, ctx: KvmContext) -> None:
        """Contexts run only inside run/wait, so a kick between them marks the context: its next
        turn reports INTERRUPT_EVENT instead of entering the guest."""
        if ctx in self.runnable:
            ctx.kicked = True

    def forward_host_signals(self, sigs) -> None:
        sigs = list(sigs)
        mc._check(lib.rk_forward_signals(ffi.new("int[]", sigs), len(sigs)), "sigaction")

    @property
    def forwarded_bits(self):
        return self._take

    @staticmethod
    def decode_forwarded(bits: int) -> list[int]:
        return [s for s in range(1, 65) if bits >> s & 1]
