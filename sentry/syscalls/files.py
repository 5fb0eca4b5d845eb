"""File syscalls: open/close, read/write and their vector and positional forms,
seek, dup, fcntl and ioctl.  (The stat family, directories, cwd, access and readlink are in
fsinfo.py.)

Each handler decodes its arguments, checks them with early exact errnos,
and leaves the work to the File, Dentry and VFS objects (gVisor's shape).
"""
from __future__ import annotations

import errno
import struct

from sentry.errors import SyscallError
from sentry.syscalls.args import s32, s64, u32
from sentry.syscalls.registry import Support, syscall
from sentry.vfs.file import (MAX_RW, O_ACCMODE, O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_EXCL, O_LARGEFILE,
                             O_NOATIME, O_NOCTTY, O_NOFOLLOW, O_NONBLOCK, O_PATH, O_RDONLY, O_RDWR, O_TMPFILE, O_TRUNC,
                             O_WRONLY, STATUS_FLAGS_SETTABLE)
from sentry.vfs.inode import MAY_EXEC, MAY_READ, MAY_WRITE, may_access
from sentry.vfs.walk import (AT_FDCWD, MAXSYMLINKS, PATH_MAX, RESOLVE_BENEATH, RESOLVE_CACHED, RESOLVE_IN_ROOT,
                             Scope, follow_mounts)

AT_SYMLINK_NOFOLLOW, AT_EACCESS, AT_REMOVEDIR, AT_SYMLINK_FOLLOW = 0x100, 0x200, 0x200, 0x400
AT_NO_AUTOMOUNT, AT_EMPTY_PATH = 0x800, 0x1000
AT_STATX_SYNC_TYPE = 0x6000

TASK_SIZE = 0x7FFFFFFFF000


def _path(t, addr: int) -> bytes:
    return t.mm.cstring(addr, PATH_MAX - 1) if addr else _efault()


def _efault():
    raise SyscallError(errno.EFAULT)


def _rlimit_nofile(t) -> int:
    return t.tg.rlimits[7][0]


# -- open / close -----------------------------------------------------------

def do_open(t, dirfd: int, path: bytes, flags: int, mode: int, resolver=None, _links: int = 0) -> int:
    if not flags & _NOT_PLAIN and flags & O_ACCMODE != 3 and resolver is None:
        # The common open(2): an existing name opened for reading and/or writing, none of
        # O_CREAT, O_TMPFILE, O_PATH, O_TRUNC, O_DIRECTORY, O_NOATIME.  For a regular file the
        # checks below reduce to these two (EACCES, then EROFS); anything else takes them all.
        d = t.kernel.vfs.resolve(t, dirfd, path, not flags & O_NOFOLLOW)
        inode = d.inode
        if inode.mode & S_IFMT != S_IFREG:
            return _open_dentry(t, d, flags, flags & O_ACCMODE, t.tg.creds)
        acc = flags & O_ACCMODE
        creds = t.tg.creds
        if creds.fsuid != 0 and not may_access(inode.stat(), creds, _OPEN_WANT[acc]):
            raise SyscallError(errno.EACCES)
        if acc and d.mount is not None and d.mount.readonly:
            raise SyscallError(errno.EROFS)
        file = inode.open(t, d, flags)
        file.flags = (flags & _NOT_FILE_FLAGS) | O_LARGEFILE
        return t.fds.install(file, flags & O_CLOEXEC, 0, t.tg.rlimits[7][0])
    vfs = resolver if resolver is not None else t.kernel.vfs
    if flags & O_TMPFILE == O_TMPFILE:
        return _open_tmpfile(t, vfs, dirfd, path, flags, mode)
    if flags & O_PATH:
        flags &= O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
    acc = flags & O_ACCMODE
    if acc == 3 and not flags & O_PATH:
        raise SyscallError(errno.EINVAL)
    creds = t.tg.creds
    if flags & O_CREAT:
        if flags & O_DIRECTORY:
            raise SyscallError(errno.EINVAL)
        parent, name = vfs.resolve_parent(t, dirfd, path)
        if name in (b".", b"..") or path.endswith(b"/"):
            raise SyscallError(errno.EISDIR)
        if flags & O_EXCL and name not in parent.children and getattr(parent.inode, "create_excl_finds", False) \
                and not parent.mount.readonly \
                and (creds.fsuid == 0 or may_access(parent.inode.perm_stat(), creds, MAY_WRITE | MAY_EXEC)):
            # O_CREAT|O_EXCL of a name the cache does not know, where the create would succeed if
            # the name is free: the filesystem's exclusive create answers EEXIST itself, so the
            # lookup's round trip is spared.  (Where EROFS or EACCES would follow, the lookup
            # runs first: an existing name is EEXIST before those, as in Linux.)
            child = None
        else:
            child = parent.child(name)
        if child is not None:
            if flags & O_EXCL:
                raise SyscallError(errno.EEXIST)
            d = follow_mounts(child)
            if d.inode.is_symlink:
                if flags & O_NOFOLLOW:
                    raise SyscallError(errno.ELOOP)
                try:
                    d = vfs.resolve(t, dirfd, path, follow=True)
                except SyscallError as e:
                    if e.errno != errno.ENOENT or resolver is not None:
                        raise
                    # A dangling symlink: O_CREAT makes its target (open(2)), which must not exist.
                    if _links >= MAXSYMLINKS:
                        raise SyscallError(errno.ELOOP) from None
                    target = d.inode.readlink()
                    if target[:1] != b"/":
                        target = parent.path(t.tg.fs.root).rstrip(b"/") + b"/" + target
                    return do_open(t, AT_FDCWD, target, flags, mode, None, _links + 1)
        else:
            if parent.mount.readonly:
                raise SyscallError(errno.EROFS)
            if creds.fsuid != 0 and not may_access(parent.inode.perm_stat(), creds, MAY_WRITE | MAY_EXEC):
                raise SyscallError(errno.EACCES)
            create = getattr(parent.inode, "create", None)
            if create is None:
                raise SyscallError(errno.EROFS if parent.mount.readonly else errno.EPERM)
            file = create(t, parent, name, flags, mode & 0o7777 & ~t.tg.fs.umask)
            file.flags = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_CLOEXEC)) | O_LARGEFILE
            return t.fds.install(file, bool(flags & O_CLOEXEC), limit=_rlimit_nofile(t))
    else:
        d = vfs.resolve(t, dirfd, path, not flags & O_NOFOLLOW)
    return _open_dentry(t, d, flags, acc, creds)


