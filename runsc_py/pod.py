"""`create` of a pod's application container: join the pod's Sentry instead of starting one.

containerd-shim-runc-v2 passes Kubernetes' CRI annotations in config.json:
`io.kubernetes.cri.container-type` (sandbox | container) and
`io.kubernetes.cri.sandbox-id`.  The sandbox (pause) container is created as
any other and its Sentry is the pod's.  An application container whose
sandbox runs under the same --root is added to that Sentry
(sentry/pod.py): this module spawns a Gofer for its rootfs and forks the
container's **proxy**, the host process the engine sees as the container:

* the proxy sends "container_add" (with the Gofer's socket) and keeps that
  connection: its end is the container's end in the Sentry;
* it parks at the start gate (the same fifo `runsc-py start` writes);
* then it asks the Sentry to run the container's process in that root (an
  "exec" with "container": ID), relays the signals it gets (`runsc-py kill`
  signals it, as it signals a Sentry), and exits with the process's status
  -- which is what the shim reaps as the container's exit.

`state`, `kill`, `delete`, `exec`, `ps`, `events` then work per container
(its control.sock is a link to the pod's: `exec` and `ps` reach the pod's
Sentry, exec runs in the container's root).  Without the annotations, or
when the named sandbox is not a running container of this --root, nothing
changes: the container gets its own Sentry.  Through a warm factory
(runsc_py/factory.py) the proxy plays the Sentry's part in the hand-off: the
caller's proxy relays signals to it and it dies with that proxy.

The container's bind mounts (CRI's /etc/hosts, resolv.conf, hostname,
termination-log) get Gofers started here, one per host directory, sent with
the request.  Not yet: a PID namespace per container (the pod's processes
share one, as with shareProcessNamespace), cgroups per container (they share
the pod Sentry's).
"""
from __future__ import annotations

import os
import signal
import sys

from runsc_py import procfs
from runsc_py.errors import UserError
from runsc_py.state import CREATED, CREATING, GATE_FIFO, RUNNING, StateStore

CONTAINER_TYPE = "io.kubernetes.cri.container-type"
SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
CONTROL_SOCKET = "control.sock"
PROXY_COMM = b"runsc-py-member"         # a member's host process, beside its pod's runsc-sandbox


def sandbox_of(store: StateStore, annotations: dict[str, str]) -> str | None:
    """The id of the running pod sandbox this container joins, or None (it gets its own Sentry)."""
    if annotations.get(CONTAINER_TYPE) != "container":
        return None
    sid = annotations.get(SANDBOX_ID, "")
    if not sid or sid not in store.ids():
        return None
    try:
        with store.locked(sid, exclusive=False) as st:
            if st.live_status() not in (RUNNING, CREATED) or st.config.get("pod"):
                return None
    except UserError:
        return None
    if not os.path.exists(store.path(sid, CONTROL_SOCKET)):
        return None
    return sid


MAX_BIND_TREES = 12            # host directories served for one container's bind mounts


def _is_bind(m) -> bool:
    return m.type == "bind" or bool({"bind", "rbind"} & set(m.options))


def _mounts(bundle) -> list[dict]:
    """The container's mounts the pod's Sentry makes itself (proc, tmpfs, dev...: not binds)."""
    return [{"destination": m.destination, "type": m.type, "source": m.source, "options": list(m.options)}
            for m in bundle.config.mounts if not _is_bind(m)]


def _binds(bundle) -> tuple[list[dict], list[tuple[str, bool]]]:
    """The bind mounts, with their resolved sources, and the host directories whose Gofers serve them
    (a file's directory for a file bind, as sentry/vfs/mounts.py's mount_bind_file expects)."""
    binds, trees = [], []
    for m in bundle.config.mounts:
        if not _is_bind(m):
            continue
        real = os.path.realpath(m.source)
        if os.path.isdir(real):
            tree, is_file = real, False
        elif os.path.isfile(real):
            tree, is_file = os.path.dirname(real), True
        else:
            continue                    # the Sentry would skip it too (a missing source)
        ro = "ro" in m.options
        if (tree, ro) not in trees:
            if len(trees) == MAX_BIND_TREES:
                raise UserError(f"more than {MAX_BIND_TREES} bind-mounted directories in one pod container")
            trees.append((tree, ro))
        binds.append({"destination": m.destination, "source": real, "options": list(m.options), "file": is_file})
    return binds, trees


