"""The FPU state in an x86-64 signal frame, as Linux lays it out (arch/x86/kernel/fpu/signal.c).

A handler's frame carries the thread's whole extended state, not just the 512-byte FXSAVE
area: an XSAVE area in the standard format, 64-byte aligned, `xstate_size` bytes (the task's
user state size: every enabled feature but the permission-gated AMX tile data), whose
software-reserved bytes 464..511 hold `struct _fpx_sw_bytes` (magic1 FP_XSTATE_MAGIC1,
extended_size, xfeatures, xstate_size) and which is followed by the 32-bit FP_XSTATE_MAGIC2.
XSTATE_BV always has FP and SSE set, so a legacy program that edits only the FXSAVE part is
still restored.  `uc_flags` says UC_FP_XSTATE.  The handler itself starts with the initial FPU
state (fpu__clear_user_states).

rt_sigreturn (`restore_buffer`) validates as check_xstate_in_sigframe does: without magic1, a
sane xstate_size and magic2 the frame is legacy-only (FXRSTOR: x87/SSE from the frame, the
rest initial); with them, the components of sw.xfeatures & the task's features are restored
per XSTATE_BV (the others initial).  What the instruction would fault on is a bad frame,
SIGSEGV: an XSAVE header with XCOMP_BV or reserved bytes set or XSTATE_BV outside XCR0,
reserved MXCSR bits, an area not 64-byte (XRSTOR) or 16-byte (FXRSTOR) aligned.  The state itself moves through
`Context.get_fpstate`/`set_fpstate` (platforms/contract.py), whatever the platform.

AT_MINSIGSTKSZ is Linux's get_sigframe_size(): the worst-case frame, computed from the same
XSAVE size as the host's kernel computes it (with IA32 emulation, the 32-bit frame is the
larger one), so the sandbox reports what the host does.

The layout is the one application code sees: the host's (platforms.hostarch.XSTATE), unless
the platform says otherwise (`Platform.xstate`, e.g. a KVM guest whose CPUID and XCR0 offer
fewer features): `for_platform()`.
"""
from __future__ import annotations

import struct

from platforms import hostarch

FP_XSTATE_MAGIC1 = 0x46505853
FP_XSTATE_MAGIC2 = 0x46505845
FP_XSTATE_MAGIC2_SIZE = 4
SW_BYTES = struct.Struct("<IIQI28x")       # struct _fpx_sw_bytes: magic1, extended_size, xfeatures, xstate_size
SW_BYTES_OFFSET = 464                      # in the FXSAVE area: its software-reserved bytes
MXCSR_OFFSET = 24
XSTATE_BV_OFFSET, XCOMP_BV_OFFSET, HDR_RESERVED = 512, 520, slice(528, 576)
FXSAVE_SIZE = hostarch.FXSAVE_SIZE
MIN_XSTATE_SIZE = FXSAVE_SIZE + hostarch.XSAVE_HDR_SIZE
XFEATURE_MASK_FPSSE = 0x3
XFEATURE_MASK_PKRU = 1 << hostarch.XFEATURE_PKRU
UC_FP_XSTATE, UC_SIGCONTEXT_SS, UC_STRICT_RESTORE_SS = 0x1, 0x2, 0x4
INIT_FCW, INIT_MXCSR = 0x037F, 0x1F80
INIT_PKRU = 0x55555554                     # init_pkru_value: every key but 0 access-disabled

# For AT_MINSIGSTKSZ (get_sigframe_size): sizeof(struct sigframe_ia32), the largest frame
# head with CONFIG_IA32_EMULATION; struct fregs_state, reserved for 32-bit frames.
SIGFRAME_IA32_SIZE = 736
FREGS_STATE_SIZE = 112
FRAME_ALIGNMENT = 16
MAX_FRAME_PADDING = FRAME_ALIGNMENT - 1
MAX_XSAVE_PADDING = 63

class BadFrame(Exception):
    """rt_sigreturn found an FPU state XRSTOR/FXRSTOR would fault on: SIGSEGV."""


def _round_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _check_mxcsr(area) -> None:
    if struct.unpack_from("<I", area, MXCSR_OFFSET)[0] & ~0xFFFF:     # reserved bits: #GP
        raise BadFrame("reserved MXCSR bits")


def _check_fx(legacy, fp_addr: int) -> None:
    if fp_addr & 15:
        raise BadFrame("FXRSTOR of an area not 16-byte aligned")      # #GP
    _check_mxcsr(legacy)


