"""Bringing a sandbox up: Gofer, MemoryFile, platform, VFS, init process; then the task loop.

`run_sandbox(cfg)` runs in the calling process, which becomes the Sentry.
Order matters for the security promise: everything that touches host
paths (the Gofer's rootfs, imports, the log) happens here, before the
first application instruction runs; from then on every file arrives from
the Gofer as a donated fd.
"""
from __future__ import annotations

import errno
import fcntl
import os
import signal

from sentry.config import SandboxConfig
from sentry.errors import SyscallError
from sentry.log import SentryLog


class BootError(Exception):
    """The sandbox could not start (bad executable, rootfs problem...): one line for the user."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _preimport() -> None:
    """Import every module the Sentry may need later: after start-up no import may open a file."""
    import encodings.idna  # noqa: F401
    import sentry.kernel  # noqa: F401
    import sentry.loader  # noqa: F401
    import sentry.strace  # noqa: F401
    import sentry.syscalls  # noqa: F401
    import sentry.vfs.devfs  # noqa: F401
    import sentry.vfs.goferfs  # noqa: F401
    import sentry.vfs.tty  # noqa: F401
    import platforms.ptrace.tracer  # noqa: F401
    import sentry.confine  # noqa: F401
    import sentry.monitor  # noqa: F401
    import gofer.client  # noqa: F401
    import sentry.exec  # noqa: F401
    import sentry.futex  # noqa: F401
    import sentry.pipe  # noqa: F401
    import sentry.process  # noqa: F401
    import sentry.signals  # noqa: F401
    import sentry.vfs.walk  # noqa: F401
    import sentry.mm.manager  # noqa: F401
    import heapq, select, struct, signal  # noqa: F401,E401
    import importlib
    for name in ("sentry.vfs.procfs", "sentry.vfs.tmpfs", "sentry.vfs.sysfs", "sentry.vfs.overlay",
                 "sentry.vfs.mounts"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    # First calls that read host files lazily (the timezone for log timestamps).
    import time
    time.strftime("%H:%M:%S")
    signal.Signals(1).name


def run_sandbox(cfg: SandboxConfig) -> int:
    """Run the sandbox; return the exit status for runsc-py (the app's, or 128+N for a signal).

    With `cfg.confine` (the default) the Sentry is a forked child that confines
    itself after start-up (sentry/confine.py); this process stays outside as a
    small monitor: it relays host signals to the Sentry and returns its exit
    status, so the front end can still do host-side bookkeeping afterwards.
    """
    _preimport()
    if not cfg.confine:
        return _run_sentry(cfg, confine=False)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(err_r)
        code = 1
        try:
            code = _run_sentry(cfg, confine=True)
        except BootError as e:
            os.write(err_w, f"{e.exit_code} {e}".encode()[:4000])
            code = e.exit_code
        except BaseException as e:          # reported by the monitor as one line
            try:
                os.write(err_w, f"1 {type(e).__name__}: {e}".encode()[:4000])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(err_w)
    from sentry.monitor import monitor
    return monitor(pid, err_r, BootError)


def _run_sentry(cfg: SandboxConfig, confine: bool) -> int:
    log = SentryLog(cfg.log_fd, cfg.debug)
    sb = Sandbox(cfg, log)
    try:
        sb.start(confine=confine)
        if cfg.start_gate_fd is not None:
            if cfg.ready_fd is not None:
                os.write(cfg.ready_fd, b"R")
            if not _read_gate(cfg.start_gate_fd):
                return 255
        return sb.kernel.run()
    finally:
        sb.shutdown()


def _read_gate(fd: int) -> bool:
    while True:
        try:
            return os.read(fd, 1) != b""
        except InterruptedError:
            continue


class Sandbox:
    def __init__(self, cfg: SandboxConfig, log: SentryLog) -> None:
        self.cfg = cfg
        self.log = log
        self.gofer_pid: int | None = None
        self.gofer = None
        self.kernel = None
        self.memfile = None

    def start(self, confine: bool = False) -> None:
        from gofer.client import spawn_gofer
        from platforms import get_platform
        from sentry.kernel import Kernel
        from sentry.mm.memfile import MemoryFile
        from sentry.vfs.walk import VFS
        cfg = self.cfg
        if not os.path.isdir(cfg.rootfs):
            raise BootError(f"rootfs {cfg.rootfs!r} is not a directory")
        self.gofer_pid, self.gofer = spawn_gofer(cfg.rootfs, readonly=cfg.root_readonly)
        self.memfile = MemoryFile()
        platform = get_platform(cfg.platform, self.memfile)
        vfs = VFS()
        self.kernel = Kernel(cfg, platform, self.memfile, vfs, self.log)
        self._mount_filesystems(vfs)
        if confine:
            from sentry.confine import confine as confine_sentry
            confine_sentry(cfg.network)
        self._start_init()

    def _mount_filesystems(self, vfs) -> None:
        from sentry.vfs.goferfs import GoferFS
        from sentry.vfs.mounts import mount_all
        cfg = self.cfg
        rootfs = GoferFS(self.gofer, dev=0x801, readonly=cfg.root_readonly)
        flags = frozenset({"ro"} if cfg.root_readonly else {"rw"})
        vfs.mount_root(rootfs, rootfs.root_inode(), flags=flags, source="none", fstype="9p",
                       options="trans=fd,cache=remote_revalidating")
        # Bind mounts' Gofers are kept here so they live (and are reaped) with the sandbox.
        self.mounts = mount_all(self, vfs)

    def _start_init(self) -> None:
        from sentry.task import Credentials, FSContext, Task, ThreadGroup
        from sentry.vfs.file import FDTable, HostFDFile, O_ACCMODE
        from sentry.vfs.walk import AT_FDCWD
        cfg, k = self.cfg, self.kernel
        creds = Credentials(cfg.uid, cfg.gid, cfg.additional_gids)
        root = k.vfs.root
        fds = FDTable()
        for app_fd, host_fd in enumerate(cfg.stdio):
            try:
                dup = fcntl.fcntl(host_fd, fcntl.F_DUPFD_CLOEXEC, 10)
            except OSError:
                continue
            acc = fcntl.fcntl(dup, fcntl.F_GETFL) & (O_ACCMODE | os.O_APPEND | os.O_NONBLOCK)
            fds.install_at(app_fd, HostFDFile(dup, acc | 0o100000, host_offset=True), False)
        tgid = k.alloc_id()
        tg = ThreadGroup(k, tgid, None, fds, FSContext(root, root), creds)
        for name, (soft, hard) in cfg.rlimits.items():
            from sentry.task import RLIMIT_NAMES
            if name in RLIMIT_NAMES:
                tg.rlimits[RLIMIT_NAMES.index(name)] = [soft, hard]
        t = Task(k, tgid, tg, None)
        tg.tasks.append(t)
        tg.leader = t
        k.tasks[tgid] = t
        k.thread_groups[tgid] = tg
        k.init = tg
        # cwd: must exist and be a directory, as runc requires.
        try:
            cwd = k.vfs.resolve(t, AT_FDCWD, cfg.cwd.encode())
            if not cwd.inode.is_dir:
                raise SyscallError(errno.ENOTDIR)
            tg.fs.cwd = cwd
        except SyscallError as e:
            raise BootError(f"chdir to cwd ({cfg.cwd!r}) set in config.json failed: {os.strerror(e.errno)}")
        argv = [a.encode() for a in cfg.args]
        envp = [e.encode() for e in cfg.env]
        from sentry.exec import exec_path, lookup_path
        try:
            path = lookup_path(t, argv[0], envp)
        except SyscallError as e:
            if e.errno == errno.ENOENT and b"/" not in argv[0]:
                raise BootError(f'exec: "{cfg.args[0]}": executable file not found in $PATH', 127)
            raise BootError(f'exec: "{cfg.args[0]}": {os.strerror(e.errno)}', 126 if e.errno == errno.EACCES else 127)
        try:
            exec_path(t, path, argv, envp)
        except SyscallError as e:
            raise BootError(f'exec: "{cfg.args[0]}": {os.strerror(e.errno)}', 126 if e.errno in (errno.EACCES, errno.ENOEXEC) else 127)
        k.runq.append(t)

    def shutdown(self) -> None:
        k = self.kernel
        if k is not None:
            for tg in list(k.thread_groups.values()):
                k.exit_thread_group(tg, signal.SIGKILL)
        if self.gofer is not None:
            try:
                self.gofer.sock.close()
            except OSError:
                pass
        if self.gofer_pid is not None:
            try:
                os.waitpid(self.gofer_pid, 0)
            except ChildProcessError:
                pass
