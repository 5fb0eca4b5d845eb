"""Syscalls that change the filesystem tree or a file's attributes: mkdir, rmdir,
unlink, rename, link, symlink, mknod, chmod, chown, truncate, fallocate, the
times (utime, utimes, utimensat, futimesat), chroot.  (sync, statfs, sendfile,
copy_file_range and flock are in fsdata.py; the xattr family in xattr.py.)

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
import struct

from sentry.errors import SyscallError
from sentry.syscalls.args import s32, s64, timestamp_ns, u32
from sentry.syscalls.files import AT_EMPTY_PATH, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, AT_SYMLINK_NOFOLLOW, _path
from sentry.syscalls.registry import Support, syscall
from sentry.vfs.inode import MAY_EXEC, MAY_WRITE, Dentry, may_access
from sentry.vfs.walk import AT_FDCWD, invalidate_paths

RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


# -- shared checks --------------------------------------------------------------

def _op(inode, name: str):
    fn = getattr(inode, name, None)
    if fn is None:
        raise SyscallError(errno.EPERM)
    return fn


def _is_mountpoint(d: Dentry) -> bool:
    return d.mounted is not None or d.parent is None


def _check_writable_mount(d: Dentry) -> None:
    if d.mount.readonly:
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


# -- attributes: mode, owner, size, times ---------------------------------------------

def _setstat(t, d: Dentry, **kw) -> None:
    _check_writable_mount(d)
    invalidate_paths()              # a mode or owner a walk's permission checks see
    _op(d.inode, "setstat")(t, **kw)


def _chmod(t, d: Dentry, mode: int) -> int:
    creds = t.tg.creds
    s = d.inode.stat()
    _check_writable_mount(d)
    if creds.fsuid != 0 and creds.fsuid != s.uid:
        raise SyscallError(errno.EPERM)
    mode &= 0o7777
    if creds.fsuid != 0 and mode & st.S_ISGID and s.gid != creds.fsgid and s.gid not in creds.groups:
        mode &= ~st.S_ISGID
    _setstat(t, d, mode=mode)
    return 0


@syscall("chmod")
def chmod(t, path, mode):
    """chmod(2)."""
    return _chmod(t, t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path)), u32(mode))


@syscall("fchmod")
def fchmod(t, fd, mode):
    """fchmod(2)."""
    f = t.fds.get_io(s32(fd))
    if f.dentry is None:
        raise SyscallError(errno.EBADF)
    return _chmod(t, f.dentry, u32(mode))


@syscall("fchmodat")
def fchmodat(t, dirfd, path, mode):
    """fchmodat(2) (the syscall has no flags argument)."""
    return _chmod(t, t.kernel.vfs.resolve(t, s32(dirfd), _path(t, path)), u32(mode))


@syscall("fchmodat2", nr=452)
def fchmodat2(t, dirfd, path, mode, flags):
    """fchmodat2(2): AT_SYMLINK_NOFOLLOW on a symlink is EOPNOTSUPP, as on Linux."""
    flags = u32(flags)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    d = _resolve_fd_or_path(t, s32(dirfd), path, flags)
    if d.inode.is_symlink:
        raise SyscallError(errno.EOPNOTSUPP)
    return _chmod(t, d, u32(mode))


def _chown(t, d: Dentry, uid: int, gid: int) -> int:
    uid = None if uid == 0xFFFFFFFF else uid
    gid = None if gid == 0xFFFFFFFF else gid
    creds = t.tg.creds
    s = d.inode.stat()
    _check_writable_mount(d)
    if creds.fsuid != 0:
        # chown_ok()/chgrp_ok(): only the owner, only to itself, only to one of its groups.
        if (uid is not None and uid != s.uid) or \
           (gid is not None and gid != s.gid and (creds.fsuid != s.uid or
                                                 (gid != creds.fsgid and gid not in creds.groups))) or \
           (gid is not None and creds.fsuid != s.uid):
            raise SyscallError(errno.EPERM)
    if uid is None and gid is None:
        return 0
    kw = {"uid": uid, "gid": gid}
    if not d.inode.is_dir and not d.inode.is_symlink and s.mode & (st.S_ISUID | st.S_ISGID):
        # chown clears set-user-ID, and set-group-ID when group-executable (as notify_change).
        clear = st.S_ISUID | (st.S_ISGID if s.mode & st.S_IXGRP else 0)
        kw["mode"] = s.mode & 0o7777 & ~clear
    _setstat(t, d, **kw)
    return 0


@syscall("chown")
def chown(t, path, uid, gid):
    """chown(2)."""
    return _chown(t, t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path)), u32(uid), u32(gid))


@syscall("lchown")
def lchown(t, path, uid, gid):
    """lchown(2)."""
    return _chown(t, t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path), follow=False), u32(uid), u32(gid))


@syscall("fchown")
def fchown(t, fd, uid, gid):
    """fchown(2)."""
    f = t.fds.get_io(s32(fd))
    if f.dentry is None:
        raise SyscallError(errno.EBADF)
    return _chown(t, f.dentry, u32(uid), u32(gid))


@syscall("fchownat")
def fchownat(t, dirfd, path, uid, gid, flags):
    """fchownat(2)."""
    flags = u32(flags)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    return _chown(t, _resolve_fd_or_path(t, s32(dirfd), path, flags), u32(uid), u32(gid))


def _truncate_checks(t, d: Dentry, length: int) -> None:
    if length < 0:
        raise SyscallError(errno.EINVAL)
    inode = d.inode
    if inode.is_dir:
        raise SyscallError(errno.EISDIR)
    if not st.S_ISREG(inode.mode):
        raise SyscallError(errno.EINVAL)


@syscall("truncate")
def truncate(t, path, length):
    """truncate(2)."""
    length = s64(length)
    d = t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path))
    if d.inode.is_dir:
        raise SyscallError(errno.EISDIR)
    if not st.S_ISREG(d.inode.mode):
        raise SyscallError(errno.EINVAL)
    _check_writable_mount(d)
    creds = t.tg.creds
    if creds.fsuid != 0 and not may_access(d.inode.stat(), creds, MAY_WRITE):
        raise SyscallError(errno.EACCES)
    if length < 0:
        raise SyscallError(errno.EINVAL)
    _setstat(t, d, size=length)
    return 0


@syscall("ftruncate")
def ftruncate(t, fd, length):
    """ftruncate(2): EINVAL unless open for writing on a regular file."""
    length = s64(length)
    f = t.fds.get_io(s32(fd))
    if length < 0:
        raise SyscallError(errno.EINVAL)
    d = f.dentry
    if d is None or not f.writable or not st.S_ISREG(d.inode.mode):
        raise SyscallError(errno.EINVAL)
    trunc = getattr(f, "truncate", None)
    if trunc is not None:
        trunc(length)
    else:
        _op(d.inode, "setstat")(t, size=length)
    return 0


FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2


@syscall("fallocate", Support.PARTIAL, "mode 0 and FALLOC_FL_KEEP_SIZE; other modes EOPNOTSUPP")
def fallocate(t, fd, mode, offset, length):
    """fallocate(2)."""
    mode, offset, length = s32(mode), s64(offset), s64(length)
    f = t.fds.get_io(s32(fd))
    if offset < 0 or length <= 0:
        raise SyscallError(errno.EINVAL)
    if not f.writable:
        raise SyscallError(errno.EBADF)
    d = f.dentry
    if d is None:
        raise SyscallError(errno.ESPIPE)
    if d.inode.is_dir:
        raise SyscallError(errno.EISDIR)
    if not st.S_ISREG(d.inode.mode):
        raise SyscallError(errno.ENODEV)
    if offset + length > (1 << 63) - 1:
        raise SyscallError(errno.EFBIG)
    if mode & ~FALLOC_FL_KEEP_SIZE:
        raise SyscallError(errno.EOPNOTSUPP)
    if mode & FALLOC_FL_KEEP_SIZE:
        return 0
    alloc = getattr(f, "allocate", None)
    if alloc is not None:
        alloc(offset, length)
    elif d.inode.stat().size < offset + length:
        _op(d.inode, "setstat")(t, size=offset + length)
    return 0


# Times.

def _now_ok_or_owner(t, d: Dentry, explicit: bool) -> None:
    """utimes permission: explicit times need ownership; 'now' also allows write access."""
    creds = t.tg.creds
    if creds.fsuid == 0:
        return
    s = d.inode.stat()
    if creds.fsuid == s.uid:
        return
    if explicit:
        raise SyscallError(errno.EPERM)
    if not may_access(s, creds, MAY_WRITE):
        raise SyscallError(errno.EACCES)


def _set_times(t, d: Dentry, atime, mtime) -> int:
    """atime/mtime: ns, UTIME_NOW or UTIME_OMIT."""
    _check_writable_mount(d)
    explicit = any(x not in (UTIME_NOW, UTIME_OMIT) for x in (atime, mtime))
    _now_ok_or_owner(t, d, explicit)
    if atime == UTIME_OMIT and mtime == UTIME_OMIT:
        return 0
    _setstat(t, d, atime_ns=None if atime == UTIME_OMIT else atime,
             mtime_ns=None if mtime == UTIME_OMIT else mtime)
    return 0


TIMESPEC2 = struct.Struct("<qqqq")


def _timespecs(t, addr: int):
    if not addr:
        return UTIME_NOW, UTIME_NOW
    a_s, a_ns, m_s, m_ns = t.mm.read_struct(addr, TIMESPEC2)

    def one(sec, ns):
        if ns in (UTIME_NOW, UTIME_OMIT):
            return ns
        if not 0 <= ns < 10**9:
            raise SyscallError(errno.EINVAL)
        return timestamp_ns(sec, ns)
    return one(a_s, a_ns), one(m_s, m_ns)


def _timevals(t, addr: int):
    if not addr:
        return UTIME_NOW, UTIME_NOW
    a_s, a_us, m_s, m_us = t.mm.read_struct(addr, TIMESPEC2)
    if not (0 <= a_us < 10**6 and 0 <= m_us < 10**6):
        raise SyscallError(errno.EINVAL)
    return timestamp_ns(a_s, a_us * 1000), timestamp_ns(m_s, m_us * 1000)


@syscall("utimensat")
def utimensat(t, dirfd, path, times, flags):
    """utimensat(2): a NULL path means dirfd itself."""
    dirfd, flags = s32(dirfd), u32(flags)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    atime, mtime = _timespecs(t, times)
    if atime == UTIME_OMIT and mtime == UTIME_OMIT:
        return 0
    if not path:
        if flags & AT_SYMLINK_NOFOLLOW:
            raise SyscallError(errno.EINVAL)
        if dirfd == AT_FDCWD:
            raise SyscallError(errno.EFAULT)
        f = t.fds.get(dirfd)
        if f.dentry is None:
            raise SyscallError(errno.EBADF)
        d = f.dentry
    else:
        d = _resolve_fd_or_path(t, dirfd, path, flags)
    return _set_times(t, d, atime, mtime)


@syscall("utimes")
def utimes(t, path, times):
    """utimes(2)."""
    atime, mtime = _timevals(t, times)
    return _set_times(t, t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path)), atime, mtime)


@syscall("futimesat")
def futimesat(t, dirfd, path, times):
    """futimesat(2)."""
    atime, mtime = _timevals(t, times)
    return _set_times(t, t.kernel.vfs.resolve(t, s32(dirfd), _path(t, path)), atime, mtime)


@syscall("utime")
def utime(t, path, times):
    """utime(2): struct utimbuf {actime, modtime} in seconds."""
    if times:
        a, m = t.mm.read_struct(times, struct.Struct("<qq"))
        atime, mtime = timestamp_ns(a, 0), timestamp_ns(m, 0)
    else:
        atime = mtime = UTIME_NOW
    return _set_times(t, t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, path)), atime, mtime)


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

