"""Launching a sandbox: `run` in this process, `create` as a detached Sentry process.

`run` calls the Sentry in this very process (it is the container's pid as
far as the state store is concerned) and removes its state afterwards.

`create` forks the Sentry process that will *be* the container: a child of
`runsc-py create` that calls `run_sandbox` with the create/start gates of
`sentry.config.SandboxConfig` set, in its own session so that `create`'s
terminal cannot signal it.  Its pid goes into the pid file: it exits with
the container's exit status, and when `create` returns it is re-parented to
the caller's subreaper (containerd's shim, conmon), which reaps it -- the
same shape as runc's `runc init`.  The fds `create` was given are its stdio.

* ready: a pipe.  The Sentry writes b"R" once the Gofer runs and the init
  process is loaded; EOF before that means the sandbox died, and an error
  pipe (close-on-exec, ours) carries the one-line reason back to `create`.
* gate: ROOT/ID/start.fifo.  The Sentry holds it open read-write, so it
  never sees EOF and `start` -- a different process, maybe much later --
  only has to open it write-only (non-blocking: ENXIO means nobody holds
  it any more, i.e. the Sentry is gone) and write one byte.
* exit status: the forked Sentry process writes it to ROOT/ID/exit_status
  as it leaves, for `wait` (only the shim can reap it).
* the Sentry's own log (warnings, --strace) goes to --debug-log, else to
  ROOT/ID/sentry.log: the container's stderr is the application's.  (`run`
  and `do` are interactive and leave it on stderr.)
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time
from dataclasses import dataclass
from typing import Callable

from runsc_py import cgroups, procfs
from runsc_py.errors import UserError
from runsc_py.hooks import hook_state, poststop, run_hooks
from runsc_py.sandbox import describe, load_run_sandbox, run_sandbox_guarded
from runsc_py.spec import Bundle
from runsc_py.state import (CREATED, CREATING, EXIT_STATUS_FILE, GATE_FIFO, RUNNING, SENTRY_LOG_FILE,
                            ContainerState, StateStore)

CONTROL_SOCKET = "control.sock"   # the Sentry's control channel (sentry/control.py): exec, ps
READY_TIMEOUT = 120.0       # seconds for the Sentry to come up in `create`
KILL_TIMEOUT = 10.0         # seconds for a failed sandbox to go


# Set by a factory's child running `create` (runsc_py/factory.py): (watch fd, report).  The Sentry
# process watches the fd -- its other end is held by the caller's proxy, the process the engine
# reaps -- and dies with it; `report(sentry_pid, exit_status_path)` tells the proxy whom it stands for.
FACTORY_HANDOFF: tuple[int, Callable[[int, str], None]] | None = None


@dataclass
class LaunchOptions:
    """Per-invocation knobs of run/create that are not part of the bundle."""
    pid_file: str | None = None
    console_socket: str | None = None
    debug_fd: int | None = None


def write_pid_file(path: str, pid: int) -> None:
    """Write `pid` (no newline, as runc) to `path` atomically."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UserError(f"cannot write pid file {path}: {e.strerror}") from None


def _new_state(container_id: str, bundle: Bundle, status: str, pid: int, run: bool = False) -> ContainerState:
    config = {"platform": bundle.config.platform, "network": bundle.config.network,
              "overlay": bundle.config.overlay, "hooks": bundle.hooks}
    if run:
        # The recorded pid is the `run` process itself, which removes the state when it ends; if it is
        # SIGKILLed, `kill` (lifecycle.forget_dead_run) does that removal instead.
        config["run"] = True
    return ContainerState(id=container_id, bundle=bundle.path, rootfs=bundle.config.rootfs,
                          status=status, pid=pid, pid_start=procfs.start_time(pid),
                          annotations=bundle.annotations, config=config)


# ---------------------------------------------------------------- run

def run_container(store: StateStore, container_id: str, bundle: Bundle, opts: LaunchOptions) -> int:
    """`runsc-py run`: record the container, run it here, forget it; return the exit status."""
    load_run_sandbox()     # fail before any state is written if the Sentry cannot load
    me = os.getpid()
    with store.create(_new_state(container_id, bundle, CREATING, me, run=True)):
        if opts.pid_file:
            write_pid_file(opts.pid_file, me)
        state = store.load(container_id)
        for kind in ("prestart", "createRuntime", "createContainer", "startContainer"):
            run_hooks(bundle.hooks, kind, hook_state(store, state))
        join_namespaces(bundle)
        state.status = RUNNING
        store.save(state)
    # The state dir now exists and is unlocked: `state`, `kill`, `list` see it.
    bundle.config.control_socket = store.path(container_id, CONTROL_SOCKET)
    try:
        return run_sandbox_guarded(bundle.config, opts.debug_fd)
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    finally:
        if os.getpid() == me:
            poststop(store, state, bundle.hooks)
            store.remove(container_id)


