"""execve's core: find the executable, handle `#!`, build a new address space, swap it in.

Used for the container's first process and by execve(2).  The new image
is loaded into a fresh MemoryManager (a fresh stub); only when loading
succeeded is the old one dropped, so a failed exec leaves the caller
intact, as Linux guarantees up to the point of no return.
"""
from __future__ import annotations

import errno
import signal

from sentry.errors import SyscallError
from sentry.vfs.file import O_RDONLY
from sentry.vfs.inode import MAY_EXEC, may_access
from sentry.vfs.walk import AT_FDCWD

DEFAULT_PATH = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_INTERP_DEPTH = 4            # BINPRM_MAX_RECURSION
S_IFMT, S_IFREG = 0o170000, 0o100000


def lookup_path(t, name: bytes, envp: list[bytes]) -> bytes:
    """Find `name` as a shell/runc would: a name with '/' is used as is, else searched in $PATH."""
    if b"/" in name:
        return name
    path = DEFAULT_PATH
    for e in envp:
        if e.startswith(b"PATH="):
            path = e[5:]
    first_err = errno.ENOENT
    for d in path.split(b":"):
        cand = (d or b".").rstrip(b"/") + b"/" + name
        try:
            dent = t.kernel.vfs.resolve(t, AT_FDCWD, cand)
        except SyscallError as e:
            if e.errno == errno.EACCES:
                first_err = errno.EACCES
            continue
        s = dent.inode.stat()
        if s.mode & S_IFMT == S_IFREG and may_access(s, t.tg.creds, MAY_EXEC):
            return cand
        first_err = errno.EACCES
    raise SyscallError(first_err)


def _open_exec(t, path: bytes):
    vfs = t.kernel.vfs
    d = vfs.resolve(t, AT_FDCWD, path)
    s = d.inode.stat()
    if s.mode & S_IFMT != S_IFREG:
        raise SyscallError(errno.EACCES)
    if (d.mount is not None and "noexec" in d.mount.flags) or not may_access(s, t.tg.creds, MAY_EXEC):
        raise SyscallError(errno.EACCES)
    return d.inode.open(t, d, O_RDONLY)


def _drop(f) -> None:
    """Close a file exec opened unless a mapping still holds it (File.refs counts holders)."""
    if f.refs == 0:
        f.release()


def _read_head(t, f, n: int = 256) -> bytes:
    buf = bytearray(n)
    got = f.pread(t, [memoryview(buf)], 0)
    return bytes(buf[:got])


def exec_path(t, path: bytes, argv: list[bytes], envp: list[bytes]) -> None:
    """Replace `t`'s process image with the program at `path` (argv/envp as given)."""
    from sentry import loader
    from sentry.mm.manager import MemoryManager
    from platforms.hostarch import AT_HWCAP, AT_HWCAP2, getauxval
    k = t.kernel
    execfn = path
    for _ in range(MAX_INTERP_DEPTH + 1):
        f = _open_exec(t, path)
        head = _read_head(t, f)
        if not head.startswith(b"#!"):
            break
        _drop(f)
        line = head[2:].split(b"\n", 1)[0]
        if b"\n" not in head[2:] and len(head) == 256:
            raise SyscallError(errno.ENOEXEC)
        line = line.strip(b" \t")
        if not line:
            raise SyscallError(errno.ENOEXEC)
        parts = line.split(None, 1)
        interp = parts[0]
        new = [interp] + ([parts[1].strip(b" \t")] if len(parts) > 1 else []) + [path]
        argv = new + argv[1:]
        path = interp
    else:
        raise SyscallError(errno.ELOOP)

    opened = [f]

    def open_interp(p: bytes):
        fi = _open_exec(t, p)
        opened.append(fi)
        return fi

    mm = MemoryManager(k.platform, k.memfile)
    try:
        entry, sp = loader.load(t, mm, f, open_interp, argv, envp, execfn,
                                getauxval(AT_HWCAP), getauxval(AT_HWCAP2))
        ctx = mm.space.new_context()
    except loader.ExecFault as e:
        # Past Linux's point of no return: the process dies with SIGSEGV, it sees no errno.
        mm.release()
        k.debug(f"task {t.tid}: execve of {path!r} failed after the point of no return ({e}): SIGSEGV")
        from sentry.kernel import TaskExited
        k.exit_thread_group(t.tg, signal.SIGSEGV)
        raise TaskExited() from None
    except BaseException:
        mm.release()
        raise
    finally:
        for fo in opened:
            _drop(fo)
    # Point of no return.
    tg = t.tg
    old_mm, old_ctx = tg.mm, t.ctx
    tg.mm = t.mm = mm
    t.ctx = ctx
    ctx.task = t
    if old_ctx is not None:
        old_ctx.task = None
        if old_mm is not None and old_mm.users > 1:
            old_mm.space.release_context(old_ctx)     # a vfork child leaves its parent's stub
    if old_mm is not None:
        old_mm.users -= 1
        if old_mm.users == 0:
            tg.utime += old_mm.space.cpu_time_ns()    # the process's CPU time outlives its old image
            old_mm.release()
    ctx.clear_regs(entry, sp)
    t.fds.close_on_exec()
    from sentry.task import SignalAction
    for i, act in enumerate(tg.sigactions):
        if act.handler > 1:                 # a handler (not SIG_DFL/SIG_IGN) resets to default
            tg.sigactions[i] = SignalAction()
    exe = f.dentry.path(tg.fs.root) if f.dentry is not None else path
    if tg.userns is not None:               # capabilities in a new user namespace (sentry/userns.py)
        from sentry.userns import exec_caps
        exec_caps(tg)
    tg.argv, tg.envp, tg.exe = argv, envp, exe
    tg.execed = True
    for tm in tg.posix_timers.values():     # exit_itimers: POSIX timers do not survive exec
        tm.arm(None, 0)
    tg.posix_timers.clear()
    from sentry import process
    process.vfork_done(k, t)
    tg.comm = execfn.rsplit(b"/", 1)[-1][:15]
