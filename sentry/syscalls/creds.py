"""Credentials: the uid/gid getters and the setuid(2) family, with Linux's rules.

The ids live in the thread group's `Creds` (sentry/process.py); in a user
namespace (sentry/userns.py) the ids an application passes and reads are
mapped through uid_map/gid_map as Linux does, and an id with no mapping is
EINVAL on set and the overflow id on get.  Only membership rules are here:
what an id permits is decided where access is checked (the VFS, kill).
"""
from __future__ import annotations

import errno
import struct

from sentry.errors import SyscallError
from sentry.syscalls.args import s32, u32
from sentry.syscalls.registry import Support, syscall
from sentry.userns import gid_seen, kernel_id, uid_seen


@syscall("getuid")
def getuid(t):
    return t.tg.creds.ruid if t.tg.userns is None else uid_seen(t, t.tg.creds.ruid)


@syscall("geteuid")
def geteuid(t):
    return t.tg.creds.euid if t.tg.userns is None else uid_seen(t, t.tg.creds.euid)


@syscall("getgid")
def getgid(t):
    return t.tg.creds.rgid if t.tg.userns is None else gid_seen(t, t.tg.creds.rgid)


@syscall("getegid")
def getegid(t):
    return t.tg.creds.egid if t.tg.userns is None else gid_seen(t, t.tg.creds.egid)


@syscall("getgroups")
def getgroups(t, size, lst):
    """getgroups(2)."""
    size = s32(size)
    groups = [gid_seen(t, g) for g in t.tg.creds.groups]
    if size < 0:
        raise SyscallError(errno.EINVAL)
    if size == 0:
        return len(groups)
    if size < len(groups):
        raise SyscallError(errno.EINVAL)
    t.mm.write(lst, struct.pack(f"<{len(groups)}I", *groups))
    return len(groups)


@syscall("getresuid")
def getresuid(t, r, e, s):
    c = t.tg.creds
    t.mm.write_u32(r, uid_seen(t, c.ruid))
    t.mm.write_u32(e, uid_seen(t, c.euid))
    t.mm.write_u32(s, uid_seen(t, c.suid))
    return 0


@syscall("getresgid")
def getresgid(t, r, e, s):
    c = t.tg.creds
    t.mm.write_u32(r, gid_seen(t, c.rgid))
    t.mm.write_u32(e, gid_seen(t, c.egid))
    t.mm.write_u32(s, gid_seen(t, c.sgid))
    return 0


# -- credentials (setuid(2) family, with Linux's rules for the unprivileged) ------------

def _privileged(c) -> bool:
    return c.euid == 0


@syscall("setuid")
def setuid(t, uid):
    """setuid(2): root sets all ids; others may set euid to ruid or suid."""
    uid = u32(uid)
    if uid == 0xFFFFFFFF:
        raise SyscallError(errno.EINVAL)
    if t.tg.userns is not None:
        uid = kernel_id(t, uid, "uid_map")
    c = t.tg.creds
    if _privileged(c):
        c.ruid = c.euid = c.suid = c.fsuid = uid
    elif uid in (c.ruid, c.suid):
        c.euid = c.fsuid = uid
    else:
        raise SyscallError(errno.EPERM)
    return 0


@syscall("setgid")
def setgid(t, gid):
    """setgid(2)."""
    gid = u32(gid)
    if gid == 0xFFFFFFFF:
        raise SyscallError(errno.EINVAL)
    if t.tg.userns is not None:
        gid = kernel_id(t, gid, "gid_map")
    c = t.tg.creds
    if _privileged(c):
        c.rgid = c.egid = c.sgid = c.fsgid = gid
    elif gid in (c.rgid, c.sgid):
        c.egid = c.fsgid = gid
    else:
        raise SyscallError(errno.EPERM)
    return 0


def _setres(c, names: tuple[str, str, str], vals: tuple[int, int, int], fs: str) -> None:
    cur = [getattr(c, n) for n in names]
    if not _privileged(c):
        for v in vals:
            if v != 0xFFFFFFFF and v not in cur:
                raise SyscallError(errno.EPERM)
    for n, v in zip(names, vals):
        if v != 0xFFFFFFFF:
            setattr(c, n, v)
    setattr(c, fs, getattr(c, names[1]))


@syscall("setresuid")
def setresuid(t, r, e, s):
    _setres(t.tg.creds, ("ruid", "euid", "suid"), tuple(kernel_id(t, u32(v), "uid_map") for v in (r, e, s)), "fsuid")
    return 0