def join_namespaces(bundle: Bundle) -> None:
    """Join linux.namespaces' network `path` (the sandbox's host sockets live there), as runsc does."""
    if not bundle.netns_path:
        return
    import ctypes
    clone_newnet = 0x40000000
    try:
        fd = os.open(bundle.netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise UserError(f"cannot open network namespace {bundle.netns_path}: {e.strerror}") from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, clone_newnet) != 0:
            err = ctypes.get_errno()
            raise UserError(f"cannot join network namespace {bundle.netns_path}: {os.strerror(err)}")
    finally:
        os.close(fd)


# ---------------------------------------------------------------- create

def create_container(store: StateStore, container_id: str, bundle: Bundle, opts: LaunchOptions) -> int:
    """`runsc-py create`: bring the Sentry up, parked at the start gate; return its pid."""
    load_run_sandbox()
    with store.create(_new_state(container_id, bundle, CREATING, os.getpid())) as lock_fd:
        terminal_fds = _open_terminal(bundle, opts)    # only once the id is ours
        linux = bundle.spec.get("linux")
        cgroup_dirs = cgroups.prepare(linux.get("cgroupsPath") if isinstance(linux, dict) else None)
        fifo = store.path(container_id, GATE_FIFO)
        os.mkfifo(fifo, 0o600)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:   # the Sentry process: never returns
            cgroups.join(cgroup_dirs, os.getpid())    # linux.cgroupsPath, before anything is forked
            os.close(lock_fd)
            os.close(ready_r)
            os.close(err_r)
            _sentry_child(bundle, fifo, ready_w, err_w, terminal_fds, opts)
        os.close(ready_w)
        os.close(err_w)
        # A SIGTERM/SIGHUP to `create` while the sandbox boots must not orphan it.
        previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            _await_ready(pid, ready_r, err_r)
        except BaseException:
            _kill_child(pid)
            cgroups.remove(cgroup_dirs)
            raise
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            os.close(ready_r)
            os.close(err_r)
            if terminal_fds is not None:    # the master went over the socket; the slave is the child's
                os.close(terminal_fds[0])
                os.close(terminal_fds[1])
        state = store.load(container_id)
        state.pid, state.pid_start = pid, procfs.start_time(pid)
        state.config["cgroups"] = cgroup_dirs
        try:
            store.save(state)
            for kind in ("prestart", "createRuntime", "createContainer"):
                run_hooks(bundle.hooks, kind, hook_state(store, state))
            if opts.pid_file:
                write_pid_file(opts.pid_file, pid)
            state.status = CREATED
            store.save(state)
            if FACTORY_HANDOFF is not None:
                FACTORY_HANDOFF[1](pid, store.path(container_id, EXIT_STATUS_FILE))
        except BaseException:
            _kill_child(pid)
            cgroups.remove(cgroup_dirs)
            raise
    return pid


