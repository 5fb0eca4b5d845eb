"""`pause` / `resume`: freeze a sandbox's host processes with the cgroup freezer.

A sandbox is a small tree of host processes (the Sentry, its Gofer, the
ptrace stubs); freezing all of them stops the application, its kernel and
its file server at once, which is what runc's pause means too.  We create
the freezer cgroup only when a container is first paused, move the tree into
it (repeating until no new process appears, since the Sentry may fork while
we move), and freeze it; `resume` thaws it.  Children forked later inherit
the cgroup.  `delete` thaws (a frozen process cannot die under cgroup v1)
and removes the cgroup once the tree is gone.

Both hierarchies are supported: cgroup v1's `freezer.state` (this machine's
hybrid layout) and cgroup v2's `cgroup.freeze`.
"""
from __future__ import annotations

import hashlib
import os
import time

from runsc_py import procfs
from runsc_py.errors import UserError

V1_ROOT = "/sys/fs/cgroup/freezer"
V2_ROOTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")
PARENT = "runsc-py"
FREEZE_TIMEOUT = 10.0


def _hierarchy() -> tuple[str, int]:
    if os.path.isfile(os.path.join(V1_ROOT, "freezer.state")) or os.path.isdir(V1_ROOT):
        return V1_ROOT, 1
    for root in V2_ROOTS:
        if os.path.isfile(os.path.join(root, "cgroup.procs")) and \
                os.path.isfile(os.path.join(root, "cgroup.controllers")):
            return root, 2
    raise UserError("pause needs a cgroup freezer (cgroup v1 freezer or cgroup v2), and none is mounted")


def _leaf(state_root: str, container_id: str) -> str:
    """A cgroup name unique per (--root, id): the same id may live under two roots."""
    digest = hashlib.sha256(f"{state_root}\0{container_id}".encode()).hexdigest()[:12]
    return f"{container_id[:200]}-{digest}"


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def freeze(state_root: str, container_id: str, pid: int) -> str:
    """Move the process tree under `pid` into the container's freezer cgroup and freeze it."""
    root, version = _hierarchy()
    path = os.path.join(root, PARENT, _leaf(state_root, container_id))
    try:
        os.makedirs(path, exist_ok=True)
        moved: set[int] = set()
        for _ in range(20):
            todo = [p for p in procfs.descendants(pid, session=True) if p not in moved and procfs.is_alive(p)]
            if not todo:
                break
            for p in todo:
                try:
                    _write(os.path.join(path, "cgroup.procs"), str(p))
                except ProcessLookupError:
                    pass
                moved.add(p)
        if version == 1:
            _write(os.path.join(path, "freezer.state"), "FROZEN")
            _await(os.path.join(path, "freezer.state"), "FROZEN")
        else:
            _write(os.path.join(path, "cgroup.freeze"), "1")
            _await(os.path.join(path, "cgroup.events"), "frozen 1")
    except OSError as e:
        thaw(path)
        raise UserError(f"cannot freeze container: {path}: {e.strerror}") from None
    return path


def thaw(path: str) -> None:
    """Thaw the cgroup at `path` (no-op if it is gone)."""
    try:
        if os.path.isfile(os.path.join(path, "freezer.state")):
            _write(os.path.join(path, "freezer.state"), "THAWED")
        elif os.path.isfile(os.path.join(path, "cgroup.freeze")):
            _write(os.path.join(path, "cgroup.freeze"), "0")
    except OSError as e:
        raise UserError(f"cannot thaw container: {path}: {e.strerror}") from None


def remove(path: str) -> None:
    """Remove the (empty) cgroup at `path`, retrying briefly while its last processes exit."""
    deadline = time.monotonic() + 5.0
    while os.path.isdir(path):
        try:
            os.rmdir(path)
        except OSError:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.02)


def _await(path: str, want: str) -> None:
    deadline = time.monotonic() + FREEZE_TIMEOUT
    while True:
        with open(path) as f:
            text = f.read()
        if want in text.splitlines() or text.strip() == want:
            return
        if time.monotonic() >= deadline:
            raise OSError(0, f"still not {want} after {FREEZE_TIMEOUT:.0f}s")
        time.sleep(0.005)
