"""Copy-on-write pages: private memory shared by address spaces after fork.

At fork the child's private VMAs point at the parent's MemoryFile pages
instead of copies; both address spaces map them without write permission
(the Sentry's own mapping of the MemoryFile stays writable, so its reads
never fault).  A `CowRange` owns such a range: one reference count per page,
one per VMA (of any address space) that maps it.  The first write to a page
that someone else still references copies that one page (a write fault from
the platform, or the Sentry writing application memory: `MemoryManager.
unshare`); a write to a page whose count has dropped to one just makes the
host mapping writable again.  A page whose count reaches zero goes back to
the MemoryFile (the range was allocated by the private VMA or the heap it
came from, and the allocator takes it back piece by piece).

Why per-range counts and not per-page objects: a fork touches a few VMAs,
not every page, so fork costs one array per VMA (2 bytes a page) and no
copy; the page-level work happens only where someone writes.
"""
from __future__ import annotations

import os
import re

PAGE = 4096
EAGER_COPY = 64 << 10           # a private mapping with at most this much in memory is copied at fork
COW_MAX = 1 << 35               # larger mappings (sparse MAP_NORESERVE ones) are copied: 1 count byte a page
MAX_REFS = 255                  # a count is one byte: a range shared more widely is copied instead
_INC = bytes(min(x + 1, 255) for x in range(256))
_DEC = bytes(max(x - 1, 0) for x in range(256))
_ZEROS = re.compile(b"\x00+")
_SHARED = re.compile(b"[\x02-\xff]")
_FULL = re.compile(b"\xff")


