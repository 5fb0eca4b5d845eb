"""The sandbox's own vDSO (see vdso.c): time without a trap, never the host's vDSO.

One image and one data page ("vvar") live in MemoryFile pages shared,
read-only, by every address space.  The Sentry publishes, under a sequence
count, a TSC reading and each clock's value at that reading, plus the TSC's
rate measured against the host's CLOCK_MONOTONIC over the whole run (so it
only gets more precise).  Until a first 20 ms baseline exists the page is
disabled and the vDSO falls back to the real syscall.  A re-publication
never moves a monotonic clock backwards: the new base is at least what the
old parameters said at that instant.

The image (vdso.so) is built by the build backend (setup.py runs build.sh) or
by install.sh, and shipped as package data.  Without it the Sentry refuses to
start with one line saying how to build it: an installation that silently lost
its vDSO would run every clock read as a trap, which nobody would notice.
"""
from __future__ import annotations

import os
import struct
import time

PAGE = 4096
_PHDR = struct.Struct("<IIQQQQQQ")
# clockids published: REALTIME MONOTONIC MONOTONIC_RAW REALTIME_COARSE MONOTONIC_COARSE BOOTTIME TAI
_CLOCKS = (0, 1, 4, 5, 6, 7, 11)
_MONOTONIC_LIKE = (1, 4, 6, 7)
_HEAD = struct.Struct("<IIQQ")
REFRESH = 0.25          # seconds between re-publications (at most)


IMAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vdso.so")


def _load_image(path: str) -> tuple[bytes, int] | None:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if raw[:4] != b"\x7fELF":
        return None
    phoff, = struct.unpack_from("<Q", raw, 32)
    phentsize, phnum = struct.unpack_from("<HH", raw, 54)
    span = 0
    loads = []
    for i in range(phnum):
        p_type, _flags, off, vaddr, _pa, filesz, memsz, _align = _PHDR.unpack_from(raw, phoff + i * phentsize)
        if p_type == 1:
            loads.append((off, vaddr, filesz))
            span = max(span, vaddr + memsz)
    span = (span + PAGE - 1) & ~(PAGE - 1)
    image = bytearray(span)
    for off, vaddr, filesz in loads:
        image[vaddr:vaddr + filesz] = raw[off:off + filesz]
    return bytes(image), span


class Vdso:
    def __init__(self, memfile, rdtsc) -> None:
        from sentry.mm.manager import Backing
        loaded = _load_image(IMAGE)
        if loaded is None:
            from sentry.boot import BootError
            raise BootError(f"the sandbox's vDSO image {IMAGE} is missing or not an ELF file: this "
                            "installation was built without it (reinstall runsc-py with gcc available, "
                            "or run sentry/vdso/build.sh in a checkout)")
        self.available = True
        image, self.span = loaded
        self.memfile = memfile
        self.rdtsc = rdtsc
        self.vvar = Backing(memfile.allocate(PAGE), PAGE)
        self.text = Backing(memfile.allocate(self.span), self.span)
        for b in (self.vvar, self.text):       # shared by every address space, for the sandbox's life
            b.live = 1 << 62
            b.on_release = lambda: None
        memfile.view[self.text.offset:self.text.offset + self.span] = image
        self.page = memfile.view[self.vvar.offset:self.vvar.offset + PAGE]
        self.seq = 0
        self.enabled = False
        self.start = (rdtsc(), time.clock_gettime_ns(time.CLOCK_MONOTONIC))
        self.last_refresh = 0.0
        self.mult = 0
        self.tsc_base = 0
        self.bases: dict[int, int] = {}

    def map_into(self, mm) -> int:
        """Map [vvar][vdso] into `mm`; returns AT_SYSINFO_EHDR (0 when there is no vDSO)."""
        if not self.available:
            return 0
        base = mm._free_gap(PAGE + self.span)
        mm.mmap_backing(base, PAGE, 1, 0x10 | 0x01, self.vvar, 0, "[vvar]", maxprot=1)
        mm.mmap_backing(base + PAGE, self.span, 1 | 4, 0x10 | 0x01, self.text, 0, "[vdso]", maxprot=5)
        return base + PAGE

    def refresh(self, force: bool = False) -> None:
        """Re-publish the clocks (cheap; called from the task loop now and then)."""
        if not self.available:
            return
        now = time.monotonic()
        if not force and now - self.last_refresh < REFRESH:
            return
        tsc = self.rdtsc()
        host = {c: time.clock_gettime_ns(c) for c in _CLOCKS}
        t0_tsc, t0_ns = self.start
        d_tsc, d_ns = tsc - t0_tsc, host[1] - t0_ns
        if d_ns < 20_000_000 or d_tsc <= 0:
            return                      # no baseline yet: stay disabled, try again soon
        self.last_refresh = now
        mult = (d_ns << 32) // d_tsc
        if self.enabled:
            # Never behind what the old parameters already told the application; when ahead,
            # run slow until the next refresh (at most 10%) so the clocks converge (a slew).
            told = self.bases[1] + (((tsc - self.tsc_base) * self.mult) >> 32)
            ahead = told - host[1]
            if ahead > 0:
                for c in _MONOTONIC_LIKE:
                    host[c] += ahead
                period = int(REFRESH * 1e9)
                mult = max(mult * 9 // 10, mult * (period - ahead) // period)
        self.seq += 1
        struct.pack_into("<I", self.page, 0, self.seq)        # odd: being written
        struct.pack_into("<QQ", self.page, 8, tsc, mult)
        struct.pack_into("<12q", self.page, 24, *[host.get(c, 0) for c in range(12)])
        struct.pack_into("<I", self.page, 4, 1)
        self.seq += 1
        struct.pack_into("<I", self.page, 0, self.seq)
        self.enabled, self.mult, self.tsc_base, self.bases = True, mult, tsc, host
