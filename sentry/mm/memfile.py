"""MemoryFile: all application memory of a sandbox lives in one host memfd.

The memfd is mapped into the Sentry once, so copying to and from
application memory is a memoryview slice, never a syscall; the platform
maps ranges of the same memfd into each address space (a stub process,
or KVM guest-physical memory).  The file is sparse: offsets are reserved
generously and cost nothing until a page is touched.  Freed ranges are
punched out (MADV_REMOVE), so the host gets the memory back at once.

Allocation is first-fit over a sorted free list, then a bump pointer.
Page-granular and single-threaded, like the rest of the Sentry.
"""
from __future__ import annotations

import bisect
import errno
import mmap
import os

from sentry.errors import SyscallError

PAGE = 4096
DEFAULT_SIZE = 1 << 44          # 16 TiB of offsets; sparse, so only touched pages use memory


class MemoryFile:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.fd = os.memfd_create("runsc-py-memory", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.size = size
        self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.map)
        self._bump = 0
        self._free_starts: list[int] = []      # sorted
        self._free_len: dict[int, int] = {}
        self.allocated = 0

    def allocate(self, length: int) -> int:
        """Reserve `length` bytes (page multiple) of zeroed memory; return the offset.  ENOMEM when
        the file has no such range left (a 2^46-byte MAP_NORESERVE, say): an application's
        request the sandbox cannot hold, never the Sentry's failure."""
        assert length > 0 and length % PAGE == 0
        if length > self.size - self.allocated:
            raise SyscallError(errno.ENOMEM)
        for i, start in enumerate(self._free_starts):
            flen = self._free_len[start]
            if flen >= length:
                del self._free_starts[i]
                del self._free_len[start]
                if flen > length:
                    rest = start + length
                    bisect.insort(self._free_starts, rest)
                    self._free_len[rest] = flen - length
                self.allocated += length
                return start
        if self._bump + length > self.size:
            raise SyscallError(errno.ENOMEM)
        start = self._bump
        self._bump += length
        self.allocated += length
        return start

    def free(self, offset: int, length: int) -> None:
        """Return a range: its pages are dropped (reads as zero when reused)."""
        assert offset % PAGE == 0 and length % PAGE == 0 and length > 0
        self.map.madvise(mmap.MADV_REMOVE, offset, length)
        self.allocated -= length
        i = bisect.bisect_left(self._free_starts, offset)
        # Coalesce with the next and previous free ranges.
        end = offset + length
        if i < len(self._free_starts) and self._free_starts[i] == end:
            nxt = self._free_starts.pop(i)
            length += self._free_len.pop(nxt)
        if i > 0:
            prev = self._free_starts[i - 1]
            if prev + self._free_len[prev] == offset:
                self._free_len[prev] += length
                return
        self._free_starts.insert(i, offset)
        self._free_len[offset] = length

    def committed(self, start: int, length: int) -> int:
        """Bytes of [start, start+length) of the memfd really backed by pages (SEEK_DATA/SEEK_HOLE)."""
        fd, total, pos, end = self.fd, 0, start, start + length
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            if data >= end:
                break
            hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
            total += hole - data
            pos = hole
        return total

    def used(self) -> int:
        """Bytes of memory really in use (pages touched and not freed), as the host counts them."""
        return os.fstat(self.fd).st_blocks * 512

    def zero(self, offset: int, length: int) -> None:
        """Zero a page-aligned range by punching it out."""
        self.map.madvise(mmap.MADV_REMOVE, offset, length)
