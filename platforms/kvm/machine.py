"""The KVM platform: application threads in guest ring 3 of one VM per sandbox.

Guest-physical memory is the MemoryFile itself (offset == guest-physical address, registered
with KVM in 1 GiB slots as the file is used) plus one block of platform memory at PLAT_GPA
that holds the page tables, the GDT, IDT and TSS, the ring-0 exception gates and stack, and the
syscall entry page.  Nothing else of the Sentry is guest-physical, so the guest can reach only
what the MemoryManager maps (and the read-only entry page).

Guest-virtual layout of every address space: the application below PLAT_VA (0x7f8000000000,
PML4 slot 255, where the ptrace platform keeps its stub); the platform pages at PLAT_VA, shared
by every address space through one PDPT.  Supervisor-only pages (U=0) are invisible to ring 3.

How a thread leaves the guest (what this machine's kvm_pvm does, measured with
bench/c/kvm_floor.c):
* `syscall` enters LSTAR, the entry page, whose one instruction `out %al,$0x10` is an I/O exit.
  (Under PVM the entry runs without ring-0 privilege, so the page is a user page, execute and
  read only.)  The Sentry answers and resumes at rcx with rflags = r11, as `sysretq` would;
  no `sysretq` (it triple-faults under PVM) and no `iretq` (emulated, slow).
* Every exception goes through the IDT to ring 0, whose gate for vector v is `out %al,$0x20+v`;
  the Sentry reads the hardware frame from the ring-0 stack, CR2 from the sync registers, and
  returns to ring 3 by loading the user CS/SS itself.  Faults become the same FaultEvents as
  under ptrace (signal, si_code, si_addr).
* A host signal or the time-slice timer interrupts KVM_RUN (EINTR).

KVM_RUN runs in the Sentry's own thread: contexts run one at a time (a resumed context runs
when the Sentry waits), each on its own vCPU, preempted after TIMESLICE_NS when anything else
waits.  Registers move through the kvm_run page (KVM_CAP_SYNC_REGS): a vCPU ioctl costs ~3 us.

Page tables are written by the Sentry in platform memory.  The shadow MMU does not see those
writes, so a change that removes or narrows a mapping the MMU has used (unmap, mprotect down, a
copy-on-write break) copies the table pages on its path to fresh guest-physical pages and gives
the address space a new root (see rk_pt_map in _build_kvm.py); only when the pool of table pages
runs out is the VM's whole shadow flushed, by re-registering the platform memslot (~0.1-10 ms),
and the retired pages reused.  New mappings need nothing: a guest access to a PTE the shadow MMU
has not seen walks the tables again.
"""
from __future__ import annotations

import errno
import mmap
import os
import signal
import struct
import time
import weakref

from platforms import contract, hostarch
from platforms.events import INTERRUPT_EVENT, SYSCALL_EVENT, ExitEvent, FaultEvent
from platforms.kvm._kvm_ext import ffi, lib

PAGE = 4096
KVMIO = 0xAE
KVM_CREATE_VM = KVMIO << 8 | 0x01
KVM_CHECK_EXTENSION = KVMIO << 8 | 0x03
KVM_GET_VCPU_MMAP_SIZE = KVMIO << 8 | 0x04
KVM_CREATE_VCPU = KVMIO << 8 | 0x41
KVM_GET_API_VERSION = KVMIO << 8 | 0x00
KVM_CAP_SYNC_REGS, KVM_CAP_XSAVE2, KVM_CAP_MAX_VCPUS = 74, 208, 66

PLAT_VA = 0x7F8000000000           # PML4 slot 255
PLAT_SLOT = 0
PLAT_PAGES = 16384                 # 64 MiB: page tables and the fixed pages
SLOT_SHIFT = 30                    # MemoryFile slots of 1 GiB
# Fixed platform pages (index into platform memory, mapped at PLAT_VA + index * PAGE).
PG_GDT, PG_TSS, PG_IDT, PG_GATES, PG_ENTRY, PG_KSTACK, PG_PDPT, PG_PD, PG_PT = range(9)
FIXED_PAGES = 16
PORT_SYSCALL, PORT_GATE = 0x10, 0x20
TSS_LIMIT = 0x67
TIMESLICE_NS = 5_000_000
TICK_SIGNAL = signal.SIGVTALRM

PTE_P, PTE_W, PTE_U, PTE_NX = 1, 2, 4, 1 << 63
PTE_NONE = 0x800                   # ignored by the MMU: a PROT_NONE mapping keeps its address
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4

RK_SYSCALL, RK_FAULT, RK_INTR, RK_OTHER = 0, 1, 2, 3
INT80_GP_ERRCODE = 0x80 << 3 | 2      # #GP error code of `int $0x80` past the IDT's limit

