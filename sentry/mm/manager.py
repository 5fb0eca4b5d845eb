"""MemoryManager: one application address space.

A sorted list of VMAs, each a run of pages backed by a contiguous range of
the MemoryFile, mirrored into the platform's address space (a stub
process under ptrace) by `map`/`unmap`/`protect`.  Because every page is
memfd-backed and the memfd is mapped into the Sentry too, copy-in and
copy-out are memoryview slices: `read`, `write`, `cstring` and
`iovecs` below are what every syscall handler uses, and they return
EFAULT exactly where Linux's copy_{from,to}_user would (unmapped,
PROT_NONE, or writing a page without PROT_WRITE).

Trade-offs: mappings are populated eagerly (the memfd is sparse, so an
untouched page still costs nothing).  A fork shares private memory
copy-on-write (sentry/mm/cow.py): nothing is copied at fork; a write fault
(or the Sentry writing application memory) copies one page.
"""
from __future__ import annotations

import bisect
import errno
import os

from sentry.errors import SyscallError
from sentry.mm.cow import CopyOnWrite
from sentry.mm.usercopy import UserCopy

PAGE = 4096
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE = 0x01, 0x02, 0x03
MAP_FIXED, MAP_ANONYMOUS = 0x10, 0x20
MAP_GROWSDOWN, MAP_DENYWRITE, MAP_EXECUTABLE, MAP_LOCKED = 0x100, 0x800, 0x1000, 0x2000
MAP_NORESERVE, MAP_POPULATE, MAP_NONBLOCK, MAP_STACK, MAP_HUGETLB = 0x4000, 0x8000, 0x10000, 0x20000, 0x40000
MAP_FIXED_NOREPLACE = 0x100000
STACK_SIZE = 8 << 20
HEAP_RESERVE = 256 << 20


def page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


def page_down(x: int) -> int:
    return x & ~(PAGE - 1)


class Backing:
    """A MemoryFile range shared by the VMAs cut from it; freed when the last piece goes."""

    __slots__ = ("offset", "length", "live", "on_release")

    def __init__(self, offset: int, length: int) -> None:
        self.offset = offset
        self.length = length
        self.live = length        # bytes still mapped by some VMA of some address space
        self.on_release = None    # who frees it instead (a FileMapping writes back first)


class Vma:
    __slots__ = ("start", "end", "prot", "shared", "offset", "backing", "name", "growsdown", "maxprot",
                 "source", "eof", "cow")

    def __init__(self, start: int, end: int, prot: int, shared: bool, offset: int,
                 backing: Backing, name: str = "", growsdown: bool = False, maxprot: int = 7,
                 source=None) -> None:
        self.start = start
        self.end = end
        self.prot = prot
        self.shared = shared
        self.offset = offset            # MemoryFile offset of `start`
        self.backing = backing
        self.name = name
        self.growsdown = growsdown
        self.maxprot = maxprot      # what mprotect may grant (a shared mapping of a read-only fd: no write)
        self.source = source        # (file, file offset of `start`, dev, ino) for file mappings
        self.eof = 0                # file mappings: first page wholly past the end of the file (SIGBUS)
        self.cow = None             # private pages shared copy-on-write: the CowRange holding them

    def clone_at(self, start: int, end: int, offset: int) -> "Vma":
        """A piece of this VMA (same attributes) covering [start, end) at MemoryFile `offset`."""
        src = self.source
        if src is not None:
            src = (src[0], src[1] + (start - self.start), src[2], src[3])
        v = Vma(start, end, self.prot, self.shared, offset, self.backing, self.name, self.growsdown,
                self.maxprot, src)
        if self.eof:
            v.eof = self.eof            # an address: the same for every piece
        v.cow = self.cow
        return v

    def __repr__(self) -> str:
        return f"Vma({self.start:#x}-{self.end:#x} prot={self.prot} {self.name})"


