"""epoll_pwait2(2): epoll_pwait with a struct timespec timeout (NULL: wait forever).

The timespec is read and checked first (EFAULT, then EINVAL for a negative or
unnormalised one), as fs/eventpoll.c does, then the wait is epoll_pwait's own
(syscalls/poll.py), signal mask and all.
"""
from __future__ import annotations

from sentry.errors import SyscallError
from sentry.syscalls import poll
from sentry.syscalls.args import TIMESPEC, ts_ns
from sentry.syscalls.registry import syscall


@syscall("epoll_pwait2")
def epoll_pwait2(t, epfd, events, maxevents, timeout, sigmask, sigsetsize):
    """epoll_pwait2(2)."""
    timeout_ns = None
    if timeout:
        sec, nsec = t.mm.read_struct(timeout, TIMESPEC)
        timeout_ns = ts_ns(sec, nsec)
    poll._with_sigmask(t, sigmask, sigsetsize)
    try:
        r = poll._epoll_wait(t, epfd, events, maxevents, timeout_ns)
    except SyscallError:
        poll._restore_sigmask(t)
        raise
    poll._restore_sigmask(t)
    return r
