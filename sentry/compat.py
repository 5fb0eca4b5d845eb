"""--compat: what a workload asked of the kernel, marked against the syscall table.

`sentry.policy.install` wraps every dispatch entry with `Recorder.record` (before the handler)
and `Recorder.result` (after it) when `SandboxConfig.compat` is set.  The record is kept in
the Sentry; `snapshot` turns it into plain data (JSON-able) for the report
(runsc_py/compat_report.py renders it; the library asks for it over the control channel).

Support levels come from the one syscall table (`sentry.syscalls.TABLE`): the entry's
support and note are what `runsc-py syscalls` prints, so the two never disagree.  ioctls,
/proc and /sys files and socket families have no table of their own: they are judged by what
the Sentry answered (an ioctl refused with ENOTTY/EINVAL/ENOSYS, a /proc file that is ENOENT
here, a family refused with EAFNOSUPPORT) and say so in their note.
"""
from __future__ import annotations

import errno
import os

OPEN_LIKE = {"open": (None, 0), "openat": (0, 1), "openat2": (0, 1), "creat": (None, 0), "stat": (None, 0),
             "lstat": (None, 0), "newfstatat": (0, 1), "statx": (0, 1), "access": (None, 0),
             "faccessat": (0, 1), "faccessat2": (0, 1), "readlink": (None, 0), "readlinkat": (0, 1),
             "execve": (None, 0), "statfs": (None, 0), "chdir": (None, 0)}
IOCTL_NAMES = {0x5401: "TCGETS", 0x5402: "TCSETS", 0x5403: "TCSETSW", 0x5404: "TCSETSF", 0x540B: "TCFLSH",
               0x540E: "TIOCSCTTY", 0x540F: "TIOCGPGRP", 0x5410: "TIOCSPGRP", 0x5413: "TIOCGWINSZ",
               0x5414: "TIOCSWINSZ", 0x541B: "FIONREAD", 0x5421: "FIONBIO", 0x5422: "TIOCNOTTY",
               0x5429: "TIOCGSID", 0x5450: "FIONCLEX", 0x5451: "FIOCLEX", 0x5452: "FIOASYNC",
               0x80045430: "TIOCGPTN", 0x40045431: "TIOCSPTLCK", 0x5441: "TIOCGPTPEER",
               0x8008AF00: "VHOST_GET_FEATURES", 0x4B3A: "KDSETMODE", 0x80086601: "FS_IOC_GETFLAGS",
               0x40086602: "FS_IOC_SETFLAGS", 0xC020660B: "FS_IOC_FIEMAP", 0x5460: "FICLONE"}
FAMILIES = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET", 4: "AF_IPX",
            5: "AF_APPLETALK", 9: "AF_X25", 38: "AF_ALG", 40: "AF_VSOCK", 44: "AF_XDP", 31: "AF_BLUETOOTH"}
TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM", 5: "SOCK_SEQPACKET", 10: "SOCK_PACKET"}
REFUSED = {errno.ENOSYS, errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP}
NOT_A_FAMILY = {errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EINVAL, errno.EPERM}


def _site(t, entry, a) -> str:
    """`comm[pid]: name(args)` with the table's prototype decoding (as --strace prints)."""
    from sentry.strace import _arg
    names = entry.arg_names if entry.arg_names is not None else ("",) * 6
    types = entry.arg_types if entry.arg_types is not None else ("",) * 6
    raw = tuple(a) + (0,) * (6 - len(a))
    try:
        args = ", ".join(_arg(t, types[i], names[i], raw[i]) for i in range(min(len(names), 6)))
    except Exception:           # noqa: BLE001 -- a call site is best effort, never a failure
        args = ", ".join(hex(x) for x in a)
    return f"{t.tg.comm.decode('utf-8', 'replace')}[{t.tg.tgid}]: {entry.name}({args})"


def _proc_key(t, entry, a) -> str | None:
    """The /proc or /sys path a file call names (lexically absolute, pids as <pid>), or None."""
    where = OPEN_LIKE.get(entry.name)
    if where is None:
        return None
    addr = a[where[1]] if len(a) > where[1] else 0
    if not addr:
        return None
    try:
        raw = t.mm.cstring(addr, 4095)
    except Exception:           # noqa: BLE001
        return None
    if not raw:
        return None                             # AT_EMPTY_PATH: the open file, already counted
    if raw[:1] != b"/":
        dirfd = a[where[0]] & 0xFFFFFFFF if where[0] is not None else 0xFFFFFF9C
        if dirfd == 0xFFFFFF9C:                 # AT_FDCWD
            base = t.tg.fs.cwd.path(t.tg.fs.root)
        else:
            f = t.fds.files.get(dirfd) if hasattr(t.fds, "files") else None
            if f is None or f.dentry is None:
                return None
            base = f.dentry.path(t.tg.fs.root)
        raw = base.rstrip(b"/") + b"/" + raw
    path = os.path.normpath(os.fsdecode(raw))
    if not (path == "/proc" or path.startswith(("/proc/", "/sys/")) or path == "/sys"):
        return None
    parts = path.split("/")
    if len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit():
        parts[2] = "<pid>"
    if len(parts) > 4 and parts[1] == "proc" and parts[3] == "task" and parts[4].isdigit():
        parts[4] = "<tid>"
    return "/".join(parts)


