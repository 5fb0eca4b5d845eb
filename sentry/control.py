"""The control channel: how `runsc-py exec` (and `ps`) reach a running Sentry.

The Sentry binds a SOCK_SEQPACKET unix socket at `SandboxConfig.control_socket`
(a path in the container's state directory) before it confines itself; the
listening fd stays open afterwards, so no path is needed to serve it.  The
socket is O_ASYNC: a connecting client raises SIGIO, which interrupts the
Sentry's wait for the next application stop, and the task loop polls its
watchers.

Protocol (msgpack maps, one per message; fds by SCM_RIGHTS):
  -> {"op": "exec", "args": [...], "env": [...], "cwd": "/", "uid": 0, "gid": 0,
      "additional_gids": [], "rlimits": {}}            + fds [stdin, stdout, stderr]
  <- {"pid": N} | {"error": "one line", "code": N}
  <- {"exit": status, "usage": {"cpu_ns", "max_rss_kb", "syscalls"}}   when that process ends
                               (status as runsc-py exits: code or 128+sig)
  -> {"op": "update", "memory_limit": N, "pids_limit": N}   (-1/0: no limit)
  <- {"ok": true}
  -> {"op": "ps", "container": ID (optional: one pod member's, sentry/pod.py)}
  <- {"processes": [{"pid", "ppid", "uid", "comm", "args"}...]}
  -> {"op": "stats"}
  <- {"stats": {...}}          sentry/metrics.py's snapshot (syscalls, memory by kind, Gofer requests...)
  -> {"op": "fs_*" | "debug_*", ...}   the filesystem and state seen from outside (sentry/fsview.py)
  -> {"op": "container_add", "id", "readonly", "mounts"}   + fds [Gofer socket]   (sentry/pod.py)
  <- {"ok": true}              the connection then stays open: its end is the container's end
  "exec" with "container": ID runs the process in that pod member's root.
A client that only wants to start the process (exec --detach) may close the
connection after the pid; the Sentry then drops the exit report.
"""
from __future__ import annotations

import array
import errno
import fcntl
import os
import socket

import msgpack

MAX_MSG = 1 << 20
# The library's requests (runsc_py.Sandbox: files, signals, compat, shutdown), one reply each:
# served by sentry/libops.py, which documents them.
LIBRARY_OPS = frozenset({"shutdown", "kill", "write_file", "read_file", "listdir", "stat", "compat"})
SUN_PATH_MAX = 107


