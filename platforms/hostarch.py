"""Facts about the host CPU that the Sentry needs whatever the platform: the TSC (the vDSO's
clock), the hardware capabilities passed on in auxv, and the XSAVE layout (CPUID leaf 0xD
and XCR0), which sizes the FPU state in signal frames and AT_MINSIGSTKSZ.

Read once, before the Sentry confines itself (CPUID and XCR0 do not change; rdtsc is an
instruction, not a syscall).  Application code runs on this same CPU under every platform
(ptrace: natively in a stub; KVM: the guest gets the host's CPUID and XCR0), so what holds
here holds for the application.  The instructions come from `platforms._hostarch_ext`.
"""
from __future__ import annotations

from dataclasses import dataclass

from platforms._hostarch_ext import ffi as _ffi, lib as _lib

AT_HWCAP, AT_HWCAP2 = 16, 26

# XSAVE feature bits (Linux's enum xfeature).
XFEATURE_FP, XFEATURE_SSE, XFEATURE_YMM = 0, 1, 2
XFEATURE_OPMASK, XFEATURE_ZMM_HI256, XFEATURE_HI16_ZMM = 5, 6, 7
XFEATURE_PKRU, XFEATURE_XTILE_CFG, XFEATURE_XTILE_DATA = 9, 17, 18
# Features whose state a process must ask for (arch_prctl ARCH_REQ_XCOMP_PERM) before it may
# use them; Linux leaves them out of a task's signal frame until then (AMX tile data).
XFEATURE_MASK_USER_DYNAMIC = 1 << XFEATURE_XTILE_DATA
FXSAVE_SIZE = 512              # the legacy region
XSAVE_HDR_OFFSET, XSAVE_HDR_SIZE = 512, 64

rdtsc = _lib.ha_rdtsc


def getauxval(kind: int) -> int:
    """The host's auxv entry (0 if absent): the hardware capabilities the Sentry passes on."""
    return _lib.getauxval(kind)


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    out = _ffi.new("unsigned int[4]")
    _lib.ha_cpuid(leaf, subleaf, out)
    return out[0], out[1], out[2], out[3]


@dataclass(frozen=True)
class XstateLayout:
    """The standard (non-compacted) XSAVE format as the host kernel uses it for user space."""
    features: int                            # XCR0: the user features the kernel enabled
    offsets: dict[int, tuple[int, int]]      # feature bit -> (offset, size), bits >= 2
    max_size: int                            # every enabled feature (ptrace's NT_X86_XSTATE size)
    default_size: int                        # without the dynamic (permission-gated) features

    @property
    def default_features(self) -> int:
        return self.features & ~XFEATURE_MASK_USER_DYNAMIC


def _size_of(features: int, offsets: dict[int, tuple[int, int]]) -> int:
    # As Linux's xstate_calculate_size() for the standard format: the end of the last component.
    end = FXSAVE_SIZE + XSAVE_HDR_SIZE
    for bit, (off, size) in offsets.items():
        if features >> bit & 1:
            end = max(end, off + size)
    return end


def layout_for(xcr0: int, leaf_0xd=None) -> XstateLayout:
    """The standard-format layout of the features in `xcr0`, their offsets and sizes from
    `leaf_0xd(subleaf) -> (eax, ebx, ecx, edx)` (default: this CPU's CPUID leaf 0xD).  A platform
    that offers application code a different CPUID or XCR0 (Platform.xstate) builds its own."""
    if leaf_0xd is None:
        def leaf_0xd(sub: int):
            return cpuid(0xD, sub)
    offsets = {}
    for bit in range(2, 64):
        if xcr0 >> bit & 1:
            size, off, _, _ = leaf_0xd(bit)
            offsets[bit] = (off, size)
    return XstateLayout(xcr0, offsets, _size_of(xcr0, offsets),
                        _size_of(xcr0 & ~XFEATURE_MASK_USER_DYNAMIC, offsets))


def _read_xstate() -> XstateLayout | None:
    _, _, ecx1, _ = cpuid(1)
    if not ecx1 & (1 << 27):                 # OSXSAVE: the kernel enabled XSAVE (else xgetbv #UD)
        return None
    return layout_for(_lib.ha_xgetbv(0))


XSTATE: XstateLayout | None = _read_xstate()     # None: no XSAVE (FXSAVE only)
