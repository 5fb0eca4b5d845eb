"""The stub: the host process that is an application's address space.

A stub is a tiny static ELF, assembled here byte by byte, that the Sentry
writes into a memfd and `execveat`s (it is not a fork of the Python
interpreter: nothing of the Sentry's memory, fds or credentials leaks
into it).  It is linked at `STUB_BASE`, above every address an
application may use, and does only this:

    munmap everything below and above its own page   (host stack, vDSO, vvar)
    prctl(PR_SET_NAME, "runsc-py-stub")
    prctl(PR_SET_NO_NEW_PRIVS); seccomp(SET_MODE_FILTER, filter)
    int3                                   <- ready; rax = seccomp's result
  site:
    syscall                                <- the only place a syscall may run
    int3                                   <- result in rax
    jmp site

The seccomp filter kills the whole stub for any syscall whose instruction
pointer is not `site`, or whose number is not one the Sentry injects.
Under PTRACE_SYSEMU the kernel skips an application's syscall before
seccomp runs, so the filter judges only the Sentry's injected calls and
anything a stub would manage to do while resumed otherwise (defence in
depth, as in gVisor's ptrace platform).  The MemoryFile is the stub's
only fd (`STUB_MEMFD`); the Sentry maps its pages with
`mmap(MAP_SHARED|MAP_FIXED, STUB_MEMFD, offset)` injected at `site`.
"""
from __future__ import annotations

import struct

PAGE = 4096
STUB_BASE = 0x7F8000000000          # far below the host stack's randomisation range
STUB_SIZE = PAGE
TASK_TOP = 0x7FFFFFFFF000            # TASK_SIZE with 4-level paging
STUB_MEMFD = 3                       # the MemoryFile's fd number inside every stub

# Syscalls the Sentry injects at `site`.
SYS_mmap, SYS_mprotect, SYS_munmap, SYS_mremap, SYS_madvise = 9, 10, 11, 25, 28
SYS_clone, SYS_exit, SYS_gettid, SYS_exit_group = 56, 60, 186, 231
SYS_prctl, SYS_seccomp = 157, 317
INJECTABLE = (SYS_mmap, SYS_mprotect, SYS_munmap, SYS_mremap, SYS_madvise,
              SYS_clone, SYS_exit, SYS_gettid, SYS_exit_group)

AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ALLOW = 0x7FFF0000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_NAME = 15
STUB_NAME = b"runsc-py-stub"       # what `ps` on the host shows for an address space
SECCOMP_SET_MODE_FILTER = 1

_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_RET_K = 0x06


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def seccomp_filter(site_ip: int) -> bytes:
    """BPF: allow only INJECTABLE syscalls issued from `site_ip` (the address after `syscall`)."""
    n = len(INJECTABLE)
    # Layout: 0 ld arch; 1 jeq; 2 ld ip_lo; 3 jeq; 4 ld ip_hi; 5 jeq; 6 ld nr;
    # 7..7+n-1 jeq nr_i; 7+n kill; 8+n allow.
    kill = 7 + n
    allow = 8 + n
    prog = [
        _bpf(_BPF_LD_W_ABS, 0, 0, 4),
        _bpf(_BPF_JEQ_K, 0, kill - 2, AUDIT_ARCH_X86_64),
        _bpf(_BPF_LD_W_ABS, 0, 0, 8),
        _bpf(_BPF_JEQ_K, 0, kill - 4, site_ip & 0xFFFFFFFF),
        _bpf(_BPF_LD_W_ABS, 0, 0, 12),
        _bpf(_BPF_JEQ_K, 0, kill - 6, site_ip >> 32),
        _bpf(_BPF_LD_W_ABS, 0, 0, 0),
    ]
    for i, nr in enumerate(INJECTABLE):
        here = 7 + i
        prog.append(_bpf(_BPF_JEQ_K, allow - here - 1, 0, nr))
    prog.append(_bpf(_BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS))
    prog.append(_bpf(_BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return b"".join(prog)


def _mov_imm64(reg: str, value: int) -> bytes:
    # REX.W + B8+r imm64 ; r8-r15 need REX.B
    regs = {"rax": (0x48, 0xB8), "rdx": (0x48, 0xBA), "rsi": (0x48, 0xBE),
            "rdi": (0x48, 0xBF), "r10": (0x49, 0xBA), "r8": (0x49, 0xB8)}
    rex, op = regs[reg]
    return bytes([rex, op]) + struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF)


def _syscall(nr: int, *args: int) -> bytes:
    code = _mov_imm64("rax", nr)
    for reg, value in zip(("rdi", "rsi", "rdx", "r10", "r8"), args):
        code += _mov_imm64(reg, value)
    return code + b"\x0f\x05"


SYSCALL = b"\x0f\x05"
INT3 = b"\xcc"


class StubImage:
    """The assembled stub: ELF bytes and the addresses the Sentry needs."""

    def __init__(self) -> None:
        ehdr_size, phdr_size = 64, 56
        code_off = ehdr_size + phdr_size
        # The data (sock_fprog + filter) follows the code; assemble twice so
        # addresses that depend on code length are right.
        fprog_addr = 0
        name_addr = 0
        for _ in range(2):
            code = b""
            code += _syscall(SYS_prctl, PR_SET_NAME, name_addr, 0, 0, 0)
            code += _syscall(SYS_munmap, 0, STUB_BASE)
            code += _syscall(SYS_munmap, STUB_BASE + STUB_SIZE, TASK_TOP - (STUB_BASE + STUB_SIZE))
            code += _syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            code += _syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, fprog_addr)
            code += INT3
            site_off = code_off + len(code)
            code += SYSCALL + INT3 + b"\xeb" + bytes([(-(len(SYSCALL) + len(INT3) + 2)) & 0xFF])
            data_off = (code_off + len(code) + 15) & ~15
            filt = seccomp_filter(STUB_BASE + site_off + len(SYSCALL))
            fprog_addr = STUB_BASE + data_off
            filter_addr = fprog_addr + 16
            name_addr = filter_addr + len(filt)
        self.site = STUB_BASE + site_off
        self.entry = STUB_BASE + code_off
        body = code.ljust(data_off - code_off, b"\x90")
        data = struct.pack("<HxxxxxxQ", len(filt) // 8, filter_addr) + filt + STUB_NAME + b"\0"
        image_len = code_off + len(body) + len(data)
        assert image_len <= STUB_SIZE
        ehdr = struct.pack("<4sBBBB8xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0,
                           2, 62, 1, self.entry, ehdr_size, 0, 0, ehdr_size, phdr_size, 1, 64, 0, 0)
        phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, STUB_BASE, STUB_BASE, image_len, image_len, PAGE)
        self.elf = ehdr + phdr + body + data


STUB = StubImage()
