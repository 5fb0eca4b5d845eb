"""The host syscalls the KVM platform makes from the Sentry's thread, for its seccomp allowlist.

`KvmPlatform.syscall_filters()` returns these; sentry/confine.py merges them.  The VM, its
vCPUs and memslots are made before the Sentry confines itself only in part (a new address
space or thread later needs KVM_CREATE_VCPU and memslots), so ioctl is allowed with the KVM
requests the platform issues and nothing else; mmap of a vCPU's kvm_run page; the time-slice
timer (timer_settime on the one timer, its signal only to this thread); ppoll for host fds.
"""
from __future__ import annotations

from platforms.contract import Filters

KVMIO = 0xAE


def _ioc(direction: int, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | KVMIO << 8 | nr


_W, _R = 1, 2
KVM_REQUESTS = (
    (_ioc(0, 0x00, 0), "KVM_GET_API_VERSION"), (_ioc(0, 0x01, 0), "KVM_CREATE_VM"),
    (_ioc(0, 0x03, 0), "KVM_CHECK_EXTENSION"), (_ioc(0, 0x04, 0), "KVM_GET_VCPU_MMAP_SIZE"),
    (_ioc(_R | _W, 0x05, 8), "KVM_GET_SUPPORTED_CPUID"), (_ioc(0, 0x41, 0), "KVM_CREATE_VCPU"),
    (_ioc(_W, 0x46, 32), "KVM_SET_USER_MEMORY_REGION"), (_ioc(0, 0x80, 0), "KVM_RUN"),
    (_ioc(_R, 0x81, 144), "KVM_GET_REGS"), (_ioc(_R, 0x83, 312), "KVM_GET_SREGS"),
    (_ioc(_W, 0x84, 312), "KVM_SET_SREGS"), (_ioc(_W, 0x89, 8), "KVM_SET_MSRS"),
    (_ioc(_W, 0x90, 8), "KVM_SET_CPUID2"), (_ioc(_W, 0xA5, 4096), "KVM_SET_XSAVE"),
    (_ioc(_W, 0xA7, 392), "KVM_SET_XCRS"), (_ioc(_R, 0xCF, 4096), "KVM_GET_XSAVE2"),
)
ALWAYS = ((),)


def syscall_filters() -> Filters:
    return {
        "ioctl": tuple(((1, "request", "==", req, name),) for req, name in KVM_REQUESTS),
        "mmap": ALWAYS, "munmap": ALWAYS,
        "ppoll": ALWAYS, "rt_sigaction": ALWAYS, "rt_sigprocmask": ALWAYS,
        "timer_settime": ALWAYS, "timer_create": ALWAYS, "gettid": ALWAYS,
        "clock_gettime": ALWAYS,
    }
