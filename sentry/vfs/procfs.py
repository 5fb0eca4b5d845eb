"""procfs: the sandbox's /proc, made from the Sentry's own kernel objects.

Nothing here reads the host's /proc: every file is generated from the
kernel's thread groups, memory managers, fd tables and mount table, so a
process sees the sandbox (PID 1 is the container's init) and never a host
pid or path.  A few host facts a program sizes itself by (CPU count, total
memory) are sampled once at boot, before the Sentry is confined.

Files are generated when opened (a snapshot, as seq_file gives a reader
of a small /proc file) and read like regular files of that size; stat
reports size 0, as Linux does.  Directories are listed and looked up
live, and their dentries are never cached (`_Uncached`), so a process
that exits disappears from /proc at once and /proc/self is re-evaluated
on every walk.

/proc/self needs the calling task, which `Inode.readlink()` is not given:
`ProcFS.current` is set by the VFS wrapper that boot installs around path
resolution (see `install_current_task_hook`).  The Sentry handles one
syscall at a time, so "the task resolving a path" is well defined.
"""
from __future__ import annotations

import errno
import os
import time

from sentry.errors import SyscallError
from sentry.vfs.file import O_ACCMODE, O_PATH, O_RDONLY, File
from sentry.vfs.inode import Inode, Stat
from sentry.syscalls.misc import UNAME_RELEASE, UNAME_VERSION   # one source: the syscall table's release
from sentry.vfs.procgen import (FILESYSTEMS, _fd_target, gen_cpuinfo, gen_fdinfo, gen_loadavg, gen_maps, gen_meminfo, gen_mountinfo, gen_mounts, gen_pid_stat, gen_pid_statm, gen_pid_status, gen_stat, gen_uptime)

S_IFDIR, S_IFREG, S_IFLNK = 0o040000, 0o100000, 0o120000
PROC_SUPER_MAGIC = 0x9FA0


class _Uncached(dict):
    """A Dentry.children that remembers nothing (and hands the same to its children)."""
    uncached = True           # what procgen._fd_target asks (it cannot import this module)

    def __contains__(self, key) -> bool:
        return False

    def __getitem__(self, key):
        raise KeyError(key)

    def __setitem__(self, key, d) -> None:
        if d is not None:
            d.children = _Uncached()

    def get(self, key, default=None):
        return default


def uncache(dentry) -> None:
    dentry.children = _Uncached()


class ProcFS:
    def __init__(self, kernel, dev: int) -> None:
        self.kernel = kernel
        self.dev = dev
        self.current = None                   # the task resolving a path (see module comment)
        self._inos: dict[tuple, int] = {}
        self.born_ns = time.time_ns()
        try:
            from sentry.hostcpu import sandbox_cpus
            self.ncpu = len(sandbox_cpus())
        except OSError:
            self.ncpu = 1
        page = os.sysconf("SC_PAGE_SIZE")
        self.mem_total = os.sysconf("SC_PHYS_PAGES") * page

    def ino(self, key: tuple) -> int:
        i = self._inos.get(key)
        if i is None:
            i = self._inos[key] = len(self._inos) + 2
        return i

    def statfs(self) -> dict[str, int]:
        return {"f_type": PROC_SUPER_MAGIC, "f_bsize": 4096, "f_blocks": 0, "f_bfree": 0, "f_bavail": 0,
                "f_files": 0, "f_ffree": 0, "f_namelen": 255, "f_frsize": 4096}

    def current_tg(self):
        t = self.current
        return t.tg if t is not None else self.kernel.init


class ProcInode(Inode):
    def __init__(self, fs: ProcFS, key: tuple, mode: int, tg=None) -> None:
        super().__init__(fs, fs.ino(key), mode)
        self.tg = tg

    def stat(self) -> Stat:
        uid = gid = 0
        tg = self.tg
        if tg is not None:
            uid, gid = tg.creds.euid, tg.creds.egid
        t = self.fs.born_ns
        nlink = 2 if self.is_dir else 1
        return Stat(self.ino, self.fs.dev, self.mode, nlink, uid, gid, 0, 0, 1024, 0, t, t, t)

    def statfs(self) -> dict[str, int]:
        return self.fs.statfs()


class ProcFile(ProcInode):
    """A read-only file whose content is generated at open."""

    def __init__(self, fs, key, gen, tg=None, perm: int = 0o444) -> None:
        super().__init__(fs, key, S_IFREG | perm, tg)
        self.gen = gen

    def open(self, t, dentry, flags: int) -> File:
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        if flags & O_ACCMODE != O_RDONLY:
            raise SyscallError(errno.EACCES)
        return SeqFile(flags, dentry, _generate(self.gen))


