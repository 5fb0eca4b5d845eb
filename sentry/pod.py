"""A pod as one sandbox: more containers in a running Sentry (Kubernetes' CRI through containerd).

containerd-shim-runc-v2 marks each container of a CRI pod with annotations:
`io.kubernetes.cri.container-type` = sandbox (the pause container, whose
`create` starts the Sentry as usual) or container, and
`io.kubernetes.cri.sandbox-id`.  For an application container the front
(runsc_py/pod.py) does not start a Sentry: it spawns a Gofer for the
container's rootfs and hands its socket to the pod's Sentry with the
"container_add" control request; this module mounts that rootfs as a new
mount tree (its own root, with the container's proc/tmpfs/dev mounts beside
the pod's) and registers it under the container id.  The container's init
and every `exec` into it are ordinary processes of the pod's kernel (they
share its loopback, IPC and -- in this version always -- its PID namespace)
whose root is that tree ("exec" requests carrying "container": ID).

The "container_add" connection is the member's life: when it closes (the
container's proxy ended: its init exited, or `kill`/`delete` killed it), the
container's remaining processes are killed and its mounts and Gofer dropped.
Bind mounts of a member (CRI's /etc/hosts, /etc/resolv.conf, /etc/hostname,
/dev/termination-log) are served by Gofers the front starts -- a confined
Sentry cannot -- and sends with the request ("binds": each its destination,
resolved source, options, whether it is a file, and which fd serves it).
"""
from __future__ import annotations

import fcntl
import signal
import socket
from types import SimpleNamespace


class Member:
    __slots__ = ("id", "root", "mounts", "client")

    def __init__(self, cid: str, root, mounts: list, client: list) -> None:
        self.id = cid
        self.root = root
        self.mounts = mounts
        self.client = client


def members(k) -> dict:
    got = k.pod_members
    if got is None:
        got = k.pod_members = {}
    return got


def _proc_root(vfs):
    for m in vfs.mounts:
        if m.fstype == "proc":
            return m.root.inode
    return None


def add(k, msg: dict, fds: list[int]) -> Member:
    """Mount the rootfs served by the Gofer at fds[0] as container msg["id"]'s root tree."""
    from gofer.client import GoferClient
    from sentry.config import Mount as MountSpec
    from sentry.vfs.goferfs import GoferFS
    from sentry.vfs.inode import Dentry, Mount
    from sentry.vfs.walk import invalidate_paths
    cid = str(msg["id"])
    if cid in members(k):
        raise ValueError(f"container {cid} is already in this sandbox")
    binds = list(msg.get("binds", []))
    trees = list(msg.get("trees", []))          # [[host dir, ro]] served by fds[1:], in order
    if len(fds) != 1 + len(trees):
        raise ValueError("container_add needs the Gofer sockets it names")
    readonly = bool(msg.get("readonly", False))
    clients = [GoferClient(socket.socket(fileno=fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))) for fd in fds]
    client = clients[0]
    by_tree = {(str(t), bool(ro)): c for (t, ro), c in zip(trees, clients[1:])}
    vfs = k.vfs
    before = len(vfs.mounts)
    try:
        # Device numbers of its own (st_dev tells filesystems apart: find -xdev, du, cp -a).
        serial = k.pod_serial + 1
        k.pod_serial = serial
        fs = GoferFS(client, dev=0x1000 + 0x100 * serial, readonly=readonly)
        fs.kernel = k
        root_inode = fs.root_inode()
        invalidate_paths()
        m = Mount(fs, None, None, None, mount_id=vfs._alloc_id(), flags=frozenset({"ro"} if readonly else {"rw"}),
                  source="none", fstype="9p", options="trans=fd,cache=remote_revalidating")
        m.root = Dentry(b"/", None, root_inode, m)
        vfs.mounts.append(m)
        specs = [MountSpec(str(s["destination"]), str(s.get("type", "")), str(s.get("source", "")),
                           [str(o) for o in s.get("options", [])]) for s in msg.get("mounts", [])]
        sandbox = SimpleNamespace(cfg=SimpleNamespace(mounts=specs), kernel=k, log=k.log)
        saved = vfs.root
        vfs.root = m.root                   # the builder makes mount points under "the" root
        try:
            b = _MemberMounts(sandbox, vfs, by_tree)
            b._dev = 0x1000 + 0x100 * serial           # the builder numbers the member's other mounts
            b.procfs, b.proc_root = vfs.procfs, _proc_root(vfs)      # the pod's procfs, mounted again
            if b.proc_root is None:
                b.procfs = None
            b.mount_all()
            for spec in binds:
                b.bind(spec)
        finally:
            vfs.root = saved
            invalidate_paths()
    except BaseException:
        del vfs.mounts[before:]
        for c in clients:
            c.sock.close()
        raise
    member = members(k)[cid] = Member(cid, m.root, vfs.mounts[before:], clients)
    return member


