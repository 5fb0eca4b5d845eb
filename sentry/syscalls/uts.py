"""sethostname and setdomainname: the sandbox's own UTS names (Kernel.hostname/domainname).

The Sentry is the sandbox's UTS namespace: a change is seen by uname(2) and
/proc/sys/kernel/{hostname,domainname} inside the sandbox and never reaches the
host.  As kernel/sys.c: CAP_SYS_ADMIN (here: euid 0, see capget) first, EPERM
without it; then a length past 64 (or negative) is EINVAL; then EFAULT.
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError
from sentry.syscalls.args import s32
from sentry.syscalls.registry import syscall

NEW_UTS_LEN = 64


def _name(t, addr: int, length: int) -> bytes:
    from sentry.syscalls.namespaces import may_set_uts
    if not may_set_uts(t):                      # CAP_SYS_ADMIN over the UTS namespace's owner
        raise SyscallError(errno.EPERM)
    length = s32(length)
    if length < 0 or length > NEW_UTS_LEN:
        raise SyscallError(errno.EINVAL)
    return t.mm.read(addr, length) if length else b""


@syscall("sethostname")
def sethostname(t, name, length):
    """sethostname(2)."""
    (t.tg.uts or t.kernel).hostname = _name(t, name, length).split(b"\0")[0]
    return 0


@syscall("setdomainname")
def setdomainname(t, name, length):
    """setdomainname(2)."""
    (t.tg.uts or t.kernel).domainname = _name(t, name, length).split(b"\0")[0]
    return 0