def _open_dentry(t, d, flags: int, acc: int, creds) -> int:
    """do_open once the name is resolved to an existing file `d`: the checks, the open, the fd."""
    inode = d.inode
    fmt = inode.mode & S_IFMT
    if fmt == S_IFLNK and not flags & O_PATH:
        raise SyscallError(errno.ENOTDIR if flags & O_DIRECTORY else errno.ELOOP)
    if flags & O_DIRECTORY and fmt != S_IFDIR:
        raise SyscallError(errno.ENOTDIR)
    if fmt == S_IFDIR and not flags & O_PATH and (acc != O_RDONLY or flags & (O_CREAT | O_TRUNC)):
        raise SyscallError(errno.EISDIR)
    if not flags & O_PATH:
        want = _OPEN_WANT[acc]
        if flags & O_TRUNC:
            want |= MAY_WRITE
        # Root passes every read/write check (may_access: only exec needs an x bit).
        if want and creds.fsuid != 0 and not may_access(inode.stat(), creds, want):
            raise SyscallError(errno.EACCES)
        if flags & O_NOATIME and creds.fsuid not in (0, inode.stat().uid):
            raise SyscallError(errno.EPERM)
        if want & MAY_WRITE and d.mount is not None and d.mount.readonly and fmt not in _NOT_ON_THE_MOUNT:
            raise SyscallError(errno.EROFS)
    file = inode.open(t, d, flags)
    file.flags = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_CLOEXEC)) | O_LARGEFILE
    return t.fds.install(file, flags & O_CLOEXEC, 0, t.tg.rlimits[7][0])


S_IFMT, S_IFDIR, S_IFLNK, S_IFREG = 0o170000, 0o040000, 0o120000, 0o100000
# Flags that take do_open off its fast path (0o20000000: O_TMPFILE's own bit).
_NOT_PLAIN = O_CREAT | O_PATH | 0o20000000 | O_TRUNC | O_DIRECTORY | O_NOATIME
_NOT_FILE_FLAGS = ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_CLOEXEC)     # open-time only: not kept in f_flags
_OPEN_WANT = (MAY_READ, MAY_WRITE, MAY_READ | MAY_WRITE, 0)     # by O_ACCMODE (3: O_PATH only)
_NOT_ON_THE_MOUNT = (0o020000, 0o060000, 0o010000, 0o140000)    # devices, fifos, sockets: no EROFS


