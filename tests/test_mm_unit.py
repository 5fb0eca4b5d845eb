"""Unit tests of the memory manager (sentry/mm): VMAs, splits, mremap, fork and copy-on-write,
the page cache's sharing, and ENOMEM at the MemoryFile's end.

No sandbox runs here: the platform is a recorder whose address spaces keep the host protection
of every page (so a test can see that a shared page is mapped without write permission), over a
real (small, sparse) MemoryFile.
"""
from __future__ import annotations

import errno

import pytest

from sentry.errors import SyscallError
from sentry.mm import cow
from sentry.mm.manager import (MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PAGE, PROT_READ,
                               PROT_WRITE, MemoryManager)
from sentry.mm.memfile import MemoryFile

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


class Space:
    """A platform address space that remembers (memfile offset, host prot) per page."""

    def __init__(self) -> None:
        self.pages: dict[int, tuple[int, int]] = {}
        self.calls = 0

    def map(self, addr, length, prot, off):
        self.calls += 1
        for i in range(0, length, PAGE):
            self.pages[addr + i] = (off + i, prot)

    def unmap(self, addr, length):
        self.calls += 1
        for i in range(0, length, PAGE):
            self.pages.pop(addr + i, None)

    def protect(self, addr, length, prot):
        self.calls += 1
        for i in range(0, length, PAGE):
            if addr + i in self.pages:
                self.pages[addr + i] = (self.pages[addr + i][0], prot)

    def release(self):
        self.pages.clear()


class Platform:
    max_user_address = 1 << 40
    min_user_address = 0x10000

    def new_address_space(self):
        return Space()


@pytest.fixture
def mm():
    memfile = MemoryFile(size=1 << 34)
    return MemoryManager(Platform(), memfile)


def host_prot(mm, addr):
    return mm.space.pages[addr][1]


def test_split_and_protect(mm):
    a = mm.mmap_anon(0, 4 * PAGE, RW, ANON)
    mm.mprotect(a + PAGE, PAGE, PROT_READ)
    assert [(v.start - a, v.end - a, v.prot) for v in mm.vmas] == \
        [(0, PAGE, RW), (PAGE, 2 * PAGE, PROT_READ), (2 * PAGE, 4 * PAGE, RW)]
    mm.munmap(a + 2 * PAGE, PAGE)
    assert mm.find(a + 2 * PAGE) is None and mm.find(a + 3 * PAGE) is not None
    with pytest.raises(SyscallError) as e:
        mm.mprotect(a, 4 * PAGE, RW)          # a hole in the range
    assert e.value.errno == errno.ENOMEM


def test_copy_out_and_efault(mm):
    a = mm.mmap_anon(0, 2 * PAGE, RW, ANON)
    mm.write(a + PAGE - 2, b"abcd")           # across two pages
    assert mm.read(a + PAGE - 2, 4) == b"abcd"
    mm.mprotect(a + PAGE, PAGE, PROT_READ)
    with pytest.raises(SyscallError) as e:
        mm.write(a + PAGE - 2, b"zz!!")
    assert e.value.errno == errno.EFAULT


def test_mremap_moves_bytes_and_grows(mm):
    a = mm.mmap_anon(0, 2 * PAGE, RW, ANON)
    mm.write(a, b"x" * 10)
    b = mm.mremap(a, 2 * PAGE, 8 * PAGE, True, None)
    assert mm.read(b, 10) == b"x" * 10
    assert mm.read(b + 7 * PAGE, 4) == bytes(4)
    if b != a:
        assert mm.find(a) is None


def test_fixed_mapping_cannot_reach_the_platform_range(mm):
    top = mm.top
    for flags in (ANON | MAP_FIXED,):
        with pytest.raises(SyscallError) as e:
            mm.mmap_anon(top - PAGE, 2 * PAGE, RW, flags)
        assert e.value.errno == errno.ENOMEM
    with pytest.raises(SyscallError) as e:
        mm.mmap_anon(0x1000, PAGE, RW, ANON | MAP_FIXED)
    assert e.value.errno == errno.EPERM