class Recorder:
    def __init__(self) -> None:
        self.calls: dict[int, list] = {}        # nr -> [count, first site, {result errno: count}]
        self.ioctls: dict[int, list] = {}       # request -> [count, first site, {errno: count}]
        self.files: dict[str, list] = {}        # /proc, /sys path -> [count, first site, {errno: count}]
        self.sockets: dict[tuple, list] = {}    # (family, type, flags) -> [count, first site, {errno: count}]
        self._pending = None                    # (table, key) of the call being handled

    def record(self, t, entry, a) -> None:
        rec = self.calls.get(entry.nr)
        if rec is None:
            rec = self.calls[entry.nr] = [0, _site(t, entry, a), {}]
        rec[0] += 1
        self._pending = None
        name = entry.name
        if name == "ioctl" and len(a) > 1:
            self._note(self.ioctls, a[1] & 0xFFFFFFFF, t, entry, a)
        elif name in ("socket", "socketpair") and len(a) > 1:
            stype = a[1] & 0xFFFFFFFF
            flags = [f for bit, f in ((0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC")) if stype & bit]
            key = (FAMILIES.get(a[0] & 0xFFFFFFFF, f"AF_{a[0] & 0xFFFFFFFF}"),
                   TYPES.get(stype & 0xF, f"type {stype & 0xF}"), "|".join(flags))
            self._note(self.sockets, key, t, entry, a)
        else:
            key = _proc_key(t, entry, a)
            if key is not None:
                self._note(self.files, key, t, entry, a)

    def _note(self, table: dict, key, t, entry, a) -> None:
        rec = table.get(key)
        if rec is None:
            rec = table[key] = [0, _site(t, entry, a), {}]
        rec[0] += 1
        self._pending = rec

    def result(self, t, entry, a, r: int) -> None:
        err = -r if r < 0 else 0
        results = self.calls[entry.nr][2]
        results[err] = results.get(err, 0) + 1
        if self._pending is not None:
            res = self._pending[2]
            res[err] = res.get(err, 0) + 1
            self._pending = None

    def snapshot(self, kernel=None) -> dict:
        from sentry.syscalls import TABLE
        out: dict = {"syscalls": [], "ioctls": [], "files": [], "sockets": []}
        level = {"full": "supported", "partial": "partial", "error": "unsupported", "unimplemented": "unsupported"}
        for nr, (count, first, results) in sorted(self.calls.items()):
            e = TABLE[nr]
            out["syscalls"].append({"nr": nr, "name": e.name, "status": level[e.support.value],
                                    "support": e.support.value, "note": e.note or "", "count": count,
                                    "errors": _errs(results), "first": first})
        ioctl_note = TABLE[16].note or ""
        for req, (count, first, results) in sorted(self.ioctls.items()):
            # The table's note names the requests the Sentry implements: for those, ENOTTY on a
            # file that is not a terminal is Linux's own answer, not a gap.
            named = IOCTL_NAMES.get(req, "") and IOCTL_NAMES[req] in ioctl_note.replace(",", " ").replace("/", " ").split()
            refused = sum(n for e, n in results.items() if e in REFUSED)
            ok = results.get(0, 0)
            status = "supported" if named or refused == 0 else ("partial" if ok else "unsupported")
            out["ioctls"].append({"request": f"{req:#x}", "name": IOCTL_NAMES.get(req, ""), "status": status,
                                  "note": ioctl_note if status != "supported" else "", "count": count,
                                  "errors": _errs(results), "first": first})
        for path, (count, first, results) in sorted(self.files.items()):
            missing = results.get(errno.ENOENT, 0)
            status = "supported" if not missing else ("partial" if len(results) > 1 else "unsupported")
            out["files"].append({"path": path, "status": status,
                                 "note": "ENOENT in the sandbox's procfs/sysfs" if missing else "",
                                 "count": count, "errors": _errs(results), "first": first})
        sock_note = TABLE[41].note or ""
        for key, (count, first, results) in sorted(self.sockets.items()):
            refused = sum(n for e, n in results.items() if e in NOT_A_FAMILY)
            status = "supported" if not refused else ("partial" if results.get(0) else "unsupported")
            out["sockets"].append({"family": key[0], "type": key[1], "flags": key[2], "status": status,
                                   "note": sock_note if status != "supported" else "", "count": count,
                                   "errors": _errs(results), "first": first})
        return out


def _errs(results: dict) -> dict:
    return {errno.errorcode.get(e, str(e)): n for e, n in sorted(results.items()) if e}
