"""Syscalls that change the filesystem tree: mkdir, rmdir, unlink, rename, link, symlink,
mknod, chroot.  (A file's attributes -- chmod, chown, truncate, fallocate, the times -- are in
fsattr.py; sync, statfs, sendfile, copy_file_range and flock in fsdata.py; the xattr family in
xattr.py.)

Handlers resolve paths and check what Linux checks at the VFS layer (exact
errnos, in Linux's order: lookup errors, then EEXIST/ENOENT of the last
component, then EROFS, then permission), then call the directory inode's
operation (`mkdir`, `unlink`, `rename`...; a filesystem without one answers
EPERM) and keep the dentry cache coherent themselves, so a filesystem only
has to change the tree, never the Sentry's view of it.
"""
from __future__ import annotations

import errno
import stat as st

from sentry.errors import SyscallError
from sentry.syscalls.args import s32, u32
from sentry.syscalls.files import AT_EMPTY_PATH, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, AT_SYMLINK_NOFOLLOW, _path
from sentry.syscalls.registry import Support, syscall
from sentry.vfs.inode import MAY_EXEC, MAY_WRITE, Dentry, may_access
from sentry.vfs.walk import AT_FDCWD, invalidate_paths

RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4


# -- shared checks --------------------------------------------------------------

def _op(inode, name: str):
    fn = getattr(inode, name, None)
    if fn is None:
        raise SyscallError(errno.EPERM)
    return fn


def _is_mountpoint(d: Dentry) -> bool:
    return d.mounted is not None or d.parent is None


def _check_writable_mount(d: Dentry) -> None:
    if d.mount is not None and d.mount.readonly:    # no mount: an internal one (memfd...), writable
        raise SyscallError(errno.EROFS)


def _may_create(t, parent: Dentry) -> None:
    creds = t.tg.creds
    if creds.fsuid != 0 and not may_access(parent.inode.perm_stat(), creds, MAY_WRITE | MAY_EXEC):
        raise SyscallError(errno.EACCES)


def _may_delete(t, parent: Dentry, child: Dentry) -> None:
    """may_delete(): write+search on the directory, and the sticky bit's owner rule."""
    creds = t.tg.creds
    if creds.fsuid == 0:
        return
    ps = parent.inode.perm_stat()
    if not may_access(ps, creds, MAY_WRITE | MAY_EXEC):
        raise SyscallError(errno.EACCES)
    if ps.mode & st.S_ISVTX and creds.fsuid not in (ps.uid, child.inode.perm_stat().uid):
        raise SyscallError(errno.EPERM)


def _create_target(t, dirfd: int, path: bytes, want_dir: bool = False) -> tuple[Dentry, bytes]:
    """filename_create(): the parent and the new name; EEXIST if it exists, EROFS, EACCES."""
    vfs = t.kernel.vfs
    parent, name = vfs.resolve_parent(t, dirfd, path)
    if name in (b".", b".."):
        raise SyscallError(errno.EEXIST)
    if parent.child(name) is not None:
        raise SyscallError(errno.EEXIST)
    if path.endswith(b"/") and not want_dir:
        raise SyscallError(errno.ENOENT)
    _check_writable_mount(parent)
    _may_create(t, parent)
    return parent, name


def _add(parent: Dentry, name: bytes, inode) -> Dentry:
    invalidate_paths()
    d = Dentry(name, parent, inode, parent.mount)
    parent.children[name] = d
    return d


def _resolve_fd_or_path(t, dirfd: int, path_addr: int, flags: int, follow_flag_means_nofollow: bool = True):
    path = _path(t, path_addr)
    follow = not flags & AT_SYMLINK_NOFOLLOW
    return t.kernel.vfs.resolve(t, dirfd, path, follow=follow, empty_ok=bool(flags & AT_EMPTY_PATH))


# -- mkdir / mknod / symlink / link -------------------------------------------------

def _mkdir(t, dirfd: int, path_addr: int, mode: int) -> int:
    parent, name = _create_target(t, dirfd, _path(t, path_addr), want_dir=True)
    mode = mode & 0o7777 & ~t.tg.fs.umask & ~st.S_ISGID
    _add(parent, name, _op(parent.inode, "mkdir")(t, name, mode & 0o1777))
    return 0