class FrameLayout:
    """The FPU part of signal frames for one XSAVE layout (None: FXSAVE only)."""

    def __init__(self, x: hostarch.XstateLayout | None) -> None:
        self.x = x
        self.xsave = x is not None
        self.xcr0 = x.features if x else XFEATURE_MASK_FPSSE
        self.user_features = x.default_features if x else XFEATURE_MASK_FPSSE   # fpstate->user_xfeatures
        self.user_size = x.default_size if x else FXSAVE_SIZE                   # fpstate->user_size
        # xstate_sigframe_size: what a frame reserves for the FPU state.
        self.frame_fp_size = self.user_size + FP_XSTATE_MAGIC2_SIZE if x else FXSAVE_SIZE
        self.uc_flags = (UC_FP_XSTATE if x else 0) | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS
        self._handler_state = self._make_handler_state()

    def min_sigstksz(self) -> int:
        """AT_MINSIGSTKSZ: Linux's max_frame_size (init_sigframe_size)."""
        fpstate = (self.x.max_size + FP_XSTATE_MAGIC2_SIZE if self.x else FXSAVE_SIZE) + FREGS_STATE_SIZE
        return _round_up(SIGFRAME_IA32_SIZE + MAX_FRAME_PADDING + fpstate + MAX_XSAVE_PADDING, FRAME_ALIGNMENT)

    def frame_image(self, fpstate: bytes) -> bytes:
        """What the frame holds at its fpstate pointer, from Context.get_fpstate()."""
        if not self.xsave:
            return bytes(fpstate[:FXSAVE_SIZE])
        size = self.user_size
        buf = bytearray(fpstate[:size].ljust(size, b"\0"))
        SW_BYTES.pack_into(buf, SW_BYTES_OFFSET, FP_XSTATE_MAGIC1, self.frame_fp_size, self.user_features, size)
        bv = struct.unpack_from("<Q", buf, XSTATE_BV_OFFSET)[0]
        struct.pack_into("<Q", buf, XSTATE_BV_OFFSET, (bv & self.user_features) | XFEATURE_MASK_FPSSE)
        buf[XCOMP_BV_OFFSET:MIN_XSTATE_SIZE] = bytes(MIN_XSTATE_SIZE - XCOMP_BV_OFFSET)
        return bytes(buf) + struct.pack("<I", FP_XSTATE_MAGIC2)

    def handler_state(self) -> bytes:
        """The FPU state a handler starts with: every user component initial, PKRU the default."""
        return self._handler_state

    def _make_handler_state(self) -> bytes:
        x = self.x
        buf = bytearray(max(self.user_size, MIN_XSTATE_SIZE) if x else FXSAVE_SIZE)
        struct.pack_into("<H", buf, 0, INIT_FCW)
        struct.pack_into("<I", buf, MXCSR_OFFSET, INIT_MXCSR)
        if x is not None:
            bv = XFEATURE_MASK_FPSSE
            if self.xcr0 & XFEATURE_MASK_PKRU and hostarch.XFEATURE_PKRU in x.offsets:
                off, _ = x.offsets[hostarch.XFEATURE_PKRU]
                if off + 4 > len(buf):
                    buf.extend(bytes(off + 4 - len(buf)))
                struct.pack_into("<I", buf, off, INIT_PKRU)
                bv |= XFEATURE_MASK_PKRU
            struct.pack_into("<Q", buf, XSTATE_BV_OFFSET, bv)
        return bytes(buf)

    def restore_buffer(self, read, fp_addr: int) -> bytes:
        """The state to load on rt_sigreturn from the frame's area at `fp_addr` (`read(addr, n)`
        reads application memory, raising on EFAULT).  Raises BadFrame as XRSTOR would fault."""
        legacy = read(fp_addr, FXSAVE_SIZE)
        if not self.xsave:
            _check_fx(legacy, fp_addr)
            return legacy
        magic1, extended, xfeatures, xsize = SW_BYTES.unpack_from(legacy, SW_BYTES_OFFSET)
        fx_only = True
        if magic1 == FP_XSTATE_MAGIC1 and MIN_XSTATE_SIZE <= xsize <= self.user_size and xsize <= extended:
            magic2 = struct.unpack("<I", read(fp_addr + xsize, 4))[0]
            fx_only = magic2 != FP_XSTATE_MAGIC2
        if fx_only:
            # FXRSTOR of the legacy area; every other component initial.
            _check_fx(legacy, fp_addr)
            buf = bytearray(legacy) + bytearray(hostarch.XSAVE_HDR_SIZE)
            struct.pack_into("<Q", buf, XSTATE_BV_OFFSET, XFEATURE_MASK_FPSSE)
            return bytes(buf)
        if fp_addr & 63:
            raise BadFrame("XRSTOR of an area not 64-byte aligned")      # #GP
        buf = bytearray(read(fp_addr, xsize))
        bv, xcomp = struct.unpack_from("<QQ", buf, XSTATE_BV_OFFSET)
        if xcomp or any(buf[HDR_RESERVED]) or bv & ~self.xcr0:
            raise BadFrame("XSAVE header XRSTOR refuses")
        rfbm = xfeatures & self.user_features
        if rfbm & 0x6:                     # XRSTOR loads MXCSR when SSE or AVX is requested
            _check_mxcsr(buf)
        struct.pack_into("<Q", buf, XSTATE_BV_OFFSET, bv & rfbm)
        return bytes(buf)


HOST = FrameLayout(hostarch.XSTATE)
_layouts: dict[int, FrameLayout] = {}


def for_platform(platform) -> FrameLayout:
    """The frame layout for application code under `platform` (its `xstate`, else the host's)."""
    x = getattr(platform, "xstate", None)
    if x is None or x is hostarch.XSTATE:
        return HOST
    layout = _layouts.get(id(x))
    if layout is None or layout.x is not x:
        layout = _layouts[id(x)] = FrameLayout(x)
    return layout