def _open_tmpfile(t, vfs, dirfd: int, path: bytes, flags: int, mode: int) -> int:
    """O_TMPFILE: an unnamed file in a directory, linkable later with linkat(AT_EMPTY_PATH) unless
    O_EXCL.  tmpfs has it; the Gofer protocol has no such op, so the rootfs says EOPNOTSUPP (as a
    filesystem without ->tmpfile does)."""
    if flags & O_ACCMODE not in (O_WRONLY, O_RDWR):
        raise SyscallError(errno.EINVAL)
    d = vfs.resolve(t, dirfd, path, follow=True)
    if not d.inode.is_dir:
        raise SyscallError(errno.ENOTDIR)
    if d.mount is not None and d.mount.readonly:
        raise SyscallError(errno.EROFS)
    creds = t.tg.creds
    if creds.fsuid != 0 and not may_access(d.inode.perm_stat(), creds, MAY_WRITE | MAY_EXEC):
        raise SyscallError(errno.EACCES)
    make = getattr(d.inode, "tmpfile", None)
    if make is None:
        raise SyscallError(errno.EOPNOTSUPP)
    file = make(t, d, flags, mode & 0o7777 & ~t.tg.fs.umask)
    file.flags = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_CLOEXEC | O_DIRECTORY)) | O_LARGEFILE
    return t.fds.install(file, bool(flags & O_CLOEXEC), limit=_rlimit_nofile(t))


@syscall("open")
def open_(t, path, flags, mode):
    """open(2)."""
    return do_open(t, AT_FDCWD, t.mm.cstring(path, PATH_MAX - 1) if path else _efault(), flags & 0xFFFFFFFF,
                   mode & 0xFFFFFFFF)


@syscall("openat")
def openat(t, dirfd, path, flags, mode):
    """openat(2).  (Argument decoding inlined: s32(dirfd), _path(t, path), u32(flags), u32(mode).)"""
    dirfd &= 0xFFFFFFFF
    if dirfd & 0x80000000:
        dirfd -= 0x100000000
    return do_open(t, dirfd, t.mm.cstring(path, PATH_MAX - 1) if path else _efault(), flags & 0xFFFFFFFF,
                   mode & 0xFFFFFFFF)


VALID_OPEN_FLAGS = (O_ACCMODE | O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_APPEND | O_NONBLOCK | 0o10000 | 0o20000
                    | 0o40000 | O_LARGEFILE | O_DIRECTORY | O_NOFOLLOW | 0o1000000 | O_CLOEXEC | 0o4010000
                    | O_PATH | O_TMPFILE)
OPEN_HOW = struct.Struct("<QQQ")


@syscall("openat2", nr=437)
def openat2(t, dirfd, path, how, size):
    """openat2(2): open_how {flags, mode, resolve}, checked strictly; RESOLVE_* in `Resolver`."""
    if size < OPEN_HOW.size:
        raise SyscallError(errno.EINVAL)
    if size > 4096:
        raise SyscallError(errno.E2BIG)
    raw = t.mm.read(how, size)
    if any(raw[OPEN_HOW.size:]):
        raise SyscallError(errno.E2BIG)
    flags, mode, resolve = OPEN_HOW.unpack_from(raw)
    if flags & ~VALID_OPEN_FLAGS:
        raise SyscallError(errno.EINVAL)
    if mode and not (flags & O_CREAT or flags & O_TMPFILE == O_TMPFILE):
        raise SyscallError(errno.EINVAL)
    if mode & ~0o7777 or resolve & ~0x3F:
        raise SyscallError(errno.EINVAL)
    if resolve & RESOLVE_BENEATH and resolve & RESOLVE_IN_ROOT:
        raise SyscallError(errno.EINVAL)
    if flags & O_PATH and flags & ~(O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC):
        raise SyscallError(errno.EINVAL)
    if resolve & RESOLVE_CACHED and flags & (O_CREAT | O_TRUNC | O_TMPFILE):
        raise SyscallError(errno.EAGAIN)
    dirfd = s32(dirfd)
    p = _path(t, path)
    resolver = Resolver(t, dirfd, p, resolve) if resolve & ~RESOLVE_CACHED else None
    return do_open(t, dirfd, p, flags, mode, resolver)


