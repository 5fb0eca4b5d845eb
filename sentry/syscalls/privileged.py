"""Syscalls that act on the host machine itself, answered EPERM: the sandbox holds none of the
capabilities they need (CAP_SYS_MODULE, CAP_SYS_BOOT, CAP_SYS_RAWIO, CAP_SYS_PACCT, CAP_SYS_ADMIN for
swap and quotas), as under runc's default capability set, and a Linux kernel checks the capability
before anything else -- so EPERM is exactly what a container process gets from Linux here.
"""
from __future__ import annotations

import errno

from sentry.syscalls.registry import error_syscall

_WHY = {
    "init_module": "loading kernel modules needs CAP_SYS_MODULE, which the sandbox never has: EPERM",
    "finit_module": "loading kernel modules needs CAP_SYS_MODULE, which the sandbox never has: EPERM",
    "delete_module": "unloading kernel modules needs CAP_SYS_MODULE, which the sandbox never has: EPERM",
    "kexec_load": "booting another kernel needs CAP_SYS_BOOT, which the sandbox never has: EPERM",
    "kexec_file_load": "booting another kernel needs CAP_SYS_BOOT, which the sandbox never has: EPERM",
    "reboot": "needs CAP_SYS_BOOT, which the sandbox never has (Linux checks it first): EPERM",
    "iopl": "port I/O needs CAP_SYS_RAWIO, which the sandbox never has: EPERM",
    "ioperm": "port I/O needs CAP_SYS_RAWIO, which the sandbox never has: EPERM",
    "swapon": "swap devices need CAP_SYS_ADMIN, which the sandbox never has: EPERM",
    "swapoff": "swap devices need CAP_SYS_ADMIN, which the sandbox never has: EPERM",
    "acct": "process accounting needs CAP_SYS_PACCT, which the sandbox never has: EPERM",
}

for _name, _why in _WHY.items():
    error_syscall(_name, errno.EPERM, _why)