def test_enomem_leaves_a_fixed_target(mm):
    a = mm.mmap_anon(0, PAGE, RW, ANON)
    mm.write(a, b"keep")
    with pytest.raises(SyscallError) as e:
        mm.mmap_anon(a, 1 << 35, RW, ANON | MAP_FIXED)     # more than the MemoryFile holds
    assert e.value.errno == errno.ENOMEM
    assert mm.read(a, 4) == b"keep"


def big_mapping(mm, pages=64, byte=b"p"):
    a = mm.mmap_anon(0, pages * PAGE, RW, ANON)
    for i in range(pages):
        mm.write(a + i * PAGE, byte * PAGE)
    return a


def test_fork_shares_big_private_memory_copy_on_write(mm):
    a = big_mapping(mm)
    used = mm.memfile.used()
    child = mm.fork()
    assert mm.memfile.used() == used                   # nothing copied
    assert not host_prot(mm, a) & PROT_WRITE and not host_prot(child, a) & PROT_WRITE
    assert mm.space.pages[a][0] == child.space.pages[a][0]
    # The child writes one page: it alone gets a copy, writable; the parent keeps its bytes.
    assert child.cow_fault(a + 3 * PAGE + 7)
    child.write(a + 3 * PAGE, b"c")
    assert child.space.pages[a + 3 * PAGE][0] != mm.space.pages[a + 3 * PAGE][0]
    assert host_prot(child, a + 3 * PAGE) & PROT_WRITE
    assert mm.read(a + 3 * PAGE, 2) == b"pp" and child.read(a + 3 * PAGE, 2) == b"cp"
    assert mm.memfile.used() == used + PAGE
    # The Sentry writing into the parent's shared page copies it too (read(2) into a buffer).
    mm.write(a + 5 * PAGE, b"P")
    assert child.read(a + 5 * PAGE, 1) == b"p" and mm.read(a + 5 * PAGE, 1) == b"P"
    # The child exits: the parent's next write fault makes the rest writable, no copy.
    child.release()
    used = mm.memfile.used()
    assert mm.cow_fault(a + 9 * PAGE)
    assert host_prot(mm, a + 9 * PAGE) & PROT_WRITE
    assert mm.memfile.used() == used


def test_small_mappings_are_copied_at_fork(mm):
    a = mm.mmap_anon(0, 4 * PAGE, RW, ANON)
    mm.write(a, b"s")
    child = mm.fork()
    assert host_prot(mm, a) & PROT_WRITE and host_prot(child, a) & PROT_WRITE
    assert mm.space.pages[a][0] != child.space.pages[a][0]
    child.write(a, b"c")
    assert mm.read(a, 1) == b"s"


def test_three_sharers_and_release_frees_everything(mm):
    a = big_mapping(mm)
    base = mm.memfile.allocated
    c1 = mm.fork()
    c2 = c1.fork()
    c2.write(a, b"2")
    c1.write(a, b"1")
    assert (mm.read(a, 1), c1.read(a, 1), c2.read(a, 1)) == (b"p", b"1", b"2")
    for x in (c1, c2):
        x.release()
    mm.release()
    assert mm.memfile.allocated < base                 # every page went back (the heap had none)


def test_a_real_fault_is_not_cow(mm):
    a = mm.mmap_anon(0, PAGE, PROT_READ, ANON)
    assert not mm.cow_fault(a)                          # read-only: the application's SIGSEGV
    assert not mm.cow_fault(a + (1 << 30))              # unmapped


def test_madvise_dontneed_path_unshares_without_copy(mm):
    a = big_mapping(mm)
    child = mm.fork()
    child.unshare(a, a + 2 * PAGE, copy=False)
    assert child.read(a, 1) == b"\0" and mm.read(a, 1) == b"p"


