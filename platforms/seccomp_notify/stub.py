"""The seccomp_notify platform's stub: the ptrace platform's stub with a different filter.

Same image and life (see platforms/ptrace/stub.py: a static ELF at STUB_BASE that unmaps
everything else, installs its filter and stops at `int3`; the Sentry injects mmap/munmap/
mprotect/clone at its `syscall` site), but its application threads run under PTRACE_CONT, not
PTRACE_SYSEMU, so the filter is what keeps every application syscall off the host:

    arch != x86_64 (int $0x80)           -> SECCOMP_RET_TRACE
    nr in FAST                           -> SECCOMP_RET_USER_NOTIF   (the fast path)
    anything else                        -> SECCOMP_RET_TRACE        (the slow path)

A notification blocks the thread in the host kernel until the Sentry answers with a return
value (never SECCOMP_USER_NOTIF_FLAG_CONTINUE); a RET_TRACE stop gives the Sentry the registers
and the Sentry resumes with orig_rax = -1, so the host skips the call.  The Sentry's own injected
calls at the site take the RET_TRACE stop too, and only there (the stub's main thread, in
rp_inject) does the Sentry let one run.  The filter is installed with
SECCOMP_FILTER_FLAG_NEW_LISTENER: the listener's number is in rax at the ready `int3`, and the
Sentry takes a copy with pidfd_getfd.

FAST: calls whose handler only reads the argument registers and sets the return value, chosen
from the syscall table conservatively.  Anything else the Sentry reads or writes at such a stop
(a signal frame needs rsp and every register) makes the platform convert the stop into a ptrace
stop first (seccomp_notify/notify_platform.py: `materialize`), so correctness does not depend on this
list: only speed does.
"""
from __future__ import annotations

import struct

from platforms.ptrace import stub as base
from platforms.ptrace.stub import (INT3, PAGE, PR_SET_NAME, PR_SET_NO_NEW_PRIVS, STUB_BASE, STUB_NAME, STUB_SIZE,
                                   SYSCALL, SYS_munmap, SYS_prctl, SYS_seccomp, TASK_TOP, _bpf, _syscall)

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_TRACE = 0x7FF00000
AUDIT_ARCH_X86_64 = 0xC000003E

FAST = (
    0, 1, 2, 3, 4, 5, 6, 7, 8,          # read write open close stat fstat lstat poll lseek
    16, 17, 18, 19, 20, 21, 24,         # ioctl pread64 pwrite64 readv writev access sched_yield
    32, 33, 39, 63, 72, 78, 79,         # dup dup2 getpid uname fcntl getdents getcwd
    87, 89, 96, 102, 104, 107, 108,     # unlink readlink gettimeofday getuid getgid geteuid getegid
    110, 186, 202, 217, 228,            # getppid gettid futex getdents64 clock_gettime
    257, 262, 263, 267, 292, 318, 332,  # openat newfstatat unlinkat readlinkat dup3 getrandom statx
)

_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06


def seccomp_filter() -> bytes:
    """BPF: int $0x80 and every number not in FAST to the tracer, FAST to the listener."""
    n = len(FAST)
    # 0 ld arch; 1 jeq x86_64 else trace; 2 ld nr; 3..3+n-1 jeq nr_i -> notif; 3+n trace; 4+n notif.
    trace, notif = 3 + n, 4 + n
    prog = [_bpf(_LD_W_ABS, 0, 0, 4),
            _bpf(_JEQ_K, 0, trace - 2, AUDIT_ARCH_X86_64),
            _bpf(_LD_W_ABS, 0, 0, 0)]
    for i, nr in enumerate(FAST):
        prog.append(_bpf(_JEQ_K, notif - (3 + i) - 1, 0, nr))
    prog.append(_bpf(_RET_K, 0, 0, SECCOMP_RET_TRACE))
    prog.append(_bpf(_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF))
    return b"".join(prog)


class NotifyStubImage:
    """The assembled stub (as platforms/ptrace/stub.StubImage, with this module's filter)."""

    def __init__(self) -> None:
        ehdr_size, phdr_size = 64, 56
        code_off = ehdr_size + phdr_size
        fprog_addr = name_addr = 0
        filt = seccomp_filter()
        for _ in range(2):
            code = _syscall(SYS_prctl, PR_SET_NAME, name_addr, 0, 0, 0)
            code += _syscall(SYS_munmap, 0, STUB_BASE)
            code += _syscall(SYS_munmap, STUB_BASE + STUB_SIZE, TASK_TOP - (STUB_BASE + STUB_SIZE))
            code += _syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            code += _syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, fprog_addr)
            code += INT3
            site_off = code_off + len(code)
            code += SYSCALL + INT3 + b"\xeb" + bytes([(-(len(SYSCALL) + len(INT3) + 2)) & 0xFF])
            data_off = (code_off + len(code) + 15) & ~15
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


STUB = NotifyStubImage()
assert STUB.site == base.STUB.site, "the injection site must be where rp_inject expects it"
