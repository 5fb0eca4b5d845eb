"""Errors the Sentry returns to the application, as named values.

A handler raises `SyscallError(errno.EBADF)`; the task loop turns it into
`-EBADF` in rax.  Nothing else in the Sentry encodes errnos by hand.
"""
from __future__ import annotations

import errno


class SyscallError(Exception):
    """A syscall failed with `errno` (a positive errno number)."""

    __slots__ = ("errno",)

    def __init__(self, err: int):
        self.errno = err

    def __repr__(self) -> str:
        return f"SyscallError({errno.errorcode.get(self.errno, self.errno)})"


# Kernel-internal restart codes (include/linux/errno.h).  They never reach
# the application: the signal code turns them into EINTR or a restart.
ERESTARTSYS = 512
ERESTARTNOINTR = 513
ERESTARTNOHAND = 514
ERESTART_RESTARTBLOCK = 516


def errname(err: int) -> str:
    return errno.errorcode.get(err, str(err))
