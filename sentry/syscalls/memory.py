"""Memory syscalls: brk, mmap, munmap, mprotect, madvise.  The MemoryManager does the work."""
from __future__ import annotations

import errno
import os

from sentry.errors import SyscallError
from sentry.mm.manager import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED,
                               MAP_SHARED_VALIDATE, PAGE, PROT_EXEC, PROT_READ, PROT_WRITE, page_up)
from sentry.syscalls.args import s32, s64, u32
from sentry.syscalls.registry import Support, syscall
from sentry.vfs.file import hold

PROT_GROWSDOWN, PROT_GROWSUP = 0x01000000, 0x02000000
MAP_TYPE = 0x0F
# Flags MAP_SHARED_VALIDATE accepts (LEGACY_MAP_MASK plus FIXED_NOREPLACE).
_KNOWN_FLAGS = 0x3 | 0x10 | 0x20 | 0x100 | 0x800 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000 | 0x100000 | 0x80000


@syscall("brk")
def brk(t, addr):
    """brk(2): returns the new break, or the old one on failure (RLIMIT_DATA and RLIMIT_AS too)."""
    mm = t.mm
    grow = page_up(addr) - page_up(mm.brk_cur) if addr > mm.brk_cur else 0
    if grow:
        try:
            t.kernel.charge_memory(grow)
        except SyscallError:
            return mm.brk_cur
        data_limit, as_limit = t.tg.rlimits[2][0], t.tg.rlimits[9][0]
        if (as_limit != 0xFFFFFFFFFFFFFFFF and mm.total_mapped() + grow > as_limit) or \
                (data_limit != 0xFFFFFFFFFFFFFFFF and addr - mm.brk_start > data_limit):
            return mm.brk_cur
    return mm.brk(addr)


@syscall("mmap", Support.PARTIAL, "anonymous and file mappings; MAP_SHARED files are coherent with read/write and "
         "other mappings inside the sandbox (host-side readers see dirty pages after msync/munmap); read-only "
         "MAP_PRIVATE files share the sandbox's page cache copy-on-write, writable ones are copied at mmap time "
         "(either way later writes to the file are not seen); a shared file mapping cannot grow past twice its "
         "first size (ENOMEM); more than the 16 TiB memory file holds is ENOMEM")
def mmap(t, addr, length, prot, flags, fd, offset):
    """mmap(2)."""
    mm = t.mm
    prot, flags, fd = s32(prot) & 0xFFFFFFFF, s32(flags) & 0xFFFFFFFF, s32(fd)
    mtype = flags & MAP_TYPE
    if mtype not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
        raise SyscallError(errno.EINVAL)
    if mtype == MAP_SHARED_VALIDATE and flags & ~_KNOWN_FLAGS:
        raise SyscallError(errno.EOPNOTSUPP)
    if length == 0 or offset % PAGE:
        raise SyscallError(errno.EINVAL)
    if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_GROWSDOWN | PROT_GROWSUP):
        raise SyscallError(errno.EINVAL)
    plen = page_up(length)
    if plen == 0 or plen > mm.top:
        raise SyscallError(errno.ENOMEM)
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        if addr % PAGE:
            raise SyscallError(errno.EINVAL)
        if addr + plen > mm.top or addr < mm.bottom:
            raise SyscallError(errno.ENOMEM if addr + plen > mm.top else errno.EPERM)
    elif addr + plen > mm.top:
        addr = 0
    prot &= PROT_READ | PROT_WRITE | PROT_EXEC
    as_limit = t.tg.rlimits[9][0]
    if as_limit != 0xFFFFFFFFFFFFFFFF and mm.total_mapped() + plen > as_limit:
        raise SyscallError(errno.ENOMEM)          # RLIMIT_AS
    t.kernel.charge_memory(plen)
    if flags & MAP_ANONYMOUS:
        return mm.mmap_anon(addr, plen, prot, flags)
    f = t.fds.get(fd)
    return map_file(t, f, addr, plen, length, prot, flags, offset)