class ProcWritable(ProcFile):
    """A /proc/sys knob: reads its value; writes are accepted and ignored (sandbox-wide knobs stay fixed)."""

    def __init__(self, fs, key, gen) -> None:
        super().__init__(fs, key, gen, perm=0o644)

    def open(self, t, dentry, flags: int) -> File:
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        return SeqFile(flags, dentry, _generate(self.gen), writable=True)


def _generate(gen) -> bytes:
    """A file's content; a process half gone (exiting, a zombie) reads as empty, never a Sentry error."""
    try:
        return gen()
    except SyscallError:
        raise
    except (AttributeError, TypeError, KeyError, IndexError, ValueError):
        return b""


class SeqFile(File):
    def __init__(self, flags: int, dentry, data: bytes, writable: bool = False) -> None:
        super().__init__(flags, dentry, dentry.mount)
        self.data = data
        self._writable = writable

    def read(self, t, dsts) -> int:
        n = self.pread(t, dsts, self.offset)
        self.offset += n
        return n

    def pread(self, t, dsts, offset: int) -> int:
        data = self.data
        n = 0
        for mv in dsts:
            chunk = data[offset + n:offset + n + len(mv)]
            mv[:len(chunk)] = chunk
            n += len(chunk)
            if len(chunk) < len(mv):
                break
        return n

    def write(self, t, srcs) -> int:
        if not self._writable:
            raise SyscallError(errno.EBADF)
        return sum(len(s) for s in srcs)

    def pwrite(self, t, srcs, offset: int) -> int:
        return self.write(t, srcs)

    def seek(self, offset: int, whence: int) -> int:
        if whence == 0:
            new = offset
        elif whence == 1:
            new = self.offset + offset
        elif whence == 2:
            new = len(self.data) + offset
        else:
            raise SyscallError(errno.EINVAL)
        if new < 0:
            raise SyscallError(errno.EINVAL)
        self.offset = new
        return new


class ProcSymlink(ProcInode):
    def __init__(self, fs, key, target, tg=None, magic: bool = False, jump=None) -> None:
        super().__init__(fs, key, S_IFLNK | 0o777, tg)
        self.target = target          # bytes, or a callable giving them
        self.magic = magic            # a /proc/PID link to a file, not a path (openat2's RESOLVE_NO_MAGICLINKS)
        # A magic link the walk follows by jumping to a dentry, not by reading its text
        # (/proc/PID/root and cwd: the task's own directories, whatever the reader's root is).
        self.jump = jump

    def readlink(self) -> bytes:
        target = self.target
        if not callable(target):
            return target
        try:
            return target()
        except (AttributeError, TypeError, KeyError):
            raise SyscallError(errno.ENOENT) from None


class ProcDir(ProcInode):
    """A directory whose entries come from `entries()`: name -> zero-argument inode factory."""

    def __init__(self, fs, key, entries, tg=None, perm: int = 0o555) -> None:
        super().__init__(fs, key, S_IFDIR | perm, tg)
        self.entries = entries

    def lookup(self, name: bytes) -> Inode | None:
        make = self.entries().get(name)
        return make() if make is not None else None

    def list(self) -> list[tuple[bytes, int, int]]:
        out = []
        for name, make in self.entries().items():
            inode = make()
            out.append((name, inode.ino, (inode.mode >> 12) & 0xF))
        return out

    def open(self, t, dentry, flags: int) -> File:
        from sentry.vfs.devfs import SynthDirFile
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        return SynthDirFile(flags, dentry)


def _static_dir(fs, key, tree: dict, tg=None) -> ProcDir:
    """A fixed directory: `tree` maps names to factories."""
    return ProcDir(fs, key, lambda: tree, tg)


# ---------------------------------------------------------------------------
# The tree.
# ---------------------------------------------------------------------------

