"""Unit tests of the lock tables (sentry/vfs/lock.py): owned by the kernel, keyed by the
filesystem object, dropped when empty (they were a module-global dict keyed by id(fs), never
pruned: a leak, and a table a later filesystem with a reused id could find)."""
from __future__ import annotations

import types

from sentry.vfs.lock import F_RDLCK, F_UNLCK, F_WRLCK, OFFSET_MAX, FileLocks


def inode(fs, ino: int):
    return types.SimpleNamespace(fs=fs, ino=ino)


class Owner:
    refs = 1          # a File with one descriptor: alive


def test_a_table_is_dropped_once_its_last_lock_goes() -> None:
    locks, fs = FileLocks(), object()
    a, b = Owner(), Owner()
    tab = locks.table_for(inode(fs, 7))
    tab.set_record(a, F_RDLCK, 0, 9, 1)
    tab.set_record(b, F_RDLCK, 5, OFFSET_MAX, 2)
    assert locks.existing(inode(fs, 7)) is tab
    tab.set_record(a, F_UNLCK, 0, OFFSET_MAX, 1)
    assert locks.existing(inode(fs, 7)) is tab          # b still holds one
    tab.release_owner(b)
    assert locks.tables == {}


def test_flock_tables_are_dropped_on_unlock() -> None:
    locks, fs = FileLocks(), object()
    tab = locks.table_for(inode(fs, 1))
    t = types.SimpleNamespace()
    o = Owner()
    tab.flock(t, o, True, True)
    assert locks.tables
    tab.unflock(o)
    assert locks.tables == {}


def test_tables_are_per_filesystem_object_and_per_kernel() -> None:
    fs1, fs2 = object(), object()
    k1, k2 = FileLocks(), FileLocks()
    t1 = k1.table_for(inode(fs1, 5))
    t1.set_record(Owner(), F_WRLCK, 0, 0, 1)
    assert k1.existing(inode(fs2, 5)) is None           # same inode number, other filesystem
    assert k2.existing(inode(fs1, 5)) is None           # another kernel sees none of it
    assert k1.table_for(inode(fs1, 5)) is t1
