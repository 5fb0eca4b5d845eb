"""The Sentry's page cache for private file mappings.

Before, every MAP_PRIVATE mapping of a file read the mapped bytes into fresh
memory, so each `exec` of a dynamic program copied its libraries again (libc
alone is 2 MB).  Now each file version (device, inode, size, mtime, ctime)
has one `CachedFile`: a MemoryFile range holding its pages, read from the
file once, the first time some mapping needs them.  A private mapping maps
those pages directly, copy-on-write (sentry/mm/cow.py): reading and
executing them costs nothing more, the first write to a page copies it for
that address space alone.  Every process and every exec in the sandbox
shares one copy of each library, as they share the host's page cache under
Linux.

A file that changed (other size, mtime or ctime) is a new version: existing
mappings keep the pages they have (as a private mapping that already copied
them would), new ones get the new bytes.  The cache holds a reference to
every page it loaded; the oldest versions are dropped past CACHE_BYTES (their
pages stay while a mapping uses them, then go back to the MemoryFile).

Only files that are not mapped shared (a MAP_SHARED mapping keeps its own
coherent pages: sentry/mm/filemap.py) and whose size is known are cached.
"""
from __future__ import annotations

import collections
import errno

from sentry.errors import SyscallError
from sentry.mm.cow import CowRange

PAGE = 4096
CACHE_BYTES = 256 << 20         # loaded bytes kept for files no mapping may need again
MAX_FILE = 1 << 32              # larger files are not cached (offsets are reserved for the whole file)


def _page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


class CachedFile:
    __slots__ = ("key", "range", "loaded", "loaded_bytes", "length")

    def __init__(self, memfile, key, size: int) -> None:
        self.key = key
        self.length = max(_page_up(size), PAGE)
        self.range = CowRange(memfile, memfile.allocate(self.length), self.length, 0)
        self.range.forgettable = False      # the cache's reference: a mapping never owns them outright
        self.loaded = bytearray(self.length // PAGE)
        self.loaded_bytes = 0

    def load(self, t, f, off: int, length: int) -> None:
        """Make sure file pages [off, off+length) are in memory (reading the missing runs)."""
        i, j = off // PAGE, (off + length) // PAGE
        loaded = self.loaded
        k = i
        view = self.range.memfile.view
        base = self.range.offset
        while k < j:
            k = loaded.find(0, k, j)
            if k < 0:
                break
            e = loaded.find(1, k, j)
            if e < 0:
                e = j
            lo, hi = k * PAGE, e * PAGE
            got = f.pread(t, [view[base + lo:base + hi]], lo)
            if got < 0:
                raise SyscallError(errno.EIO)
            self.range.ref(base + lo, hi - lo)          # the cache's own reference
            loaded[k:e] = b"\x01" * (e - k)
            self.loaded_bytes += hi - lo
            k = e

    def drop(self) -> None:
        """Forget this version: pages no mapping uses go back now, the rest when unmapped."""
        r = self.range
        r.free_unreferenced()                # the never-loaded ones
        loaded = self.loaded
        k, n = 0, len(loaded)
        while k < n:
            k = loaded.find(1, k)
            if k < 0:
                break
            e = loaded.find(0, k)
            if e < 0:
                e = n
            r.unref(r.offset + k * PAGE, (e - k) * PAGE)
            k = e
        self.loaded = bytearray()


class PageCache:
    def __init__(self, memfile) -> None:
        self.memfile = memfile
        self.files: collections.OrderedDict = collections.OrderedDict()
        self.bytes = 0

    def get(self, inode, st) -> CachedFile | None:
        if st.size <= 0 or st.size > MAX_FILE or getattr(inode, "shared_map", None) is not None:
            return None
        key = (st.dev, st.ino)
        cf = self.files.get(key)
        version = (st.size, st.mtime_ns, st.ctime_ns)
        if cf is not None and cf.key == version:
            self.files.move_to_end(key)
            return cf
        if cf is not None:
            self._drop(key)
        cf = CachedFile(self.memfile, version, st.size)
        self.files[key] = cf
        return cf

    def loaded(self, cf: CachedFile, before: int) -> None:
        """`cf` grew from `before` loaded bytes: trim the oldest versions past the budget."""
        self.bytes += cf.loaded_bytes - before
        while self.bytes > CACHE_BYTES and len(self.files) > 1:
            key = next(iter(self.files))
            if self.files[key] is cf:
                break
            self._drop(key)

    def _drop(self, key) -> None:
        cf = self.files.pop(key)
        self.bytes -= cf.loaded_bytes
        cf.drop()


def cache_of(kernel, memfile) -> PageCache:
    pc = kernel.page_cache
    if pc is None:
        pc = kernel.page_cache = PageCache(memfile)
    return pc