def _pid_entries(fs: ProcFS, tg, task=None):
    """The entries of /proc/PID (or /proc/PID/task/TID when `task` is given)."""
    key = ("t", task.tid) if task is not None else ("p", tg.tgid)

    def f(name, gen, perm=0o444):
        return lambda: ProcFile(fs, key + (name,), gen, tg, perm)

    def ln(name, target, jump=None):
        return lambda: ProcSymlink(fs, key + (name,), target, tg, magic=True, jump=jump)

    def guarded(fn):
        """root, cwd, exe: followed or read only by a reader ptrace_may_access allows (Linux's
        proc_fd_access_allowed, PTRACE_MODE_READ_FSCREDS) -- in a pod, another tenant's process."""
        def check():
            if not may_read_links(fs.current, tg):
                raise SyscallError(errno.EACCES)
            return fn()
        return check

    def seen_from_reader(d):
        """The path of dentry `d` as the reading task names it (from its own root), as d_path does."""
        reader = fs.current
        return d.path(reader.tg.fs.root if reader is not None else None)

    def exe() -> bytes:
        if not tg.exe:
            raise SyscallError(errno.ENOENT)
        return tg.exe

    entries = {
        b"stat": f(b"stat", lambda: gen_pid_stat(fs, tg, task)),
        b"status": f(b"status", lambda: gen_pid_status(fs, tg, task)),
        b"statm": f(b"statm", lambda: gen_pid_statm(fs, tg)),
        b"cmdline": f(b"cmdline", lambda: b"".join(a + b"\0" for a in tg.argv)),
        b"environ": f(b"environ", lambda: b"".join(e + b"\0" for e in tg.envp), 0o400),
        b"comm": f(b"comm", lambda: tg.comm + b"\n", 0o644),
        b"maps": f(b"maps", lambda: gen_maps(fs, tg)),
        b"mounts": f(b"mounts", lambda: gen_mounts(fs, tg)),
        b"mountinfo": f(b"mountinfo", lambda: gen_mountinfo(fs, tg)),
        b"limits": f(b"limits", lambda: gen_limits(tg)),
        b"cgroup": f(b"cgroup", lambda: b"0::/\n"),
        b"oom_score_adj": lambda: ProcWritable(fs, key + (b"oom_score_adj",), lambda: b"0\n"),
        b"loginuid": f(b"loginuid", lambda: b"4294967295"),
        b"exe": ln(b"exe", guarded(exe)),
        b"cwd": ln(b"cwd", guarded(lambda: seen_from_reader(tg.fs.cwd)), jump=guarded(lambda: tg.fs.cwd)),
        b"root": ln(b"root", guarded(lambda: seen_from_reader(tg.fs.root)), jump=guarded(lambda: tg.fs.root)),
        b"fd": lambda: ProcFdDir(fs, key + (b"fd",), lambda: _fd_entries(fs, tg, key), tg, 0o500),
        b"fdinfo": lambda: ProcDir(fs, key + (b"fdinfo",), lambda: _fdinfo_entries(fs, tg, key), tg, 0o500),
    }
    if task is None:
        entries[b"task"] = lambda: ProcDir(fs, key + (b"task",), lambda: _task_entries(fs, tg), tg)
    from sentry.userns import proc_entries
    entries.update(proc_entries(fs, tg, key))   # uid_map gid_map setgroups
    return entries


def may_read_links(reader, tg) -> bool:
    """PTRACE_MODE_READ_FSCREDS in this Sentry's capability model (root holds CAP_SYS_PTRACE):
    the reader's own process, root, or a reader whose fsuid/fsgid are the target's real, effective
    and saved ids while the target is dumpable (__ptrace_may_access)."""
    if reader is None or reader.tg is tg:
        return True
    c, o = reader.tg.creds, tg.creds
    if c.euid == 0:
        return True
    return c.fsuid == o.ruid == o.euid == o.suid and c.fsgid == o.rgid == o.egid == o.sgid and bool(tg.dumpable)


def _fd_entries(fs, tg, key):
    return {str(fd).encode(): (lambda fd=fd, f=f: ProcSymlink(fs, key + (b"fd", fd), lambda: _fd_target(f), tg, magic=True))
            for fd, f in sorted(tg.fds.files.items())}


class ProcFdDir(ProcDir):
    """/proc/PID/fd.  Its links are magic, as Linux's: following one opens the descriptor's
    file itself, even when it has no path (a pipe, a deleted file).  The walk follows the
    link's text relative to this directory, so that text ("pipe:[N]", "/x (deleted)"...)
    is also looked up here, hidden from the listing, and names the file again."""

    def lookup(self, name: bytes):
        found = super().lookup(name)
        if found is not None or name.isdigit():
            return found
        tg = self.tg
        for fd, f in sorted(tg.fds.files.items()):
            if f.dentry is None and _fd_target(f) == name:
                return MagicFile(self.fs, self.key + (b"magic", fd), f, tg)
        return None

    def __init__(self, fs, key, entries, tg, perm) -> None:
        super().__init__(fs, key, entries, tg, perm)
        self.key = key


