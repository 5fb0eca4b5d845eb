"""Per-syscall policies, --compat recording and syscall counting: hooks on the dispatch table.

A policy is an object living in the Sentry (for `runsc_py.Sandbox(policy=obj)` it crossed the
fork; for `runsc-py --policy FILE` it is a `FilePolicy` built from the file).  Its methods name
the syscalls it wants to see: `openat(self, task, path, flags)`, `connect(self, task, addr)`,
`execve(self, task, path, argv)`, any other syscall by name, or the catch-all
`on_syscall(self, task, name, args)` (limited to the names in its `syscalls` attribute, if it has
one).  Each call gets arguments already decoded -- paths resolved in the sandbox (symlinks and
`..` followed, relative to the task's cwd or dirfd), socket addresses parsed -- and returns a
decision: allow (None), `deny(errno)`, `KILL` or `AUDIT` (allow and log a JSON line).

Why a hook table: at start-up `install` copies the kernel's dispatch table and wraps only the
entries a policy (or --compat, or counting) names.  Every other syscall takes the very same
(handler, arity) tuple as without a policy -- no test, no lookup, nothing (bench/policy_cost.py).

Why it cannot weaken the sandbox: the hook runs in the Sentry before the handler and may only
refuse; an allowed call then runs the handler with all its own checks.  Arguments the Sentry
itself rejects (a bad pointer, a bad fd, a path that does not resolve) are not shown to the
policy: the handler answers them with its own errno, so that error comes first, as the Sentry's
checks come first.  A denial returns exactly its errno and changes nothing else; a policy that
raises is a denial (EPERM), logged.  A re-run of a parked call (a blocking connect) is not
decided again.

A policy runs inside the confined Sentry, in its one event loop: it must answer quickly and
may not open files or sockets (the Sentry's seccomp filter kills it for that); it logs by
returning AUDIT (the JSON lines go to an fd opened before confinement).
"""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import struct
import time
from typing import Any, Callable, NamedTuple

from sentry.errors import SyscallError

# -- decisions ------------------------------------------------------------------------------


class Decision(NamedTuple):
    action: str                  # "allow" | "deny" | "kill" | "audit"
    errno: int = 0


ALLOW = Decision("allow")
KILL = Decision("kill")
AUDIT = Decision("audit")


def deny(err: int = errno.EPERM) -> Decision:
    """Refuse the call: the application gets -err, nothing else happens."""
    if not isinstance(err, int) or not 0 < err < 4096:
        raise ValueError(f"deny() needs an errno between 1 and 4095, not {err!r}")
    return Decision("deny", err)


def _decision(value: Any) -> Decision:
    if value is None or value is True:
        return ALLOW
    if isinstance(value, Decision):
        return value
    if value is False:
        return Decision("deny", errno.EPERM)
    if isinstance(value, int) and 0 < value < 4096:
        return Decision("deny", value)
    if isinstance(value, str) and value in ("allow", "audit", "kill", "deny"):
        return Decision(value, errno.EPERM if value == "deny" else 0)
    raise TypeError(f"a policy returned {value!r}: expected None, ALLOW, AUDIT, KILL or deny(errno)")


class TaskView(NamedTuple):
    """What a policy sees of the calling thread (sandbox ids, never host ones)."""
    pid: int
    tid: int
    ppid: int
    comm: str
    uid: int
    gid: int


class SockAddr(NamedTuple):
    family: str                  # "inet" | "inet6" | "unix" | "AF_<n>"
    host: str                    # address, or the socket path ("@name" for the abstract namespace)
    port: int | None


def _view(t) -> TaskView:
    tg = t.tg
    return TaskView(tg.tgid, t.tid, tg.parent.tgid if tg.parent is not None else 0,
                    tg.comm.decode("utf-8", "replace"), tg.creds.euid, tg.creds.egid)


# -- argument decoding -------------------------------------------------------------------------