class Resolver:
    """openat2's view of the VFS: the one walker (`VFS.resolve`) under a `Scope` of RESOLVE_*
    rules.  `do_open` calls `resolve`/`resolve_parent` on it as it would on the VFS."""

    def __init__(self, t, dirfd: int, path: bytes, resolve: int) -> None:
        self.vfs = t.kernel.vfs
        self.scope = Scope.for_openat2(self.vfs, t, dirfd, resolve)

    def resolve(self, t, dirfd: int, path: bytes, follow: bool = True, empty_ok: bool = False):
        return self.vfs.resolve(t, dirfd, path, follow, empty_ok, scope=self.scope)

    def resolve_parent(self, t, dirfd: int, path: bytes):
        return self.vfs.resolve_parent(t, dirfd, path, scope=self.scope)


@syscall("creat")
def creat(t, path, mode):
    """creat(2): open(path, O_CREAT|O_WRONLY|O_TRUNC, mode)."""
    return do_open(t, AT_FDCWD, _path(t, path), O_CREAT | O_WRONLY | O_TRUNC, u32(mode))


@syscall("close")
def close(t, fd):
    """close(2): also drops the process's POSIX record locks on the file (fcntl(2))."""
    # The fd as an unsigned int: a negative one (s32) is never open either, EBADF all the same.
    f = t.fds.close(fd & 0xFFFFFFFF)
    flush = getattr(f, "flush", None)       # a file that acts on its owner's close (mqueue)
    if flush is not None:
        flush(t)
    d = f.dentry
    if d is not None and t.kernel.file_locks.tables:    # no lock is held anywhere: nothing to drop
        tab = t.kernel.file_locks.existing(d.inode)
        if tab is not None:
            tab.release_owner(t.tg)
            if f.refs == 0:
                tab.release_owner(f)
    return 0


# -- read / write -----------------------------------------------------------

def _clamp(count: int, buf: int) -> int:
    """access_ok(buf, count) on the caller's count (EFAULT past the user address space: so a
    count of 2^63 or more is EFAULT, never rw_verify_area's EINVAL), then at most MAX_RW."""
    if buf + count > TASK_SIZE:
        raise SyscallError(errno.EFAULT)
    return min(count, MAX_RW)


def _transfer(t, fd: int, buf: int, count: int, to_app: bool) -> int:
    """read(2) and write(2): check, clamp, then move bytes between the file and application memory."""
    f = t.fds.get_io(s32(fd))
    if not (f.readable if to_app else f.writable):
        raise SyscallError(errno.EBADF)
    count = _clamp(count, buf)
    if to_app and count < f.min_read:
        raise SyscallError(errno.EINVAL)
    if count == 0:
        return 0
    try:
        views = t.mm.iovecs(buf, count, to_app)
    except SyscallError:
        # Linux faults only if bytes would move (EOF, /dev/null): the file decides.
        return f.transfer_without_buffer(t, not to_app, count)
    return f.read(t, views) if to_app else f.write(t, views)


@syscall("read")
def read(t, fd, buf, count):
    """read(2)."""
    return _transfer(t, fd, buf, count, True)


@syscall("write")
def write(t, fd, buf, count):
    """write(2)."""
    return _transfer(t, fd, buf, count, False)


def _iov_views(t, iov: int, iovcnt: int, for_write_to_app: bool) -> list:
    cnt = s32(iovcnt)
    if cnt < 0 or cnt > 1024:
        raise SyscallError(errno.EINVAL)
    views = []
    total = 0
    for base, ln in t.mm.read_iovec(iov, cnt):
        if ln == 0:
            continue
        ln = min(ln, MAX_RW - total)
        if ln <= 0:
            break
        views += t.mm.iovecs(base, ln, for_write_to_app)
        total += ln
    return views


@syscall("readv")
def readv(t, fd, iov, iovcnt):
    """readv(2)."""
    f = t.fds.get_io(s32(fd))
    if not f.readable:
        raise SyscallError(errno.EBADF)
    views = _iov_views(t, iov, iovcnt, True)
    return f.read(t, views) if views else 0


@syscall("writev")
def writev(t, fd, iov, iovcnt):
    """writev(2)."""
    f = t.fds.get_io(s32(fd))
    if not f.writable:
        raise SyscallError(errno.EBADF)
    views = _iov_views(t, iov, iovcnt, False)
    return f.write(t, views) if views else 0


@syscall("pread64")
def pread64(t, fd, buf, count, offset):
    """pread64(2)."""
    f = t.fds.get_io(s32(fd))
    if not f.readable:
        raise SyscallError(errno.EBADF)
    offset = s64(offset)
    if offset < 0:
        raise SyscallError(errno.EINVAL)
    count = _clamp(count, buf)
    if f.dentry is not None and f.dentry.inode.is_dir:
        raise SyscallError(errno.EISDIR)
    if count == 0:
        return f.pread(t, [], offset)
    return f.pread(t, t.mm.iovecs(buf, count, True), offset)


