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
Bind mounts of a member container are not served (a confined Sentry cannot
start a Gofer for them); they are skipped with a warning in the Sentry log.
"""
from __future__ import annotations

import fcntl
import signal
import socket
from types import SimpleNamespace


class Member:
    __slots__ = ("id", "root", "mounts", "client")

    def __init__(self, cid: str, root, mounts: list, client) -> None:
        self.id = cid
        self.root = root
        self.mounts = mounts
        self.client = client


def members(k) -> dict:
    got = getattr(k, "pod_members", None)
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
    from sentry.vfs.mounts import MountBuilder
    from sentry.vfs.walk import invalidate_paths
    cid = str(msg["id"])
    if cid in members(k):
        raise ValueError(f"container {cid} is already in this sandbox")
    if len(fds) != 1:
        raise ValueError("container_add needs the Gofer's socket")
    readonly = bool(msg.get("readonly", False))
    fd = fcntl.fcntl(fds[0], fcntl.F_DUPFD_CLOEXEC, 10)
    client = GoferClient(socket.socket(fileno=fd))
    vfs = k.vfs
    before = len(vfs.mounts)
    try:
        fs = GoferFS(client, dev=0x900 + len(members(k)), readonly=readonly)
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
            b = MountBuilder(sandbox, vfs)
            b.procfs, b.proc_root = vfs.procfs, _proc_root(vfs)      # the pod's procfs, mounted again
            if b.proc_root is None:
                b.procfs = None
            b.mount_all()
        finally:
            vfs.root = saved
            invalidate_paths()
    except BaseException:
        del vfs.mounts[before:]
        client.sock.close()
        raise
    member = members(k)[cid] = Member(cid, m.root, vfs.mounts[before:], client)
    return member


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
        process.send_to_group(k, tg, signal.SIGKILL, sg.siginfo(signal.SIGKILL, sg.SI_USER))
    gone = {id(m) for m in member.mounts}
    k.vfs.mounts[:] = [m for m in k.vfs.mounts if id(m) not in gone]
    invalidate_paths()
    try:
        member.client.sock.close()          # the Gofer exits when its socket closes
    except OSError:
        pass


def root_of(k, cid: str):
    member = members(k).get(cid)
    if member is None:
        raise ValueError(f"no container {cid} in this sandbox")
    return member.root