AT_FDCWD = -100
O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC, O_NOFOLLOW = 0o1, 0o2, 0o100, 0o200, 0o1000, 0o400000
AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_EMPTY_PATH = 0x100, 0x200, 0x1000
ARGV_BYTES = 256 * 1024


def _s32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


class Unresolved(Exception):
    """The Sentry's own checks fail on these arguments: the handler answers, the policy is not asked."""


def _cstr(t, addr: int) -> bytes:
    if not addr:
        raise Unresolved
    try:
        return t.mm.cstring(addr, 4095)
    except SyscallError:
        raise Unresolved from None


def resolve_path(t, dirfd: int, path: bytes, follow: bool, must_exist: bool = False) -> str:
    """The absolute path `path` names in the task's view: directories and (if `follow`) the last
    component's symlinks followed, as the handler's walk will; a missing last component is named
    as it would be created (a dangling symlink's target, for O_CREAT)."""
    vfs = t.kernel.vfs
    root = t.tg.fs.root
    try:                                # the common case: the name exists (the walk's path cache)
        return os.fsdecode(vfs.resolve(t, dirfd, path, follow).path(root))
    except SyscallError as e:
        if e.errno != errno.ENOENT or must_exist:
            raise Unresolved from None      # the handler's own ENOENT comes first
    for _ in range(40):
        try:
            parent, name = vfs.resolve_parent(t, dirfd, path)
        except SyscallError:
            raise Unresolved from None
        base = parent.path(root)
        if name in (b".", b""):
            return os.fsdecode(base)
        if name == b"..":
            return os.fsdecode(os.path.dirname(base.rstrip(b"/")) or b"/")
        full = base.rstrip(b"/") + b"/" + name
        try:
            child = parent.child(name)
        except SyscallError:
            raise Unresolved from None
        if child is None or not follow or not child.inode.is_symlink:
            if child is not None and child.mounted is not None:
                from sentry.vfs.walk import follow_mounts
                return os.fsdecode(follow_mounts(child).path(root))
            return os.fsdecode(full)
        try:
            return os.fsdecode(vfs.resolve(t, dirfd, path, follow=True).path(root))
        except SyscallError as e:
            if e.errno != errno.ENOENT:
                raise Unresolved from None
        target = getattr(child.inode, "readlink", lambda: b"")()       # dangling: its target
        if not target:
            raise Unresolved
        path, dirfd = (target if target[:1] == b"/" else base.rstrip(b"/") + b"/" + target), AT_FDCWD
    raise Unresolved


def _fd_path(t, fd: int) -> str:
    """The path of the file open at `fd` (fchmod, fexecve...): what a path rule judges."""
    try:
        d = t.fds.get(_s32(fd)).dentry
    except SyscallError:
        raise Unresolved from None
    if d is None:
        raise Unresolved                        # a pipe, socket...: no path
    return os.fsdecode(d.path(t.tg.fs.root))


def _path_arg(t, args, dirfd_i: int | None, path_i: int, follow: bool, must_exist: bool = False) -> str:
    dirfd = AT_FDCWD if dirfd_i is None else _s32(args[dirfd_i])
    return resolve_path(t, dirfd, _cstr(t, args[path_i]), follow, must_exist)


def parse_sockaddr(raw: bytes) -> SockAddr:
    if len(raw) < 2:
        raise Unresolved
    fam = struct.unpack_from("<H", raw)[0]
    if fam == socket.AF_INET and len(raw) >= 8:
        return SockAddr("inet", socket.inet_ntop(socket.AF_INET, raw[4:8]), struct.unpack_from(">H", raw, 2)[0])
    if fam == socket.AF_INET6 and len(raw) >= 24:
        return SockAddr("inet6", socket.inet_ntop(socket.AF_INET6, raw[8:24]), struct.unpack_from(">H", raw, 2)[0])
    if fam == socket.AF_UNIX:
        name = raw[2:]
        if name[:1] == b"\0":
            return SockAddr("unix", "@" + name[1:].decode("utf-8", "backslashreplace"), None)
        return SockAddr("unix", name.split(b"\0", 1)[0].decode("utf-8", "backslashreplace"), None)
    return SockAddr(f"AF_{fam}", "", None)