@syscall("pwrite64")
def pwrite64(t, fd, buf, count, offset):
    """pwrite64(2)."""
    f = t.fds.get_io(s32(fd))
    if not f.writable:
        raise SyscallError(errno.EBADF)
    offset = s64(offset)
    if offset < 0:
        raise SyscallError(errno.EINVAL)
    count = _clamp(count, buf)
    if count == 0:
        return f.pwrite(t, [], offset)
    return f.pwrite(t, t.mm.iovecs(buf, count, False), offset)


@syscall("lseek")
def lseek(t, fd, offset, whence):
    """lseek(2)."""
    f = t.fds.get_io(s32(fd))
    whence = u32(whence)
    if whence > 4:
        raise SyscallError(errno.EINVAL)
    return f.seek(s64(offset), whence)


# -- descriptors ------------------------------------------------------------

@syscall("dup")
def dup(t, fd):
    """dup(2)."""
    f = t.fds.get(s32(fd))
    return t.fds.install(f, False, limit=_rlimit_nofile(t))


@syscall("dup2")
def dup2(t, oldfd, newfd):
    """dup2(2)."""
    oldfd, newfd = s32(oldfd), s32(newfd)
    f = t.fds.get(oldfd)
    if oldfd == newfd:
        return newfd
    if newfd < 0 or newfd >= _rlimit_nofile(t):
        raise SyscallError(errno.EBADF)
    t.fds.install_at(newfd, f, False)
    return newfd


@syscall("dup3")
def dup3(t, oldfd, newfd, flags):
    """dup3(2)."""
    oldfd, newfd, flags = s32(oldfd), s32(newfd), u32(flags)
    if flags & ~O_CLOEXEC:
        raise SyscallError(errno.EINVAL)
    if oldfd == newfd:
        raise SyscallError(errno.EINVAL)
    f = t.fds.get(oldfd)
    if newfd < 0 or newfd >= _rlimit_nofile(t):
        raise SyscallError(errno.EBADF)
    t.fds.install_at(newfd, f, bool(flags & O_CLOEXEC))
    return newfd


F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_DUPFD_CLOEXEC = 1030
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
F_ADD_SEALS, F_GET_SEALS = 1033, 1034
FD_CLOEXEC = 1


