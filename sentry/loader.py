"""The Sentry's ELF loader (execve's binfmt_elf, in the Sentry).

Reads the executable through the VFS (so through the Gofer), checks its
headers as binfmt_elf does (errnos before the point of no return, SIGSEGV
after it: see `load`), maps each
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
from sentry.vfs.file import O_RDONLY, hold

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
PATH_MAX = 4096
MAX_OFFSET = (1 << 63) - 1              # the largest file position (loff_t)
MASK64 = (1 << 64) - 1


class ExecFault(Exception):
    """A failure after execve's point of no return (on Linux the old image is already gone): the
    process dies with SIGSEGV (bprm_execve's force_fatal_sig) instead of seeing an errno."""


class ElfFile:
    """An executable's headers, read and checked: what binfmt_elf does before begin_new_exec."""
    __slots__ = ("file", "etype", "entry", "phoff", "phnum", "phdrs", "interp")


class ElfImage:
    __slots__ = ("entry", "phdr_addr", "phnum", "base", "end", "interp")

    def __init__(self) -> None:
        self.entry = self.phdr_addr = self.phnum = self.base = self.end = 0
        self.interp: bytes | None = None


def _pread(t, file, n: int, off: int) -> bytes:
    if off + n > MAX_OFFSET:              # rw_verify_area: a position past loff_t
        raise SyscallError(errno.EINVAL)
    buf = bytearray(n)
    got = file.pread(t, [memoryview(buf)], off)
    return bytes(buf[:got])


def read_elf(t, file, is_interp: bool = False) -> ElfFile:
    """Read and check the ELF header, the program headers and (for a program) PT_INTERP, with
    binfmt_elf's errnos: ENOEXEC for a malformed header or unreadable program headers, EINVAL
    or EIO for an interpreter path that cannot be read, ENOEXEC if it is not NUL-terminated.
    For the interpreter: EIO if its header cannot be read whole, ELIBBAD if it is not an x86-64
    ELF file or its program headers are bad (its type is checked when it is mapped)."""
    bad = errno.ELIBBAD if is_interp else errno.ENOEXEC
    hdr = _pread(t, file, EHDR.size, 0)
    if len(hdr) < EHDR.size:
        raise SyscallError(errno.EIO if is_interp else errno.ENOEXEC)
    (ident, etype, machine, _ver, entry, phoff, _shoff, _flags, _ehsize, phentsize, phnum,
     _shentsize, _shnum, _shstrndx) = EHDR.unpack(hdr)
    if hdr[:4] != ELF_MAGIC or ident[4] != 2 or ident[5] != 1 or machine != EM_X86_64:
        raise SyscallError(bad)
    if not is_interp and etype not in (ET_EXEC, ET_DYN):
        raise SyscallError(errno.ENOEXEC)
    if phentsize != PHDR.size or not 0 < phnum * PHDR.size <= 65536:
        raise SyscallError(bad)
    try:                                  # load_elf_phdrs: any failure to read them is "bad"
        raw = _pread(t, file, phnum * PHDR.size, phoff)
    except SyscallError:
        raw = b""
    if len(raw) < phnum * PHDR.size:
        raise SyscallError(bad)
    elf = ElfFile()
    elf.file, elf.etype, elf.entry, elf.phoff, elf.phnum, elf.interp = file, etype, entry, phoff, phnum, None
    elf.phdrs = [PHDR.unpack_from(raw, i * PHDR.size) for i in range(phnum)]
    for p in elf.phdrs:
        if p[0] == PT_INTERP and not is_interp:          # the first one only, as Linux
            if p[5] > PATH_MAX or p[5] < 2:
                raise SyscallError(errno.ENOEXEC)
            path = _pread(t, file, p[5], p[2])
            if len(path) < p[5]:
                raise SyscallError(errno.EIO)
            if path[-1] != 0:
                raise SyscallError(errno.ENOEXEC)
            elf.interp = path.split(b"\0", 1)[0]
            break
    return elf


def _segments(mm, elf: ElfFile) -> tuple[list, int, int]:
    """The PT_LOAD headers, checked as elf_load/elf_map check them (each failure is past the
    point of no return), and the page span [lo, hi) they cover before relocation."""
    loads = [p for p in elf.phdrs if p[0] == PT_LOAD]
    if elf.etype not in (ET_EXEC, ET_DYN):  # an interpreter's type (load_elf_interp)
        raise ExecFault(errno.EINVAL)
    if not loads:                         # nothing to run (ET_DYN: total_mapping_size is 0)
        raise ExecFault(errno.EINVAL)
    for _t, _f, off, vaddr, _pa, filesz, memsz, _al in loads:
        if filesz > memsz or memsz > mm.top or vaddr + memsz > mm.top or off + filesz > MAX_OFFSET \
                or off % PAGE != vaddr % PAGE:
            raise ExecFault(errno.EINVAL)
    return loads, page_down(min(p[3] for p in loads)), page_up(max(p[3] + p[6] for p in loads))


def map_elf(t, mm, elf: ElfFile, is_interp: bool = False) -> ElfImage:
    """Map the PT_LOAD segments of a checked ELF file into `mm` (past the point of no return:
    every failure is an ExecFault).  Every page lands inside the platform's user address space
    [mm.bottom, mm.top): never over the stub's pages, never at a non-canonical address."""
    file = elf.file
    img = ElfImage()
    img.interp = elf.interp
    loads, lo, hi = _segments(mm, elf)
    try:
        if elf.etype == ET_DYN:
            bias = (INTERP_BASE if is_interp else PIE_BASE) - lo
            if hi - lo > mm.top - mm.bottom:
                raise ExecFault(errno.ENOMEM)
            # Reserve the whole span at once so segments land at fixed offsets from each other.
            bias = mm.mmap_anon(bias + lo, hi - lo, 0, 0x22) - lo
        else:
            bias = 0
        if lo + bias < mm.bottom or hi + bias > mm.top:
            raise ExecFault(errno.ENOMEM)
        img.base = bias + lo if elf.etype == ET_DYN else 0
        view = mm.memfile.view
        name = file.dentry.path().decode("utf-8", "replace") if file.dentry else ""
        for _ptype, pflags, off, vaddr, _paddr, filesz, memsz, _align in loads:
            start = page_down(vaddr + bias)
            end = page_up(vaddr + bias + memsz)
            if end <= start:
                continue
            prot = (PROT_READ if pflags & 4 else 0) | (PROT_WRITE if pflags & 2 else 0) | (PROT_EXEC if pflags & 1 else 0)
            mm.mmap_anon(start, end - start, prot, 0x32, name=name)
            if file.dentry is not None:
                st = file.dentry.inode.stat()
                mm.find(start).source = (file, page_down(off), st.dev, st.ino)
                hold(file)                        # held by the mapping (released with the address space)
                mm.file_refs.append(file)
            if filesz:
                # Fill from the file straight into the MemoryFile (zero-copy for host-fd files).  A
                # file shorter than p_filesz leaves the rest zero (Linux maps those pages and
                # faults only if they are touched).
                dst = vaddr + bias
                v = mm.find(dst)
                moff = v.offset + (dst - v.start)
                file.pread(t, [view[moff:moff + filesz]], off)
            img.end = max(img.end, vaddr + bias + memsz)
    except SyscallError as e:
        raise ExecFault(e.errno) from e
    except MemoryError as e:
        raise ExecFault(errno.ENOMEM) from e
    img.entry = (elf.entry + bias) & MASK64           # unsigned long arithmetic: a bad entry faults
    for p in elf.phdrs:
        if p[0] == PT_PHDR:
            img.phdr_addr = (p[3] + bias) & MASK64
    if not img.phdr_addr:
        for p in loads:
            if p[2] <= elf.phoff < p[2] + p[5]:
                img.phdr_addr = (p[3] + bias + (elf.phoff - p[2])) & MASK64
    img.phnum = elf.phnum
    return img


def build_stack(t, mm, argv: list[bytes], envp: list[bytes], execfn: bytes, auxv: list[tuple[int, int]]) -> int:
    """Map the stack and lay out argc/argv/envp/auxv; return the initial rsp."""
    total = check_args(t, argv, envp, execfn)
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


def check_args(t, argv: list[bytes], envp: list[bytes], execfn: bytes) -> int:
    """E2BIG as copy_strings checks it (before the point of no return); returns the bytes the
    strings take on the stack."""
    for s in argv + envp:
        if len(s) + 1 > MAX_ARG_STRLEN:
            raise SyscallError(errno.E2BIG)
    total = sum(len(s) + 1 for s in argv + envp) + len(execfn) + 1
    stack_limit = t.tg.rlimits[3][0]
    if total + 8 * (len(argv) + len(envp) + 2) > min(stack_limit // 4, 0x7FFFFFFF):
        raise SyscallError(errno.E2BIG)
    return total


def min_sigstksz(t) -> int:
    """AT_MINSIGSTKSZ: the largest signal frame, as Linux computes it for the XSAVE layout the
    application sees (sentry/fpframe.py)."""
    from sentry.fpframe import for_platform
    return for_platform(t.kernel.platform).min_sigstksz()


def load(t, mm, file, interp_file_opener, argv: list[bytes], envp: list[bytes], execfn: bytes,
         hwcap: int, hwcap2: int) -> tuple[int, int]:
    """Load `file` (and its interpreter) into `mm`; return (entry rip, initial rsp).

    Errors found while reading and checking the headers (of the program and its interpreter)
    and the arguments are errnos (SyscallError); anything failing after that, while mapping,
    is an ExecFault: the caller kills the process with SIGSEGV, as Linux does past
    begin_new_exec."""
    check_args(t, argv, envp, execfn)
    elf = read_elf(t, file)
    ielf = None
    if elf.interp is not None:
        ielf = read_elf(t, interp_file_opener(elf.interp), is_interp=True)
    img = map_elf(t, mm, elf)
    entry = img.entry
    base = 0
    if ielf is not None:
        interp = map_elf(t, mm, ielf, is_interp=True)
        base = interp.base
        entry = interp.entry
    try:
        mm.set_brk_start(img.end)
        creds = t.tg.creds
        auxv = [(AT_PHDR, img.phdr_addr), (AT_PHENT, PHDR.size), (AT_PHNUM, img.phnum), (AT_PAGESZ, PAGE),
                (AT_BASE, base), (AT_FLAGS, 0), (AT_ENTRY, img.entry), (AT_UID, creds.ruid), (AT_EUID, creds.euid),
                (AT_GID, creds.rgid), (AT_EGID, creds.egid), (AT_SECURE, 0), (AT_HWCAP, hwcap),
                (AT_HWCAP2, hwcap2), (AT_CLKTCK, 100), (AT_MINSIGSTKSZ, min_sigstksz(t))]
        vdso = t.kernel.vdso
        ehdr = vdso.map_into(mm) if vdso is not None else 0
        if ehdr:
            auxv.append((AT_SYSINFO_EHDR, ehdr))      # our vDSO (sentry/vdso), never the host's
        sp = build_stack(t, mm, argv, envp, execfn, auxv)
    except SyscallError as e:
        raise ExecFault(e.errno) from e
    except MemoryError as e:
        raise ExecFault(errno.ENOMEM) from e
    return entry, sp
