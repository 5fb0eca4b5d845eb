"""`runsc-py exec`: a new process in a running sandbox, as `runc exec`.

The process is started by the Sentry (it is an application process, not a
host process), through the control channel the Sentry bound in the
container's state directory (sentry/control.py).  Our stdio fds -- or the
slave of a fresh host pty whose master goes to --console-socket -- become
its fds 0-2.

Without --detach we wait and exit with its status.  With --detach a small
waiter process, in its own session, holds the connection and exits with the
process's status: its pid goes to --pid-file, so containerd's shim (which
reaps what runc's exec leaves behind) sees the exit exactly as with runc.
"""
from __future__ import annotations

import json
import os
import socket

from typing import Callable

from runsc_py.errors import UserError
from runsc_py.launch import CONTROL_SOCKET, write_pid_file
from runsc_py.state import PAUSED, RUNNING, CREATED, StateStore


# Set by a factory's child running `exec` (runsc_py/factory.py): instead of forking a waiter
# (which the factory, not the engine, would reap), hand the control connection to the caller,
# whose own child waits on it and is the pid the engine reaps.
FACTORY_WAITER: Callable[[socket.socket, str | None], None] | None = None


def _process_from_json(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            proc = json.load(f)
    except OSError as e:
        raise UserError(f"--process {path}: {e.strerror}") from None
    except (ValueError, RecursionError) as e:
        raise UserError(f"--process {path}: not valid JSON: {e}") from None
    if not isinstance(proc, dict):
        raise UserError(f"--process {path}: must be a JSON object")
    return proc


# A uid or gid is a 32-bit number and (uid_t)-1 means "unchanged" to setuid(2): runc refuses it too.
_ID_LIMIT = (1 << 32) - 1


def _id(value: object, what: str, from_json: bool = False) -> int:
    """A uid/gid from the command line or process.json: an integer in [0, 2^32-2], else UserError.
    In JSON it must be a number, as runc's typed decoding requires ("0" is refused)."""
    if isinstance(value, bool) or not isinstance(value, int if from_json else (int, str)):
        raise UserError(f"{what}: must be a number")
    try:
        n = int(value) if isinstance(value, int) else int(value.strip(), 10)
    except ValueError:
        raise UserError(f"{what} {str(value)[:32]!r}: only numeric ids are supported") from None
    if not 0 <= n < _ID_LIMIT:
        raise UserError(f"{what} {n}: out of range (0 to {_ID_LIMIT - 1})")
    return n


def _user(spec: str) -> tuple[int, int]:
    uid_s, _, gid_s = spec.partition(":")
    if not uid_s.strip().isdigit() or (gid_s and not gid_s.strip().isdigit()):
        if uid_s.strip().lstrip("-").isdigit() and (not gid_s or gid_s.strip().lstrip("-").isdigit()):
            raise UserError(f"--user {spec!r}: ids must be between 0 and {_ID_LIMIT - 1}")
        raise UserError(f"--user {spec!r}: only numeric UID[:GID] is supported")
    return _id(uid_s, "--user uid"), _id(gid_s or "0", "--user gid")


def build_request(state_config: dict, process_json: str | None, args: list[str], tty: bool, cwd: str | None,
                  env: list[str], user: str | None, additional_gids: list[int]) -> tuple[dict, bool]:
    """The control request and whether a terminal is wanted."""
    if process_json:
        proc = _process_from_json(process_json)
        pargs = proc.get("args")
        if not isinstance(pargs, list) or not pargs or not all(isinstance(a, str) for a in pargs):
            raise UserError("process.args must be a non-empty list of strings")
        u = proc.get("user")
        u = {} if u is None else u
        if not isinstance(u, dict):
            raise UserError("process.user must be an object")
        gids = u.get("additionalGids") or []
        if not isinstance(gids, list):
            raise UserError("process.user.additionalGids must be a list")
        env_list = proc.get("env") or []
        if not isinstance(env_list, list) or not all(isinstance(e, str) and "\0" not in e for e in env_list):
            raise UserError("process.env must be a list of strings")
        cwd_v = proc.get("cwd") or "/"
        if not isinstance(cwd_v, str) or not cwd_v.startswith("/") or "\0" in cwd_v:
            raise UserError("process.cwd must be an absolute path")
        if any("\0" in a for a in pargs):
            raise UserError("process.args must not contain NUL bytes")
        req = {"args": pargs, "env": list(env_list), "cwd": cwd_v,
               "uid": _id(u.get("uid", 0), "process.user.uid", True),
               "gid": _id(u.get("gid", 0), "process.user.gid", True),
               "additional_gids": [_id(g, "process.user.additionalGids", True) for g in gids]}
        terminal = bool(proc.get("terminal", False))
    else:
        if not args:
            raise UserError("exec needs a command (or --process FILE)")
        uid, gid = _user(user) if user else (0, 0)
        additional_gids = [_id(g, "--additional-gids") for g in additional_gids]
        if any("\0" in a for a in args) or any("\0" in e for e in env) or (cwd and "\0" in cwd):
            raise UserError("exec: arguments, --env and --cwd must not contain NUL bytes")
        if cwd is not None and not cwd.startswith("/"):
            raise UserError(f"--cwd {cwd[:64]!r}: must be an absolute path")
        base_env = state_config.get("env") or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        req = {"args": args, "env": list(base_env) + env, "cwd": cwd or state_config.get("cwd") or "/",
               "uid": uid, "gid": gid, "additional_gids": additional_gids}
        terminal = tty
    return req, terminal


def _terminal(console_socket: str | None) -> tuple[int, int] | None:
    if not console_socket:
        return None
    master, slave = os.openpty()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(console_socket)
            socket.send_fds(s, [os.ttyname(slave).encode()], [master])
    except OSError as e:
        os.close(slave)
        raise UserError(f"console socket {console_socket}: {e.strerror or e}") from None
    finally:
        os.close(master)
    return master, slave


def exec_in_container(store: StateStore, container_id: str, request: dict, terminal: bool,
                      console_socket: str | None, detach: bool, pid_file: str | None) -> int:
    from sentry.control import ControlError, exec_start, exec_wait
    state = store.load(container_id)
    status = state.live_status()
    if status not in (RUNNING, CREATED, PAUSED):
        raise UserError(f"cannot exec in a stopped container (status {status})")
    path = store.path(container_id, CONTROL_SOCKET)
    if state.config.get("pod"):         # a pod member (runsc_py/pod.py): run in its root, in the pod's Sentry
        request = {**request, "container": container_id}
    pty = _terminal(console_socket) if terminal else None
    stdio = [pty[1]] * 3 if pty else [0, 1, 2]
    try:
        conn, _pid = exec_start(path, request, stdio)
    except ControlError as e:
        raise UserError(str(e), e.code) from None
    finally:
        if pty:
            os.close(pty[1])
    if not detach:
        try:
            return exec_wait(conn)
        except ControlError as e:
            raise UserError(str(e), e.code) from None
    if FACTORY_WAITER is not None:
        FACTORY_WAITER(conn, pid_file)
        conn.close()
        return 0
    waiter = os.fork()
    if waiter == 0:
        code = 255
        try:
            os.setsid()
            for fd in (0, 1, 2):
                try:
                    os.dup2(os.open(os.devnull, os.O_RDWR), fd)
                except OSError:
                    pass
            code = wait_detached(conn)
        finally:
            os._exit(code)
    conn.close()
    if pid_file:
        write_pid_file(pid_file, waiter)
    return 0


def wait_detached(conn: socket.socket) -> int:
    """The waiter's work (ours, or a factory caller's proxy): the exec'd process's exit status."""
    from sentry.control import exec_wait
    try:
        return exec_wait(conn)
    except BaseException:        # noqa: BLE001 -- a waiter reports 255, never a traceback
        return 255