@syscall("setresgid")
def setresgid(t, r, e, s):
    _setres(t.tg.creds, ("rgid", "egid", "sgid"), tuple(kernel_id(t, u32(v), "gid_map") for v in (r, e, s)), "fsgid")
    return 0


def _setre(c, kind: str, r: int, e: int) -> None:
    """setreuid/setregid: the saved id follows the effective one when the real one is set, or
    the effective one changes to something other than the old real one (setreuid(2))."""
    r, e = u32(r), u32(e)
    old_real = getattr(c, "r" + kind)
    _setres(c, ("r" + kind, "e" + kind, "s" + kind), (r, e, 0xFFFFFFFF), "fs" + kind)
    if r != 0xFFFFFFFF or (e != 0xFFFFFFFF and e != old_real):
        setattr(c, "s" + kind, getattr(c, "e" + kind))


@syscall("setreuid")
def setreuid(t, r, e):
    _setre(t.tg.creds, "uid", kernel_id(t, u32(r), "uid_map"), kernel_id(t, u32(e), "uid_map"))
    return 0


@syscall("setregid")
def setregid(t, r, e):
    _setre(t.tg.creds, "gid", kernel_id(t, u32(r), "gid_map"), kernel_id(t, u32(e), "gid_map"))
    return 0


def _setfs(c, kind: str, value: int) -> int:
    """setfsuid/setfsgid: return the previous value whether or not it changed."""
    old = getattr(c, "fs" + kind)
    value = u32(value)
    if _privileged(c) or value in (getattr(c, p + kind) for p in ("r", "e", "s", "fs")):
        setattr(c, "fs" + kind, value)
    return old


@syscall("setfsuid")
def setfsuid(t, uid):
    """setfsuid(2)."""
    return _setfs(t.tg.creds, "uid", uid)


@syscall("setfsgid")
def setfsgid(t, gid):
    """setfsgid(2)."""
    return _setfs(t.tg.creds, "gid", gid)


NGROUPS_MAX = 65536


@syscall("setgroups")
def setgroups(t, size, lst):
    """setgroups(2)."""
    size = s32(size)
    if size < 0 or size > NGROUPS_MAX:
        raise SyscallError(errno.EINVAL)
    if not _privileged(t.tg.creds):
        raise SyscallError(errno.EPERM)
    groups = list(struct.unpack(f"<{size}I", t.mm.read(lst, 4 * size))) if size else []
    ns = t.tg.userns
    if ns is not None:                          # sentry/userns.py: allowed, and each gid mapped
        if not ns.setgroups_allowed or ns.gid_map is None:
            raise SyscallError(errno.EPERM)
        groups = [kernel_id(t, g, "gid_map") for g in groups]
    t.tg.creds.groups = groups
    return 0


CAP_HEADER = struct.Struct("<Ii")
ALL_CAPS = (1 << 41) - 1


@syscall("capget", Support.PARTIAL, "root holds every capability, others none (no per-capability state)")
def capget(t, header, data):
    """capget(2)."""
    version, pid = t.mm.read_struct(header, CAP_HEADER)
    if version not in (0x19980330, 0x20071026, 0x20080522):
        t.mm.write_struct(header, CAP_HEADER, 0x20080522, pid)
        if data:
            raise SyscallError(errno.EINVAL)
        return 0
    if pid < 0 or (pid and pid not in t.kernel.tasks):
        raise SyscallError(errno.ESRCH if pid > 0 else errno.EINVAL)
    caps = ALL_CAPS if t.tg.creds.euid == 0 else 0
    if data:
        words = 1 if version == 0x19980330 else 2
        out = b""
        for i in range(words):
            w = (caps >> (32 * i)) & 0xFFFFFFFF
            out += struct.pack("<III", w, w, 0)
        t.mm.write(data, out)
    return 0


@syscall("capset", Support.PARTIAL, "accepted for the caller itself when it only lowers or keeps its set")
def capset(t, header, data):
    """capset(2)."""
    version, pid = t.mm.read_struct(header, CAP_HEADER)
    if version not in (0x19980330, 0x20071026, 0x20080522):
        raise SyscallError(errno.EINVAL)
    if pid not in (0, t.tid):
        raise SyscallError(errno.EPERM)
    if t.tg.creds.euid != 0:
        raise SyscallError(errno.EPERM)
    return 0