@syscall("mkdir")
def mkdir(t, path, mode):
    """mkdir(2)."""
    return _mkdir(t, AT_FDCWD, path, u32(mode))


@syscall("mkdirat")
def mkdirat(t, dirfd, path, mode):
    """mkdirat(2)."""
    return _mkdir(t, s32(dirfd), path, u32(mode))


def _mknod(t, dirfd: int, path_addr: int, mode: int, dev: int) -> int:
    fmt = st.S_IFMT(mode) or st.S_IFREG
    if fmt == st.S_IFDIR:
        raise SyscallError(errno.EPERM)
    if fmt not in (st.S_IFREG, st.S_IFIFO, st.S_IFSOCK, st.S_IFCHR, st.S_IFBLK):
        raise SyscallError(errno.EINVAL)
    parent, name = _create_target(t, dirfd, _path(t, path_addr))
    if fmt in (st.S_IFCHR, st.S_IFBLK):
        # Device nodes would hand the sandbox a host device: never made (as gVisor).
        raise SyscallError(errno.EPERM)
    perm = mode & 0o7777 & ~t.tg.fs.umask
    _add(parent, name, _op(parent.inode, "mknod")(t, name, fmt | perm, dev))
    return 0


@syscall("mknod", Support.PARTIAL, "regular files, fifos and sockets; device nodes are EPERM")
def mknod(t, path, mode, dev):
    """mknod(2)."""
    return _mknod(t, AT_FDCWD, path, u32(mode), u32(dev))


@syscall("mknodat", Support.PARTIAL, "regular files, fifos and sockets; device nodes are EPERM")
def mknodat(t, dirfd, path, mode, dev):
    """mknodat(2)."""
    return _mknod(t, s32(dirfd), path, u32(mode), u32(dev))


def _symlink(t, target_addr: int, dirfd: int, path_addr: int) -> int:
    target = _path(t, target_addr)
    path = _path(t, path_addr)
    if not target:
        raise SyscallError(errno.ENOENT)
    parent, name = _create_target(t, dirfd, path)
    _add(parent, name, _op(parent.inode, "symlink")(t, name, target))
    return 0


@syscall("symlink")
def symlink(t, target, linkpath):
    """symlink(2)."""
    return _symlink(t, target, AT_FDCWD, linkpath)


@syscall("symlinkat")
def symlinkat(t, target, dirfd, linkpath):
    """symlinkat(2)."""
    return _symlink(t, target, s32(dirfd), linkpath)


def _link(t, olddirfd: int, old_addr: int, newdirfd: int, new_addr: int, flags: int) -> int:
    if flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    vfs = t.kernel.vfs
    old = vfs.resolve(t, olddirfd, _path(t, old_addr), follow=bool(flags & AT_SYMLINK_FOLLOW),
                      empty_ok=bool(flags & AT_EMPTY_PATH))
    if old.inode.is_dir:
        raise SyscallError(errno.EPERM)
    new_path = _path(t, new_addr)
    parent, name = vfs.resolve_parent(t, newdirfd, new_path)
    if name in (b".", b"..") or parent.child(name) is not None:
        raise SyscallError(errno.EEXIST)
    if new_path.endswith(b"/"):
        raise SyscallError(errno.ENOENT)
    if parent.mount is not old.mount:
        raise SyscallError(errno.EXDEV)
    _check_writable_mount(parent)
    _may_create(t, parent)
    creds = t.tg.creds
    if creds.fsuid != 0:
        # fs.protected_hardlinks: the owner, or a regular file the caller may read and write.
        s = old.inode.stat()
        if s.uid != creds.fsuid and not (st.S_ISREG(s.mode) and not s.mode & st.S_ISUID and
                                         may_access(s, creds, 6)):
            raise SyscallError(errno.EPERM)
    _add(parent, name, _op(parent.inode, "link")(t, name, old.inode))
    return 0


@syscall("link")
def link(t, oldpath, newpath):
    """link(2)."""
    return _link(t, AT_FDCWD, oldpath, AT_FDCWD, newpath, 0)