@syscall("fcntl", Support.PARTIAL, "F_DUPFD F_DUPFD_CLOEXEC F_GETFD F_SETFD F_GETFL F_SETFL, POSIX and OFD record locks (no EDEADLK detection); pipe sizes come later")
def fcntl(t, fd, cmd, arg):
    """fcntl(2)."""
    fd, cmd = s32(fd), s32(cmd)
    f = t.fds.get(fd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        minfd = s32(arg)
        if minfd < 0 or minfd >= _rlimit_nofile(t):
            raise SyscallError(errno.EINVAL)
        return t.fds.install(f, cmd == F_DUPFD_CLOEXEC, minfd=minfd, limit=_rlimit_nofile(t))
    if cmd == F_GETFD:
        return FD_CLOEXEC if fd in t.fds.cloexec else 0
    if cmd == F_SETFD:
        if arg & FD_CLOEXEC:
            t.fds.cloexec.add(fd)
        else:
            t.fds.cloexec.discard(fd)
        return 0
    if cmd == F_GETFL:
        return f.flags
    if cmd in (F_ADD_SEALS, F_GET_SEALS):
        inode = getattr(f, "inode", None)
        if inode is None or not getattr(inode, "memfd", False):
            raise SyscallError(errno.EINVAL)
        if cmd == F_GET_SEALS:
            return inode.seals
        seals = u32(arg)
        if seals & ~0x3F:
            raise SyscallError(errno.EINVAL)
        if not f.writable:
            raise SyscallError(errno.EPERM)
        if inode.seals & 0x1:
            raise SyscallError(errno.EPERM)               # F_SEAL_SEAL
        if seals & 0x8 and inode.shared_map is not None and inode.shared_map.writable:
            raise SyscallError(errno.EBUSY)               # writable shared mappings exist
        inode.seals |= seals
        return 0
    if cmd in (F_SETPIPE_SZ, F_GETPIPE_SZ):
        from sentry.pipe import PipeFile
        if not isinstance(f, PipeFile):
            raise SyscallError(errno.EBADF)
        return f.pipe.capacity if cmd == F_GETPIPE_SZ else f.set_size(s32(arg))
    if cmd == F_SETFL:
        if f.flags & O_PATH:
            raise SyscallError(errno.EBADF)
        f.flags = (f.flags & ~STATUS_FLAGS_SETTABLE) | (u32(arg) & STATUS_FLAGS_SETTABLE)
        return 0
    if cmd in _LOCK_CMDS:
        return _record_lock(t, f, cmd, arg)
    raise SyscallError(errno.EINVAL)


F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 5, 6, 7, 36, 37, 38
_LOCK_CMDS = frozenset({F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW})
FLOCK = struct.Struct("<hhxxxxqqi4x")


def _record_lock(t, f, cmd: int, arg: int) -> int:
    """POSIX (process-owned) and OFD (open-file-owned) record locks; see sentry/vfs/lock.py."""
    from sentry.vfs import lock
    if f.flags & O_PATH:
        raise SyscallError(errno.EBADF)
    ltype, whence, start, length, pid = t.mm.read_struct(arg, FLOCK)
    ofd = cmd >= F_OFD_GETLK
    if ofd and pid != 0:
        raise SyscallError(errno.EINVAL)
    if ltype not in (lock.F_RDLCK, lock.F_WRLCK, lock.F_UNLCK) or whence not in (0, 1, 2):
        raise SyscallError(errno.EINVAL)
    if f.dentry is None:
        raise SyscallError(errno.EINVAL)
    if whence == 1:
        start += f.offset
    elif whence == 2:
        start += f.stat().size
    if length > 0:
        end = start + length - 1
    elif length < 0:
        start, end = start + length, start - 1
    else:
        end = lock.OFFSET_MAX
    if start < 0 or end < start - 1:
        raise SyscallError(errno.EINVAL)
    tab = t.kernel.file_locks.table_for(f.dentry.inode)
    owner = f if ofd else t.tg
    if cmd in (F_GETLK, F_OFD_GETLK):
        if ltype == lock.F_UNLCK:
            raise SyscallError(errno.EINVAL)
        c = tab.conflict(owner, ltype, start, end)
        if c is None:
            t.mm.write_struct(arg, FLOCK, lock.F_UNLCK, whence, start, length, pid)
        else:
            clen = 0 if c.end == lock.OFFSET_MAX else c.end - c.start + 1
            t.mm.write_struct(arg, FLOCK, c.type, 0, c.start, clen, c.pid)
        return 0
    if ltype == lock.F_RDLCK and not f.readable or ltype == lock.F_WRLCK and not f.writable:
        raise SyscallError(errno.EBADF)
    if ltype != lock.F_UNLCK and tab.conflict(owner, ltype, start, end) is not None:
        if cmd in (F_SETLK, F_OFD_SETLK):
            raise SyscallError(errno.EAGAIN)
        tab.block(t)
    tab.set_record(owner, ltype, start, end, -1 if ofd else t.tg.tgid)
    return 0


FIONCLEX, FIOCLEX, FIONBIO, FIOASYNC = 0x5450, 0x5451, 0x5421, 0x5452


@syscall("ioctl", Support.PARTIAL, "FIOCLEX FIONCLEX FIONBIO generically; TCGETS/TIOCGWINSZ on terminals, ENOTTY elsewhere")
def ioctl(t, fd, request, arg):
    """ioctl(2)."""
    fd, request = s32(fd), u32(request)
    f = t.fds.get_io(fd)
    if request == FIOCLEX:
        t.fds.cloexec.add(fd)
        return 0
    if request == FIONCLEX:
        t.fds.cloexec.discard(fd)
        return 0
    if request == FIONBIO:
        on = t.mm.read_u32(arg)
        f.flags = (f.flags | O_NONBLOCK) if on else (f.flags & ~O_NONBLOCK)
        return 0
    return f.ioctl(t, request, arg)


CLOSE_RANGE_UNSHARE, CLOSE_RANGE_CLOEXEC = 2, 4


@syscall("close_range", nr=436)
def close_range(t, first, last, flags):
    """close_range(2)."""
    first, last, flags = u32(first), u32(last), u32(flags)
    if flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) or first > last:
        raise SyscallError(errno.EINVAL)
    for fd in [fd for fd in t.fds.files if first <= fd <= last]:
        if flags & CLOSE_RANGE_CLOEXEC:
            t.fds.cloexec.add(fd)
        else:
            t.fds.close(fd)
    return 0
