"""Unit tests of the one path walker (sentry/vfs/walk.py), in-process, without a sandbox.

A VFS of two tmpfs mounts is built directly, with a stand-in task (root, cwd, credentials, fd
table); each test states one rule of path_resolution(7) or openat2(2)'s RESOLVE_* flags.  The
end-to-end versions (conformance programs fs_openat2, fs_tree, proc_magiclinks, the escape
tests) run the same code through real syscalls.
"""
from __future__ import annotations

import errno
import types

import pytest

from sentry.errors import SyscallError
from sentry.vfs.tmpfs import make_tmpfs
from sentry.vfs.walk import (AT_FDCWD, MAXSYMLINKS, RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_NO_SYMLINKS,
                             RESOLVE_NO_XDEV, VFS, Scope, invalidate_paths)


class Creds:
    def __init__(self, uid: int = 0) -> None:
        self.fsuid = self.fsgid = self.euid = self.uid = uid
        self.groups: list[int] = []
        self.caps = 0


class FDs:
    def __init__(self) -> None:
        self.files: dict[int, object] = {}

    def get(self, fd: int):
        try:
            return self.files[fd]
        except KeyError:
            raise SyscallError(errno.EBADF) from None


def make_world(uid: int = 0):
    """/ (tmpfs) with /a/b, /a/link -> b, /abs -> /a, /loop -> loop, /mnt (a second tmpfs) holding
    /mnt/x and /mnt/up -> .., and a 0700 root-owned /private/secret."""
    vfs = VFS()
    fs, root_inode = make_tmpfs(1, {"mode": "755"})
    root_mount = vfs.mount_root(fs, root_inode)
    root = root_mount.root
    t = types.SimpleNamespace()
    t.tg = types.SimpleNamespace(creds=Creds(0), fs=types.SimpleNamespace(root=root, cwd=root))
    t.fds = FDs()
    t.kernel = types.SimpleNamespace(vfs=vfs)
    a = root_inode.mkdir(t, b"a", 0o755)
    a.mkdir(t, b"b", 0o755)
    a.symlink(t, b"link", b"b")
    root_inode.symlink(t, b"abs", b"/a")
    root_inode.symlink(t, b"loop", b"loop")
    priv = root_inode.mkdir(t, b"private", 0o700)
    priv.mkdir(t, b"secret", 0o755)
    root_inode.mkdir(t, b"mnt", 0o755)
    fs2, mroot = make_tmpfs(2, {"mode": "755"})
    mroot.mkdir(t, b"x", 0o755)
    mroot.symlink(t, b"up", b"..")
    vfs.mount_at(root.child(b"mnt"), fs2, mroot)
    t.tg.creds = Creds(uid)
    invalidate_paths()
    return vfs, t, root


def names(d) -> bytes:
    return d.path()


def walk(vfs, t, path: bytes, **kw):
    return vfs.resolve(t, AT_FDCWD, path, **kw)


def err(fn) -> int:
    with pytest.raises(SyscallError) as e:
        fn()
    return e.value.errno


def test_absolute_and_relative_paths_name_the_same_dentry() -> None:
    vfs, t, root = make_world()
    assert walk(vfs, t, b"/a/b") is walk(vfs, t, b"a/b") is walk(vfs, t, b"a//./b/")


def test_dotdot_never_climbs_above_the_root() -> None:
    vfs, t, root = make_world()
    assert walk(vfs, t, b"/../../..") is root
    assert walk(vfs, t, b"/a/../../a/b/../..") is root


def test_relative_symlink_resolves_from_its_directory_absolute_from_the_root() -> None:
    vfs, t, root = make_world()
    assert walk(vfs, t, b"/a/link") is walk(vfs, t, b"/a/b")
    assert walk(vfs, t, b"/abs/b") is walk(vfs, t, b"/a/b")


def test_nofollow_stops_at_the_last_symlink_but_a_trailing_slash_follows() -> None:
    vfs, t, root = make_world()
    assert walk(vfs, t, b"/a/link", follow=False).inode.is_symlink
    assert walk(vfs, t, b"/a/link/", follow=False) is walk(vfs, t, b"/a/b")


def test_symlink_loop_is_eloop_after_maxsymlinks() -> None:
    vfs, t, root = make_world()
    assert MAXSYMLINKS == 40
    assert err(lambda: walk(vfs, t, b"/loop")) == errno.ELOOP