@syscall("linkat")
def linkat(t, olddirfd, oldpath, newdirfd, newpath, flags):
    """linkat(2)."""
    return _link(t, s32(olddirfd), oldpath, s32(newdirfd), newpath, u32(flags))


# -- unlink / rmdir / rename -------------------------------------------------

def _unlink(t, dirfd: int, path: bytes) -> int:
    parent, name = t.kernel.vfs.resolve_parent(t, dirfd, path)
    if name in (b".", b".."):
        raise SyscallError(errno.EISDIR)
    child = parent.child(name)
    if path.endswith(b"/"):
        if child is None:
            raise SyscallError(errno.ENOENT)
        raise SyscallError(errno.EISDIR if child.inode.is_dir else errno.ENOTDIR)
    _check_writable_mount(parent)
    if child is None:
        raise SyscallError(errno.ENOENT)
    _may_delete(t, parent, child)
    if child.inode.is_dir:
        raise SyscallError(errno.EISDIR)
    if child.mounted is not None:
        raise SyscallError(errno.EBUSY)
    invalidate_paths()
    _op(parent.inode, "unlink")(t, name, child.inode, False)
    parent.children[name] = None
    return 0


def _rmdir(t, dirfd: int, path: bytes) -> int:
    parent, name = t.kernel.vfs.resolve_parent(t, dirfd, path)
    if not path.strip(b"/"):
        raise SyscallError(errno.EBUSY)            # rmdir("/")
    if name == b".":
        raise SyscallError(errno.EINVAL)
    if name == b"..":
        raise SyscallError(errno.ENOTEMPTY)
    _check_writable_mount(parent)
    child = parent.child(name)
    if child is None:
        raise SyscallError(errno.ENOENT)
    _may_delete(t, parent, child)
    if not child.inode.is_dir:
        raise SyscallError(errno.ENOTDIR)
    if child.mounted is not None or child is t.tg.fs.root:
        raise SyscallError(errno.EBUSY)
    invalidate_paths()
    _op(parent.inode, "unlink")(t, name, child.inode, True)
    parent.children[name] = None
    return 0


@syscall("unlink")
def unlink(t, path):
    """unlink(2)."""
    return _unlink(t, AT_FDCWD, _path(t, path))


@syscall("rmdir")
def rmdir(t, path):
    """rmdir(2)."""
    return _rmdir(t, AT_FDCWD, _path(t, path))


@syscall("unlinkat")
def unlinkat(t, dirfd, path, flags):
    """unlinkat(2)."""
    flags = u32(flags)
    if flags & ~AT_REMOVEDIR:
        raise SyscallError(errno.EINVAL)
    p = _path(t, path)
    return _rmdir(t, s32(dirfd), p) if flags & AT_REMOVEDIR else _unlink(t, s32(dirfd), p)


def _is_ancestor(a: Dentry, d: Dentry) -> bool:
    """Whether `a` is `d` or one of its ancestors within the same mount."""
    while d is not None:
        if d is a:
            return True
        d = d.parent
    return False


