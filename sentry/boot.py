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


def sentry_modules() -> list[str]:
    """Every module of the Sentry's packages, found on disk (sentry/ and every subpackage): after
    confinement no import can open a file, so all of them are imported before it.  (The boot
    module itself is already loaded; tests/test_layers.py checks this list against the tree.)"""
    import pkgutil
    import sentry
    names = []
    for info in pkgutil.walk_packages(sentry.__path__, "sentry."):
        spec = info.module_finder.find_spec(info.name)
        # Python sources only: sentry/vdso/vdso.so is the application's vDSO, not an extension.
        if info.name != "sentry.boot" and spec is not None and (spec.origin or "").endswith(".py"):
            names.append(info.name)
    return names


def _preimport() -> None:
    """Import every module the Sentry may need later: after start-up no import may open a file."""
    import encodings.idna  # noqa: F401
    import platforms
    platforms.preload(SandboxConfig.platform)     # the default platform's code (get_platform imports the chosen one)
    import gofer.client  # noqa: F401
    import traceback  # noqa: F401
    import heapq, select, struct, signal  # noqa: F401,E401
    for name in sentry_modules():
        __import__(name)          # an ImportError here is a bug: it must fail now, not after confinement
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
    from sentry.hostcpu import pin
    pin(cfg.cpu_pin)              # before the Gofer and stubs are started: they inherit the mask
    if not cfg.confine:
        return _run_sentry(cfg, confine=False)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(err_r)
        code = 1
        try:
            # The Sentry dies with its monitor (a SIGKILLed runsc-py leaves nothing running);
            # the stubs die with the Sentry (PTRACE_O_EXITKILL).
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)      # PR_SET_PDEATHSIG, SIGKILL
            if os.getppid() != parent:
                os._exit(1)
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


def _gofer_readonly(cfg: SandboxConfig) -> bool:
    """The Gofer serves read-only when the container's root is, when the host's own tree is served
    (`do`), and under an in-memory overlay (the lower layer is never written then)."""
    return cfg.root_readonly or cfg.host_readonly or cfg.overlay == "memory"


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
        self.control = None

    def start(self, confine: bool = False) -> None:
        from gofer.client import spawn_gofer
        from platforms import get_platform
        from sentry.kernel import Kernel
        from sentry.mm.memfile import MemoryFile
        from sentry.vfs.walk import VFS
        cfg = self.cfg
        if not os.path.isdir(cfg.rootfs):
            raise BootError(f"rootfs {cfg.rootfs!r} is not a directory")
        # With an in-memory overlay the lower layer is never written: the Gofer serves it read-only.
        self.gofer_pid, self.gofer = spawn_gofer(cfg.rootfs, readonly=_gofer_readonly(cfg))
        self.memfile = MemoryFile()
        try:
            platform = get_platform(cfg.platform, self.memfile)
        except Exception as e:              # an unknown or unavailable platform: one line for the user
            raise BootError(str(e)) from None
        vfs = VFS()
        self.kernel = Kernel(cfg, platform, self.memfile, vfs, self.log)
        gofer_what = f"the Gofer (pid {self.gofer_pid}) serving the root file system"
        self.kernel.lifelines.watch(self.gofer_pid, gofer_what)
        self.gofer.on_lost = lambda: self.kernel.lifelines.lost(gofer_what)
        if cfg.policy is not None or cfg.compat or cfg.count_syscalls:
            from sentry.policy import install       # hooks on the syscalls they name, nothing else
            install(self.kernel, cfg)
        self._mount_filesystems(vfs)
        if cfg.control_socket:
            from sentry.control import ControlServer
            self.control = ControlServer(cfg.control_socket)
            self.control.attach(self.kernel)
        if confine:
            from sentry.confine import confine as confine_sentry
            confine_sentry(cfg.network, platform.syscall_filters())
        self._start_init()

    def _mount_filesystems(self, vfs) -> None:
        from sentry.vfs.goferfs import GoferFS
        from sentry.vfs.mounts import mount_all
        cfg = self.cfg
        rootfs = GoferFS(self.gofer, dev=0x801, readonly=_gofer_readonly(cfg))
        view_ro = cfg.root_readonly or (cfg.host_readonly and cfg.overlay != "memory")
        flags = frozenset({"ro"} if view_ro else {"rw"})
        if cfg.overlay == "memory":
            # Changes go to a tmpfs upper layer in the Sentry, never to the bundle (sentry/vfs/overlay.py).
            from sentry.vfs.overlay import make_overlay
            fs, root = make_overlay(rootfs, rootfs.root_inode(), dev=0x801)
            vfs.mount_root(fs, root, flags=flags, source="overlay", fstype="overlay",
                           options="lowerdir=/,upperdir=memory")
        else:
            vfs.mount_root(rootfs, rootfs.root_inode(), flags=flags, source="none", fstype="9p",
                           options="trans=fd,cache=remote_revalidating")
        # Bind mounts' Gofers are kept here so they live (and are reaped) with the sandbox.
        self.mounts = mount_all(self, vfs)

    def _start_init(self) -> None:
        from sentry.process import ProcessSpawnError, create_process
        cfg, k = self.cfg, self.kernel
        if cfg.idle:
            return          # a library sandbox: processes come through the control channel
        try:
            k.init = create_process(k, cfg.args, cfg.env, cfg.cwd, cfg.uid, cfg.gid, cfg.additional_gids,
                                    list(cfg.stdio), cfg.rlimits)
        except ProcessSpawnError as e:
            raise BootError(str(e), e.exit_code) from None
        k.init.no_new_privs = cfg.no_new_privs

    def shutdown(self) -> None:
        if self.control is not None:
            self.control.close()
        k = self.kernel
        if k is not None and k.hooks is not None:
            k.hooks.finish()        # the compat record and the audit log's last lines
        if k is not None:
            for tg in list(k.thread_groups.values()):
                k.exit_thread_group(tg, signal.SIGKILL)
            release_pool = getattr(k.platform, "release_pool", None)
            if release_pool is not None:
                release_pool()
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
