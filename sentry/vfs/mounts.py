"""Building the sandbox's mount table from config.json, at boot.

The root is the Gofer-served rootfs; then every entry of `mounts`, in
order, as runc would: `proc` (the Sentry's procfs), `sysfs` (minimal,
read-only), `tmpfs` (size=, mode=, uid=, gid=), `bind` (a second Gofer
serving the source directory: ro honoured by the Gofer itself), and
`devpts`/`mqueue`/`cgroup` accepted as empty directories.  A tmpfs asked for
at /dev becomes the Sentry's devfs (runc would fill that tmpfs with device
nodes; ours are synthetic), and /dev/shm is always a tmpfs.

Mount points are made when missing (runc makes them too); where the parent
filesystem cannot (a read-only rootfs), the mount is skipped with a warning.
Everything here runs before the first application instruction: it is the
only place that may start a Gofer or read mount options from the host side.
"""
from __future__ import annotations

import os

from sentry.errors import SyscallError
from sentry.vfs import devfs, fifo, lock, overlay, procfs, sysfs, tmpfs  # noqa: F401  (loaded before confinement)
from sentry.vfs.walk import follow_mounts

# Mount flags that are per-mount (shown before the fs options in /proc/mounts); others are fs data.
MOUNT_FLAGS = {"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "relatime", "noatime",
               "strictatime", "nodiratime", "sync", "async", "bind", "rbind", "private", "rprivate",
               "shared", "rshared", "slave", "rslave", "unbindable", "runbindable", "remount", "mand",
               "nomand", "dirsync", "lazytime"}
SHOWN_FLAGS = ("ro", "rw", "nosuid", "nodev", "noexec", "relatime", "noatime", "strictatime")


class _BootCreds:
    fsuid = fsgid = euid = egid = 0
    groups: list[int] = []


class _BootFS:
    umask = 0o022


class _BootTG:
    creds = _BootCreds()
    fs = _BootFS()


class _BootTask:
    """Stands in for a task where a filesystem op wants the caller's credentials (root, at boot)."""
    tg = _BootTG()


def split_options(options: list[str]) -> tuple[frozenset, dict[str, str], str]:
    """(mount flags, fs data as a dict, fs data as /proc/mounts shows it)."""
    flags = set()
    data: dict[str, str] = {}
    shown = []
    for opt in options:
        if opt in MOUNT_FLAGS:
            flags.add(opt)
            continue
        key, _, value = opt.partition("=")
        data[key] = value
        shown.append(opt)
    if "ro" in flags:
        flags.discard("rw")
    else:
        flags.add("rw")
    flags = {f for f in flags if f in SHOWN_FLAGS}
    return frozenset(flags), data, ",".join(shown)


