"""System V IPC objects of the Sentry: what msg.py (message queues) and sem.py (semaphore
sets) share, in the shape of Linux's ipc/util.c.

* Each IPC namespace (sentry/syscalls/namespaces.py: `ThreadGroup.ipcns`, or the sandbox's own,
  kept on the Kernel) holds one `IpcIds` per kind in its `objects` dict (`ids_of(t, "msg")`),
  so `unshare(CLONE_NEWIPC)` starts from nothing, as Linux's copy_ipcs.
* Identifiers are Linux's: `seq << 15 | index`, the index the lowest free slot at or after the
  last one given (idr_alloc_cyclic), the sequence bumped whenever the index wraps back
  (ipc_idr_alloc), so a removed object's id is not given again soon and stale ids are EINVAL.
* `IpcPerm` is kern_ipc_perm: key, owner and creator ids (kernel ids: userns maps them on the
  way in and out), mode; `ipcperms` is Linux's check (owner, then group, then other bits;
  CAP_IPC_OWNER over the namespace's user namespace overrides), `ctl_check` that of
  IPC_SET/IPC_RMID (ipcctl_obtain_check: the creator, the owner or CAP_SYS_ADMIN, else EPERM).
* Objects are Python objects of the single-threaded Sentry: no locks.  A removed object is
  marked `deleted`; tasks parked on it (their continuation holds the object, not the id)
  see that when they run again and fail with EIDRM, as Linux's ipc_valid_object checks.
"""
from __future__ import annotations

import errno
import struct
import time

from sentry.errors import SyscallError

IPC_PRIVATE = 0
IPC_CREAT, IPC_EXCL, IPC_NOWAIT = 0o1000, 0o2000, 0o4000
IPC_RMID, IPC_SET, IPC_STAT, IPC_INFO = 0, 1, 2, 3
S_IRWXUGO = 0o777
S_IRUGO, S_IWUGO = 0o444, 0o222
IPCMNI_SHIFT = 15
IPCMNI = 1 << IPCMNI_SHIFT
SEQ_MAX = 0x7FFFFFFF >> IPCMNI_SHIFT
# struct ipc64_perm (x86-64): key uid gid cuid cgid mode, seq, pad, 2 unused longs.
IPC64_PERM = struct.Struct("<iIIIII H 2x 4x QQ")


def s32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def now() -> int:
    """ktime_get_real_seconds()."""
    return int(time.time())


class IpcPerm:
    """kern_ipc_perm: one IPC object's identity and access (module comment)."""
    __slots__ = ("key", "id", "seq", "uid", "gid", "cuid", "cgid", "mode", "deleted")

    def __init__(self, key: int, mode: int, creds) -> None:
        self.key = key
        self.id = -1
        self.seq = 0
        self.uid = self.cuid = creds.euid
        self.gid = self.cgid = creds.egid
        self.mode = mode & S_IRWXUGO
        self.deleted = False

    def pack(self, t) -> bytes:
        """This perm as the caller's ipc64_perm (ids as its user namespace sees them)."""
        from sentry.userns import gid_seen, uid_seen
        return IPC64_PERM.pack(self.key, uid_seen(t, self.uid), gid_seen(t, self.gid), uid_seen(t, self.cuid),
                               gid_seen(t, self.cgid), self.mode, self.seq & 0xFFFF, 0, 0)

    def update(self, t, raw: bytes) -> None:
        """ipc_update_perm: uid, gid and the permission bits from an IPC_SET buffer (EINVAL for
        ids the caller's user namespace does not map)."""
        from sentry.userns import kernel_id
        _key, uid, gid, _cuid, _cgid, mode, _seq, _u1, _u2 = IPC64_PERM.unpack_from(raw)
        if uid == 0xFFFFFFFF or gid == 0xFFFFFFFF:
            raise SyscallError(errno.EINVAL)
        kuid, kgid = kernel_id(t, uid, "uid_map"), kernel_id(t, gid, "gid_map")
        self.uid, self.gid = kuid, kgid
        self.mode = (self.mode & ~S_IRWXUGO) | (mode & S_IRWXUGO)