def _bind_addr(t, a) -> dict:
    """bind's address; a unix socket path is resolved (binding creates a file there)."""
    addr = _addr_arg(t, a[0], a[1], a[2])
    if addr.family == "unix" and addr.host and not addr.host.startswith("@"):
        addr = addr._replace(host=resolve_path(t, AT_FDCWD, os.fsencode(addr.host), False))
    return {"addr": addr}


def _dec_fd(t, a):
    return {"path": _fd_path(t, a[0])}


def _dec_utimensat(t, a):
    if not a[1]:
        return {"path": _fd_path(t, a[0])}
    return {"path": resolve_path(t, _s32(a[0]), _cstr(t, a[1]), not a[3] & AT_SYMLINK_NOFOLLOW)}


def _addr_arg(t, fd: int, addr: int, length: int) -> SockAddr:
    from sentry.syscalls.sockets import _sock
    try:
        _sock(t, fd)                        # EBADF, ENOTSOCK: the handler's answers come first
    except SyscallError:
        raise Unresolved from None
    length = _s32(length)
    if not addr or length < 2 or length > 128:
        raise Unresolved
    try:
        raw = t.mm.read(addr, length)
    except SyscallError:
        raise Unresolved from None
    return parse_sockaddr(raw)


def _argv(t, addr: int) -> list[str]:
    """execve's argv for the policy, never an excuse to skip it: at most ARGV_BYTES (a hostile
    argv must not fill the Sentry's memory), and what cannot be read ends the list with "..."
    (the handler then applies the real rules: EFAULT, E2BIG)."""
    if not addr:
        return []                           # argv NULL: an empty list, as Linux takes it
    out: list[str] = []
    left = ARGV_BYTES
    while len(out) < 4096:
        try:
            p = t.mm.read_u64(addr)
            if not p:
                return out
            arg = t.mm.cstring(p, min(131072, left))
        except SyscallError:
            break
        left -= len(arg) + 1
        out.append(arg.decode("utf-8", "backslashreplace"))
        if left <= 0:
            break
        addr += 8
    out.append("...")
    return out


def _open_flags(name: str, t, a) -> int:
    if name == "creat":
        return O_CREAT | O_WRONLY | O_TRUNC
    if name == "open":
        return a[1] & 0xFFFFFFFF
    if name == "openat2":
        try:
            return struct.unpack("<Q", t.mm.read(a[2], 8))[0]
        except SyscallError:
            raise Unresolved from None
    return a[2] & 0xFFFFFFFF


def _dec_open(name):
    where = (None, 0) if name in ("open", "creat") else (0, 1)

    def dec(t, a):
        flags = _open_flags(name, t, a)
        follow = not flags & O_NOFOLLOW and not (flags & O_CREAT and flags & O_EXCL)
        return {"path": _path_arg(t, a, where[0], where[1], follow, not flags & O_CREAT), "flags": flags}
    return dec


def _dec_paths(spec, keys=("path",), follow=False):
    def dec(t, a):
        return {k: _path_arg(t, a, d, p, follow) for k, (d, p) in zip(keys, spec)}
    return dec


def _dec_exec(at: bool):
    def dec(t, a):
        if at:
            raw = _cstr(t, a[1])
            if not raw:
                if not a[4] & AT_EMPTY_PATH:
                    raise Unresolved            # ENOENT, the handler's
                path = _fd_path(t, a[0])        # fexecve: the file open at the fd
            else:
                path = resolve_path(t, _s32(a[0]), raw, not a[4] & AT_SYMLINK_NOFOLLOW, True)
            argv = _argv(t, a[2])
        else:
            path = _path_arg(t, a, None, 0, True, True)
            argv = _argv(t, a[1])
        return {"path": path, "argv": argv}
    return dec


