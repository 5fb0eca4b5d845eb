"""Advisory file locks, kept in the Sentry: flock(2), POSIX record locks and OFD locks.

Locks never reach the host (the Gofer's files are the container's alone), so
they are a table per file, kept by the kernel (`FileLocks`, `Kernel.file_locks`) and keyed by
(filesystem, inode number) so that two dentries of one file share it.  A table with no lock and
no waiter is dropped.  Owners, as Linux has them:

* POSIX record locks (F_SETLK/F_SETLKW/F_GETLK): the process (ThreadGroup);
  released when the process closes any descriptor of the file, or exits.
* OFD locks (F_OFD_*) and flock(2): the open file description (`File`);
  released when its last descriptor closes.

Owners are checked lazily: a lock whose process has exited or whose File
has no descriptors left is dropped the next time the table is looked at,
so nothing in the exit path needs to know about locks.  A blocked
F_SETLKW/flock parks on the table's wait queue with a short deadline, so
a lock freed by an exiting owner (which wakes nobody) is seen soon anyway.
"""
from __future__ import annotations

import errno
import time

from sentry.errors import SyscallError
from sentry.waitq import WaitQueue

F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
OFFSET_MAX = (1 << 63) - 1
RECHECK_SECONDS = 0.05


class Lock:
    __slots__ = ("owner", "type", "start", "end", "pid")

    def __init__(self, owner, type_: int, start: int, end: int, pid: int) -> None:
        self.owner = owner
        self.type = type_
        self.start = start          # inclusive
        self.end = end              # inclusive; OFFSET_MAX for "to end of file"
        self.pid = pid


def _alive(owner) -> bool:
    refs = getattr(owner, "refs", None)
    if refs is not None:                 # a File
        return refs > 0
    k = owner.kernel                     # a ThreadGroup
    return not owner.exiting and k.thread_groups.get(owner.tgid) is owner


class LockTable:
    """The locks of one file, one list per kind (POSIX/OFD share one: they conflict; flock is apart)."""

    def __init__(self, drop=None) -> None:
        self.records: list[Lock] = []
        self.flocks: list[Lock] = []
        self.waiters = WaitQueue()
        self._drop = drop                 # forgets this table in its FileLocks once it is empty

    def _drop_if_empty(self) -> None:
        if not self.records and not self.flocks and not len(self.waiters) and self._drop is not None:
            self._drop()

    def _purge(self) -> None:
        self.records = [lk for lk in self.records if _alive(lk.owner)]
        self.flocks = [lk for lk in self.flocks if _alive(lk.owner)]

    def conflict(self, owner, type_: int, start: int, end: int) -> Lock | None:
        self._purge()
        for lk in self.records:
            if lk.owner is not owner and lk.start <= end and start <= lk.end and \
                    (type_ == F_WRLCK or lk.type == F_WRLCK):
                return lk
        return None

    def set_record(self, owner, type_: int, start: int, end: int, pid: int) -> None:
        """Replace `owner`'s locks over [start, end] by one of `type_` (F_UNLCK: just remove)."""
        kept = []
        for lk in self.records:
            if lk.owner is not owner or lk.end < start or lk.start > end:
                kept.append(lk)
                continue
            if lk.start < start:
                kept.append(Lock(owner, lk.type, lk.start, start - 1, lk.pid))
            if lk.end > end:
                kept.append(Lock(owner, lk.type, end + 1, lk.end, lk.pid))
        if type_ != F_UNLCK:
            kept.append(Lock(owner, type_, start, end, pid))
        kept.sort(key=lambda lk: lk.start)
        self.records = kept
        self.waiters.wake_all()
        if type_ == F_UNLCK:
            self._drop_if_empty()

    def release_owner(self, owner) -> None:
        before = len(self.records) + len(self.flocks)
        self.records = [lk for lk in self.records if lk.owner is not owner]
        self.flocks = [lk for lk in self.flocks if lk.owner is not owner]
        if len(self.records) + len(self.flocks) != before:
            self.waiters.wake_all()
        self._drop_if_empty()

    def flock(self, t, owner, exclusive: bool, nonblock: bool) -> None:
        self._purge()
        mine = [lk for lk in self.flocks if lk.owner is owner]
        others = [lk for lk in self.flocks if lk.owner is not owner]
        if any(exclusive or lk.type == F_WRLCK for lk in others):
            if mine:
                # A conversion drops the old lock first (flock(2): not atomic).
                self.flocks = others
                self.waiters.wake_all()
            if nonblock:
                raise SyscallError(errno.EWOULDBLOCK)
            self.block(t)
        self.flocks = others + [Lock(owner, F_WRLCK if exclusive else F_RDLCK, 0, OFFSET_MAX, 0)]

    def unflock(self, owner) -> None:
        n = len(self.flocks)
        self.flocks = [lk for lk in self.flocks if lk.owner is not owner]
        if len(self.flocks) != n:
            self.waiters.wake_all()
        self._drop_if_empty()

    def block(self, t) -> None:
        t.block([self.waiters], deadline=time.monotonic() + RECHECK_SECONDS)


class FileLocks:
    """One kernel's lock tables, by file.  The key holds the filesystem object itself, not its
    id(): an id reused by a later filesystem can never find an old table."""

    def __init__(self) -> None:
        self.tables: dict[tuple[object, int], LockTable] = {}

    def table_for(self, inode) -> LockTable:
        key = (inode.fs, inode.ino)
        tab = self.tables.get(key)
        if tab is None:
            tab = self.tables[key] = LockTable(lambda: self.tables.pop(key, None))
        return tab

    def existing(self, inode) -> LockTable | None:
        return self.tables.get((inode.fs, inode.ino)) if self.tables else None
