"""The Sentry's ELF loader (execve's binfmt_elf, in the Sentry).

Reads the executable through the VFS (so through the Gofer), maps each
PT_LOAD segment as private anonymous memory filled with the file's bytes
(the bss zeroed), loads the PT_INTERP interpreter at its own base when
there is one, and builds the initial stack exactly as Linux lays it out:

    argc | argv[] NULL | envp[] NULL | auxv (id, value)... AT_NULL | padding | strings, AT_RANDOM bytes

AT_SYSINFO_EHDR points at the Sentry's own vDSO (sentry/vdso), never the
host's: time is read from the TSC and a page the Sentry keeps current.
"""
from __future__ import annotations

import errno
import os
import struct

from sentry.errors import SyscallError
from sentry.mm.manager import PAGE, PROT_EXEC, PROT_READ, PROT_WRITE, page_down, page_up
from sentry.vfs.file import O_RDONLY

ELF_MAGIC = b"\x7fELF"
ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62
PT_LOAD, PT_INTERP, PT_PHDR, PT_GNU_STACK = 1, 3, 6, 0x6474E551
PIE_BASE = 0x555555554000
INTERP_BASE = 0x7FFFF7FC0000 - (0x7FFFFFFFF000 - 0x7F8000000000)   # below our stack, like ld.so's usual spot

AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_SYSINFO_EHDR, AT_MINSIGSTKSZ = 23, 25, 26, 31, 33, 51

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
MAX_ARG_STRLEN = 32 * PAGE


class ElfImage:
    __slots__ = ("entry", "phdr_addr", "phnum", "base", "end", "interp")

    def __init__(self) -> None:
        self.entry = self.phdr_addr = self.phnum = self.base = self.end = 0
        self.interp: bytes | None = None


def _pread(t, file, n: int, off: int) -> bytes:
    buf = bytearray(n)
    got = file.pread(t, [memoryview(buf)], off)
    return bytes(buf[:got])


def map_elf(t, mm, file, is_interp: bool = False) -> ElfImage:
    hdr = _pread(t, file, EHDR.size, 0)
    if len(hdr) < EHDR.size or hdr[:4] != ELF_MAGIC:
        raise SyscallError(errno.ENOEXEC)
    (ident, etype, machine, _ver, entry, phoff, _shoff, _flags, _ehsize, phentsize, phnum,
     _shentsize, _shnum, _shstrndx) = EHDR.unpack(hdr)
    if ident[4] != 2 or ident[5] != 1 or machine != EM_X86_64 or etype not in (ET_EXEC, ET_DYN):
        raise SyscallError(errno.ENOEXEC)
    if phentsize != PHDR.size or not 0 < phnum <= 65536 // PHDR.size:
        raise SyscallError(errno.ENOEXEC)
    raw = _pread(t, file, phnum * PHDR.size, phoff)
    if len(raw) < phnum * PHDR.size:
        raise SyscallError(errno.ENOEXEC)
    phdrs = [PHDR.unpack_from(raw, i * PHDR.size) for i in range(phnum)]
    img = ElfImage()
    loads = [p for p in phdrs if p[0] == PT_LOAD]
    if not loads:
        raise SyscallError(errno.ENOEXEC)
    for p in phdrs:
        if p[0] == PT_INTERP and not is_interp:
            if p[5] > 4096 or p[5] < 2:
                raise SyscallError(errno.ENOEXEC)
            img.interp = _pread(t, file, p[5], p[2]).rstrip(b"\0")
    lo = page_down(min(p[3] for p in loads))
    hi = page_up(max(p[3] + p[6] for p in loads))
    if etype == ET_DYN:
        if is_interp:
            bias = INTERP_BASE - lo
        elif img.interp is not None:
            bias = PIE_BASE - lo
        else:
            bias = PIE_BASE - lo          # static-pie
        # Reserve the whole span at once so segments land at fixed offsets from each other.
        bias = mm.mmap_anon(bias + lo, hi - lo, 0, 0x22) - lo
    else:
        bias = 0
    img.base = bias + lo if etype == ET_DYN else 0
    view = mm.memfile.view
    for ptype, pflags, off, vaddr, _paddr, filesz, memsz, _align in loads:
        if filesz > memsz or (off % PAGE) != (vaddr % PAGE):
            raise SyscallError(errno.ENOEXEC)
        start = page_down(vaddr + bias)
        end = page_up(vaddr + bias + memsz)
        if end <= start:
            continue
        prot = (PROT_READ if pflags & 4 else 0) | (PROT_WRITE if pflags & 2 else 0) | (PROT_EXEC if pflags & 1 else 0)
        mm.mmap_anon(start, end - start, prot, 0x32, name=file.dentry.path().decode("utf-8", "replace") if file.dentry else "")
        if file.dentry is not None:
            st = file.dentry.inode.stat()
            mm.find(start).source = (file, page_down(off), st.dev, st.ino)
            file.refs += 1                    # held by the mapping (released with the address space)
            mm.file_refs.append(file)
        if filesz:
            # Fill from the file straight into the MemoryFile (zero-copy for host-fd files).
            dst = vaddr + bias
            v = mm.find(dst)
            moff = v.offset + (dst - v.start)
            got = file.pread(t, [view[moff:moff + filesz]], off)
            if got < filesz:
                raise SyscallError(errno.EIO)
        img.end = max(img.end, vaddr + bias + memsz)
    img.entry = entry + bias
    for p in phdrs:
        if p[0] == PT_PHDR:
            img.phdr_addr = p[3] + bias
    if not img.phdr_addr:
        for p in loads:
            if p[2] <= phoff < p[2] + p[5]:
                img.phdr_addr = p[3] + bias + (phoff - p[2])
    img.phnum = phnum
    return img