def _dec_sendmsg(t, a):
    try:
        hdr = t.mm.read(a[1], 16)
    except SyscallError:
        raise Unresolved from None
    name, namelen = struct.unpack("<QI4x", hdr)
    if not name:
        raise Unresolved
    return {"addr": _addr_arg(t, a[0], name, namelen)}


# name -> (the policy method that covers it, the decoder giving its keyword arguments)
DECODERS: dict[str, tuple[str, Callable]] = {
    "open": ("openat", _dec_open("open")), "openat": ("openat", _dec_open("openat")),
    "openat2": ("openat", _dec_open("openat2")), "creat": ("openat", _dec_open("creat")),
    "execve": ("execve", _dec_exec(False)), "execveat": ("execve", _dec_exec(True)),
    "connect": ("connect", lambda t, a: {"addr": _addr_arg(t, a[0], a[1], a[2])}),
    "bind": ("bind", _bind_addr),
    "sendto": ("sendto", lambda t, a: {"addr": _addr_arg(t, a[0], a[4], a[5])}),
    "sendmsg": ("sendto", _dec_sendmsg),
    "rename": ("rename", _dec_paths([(None, 0), (None, 1)], ("old", "new"))),
    "renameat": ("rename", _dec_paths([(0, 1), (2, 3)], ("old", "new"))),
    "renameat2": ("rename", _dec_paths([(0, 1), (2, 3)], ("old", "new"))),
    "link": ("link", _dec_paths([(None, 0), (None, 1)], ("old", "new"))),
    "linkat": ("link", _dec_paths([(0, 1), (2, 3)], ("old", "new"))),
    "symlink": ("symlink", _dec_paths([(None, 1)], ("new",))),
    "symlinkat": ("symlink", _dec_paths([(1, 2)], ("new",))),
    "unlink": ("unlink", _dec_paths([(None, 0)])), "unlinkat": ("unlink", _dec_paths([(0, 1)])),
    "rmdir": ("unlink", _dec_paths([(None, 0)])),
    "mkdir": ("mkdir", _dec_paths([(None, 0)])), "mkdirat": ("mkdir", _dec_paths([(0, 1)])),
    "mknod": ("mknod", _dec_paths([(None, 0)])), "mknodat": ("mknod", _dec_paths([(0, 1)])),
    "truncate": ("truncate", _dec_paths([(None, 0)], follow=True)),
    "chmod": ("chmod", _dec_paths([(None, 0)], follow=True)),
    "fchmodat": ("chmod", _dec_paths([(0, 1)], follow=True)),
    "chown": ("chown", _dec_paths([(None, 0)], follow=True)), "lchown": ("chown", _dec_paths([(None, 0)])),
    "fchownat": ("chown", _dec_paths([(0, 1)], follow=True)),
    "fchmodat2": ("chmod", _dec_paths([(0, 1)], follow=True)),
    "fchmod": ("chmod", _dec_fd), "fchown": ("chown", _dec_fd),
    "utimensat": ("utime", _dec_utimensat), "utimes": ("utime", _dec_paths([(None, 0)], follow=True)),
    "utime": ("utime", _dec_paths([(None, 0)], follow=True)),
    "futimesat": ("utime", _dec_paths([(0, 1)], follow=True)),
    "setxattr": ("setxattr", _dec_paths([(None, 0)], follow=True)),
    "lsetxattr": ("setxattr", _dec_paths([(None, 0)])), "fsetxattr": ("setxattr", _dec_fd),
    "removexattr": ("setxattr", _dec_paths([(None, 0)], follow=True)),
    "lremovexattr": ("setxattr", _dec_paths([(None, 0)])), "fremovexattr": ("setxattr", _dec_fd),
    "ftruncate": ("truncate", _dec_fd), "fallocate": ("truncate", _dec_fd),
}
# Path-writing syscalls, by the keys of their decoded paths (FilePolicy's "write" rules).
WRITES = {"rename": ("old", "new"), "renameat": ("old", "new"), "renameat2": ("old", "new"),
          "link": ("old", "new"), "linkat": ("old", "new"),      # a hard link is a new name to write by "symlink": ("new",), "symlinkat": ("new",),
          "unlink": ("path",), "unlinkat": ("path",), "rmdir": ("path",), "mkdir": ("path",),
          "mkdirat": ("path",), "mknod": ("path",), "mknodat": ("path",), "truncate": ("path",),
          "chmod": ("path",), "fchmodat": ("path",), "chown": ("path",), "lchown": ("path",),
          "fchownat": ("path",), "fchmodat2": ("path",), "fchmod": ("path",), "fchown": ("path",),
          "utimensat": ("path",), "utimes": ("path",), "utime": ("path",), "futimesat": ("path",),
          "setxattr": ("path",), "lsetxattr": ("path",), "fsetxattr": ("path",), "removexattr": ("path",),
          "lremovexattr": ("path",), "fremovexattr": ("path",)}
