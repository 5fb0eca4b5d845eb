"""Syscall handlers, grouped by family, and the table built from them.

Importing this package imports every family module (each registers its
handlers) and builds `TABLE`, indexed by syscall number.
"""
from sentry.syscalls import registry
from sentry.syscalls import files, fsops, memory, processes, creds, wait, signals, time, misc, futex, poll, timers, sockets  # noqa: F401  (registration)
from sentry.syscalls import vectored, splice, mmsg, sched, uts, mlock, pidfd, timerfd, signalfd, epoll2, privileged, aio  # noqa: F401,E402  (registration)
from sentry.syscalls import fsattr, fsdata, fsinfo, xattr  # noqa: F401  (registration)
from sentry.syscalls import seccomp  # noqa: F401,E402  (registration)
from sentry.syscalls import namespaces  # noqa: F401,E402  (registration)
from sentry.syscalls import sysvipc  # noqa: F401,E402  (registration)
from sentry.syscalls import shm  # noqa: F401,E402  (registration)
from sentry.syscalls import mqueue  # noqa: F401,E402  (registration)

TABLE = registry.build_table()


def all_syscalls() -> list[registry.Syscall]:
    """Every x86-64 syscall number the kernel's lists name, with its support level and note.

    The numbers x86-64 leaves unassigned (335-423 but for uretprobe/uprobe) are not listed;
    dispatch answers them ENOSYS like any unimplemented number.
    """
    return [TABLE[nr] for nr in sorted(registry.SYSCALL_NAMES)]
