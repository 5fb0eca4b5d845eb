"""The sandbox's filesystem and state, seen from outside: `runsc-py fs` and `runsc-py debug`.

`runsc-py fs ID DIR` mounts on the host (FUSE, runsc_py/fs_cmd.py) what the
sandbox's processes see at `/`: the Gofer-backed rootfs, the overlay's upper
layer, tmpfs mounts, the sandbox's /proc.  Every request comes here over the
control channel and goes through the Sentry's own VFS -- the same walk,
mounts and filesystems as an application's syscalls, as root at the
sandbox's root (sentry/libops.py's kernel-side caller) -- so the FUSE
process never holds a host path or descriptor of the rootfs, and a
read-only view is read-only because the FUSE side never asks to write.

Requests (one reply map each; failures are {"error", "errno"}); an fs_* request may
name a pod member ("container": ID) to see that container's root instead:
  fs_lstat {path}                         -> {"stat": [13 ints, gofer.protocol.Stat order]}
  fs_readdir {path, start}                -> {"entries": [[name, stat]...], "next", "more"}  (a page; no . ..)
  fs_readlink {path}                      -> {"target": bytes}
  fs_read {path, offset, length}          -> {"data": bytes}
  fs_write {path, offset, data}           -> {"written": n}
  fs_create {path, mode} / fs_mkdir {path, mode} / fs_unlink {path} / fs_rmdir {path}
  fs_truncate {path, size}                -> {"ok": true}
  fs_statfs {path}                        -> {"statfs": {...}}
  debug_mounts                            -> {"mounts": [{"id", "path", "fstype", "source", "options"}]}
  debug_stacks                            -> {"tasks": [...], "sentry": "Python stack of the Sentry"}
"""
from __future__ import annotations

import errno
import os

from sentry.errors import SyscallError

AT_FDCWD = -100
O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY = 0, 1, 0o100, 0o200, 0o400000, 0o200000
# Replies are single SOCK_SEQPACKET messages, bounded by the socket's send buffer (~208 KiB by
# default): reads come in 128 KiB pieces (FUSE asks for at most that) and listings in pages.
CHUNK = 128 * 1024
PAGE_ENTRIES = 256


def _task(k, container: str | None = None):
    """The kernel-side caller, at the sandbox's root -- or at a pod member's (sentry/pod.py)."""
    from sentry import pod
    from sentry.libops import _kernel_task
    t = _kernel_task(k)
    member = pod.members(k).get(container) if container else None
    if member is not None:
        t.tg.fs.root = t.tg.fs.cwd = member.root
    return t


def _stat_list(inode) -> list[int]:
    return [int(x) for x in inode.stat()]


def _lstat(k, t, path: bytes) -> list[int]:
    return _stat_list(k.vfs.resolve(t, AT_FDCWD, path, follow=False).inode)


def _open(t, path: bytes, flags: int, mode: int = 0):
    from sentry.syscalls.files import do_open
    fd = do_open(t, AT_FDCWD, path, flags, mode)
    return t.fds.get(fd)


def _readdir(k, t, path: bytes, start: int) -> dict:
    """Entries [start, start + PAGE_ENTRIES) of the listing, each with its lstat; "more" if others follow."""
    f = _open(t, path, O_RDONLY | O_DIRECTORY)
    names = [name for name, _ino, _type in f.getdents() if name not in (b".", b"..")]
    out = []
    base = path.rstrip(b"/") + b"/"
    for name in names[start:start + PAGE_ENTRIES]:
        try:
            out.append([name, _lstat(k, t, base + name)])
        except SyscallError:
            continue                # gone between the listing and the stat (a /proc task)
    return {"entries": out, "next": start + PAGE_ENTRIES, "more": start + PAGE_ENTRIES < len(names)}


def _read(t, path: bytes, offset: int, length: int) -> bytes:
    f = _open(t, path, O_RDONLY | O_NOFOLLOW)
    buf = bytearray(length)
    got = 0
    while got < length:
        n = f.pread(t, [memoryview(buf)[got:]], offset + got)
        if n <= 0:
            break
        got += n
    return bytes(buf[:got])


def _write(t, path: bytes, offset: int, data: bytes) -> int:
    f = _open(t, path, O_WRONLY | O_NOFOLLOW)
    done = 0
    while done < len(data):
        n = f.pwrite(t, [memoryview(data)[done:]], offset + done)
        if n <= 0:
            raise SyscallError(errno.EIO)
        done += n
    return done


def _mkdir(t, path: bytes, mode: int) -> None:
    from sentry.syscalls.fsops import _add, _create_target, _op
    parent, name = _create_target(t, AT_FDCWD, path, want_dir=True)
    _add(parent, name, _op(parent.inode, "mkdir")(t, name, mode & 0o1777))