class MountBuilder:
    def __init__(self, sandbox, vfs) -> None:
        self.sandbox = sandbox
        self.vfs = vfs
        self.kernel = sandbox.kernel
        self.log = sandbox.log
        self._dev = 0x20
        self.procfs: procfs.ProcFS | None = None
        self.extra_gofers: list[tuple[int, object]] = []
        self.shm_in_config = False

    def dev(self) -> int:
        self._dev += 1
        return self._dev

    # -- mount points --------------------------------------------------------

    def mountpoint(self, path: str):
        """The dentry at `path` (made, as directories, where missing); None if it cannot be."""
        d = follow_mounts(self.vfs.root)
        t = _BootTask()
        for name in [c.encode() for c in path.split("/") if c and c != "."]:
            if name == b"..":
                return None
            child = d.child(name)
            if child is None:
                mkdir = getattr(d.inode, "mkdir", None)
                if mkdir is None or d.mount.readonly:
                    return None
                try:
                    inode = mkdir(t, name, 0o755)
                except SyscallError:
                    return None
                from sentry.vfs.inode import Dentry
                child = Dentry(name, d, inode, d.mount)
                d.children[name] = child
            child = follow_mounts(child)
            if child.inode.is_symlink:
                return None             # runc refuses symlinked mount points into the rootfs too
            if not child.inode.is_dir:
                return None
            d = child
        return d

    # -- filesystems -----------------------------------------------------------

    def mount_proc(self, at, flags=frozenset({"rw", "nosuid", "nodev", "noexec", "relatime"}), data=""):
        if self.procfs is None:
            self.procfs, root = procfs.make_procfs(self.kernel, self.dev())
            procfs.install_current_task_hook(self.vfs, self.procfs)
            self.proc_root = root
        m = self.vfs.mount_at(at, self.procfs, self.proc_root, flags=flags, source="proc", fstype="proc",
                              options=data)
        procfs.uncache(m.root)
        return m

    def mount_sysfs(self, at, flags, data=""):
        fs, root = sysfs.make_sysfs(self.kernel, self.dev())
        flags = frozenset((flags - {"rw"}) | {"ro"})
        m = self.vfs.mount_at(at, fs, root, flags=flags, source="sysfs", fstype="sysfs", options=data)
        return m

    def mount_tmpfs(self, at, flags, data: dict[str, str], shown: str, source: str = "tmpfs"):
        try:
            fs, root = tmpfs.make_tmpfs(self.dev(), data)
        except (ValueError, KeyError):
            self.log.warning(f"tmpfs options {shown!r} not understood; mounting with defaults")
            fs, root = tmpfs.make_tmpfs(self.dev(), {})
        return self.vfs.mount_at(at, fs, root, flags=flags, source=source, fstype="tmpfs", options=shown)

    def mount_devfs(self, at, flags=frozenset({"rw", "nosuid"}), data=""):
        fs, root = devfs.make_devfs(dev=self.dev())
        m = self.vfs.mount_at(at, fs, root, flags=flags, source="tmpfs", fstype="tmpfs",
                              options=data or "mode=755")
        shm = m.root.child(b"shm")
        if shm is not None and not self.shm_in_config:
            self.mount_tmpfs(shm, frozenset({"rw", "nosuid", "nodev"}), {"mode": "1777"}, "mode=1777", "shm")
        return m

    def _gofer(self, tree: str, ro: bool):
        from gofer.client import spawn_gofer
        from sentry.vfs.goferfs import GoferFS
        try:
            pid, client = spawn_gofer(tree, readonly=ro)
        except OSError as e:
            self.log.warning(f"bind mount of {tree!r}: gofer failed: {e}")
            return None
        self.extra_gofers.append((pid, client))
        self.kernel.lifelines.watch(pid, f"the Gofer (pid {pid}) serving bind mount {tree!r}")
        client.on_lost = lambda: self.kernel.lifelines.lost(f"the Gofer (pid {pid}) serving bind mount {tree!r}")
        fs = GoferFS(client, dev=self.dev(), readonly=ro)
        fs.kernel = self.kernel
        return fs

    def mount_bind(self, at, source: str, flags):
        """A directory bind mount: a Gofer of its own serves the source tree (ro enforced there too).
        The mount table says "none", not the host path, as gVisor's does."""
        fs = self._gofer(source, "ro" in flags)
        if fs is None:
            return None
        return self.vfs.mount_at(at, fs, fs.root_inode(), flags=flags, source="none", fstype="9p",
                                 options="trans=fd,cache=remote_revalidating")

    def host_realpath(self, source: str) -> str:
        """The host file a file bind mount names (a host path call: only before confinement; a
        pod member's builder, running confined, gets its sources resolved by the front)."""
        return os.path.realpath(source)

    def mount_bind_file(self, dest: str, source: str, flags):
        """A file bind mount (Docker's /etc/hosts, /etc/resolv.conf, /etc/hostname).

        The Gofer serves trees, not single files, so one is started on the file's
        directory and only the file is grafted into the sandbox.  Trade-off: that
        Gofer could serve the file's siblings to a compromised Sentry; a Gofer mode
        serving exactly one file would close this (noted for the Gofer's owners)."""
        from sentry.vfs.inode import Dentry
        real = self.host_realpath(source)
        parent_dir, fname = os.path.split(real)
        at_parent = self.mountpoint(os.path.dirname(dest))
        name = os.path.basename(dest).encode()
        if at_parent is None or not name:
            return None
        at = at_parent.child(name)
        if at is None:
            mknod = getattr(at_parent.inode, "mknod", None)
            if mknod is None or at_parent.mount.readonly:
                return None
            try:
                inode = mknod(_BootTask(), name, 0o100644, 0)
            except SyscallError:
                return None
            at = Dentry(name, at_parent, inode, at_parent.mount)
            at_parent.children[name] = at
        at = follow_mounts(at)
        if at.inode.is_dir or at.inode.is_symlink:
            return None
        fs = self._gofer(parent_dir, "ro" in flags)
        if fs is None:
            return None
        try:
            inode = fs.root_inode().lookup(fname.encode())
        except SyscallError:
            inode = None
        if inode is None or inode.is_dir or inode.is_symlink:
            self.log.warning(f"bind mount of {source!r}: not a regular file (skipped)")
            return None
        return self.vfs.mount_at(at, fs, inode, flags=flags, source="none", fstype="9p",
                                 options="trans=fd,cache=remote_revalidating")

    def empty_dir(self, at, fstype: str, source: str, flags, shown: str):
        fs = devfs.SynthFS(self.dev())
        root = devfs.SynthDir(fs)
        return self.vfs.mount_at(at, fs, root, flags=flags, source=source, fstype=fstype, options=shown)

    # -- the whole table ---------------------------------------------------------

    def mount_all(self) -> None:
        cfg = self.sandbox.cfg
        root_fs = self.vfs.root.mount.fs
        if getattr(root_fs, "kernel", 1) is None:
            root_fs.kernel = self.kernel          # the rootfs's GoferFS prunes its dentries too
        dev_done = False
        self.shm_in_config = any(os.path.normpath("/" + m.destination.lstrip("/")) == "/dev/shm"
                                 for m in cfg.mounts)
        if not any(os.path.normpath("/" + m.destination.lstrip("/")) == "/dev" for m in cfg.mounts):
            at = self.mountpoint("/dev")
            if at is not None:
                self.mount_devfs(at)
            else:
                self.log.warning("rootfs has no /dev directory: /dev/null and friends are unavailable")
            dev_done = True
        for spec in cfg.mounts:
            dest = os.path.normpath("/" + spec.destination.lstrip("/"))
            kind = spec.type or ("bind" if {"bind", "rbind"} & set(spec.options) else "")
            if {"bind", "rbind"} & set(spec.options):
                kind = "bind"
            flags, data, shown = split_options(spec.options)
            if dest == "/dev" and kind in ("tmpfs", "devtmpfs"):
                at = self.mountpoint(dest)
                if at is not None:
                    self.mount_devfs(at, flags, shown)
                    dev_done = True
                continue
            if kind == "bind" and os.path.exists(spec.source) and not os.path.isdir(spec.source):
                if self.mount_bind_file(dest, spec.source, flags) is None:
                    self.log.warning(f"bind mount of file {spec.source!r} at {dest}: skipped")
                continue
            at = self.mountpoint(dest)
            if at is None:
                self.log.warning(f"mount {spec.type} at {dest}: mount point cannot be made (skipped)")
                continue
            if kind == "proc":
                self.mount_proc(at, flags | {"nosuid", "nodev", "noexec"}, shown)
            elif kind == "sysfs":
                self.mount_sysfs(at, flags, shown)
            elif kind == "tmpfs":
                self.mount_tmpfs(at, flags, data, shown, spec.source or "tmpfs")
            elif kind == "bind":
                self.mount_bind(at, spec.source, flags)
            elif kind == "devpts" and getattr(getattr(at.inode, "fs", None), "devpts", None) is not None \
                    and at.inode is at.inode.fs.devpts.dir:
                continue        # devfs's pts directory is the sandbox's devpts (ptys, the console)
            elif kind in ("devpts", "mqueue", "cgroup", "cgroup2", "securityfs", "debugfs"):
                self.empty_dir(at, kind, spec.source or kind, flags, shown)
            else:
                self.log.warning(f"mount type {spec.type!r} at {dest} is not supported (skipped)")


def mount_all(sandbox, vfs) -> MountBuilder:
    b = MountBuilder(sandbox, vfs)
    b.mount_all()
    return b