def _rename(t, olddirfd: int, old_addr: int, newdirfd: int, new_addr: int, flags: int) -> int:
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT):
        raise SyscallError(errno.EINVAL)
    if flags & RENAME_EXCHANGE and flags & (RENAME_NOREPLACE | RENAME_WHITEOUT):
        raise SyscallError(errno.EINVAL)
    if flags & RENAME_WHITEOUT:
        raise SyscallError(errno.EPERM)           # needs CAP_MKNOD on the host's overlayfs; never here
    vfs = t.kernel.vfs
    old_path, new_path = _path(t, old_addr), _path(t, new_addr)
    old_parent, old_name = vfs.resolve_parent(t, olddirfd, old_path)
    new_parent, new_name = vfs.resolve_parent(t, newdirfd, new_path)
    if old_parent.mount is not new_parent.mount:
        raise SyscallError(errno.EXDEV)
    if old_name in (b".", b"..") or new_name in (b".", b".."):
        raise SyscallError(errno.EEXIST if flags & RENAME_NOREPLACE and old_name not in (b".", b"..")
                           else errno.EBUSY)
    _check_writable_mount(old_parent)
    old = old_parent.child(old_name)
    if old is None:
        raise SyscallError(errno.ENOENT)
    new = new_parent.child(new_name)
    if flags & RENAME_NOREPLACE and new is not None:
        raise SyscallError(errno.EEXIST)
    if flags & RENAME_EXCHANGE and new is None:
        raise SyscallError(errno.ENOENT)
    if not old.inode.is_dir and (old_path.endswith(b"/") or new_path.endswith(b"/")) \
            and not flags & RENAME_EXCHANGE:
        raise SyscallError(errno.ENOTDIR)
    if old is new:
        return 0
    if old.inode.is_dir and _is_ancestor(old, new_parent):
        raise SyscallError(errno.EINVAL)
    if new is not None and new.inode.is_dir and _is_ancestor(new, old_parent):
        raise SyscallError(errno.EINVAL if flags & RENAME_EXCHANGE else errno.ENOTEMPTY)
    _may_delete(t, old_parent, old)
    if new is not None:
        _may_delete(t, new_parent, new)
    else:
        _may_create(t, new_parent)
    if new is not None and not flags & RENAME_EXCHANGE:
        if old.inode.is_dir and not new.inode.is_dir:
            raise SyscallError(errno.ENOTDIR)
        if not old.inode.is_dir and new.inode.is_dir:
            raise SyscallError(errno.EISDIR)
    if old.mounted is not None or (new is not None and new.mounted is not None) \
            or old is t.tg.fs.root:
        raise SyscallError(errno.EBUSY)
    invalidate_paths()
    _op(old_parent.inode, "rename")(t, old_name, new_parent.inode, new_name, flags)
    # The cache (and the filesystem's own notion of names, where it keeps one) follows the tree.
    moved = getattr(old.inode, "moved", None)
    if moved is not None:
        moved(new_parent.inode, new_name)
    if new is not None:
        if flags & RENAME_EXCHANGE:
            moved = getattr(new.inode, "moved", None)
            if moved is not None:
                moved(old_parent.inode, old_name)
        else:
            gone = getattr(new.inode, "unlinked", None)
            if gone is not None:
                gone()
    old_parent.children[old_name] = None
    old.parent, old.name = new_parent, new_name
    new_parent.children[new_name] = old
    if new is not None and flags & RENAME_EXCHANGE:
        new.parent, new.name = old_parent, old_name
        old_parent.children[old_name] = new
    return 0


@syscall("rename")
def rename(t, oldpath, newpath):
    """rename(2)."""
    return _rename(t, AT_FDCWD, oldpath, AT_FDCWD, newpath, 0)


@syscall("renameat")
def renameat(t, olddirfd, oldpath, newdirfd, newpath):
    """renameat(2)."""
    return _rename(t, s32(olddirfd), oldpath, s32(newdirfd), newpath, 0)


@syscall("renameat2", Support.PARTIAL, "RENAME_NOREPLACE RENAME_EXCHANGE; RENAME_WHITEOUT is EPERM")
def renameat2(t, olddirfd, oldpath, newdirfd, newpath, flags):
    """renameat2(2)."""
    return _rename(t, s32(olddirfd), oldpath, s32(newdirfd), newpath, u32(flags))


# -- chroot, and the mount calls a container does not get ---------------------------------

@syscall("chroot")
def chroot(t, path):
    """chroot(2): needs CAP_SYS_CHROOT (root here); the new root is the caller's FSContext's."""
    d = t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path))
    if not d.inode.is_dir:
        raise SyscallError(errno.ENOTDIR)
    creds = t.tg.creds
    if creds.fsuid != 0 and not may_access(d.inode.perm_stat(), creds, MAY_EXEC):
        raise SyscallError(errno.EACCES)
    if creds.euid != 0:
        raise SyscallError(errno.EPERM)
    invalidate_paths()              # the root is part of every cache key; this is belt and braces
    t.tg.fs.root = d
    return 0


def _register_mount_calls() -> None:
    from sentry.syscalls.registry import error_syscall
    why = "the container has no CAP_SYS_ADMIN (as under runc's default capabilities): EPERM"
    for name in ("mount", "umount2", "pivot_root"):
        error_syscall(name, errno.EPERM, why)


_register_mount_calls()