def _truncate(k, t, path: bytes, size: int) -> None:
    from sentry.syscalls.fsattr import _setstat, _truncate_checks
    d = k.vfs.resolve(t, AT_FDCWD, path, follow=False)
    _truncate_checks(t, d, size)
    _setstat(t, d, size=size)


def mounts(k) -> list[dict]:
    out = []
    for m in k.vfs.mounts:
        path = m.mountpoint.path() if m.mountpoint is not None else b"/"
        out.append({"id": m.mount_id, "path": os.fsdecode(path), "fstype": m.fstype or type(m.fs).__name__,
                    "source": m.source, "options": ",".join(sorted(m.flags)) or "rw"})
    return out


def stacks(k) -> dict:
    """Each task: where it is (the syscall it is in, or running), its registers' rip/rsp; and the
    Sentry's own Python stack at the moment it answered (it is single-threaded: the task loop)."""
    import sys
    from sentry.syscalls import TABLE
    tasks = []
    for tid, t in sorted(k.tasks.items()):
        regs = t.ctx.regs if t.ctx is not None else None
        nr = regs.orig_rax if regs is not None else -1
        name = TABLE[nr].name if 0 <= nr < len(TABLE) and TABLE[nr] is not None else str(nr)
        state = "stopped" if t.tg.group_stopped else "blocked in " + name if t.in_syscall \
            else "runnable" if t.in_runq else "running"
        tasks.append({"tid": tid, "pid": t.tg.tgid, "comm": t.tg.comm.decode("utf-8", "replace"),
                      "state": state, "rip": regs.rip if regs is not None else 0,
                      "rsp": regs.rsp if regs is not None else 0, "sigmask": t.sigmask})
    # Frame by frame, not traceback.format_stack(): that reads the source lines (linecache opens
    # and stats the .py files -- host path calls the confined Sentry must not even attempt).
    frames, f = [], sys._getframe()
    while f is not None:
        frames.append(f'  File "{f.f_code.co_filename}", line {f.f_lineno}, in {f.f_code.co_name}\n')
        f = f.f_back
    return {"tasks": tasks, "sentry": "".join(reversed(frames))}


def serve(k, op: str, msg: dict) -> dict:
    t = None
    try:
        if op == "debug_mounts":
            return {"mounts": mounts(k)}
        if op == "debug_stacks":
            return stacks(k)
        raw = msg["path"]
        path = os.fsencode(raw) if isinstance(raw, str) else bytes(raw)
        if not path.startswith(b"/"):
            raise SyscallError(errno.EINVAL)
        t = _task(k, msg.get("container"))
        if op == "fs_lstat":
            return {"stat": _lstat(k, t, path)}
        if op == "fs_readdir":
            return _readdir(k, t, path, max(0, int(msg.get("start", 0))))
        if op == "fs_readlink":
            d = k.vfs.resolve(t, AT_FDCWD, path, follow=False)
            if not d.inode.is_symlink:
                raise SyscallError(errno.EINVAL)
            return {"target": bytes(d.inode.readlink())}
        if op == "fs_read":
            return {"data": _read(t, path, int(msg.get("offset", 0)), min(int(msg.get("length", CHUNK)), CHUNK))}
        if op == "fs_write":
            return {"written": _write(t, path, int(msg.get("offset", 0)), bytes(msg["data"]))}
        if op == "fs_create":
            _open(t, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, int(msg.get("mode", 0o644)) & 0o7777)
            return {"stat": _lstat(k, t, path)}
        if op == "fs_mkdir":
            _mkdir(t, path, int(msg.get("mode", 0o755)))
            return {"stat": _lstat(k, t, path)}
        if op == "fs_unlink":
            from sentry.syscalls.fsops import _unlink
            _unlink(t, AT_FDCWD, path)
            return {"ok": True}
        if op == "fs_rmdir":
            from sentry.syscalls.fsops import _rmdir
            _rmdir(t, AT_FDCWD, path)
            return {"ok": True}
        if op == "fs_truncate":
            _truncate(k, t, path, int(msg["size"]))
            return {"ok": True}
        if op == "fs_statfs":
            d = k.vfs.resolve(t, AT_FDCWD, path)
            fs = d.inode.fs
            return {"statfs": dict(fs.statfs()) if hasattr(fs, "statfs") else {}}
    except SyscallError as e:
        return {"error": os.strerror(e.errno), "errno": e.errno}
    except OSError as e:
        return {"error": e.strerror or str(e), "errno": e.errno or errno.EIO}
    except (KeyError, TypeError, ValueError) as e:
        return {"error": f"malformed {op} request: {e}", "errno": errno.EINVAL}
    finally:
        if t is not None:
            t.fds.close_all()
    return {"error": f"unknown request {op!r}", "errno": errno.EINVAL}
