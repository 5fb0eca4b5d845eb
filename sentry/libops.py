"""The library's control requests: files, signals, the compat record, shutdown.

`runsc_py.Sandbox` (runsc_py/api.py) reaches a long-lived Sentry through its control
channel (sentry/control.py routes these ops here).  File requests go through the Sentry's
own VFS -- the same walk, permission checks, overlay and Gofer as an application's open --
on behalf of a kernel-side caller (root, at the sandbox's root, umask 022), so no guest
process is needed.  Each request gets one reply map: the result, or {"error", "errno"}.

  {"op": "write_file", "path", "data", "offset": 0, "truncate": true, "mode": 0o644}
  {"op": "read_file", "path", "offset": 0, "length": N}  -> {"data", "eof"}
  {"op": "listdir", "path"}                              -> {"entries": [names]}
  {"op": "stat", "path"}                                 -> {"mode", "size", "uid", "gid", "mtime"}
  {"op": "kill", "pid", "sig"}                           -> {"ok"}   (ESRCH if no such process)
  {"op": "compat"}                                       -> the compat record (sentry/compat.py)
  {"op": "shutdown"}                                     -> {"ok"}; the task loop then returns
"""
from __future__ import annotations

import errno
import os

from sentry.errors import SyscallError

CHUNK = 128 * 1024           # the largest read reply (a SEQPACKET message must fit the socket buffer, ~208 KiB)
O_RDONLY, O_WRONLY, O_CREAT, O_TRUNC = 0, 1, 0o100, 0o1000
AT_FDCWD = -100


def _kernel_task(k):
    """A task-shaped caller for the VFS: root credentials, the sandbox's root as root and cwd."""
    from sentry.task import Credentials, FSContext, Task, ThreadGroup
    from sentry.vfs.file import FDTable
    tg = ThreadGroup(k, 0, None, FDTable(), FSContext(k.vfs.root, k.vfs.root), Credentials(0, 0, []))
    tg.comm = b"runsc-py"
    t = Task(k, 0, tg, None)
    tg.tasks.append(t)
    return t


def serve(k, op: str, msg: dict) -> dict:
    try:
        if op == "shutdown":
            if k.exit_code is None:
                k.exit_code = 0
            return {"ok": True}
        if op == "kill":
            return _kill(k, int(msg["pid"]), int(msg.get("sig", 9)), bool(msg.get("tree", False)))
        if op == "compat":
            hooks = k.hooks
            if hooks is None or hooks.compat is None:
                return {"error": "this sandbox does not record (compat=False)", "errno": errno.EINVAL}
            return {"report": hooks.compat.snapshot(k)}
        path = msg["path"]
        path = os.fsencode(path) if isinstance(path, str) else bytes(path)
        if op == "write_file":
            return _write(k, path, bytes(msg.get("data", b"")), int(msg.get("offset", 0)),
                          bool(msg.get("truncate", True)), int(msg.get("mode", 0o644)))
        if op == "read_file":
            return _read(k, path, int(msg.get("offset", 0)), min(int(msg.get("length", CHUNK)), CHUNK))
        if op == "listdir":
            return _listdir(k, path)
        if op == "stat":
            t = _kernel_task(k)
            s = k.vfs.resolve(t, AT_FDCWD, path).inode.stat()
            return {"mode": s.mode, "size": s.size, "uid": s.uid, "gid": s.gid,
                    "mtime": getattr(s, "mtime", 0)}
    except SyscallError as e:
        return {"error": os.strerror(e.errno), "errno": e.errno}
    except (KeyError, TypeError, ValueError) as e:
        return {"error": f"malformed {op} request: {e}", "errno": errno.EINVAL}
    return {"error": f"unknown request {op!r}", "errno": errno.EINVAL}


def _kill(k, pid: int, sig: int, tree: bool = False) -> dict:
    """Signal process `pid` (with `tree`, its descendants too: a library run's timeout)."""
    from sentry import process
    from sentry import signals as sg
    tg = k.thread_groups.get(pid)
    if tg is None or tg.exiting or not 0 < sig < 65:
        return {"error": os.strerror(errno.ESRCH if sig else errno.EINVAL), "errno": errno.ESRCH}
    targets, i = [tg], 0
    while tree and i < len(targets):
        targets += [c for c in targets[i].children if not c.exiting]
        i += 1
    for g in reversed(targets):
        process.send_to_group(k, g, sig, sg.siginfo(sig, sg.SI_USER), force=True)   # from the host
    return {"ok": True}


def _open(k, path: bytes, flags: int, mode: int = 0):
    from sentry.syscalls.files import do_open
    t = _kernel_task(k)
    fd = do_open(t, AT_FDCWD, path, flags, mode)
    return t, t.fds.get(fd)


def _write(k, path: bytes, data: bytes, offset: int, truncate: bool, mode: int) -> dict:
    t, f = _open(k, path, O_WRONLY | O_CREAT | (O_TRUNC if truncate else 0), mode)
    try:
        done = 0
        while done < len(data):
            n = f.pwrite(t, [memoryview(data)[done:]], offset + done)
            if n <= 0:
                raise SyscallError(errno.EIO)
            done += n
        return {"ok": True, "written": done}
    finally:
        t.fds.close_all()


def _read(k, path: bytes, offset: int, length: int) -> dict:
    t, f = _open(k, path, O_RDONLY)
    try:
        buf = bytearray(length)
        got = 0
        while got < length:
            n = f.pread(t, [memoryview(buf)[got:]], offset + got)
            if n <= 0:
                break
            got += n
        return {"data": bytes(buf[:got]), "eof": got < length}
    finally:
        t.fds.close_all()


def _listdir(k, path: bytes) -> dict:
    t, f = _open(k, path, O_RDONLY | 0o200000)       # O_DIRECTORY
    try:
        names = [name for name, _ino, _type in f.getdents() if name not in (b".", b"..")]
        return {"entries": [os.fsdecode(n) for n in names]}
    finally:
        t.fds.close_all()


def usage(tg) -> dict:
    """A finished process's resource use, for the exec exit report (runsc_py.Sandbox.run)."""
    from sentry.policy import syscall_count
    return {"cpu_ns": int(tg.utime + tg.stime + tg.cutime + tg.cstime),
            "max_rss_kb": int(max(tg.maxrss_kb, tg.children_maxrss_kb)),
            "syscalls": syscall_count(tg)}