# Exception vector -> (signal, si_code, si_addr is the instruction pointer), as Linux's traps.c.
SI_KERNEL = 0x80
_VECTOR_SIGNALS = {
    0: (signal.SIGFPE, 1, True),        # #DE: FPE_INTDIV
    1: (signal.SIGTRAP, 2, True),       # #DB: TRAP_TRACE
    3: (signal.SIGTRAP, SI_KERNEL, False),   # int3
    4: (signal.SIGSEGV, SI_KERNEL, False),   # #OF (into)
    5: (signal.SIGSEGV, SI_KERNEL, False),   # #BR
    6: (signal.SIGILL, 2, True),        # #UD: ILL_ILLOPN
    7: (signal.SIGFPE, SI_KERNEL, False),
    10: (signal.SIGSEGV, SI_KERNEL, False),
    11: (signal.SIGBUS, SI_KERNEL, False),
    12: (signal.SIGBUS, SI_KERNEL, False),
    13: (signal.SIGSEGV, SI_KERNEL, False),  # #GP
    16: (signal.SIGFPE, 7, True),       # x87: FPE_FLTINV (Linux reads the status word)
    17: (signal.SIGBUS, 1, False),      # #AC: BUS_ADRALN
    19: (signal.SIGFPE, 7, True),       # SIMD: FPE_FLTINV (Linux reads MXCSR)
}


def _check(r: int, what: str) -> int:
    if r < 0:
        raise contract.PlatformError(f"kvm: {what}: {os.strerror(-r)}")
    return r