def build_stack(t, mm, argv: list[bytes], envp: list[bytes], execfn: bytes, auxv: list[tuple[int, int]]) -> int:
    """Map the stack and lay out argc/argv/envp/auxv; return the initial rsp."""
    for s in argv + envp:
        if len(s) + 1 > MAX_ARG_STRLEN:
            raise SyscallError(errno.E2BIG)
    total = sum(len(s) + 1 for s in argv + envp) + len(execfn) + 1
    stack_limit = t.tg.rlimits[3][0]
    if total + 8 * (len(argv) + len(envp) + 2) > min(stack_limit // 4, 0x7FFFFFFF):
        raise SyscallError(errno.E2BIG)
    top = mm.stack_top
    size = max(8 << 20, page_up(total + 64 * 1024))
    mm.mmap_anon(top - size, size, PROT_READ | PROT_WRITE, 0x132, name="[stack]")
    sp = top
    strings = bytearray()

    def push_str(s: bytes) -> int:
        nonlocal sp
        sp -= len(s) + 1
        mm.write(sp, s + b"\0")
        return sp

    execfn_addr = push_str(execfn)
    env_ptrs = [push_str(s) for s in reversed(envp)][::-1]
    arg_ptrs = [push_str(s) for s in reversed(argv)][::-1]
    platform_addr = push_str(b"x86_64")
    sp &= ~15
    sp -= 16
    random_addr = sp
    mm.write(sp, os.urandom(16))
    aux = list(auxv) + [(AT_RANDOM, random_addr), (AT_EXECFN, execfn_addr), (AT_PLATFORM, platform_addr),
                        (AT_NULL, 0)]
    words = [len(argv)] + arg_ptrs + [0] + env_ptrs + [0]
    for k, v in aux:
        words += [k, v]
    sp -= 8 * len(words)
    sp &= ~15
    mm.write(sp, struct.pack(f"<{len(words)}Q", *words))
    del strings
    return sp


def min_sigstksz() -> int:
    """AT_MINSIGSTKSZ: the largest signal frame, as the host's kernel computes it (sentry/fpframe.py)."""
    from sentry.fpframe import min_sigstksz as size
    return size()


def load(t, mm, file, interp_file_opener, argv: list[bytes], envp: list[bytes], execfn: bytes,
         hwcap: int, hwcap2: int) -> tuple[int, int]:
    """Load `file` (and its interpreter) into `mm`; return (entry rip, initial rsp)."""
    img = map_elf(t, mm, file)
    entry = img.entry
    base = 0
    if img.interp is not None:
        ifile = interp_file_opener(img.interp)
        interp = map_elf(t, mm, ifile, is_interp=True)
        base = interp.base
        entry = interp.entry
    mm.set_brk_start(img.end)
    creds = t.tg.creds
    auxv = [(AT_PHDR, img.phdr_addr), (AT_PHENT, PHDR.size), (AT_PHNUM, img.phnum), (AT_PAGESZ, PAGE),
            (AT_BASE, base), (AT_FLAGS, 0), (AT_ENTRY, img.entry), (AT_UID, creds.ruid), (AT_EUID, creds.euid),
            (AT_GID, creds.rgid), (AT_EGID, creds.egid), (AT_SECURE, 0), (AT_HWCAP, hwcap),
            (AT_HWCAP2, hwcap2), (AT_CLKTCK, 100), (AT_MINSIGSTKSZ, min_sigstksz())]
    vdso = getattr(t.kernel, "vdso", None)
    ehdr = vdso.map_into(mm) if vdso is not None else 0
    if ehdr:
        auxv.append((AT_SYSINFO_EHDR, ehdr))      # our vDSO (sentry/vdso), never the host's
    sp = build_stack(t, mm, argv, envp, execfn, auxv)
    return entry, sp