class IpcIds:
    """The objects of one kind in one namespace (struct ipc_ids), by index and by key."""
    __slots__ = ("kind", "userns", "by_idx", "by_key", "seq", "last_idx", "limit", "extra")

    def __init__(self, kind: str, userns, limit: int) -> None:
        self.kind = kind
        self.userns = userns                 # the namespace's owner, for CAP_IPC_OWNER/CAP_SYS_ADMIN
        self.by_idx: dict[int, object] = {}
        self.by_key: dict[int, object] = {}
        self.seq = 0
        self.last_idx = -1
        self.limit = limit                   # msgmni / semmni: ENOSPC past it
        self.extra = 0                       # kind-specific count (semaphores in use)

    def add(self, obj) -> int:
        """ipc_addid: give `obj` (with .perm) its id; ENOSPC when the namespace is full."""
        if len(self.by_idx) >= self.limit:
            raise SyscallError(errno.ENOSPC)
        idx = next((i for i in range(self.last_idx + 1, self.limit) if i not in self.by_idx), None)
        if idx is None:
            idx = next(i for i in range(self.limit) if i not in self.by_idx)
        if idx <= self.last_idx:
            self.seq = 0 if self.seq + 1 >= SEQ_MAX else self.seq + 1
        self.last_idx = idx
        p = obj.perm
        p.seq = self.seq
        p.id = (self.seq << IPCMNI_SHIFT) + idx
        self.by_idx[idx] = obj
        if p.key != IPC_PRIVATE:
            self.by_key[p.key] = obj
        return p.id

    def remove(self, obj) -> None:
        """ipc_rmid: the id and key are gone; parked tasks see `deleted` (EIDRM)."""
        p = obj.perm
        p.deleted = True
        self.by_idx.pop(p.id & (IPCMNI - 1), None)
        if p.key != IPC_PRIVATE and self.by_key.get(p.key) is obj:
            del self.by_key[p.key]

    def check(self, ident: int):
        """ipc_obtain_object_check: the object named by a full id, else EINVAL."""
        if ident < 0:
            raise SyscallError(errno.EINVAL)
        obj = self.by_idx.get(ident & (IPCMNI - 1))
        if obj is None or obj.perm.seq != ident >> IPCMNI_SHIFT:
            raise SyscallError(errno.EINVAL)
        return obj

    def at_index(self, idx: int):
        """ipc_obtain_object_idr (MSG_STAT/SEM_STAT): by index alone, else EINVAL."""
        obj = self.by_idx.get(idx & (IPCMNI - 1)) if idx >= 0 else None
        if obj is None:
            raise SyscallError(errno.EINVAL)
        return obj

    def max_idx(self) -> int:
        """ipc_get_maxidx, as the *_INFO commands return it (0 when empty)."""
        return max(self.by_idx) if self.by_idx else 0

    def ordered(self) -> list:
        return [self.by_idx[i] for i in sorted(self.by_idx)]

    def get(self, t, key: int, flags: int, create, more_checks=None) -> int:
        """ipcget: IPC_PRIVATE or a missing key with IPC_CREAT makes one (`create()`); a key
        found is EEXIST with IPC_CREAT|IPC_EXCL, else checked (`more_checks`, then the mode
        bits asked for) and its id returned; a missing key without IPC_CREAT is ENOENT."""
        if key == IPC_PRIVATE:
            return self.add(create())
        obj = self.by_key.get(key)
        if obj is None:
            if not flags & IPC_CREAT:
                raise SyscallError(errno.ENOENT)
            return self.add(create())
        if flags & IPC_CREAT and flags & IPC_EXCL:
            raise SyscallError(errno.EEXIST)
        if more_checks is not None:
            more_checks(obj)
        if not ipcperms(t, self, obj.perm, flags):
            raise SyscallError(errno.EACCES)
        return obj.perm.id


def ipcperms(t, ids: IpcIds, p: IpcPerm, flag: int) -> bool:
    """Linux's ipcperms: may `t` have the access `flag` asks (S_IRUGO, S_IWUGO, or a get's mode)?"""
    from sentry.userns import capable
    c = t.tg.creds
    requested = (flag >> 6) | (flag >> 3) | flag
    granted = p.mode
    if c.euid in (p.cuid, p.uid):
        granted >>= 6
    elif c.fsgid in (p.cgid, p.gid) or p.cgid in c.groups or p.gid in c.groups:
        granted >>= 3
    return not (requested & ~granted & 0o7) or capable(t, ids.userns)


def ctl_check(t, ids: IpcIds, ident: int):
    """ipcctl_obtain_check (IPC_SET, IPC_RMID): the object, EINVAL if none, EPERM unless the
    caller created or owns it or has CAP_SYS_ADMIN over the namespace."""
    from sentry.userns import capable
    obj = ids.check(ident)
    euid = t.tg.creds.euid
    if euid in (obj.perm.cuid, obj.perm.uid) or capable(t, ids.userns):
        return obj
    raise SyscallError(errno.EPERM)


def ids_of(t, kind: str, limit: int) -> IpcIds:
    """The `kind` objects ("msg", "sem") of `t`'s IPC namespace, made on first use."""
    ns = t.tg.ipcns
    if ns is None:
        k = t.kernel
        ns = getattr(k, "sysv_ipcns", None)
        if ns is None:
            from sentry.syscalls.namespaces import IPCNamespace
            ns = k.sysv_ipcns = IPCNamespace(None)
    ids = ns.objects.get(kind)
    if ids is None:
        ids = ns.objects[kind] = IpcIds(kind, ns.userns, limit)
    return ids


class Usage:
    """What all SysV IPC objects of one sandbox (one Kernel) hold: the memory caps of msg.py
    and sem.py are sandbox-wide, so that many namespaces cannot multiply them."""
    __slots__ = ("msg_bytes", "sems")

    def __init__(self) -> None:
        self.msg_bytes = 0
        self.sems = 0


def usage(k) -> Usage:
    """The Kernel's `Usage` (made on first use: the Kernel itself knows nothing of SysV IPC)."""
    u = getattr(k, "sysv_usage", None)
    if u is None:
        u = k.sysv_usage = Usage()
    return u


def pid_seen(t, gid: int) -> int:
    """A recorded global pid as `t`'s PID namespace numbers it (pid_vnr; 0 if outside)."""
    if not gid:
        return 0
    from sentry.pidns import to_ns
    return to_ns(t.tg.pidns, gid)