def _with_short_path(path: str, fn) -> None:
    """bind/connect to `path` even past sun_path's 108 bytes (deep --root dirs, long ids),
    through the directory's /proc/self/fd entry."""
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        fn(path)
        return
    dfd = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fn(f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
    finally:
        os.close(dfd)


def _recv(sock: socket.socket, maxfds: int = 3) -> tuple[dict | None, list[int]]:
    data, anc, _flags, _addr = sock.recvmsg(MAX_MSG, socket.CMSG_SPACE(maxfds * 4))
    fds: list[int] = []
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(payload[:len(payload) - len(payload) % 4])
            fds += list(arr)
    if not data:
        return None, fds
    try:
        msg = msgpack.unpackb(data, raw=False)
    except Exception:
        return {}, fds
    return (msg if isinstance(msg, dict) else {}), fds


def _send(sock: socket.socket, msg: dict) -> None:
    try:
        sock.sendmsg([msgpack.packb(msg)], [], socket.MSG_NOSIGNAL)
    except OSError as e:
        if e.errno == errno.EMSGSIZE:       # past the socket's send buffer: say so, not a silent close
            _send(sock, {"error": "the reply is larger than one control message", "code": 1,
                         "errno": errno.EMSGSIZE})


class ControlServer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        # Made 0600 as it is bound (umask), not only by the chmod after: a connection accepted in
        # between would outlive the chmod (another host user's, with a umask of 0).
        umask = os.umask(0o177)
        try:
            _with_short_path(path, self.sock.bind)
        finally:
            os.umask(umask)
        os.chmod(path, 0o600)
        self.sock.listen(16)
        # SIGIO's default action kills: until the task loop installs its handler (Kernel.run,
        # which then polls once), a client that connects early must not end the Sentry.
        import signal
        signal.signal(signal.SIGIO, signal.SIG_IGN)
        self._async(self.sock.fileno())
        self.conns: dict[int, socket.socket] = {}
        self.kernel = None

    @staticmethod
    def _async(fd: int) -> None:
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK | fcntl.FASYNC)
        fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())

    def attach(self, kernel) -> None:
        self.kernel = kernel
        kernel.watchers[self.sock.fileno()] = self.on_listen

    def on_listen(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            self._async(conn.fileno())
            self.conns[conn.fileno()] = conn
            self.kernel.watchers[conn.fileno()] = lambda c=conn: self.on_conn(c)
            self.on_conn(conn)

    def _drop(self, conn: socket.socket) -> None:
        self.kernel.watchers.pop(conn.fileno(), None)
        self.conns.pop(conn.fileno(), None)
        conn.close()

    def on_conn(self, conn: socket.socket) -> None:
        try:
            msg, fds = _recv(conn, 16)     # exec: 3 stdio fds; container_add: its Gofers (runsc_py/pod.py)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        try:
            if msg is None:
                self._drop(conn)
                return
            # One request per connection: stop watching it (the exit report is written later).
            self.kernel.watchers.pop(conn.fileno(), None)
            op = msg.get("op")
            if op == "exec":
                self._exec(conn, msg, fds)
            elif op == "update":
                self._update(msg)
                _send(conn, {"ok": True})
                self._drop(conn)
            elif op == "ps":
                _send(conn, {"processes": self._ps(msg.get("container"))})
                self._drop(conn)
            elif op in LIBRARY_OPS:
                from sentry.libops import serve
                _send(conn, serve(self.kernel, op, msg))
                self._drop(conn)
            elif op == "stats":
                from sentry.metrics import snapshot
                _send(conn, {"stats": snapshot(self.kernel, msg.get("container"))})
                self._drop(conn)
            elif op == "container_add":       # a pod's next container (sentry/pod.py)
                self._container_add(conn, msg, fds)
            elif isinstance(op, str) and op.startswith(("fs_", "debug_")):    # runsc-py fs / debug
                from sentry.fsview import serve as serve_view
                _send(conn, serve_view(self.kernel, op, msg))
                self._drop(conn)
            elif op in LIBRARY_OPS:
                from sentry.libops import serve
                _send(conn, serve(self.kernel, op, msg))
                self._drop(conn)
            else:
                _send(conn, {"error": f"unknown control request {op!r}", "code": 1})
                self._drop(conn)
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as e:
            # A malformed request (an argument of the wrong type or size) is an error reply,
            # never an exception out of the task loop: that would end the sandbox.
            if conn.fileno() != -1:
                _send(conn, {"error": f"malformed control request: {e}", "code": 1, "errno": errno.EINVAL})
                self._drop(conn)
        finally:
            for fd in fds:
                os.close(fd)

    def _exec(self, conn: socket.socket, msg: dict, fds: list[int]) -> None:
        from sentry.process import ProcessSpawnError, create_process
        k = self.kernel
        try:
            args = [str(a) for a in msg["args"]]
            if not args:
                raise ValueError("args is empty")
            root = None
            if msg.get("container"):          # a process of one of the pod's containers: its root tree
                from sentry.pod import root_of
                root = root_of(k, str(msg["container"]))
            tg = create_process(k, args, [str(e) for e in msg.get("env", [])], str(msg.get("cwd", "/")),
                                int(msg.get("uid", 0)), int(msg.get("gid", 0)),
                                [int(g) for g in msg.get("additional_gids", [])], fds,
                                {str(n): tuple(v) for n, v in dict(msg.get("rlimits", {})).items()},
                                root=root)
        except ProcessSpawnError as e:
            _send(conn, {"error": str(e), "code": e.exit_code})
            self._drop(conn)
            return
        except (KeyError, TypeError, ValueError) as e:
            _send(conn, {"error": f"malformed exec request: {e}", "code": 1})
            self._drop(conn)
            return

        def report(wait_status: int) -> None:
            code = 128 + (wait_status & 0x7F) if wait_status & 0x7F else (wait_status >> 8) & 0xFF
            from sentry.libops import usage
            _send(conn, {"exit": code, "usage": usage(tg)})
            self.conns.pop(conn.fileno(), None)
            conn.close()

        tg.on_exit = report
        _send(conn, {"pid": tg.tgid})

    def _container_add(self, conn: socket.socket, msg: dict, fds: list[int]) -> None:
        """Mount a pod member's rootfs; the connection stays open for as long as the member lives."""
        from sentry import pod
        from sentry.errors import SyscallError
        try:
            member = pod.add(self.kernel, msg, fds)
        except (KeyError, TypeError, ValueError, OSError, SyscallError) as e:
            _send(conn, {"error": f"cannot add the container: {e}", "code": 1})
            self._drop(conn)
            return
        _send(conn, {"ok": True})

        def on_member_conn(c=conn, cid=member.id) -> None:
            try:
                got, extra = _recv(c, 0)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                got, extra = None, []
            for fd in extra:
                os.close(fd)
            if got is None:                  # its proxy is gone: so is the container
                pod.remove(self.kernel, cid)
                self._drop(c)
        self.kernel.watchers[conn.fileno()] = on_member_conn

    def _update(self, msg: dict) -> None:
        """linux.resources changed (`runsc-py update`): a limit of -1 or 0 means none."""
        k = self.kernel
        for key in ("memory_limit", "pids_limit"):
            if key in msg:
                value = msg[key]
                setattr(k, key, None if value is None or int(value) <= 0 else int(value))

    def stats(self) -> dict:
        k = self.kernel
        return {"memory_usage": k.memfile.used(), "pids": len(k.tasks),
                "memory_limit": k.memory_limit or 0, "pids_limit": k.pids_limit or 0}

    def _ps(self, container: str | None = None) -> list[dict]:
        """Every process; with `container` in a pod (sentry/pod.py), that member's, or for any other
        id (the pod's own sandbox container) those of no member."""
        from sentry import pod
        members = pod.members(self.kernel)
        only = None
        if container and members:
            if container in members:
                only = {id(tg) for tg in pod.processes(self.kernel, members[container])}
            else:
                only = {id(tg) for tg in self.kernel.thread_groups.values()} - \
                    {id(tg) for m in members.values() for tg in pod.processes(self.kernel, m)}
        out = []
        for tg in sorted(self.kernel.thread_groups.values(), key=lambda g: g.tgid):
            if tg.zombie or (only is not None and id(tg) not in only):
                continue
            out.append({"pid": tg.tgid, "ppid": tg.parent.tgid if tg.parent else 0, "uid": tg.creds.ruid,
                        "comm": tg.comm.decode("utf-8", "replace"),
                        "args": [a.decode("utf-8", "replace") for a in tg.argv]})
        return out

    def close(self) -> None:
        for conn in list(self.conns.values()):
            conn.close()
        self.sock.close()


# -- client side (runsc-py exec / ps) ---------------------------------------------------

class ControlError(Exception):
    def __init__(self, message: str, code: int = 1, errno: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.errno = errno          # the sandbox's errno, for the requests that have one (fs_*)


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        _with_short_path(path, s.connect)
    except OSError as e:
        s.close()
        raise ControlError(f"cannot reach the sandbox ({path}): {e.strerror or e}") from None
    return s


def exec_start(path: str, spec: dict, stdio: list[int]) -> tuple[socket.socket, int]:
    """Start a process in the sandbox; returns (connection, sandbox pid).  Keep the connection to wait."""
    s = _connect(path)
    msg = dict(spec)
    msg["op"] = "exec"
    s.sendmsg([msgpack.packb(msg)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", stdio))])
    reply, _ = _recv(s, 0)
    if not reply:
        s.close()
        raise ControlError("the sandbox closed the control connection")
    if "error" in reply:
        s.close()
        raise ControlError(str(reply["error"]), int(reply.get("code", 1)))
    return s, int(reply["pid"])


def exec_wait(conn: socket.socket) -> int:
    """Block until the exec'd process ends; its exit status (code or 128+signal)."""
    try:
        while True:
            reply, _ = _recv(conn, 0)
            if reply is None:
                raise ControlError("the sandbox went away before the process exited", 255)
            if "exit" in reply:
                return int(reply["exit"])
    finally:
        conn.close()


def update(path: str, memory_limit: int | None, pids_limit: int | None) -> None:
    s = _connect(path)
    msg: dict = {"op": "update"}
    if memory_limit is not None:
        msg["memory_limit"] = memory_limit
    if pids_limit is not None:
        msg["pids_limit"] = pids_limit
    try:
        s.sendmsg([msgpack.packb(msg)])
        reply, _ = _recv(s, 0)
    finally:
        s.close()
    if not reply or not reply.get("ok"):
        raise ControlError(str((reply or {}).get("error", "the sandbox did not accept the update")))


def ps(path: str, container: str | None = None) -> list[dict]:
    """The sandbox's processes; `container`: only that container's, in a pod (see ControlServer._ps)."""
    s = _connect(path)
    try:
        s.sendmsg([msgpack.packb({"op": "ps", "container": container} if container else {"op": "ps"})])
        reply, _ = _recv(s, 0)
    finally:
        s.close()
    if not reply or "processes" not in reply:
        raise ControlError("the sandbox gave no process list")
    return list(reply["processes"])


def request(socket_path: str, op: str, **fields) -> dict:
    """One request, one reply (stats, and the fs/debug requests): the reply map, or ControlError."""
    s = _connect(socket_path)
    try:
        s.sendmsg([msgpack.packb({"op": op, **fields})])
        reply, _ = _recv(s, 0)
    except OSError as e:
        raise ControlError(f"the sandbox did not answer {op!r}: {e.strerror or e}") from None
    finally:
        s.close()
    if not reply:
        raise ControlError(f"the sandbox closed the control connection (request {op!r})")
    if "error" in reply:
        raise ControlError(str(reply["error"]), int(reply.get("code", 1)),
                           int(reply["errno"]) if "errno" in reply else None)
    return reply


def stats(path: str, container: str | None = None) -> dict:
    return dict(request(path, "stats", container=container)["stats"])
