"""`runsc-py factory`: a warm process per --root that runs commands without paying Python's start-up.

A cold `runsc-py run` spends most of its time before the sandbox exists:
the interpreter, then importing the front end and the whole Sentry (which
must be imported before it confines itself).  The factory does that once
and then forks a child per command -- the same trade Android's zygote and
Kata Containers' VM factory make.  `runsc_py.front` is the other end: it
hands over the command line, cwd, environment, umask and stdio fds, relays
signals to the child, and exits with the child's status.

Protocol (SOCK_SEQPACKET, ROOT/.factory/sock, mode 0600 in a 0700 dir):
  front -> factory : request (front.encode_request) + SCM_RIGHTS stdio fds
                     (and for `create` a fourth: the Sentry's end of the proxy's watch socket)
  factory -> front : b"PID <child pid>"  or  b"NO <reason>" (run it cold)
  factory -> front : for `create`: b"SENTRY <pid> <exit status file>"; for `exec --detach`:
                     b"WAITER <pid file>" + SCM_RIGHTS the control connection to the process
  factory -> front : b"EXIT <wait status>" when the child has gone.

`create` needs one more piece: the engine reaps the pid it finds in the pid
file, so that process must be the caller's child.  The front forks a small
proxy (runsc_py/front.py `_proxy`) and writes *its* pid: it relays signals to
the Sentry process, exits with the container's exit status when that
process has gone, and when the proxy is killed the Sentry process kills
itself (it watches the proxy's socket).  The Sentry process itself, forked
by the factory's child, is adopted and reaped by the factory (a subreaper).

What a child inherits must not differ from a cold start, so the factory
refuses (b"NO ...") rather than guess: a peer of another uid; other
namespaces or another root directory than the factory's; for `run` and `do`, other
cgroups (the sandbox's processes must be accounted where the caller is);
and code changed since the factory started (it then exits: the next
command starts cold, `factory start` brings a fresh one).

What the children share is what forked processes share: the Python heap
layout and hash seed of the factory.  The sandboxed application gets
nothing of it (its stubs are fresh execs; its address space is the
Sentry's MemoryFile).
"""
from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys
import threading
import time

from runsc_py import front
from runsc_py.errors import UserError

PID_FILE = "pid"
FINGERPRINT_FILE = "code"
LOG_FILE = "log"
NAMESPACES = ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup")
CODE_PACKAGES = ("runsc_py", "sentry", "gofer", "platforms")
READY_TIMEOUT = 30.0
IDLE_EXIT = 120.0               # an auto-started factory exits after this long without a command
CHECK_EVERY = 10.0              # and checks this often that its socket is still its own


def factory_dir(root: str) -> str:
    return os.path.join(root, front.FACTORY_DIR)


def running_pid(root: str) -> int | None:
    """The pid of this root's live factory, or None."""
    try:
        with open(os.path.join(factory_dir(root), PID_FILE)) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"factory" not in f.read():
                return None            # a recycled pid
    except (OSError, ValueError):
        return None
    return pid


def _has_cgroups_path(argv: list[str], cwd: str) -> bool:
    """Does the bundle of this `create` name linux.cgroupsPath (where its Sentry will be put)?"""
    import json
    bundle = "."
    args = argv[argv.index("create") + 1:] if "create" in argv else []
    for i, a in enumerate(args):
        if a in ("-b", "--bundle") and i + 1 < len(args):
            bundle = args[i + 1]
        elif a.startswith("--bundle="):
            bundle = a.split("=", 1)[1]
    try:
        with open(os.path.join(cwd, bundle, "config.json")) as f:
            linux = json.load(f).get("linux")
        return isinstance(linux, dict) and bool(linux.get("cgroupsPath"))
    except (OSError, ValueError, AttributeError):
        return False