class MagicFile(ProcInode):
    """The file behind a /proc/PID/fd link that has no path: opening it opens that file anew."""

    def __init__(self, fs, key, file, tg) -> None:
        try:
            mode = file.stat().mode
        except SyscallError:
            mode = 0o010000
        super().__init__(fs, key, (mode & 0o170000) | 0o600, tg)
        self.file = file

    def open(self, t, dentry, flags: int) -> File:
        f = self.file
        if flags & O_PATH:
            return File(flags, dentry, dentry.mount)
        pipe = getattr(f, "pipe", None)
        if pipe is not None:
            return type(f)(pipe, flags & (O_ACCMODE | 0o4000))
        host_fd = getattr(f, "host_fd", None)
        if host_fd is not None:
            from sentry.vfs.file import HostFDFile
            try:
                dup = os.dup(host_fd)
            except OSError as e:
                raise SyscallError(e.errno) from None
            return HostFDFile(dup, flags, host_offset=True)
        raise SyscallError(errno.ENXIO)


def _fdinfo_entries(fs, tg, key):
    return {str(fd).encode(): (lambda fd=fd: ProcFile(fs, key + (b"fdinfo", fd), lambda: gen_fdinfo(fs, tg, fd), tg))
            for fd in sorted(tg.fds.files)}


def _task_entries(fs, tg):
    return {str(task.tid).encode(): (lambda task=task: ProcDir(fs, ("t", task.tid),
                                                               lambda: _pid_entries(fs, tg, task), tg))
            for task in list(tg.tasks)}


LIMIT_ROWS = [("Max cpu time", "seconds"), ("Max file size", "bytes"), ("Max data size", "bytes"),
              ("Max stack size", "bytes"), ("Max core file size", "bytes"), ("Max resident set", "bytes"),
              ("Max processes", "processes"), ("Max open files", "files"), ("Max locked memory", "bytes"),
              ("Max address space", "bytes"), ("Max file locks", "locks"), ("Max pending signals", "signals"),
              ("Max msgqueue size", "bytes"), ("Max nice priority", ""), ("Max realtime priority", ""),
              ("Max realtime timeout", "us")]


def gen_limits(tg) -> bytes:
    def v(x):
        return "unlimited" if x >= (1 << 63) else str(x)
    out = [f"{'Limit':<26}{'Soft Limit':<21}{'Hard Limit':<21}{'Units':<10}"]
    for (name, unit), (soft, hard) in zip(LIMIT_ROWS, tg.rlimits):
        out.append(f"{name:<26}{v(soft):<21}{v(hard):<21}{unit:<10}")
    return ("\n".join(out) + "\n").encode()


