"""Miscellaneous syscalls: uname, getrandom, arch_prctl, scheduling and sysinfo."""
from __future__ import annotations

import errno
import os
import struct
import time as _time

from sentry.hostcpu import sandbox_cpus
from sentry.errors import SyscallError
from sentry.syscalls.args import s32, u32
from sentry.syscalls import registry
from sentry.syscalls.registry import Support, syscall

UTS_LEN = 65
# What the sandbox reports as its kernel: the release whose ABI the syscall table implements.
UNAME_RELEASE = registry.LINUX_RELEASE.encode()
UNAME_VERSION = registry.LINUX_VERSION.encode()


@syscall("uname")
def uname(t, buf):
    """uname(2): the sandbox's kernel and hostname, never the host's."""
    k = t.tg.uts or t.kernel               # its UTS namespace (syscalls/namespaces.py)
    fields = (b"Linux", k.hostname, UNAME_RELEASE, UNAME_VERSION, b"x86_64", k.domainname)
    t.mm.write(buf, b"".join(f[:UTS_LEN - 1].ljust(UTS_LEN, b"\0") for f in fields))
    return 0


GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4


@syscall("getrandom")
def getrandom(t, buf, count, flags):
    """getrandom(2)."""
    flags = u32(flags)
    if flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) or (flags & GRND_INSECURE and flags & GRND_RANDOM):
        raise SyscallError(errno.EINVAL)
    count = min(count, 0x1FFFFFF)
    if count == 0:
        return 0
    views = t.mm.iovecs(buf, count, True)
    for v in views:
        v[:] = os.urandom(len(v))
    return count


ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
ARCH_GET_CPUID, ARCH_SET_CPUID = 0x1011, 0x1012


@syscall("arch_prctl", Support.PARTIAL, "ARCH_SET_FS/GET_FS/SET_GS/GET_GS, ARCH_GET_CPUID; CPUID faulting unsupported (ENODEV)")
def arch_prctl(t, code, addr):
    """arch_prctl(2)."""
    regs = t.ctx.regs
    code = s32(code)
    if code == ARCH_SET_FS:
        if addr >= t.mm.top:
            raise SyscallError(errno.EPERM)
        regs.fs_base = addr
        return 0
    if code == ARCH_SET_GS:
        if addr >= t.mm.top:
            raise SyscallError(errno.EPERM)
        regs.gs_base = addr
        return 0
    if code == ARCH_GET_FS:
        t.mm.write_u64(addr, regs.fs_base)
        return 0
    if code == ARCH_GET_GS:
        t.mm.write_u64(addr, regs.gs_base)
        return 0
    if code == ARCH_GET_CPUID:
        return 1
    if code == ARCH_SET_CPUID:
        raise SyscallError(errno.ENODEV)
    raise SyscallError(errno.EINVAL)


@syscall("sched_yield")
def sched_yield(t):
    """sched_yield(2)."""
    return 0


@syscall("sched_getaffinity")
def sched_getaffinity(t, pid, size, mask):
    """sched_getaffinity(2): the CPUs the sandbox may use; returns the bytes written."""
    pid = s32(pid)
    if pid < 0:
        raise SyscallError(errno.EINVAL)
    if pid != 0 and pid not in t.kernel.tasks:
        raise SyscallError(errno.ESRCH)
    cpus = sandbox_cpus()
    nbytes = ((os.cpu_count() or 1) + 63) // 64 * 8
    if size < nbytes or size & 7:
        raise SyscallError(errno.EINVAL)
    bits = 0
    for c in cpus:
        bits |= 1 << c
    t.mm.write(mask, bits.to_bytes(nbytes, "little"))
    return nbytes


SYSINFO = struct.Struct("<qQQQQQQQQQHHxxxxQQI")


@syscall("sysinfo")
def sysinfo(t, info):
    """sysinfo(2): the sandbox's uptime and process count; memory from the host."""
    k = t.kernel
    uptime = int(_time.monotonic() - k.boot_monotonic)
    page = os.sysconf("SC_PAGE_SIZE")
    total = os.sysconf("SC_PHYS_PAGES") * page
    free = os.sysconf("SC_AVPHYS_PAGES") * page
    data = SYSINFO.pack(uptime, 0, 0, 0, total, free, 0, 0, 0, 0, len(k.tasks), 0, 0, 0, 1)
    t.mm.write(info, data.ljust(112, b"\0"))
    return 0


from sentry.syscalls.registry import error_syscall  # noqa: E402

error_syscall("rseq", errno.ENOSYS, "restartable sequences are not supported; glibc and musl fall back")


@syscall("sched_setaffinity", Support.PARTIAL, "validated and accepted; the Sentry schedules on the host's CPUs")
def sched_setaffinity(t, pid, size, mask):
    """sched_setaffinity(2)."""
    pid = s32(pid)
    if pid < 0:
        raise SyscallError(errno.EINVAL)
    if pid != 0 and pid not in t.kernel.tasks:
        raise SyscallError(errno.ESRCH)
    data = t.mm.read(mask, min(size, 128))
    cpus = sandbox_cpus()
    if not any((int.from_bytes(data, "little") >> c) & 1 for c in cpus):
        raise SyscallError(errno.EINVAL)
    return 0


@syscall("getcpu")
def getcpu(t, cpu, node, cache):
    """getcpu(2): the CPU the Sentry is on (application threads float), node 0."""
    if cpu:
        t.mm.write_u32(cpu, min(sandbox_cpus()))
    if node:
        t.mm.write_u32(node, 0)
    return 0