def test_shared_mappings_stay_shared_across_fork(mm):
    a = mm.mmap_anon(0, 2 * PAGE, RW, MAP_SHARED | MAP_ANONYMOUS)
    child = mm.fork()
    child.write(a, b"s")
    assert mm.read(a, 1) == b"s"
    assert host_prot(child, a) & PROT_WRITE


def test_cow_range_counts():
    freed = []

    class MF:
        def free(self, off, length):
            freed.append((off, length))
    r = cow.CowRange(MF(), 0, 8 * PAGE, 1)
    r.ref(0, 4 * PAGE)
    assert r.shared(0, PAGE) and not r.shared(4 * PAGE, 4 * PAGE)
    r.unref(0, 8 * PAGE)
    assert freed == [(4 * PAGE, 4 * PAGE)]
    r.unref(0, 4 * PAGE)
    assert freed[-1] == (0, 4 * PAGE)


def test_page_cache_shares_a_file_between_address_spaces(mm):
    from types import SimpleNamespace

    from sentry.mm.pagecache import PageCache
    data = bytes(range(256)) * 64                       # 16 KiB: four pages
    reads = []

    class File:
        def pread(self, t, views, off):
            reads.append((off, len(views[0])))
            chunk = data[off:off + len(views[0])]
            views[0][:len(chunk)] = chunk
            return len(chunk)
    st = SimpleNamespace(dev=1, ino=2, size=len(data), mtime_ns=3, ctime_ns=4)
    pc = PageCache(mm.memfile)
    cf = pc.get(SimpleNamespace(), st)
    cf.load(None, File(), 0, 4 * PAGE)
    other = MemoryManager(Platform(), mm.memfile)
    starts = []
    for m in (mm, other):
        start = m._place(0, 4 * PAGE, 0)
        m.mmap_cow(start, 4 * PAGE, PROT_READ, cf.range, cf.range.offset)
        starts.append(start)
    assert mm.read(starts[0] + PAGE, 8) == data[PAGE:PAGE + 8] == other.read(starts[1] + PAGE, 8)
    assert mm.space.pages[starts[0]][0] == other.space.pages[starts[1]][0]      # one copy
    assert pc.get(SimpleNamespace(), st) is cf and len(reads) == 1             # read once
    # A write (after mprotect) copies the page for that address space only.
    mm.mprotect(starts[0], PAGE, RW)
    assert not host_prot(mm, starts[0]) & PROT_WRITE
    mm.write(starts[0], b"!")
    assert other.read(starts[1], 1) == data[:1] and mm.read(starts[0], 1) == b"!"
    # A changed file is a new version; the old pages live on while mapped.
    st2 = SimpleNamespace(dev=1, ino=2, size=len(data), mtime_ns=99, ctime_ns=4)
    assert pc.get(SimpleNamespace(), st2) is not cf
    assert other.read(starts[1] + PAGE, 8) == data[PAGE:PAGE + 8]


def test_more_sharers_than_a_count_byte_holds_get_copies(mm):
    a = big_mapping(mm, pages=32)
    children = [mm.fork() for _ in range(300)]          # past 255: the later ones are copied
    assert all(c.read(a + 31 * PAGE, 1) == b"p" for c in children)
    children[-1].write(a, b"z")
    assert mm.read(a, 1) == b"p" and children[0].read(a, 1) == b"p"
    for c in children:
        c.release()
    mm.write(a, b"q")
    assert mm.read(a, 1) == b"q"


def test_mremap_of_a_shared_range_keeps_it_copy_on_write(mm):
    a = big_mapping(mm)
    child = mm.fork()
    b = child.mremap(a, 64 * PAGE, 128 * PAGE, True, None)
    assert not host_prot(child, b) & PROT_WRITE
    assert child.cow_fault(b + PAGE)
    child.write(b + PAGE, b"m")
    assert mm.read(a + PAGE, 1) == b"p" and child.read(b + PAGE, 1) == b"m"
    assert child.read(b + 100 * PAGE, 1) == b"\0"