def make_procfs(kernel, dev: int) -> tuple[ProcFS, ProcDir]:
    from sentry.syscalls.namespaces import proc_uts_file
    from sentry.syscalls.sysvipc import proc_sysvipc_dir
    from sentry.syscalls.mqueue import proc_mqueue_dir
    fs = ProcFS(kernel, dev)
    k = kernel

    def f(name, gen, perm=0o444):
        return lambda: ProcFile(fs, ("root", name), gen, None, perm)

    def knob(path, gen):
        return lambda: ProcWritable(fs, ("sys",) + path, gen)

    kernel_dir = {
        b"hostname": lambda: proc_uts_file(fs, "hostname"),       # the reader's UTS namespace
        b"domainname": lambda: proc_uts_file(fs, "domainname"),
        b"osrelease": f(b"osrelease", lambda: UNAME_RELEASE + b"\n"),
        b"ostype": f(b"ostype", lambda: b"Linux\n"),
        b"version": f(b"kversion", lambda: UNAME_VERSION + b"\n"),
        b"pid_max": knob((b"pid_max",), lambda: b"4194304\n"),
        b"ngroups_max": f(b"ngroups_max", lambda: b"65536\n"),
        b"cap_last_cap": f(b"cap_last_cap", lambda: b"40\n"),
        b"threads-max": knob((b"threads-max",), lambda: b"63439\n"),
        b"shmmax": knob((b"shmmax",), lambda: b"18446744073692774399\n"),
        b"shmall": f(b"shmall", lambda: b"18446744073692774399\n"),   # sentry/ipc/shm.py's limits
        b"shmmni": f(b"shmmni", lambda: b"4096\n"),
        b"msgmax": f(b"msgmax", lambda: b"8192\n"),             # sentry/ipc/msg.py's limits
        b"msgmnb": f(b"msgmnb", lambda: b"16384\n"),
        b"msgmni": f(b"msgmni", lambda: b"32000\n"),
        b"sem": f(b"sem", lambda: b"32000\t1024000000\t500\t32000\n"),   # SEMMSL SEMMNS SEMOPM SEMMNI
        b"random": lambda: _static_dir(fs, ("sys", b"random"), {
            b"boot_id": f(b"boot_id", lambda: _boot_id(fs)),
            b"uuid": f(b"uuid", lambda: _uuid()),
        }),
        b"yama": lambda: _static_dir(fs, ("sys", b"yama"), {
            b"ptrace_scope": f(b"ptrace_scope", lambda: b"1\n")}),
    }
    vm_dir = {
        b"overcommit_memory": knob((b"overcommit_memory",), lambda: b"0\n"),
        b"max_map_count": knob((b"max_map_count",), lambda: b"65530\n"),
        b"mmap_min_addr": knob((b"mmap_min_addr",), lambda: b"65536\n"),
    }
    fs_dir = {
        b"nr_open": knob((b"nr_open",), lambda: b"1048576\n"),
        b"mqueue": lambda: proc_mqueue_dir(fs),                  # the reader's IPC namespace
        b"file-max": knob((b"file-max",), lambda: b"9223372036854775807\n"),
    }
    sys_dir = {
        b"kernel": lambda: _static_dir(fs, ("sys", b"kernel"), kernel_dir),
        b"vm": lambda: _static_dir(fs, ("sys", b"vm"), vm_dir),
        b"fs": lambda: _static_dir(fs, ("sys", b"fs"), fs_dir),
        b"net": lambda: _static_dir(fs, ("sys", b"net"), {}),
    }
    fixed = {
        b"self": lambda: ProcSymlink(fs, ("self",), lambda: str(fs.current_tg().tgid).encode()),
        b"thread-self": lambda: ProcSymlink(fs, ("thread-self",), _thread_self(fs)),
        b"meminfo": f(b"meminfo", lambda: gen_meminfo(fs)),
        b"cpuinfo": f(b"cpuinfo", lambda: gen_cpuinfo(fs)),
        b"stat": f(b"stat", lambda: gen_stat(fs)),
        b"uptime": f(b"uptime", lambda: gen_uptime(fs)),
        b"loadavg": f(b"loadavg", lambda: gen_loadavg(fs)),
        b"version": f(b"version", lambda: b"Linux version " + UNAME_RELEASE + b" (runsc-py) " + UNAME_VERSION + b"\n"),
        b"filesystems": f(b"filesystems", lambda: FILESYSTEMS),
        b"cmdline": f(b"cmdline", lambda: b"BOOT_IMAGE=/vmlinuz-" + UNAME_RELEASE + b" quiet\n"),
        b"mounts": lambda: ProcSymlink(fs, ("mounts",), b"self/mounts"),
        b"sys": lambda: _static_dir(fs, ("sys",), sys_dir),
        b"sysvipc": lambda: proc_sysvipc_dir(fs),            # the reader's IPC namespace
    }

    def root_entries():
        out = dict(fixed)
        for tgid, tg in sorted(k.thread_groups.items()):
            out[str(tgid).encode()] = (lambda tg=tg: ProcDir(fs, ("p", tg.tgid), lambda: _pid_entries(fs, tg), tg))
        return out

    root = ProcDir(fs, ("root",), root_entries)
    root.lookup = lambda name: _root_lookup(fs, root_entries, name)  # type: ignore[method-assign]
    return fs, root


def _root_lookup(fs, root_entries, name: bytes):
    # /proc/TID for a thread that is not a group leader exists too (hidden from the listing).
    if name.isdigit():
        k = fs.kernel
        tg = k.thread_groups.get(int(name))
        if tg is not None:
            return ProcDir(fs, ("p", tg.tgid), lambda: _pid_entries(fs, tg), tg)
        t = k.tasks.get(int(name))
        if t is not None:
            return ProcDir(fs, ("t", t.tid), lambda: _pid_entries(fs, t.tg, t), t.tg)
        return None
    make = root_entries().get(name)
    return make() if make is not None else None


def _thread_self(fs):
    def target() -> bytes:
        t = fs.current
        if t is None:
            raise SyscallError(errno.ENOENT)
        return f"{t.tg.tgid}/task/{t.tid}".encode()
    return target


_BOOT_ID: list[bytes] = []


def _boot_id(fs) -> bytes:
    if not _BOOT_ID:
        _BOOT_ID.append(_uuid())
    return _BOOT_ID[0]


def _uuid() -> bytes:
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}\n".encode()


def install_current_task_hook(vfs, procfs: ProcFS) -> None:
    """Record the task resolving each path in `procfs.current` (for /proc/self): the VFS's
    resolve and resolve_parent set it when `vfs.procfs` is set."""
    vfs.procfs = procfs                 # for resolvers that walk by themselves (openat2)
