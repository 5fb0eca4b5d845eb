"""linux.cgroupsPath: the sandbox's host processes join the cgroup the engine names.

runc puts the container's processes into `linux.cgroupsPath` in every
mounted hierarchy; engines rely on it (`docker stats` and the shim's
metrics read that cgroup, `docker top` and OOM accounting follow it).  Here
the Sentry joins it before it starts anything, so its Gofers and stubs are
born inside.  Only membership is applied: limits stay the Sentry's job
(`linux.resources` is enforced inside the sandbox), because the Sentry's own
interpreter would count against a host memory limit meant for the
application.

`create` makes the directories (`prepare`, recorded in the state), the
Sentry writes its pid into them (`join`), `delete` removes them
(`remove`).  A hierarchy that refuses (read-only, no permission) is skipped:
this is best effort, as a missing cgroup must not stop a container.  A
systemd-style path (`slice:prefix:name`) is not handled (no systemd here).
"""
from __future__ import annotations

import os
import time


def _mounted() -> list[tuple[str, str, set[str]]]:
    """(mount point, filesystem type, super options) of each cgroup hierarchy mounted at its root."""
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                if fields[sep + 1] in ("cgroup", "cgroup2") and fields[3] == "/":
                    found.append((fields[4].replace("\\040", " "), fields[sep + 1],
                                  set(fields[sep + 3].split(",")) if len(fields) > sep + 3 else set()))
    except (OSError, ValueError, IndexError):
        return []
    return found


def _hierarchies() -> list[str]:
    """Mount points of the cgroup (v1) and cgroup2 hierarchies mounted at their root."""
    return [point for point, _, _ in _mounted()]


def _copy_cpuset(directory: str) -> None:
    """A new cpuset cgroup has empty cpus/mems and refuses members: copy the nearest parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        path = os.path.join(directory, name)
        try:
            with open(path) as f:
                if f.read().strip():
                    continue
        except OSError:
            return
        parent = os.path.dirname(directory)
        _copy_cpuset(parent)
        try:
            with open(os.path.join(parent, name)) as f:
                value = f.read().strip()
            with open(path, "w") as f:
                f.write(value)
        except OSError:
            pass


def prepare(cgroups_path: str | None) -> list[str]:
    """Make `cgroups_path` in every hierarchy; return the directories made or found."""
    if not cgroups_path or ":" in cgroups_path:
        return []
    relative = os.path.normpath("/" + cgroups_path).lstrip("/")
    if not relative or relative == ".":
        return []
    made = []
    for mount in _hierarchies():
        directory = os.path.join(mount, relative)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError:
            continue
        if os.path.exists(os.path.join(directory, "cpuset.cpus")):
            _copy_cpuset(directory)
        made.append(directory)
    return made


def join(directories: list[str], pid: int) -> None:
    """Move `pid` into each directory (best effort)."""
    for directory in directories:
        try:
            with open(os.path.join(directory, "cgroup.procs"), "w") as f:
                f.write(str(pid))
        except OSError:
            pass


def members(directories: list[str]) -> list[int]:
    """The pids in any of the directories (what runc's `ps` lists: the container's cgroup)."""
    pids: set[int] = set()
    for directory in directories:
        try:
            with open(os.path.join(directory, "cgroup.procs")) as f:
                pids.update(int(line) for line in f if line.strip())
        except (OSError, ValueError):
            continue
    return sorted(pids)


def follow(leader: int, pid: int) -> None:
    """Move `pid` into every cgroup `leader` is in (best effort): a factory-made container's
    proxy, the process the engine holds, joins its Sentry's cgroups as a cold Sentry would be."""
    try:
        with open(f"/proc/{leader}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    mounts = _mounted()
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not path.startswith("/"):
            continue
        wanted = set(controllers.split(",")) if controllers else set()
        for point, fstype, options in mounts:
            if (hierarchy == "0" and not controllers and fstype == "cgroup2") or \
                    (fstype == "cgroup" and wanted and wanted <= options):
                join([os.path.join(point, path.lstrip("/"))], pid)
                break


def remove(directories: list[str], timeout: float = 2.0) -> None:
    """Remove the directories once their processes have gone (a dying process lingers briefly)."""
    deadline = time.monotonic() + timeout
    for directory in directories:
        while True:
            try:
                os.rmdir(directory)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.02)