OPENS = ("open", "openat", "openat2", "creat")
NETWORK = ("connect", "bind", "sendto", "sendmsg")


def _jsonable(v):
    if isinstance(v, SockAddr):
        return {"family": v.family, "host": v.host, "port": v.port}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.decode("utf-8", "backslashreplace")
    return v


# -- installation -------------------------------------------------------------------------------

class Hooks:
    """What `install` put on the kernel: the policy's callables, the audit fd, the compat record."""

    def __init__(self, kernel, cfg) -> None:
        self.kernel = kernel
        self.policy = cfg.policy
        self.log_fd = cfg.policy_log_fd
        self.compat = None
        self.compat_fd = cfg.compat_fd
        self.count = cfg.count_syscalls
        if cfg.compat:
            from sentry.compat import Recorder
            self.compat = Recorder()

    def audit(self, t, name: str, args, d: Decision) -> None:
        if self.log_fd is None:
            return
        tg = t.tg
        rec = {"time": round(time.time(), 6), "pid": tg.tgid, "tid": t.tid,
               "comm": tg.comm.decode("utf-8", "replace"), "syscall": name, "args": _jsonable(args),
               "decision": d.action}
        if d.action == "deny":
            rec["errno"] = errno.errorcode.get(d.errno, str(d.errno))
        try:
            os.write(self.log_fd, (json.dumps(rec) + "\n").encode())
        except OSError:
            pass

    def finish(self) -> None:
        if self.compat is not None and self.compat_fd is not None:
            data = json.dumps(self.compat.snapshot(self.kernel)).encode()
            try:
                while data:
                    data = data[os.write(self.compat_fd, data):]
            except OSError:
                pass
        finally_ = getattr(self.policy, "close", None)
        if callable(finally_):
            try:
                finally_()
            except Exception:       # noqa: BLE001 -- a policy's own cleanup never fails the sandbox
                pass


def _policy_target(policy, name: str):
    """The callable a policy names for syscall `name`, and whether it is the catch-all."""
    if policy is None:
        return None, False
    alias = DECODERS.get(name, (name, None))[0]
    for attr in (name, alias):
        fn = getattr(policy, attr, None)
        if callable(fn) and not attr.startswith("_") and attr not in ("close", "on_syscall", "syscalls"):
            return fn, False
    catch = getattr(policy, "on_syscall", None)
    if callable(catch):
        names = getattr(policy, "syscalls", None)
        if names is None or name in names:
            return catch, True
    return None, False