def test_missing_component_and_file_as_directory() -> None:
    vfs, t, root = make_world()
    assert err(lambda: walk(vfs, t, b"/nope/b")) == errno.ENOENT
    assert err(lambda: walk(vfs, t, b"/a/link/../../loop/x", follow=False)) == errno.ELOOP
    assert err(lambda: walk(vfs, t, b"")) == errno.ENOENT
    assert err(lambda: walk(vfs, t, b"/" + b"x" * 256)) == errno.ENAMETOOLONG
    assert err(lambda: walk(vfs, t, b"/a" * 2048)) == errno.ENAMETOOLONG


def test_mounts_are_crossed_both_ways() -> None:
    vfs, t, root = make_world()
    x = walk(vfs, t, b"/mnt/x")
    assert x.mount is not root.mount
    assert walk(vfs, t, b"/mnt/x/../..") is root
    assert walk(vfs, t, b"/mnt/up") is root


def test_search_permission_is_needed_for_every_directory_passed() -> None:
    vfs, t, root = make_world(uid=1000)
    assert err(lambda: walk(vfs, t, b"/private/secret")) == errno.EACCES
    vfs0, t0, _ = make_world(uid=0)
    assert walk(vfs0, t0, b"/private/secret").inode.is_dir


def test_resolve_parent_splits_off_the_last_component() -> None:
    vfs, t, root = make_world()
    parent, name = vfs.resolve_parent(t, AT_FDCWD, b"/a/link/new")
    assert (parent, name) == (walk(vfs, t, b"/a/b"), b"new")
    assert vfs.resolve_parent(t, AT_FDCWD, b"/") == (root, b".")


def test_the_path_cache_forgets_on_invalidation() -> None:
    vfs, t, root = make_world()
    b = walk(vfs, t, b"/a/b")
    assert walk(vfs, t, b"/a/b") is b          # cached
    a = walk(vfs, t, b"/a")
    del a.inode.entries[b"b"]
    a.children.pop(b"b")
    invalidate_paths()
    assert err(lambda: walk(vfs, t, b"/a/b")) == errno.ENOENT


# -- openat2's RESOLVE_* flags, through the same walker --------------------------------------

def scoped(vfs, t, base: bytes, flags: int, path: bytes):
    d = walk(vfs, t, base)
    scope = Scope(flags, d, d if flags & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) else t.tg.fs.root)
    return vfs.resolve(t, AT_FDCWD, path, scope=scope)


def test_resolve_beneath_refuses_absolute_paths_and_climbing_out() -> None:
    vfs, t, root = make_world()
    assert scoped(vfs, t, b"/a", RESOLVE_BENEATH, b"b") is walk(vfs, t, b"/a/b")
    assert scoped(vfs, t, b"/a", RESOLVE_BENEATH, b"b/..") is walk(vfs, t, b"/a")
    assert err(lambda: scoped(vfs, t, b"/a", RESOLVE_BENEATH, b"/a")) == errno.EXDEV
    assert err(lambda: scoped(vfs, t, b"/a", RESOLVE_BENEATH, b"..")) == errno.EXDEV
    assert err(lambda: scoped(vfs, t, b"/", RESOLVE_BENEATH, b"abs")) == errno.EXDEV   # link to /a


def test_resolve_in_root_keeps_dotdot_and_absolute_targets_inside() -> None:
    vfs, t, root = make_world()
    a = walk(vfs, t, b"/a")
    assert scoped(vfs, t, b"/a", RESOLVE_IN_ROOT, b"../../..") is a
    assert scoped(vfs, t, b"/a", RESOLVE_IN_ROOT, b"/b") is walk(vfs, t, b"/a/b")


def test_resolve_no_xdev_refuses_every_mount_crossing() -> None:
    vfs, t, root = make_world()
    assert err(lambda: scoped(vfs, t, b"/", RESOLVE_NO_XDEV, b"mnt/x")) == errno.EXDEV
    assert err(lambda: scoped(vfs, t, b"/mnt/x", RESOLVE_NO_XDEV, b"../..")) == errno.EXDEV
    assert scoped(vfs, t, b"/mnt", RESOLVE_NO_XDEV, b"x").mount is walk(vfs, t, b"/mnt").mount


def test_resolve_no_symlinks_refuses_any_symlink_on_the_way() -> None:
    vfs, t, root = make_world()
    assert err(lambda: scoped(vfs, t, b"/", RESOLVE_NO_SYMLINKS, b"a/link")) == errno.ELOOP
    assert scoped(vfs, t, b"/", RESOLVE_NO_SYMLINKS, b"a/b") is walk(vfs, t, b"/a/b")


def test_scoped_walks_are_never_cached() -> None:
    vfs, t, root = make_world()
    walk(vfs, t, b"/a/b")
    n = len(vfs._paths)
    scoped(vfs, t, b"/a", RESOLVE_BENEATH, b"b")
    assert len(vfs._paths) == n
