"""The container state store: one directory per container under `--root`.

Layout (runc keeps the same shape under its root):

    ROOT/ID/state.json   the recorded state (written tmp + fsync + rename)
    ROOT/ID/lock         flock()ed: shared to read, exclusive to change
    ROOT/ID/start.fifo   the create/start gate (see launch)
    ROOT/ID/exit_status  written by the Sentry process as it exits (see launch)
    ROOT/ID/sentry.log   the Sentry's log when no --debug-log was given (see launch)

Design choices:

* A container comes into being atomically.  Its directory is fully built
  (state.json with status "creating", the lock file, already locked by the
  creator) under a hidden temporary name and then renamed to ROOT/ID; the
  rename fails if ID exists, so two concurrent `create ID` cannot both win
  and no reader ever sees a directory without a state.json.
* The recorded status is only what the front end did last ("creating",
  "created", "running").  The reported status also asks the host whether
  the recorded pid still runs (pid + start time, see procfs), so a Sentry
  that exited or a `runsc-py` that crashed reads as "stopped" and can be
  deleted: the store recovers by construction, with no daemon.
* flock, not fcntl locks: they belong to the open file, so a forked Sentry
  would inherit them; `lifecycle` closes the lock fd in the child first.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import pwd
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterator

from runsc_py import procfs
from runsc_py.errors import UserError

OCI_VERSION = "1.0.2"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
GATE_FIFO = "start.fifo"
EXIT_STATUS_FILE = "exit_status"
SENTRY_LOG_FILE = "sentry.log"

CREATING, CREATED, RUNNING, PAUSED, STOPPED = "creating", "created", "running", "paused", "stopped"


class ContainerNotExist(UserError):
    """No container with that id under the root."""

    def __init__(self) -> None:
        super().__init__("container does not exist")


class StateUnreadable(UserError):
    """ROOT/ID/state.json exists but cannot be read or parsed."""


def now_rfc3339nano() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"


@dataclass
class ContainerState:
    """What state.json records about one container."""
    id: str
    bundle: str
    rootfs: str
    status: str                    # the recorded status: creating | created | running | paused
    pid: int = 0                   # the Sentry's host pid (for `run`: runsc-py's own)
    pid_start: int | None = None   # /proc/PID/stat start time, guards against pid reuse
    created: str = field(default_factory=now_rfc3339nano)
    annotations: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)   # flags the container was made with

    def live_status(self) -> str:
        """The OCI status: the recorded one while the pid lives, else "stopped"."""
        if self.pid and procfs.is_alive(self.pid, self.pid_start):
            return self.status
        return STOPPED

    def oci_state(self, owner: str = "") -> dict[str, Any]:
        """The OCI state document (`runsc-py state`), in runc's field order."""
        status = self.live_status()
        return {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": self.pid if status != STOPPED else 0,
            "status": status,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "annotations": self.annotations,
            "owner": owner,
        }


