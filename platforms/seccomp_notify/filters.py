"""The host syscalls the seccomp_notify platform makes, for the Sentry's seccomp allowlist.

The ptrace platform's (platforms/ptrace/filters.py: stubs, injection, ptrace requests, waiting)
plus what the notification path needs: the stub installs its filter with
SECCOMP_FILTER_FLAG_NEW_LISTENER (seccomp SET_MODE_FILTER, already allowed), the Sentry takes
a copy of the listener with pidfd_open + pidfd_getfd, sizes `struct seccomp_notif` once
(SECCOMP_GET_NOTIF_SIZES) and receives and answers notifications with three ioctls.
"""
from __future__ import annotations

from platforms.contract import Filters
from platforms.ptrace.filters import syscall_filters as ptrace_filters

SECCOMP_GET_NOTIF_SIZES = 3
SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101
SECCOMP_IOCTL_NOTIF_ID_VALID = 0x40082102
ALWAYS = ((),)


def syscall_filters(stub_fd: int | str) -> Filters:
    rules = dict(ptrace_filters(stub_fd))
    rules["seccomp"] = rules["seccomp"] + (((0, "operation", "==", SECCOMP_GET_NOTIF_SIZES,
                                             "SECCOMP_GET_NOTIF_SIZES"),),)
    rules["ioctl"] = tuple(((1, "request", "==", v, name),) for v, name in (
        (SECCOMP_IOCTL_NOTIF_RECV, "SECCOMP_IOCTL_NOTIF_RECV"),
        (SECCOMP_IOCTL_NOTIF_SEND, "SECCOMP_IOCTL_NOTIF_SEND"),
        (SECCOMP_IOCTL_NOTIF_ID_VALID, "SECCOMP_IOCTL_NOTIF_ID_VALID")))
    rules["pidfd_open"] = ALWAYS
    rules["pidfd_getfd"] = ALWAYS
    return rules