def create_member(store: StateStore, container_id: str, bundle, sandbox_id: str, pid_file: str | None,
                  console_socket: str | None = None) -> int:
    """Create `container_id` inside the pod `sandbox_id`'s Sentry; return the proxy's pid."""
    from gofer.client import spawn_gofer
    from runsc_py.launch import LaunchOptions, _new_state, _open_terminal, write_pid_file
    cfg = bundle.config
    control = store.path(sandbox_id, CONTROL_SOCKET)
    with store.create(_new_state(container_id, bundle, CREATING, os.getpid())) as lock_fd:
        if not os.path.isdir(cfg.rootfs):
            raise UserError(f"rootfs {cfg.rootfs!r} is not a directory")
        # process.terminal with --console-socket: the master goes to the engine, the slave is the
        # process's stdio (the Sentry presents it as its controlling terminal), as for a Sentry's init.
        terminal = _open_terminal(bundle, LaunchOptions(console_socket=console_socket))
        stdio = [terminal[1]] * 3 if terminal else [0, 1, 2]
        binds, trees = _binds(bundle)
        gofers = []
        try:
            for tree, ro in [(cfg.rootfs, cfg.root_readonly)] + trees:
                gofers.append(spawn_gofer(tree, readonly=ro))
        except OSError as e:
            for gpid, client in gofers:
                client.sock.close()
                _reap(gpid)
            raise UserError(f"cannot start the container's Gofer: {e.strerror or e}") from None
        fifo = store.path(container_id, GATE_FIFO)
        os.mkfifo(fifo, 0o600)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        from runsc_py import launch
        handoff = launch.FACTORY_HANDOFF      # made in a factory: the caller's proxy is the engine's pid
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(lock_fd)
                os.close(ready_r)
                if handoff is not None:
                    launch._die_with_proxy(handoff[0])
                request = {"op": "container_add", "id": container_id, "readonly": cfg.root_readonly,
                           "mounts": _mounts(bundle), "binds": binds, "trees": [list(t) for t in trees]}
                status = _proxy(control, bundle, request, [c.sock.fileno() for _, c in gofers], fifo, ready_w,
                                stdio)
            except BaseException as e:      # noqa: BLE001 -- the proxy always reaches _exit
                try:
                    os.write(ready_w, b"E" + str(e).encode()[:2000])
                except OSError:
                    pass
            finally:
                os._exit(status)
        os.close(ready_w)
        for _, client in gofers:
            client.sock.close()             # the proxy holds them until the Sentry has them
        if terminal is not None:
            os.close(terminal[0])
            os.close(terminal[1])
        try:
            reply = _read_all(ready_r)
        finally:
            os.close(ready_r)
        if reply != b"R":
            _reap(pid)
            for gpid, _ in gofers:
                _reap(gpid)
            raise UserError(f"container failed to join pod {sandbox_id}: "
                            f"{reply[1:].decode(errors='replace') or 'its proxy exited'}")
        state = store.load(container_id)
        state.pid, state.pid_start = pid, procfs.start_time(pid)
        state.config["pod"] = sandbox_id
        os.symlink(control, store.path(container_id, CONTROL_SOCKET))
        if pid_file:
            write_pid_file(pid_file, pid)
        state.status = CREATED
        store.save(state)
        if handoff is not None:
            from runsc_py.state import EXIT_STATUS_FILE
            handoff[1](pid, store.path(container_id, EXIT_STATUS_FILE))
    return pid


def _read_all(fd: int) -> bytes:
    out = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return out
        out += chunk
        if out == b"R":
            return out


def _reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _proxy(control: str, bundle, request: dict, gofer_fds: list[int], fifo: str, ready_w: int,
           stdio: list[int]) -> int:
    """The container's host process: member connection, start gate, the init's life and status."""
    import array
    import socket

    import msgpack
    from runsc_py.launch import _set_comm
    from sentry.control import ControlError, _connect, _recv, exec_start, exec_wait
    os.setsid()
    _set_comm(PROXY_COMM)                   # what the host shows for the container (one Sentry per pod)
    cfg = bundle.config
    container_id = request["id"]
    if stdio[0] not in (0, 1, 2):
        # A terminal: its slave replaces the stdio `create` was given (the shim reads that pipe to
        # its end, which a long-lived holder would never let come), as a Sentry's init does.
        for target in (0, 1, 2):
            os.dup2(stdio[0], target)
        os.close(stdio[0])
        stdio = [0, 1, 2]
    member = _connect(control)
    member.sendmsg([msgpack.packb(request)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", gofer_fds))])
    for fd in gofer_fds:
        os.close(fd)
    reply, _ = _recv(member, 0)
    if not reply or not reply.get("ok"):
        raise ControlError(str((reply or {}).get("error", "the sandbox closed the connection")))
    gate = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
    os.write(ready_w, b"R")
    os.close(ready_w)
    # Until start, a signal ends the container as it would end a parked Sentry.
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    import select
    while True:                     # the start gate -- or the pod's Sentry ending first
        ready, _, _ = select.select([gate, member], [], [])
        if member in ready:
            return 128 + signal.SIGKILL
        if os.read(gate, 1) == b"S":
            break
    os.close(gate)
    spec = {"args": cfg.args, "env": cfg.env, "cwd": cfg.cwd, "uid": cfg.uid, "gid": cfg.gid,
            "additional_gids": list(cfg.additional_gids), "rlimits": {k: list(v) for k, v in cfg.rlimits.items()},
            "container": container_id}
    try:
        conn, tgid = exec_start(control, spec, stdio)
    except ControlError as e:
        os.write(2, f"runsc-py: {e}\n".encode())
        return e.code
    relay = {"tgid": tgid}

    def forward(signum: int, _frame) -> None:
        try:
            s = _connect(control)
            s.sendmsg([msgpack.packb({"op": "kill", "pid": relay["tgid"], "sig": signum})])
            _recv(s, 0)
            s.close()
        except (OSError, ControlError):
            pass
    for s in range(1, signal.NSIG):
        if s in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
            continue
        try:
            signal.signal(s, forward)
        except (OSError, ValueError):
            pass
    try:
        status = exec_wait(conn)
    except ControlError:
        status = 128 + signal.SIGKILL        # the pod's Sentry went away: so did the container
    from runsc_py.launch import _record_exit_status
    _record_exit_status(os.path.dirname(fifo), status)      # for `runsc-py wait`, as a Sentry leaves it
    member.close()
    return status