def _member_mounts_class():
    from sentry.vfs.goferfs import GoferFS
    from sentry.vfs.mounts import MountBuilder, split_options

    class MemberMounts(MountBuilder):
        """The pod's MountBuilder with the Gofers of bind mounts given, not started (we are confined)."""

        def __init__(self, sandbox, vfs, by_tree: dict) -> None:
            super().__init__(sandbox, vfs)
            self.by_tree = by_tree

        def _gofer(self, tree: str, ro: bool):
            client = self.by_tree.get((tree, bool(ro)))
            if client is None:
                self.log.warning(f"bind mount of {tree!r}: no Gofer was sent for it (skipped)")
                return None
            fs = GoferFS(client, dev=self.dev(), readonly=ro)
            fs.kernel = self.kernel
            return fs

        def host_realpath(self, source: str) -> str:
            return source                   # resolved by the front (runsc_py/pod.py): no host path call here

        def bind(self, spec: dict) -> None:
            dest = "/" + str(spec["destination"]).lstrip("/")
            source = str(spec["source"])
            flags, _data, _shown = split_options([str(o) for o in spec.get("options", [])])
            if spec.get("file"):
                done = self.mount_bind_file(dest, source, flags)
            else:
                at = self.mountpoint(dest)
                done = self.mount_bind(at, source, flags) if at is not None else None
            if done is None:
                self.log.warning(f"bind mount at {dest}: skipped")
    return MemberMounts


def _MemberMounts(sandbox, vfs, by_tree):        # noqa: N802 -- a class made on first use
    global _member_mounts
    if _member_mounts is None:
        _member_mounts = _member_mounts_class()
    return _member_mounts(sandbox, vfs, by_tree)


_member_mounts = None


def processes(k, member: Member) -> list:
    mounts = {id(m) for m in member.mounts}
    return [tg for tg in k.thread_groups.values()
            if not tg.zombie and tg.fs is not None and id(tg.fs.root.mount) in mounts]


def remove(k, cid: str) -> None:
    """The member's proxy is gone: kill what still runs in it, drop its mounts and its Gofer."""
    from sentry import process
    from sentry import signals as sg
    from sentry.vfs.walk import invalidate_paths
    member = members(k).pop(cid, None)
    if member is None:
        return
    for tg in processes(k, member):
        process.send_to_group(k, tg, signal.SIGKILL, sg.siginfo(signal.SIGKILL, sg.SI_USER), force=True)
    gone = {id(m) for m in member.mounts}
    k.vfs.mounts[:] = [m for m in k.vfs.mounts if id(m) not in gone]
    invalidate_paths()
    for c in member.client:
        try:
            c.sock.close()                  # a Gofer exits when its socket closes
        except OSError:
            pass


def root_of(k, cid: str):
    member = members(k).get(cid)
    if member is None:
        raise ValueError(f"no container {cid} in this sandbox")
    return member.root

