"""Copy-in and copy-out: how the Sentry reads and writes application memory.

Linux's copy_{from,to}_user and strncpy_from_user for a MemoryManager (a
mixin of it, as cow.py is): every application page is a page of the
MemoryFile, which the Sentry maps too, so a copy is a memoryview slice of
that mapping found through the VMAs.  EFAULT comes exactly where Linux's
would: an unmapped byte, PROT_NONE, or a write to a page without
PROT_WRITE.  A write to a copy-on-write page copies it first (`unshare`):
the Sentry's own mapping never faults, so it must never write through a
page another address space still shares.

The one-VMA fast paths (`_last`, one slice) are what most syscalls take:
a path, a struct, a buffer within one mapping.
"""
from __future__ import annotations

import errno
import struct

from sentry.errors import SyscallError

PAGE = 4096
PROT_WRITE = 2


class UserCopy:
    """Copy-in/copy-out for MemoryManager (which provides find, view, _map, _last, top, unshare)."""

    def _span(self, addr: int, n: int, write: bool) -> list[memoryview]:
        out = []
        view = self.view
        while n > 0:
            v = self.find(addr)
            if v is None or not v.prot or (write and not v.prot & PROT_WRITE):
                raise SyscallError(errno.EFAULT)
            take = min(n, v.end - addr)
            off = v.offset + (addr - v.start)
            if write and v.cow is not None:
                lo, hi = addr & ~(PAGE - 1), (addr + take + PAGE - 1) & ~(PAGE - 1)
                if v.cow.shared(v.offset + (lo - v.start), hi - lo):
                    self.unshare(lo, hi)            # the Sentry writes too: copy first
                    continue
            out.append(view[off:off + take])
            addr += take
            n -= take
        return out

    def iovecs(self, addr: int, n: int, write: bool) -> list[memoryview]:
        """memoryviews covering [addr, addr+n) of application memory (EFAULT if any byte is not accessible)."""
        if addr < 0 or addr + n > self.top:
            raise SyscallError(errno.EFAULT)
        return self._span(addr, n, write)

    def read(self, addr: int, n: int) -> bytes:
        if n == 0:
            return b""
        v = self._last
        if v is None or not v.start <= addr < v.end:
            v = self.find(addr)
        if v is not None and v.prot and addr + n <= v.end:
            off = v.offset + (addr - v.start)
            return self._map[off:off + n]
        return b"".join(self.iovecs(addr, n, False))

    def write(self, addr: int, data) -> None:
        n = len(data)
        if n == 0:
            return
        v = self._last
        if v is None or not v.start <= addr < v.end:
            v = self.find(addr)
        if v is not None and v.prot & PROT_WRITE and addr + n <= v.end and v.cow is None:
            off = v.offset + (addr - v.start)
            self.view[off:off + n] = data
            return
        pos = 0
        for mv in self.iovecs(addr, n, True):
            mv[:] = data[pos:pos + len(mv)]
            pos += len(mv)

    def cstring(self, addr: int, maxlen: int = 4096) -> bytes:
        """A NUL-terminated string; ENAMETOOLONG past `maxlen` bytes (as strncpy_from_user callers do)."""
        # Fast path: the NUL is within the mapping `addr` is in (a path in one VMA): one memchr
        # over the MemoryFile mapping, one slice of it (bytes, no memoryview in between).
        v = self._last
        if v is None or not v.start <= addr < v.end:
            v = self.find(addr)
        if v is not None and v.prot:
            off = v.offset + (addr - v.start)
            take = v.end - addr
            if take > maxlen + 1:
                take = maxlen + 1
            mp = self._map
            i = mp.find(b"\0", off, off + take)
            if i >= 0:
                return mp[off:i]
        out = b""
        find = self.memfile.map.find          # searches the mapping in place: no copy per probe
        while True:
            v = self.find(addr)
            if v is None or not v.prot:
                raise SyscallError(errno.EFAULT)
            take = min(v.end - addr, maxlen + 1 - len(out))
            off = v.offset + (addr - v.start)
            i = find(b"\0", off, off + take)
            if i >= 0:
                return out + self.view[off:i].tobytes()
            out += self.view[off:off + take].tobytes()
            addr += take
            if len(out) > maxlen:
                raise SyscallError(errno.ENAMETOOLONG)

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def write_u32(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    def read_struct(self, addr: int, st: struct.Struct) -> tuple:
        return st.unpack(self.read(addr, st.size))

    def write_struct(self, addr: int, st: struct.Struct, *values) -> None:
        self.write(addr, st.pack(*values))

    def read_iovec(self, addr: int, count: int) -> list[tuple[int, int]]:
        """An array of struct iovec: EINVAL past IOV_MAX or a negative total, as Linux."""
        if count < 0 or count > 1024:
            raise SyscallError(errno.EINVAL)
        raw = self.read(addr, 16 * count)
        out = []
        total = 0
        for i in range(count):
            base, ln = struct.unpack_from("<QQ", raw, 16 * i)
            if ln > 0x7FFFFFFFFFFFFFFF:
                raise SyscallError(errno.EINVAL)
            total += ln
            if total > 0x7FFFFFFFFFFFFFFF:
                raise SyscallError(errno.EINVAL)
            out.append((base, ln))
        return out