def _sentry_child(bundle: Bundle, fifo: str, ready_w: int, err_w: int,
                  terminal_fds: tuple[int, int] | None, opts: LaunchOptions) -> None:
    status = 1
    try:
        os.setsid()
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
        _set_comm(b"runsc-sandbox")
        if FACTORY_HANDOFF is not None:
            _die_with_proxy(FACTORY_HANDOFF[0])
        cfg = bundle.config
        if terminal_fds is not None:
            os.close(terminal_fds[0])
            slave = terminal_fds[1]
            for target in (0, 1, 2):
                os.dup2(slave, target)
            os.close(slave)
            try:    # our controlling terminal: ^C on it signals the Sentry, which forwards
                import fcntl
                import termios
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            except OSError:
                pass
        join_namespaces(bundle)
        if cfg.log_fd is None:
            # The container's stderr belongs to the application (docker logs): without
            # --debug-log the Sentry's own log goes to the state dir, not into it.
            cfg.log_fd = os.open(os.path.join(os.path.dirname(fifo), SENTRY_LOG_FILE),
                                 os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        cfg.start_gate_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        cfg.ready_fd = ready_w
        cfg.control_socket = os.path.join(os.path.dirname(fifo), CONTROL_SOCKET)
        os.set_inheritable(ready_w, False)
        try:
            status = run_sandbox_guarded(cfg, opts.debug_fd)
        except BaseException as e:   # noqa: BLE001 -- the child must always reach os._exit
            message = e.message if isinstance(e, UserError) else describe(e)
            try:    # `create` is still waiting: it reports the error (one line)
                os.write(err_w, message.encode()[:4000])
            except OSError:
                # EPIPE: `create` has returned; our stderr is the container's, say it there.
                try:
                    os.write(2, f"runsc-py: {message}\n".encode())
                except OSError:
                    pass
            status = 1
        _record_exit_status(os.path.dirname(fifo), status)
    finally:
        os._exit(status)


def _die_with_proxy(fd: int) -> None:
    """Started from a factory, the engine reaps our caller's proxy, not us: SIGKILL ourselves (the
    confined Sentry, its stubs and Gofer follow) as soon as the proxy is gone, as a cold Sentry
    process dies when the engine kills the pid it was given."""
    import socket
    import threading
    from runsc_py.front import kill_self_at_eof
    threading.Thread(target=kill_self_at_eof, args=(socket.socket(fileno=fd),), name="proxy-watch",
                     daemon=True).start()


def _record_exit_status(state_dir: str, status: int) -> None:
    """Leave the container's exit status for `runsc-py wait` (the shim reaps us, not it)."""
    try:
        tmp = os.path.join(state_dir, f"{EXIT_STATUS_FILE}.tmp")
        with open(tmp, "w") as f:
            f.write(str(status))
        os.rename(tmp, os.path.join(state_dir, EXIT_STATUS_FILE))
    except OSError:
        pass          # deleted meanwhile: nobody is left to ask


def _raise_interrupt(signum: int, frame: object) -> None:
    raise UserError(f"interrupted by {signal.Signals(signum).name} while the sandbox was starting")


def _set_comm(name: bytes) -> None:
    """Name the Sentry process (prctl PR_SET_NAME) so `ps` tells it from runsc-py."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _await_ready(pid: int, ready_r: int, err_r: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise UserError(f"sandbox did not become ready within {READY_TIMEOUT:.0f}s")
        readable, _, _ = select.select([ready_r], [], [], left)
        if not readable:
            continue
        data = os.read(ready_r, 1)
        if data == b"R":
            return
        if data:
            raise UserError(f"sandbox sent an unexpected ready byte {data!r}")
        break
    # EOF: the Sentry went away (or closed ready_fd) before it was ready.
    message = _read_all(err_r).decode("utf-8", "replace").strip()
    status = _reap(pid, 5.0)
    if message:
        raise UserError(f"container failed to start: {message}")
    if status is None:
        raise UserError("container failed to start: sandbox closed its ready pipe")
    raise UserError(f"container failed to start: sandbox exited with status {status}")


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        readable, _, _ = select.select([fd], [], [], 5.0)
        if not readable:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _reap(pid: int, timeout: float) -> int | None:
    """Wait up to `timeout` for our child `pid`; its exit status (128+N for a signal) or None."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, wstatus = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if got:
            return os.waitstatus_to_exitcode(wstatus) if os.WIFEXITED(wstatus) \
                else 128 + os.WTERMSIG(wstatus)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def _kill_child(pid: int) -> None:
    """SIGKILL our Sentry child and everything it started, then reap it."""
    procfs.kill_tree(pid, procfs.start_time(pid), signal.SIGKILL, KILL_TIMEOUT)
    _reap(pid, KILL_TIMEOUT)


def _open_terminal(bundle: Bundle, opts: LaunchOptions) -> tuple[int, int] | None:
    """For process.terminal with --console-socket: a host pty, master sent over the socket.

    The engine gets the master as runc sends it (one SCM_RIGHTS fd, the pty
    name as payload); the slave becomes the Sentry's stdio, which the Sentry
    presents to the application as its controlling terminal (/dev/pts/N,
    termios and window size forwarded to the host pty).
    """
    if not bundle.terminal:
        if opts.console_socket:
            raise UserError("--console-socket given but process.terminal is false")
        return None
    if not opts.console_socket:
        return None                  # runc would allocate its own pty; stdio passes through
    import socket
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(opts.console_socket)
            socket.send_fds(s, [name.encode()], [master])
    except OSError as e:
        os.close(master)
        os.close(slave)
        raise UserError(f"console socket {opts.console_socket}: {e.strerror or e}") from None
    return master, slave