class MemoryManager(CopyOnWrite, UserCopy):
    def __init__(self, platform, memfile) -> None:
        self.platform = platform
        self.memfile = memfile
        self.view = memfile.view
        self._map = memfile.map
        self.space = platform.new_address_space()
        self.vmas: list[Vma] = []
        self._starts: list[int] = []
        self.top = platform.max_user_address
        self.bottom = platform.min_user_address
        self.stack_top = self.top - (1 << 30)
        self.mmap_base = self.stack_top - STACK_SIZE - (256 << 20)
        self.brk_start = 0
        self.brk_cur = 0
        self._heap: Backing | None = None
        self._last: Vma | None = None
        # The task loop's cache of the mapping syscall instructions come from: [exec_lo, exec_hi)
        # with its bytes at MemoryFile offset exec_base + address (empty until first used).
        self.exec_lo = self.exec_hi = self.exec_base = 0
        self.users = 1           # thread groups sharing this mm (CLONE_VM without CLONE_THREAD: vfork)
        self.file_refs: list = []  # files held open by private file mappings (MADV_DONTNEED re-reads them)

    # -- VMA bookkeeping ---------------------------------------------------

    def find(self, addr: int) -> Vma | None:
        last = self._last
        if last is not None and last.start <= addr < last.end:
            return last
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            v = self.vmas[i]
            if addr < v.end:
                self._last = v
                return v
        return None

    def _insert(self, v: Vma) -> None:
        i = bisect.bisect_left(self._starts, v.start)
        self.vmas.insert(i, v)
        self._starts.insert(i, v.start)

    def _split(self, addr: int) -> None:
        """Make `addr` a VMA boundary (if it falls inside one)."""
        self.exec_lo = self.exec_hi = 0
        v = self.find(addr)
        if v is None or v.start == addr:
            return
        right = v.clone_at(addr, v.end, v.offset + (addr - v.start))
        v.end = addr
        self._insert(right)
        self._last = None

    def _overlapping(self, start: int, end: int) -> list[Vma]:
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        out = []
        while i < len(self.vmas) and self.vmas[i].start < end:
            if self.vmas[i].end > start:
                out.append(self.vmas[i])
            i += 1
        return out

    def cache_exec(self, addr: int) -> None:
        v = self.find(addr)
        if v is None or not v.prot:
            raise SyscallError(errno.EFAULT)      # a syscall from unmapped code cannot happen: be safe
        self.exec_lo, self.exec_hi, self.exec_base = v.start, v.end, v.offset - v.start

    def _remove_range(self, start: int, end: int, unmap_host: bool = True) -> None:
        self.exec_lo = self.exec_hi = 0
        self._split(start)
        self._split(end)
        for v in self._overlapping(start, end):
            i = bisect.bisect_left(self._starts, v.start)
            del self.vmas[i]
            del self._starts[i]
            self._release(v)
        self._last = None
        if unmap_host:
            self.space.unmap(start, end - start)

    def _release(self, v: Vma) -> None:
        if v.cow is not None:
            v.cow.unref(v.offset, v.end - v.start)     # its pages go when no address space maps them
            return
        b = v.backing
        b.live -= v.end - v.start
        if b is self._heap:
            # A piece of the brk reserve (munmap of the heap): release() frees the reserve whole,
            # so the pages are only dropped here (freeing them too was a double free).
            self.memfile.zero(v.offset, v.end - v.start)
            return
        if not v.shared:
            # A private range belongs to this VMA alone: give its pages back now.
            self.memfile.free(v.offset, v.end - v.start)
            b.length -= v.end - v.start
        elif b.live <= 0:
            if b.on_release is not None:
                b.on_release()
            else:
                self.memfile.free(b.offset, b.length)

    def _map_new(self, start: int, length: int, prot: int, shared: bool, name: str = "",
                 backing: Backing | None = None, offset: int | None = None, growsdown: bool = False) -> Vma:
        if backing is None:
            backing = Backing(self.memfile.allocate(length), length)
            offset = backing.offset
        v = Vma(start, start + length, prot, shared, offset, backing, name, growsdown)
        self._insert(v)
        self.space.map(start, length, prot, offset)
        return v

    # -- placement ---------------------------------------------------------

    def _free_gap(self, length: int, hint: int = 0) -> int:
        """Top-down search below mmap_base (Linux's default layout) for `length` free bytes."""
        if hint:
            hint = page_down(hint)
            if self.bottom <= hint and hint + length <= self.top and not self._overlapping(hint, hint + length):
                return hint
        end = self.mmap_base
        i = bisect.bisect_left(self._starts, end)
        # Walk VMAs downwards from mmap_base.
        while True:
            prev_end = self.vmas[i - 1].end if i > 0 else self.bottom
            if i > 0 and prev_end > end:
                end = min(end, self.vmas[i - 1].start)
                i -= 1
                continue
            if end - prev_end >= length:
                return end - length
            if i == 0:
                raise SyscallError(errno.ENOMEM)
            end = self.vmas[i - 1].start
            i -= 1

    # -- the syscalls' operations -----------------------------------------

    def mmap_backing(self, addr: int, length: int, prot: int, flags: int, backing: Backing, offset: int,
                     name: str = "", maxprot: int = 7, source=None) -> int:
        """Map `length` bytes of an existing shared backing (a FileMapping's pages) at `offset` in it."""
        start = self._place(addr, page_up(length), flags)
        backing.live += page_up(length)
        v = self._map_new(start, page_up(length), prot, True, name, backing=backing, offset=backing.offset + offset)
        v.maxprot, v.source = maxprot, source
        return start

    def _place(self, addr: int, length: int, flags: int) -> int:
        """Where a new mapping goes; a fixed one must lie within [bottom, top): above `top` are the
        platform's own pages (the ptrace stub), which nothing of the application may replace."""
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            if addr + length > self.top or addr + length < addr:
                raise SyscallError(errno.ENOMEM)
            if addr < self.bottom:
                raise SyscallError(errno.EPERM)
        if flags & MAP_FIXED_NOREPLACE:
            if self._overlapping(addr, addr + length):
                raise SyscallError(errno.EEXIST)
            return addr
        if flags & MAP_FIXED:
            if self._overlapping(addr, addr + length):
                self._remove_range(addr, addr + length, unmap_host=False)
            return addr
        return self._free_gap(length, addr)

    def mmap_anon(self, addr: int, length: int, prot: int, flags: int, name: str = "") -> int:
        """Anonymous mmap (private or shared); MAP_FIXED replaces what was there."""
        length = page_up(length)
        shared = (flags & 0x3) in (MAP_SHARED, MAP_SHARED_VALIDATE)
        if length > self.top:
            raise SyscallError(errno.ENOMEM)
        # Memory first: ENOMEM must leave a MAP_FIXED target as it was.
        backing = Backing(self.memfile.allocate(length), length)
        try:
            start = self._place(addr, length, flags)
        except SyscallError:
            self.memfile.free(backing.offset, length)
            raise
        self._map_new(start, length, prot, shared, name, backing=backing, offset=backing.offset,
                      growsdown=bool(flags & MAP_GROWSDOWN))
        return start

    def munmap(self, addr: int, length: int) -> None:
        if addr % PAGE or length == 0 or addr + length > self.top or addr < 0:
            raise SyscallError(errno.EINVAL)
        end = page_up(addr + length)
        if self._overlapping(addr, end):
            self._remove_range(addr, end)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        if addr % PAGE:
            raise SyscallError(errno.EINVAL)
        if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | 0x01000000 | 0x02000000):
            raise SyscallError(errno.EINVAL)
        end = page_up(addr + length)
        if end == addr:
            return
        self.require_mapped(addr, end)
        prot &= PROT_READ | PROT_WRITE | PROT_EXEC
        for v in self._overlapping(addr, end):
            if prot & ~v.maxprot:
                raise SyscallError(errno.EACCES)
        self._split(addr)
        self._split(end)
        for v in self._overlapping(addr, end):
            v.prot = prot
        self.space.protect(addr, end - addr, prot)
        for v in self._overlapping(addr, end):
            if v.cow is not None and prot & PROT_WRITE:     # still shared: the first write copies
                self.space.protect(v.start, v.end - v.start, prot & ~PROT_WRITE)
            if v.eof and v.eof < v.end:           # past EOF stays inaccessible: SIGBUS, not data
                lo = max(v.eof, v.start)
                self.space.protect(lo, v.end - lo, 0)

    def require_mapped(self, addr: int, end: int) -> None:
        """Every page of [addr, end) must be mapped: ENOMEM otherwise (mprotect, madvise, msync...)."""
        cur = addr
        for v in self._overlapping(addr, end):
            if v.start > cur:
                raise SyscallError(errno.ENOMEM)
            cur = v.end
        if cur < end:
            raise SyscallError(errno.ENOMEM)

    def set_brk_start(self, addr: int) -> None:
        self.brk_start = self.brk_cur = page_up(addr)

    def brk(self, addr: int) -> int:
        """brk(2): move the program break; on failure return the current one (as Linux does)."""
        cur = self.brk_cur
        if addr < self.brk_start:
            return cur
        new_end, old_end = page_up(addr), page_up(cur)
        if new_end > old_end:
            if self._overlapping(old_end, new_end):
                return cur
            if self._heap is None:
                self._heap = Backing(self.memfile.allocate(HEAP_RESERVE), HEAP_RESERVE)
                self._heap.live = 0
            heap = self._heap
            used = old_end - self.brk_start
            if new_end - self.brk_start > heap.length:
                return cur
            v = self.find(old_end - 1) if old_end > self.brk_start else None
            grow = new_end - old_end
            if v is not None and v.name == "[heap]" and v.end == old_end and v.backing is heap \
                    and v.offset + (v.end - v.start) == heap.offset + used:
                v.end = new_end
                self.space.map(old_end, grow, v.prot, heap.offset + used)
            else:
                v = self._map_new(old_end, grow, PROT_READ | PROT_WRITE, True, "[heap]",
                                  backing=heap, offset=heap.offset + used)
                v.shared = False
            heap.live += grow
        elif new_end < old_end:
            self._split(new_end)
            for v in self._overlapping(new_end, old_end):
                i = bisect.bisect_left(self._starts, v.start)
                del self.vmas[i]
                del self._starts[i]
                if v.backing is self._heap:
                    self.memfile.zero(v.offset, v.end - v.start)
                    self._heap.live -= v.end - v.start
                else:                           # from before a fork: copy-on-write or its own
                    self._release(v)
            self._last = None
            self.space.unmap(new_end, old_end - new_end)
        self.brk_cur = addr
        return addr

    def release(self) -> None:
        """Drop every mapping and the platform address space."""
        from sentry.vfs.file import put
        for f in self.file_refs:
            put(f)
        self.file_refs = []
        for v in self.vmas:
            if v.backing is self._heap:
                continue
            self._release(v)
        if self._heap is not None:
            self.memfile.free(self._heap.offset, self._heap.length)
            self._heap = None
        self.vmas.clear()
        self._starts.clear()
        self._last = None
        self.space.release()

    def set_eof(self, start: int, end: int, eof_addr: int) -> None:
        """Pages of a file mapping at and after `eof_addr` are past the file's end: accessing them
        faults (the Sentry turns that into SIGBUS, as Linux does)."""
        eof_addr = page_up(eof_addr)
        if eof_addr >= end:
            return
        for v in self._overlapping(start, end):
            v.eof = eof_addr
        self.space.protect(max(eof_addr, start), end - max(eof_addr, start), 0)

    def resident_bytes(self) -> int:
        """Pages of this address space really in memory (touched, not freed): its RSS."""
        committed = self.memfile.committed
        return sum(committed(v.offset, v.end - v.start) for v in self.vmas)

    def total_mapped(self) -> int:
        return sum(v.end - v.start for v in self.vmas)

    def grow_stack(self, addr: int, limit: int) -> bool:
        """A fault at `addr` just below a MAP_GROWSDOWN VMA: extend it down (to the page) if the
        stack stays within `limit` bytes and the guard gap to the next mapping holds."""
        i = bisect.bisect_right(self._starts, addr)
        if i >= len(self.vmas):
            return False
        v = self.vmas[i]
        if not v.growsdown or addr >= v.start:
            return False
        new_start = page_down(addr)
        if self.top - new_start > limit and v.end - new_start > limit:
            return False
        prev_end = self.vmas[i - 1].end if i > 0 else self.bottom
        if new_start < prev_end + PAGE * 256 and i > 0:
            return False                        # stack_guard_gap
        grow = v.start - new_start
        nv = self._map_new(new_start, grow, v.prot, False, v.name, growsdown=True)
        nv.growsdown = True
        v.growsdown = False                       # the lowest piece is the one that grows
        return True

    # -- fork: sentry/mm/cow.py ------------------------------------------------

    def _copy_populated(self, src: int, dst: int, length: int) -> None:
        fd, view = self.memfile.fd, self.view
        pos, end = src, src + length
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:          # ENXIO: no data after pos
                return
            if data >= end:
                return
            hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
            view[dst + (data - src):dst + (hole - src)] = view[data:hole]
            pos = hole

    # -- mremap -----------------------------------------------------------------

    def _detach(self, start: int, end: int) -> list[Vma]:
        """Take [start, end) out of the VMA list without freeing its pages (they move)."""
        self._split(start)
        self._split(end)
        out = []
        for v in self._overlapping(start, end):
            i = bisect.bisect_left(self._starts, v.start)
            del self.vmas[i]
            del self._starts[i]
            out.append(v)
        self._last = None
        return out

    def mremap(self, addr: int, old: int, new: int, maymove: bool, fixed_addr: int | None) -> int:
        old, new = page_up(old), page_up(new)
        v = self.find(addr)
        if v is None:
            raise SyscallError(errno.EFAULT)
        # Linux wants one VMA; ours are not merged across backings, so accept a contiguous run.
        cur = addr
        for piece in self._overlapping(addr, addr + old):
            if piece.start > cur:
                raise SyscallError(errno.EFAULT)
            cur = piece.end
        if cur < addr + old:
            raise SyscallError(errno.EFAULT)
        if fixed_addr is None and new <= old:
            if new < old:
                self.munmap(addr + new, old - new)
            return addr
        if fixed_addr is None and addr + new <= self.top and not self._overlapping(addr + old, addr + new):
            # Grow in place: the added pages get their own backing (a second VMA).
            self._map_new(addr + old, new - old, v.prot, v.shared, v.name)
            return addr
        if not maymove:
            raise SyscallError(errno.ENOMEM)
        keep = min(old, new)
        grown = None
        if new > keep:          # memory for the added part first: ENOMEM must change nothing
            grown = Backing(self.memfile.allocate(new - keep), new - keep)
        try:
            if fixed_addr is not None:
                dst = fixed_addr
                if dst < self.bottom or dst + new > self.top or dst + new < dst:
                    raise SyscallError(errno.EINVAL)        # never onto the stub or past user space
                if dst < addr + old and addr < dst + new:
                    raise SyscallError(errno.EINVAL)
            else:
                dst = self._free_gap(new)
        except SyscallError:
            if grown is not None:
                self.memfile.free(grown.offset, grown.length)
            raise
        if fixed_addr is not None and self._overlapping(dst, dst + new):
            self._remove_range(dst, dst + new)
        if old > new:
            self.munmap(addr + new, old - new)
        moved = self._detach(addr, addr + keep)
        self.space.unmap(addr, keep)
        for mv in moved:
            delta = mv.start - addr
            nv = mv.clone_at(dst + delta, dst + delta + (mv.end - mv.start), mv.offset)
            nv.source = mv.source
            self._insert(nv)
            self.space.map(nv.start, nv.end - nv.start, self.host_prot(nv), nv.offset)
            self._hide_past_eof(nv)
        if new > keep:
            self._map_new(dst + keep, new - keep, v.prot, v.shared, v.name, backing=grown, offset=grown.offset)
        return dst
