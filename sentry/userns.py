"""User namespaces inside the sandbox: uid/gid maps as Linux's kernel/user_namespace.c keeps them.

The sandbox's own user namespace is the root of the tree (`ThreadGroup.userns` None), and
every credential the Sentry stores (Credentials) is an id of that namespace, the "kernel"
id.  A process in a new user namespace sees its ids through the namespace's maps: getuid
and friends translate (`uid_seen`), and an id with no mapping is the overflow id 65534,
as Linux's from_kuid_munged.  The maps are written once through /proc/PID/uid_map and
gid_map with map_write's rules (format, at most 340 extents, no overlap, EPERM for a second
write or for a writer without CAP_SETUID/CAP_SETGID over the parent namespace -- root of the
parent namespace -- unless it maps only its own euid/egid, and then for gid_map only after
"deny" in /proc/PID/setgroups).

Capabilities, as far as the Sentry models them (all or none; `has_caps`): in the sandbox's
namespace euid 0 holds them all, as capget says; in a new namespace its creator holds them
all (clone/unshare) until it execs, and after an exec a process whose euid is the namespace's
root.  `capable` is ns_capable: holding them in a namespace, or owning (euid of the creator)
a child namespace on the way down, grants them in every descendant.  Only the UTS names and
the maps ask `capable`; every other privilege check of the Sentry stays euid 0 in the
sandbox's namespace.  Not modelled: ids shown by stat(2) or taken by chown(2) are kernel ids.
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError

OVERFLOW_ID = 65534
MAX_EXTENTS = 340                    # UID_GID_MAP_MAX_EXTENTS
MAX_DEPTH = 32                       # nested user namespaces, else EUSERS
PAGE_SIZE = 4096


class UserNamespace:
    __slots__ = ("parent", "level", "owner", "group", "uid_map", "gid_map", "setgroups_allowed")

    def __init__(self, parent: "UserNamespace | None", owner: int, group: int) -> None:
        self.parent = parent
        self.level = (parent.level if parent is not None else 0) + 1
        self.owner = owner                # the creator's kernel euid and egid
        self.group = group
        self.uid_map: list[tuple[int, int, int]] | None = None   # (first, kernel lower first, count)
        self.gid_map: list[tuple[int, int, int]] | None = None
        self.setgroups_allowed = parent.setgroups_allowed if parent is not None else True


def create(t) -> UserNamespace:
    """A user namespace made by `t` (clone/unshare with CLONE_NEWUSER)."""
    parent = t.tg.userns
    if parent is not None and parent.level >= MAX_DEPTH:
        raise SyscallError(errno.EUSERS)
    c = t.tg.creds
    return UserNamespace(parent, c.euid, c.egid)


def has_caps(t) -> bool:
    """Does `t` hold the capabilities of its own user namespace (module comment)?"""
    if t.tg.userns is None:
        return t.tg.creds.euid == 0
    return t.tg.ns_caps


def capable(t, target) -> bool:
    """ns_capable(target, ...): the capabilities of `t` over user namespace `target` (None:
    the sandbox's)."""
    cur = t.tg.userns
    ns = target
    while True:
        if ns is cur:
            return has_caps(t)
        if ns is None:
            return False                  # `target` is not `t`'s namespace nor below it
        if ns.parent is cur and ns.owner == t.tg.creds.euid:
            return True                   # the owner of a child namespace holds all in it
        ns = ns.parent


def exec_caps(tg) -> None:
    """After execve: capabilities in a new namespace only for its root (cap_bprm_creds_from_file)."""
    ns = tg.userns
    tg.ns_caps = ns is not None and _down(ns, tg.creds.euid, "uid_map") == 0


def _down(ns, kid: int, kind: str) -> int | None:
    """Kernel id `kid` as namespace `ns` names it; None when unmapped."""
    if ns is None:
        return kid
    m = getattr(ns, kind)
    for first, lower, count in m or ():
        if lower <= kid < lower + count:
            return first + kid - lower
    return None


def _up(ns, nid: int, kind: str) -> int | None:
    """Id `nid` of namespace `ns` as a kernel id; None when unmapped."""
    if ns is None:
        return nid
    for first, lower, count in getattr(ns, kind) or ():
        if first <= nid < first + count:
            return lower + nid - first
    return None


def uid_seen(t, kid: int) -> int:
    """A kernel uid as `t` sees it (from_kuid_munged)."""
    ns = t.tg.userns
    if ns is None:
        return kid
    v = _down(ns, kid, "uid_map")
    return OVERFLOW_ID if v is None else v


def gid_seen(t, kid: int) -> int:
    ns = t.tg.userns
    if ns is None:
        return kid
    v = _down(ns, kid, "gid_map")
    return OVERFLOW_ID if v is None else v


def kernel_id(t, nid: int, kind: str) -> int:
    """An id the application passes in (setuid(2)...), of its namespace, as a kernel id:
    EINVAL when its namespace does not map it (make_kuid's invalid id)."""
    if nid == 0xFFFFFFFF:
        return nid
    kid = _up(t.tg.userns, nid, kind)
    if kid is None:
        raise SyscallError(errno.EINVAL)
    return kid


def show_map(ns, kind: str, reader_ns) -> bytes:
    """/proc/PID/uid_map or gid_map read by a task of `reader_ns` (uid_map_show)."""
    if ns is None:
        return b"%10u %10u %10u\n" % (0, 0, 4294967295)
    lower_ns = reader_ns
    if lower_ns is ns:
        lower_ns = ns.parent
    out = []
    for first, lower, count in getattr(ns, kind) or ():
        shown = _down(lower_ns, lower, kind)
        if shown is None:
            continue
        out.append(b"%10u %10u %10u\n" % (first, shown, count))
    return b"".join(out)


def _parse(data: bytes) -> list[tuple[int, int, int]]:
    extents = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            raise SyscallError(errno.EINVAL)
        first, lower, count = (int(f) for f in fields)
        if count == 0 or first + count - 1 > 0xFFFFFFFF or lower + count - 1 > 0xFFFFFFFF \
                or first + count - 1 == 0xFFFFFFFF or lower + count - 1 == 0xFFFFFFFF:
            raise SyscallError(errno.EINVAL)
        for f2, l2, c2 in extents:
            if first < f2 + c2 and f2 < first + count or lower < l2 + c2 and l2 < lower + count:
                raise SyscallError(errno.EINVAL)
        extents.append((first, lower, count))
        if len(extents) > MAX_EXTENTS:
            raise SyscallError(errno.EINVAL)
    if not extents:
        raise SyscallError(errno.EINVAL)
    return extents


def write_map(t, ns, kind: str, data: bytes, offset: int) -> int:
    """A write to /proc/PID/uid_map or gid_map of a process in `ns` (map_write)."""
    if ns is None or getattr(ns, kind) is not None:
        raise SyscallError(errno.EPERM)          # the sandbox's own maps, or written already
    if offset != 0 or len(data) >= PAGE_SIZE:
        raise SyscallError(errno.EINVAL)
    writer_ns = t.tg.userns
    if writer_ns is not ns and writer_ns is not ns.parent:
        raise SyscallError(errno.EPERM)
    extents = _parse(data)
    c = t.tg.creds
    uid = kind == "uid_map"
    # The lower ids are ids of the parent namespace: to kernel ids, each one mapped there.
    kernel = []
    for first, lower, count in extents:
        klow = _up(ns.parent, lower, kind)
        khigh = _up(ns.parent, lower + count - 1, kind)
        if klow is None or khigh is None or khigh - klow != count - 1:
            raise SyscallError(errno.EPERM)
        kernel.append((first, klow, count))
    own = len(kernel) == 1 and kernel[0][2] == 1 and c.euid == ns.owner and (
        kernel[0][1] == c.euid if uid else (not ns.setgroups_allowed and kernel[0][1] == c.egid))
    # Anything else needs CAP_SETUID/CAP_SETGID over the parent namespace, which a process
    # inside `ns` never has (its capabilities are those of `ns`): a writer of the parent.
    if not own and not (writer_ns is ns.parent and has_caps(t)):
        raise SyscallError(errno.EPERM)
    setattr(ns, kind, kernel)
    return len(data)


def write_setgroups(t, ns, data: bytes, offset: int) -> int:
    """/proc/PID/setgroups: "allow" or "deny", before gid_map is written (proc_setgroups_write)."""
    if offset != 0 or len(data) >= PAGE_SIZE:
        raise SyscallError(errno.EINVAL)
    word = data.strip()
    if word not in (b"allow", b"deny"):
        raise SyscallError(errno.EINVAL)
    if ns is None:
        raise SyscallError(errno.EPERM)          # the sandbox's own namespace: never changes
    allow = word == b"allow"
    if allow and not ns.setgroups_allowed:
        raise SyscallError(errno.EPERM)
    if not allow and ns.gid_map is not None and ns.setgroups_allowed:
        raise SyscallError(errno.EPERM)
    ns.setgroups_allowed = allow
    return len(data)


def proc_entries(fs, tg, key) -> dict:
    """uid_map, gid_map and setgroups of /proc/PID (procfs._pid_entries)."""
    return {
        b"uid_map": lambda: _MapFile(fs, key + (b"uid_map",), tg, "uid_map"),
        b"gid_map": lambda: _MapFile(fs, key + (b"gid_map",), tg, "gid_map"),
        b"setgroups": lambda: _MapFile(fs, key + (b"setgroups",), tg, "setgroups"),
    }


def _map_file_classes():
    from sentry.vfs.procfs import O_PATH, File, ProcFile, SeqFile

    class MapFile(ProcFile):
        def __init__(self, fs, key, tg, kind: str) -> None:
            self.kind = kind
            super().__init__(fs, key, lambda: self.content(), tg, 0o644)

        def content(self) -> bytes:
            ns = self.tg.userns
            if self.kind == "setgroups":
                return b"allow\n" if ns is None or ns.setgroups_allowed else b"deny\n"
            reader = self.fs.current
            return show_map(ns, self.kind, reader.tg.userns if reader is not None else None)

        def open(self, t, dentry, flags: int):
            if flags & O_PATH:
                return File(flags, dentry, dentry.mount)
            f = MapSeq(flags, dentry, self.content(), writable=True)
            f.target = self.tg
            f.kind = self.kind
            return f

    class MapSeq(SeqFile):
        def write(self, t, srcs) -> int:
            return self.pwrite(t, srcs, self.offset)

        def pwrite(self, t, srcs, offset: int) -> int:
            data = b"".join(bytes(s) for s in srcs)
            ns = self.target.userns
            if self.kind == "setgroups":
                return write_setgroups(t, ns, data, offset)
            return write_map(t, ns, self.kind, data, offset)

    return MapFile


class _Lazy:
    cls = None

    def __call__(self, *a):
        if _Lazy.cls is None:
            _Lazy.cls = _map_file_classes()
        return _Lazy.cls(*a)


_MapFile = _Lazy()