def map_file(t, f, addr: int, plen: int, length: int, prot: int, flags: int, offset: int) -> int:
    """A file mapping.  MAP_PRIVATE: the page cache's pages of the file, copy-on-write (read-only
    mappings), or the file's bytes copied into fresh memory (writable ones); later writes to the
    file are not seen, a documented approximation.  MAP_SHARED: the file's shared pages
    (sentry/mm/filemap.py), coherent with read/write."""
    from sentry.mm.filemap import mapping_for
    from sentry.vfs.devfs import MemDeviceFile
    mm = t.mm
    if isinstance(f, MemDeviceFile) and f.kind == b"zero":
        return mm.mmap_anon(addr, plen, prot, flags)
    if offset >> 12 > ((1 << 63) - 1 - plen) >> 12:
        raise SyscallError(errno.EOVERFLOW)       # past the largest file offset (file_mmap_ok)
    if not f.readable:
        raise SyscallError(errno.EACCES)
    d = f.dentry
    if d is None or d.inode.is_dir or (d.inode.mode & 0o170000) != 0o100000 or not hasattr(f, "pread"):
        raise SyscallError(errno.ENODEV)
    if d.mount is not None and "noexec" in d.mount.flags and prot & PROT_EXEC:
        raise SyscallError(errno.EPERM)
    shared = (flags & MAP_TYPE) != MAP_PRIVATE
    if shared and prot & PROT_WRITE and not f.writable:
        raise SyscallError(errno.EACCES)
    name = d.path().decode("utf-8", "replace")
    if shared:
        fm = mapping_for(mm.memfile, f, offset + plen)
        if fm is None:
            raise SyscallError(errno.ENODEV)
        if offset + plen > fm.capacity:
            raise SyscallError(errno.ENOMEM)
        seals = getattr(fm.inode, "seals", 0)
        if seals & 0x8 and prot & PROT_WRITE:
            raise SyscallError(errno.EPERM)                   # F_SEAL_WRITE
        maxprot = 7 if f.writable and not seals & 0x8 else 5  # a read-only fd never becomes writable
        s = d.inode.stat()
        start = mm.mmap_backing(addr, plen, prot, flags, fm.backing, offset, name, maxprot,
                                (f, offset, s.dev, s.ino))
        mm.set_eof(start, start + plen, start + max(0, s.size - offset))
        return start
    s = d.inode.stat()
    start = _map_private_cached(t, f, s, addr, plen, prot, flags, offset, name)
    if start is None:                # not cacheable: the file's bytes copied into fresh memory
        start = mm.mmap_anon(addr, plen, prot, (flags & ~MAP_TYPE) | MAP_PRIVATE, name=name)
        moff = mm.find(start).offset
        f.pread(t, [mm.memfile.view[moff:moff + plen]], offset)
    mm.find(start).source = (f, offset, s.dev, s.ino)
    mm.file_refs.append(hold(f))     # the mapping keeps the file open (put with the address space)
    mm.set_eof(start, start + plen, start + max(0, s.size - offset))
    return start


def _map_private_cached(t, f, s, addr: int, plen: int, prot: int, flags: int, offset: int, name: str):
    """MAP_PRIVATE of a file from the page cache (sentry/mm/pagecache.py): the file's pages shared
    copy-on-write, read from the file only the first time any mapping needs them; whole pages past
    the end of the file are anonymous (and SIGBUS).  None when the file is not cacheable, or when
    the mapping is writable: a data segment is written at once (relocations), and here a write
    fault per page (a ptrace stop and a remap) costs far more than copying the pages now."""
    from sentry.mm.pagecache import cache_of
    if prot & PROT_WRITE:
        return None
    mm = t.mm
    pc = cache_of(t.kernel, mm.memfile)
    cf = pc.get(f.dentry.inode, s)
    if cf is None or offset >= cf.length:
        return None
    file_len = min(plen, cf.length - offset)
    before = cf.loaded_bytes
    cf.load(t, f, offset, file_len)
    pc.loaded(cf, before)
    start = mm._place(addr, plen, flags)
    if mm.mmap_cow(start, file_len, prot, cf.range, cf.range.offset + offset, name) is None:
        return None
    if plen > file_len:
        mm.mmap_anon(start + file_len, plen - file_len, prot, MAP_FIXED | MAP_PRIVATE, name=name)
    return start


@syscall("munmap")
def munmap(t, addr, length):
    """munmap(2)."""
    t.mm.munmap(addr, length)
    return 0


@syscall("mprotect")
def mprotect(t, addr, length, prot):
    """mprotect(2)."""
    t.mm.mprotect(addr, length, s32(prot) & 0xFFFFFFFF)
    return 0


MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED = 0, 1, 2, 3, 4
MADV_FREE, MADV_REMOVE = 8, 9
_ADVICE = {0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 100, 101, 102}


@syscall("madvise", Support.PARTIAL, "MADV_DONTNEED/MADV_FREE zero private anonymous pages; other advice accepted")
def madvise(t, addr, length, advice):
    """madvise(2)."""
    advice = s32(advice)
    if addr % PAGE or advice not in _ADVICE or s64(length) < 0:
        raise SyscallError(errno.EINVAL)
    end = page_up(addr + length)
    if end == addr:
        return 0
    mm = t.mm
    mm.require_mapped(addr, end)
    if advice in (MADV_DONTNEED, MADV_FREE):
        # Pages shared copy-on-write since a fork: this side gets fresh zero pages of its own.
        mm.unshare(addr, end, copy=False)
        for v in mm._overlapping(addr, end):
            if not v.shared:
                s, e = max(v.start, addr), min(v.end, end)
                off = v.offset + (s - v.start)
                mm.memfile.zero(off, e - s)
                if v.source is not None and advice == MADV_DONTNEED:
                    # A private file page drops its changes: the file's bytes come back.
                    f, foff = v.source[0], v.source[1] + (s - v.start)
                    f.pread(t, [mm.memfile.view[off:off + (e - s)]], foff)
    return 0


MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4


@syscall("mremap", Support.PARTIAL, "shrink, grow in place, MREMAP_MAYMOVE, MREMAP_FIXED (pages move without copying); DONTUNMAP EINVAL")
def mremap(t, addr, old_size, new_size, flags, new_addr):
    """mremap(2)."""
    flags = u32(flags)
    if addr % PAGE or flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP):
        raise SyscallError(errno.EINVAL)
    if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
        raise SyscallError(errno.EINVAL)
    if flags & MREMAP_DONTUNMAP:
        raise SyscallError(errno.EINVAL)
    if new_size == 0 or old_size == 0:
        raise SyscallError(errno.EINVAL)
    as_limit = t.tg.rlimits[9][0]
    if as_limit != 0xFFFFFFFFFFFFFFFF and new_size > old_size and \
            t.mm.total_mapped() + page_up(new_size) - page_up(old_size) > as_limit:
        raise SyscallError(errno.ENOMEM)
    if new_size > old_size:
        t.kernel.charge_memory(page_up(new_size) - page_up(old_size))
    fixed = None
    if flags & MREMAP_FIXED:
        if new_addr % PAGE:
            raise SyscallError(errno.EINVAL)
        fixed = new_addr
    return t.mm.mremap(addr, old_size, new_size, bool(flags & MREMAP_MAYMOVE), fixed)


@syscall("msync", Support.PARTIAL, "writes shared file mappings back to the host file (whole mapped span)")
def msync(t, addr, length, flags):
    """msync(2)."""
    flags = u32(flags)
    if addr % PAGE or flags & ~7 or (flags & 1 and flags & 4):
        raise SyscallError(errno.EINVAL)
    end = page_up(addr + length)
    t.mm.require_mapped(addr, end)
    done = set()
    for v in t.mm._overlapping(addr, end):
        cb = v.backing.on_release
        fm = getattr(cb, "__self__", None)
        if fm is not None and id(fm) not in done:
            done.add(id(fm))
            fm.writeback()
    return 0


@syscall("mincore")
def mincore(t, addr, length, vec):
    """mincore(2): every mapped page is resident (the MemoryFile never swaps from our view)."""
    if addr % PAGE:
        raise SyscallError(errno.EINVAL)
    end = page_up(addr + length)
    t.mm.require_mapped(addr, end)
    t.mm.write(vec, b"\x01" * ((end - addr) // PAGE))
    return 0


@syscall("fadvise64")
def fadvise64(t, fd, offset, length, advice):
    """fadvise64(2): advice is accepted and ignored; ESPIPE on pipes, EINVAL on bad advice."""
    from sentry.pipe import PipeFile
    f = t.fds.get(s32(fd))
    if isinstance(f, PipeFile):
        raise SyscallError(errno.ESPIPE)
    if s32(advice) not in range(0, 6) or s64(length) < 0:
        raise SyscallError(errno.EINVAL)
    return 0


MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_HUGETLB, MFD_NOEXEC_SEAL, MFD_EXEC = 1, 2, 4, 8, 0x10
F_SEAL_SEAL = 0x1


@syscall("memfd_create")
def memfd_create(t, name_addr, flags):
    """memfd_create(2): an unlinked tmpfs file of the sandbox (never a host memfd)."""
    from sentry.vfs import tmpfs
    from sentry.vfs.inode import Dentry
    flags = u32(flags)
    if flags & ~(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_NOEXEC_SEAL | MFD_EXEC) or flags & 0xFC000000:
        raise SyscallError(errno.EINVAL)
    if flags & MFD_HUGETLB:
        raise SyscallError(errno.EINVAL)
    if flags & MFD_NOEXEC_SEAL and flags & MFD_EXEC:
        raise SyscallError(errno.EINVAL)
    name = t.mm.cstring(name_addr, 255)      # longer than 249 + "memfd:" is EINVAL on Linux
    if len(name) > 249:
        raise SyscallError(errno.EINVAL)
    k = t.kernel
    fs = k.memfd_fs
    if fs is None:
        fs, _root = tmpfs.make_tmpfs(0x30, {})
        k.memfd_fs = fs
    c = t.tg.creds
    mode = 0o666 if flags & MFD_NOEXEC_SEAL else 0o777
    inode = tmpfs.TmpFile(fs, mode, c.fsuid, c.fsgid)
    inode.memfd = True
    if not flags & MFD_ALLOW_SEALING:
        inode.seals = F_SEAL_SEAL
    elif flags & MFD_NOEXEC_SEAL:
        inode.seals = 0x20                     # F_SEAL_EXEC
    d = Dentry(b"memfd:" + name + b" (deleted)", None, inode, None)
    f = tmpfs.TmpFileDescription(2 | 0o100000, d, inode)
    return t.fds.install(f, bool(flags & MFD_CLOEXEC), limit=t.tg.rlimits[7][0])