class StateStore:
    """Container directories under one root."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def dir(self, container_id: str) -> str:
        return os.path.join(self.root, container_id)

    def path(self, container_id: str, name: str) -> str:
        return os.path.join(self.root, container_id, name)

    def _ensure_root(self) -> None:
        try:
            os.makedirs(self.root, mode=0o711, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create state directory {self.root}: {e.strerror}") from None

    @contextlib.contextmanager
    def create(self, state: ContainerState) -> Iterator[int]:
        """Create ROOT/ID atomically with `state` recorded; yield the held exclusive lock fd.

        On an exception inside the block the directory is removed again.
        """
        import tempfile
        self._ensure_root()
        try:
            tmp = tempfile.mkdtemp(prefix=f".new-{state.id[:40]}-", dir=self.root)
        except OSError as e:
            raise UserError(f"cannot create state in {self.root}: {e.strerror}") from None
        lock_fd = -1
        try:
            os.chmod(tmp, 0o711)
            lock_fd = os.open(os.path.join(tmp, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            _write_json_atomic(os.path.join(tmp, STATE_FILE), asdict(state))
            try:
                os.rename(tmp, self.dir(state.id))
            except OSError as e:
                if not os.path.lexists(self.dir(state.id)):
                    raise UserError(f"cannot create state for {state.id}: {e.strerror}") from None
                if not self._clear_remnant(state.id):
                    raise UserError("container with given ID already exists") from None
                os.rename(tmp, self.dir(state.id))
            tmp = ""
        except BaseException:
            if lock_fd >= 0:
                os.close(lock_fd)
            if tmp:
                _rmtree(tmp, ignore_errors=True)
            raise
        owner = os.getpid()
        try:
            yield lock_fd
        except BaseException:
            if os.getpid() == owner:      # never from a process forked inside the block
                self.remove(state.id)
            raise
        finally:
            os.close(lock_fd)

    def _clear_remnant(self, container_id: str) -> bool:
        """Remove ROOT/ID if it is what an interrupted `remove` left (no state.json); True if gone."""
        try:
            fd = os.open(self.path(container_id, LOCK_FILE), os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            fd = -1
        try:
            if fd >= 0:
                fcntl.flock(fd, fcntl.LOCK_EX)      # a live creator holds it until state.json exists
            if os.path.exists(self.path(container_id, STATE_FILE)):
                return False
            _rmtree(self.dir(container_id), ignore_errors=True)
            return not os.path.lexists(self.dir(container_id))
        finally:
            if fd >= 0:
                os.close(fd)

    @contextlib.contextmanager
    def locked(self, container_id: str, exclusive: bool = True) -> Iterator[ContainerState]:
        """Lock ROOT/ID and yield its state; "container does not exist" if there is none."""
        try:
            fd = os.open(self.path(container_id, LOCK_FILE), os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            raise ContainerNotExist() from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            # The directory may have been deleted while we waited for the lock.
            yield self.load(container_id)
        finally:
            os.close(fd)

    def load(self, container_id: str) -> ContainerState:
        """Read ROOT/ID/state.json (callers hold the lock)."""
        try:
            with open(self.path(container_id, STATE_FILE), "rb") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ContainerNotExist() from None
        except (OSError, ValueError, RecursionError) as e:
            raise StateUnreadable(f"container {container_id}: unreadable state: {e}") from None
        problem = _check_state(data, container_id)
        if problem:
            raise StateUnreadable(f"container {container_id}: invalid state: {problem}")
        known = {f.name for f in fields(ContainerState)}
        return ContainerState(**{k: v for k, v in data.items() if k in known})

    def save(self, state: ContainerState) -> None:
        """Replace state.json atomically (callers hold the exclusive lock)."""
        _write_json_atomic(self.path(state.id, STATE_FILE), asdict(state))

    def remove(self, container_id: str) -> None:
        """Remove ROOT/ID and everything in it.

        state.json goes first, so an interrupted removal reads as "does not
        exist" and its remnant is cleared by the next `create` of that id.
        """
        try:
            os.unlink(self.path(container_id, STATE_FILE))
        except OSError:
            pass
        _rmtree(self.dir(container_id), ignore_errors=True)

    def ids(self) -> list[str]:
        """Ids of every container under the root, sorted."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        return sorted(n for n in names if not n.startswith(".")
                      and os.path.isfile(self.path(n, STATE_FILE)))

    def owner(self, container_id: str) -> str:
        """The user name owning ROOT/ID (runc's `owner`)."""
        try:
            uid = os.stat(self.dir(container_id)).st_uid
            return pwd.getpwuid(uid).pw_name
        except (OSError, KeyError):
            return ""


_PID_MAX = 1 << 22          # Linux's PID_MAX_LIMIT: no real pid is larger


def _check_state(data: Any, container_id: str) -> str:
    """What is wrong with a state.json document, or "" when every field has its type and range.

    state.json lives under --root, which only root writes; it is still checked field by field,
    because its pid goes to kill(2): a tampered pid of -1 or 0 would signal every process or the
    caller's own process group.
    """
    if not isinstance(data, dict):
        return "not a JSON object"
    for key in ("id", "bundle", "rootfs", "status", "created"):
        if key in data and not isinstance(data[key], str):
            return f"{key} is not a string"
    for key in ("id", "bundle", "rootfs", "status"):
        if key not in data:
            return f"{key} is missing"
    if data["id"] != container_id:
        return f"id {data['id'][:64]!r} is not the directory's"
    if data["status"] not in (CREATING, CREATED, RUNNING, PAUSED):
        return f"unknown status {data['status'][:32]!r}"
    pid = data.get("pid", 0)
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 <= pid < _PID_MAX:
        return "pid is not a process id"
    start = data.get("pid_start")
    if start is not None and (not isinstance(start, int) or isinstance(start, bool) or start < 0):
        return "pid_start is not a start time"
    for key in ("annotations", "config"):
        if key in data and not isinstance(data[key], dict):
            return f"{key} is not an object"
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.get("annotations", {}).items()):
        return "annotations are not strings"
    return ""


def _write_json_atomic(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def _rmtree(path: str, ignore_errors: bool = False) -> None:
    import shutil          # only when a state directory goes: shutil (bz2, lzma...) is costly to import
    shutil.rmtree(path, ignore_errors=ignore_errors)
