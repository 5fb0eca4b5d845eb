"""The extended attribute syscalls: get/set/list/remove, each by path, by path without
following a symlink (l*), and by fd (f*).

What a file supports is its filesystem's business: an inode with `getxattr` /
`setxattr` / `listxattr` / `removexattr` keeps attributes (tmpfs, the overlay's
upper layer); any other answers as a filesystem without xattr support does on
Linux: no attribute to read (ENODATA), an empty list, and EOPNOTSUPP to set.
The Gofer protocol carries no xattrs, so rootfs files are of that second kind.
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError
from sentry.syscalls.args import s32, u32
from sentry.syscalls.files import _path
from sentry.syscalls.fsops import _check_writable_mount
from sentry.syscalls.registry import Support, syscall
from sentry.vfs.inode import Dentry
from sentry.vfs.walk import AT_FDCWD


# -- extended attributes ------------------------------------------------------------

XATTR_NAME_MAX, XATTR_SIZE_MAX = 255, 65536
_XATTR_PREFIXES = (b"user.", b"trusted.", b"security.", b"system.")


def _xattr_name(t, addr: int) -> bytes:
    name = t.mm.cstring(addr, XATTR_NAME_MAX + 1) if addr else _efault()
    if not name or len(name) > XATTR_NAME_MAX:
        raise SyscallError(errno.ERANGE)
    if not name.startswith(_XATTR_PREFIXES):
        raise SyscallError(errno.EOPNOTSUPP)
    return name


def _efault():
    raise SyscallError(errno.EFAULT)


def _xattr_target(t, kind: str, arg: int, follow: bool) -> Dentry:
    if kind == "f":
        f = t.fds.get_io(s32(arg))
        if f.dentry is None:
            raise SyscallError(errno.EOPNOTSUPP)
        return f.dentry
    return t.kernel.vfs.resolve(t, AT_FDCWD, _path(t, arg), follow=follow)


def _getxattr(t, d: Dentry, name: bytes, value: int, size: int) -> int:
    fn = getattr(d.inode, "getxattr", None)
    if fn is None:
        raise SyscallError(errno.ENODATA)
    data = fn(name)
    if size == 0:
        return len(data)
    if len(data) > size:
        raise SyscallError(errno.ERANGE)
    t.mm.write(value, data)
    return len(data)


def _listxattr(t, d: Dentry, lst: int, size: int) -> int:
    fn = getattr(d.inode, "listxattr", None)
    names = fn() if fn is not None else []
    data = b"".join(n + b"\0" for n in names)
    if size == 0:
        return len(data)
    if len(data) > size:
        raise SyscallError(errno.ERANGE)
    t.mm.write(lst, data)
    return len(data)


def _setxattr(t, d: Dentry, name: bytes, value: int, size: int, flags: int) -> int:
    if flags & ~3:
        raise SyscallError(errno.EINVAL)
    if size > XATTR_SIZE_MAX:
        raise SyscallError(errno.E2BIG)
    _check_writable_mount(d)
    fn = getattr(d.inode, "setxattr", None)
    if fn is None:
        # The Gofer protocol carries no xattrs (as gVisor's default): refused, not faked.
        raise SyscallError(errno.EOPNOTSUPP)
    fn(t, name, t.mm.read(value, size) if size else b"", flags)
    return 0


def _removexattr(t, d: Dentry, name: bytes) -> int:
    _check_writable_mount(d)
    fn = getattr(d.inode, "removexattr", None)
    if fn is None:
        raise SyscallError(errno.ENODATA)
    fn(t, name)
    return 0


def _register_xattr() -> None:
    for prefix, kind, follow in (("", "p", True), ("l", "p", False), ("f", "f", True)):
        def make(kind=kind, follow=follow, prefix=prefix):
            def getxattr_(t, target, name, value, size):
                d = _xattr_target(t, kind, target, follow)
                return _getxattr(t, d, _xattr_name(t, name), value, u32(size) if size < (1 << 32) else size)

            def setxattr_(t, target, name, value, size, flags):
                d = _xattr_target(t, kind, target, follow)
                return _setxattr(t, d, _xattr_name(t, name), value, size, s32(flags))

            def listxattr_(t, target, lst, size):
                return _listxattr(t, _xattr_target(t, kind, target, follow), lst, size)

            def removexattr_(t, target, name):
                d = _xattr_target(t, kind, target, follow)
                return _removexattr(t, d, _xattr_name(t, name))
            note = "no extended attributes on gofer files (set is EOPNOTSUPP, get ENODATA); tmpfs keeps them"
            syscall(prefix + "getxattr", Support.PARTIAL, note)(getxattr_)
            syscall(prefix + "setxattr", Support.PARTIAL, note)(setxattr_)
            syscall(prefix + "listxattr", Support.PARTIAL, note)(listxattr_)
            syscall(prefix + "removexattr", Support.PARTIAL, note)(removexattr_)
        make()


_register_xattr()