def open_kvm() -> int:
    """/dev/kvm, checked usable; PlatformUnavailable (one line) otherwise."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise contract.PlatformUnavailable(
            f"the kvm platform needs /dev/kvm: {e.strerror}; use --platform=ptrace") from None
    if lib.rk_ioctl_int(fd, KVM_GET_API_VERSION, 0) != 12 or \
            lib.rk_ioctl_int(fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS) <= 0:
        os.close(fd)
        raise contract.PlatformUnavailable("/dev/kvm lacks KVM API 12 with KVM_CAP_SYNC_REGS; "
                                           "use --platform=ptrace")
    return fd


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _segment(type_: int, dpl: int, long_: int, db: int) -> int:
    return (0xFFFF | type_ << 40 | 1 << 44 | dpl << 45 | 1 << 47 | 0xF << 48 |
            long_ << 53 | db << 54 | 1 << 55)


class Machine:
    """The VM: its fd, platform memory (page-table pool, fixed pages), MemoryFile slots."""

    def __init__(self, memfile) -> None:
        self.kvm = open_kvm()
        self.memfile = memfile
        vm = lib.rk_ioctl_int(self.kvm, KVM_CREATE_VM, 0)
        if vm < 0:
            os.close(self.kvm)
            raise contract.PlatformUnavailable(f"/dev/kvm cannot create a VM: {os.strerror(-vm)}; "
                                               "use --platform=ptrace")
        self.vm = vm
        self.fds = [vm, self.kvm]                 # closed when the Machine is collected
        weakref.finalize(self, _close_all, self.fds)
        self.mmap_size = _check(lib.rk_ioctl_int(self.kvm, KVM_GET_VCPU_MMAP_SIZE, 0), "mmap size")
        phys_bits = lib.rk_cpuid_phys_bits(self.kvm)
        self.plat_gpa = 1 << 44 if phys_bits > 45 else 1 << (phys_bits - 1)
        self.max_memfile = self.plat_gpa
        self.xcr0 = hostarch.XSTATE.features if hostarch.XSTATE is not None else 3
        # The guest XCR0 KVM accepts: the host's but AMX (kvm_pvm does not virtualise it).  The
        # guest's XGETBV still reads the host's XCR0 (PVM does not trap it), its CPUID leaf 0xD
        # describes this one: `xstate` below is what application code sees.
        self.xcr0 &= lib.rk_supported_xcr0(self.kvm)
        self.xstate = self._guest_xstate()
        self.plat = mmap.mmap(-1, PLAT_PAGES * PAGE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.plat_ptr = ffi.from_buffer(self.plat)
        _check(lib.rk_set_memslot(self.vm, PLAT_SLOT, self.plat_gpa, PLAT_PAGES * PAGE, self.plat_ptr),
               "platform memslot")
        self.pool = ffi.new("struct rk_pool *")
        self.pool.base = ffi.cast("unsigned char *", self.plat_ptr)
        self.pool.gpa = self.plat_gpa
        self.pool.npages = PLAT_PAGES
        self.pool.next = FIXED_PAGES
        self._fresh = ffi.new("unsigned char[]", PLAT_PAGES)
        self.pool.fresh = self._fresh
        self.memfile_ptr = ffi.cast("unsigned char *", ffi.from_buffer(memfile.map))
        self.slots: set[int] = set()
        self.flushes = 0
        self._build_fixed()
        self.layout = ffi.new("struct rk_layout *")
        self.layout.entry_exit_rip = PLAT_VA + PG_ENTRY * PAGE + 2
        self.layout.gate_base = PLAT_VA + PG_GATES * PAGE
        self.layout.kstack_gva = PLAT_VA + PG_KSTACK * PAGE
        self.layout.kstack_host = self.pool.base + PG_KSTACK * PAGE
        self.layout.pool = self.pool
        self.setup = ffi.new("struct rk_setup *")
        self.setup.gdt_base = PLAT_VA + PG_GDT * PAGE
        self.setup.gdt_limit = 10 * 8 - 1
        self.setup.idt_base = PLAT_VA + PG_IDT * PAGE
        self.setup.idt_limit = 32 * 16 - 1
        self.setup.tss_base = PLAT_VA + PG_TSS * PAGE
        self.setup.lstar = PLAT_VA + PG_ENTRY * PAGE
        self.setup.xcr0 = self.xcr0
        self.n_vcpus = 0

    def _guest_xstate(self):
        """The XSAVE layout application code sees here (contract: Platform.xstate): the features
        of the XCR0 its XGETBV reads -- the host's, as kvm_pvm does not trap XGETBV -- with the
        offsets and sizes of its CPUID leaf 0xD, which KVM answers from the guest's table (no
        AMX on this kvm_pvm: those components have no size there, so frames leave them out)."""
        if hostarch.XSTATE is None:
            return None
        out = ffi.new("unsigned int[4]")

        def leaf_0xd(sub: int):
            lib.rk_cpuid_entry(self.kvm, 0xD, sub, out)
            return out[0], out[1], out[2], out[3]
        return hostarch.layout_for(hostarch.XSTATE.features, leaf_0xd)

    def gpa(self, page: int) -> int:
        return self.plat_gpa + page * PAGE

    def _put(self, page: int, offset: int, data: bytes) -> None:
        at = page * PAGE + offset
        self.plat[at:at + len(data)] = data

    def _build_fixed(self) -> None:
        # GDT as Linux's: 0x10 kernel CS, 0x18 kernel SS, 0x23 user CS32, 0x2b user DS,
        # 0x33 user CS, 0x40 the TSS.
        tss = PLAT_VA + PG_TSS * PAGE
        gdt = [0, 0, _segment(11, 0, 1, 0), _segment(3, 0, 0, 1), _segment(11, 3, 0, 1),
               _segment(3, 3, 0, 1), _segment(11, 3, 1, 0), 0,
               TSS_LIMIT | (tss & 0xFFFFFF) << 16 | 0x8B << 40 | ((tss >> 24) & 0xFF) << 56, tss >> 32]
        self._put(PG_GDT, 0, struct.pack("<10Q", *gdt))
        kstack_top = PLAT_VA + (PG_KSTACK + 1) * PAGE
        self._put(PG_TSS, 4, struct.pack("<Q", kstack_top))           # rsp0
        # I/O bitmap base 0: the bitmap overlaps the TSS's first bytes, whose zero reserved dword
        # allows ports 0-31 to ring 3.  Under PVM the entry page's `out %al,$0x10` runs without
        # ring-0 privilege and needs that (measured: a base past the limit makes it a #GP).  An
        # application's own `out` to those ports is an I/O exit at another rip: a #GP for it.
        self._put(PG_TSS, 0x66, struct.pack("<H", 0))
        gates = PLAT_VA + PG_GATES * PAGE
        idt = b""
        for v in range(32):
            h = gates + v * 4
            # Interrupt gates, DPL 0 (ring 3 `int N` is a #GP) but #BP and #OF, DPL 3 as Linux.
            dpl = 3 if v in (3, 4) else 0
            idt += struct.pack("<QQ", (h & 0xFFFF) | 0x10 << 16 | (0x8E | dpl << 5) << 40 |
                               ((h >> 16) & 0xFFFF) << 48, h >> 32)
            self._put(PG_GATES, v * 4, bytes([0xE6, PORT_GATE + v, 0xF4, 0xF4]))   # out; hlt
        self._put(PG_IDT, 0, idt)
        self._put(PG_ENTRY, 0, bytes([0xE6, PORT_SYSCALL, 0xF4]))
        # The shared page-table branch for PLAT_VA: one PDPT -> PD -> PT.
        self._put(PG_PDPT, 0, struct.pack("<Q", self.gpa(PG_PD) | PTE_P | PTE_W | PTE_U))
        self._put(PG_PD, 0, struct.pack("<Q", self.gpa(PG_PT) | PTE_P | PTE_W | PTE_U))
        for page, flags in ((PG_GDT, PTE_NX), (PG_TSS, PTE_NX), (PG_IDT, PTE_NX), (PG_GATES, 0),
                            (PG_ENTRY, PTE_U), (PG_KSTACK, PTE_W | PTE_NX)):
            self._put(PG_PT, page * 8, struct.pack("<Q", self.gpa(page) | PTE_P | flags))

    def new_space(self):
        """An address space's root: a PML4 whose slot 255 is the shared platform branch."""
        pml4 = self.alloc()
        off = pml4 - self.plat_gpa + 255 * 8
        self.plat[off:off + 8] = struct.pack("<Q", self.gpa(PG_PDPT) | PTE_P | PTE_W | PTE_U)
        sp = ffi.new("struct rk_space *")
        sp.root = pml4
        return sp

    def alloc(self) -> int:
        r = lib.rk_pt_alloc(self.pool)
        if r == -errno.ENOMEM:
            self.reclaim()
            r = lib.rk_pt_alloc(self.pool)
        return _check(r, "page tables exhausted")

    def edit(self, fn, *args) -> None:
        """A page-table edit (rk_pt_map/protect), retried once after reclaiming retired pages."""
        r = fn(self.pool, *args)
        if r == -errno.ENOMEM:
            self.reclaim()
            r = fn(self.pool, *args)
        _check(r, "page tables exhausted")

    def reclaim(self) -> None:
        """The pool ran out: flush the shadow MMU, then the retired table pages are free again."""
        if self.pool.retired:
            self.flush()
            lib.rk_pool_recycle(self.pool)

    def ensure_slots(self, offset: int, length: int) -> None:
        """Register the MemoryFile's 1 GiB slots that [offset, offset+length) touches."""
        first, last = offset >> SLOT_SHIFT, (offset + length - 1) >> SLOT_SHIFT
        for i in range(first, last + 1):
            if i in self.slots:
                continue
            base = i << SLOT_SHIFT
            size = min(1 << SLOT_SHIFT, self.memfile.size - base)
            if base + size > self.max_memfile:
                raise contract.PlatformError("kvm: MemoryFile offset beyond guest-physical space")
            _check(lib.rk_set_memslot(self.vm, 1 + i, base, size, self.memfile_ptr + base), "memslot")
            self.slots.add(i)

    def flush(self) -> None:
        """Drop every shadow page: re-register the memslot holding the page tables."""
        size = PLAT_PAGES * PAGE
        _check(lib.rk_set_memslot(self.vm, PLAT_SLOT, self.plat_gpa, 0, self.plat_ptr), "flush")
        _check(lib.rk_set_memslot(self.vm, PLAT_SLOT, self.plat_gpa, size, self.plat_ptr), "flush")
        self.flushes += 1

    def new_vcpu(self, cr3: int):
        fd = lib.rk_ioctl_int(self.vm, KVM_CREATE_VCPU, self.n_vcpus)
        if fd < 0:
            raise contract.PlatformError(f"kvm: KVM_CREATE_VCPU: {os.strerror(-fd)}")
        self.n_vcpus += 1
        self.fds.insert(0, fd)
        # (KVM makes vCPU fds close-on-exec itself; FIOCLEX is not in the Sentry's allowlist.)
        self.setup.cr3 = cr3
        _check(lib.rk_vcpu_setup(self.kvm, fd, self.setup), "vCPU set-up")
        v = ffi.new("struct rk_vcpu *")
        _check(lib.rk_vcpu_init(v, fd, self.mmap_size), "vCPU kvm_run")
        return v

    def read(self, space, va: int, n: int) -> bytes:
        """Up to `n` bytes of application memory at `va` (within one page) through the page
        tables; b"" where nothing is mapped."""
        if not 0 <= va < PLAT_VA:
            return b""
        pte = lib.rk_pt_lookup(self.pool, space, va)
        if not pte & PTE_P:
            return b""
        gpa = (pte & 0x000FFFFFFFFFF000) + (va & 0xFFF)
        n = min(n, PAGE - (va & 0xFFF))
        if gpa + n > self.plat_gpa:
            return b""
        return bytes(self.memfile.map[gpa:gpa + n])

    def fault_event(self, v) -> FaultEvent:
        vec = v.vector
        if vec == 14:
            code = 2 if v.errcode & 1 else 1            # SEGV_ACCERR / SEGV_MAPERR
            return FaultEvent(signal.SIGSEGV, code, v.cr2)
        sig, code, at_ip = _VECTOR_SIGNALS.get(vec, (signal.SIGSEGV, SI_KERNEL, False))
        return FaultEvent(sig, code, -1 if at_ip else 0)