def _code_fingerprint() -> tuple:
    """(path, mtime_ns, size) of every module of ours: a changed tree makes the factory stale."""
    base = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = []
    for pkg in CODE_PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(base, pkg)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for name in filenames:
                if name.endswith((".py", ".so")):
                    try:
                        st = os.stat(os.path.join(dirpath, name))
                    except OSError:
                        continue
                    out.append((dirpath, name, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def _digest(fingerprint: tuple) -> str:
    import hashlib
    return hashlib.sha256(repr(fingerprint).encode()).hexdigest()


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _ns_ids(pid: str) -> tuple:
    ids = []
    for ns in NAMESPACES:
        try:
            ids.append(os.stat(f"/proc/{pid}/ns/{ns}").st_ino)
        except OSError:
            ids.append(None)
    st = os.stat(f"/proc/{pid}/root")
    ids.append((st.st_dev, st.st_ino))
    return tuple(ids)


def _cgroups(pid: int | str) -> bytes:
    with open(f"/proc/{pid}/cgroup", "rb") as f:
        return f.read()


class Factory:
    def __init__(self, root: str) -> None:
        self.root = root
        self.fingerprint = _code_fingerprint()
        self.ns = _ns_ids("self")
        self.cgroups = _cgroups("self")
        self.uid = os.getuid()
        self.children: dict[int, tuple[socket.socket, str, float]] = {}
        self.stopping = False

    # ---------------------------------------------------------- serving

    def serve(self, listener: socket.socket, idle: float | None = None, path: str | None = None) -> None:
        """Take commands until stopped; with `idle`, stop after that many seconds without a command
        or a running child; with `path`, stop when the socket there is no longer ours (its root was
        removed, or another factory took the name)."""
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        ours = os.stat(path).st_ino if path else None
        last = time.monotonic()
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.listener, self.wake_r, self.wake_w = listener, wake_r, wake_w
        while not (self.stopping and not self.children):
            timeout = None if idle is None and path is None else min(CHECK_EVERY, idle or CHECK_EVERY)
            try:
                ready, _, _ = select.select([wake_r] + ([] if self.stopping else [listener]), [], [], timeout)
            except InterruptedError:
                ready = []
            if self.children or ready:
                last = time.monotonic()
            elif not self.stopping:
                if idle is not None and time.monotonic() - last > idle:
                    self._log(f"idle for {idle:g}s: stopping")
                    self.stopping = True
                if path is not None:
                    try:
                        gone = os.stat(path).st_ino != ours
                    except OSError:
                        gone = True
                    if gone:
                        self._log("the socket is gone or another factory's: stopping")
                        self.stopping = True
            if wake_r in ready:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
            self._reap()
            if listener in ready and not self.stopping:
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    self._log(f"accept: {e}")
                    continue
                try:
                    self._take(conn)
                except Exception as e:      # noqa: BLE001 -- one bad request never stops the factory
                    self._log(f"request refused: {type(e).__name__}: {e}")
                    self._refuse(conn, "internal error")

    def _stop(self, *_):
        self.stopping = True

    def _log(self, line: str) -> None:
        os.write(2, f"{time.strftime('%Y-%m-%dT%H:%M:%S')} factory[{os.getpid()}]: {line}\n".encode())

    def _refuse(self, conn: socket.socket, why: str) -> None:
        self._log(f"refused: {why}")
        try:
            conn.send(b"NO " + why.encode())
        except OSError:
            pass
        conn.close()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                conn, what, started = child
                self._log(f"served: {what} (exit {front.exit_code(status)}, "
                          f"{(time.monotonic() - started) * 1000:.1f} ms)")
                try:
                    conn.send(b"EXIT %d" % status)
                except OSError:
                    pass
                conn.close()

    def _take(self, conn: socket.socket) -> None:
        conn.settimeout(5.0)
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        peer_pid, peer_uid, peer_gid = struct.unpack("3i", creds)
        fds: list[int] = []
        try:
            data, anc, flags, _ = conn.recvmsg(front.MAX_MESSAGE, socket.CMSG_SPACE(4 * 4))   # stdio, and the watch fd of create
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds += struct.unpack(f"{len(payload) // 4}i", payload[:len(payload) // 4 * 4])
            if peer_uid != self.uid or peer_gid != os.getgid():
                return self._refuse(conn, "another user or group")
            try:
                argv, cwd, umask, env = front.decode_request(data)
            except ValueError as e:
                return self._refuse(conn, str(e))
            _, command = front.scan(argv)
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(fds) != (4 if command == "create" else 3):
                return self._refuse(conn, "malformed request")
            if _code_fingerprint() != self.fingerprint:
                self._log("code changed since start: stopping")
                self.stopping = True
                return self._refuse(conn, "stale")
            try:
                if _ns_ids(str(peer_pid)) != self.ns:
                    return self._refuse(conn, "other namespaces")
                if command in ("run", "do") and _cgroups(peer_pid) != self.cgroups:
                    return self._refuse(conn, "other cgroups")
                if command == "create" and _cgroups(peer_pid) != self.cgroups and not _has_cgroups_path(argv, cwd):
                    return self._refuse(conn, "other cgroups and no linux.cgroupsPath")
            except OSError:
                return self._refuse(conn, "peer gone")
            conn.settimeout(None)
            pid = os.fork()
            if pid == 0:
                self._child(conn, fds, argv, cwd, umask, env)    # never returns
            self.children[pid] = (conn, f"{command} pid {pid} for {peer_pid}", time.monotonic())
            conn.send(b"PID %d" % pid)
            if command == "create":
                self._log(f"create for {peer_pid}: Sentry process forked by {pid}, adopted by this factory")
        finally:
            for fd in fds:
                os.close(fd)

    # ---------------------------------------------------------- a command

    def _child(self, conn: socket.socket, fds: list[int], argv: list[str], cwd: str, umask: int,
               env: dict[str, str]) -> None:
        code = 1
        try:
            for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(s, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            self.listener.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            watch = fds[3] if len(fds) > 3 else None
            for target, fd in enumerate(fds[:3]):
                os.dup2(fd, target)
            for fd in fds[:3]:
                if fd > 2 and fd != watch:
                    os.close(fd)
            if watch is not None:
                # `create`: the Sentry process dies with the caller's proxy and tells it its pid.
                os.set_inheritable(watch, False)
                from runsc_py import launch

                def report(sentry_pid: int, exit_status_path: str) -> None:
                    conn.send(b"SENTRY %d " % sentry_pid + os.fsencode(exit_status_path))
                launch.FACTORY_HANDOFF = (watch, report)
                os.register_at_fork(after_in_child=conn.close)     # not into the Sentry process
            if argv and front.scan(argv)[1] == "exec":
                # `exec --detach`: the caller's proxy waits on the control connection (see front).
                from runsc_py import exec_cmd

                def hand_over(control: socket.socket, pid_file: str | None) -> None:
                    conn.sendmsg([b"WAITER " + os.fsencode(os.path.abspath(pid_file) if pid_file else "")],
                                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", control.fileno()))])
                exec_cmd.FACTORY_WAITER = hand_over
            os.chdir(cwd)
            os.umask(umask)
            os.environ.clear()
            os.environ.update(env)
            os.setsid()
            sys.argv = ["runsc-py", *argv]
            # The caller went away (killed): so does its command, as a cold one would.
            watcher = threading.Thread(target=front.kill_self_at_eof, args=(conn,), daemon=True)
            watcher.start()
            from runsc_py.cli import main
            try:
                main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException as e:      # noqa: BLE001
            try:
                os.write(2, f"runsc-py: internal error: {type(e).__name__}: {e}\n".encode())
            except OSError:
                pass
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os._exit(code)


# -------------------------------------------------------------- commands

def start(root: str) -> int:
    """Start this root's factory in the background; return its pid once it accepts commands."""
    pid = running_pid(root)
    if pid is not None:
        if _read(os.path.join(factory_dir(root), FINGERPRINT_FILE)) == _digest(_code_fingerprint()):
            return pid
        stop(root)                    # it runs older code: it would refuse every command
    directory = factory_dir(root)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    path = front.socket_path(root)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            _become_daemon(root, path, ready_w)
        finally:
            os._exit(1)
    os.close(ready_w)
    os.waitpid(child, 0)
    ready = select.select([ready_r], [], [], READY_TIMEOUT)[0]
    msg = os.read(ready_r, 4096) if ready else b""
    os.close(ready_r)
    if not msg.startswith(b"OK "):
        raise UserError(f"factory did not start: {msg.decode(errors='replace') or 'no answer'}"
                        f" (see {os.path.join(directory, LOG_FILE)})")
    return int(msg[3:])


def autostart(root: str) -> None:
    """Become this root's factory, in a process the front end detached for it (never returns).

    The first `run`/`do`/`create`/`exec` under a --root with no factory starts one this way
    and runs cold itself; the factory exits after IDLE_EXIT seconds without a command.  Two
    commands racing here both start one: the later bind wins the socket, the other sees it is
    no longer its own within CHECK_EVERY seconds and exits.  RUNSC_PY_FACTORY_IDLE (seconds)
    sets the idle time."""
    try:
        if running_pid(root) is None:
            directory = factory_dir(root)
            os.makedirs(directory, mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)
            try:
                idle = float(os.environ.get("RUNSC_PY_FACTORY_IDLE", IDLE_EXIT))
            except ValueError:
                idle = IDLE_EXIT
            _become_daemon(root, front.socket_path(root), None, idle=max(idle, 0.1))
    finally:
        os._exit(0)


def _become_daemon(root: str, path: str, ready_w: int | None, idle: float | None = None) -> None:
    directory = factory_dir(root)
    try:
        null = os.open(os.devnull, os.O_RDWR)
        log = os.open(os.path.join(directory, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.chdir("/")
        # Everything a command may need, imported once (the Sentry's whole tree: it cannot import later).
        _preimport_all()
        factory = Factory(root)
        # The Sentry processes of `create` outlive the child that forked them: adopt and reap them.
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)       # PR_SET_CHILD_SUBREAPER
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        old = os.umask(0o177)
        try:
            listener.bind(path)
        finally:
            os.umask(old)
        listener.listen(64)
        listener.setblocking(False)
        with open(os.path.join(directory, FINGERPRINT_FILE), "w") as f:
            f.write(_digest(factory.fingerprint))
        with open(os.path.join(directory, PID_FILE) + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(os.path.join(directory, PID_FILE) + ".tmp", os.path.join(directory, PID_FILE))
        factory._log(f"serving {path}")
    except BaseException as e:        # noqa: BLE001
        if ready_w is not None:
            os.write(ready_w, f"{type(e).__name__}: {e}".encode())
        raise
    if ready_w is not None:
        os.write(ready_w, b"OK %d" % os.getpid())
        os.close(ready_w)
    ours = os.stat(path).st_ino
    try:
        factory.serve(listener, idle=idle, path=path)
    finally:
        # Only our own files: a factory that took over the name keeps its socket and pid file.
        try:
            mine = os.stat(path).st_ino == ours
        except OSError:
            mine = False
        if mine:
            for name in (PID_FILE, front.SOCKET_NAME):
                try:
                    os.unlink(os.path.join(directory, name))
                except OSError:
                    pass
        factory._log("stopped")
    os._exit(0)


def _preimport_all() -> None:
    """Every module a command may import (the front end's, the Sentry's and the costly stdlib ones)."""
    import importlib
    import pkgutil
    import shutil  # noqa: F401
    import subprocess  # noqa: F401
    import runsc_py
    for info in pkgutil.iter_modules(runsc_py.__path__, "runsc_py."):
        if info.name not in ("runsc_py.launcher",):
            importlib.import_module(info.name)
    from sentry.boot import _preimport
    _preimport()


def stop(root: str, timeout: float = 10.0) -> bool:
    """Stop this root's factory (commands it is running finish first); False if none ran."""
    pid = running_pid(root)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_pid(root) is None:
            return True
        time.sleep(0.01)
    raise UserError(f"factory {pid} did not stop within {timeout:g}s (commands still running?)")


def status(root: str) -> dict:
    pid = running_pid(root)
    return {"root": os.path.abspath(root), "running": pid is not None, "pid": pid,
            "socket": front.socket_path(os.path.abspath(root)) if pid is not None else None}