def install(kernel, cfg) -> Hooks:
    """Give `kernel` a dispatch table whose named entries are hooked; return the Hooks."""
    from sentry.syscalls import TABLE
    hooks = Hooks(kernel, cfg)
    kernel.hooks = hooks
    table = list(kernel.dispatch)
    for nr, (handler, nargs) in enumerate(table):
        entry = TABLE[nr]
        name = entry.name
        target, catch_all = _policy_target(hooks.policy, name)
        if target is None and hooks.compat is None and not hooks.count:
            continue
        table[nr] = (_wrap(hooks, entry, handler, target, catch_all), nargs if handler is not None else 6)
    kernel.dispatch = table
    return hooks


def _counter(tg) -> list:
    """The syscall counter of `tg`'s run: shared with its ancestors' (runsc_py.Sandbox.run reports it)."""
    c = tg.__dict__.get("run_syscalls")
    if c is None:
        p = tg.parent
        while p is not None and c is None:
            c = p.__dict__.get("run_syscalls")
            p = p.parent
        tg.run_syscalls = c = c if c is not None else [0]
    return c


def syscall_count(tg) -> int | None:
    c = tg.__dict__.get("run_syscalls")
    return c[0] if c is not None else None


def _wrap(hooks: Hooks, entry, handler, target, catch_all: bool):
    name, nr = entry.name, entry.nr
    decoder = DECODERS.get(name, (None, None))[1]
    # Optional `policy.prefilter(name, raw_args) -> bool`: False skips the decoding and the call
    # (FilePolicy: a read-only open when only write rules exist costs no path resolution).
    prefilter = getattr(hooks.policy, "prefilter", None) if target is not None else None
    compat = hooks.compat
    count = hooks.count

    def unimplemented(t, *a):
        k = t.kernel
        if nr not in k._enosys_logged:
            k._enosys_logged.add(nr)
            k.warn(f"unimplemented syscall {name} ({nr}): returning ENOSYS")
        raise SyscallError(errno.ENOSYS)

    call = handler if handler is not None else unimplemented

    def hooked(t, *a):
        if t.in_syscall or t.syscall_state is not None:
            return call(t, *a)                  # a parked call re-run: decided on its first entry
        if count:
            tg = t.tg
            c = tg.__dict__.get("run_syscalls") or _counter(tg)
            c[0] += 1
        if compat is not None:
            compat.record(t, entry, a)
        if target is not None and (prefilter is None or prefilter(name, a)):
            d, args = _decide(hooks, t, name, decoder, target, catch_all, a)
            if d is not ALLOW:
                if d.action == "audit":
                    hooks.audit(t, name, args, d)
                else:
                    hooks.audit(t, name, args, d)
                    if d.action == "deny":
                        raise SyscallError(d.errno)
                    from sentry.kernel import TaskExited       # kill
                    t.kernel.exit_thread_group(t.tg, signal.SIGKILL)
                    raise TaskExited()
        if compat is None:
            return call(t, *a)
        try:
            r = call(t, *a)
        except SyscallError as e:
            compat.result(t, entry, a, -e.errno)
            raise
        compat.result(t, entry, a, r)
        return r

    hooked.__name__ = f"policy_{name}"
    return hooked


def _decide(hooks: Hooks, t, name: str, decoder, target, catch_all: bool, a) -> tuple[Decision, Any]:
    try:
        args = decoder(t, a) if decoder is not None else None
    except Unresolved:
        return ALLOW, None                      # the handler gives its own error for these
    try:
        view = _view(t)
        if catch_all:
            value = target(view, name, args if args is not None else tuple(a))
        elif args is not None:
            value = target(view, **args)
        else:
            value = target(view, *a)
        return _decision(value), args if args is not None else list(a)
    except Exception as e:                      # noqa: BLE001 -- a broken policy refuses, never allows
        t.kernel.warn(f"policy {type(hooks.policy).__name__}.{name} raised {type(e).__name__}: {e}: "
                      "denying the call (EPERM)")
        return Decision("deny", errno.EPERM), args if args is not None else list(a)