class CowRange:
    __slots__ = ("memfile", "offset", "refs", "forgettable")

    def __init__(self, memfile, offset: int, length: int, initial: int) -> None:
        self.memfile = memfile
        self.offset = offset
        # One byte a page; bytes.translate and compiled regexes do the per-page work in C.
        self.refs = bytearray([initial]) * (length // PAGE)
        # A range only VMAs reference: when one VMA is left it may take its pages over.  The page
        # cache's ranges hold a reference of their own and say False.
        self.forgettable = True

    def _idx(self, off: int, length: int) -> tuple[int, int]:
        i = (off - self.offset) // PAGE
        return i, i + length // PAGE

    def can_ref(self, off: int, length: int) -> bool:
        i, j = self._idx(off, length)
        return _FULL.search(self.refs, i, j) is None

    def ref(self, off: int, length: int) -> None:
        """One more VMA maps [off, off+length) (can_ref said there is room)."""
        i, j = self._idx(off, length)
        refs = self.refs
        refs[i:j] = refs[i:j].translate(_INC)

    def unref(self, off: int, length: int) -> None:
        """A VMA stops mapping [off, off+length): pages nobody maps any more are freed."""
        i, j = self._idx(off, length)
        refs = self.refs
        refs[i:j] = refs[i:j].translate(_DEC)
        for m in _ZEROS.finditer(refs, i, j):
            self._free(m.start(), m.end())

    def forget(self, off: int, length: int) -> None:
        """The only VMA mapping [off, off+length) takes the pages over (it frees them itself)."""
        i, j = self._idx(off, length)
        self.refs[i:j] = bytes(j - i)

    def free_unreferenced(self) -> None:
        """Give back every page no VMA maps (after adopting a range with holes: the heap)."""
        for m in _ZEROS.finditer(self.refs):
            self._free(m.start(), m.end())

    def _free(self, i: int, j: int) -> None:
        self.memfile.free(self.offset + i * PAGE, (j - i) * PAGE)

    def shared(self, off: int, length: int) -> bool:
        """Does anyone else map a page of [off, off+length)?"""
        i, j = self._idx(off, length)
        return _SHARED.search(self.refs, i, j) is not None


class CopyOnWrite:
    """MemoryManager's fork and its copy-on-write side (a mixin: the VMA list is the manager's)."""

    def fork(self):
        """A copy of this address space for a forked child.  Shared mappings share their pages;
        private ones share theirs copy-on-write, except a mapping with at most EAGER_COPY bytes
        in memory, which the child gets a copy of at once: here a write fault (a ptrace stop and
        a remap in the stub) costs several times a page copy, and small mappings (a stack, a
        static program's data) are the ones both sides write right after fork."""
        child = type(self)(self.platform, self.memfile)
        try:
            self._fork_into(child)
        except BaseException:
            child.release()                 # ENOMEM half way: the child's pieces go, the parent stays
            raise
        return child

    def _fork_into(self, child) -> None:
        from sentry.mm.manager import HEAP_RESERVE, PROT_WRITE, Backing
        memfile = self.memfile
        child.brk_start, child.brk_cur = self.brk_start, self.brk_cur
        from sentry.vfs.file import hold
        child.file_refs = [hold(f) for f in self.file_refs]     # each mapping's file, once more
        child.stack_top, child.mmap_base = self.stack_top, self.mmap_base
        old_heap, heap_cr = self._heap, None
        if old_heap is not None:
            used = min(max(_page_up(self.brk_cur) - self.brk_start, 0), old_heap.length)
            if used and self._extents(old_heap.offset, used, EAGER_COPY) is None:
                # A big heap: its pages so far become copy-on-write like any private memory,
                # and both sides grow their break into a fresh reserve from here on.
                heap_cr = CowRange(memfile, old_heap.offset, used, 0)
                if old_heap.length > used:
                    memfile.free(old_heap.offset + used, old_heap.length - used)
                self._heap = Backing(memfile.allocate(HEAP_RESERVE), HEAP_RESERVE)
                self._heap.live = 0
            child._heap = Backing(memfile.allocate(old_heap.length), old_heap.length)
            child._heap.live = old_heap.live if heap_cr is None else 0
        readonly = []                # the parent's writable private runs, to write-protect
        for v in self.vmas:
            length = v.end - v.start
            host_prot = v.prot
            if v.shared:
                v.backing.live += length
                nv = v.clone_at(v.start, v.end, v.offset)
            elif v.backing is old_heap and heap_cr is None:      # a small heap: copied as a whole
                off = child._heap.offset + (v.offset - old_heap.offset)
                self._copy_populated(v.offset, off, length)
                nv = v.clone_at(v.start, v.end, off)
                nv.backing, nv.cow = child._heap, None
            else:
                extents = None
                if v.cow is None and v.backing is not old_heap:
                    extents = self._extents(v.offset, length, EAGER_COPY if length <= COW_MAX else 1 << 62)
                if extents is None and v.cow is None:
                    v.cow = heap_cr if v.backing is old_heap else CowRange(memfile, v.offset, length, 0)
                    v.cow.ref(v.offset, length)
                if extents is None and v.cow.can_ref(v.offset, length):
                    v.cow.ref(v.offset, length)
                    nv = v.clone_at(v.start, v.end, v.offset)
                    host_prot = nv.prot & ~PROT_WRITE
                    if v.prot & PROT_WRITE:
                        readonly.append(v)
                else:                       # small, or shared by 255 already: the child's own copy
                    off = memfile.allocate(length)
                    if extents is None:
                        self._copy_populated(v.offset, off, length)
                    else:
                        view = self.view
                        for lo, hi in extents:
                            view[off + (lo - v.offset):off + (hi - v.offset)] = view[lo:hi]
                    nv = v.clone_at(v.start, v.end, off)
                    nv.cow, nv.backing = None, Backing(off, length)
                    host_prot = nv.prot
            child._insert(nv)
            child.space.map(nv.start, length, host_prot, nv.offset)
            child._hide_past_eof(nv)
        if heap_cr is not None:
            heap_cr.free_unreferenced()
        # Write-protect the parent's side: adjacent VMAs in one call.
        run_lo = run_hi = 0
        run_prot = -1
        for v in readonly:
            hi = v.end if not v.eof or v.eof >= v.end else max(v.eof, v.start)
            p = v.prot & ~PROT_WRITE
            if v.start == run_hi and p == run_prot:
                run_hi = hi
                continue
            if run_hi > run_lo:
                self.space.protect(run_lo, run_hi - run_lo, run_prot)
            run_lo, run_hi, run_prot = v.start, hi, p
        if run_hi > run_lo:
            self.space.protect(run_lo, run_hi - run_lo, run_prot)

    def _extents(self, off: int, length: int, limit: int):
        """The data extents [(lo, hi)] of MemoryFile range [off, off+length), or None if they
        hold more than `limit` bytes (the file is sparse: untouched pages are holes)."""
        fd = self.memfile.fd
        out = []
        total = 0
        pos, end = off, off + length
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:          # ENXIO: no data after pos
                break
            if data >= end:
                break
            hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
            total += hole - data
            if total > limit:
                return None
            out.append((data, hole))
            pos = hole
        return out

    def mmap_cow(self, start: int, length: int, prot: int, cr: CowRange, offset: int, name: str = ""):
        """A private mapping at `start` (placed already) of `cr`'s pages from MemoryFile `offset`:
        shared until written (the page cache's pages of a file).  None if `cr` has no room for
        another reference (the caller copies instead)."""
        from sentry.mm.manager import MAP_FIXED, Backing, Vma
        if not cr.can_ref(offset, length):
            return None
        self._place(start, length, MAP_FIXED)
        v = Vma(start, start + length, prot, False, offset, Backing(offset, length), name)
        v.cow = cr
        cr.ref(offset, length)
        self._insert(v)
        self.space.map(start, length, self.host_prot(v), offset)
        return v

    def _hide_past_eof(self, v) -> None:
        if v.eof and v.eof < v.end:
            lo = max(v.eof, v.start)
            self.space.protect(lo, v.end - lo, 0)

    def host_prot(self, v) -> int:
        """What the platform maps for `v`: no write permission while its pages may be shared."""
        return v.prot & ~2 if v.cow is not None else v.prot

    def unshare(self, start: int, end: int, copy: bool = True) -> None:
        """Give this address space its own pages for [start, end) (page-aligned) where they are
        shared copy-on-write: copies of them (copy=True), or fresh zero pages (MADV_DONTNEED)."""
        from sentry.mm.manager import Backing
        for v in self._overlapping(start, end):
            cr = v.cow
            if cr is None:
                continue
            s, e = max(v.start, start), min(v.end, end)
            off = v.offset + (s - v.start)
            if not cr.shared(off, e - s):
                if cr.forgettable and not cr.shared(v.offset, v.end - v.start):
                    cr.forget(v.offset, v.end - v.start)    # nobody else maps them: ours outright
                    v.cow = None
                continue
            n = e - s
            new = self.memfile.allocate(n)
            if copy:
                self._copy_populated(off, new, n)
            self._split(s)
            self._split(e)
            piece = self.find(s)
            piece.offset, piece.cow, piece.backing = new, None, Backing(new, n)
            cr.unref(off, n)
            self.space.map(s, n, piece.prot, new)
            self._hide_past_eof(piece)
            self._merge_left(piece)

    def cow_fault(self, addr: int) -> bool:
        """A write fault at `addr`: True if it was copy-on-write (now resolved: run the instruction
        again), False if it is the application's own fault (SIGSEGV)."""
        v = self.find(addr)
        if v is None or not v.prot & 2 or (v.eof and addr >= v.eof):
            return False
        page = addr & ~(PAGE - 1)
        cr = v.cow
        if cr is not None:
            if cr.shared(v.offset + (page - v.start), PAGE):
                self.unshare(page, page + PAGE)
                return True
            if cr.forgettable and not cr.shared(v.offset, v.end - v.start):
                cr.forget(v.offset, v.end - v.start)        # the other side is gone: all ours
                v.cow = None
                hi = v.end if not v.eof or v.eof >= v.end else max(v.eof, v.start)
                self.space.protect(v.start, hi - v.start, v.prot)
                return True
        # This page is ours alone already (the copy was made, or the sharer went away): writable.
        self.space.protect(page, PAGE, v.prot)
        return True

    def _merge_left(self, v) -> None:
        """Join a private piece to its left neighbour when they continue each other exactly
        (one page copied after another leaves one VMA, not one per page)."""
        import bisect
        i = bisect.bisect_left(self._starts, v.start)
        if i == 0 or i >= len(self.vmas) or self.vmas[i] is not v:
            return
        left = self.vmas[i - 1]
        if (left.end != v.start or left.cow is not None or left.shared or left.backing is self._heap
                or left.offset + (left.end - left.start) != v.offset or left.prot != v.prot
                or left.name != v.name or left.maxprot != v.maxprot or left.growsdown or v.growsdown
                or left.eof != v.eof):
            return
        ls, vs = left.source, v.source
        if (ls is None) != (vs is None):
            return
        if ls is not None and (ls[0] is not vs[0] or ls[1] + (left.end - left.start) != vs[1]):
            return
        left.end = v.end
        del self.vmas[i]
        del self._starts[i]
        self._last = None
        self.exec_lo = self.exec_hi = 0


def _page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)
