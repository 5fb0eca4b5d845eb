"""The runc lifecycle after launch: start, kill, delete, pause, resume, wait, ps.

`kill` signals the Sentry, which forwards to the application's PID 1.
`delete` of anything but a stopped container SIGKILLs the Sentry first (its
Gofer and stubs die with it) and waits for it to go.  `start` opens the
gate that `launch.create_container` left the Sentry parked at.  Every
command takes the container's lock (see state), so concurrent commands on
one container are serialised.
"""
from __future__ import annotations

import errno
import os
import signal
import time

from runsc_py import errors, procfs
from runsc_py.errors import UserError
from runsc_py.hooks import hook_state, poststop, run_hooks
from runsc_py.state import (CREATED, EXIT_STATUS_FILE, GATE_FIFO, PAUSED, RUNNING, STOPPED,
                            ContainerNotExist, StateStore, StateUnreadable)

KILL_TIMEOUT = 10.0         # seconds for a SIGKILLed Sentry to go in `delete`


# ---------------------------------------------------------------- start / kill / delete

def start_container(store: StateStore, container_id: str) -> None:
    """`runsc-py start`: open the gate of a created container."""
    with store.locked(container_id) as state:
        status = state.live_status()
        if status == STOPPED:
            raise UserError("cannot start a container that has stopped")
        if status == RUNNING:
            raise UserError("cannot start an already running container")
        if status != CREATED:
            raise UserError(f"cannot start a container in the {status} state")
        hooks = state.config.get("hooks", {})
        try:
            run_hooks(hooks, "startContainer", hook_state(store, state))
        except UserError:
            _kill_quietly(state.pid)
            raise
        try:
            fd = os.open(store.path(container_id, GATE_FIFO), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in (errno.ENXIO, errno.ENOENT):
                raise UserError("cannot start a container that has stopped") from None
            raise UserError(f"cannot start container: {e.strerror}") from None
        try:
            os.write(fd, b"S")
        except OSError as e:
            raise UserError(f"cannot start container: {e.strerror}") from None
        finally:
            os.close(fd)
        state.status = RUNNING
        store.save(state)
        try:
            run_hooks(hooks, "poststart", hook_state(store, state))
        except UserError as e:
            errors.log().warning(e.message)


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def pause_container(store: StateStore, container_id: str) -> None:
    """`runsc-py pause`: freeze the sandbox's processes."""
    from runsc_py import freezer
    with store.locked(container_id) as state:
        status = state.live_status()
        if status == PAUSED:
            raise UserError("container already paused")
        if status not in (RUNNING, CREATED):
            raise UserError("container not running")
        state.config["freezer"] = freezer.freeze(store.root, container_id, state.pid)
        state.config["paused_from"] = state.status
        state.status = PAUSED
        store.save(state)


def resume_container(store: StateStore, container_id: str) -> None:
    """`runsc-py resume`: thaw a paused sandbox."""
    from runsc_py import freezer
    with store.locked(container_id) as state:
        if state.live_status() != PAUSED:
            raise UserError("container not paused")
        freezer.thaw(state.config["freezer"])
        state.status = state.config.pop("paused_from", RUNNING)
        store.save(state)


def parse_signal(text: str) -> int:
    """A signal from a number ("9") or a name ("KILL", "SIGKILL", "sigkill")."""
    text = text.strip()
    if text.isdigit():
        num = int(text)
        if 0 < num <= signal.SIGRTMAX:
            return num
        raise UserError(f"invalid signal: {text}")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise UserError(f"unknown signal {text!r}") from None


def kill_container(store: StateStore, container_id: str, sig: int, all_processes: bool) -> None:
    """`runsc-py kill`: signal the Sentry (it forwards to PID 1, or to all with --all)."""
    del all_processes    # the Sentry owns the container's processes; it has no host pids to fan out to
    with store.locked(container_id, exclusive=False) as state:
        if state.live_status() == STOPPED:
            raise UserError("container not running")
        try:
            os.kill(state.pid, sig)
        except ProcessLookupError:
            raise UserError("container not running") from None
        except PermissionError:
            raise UserError(f"cannot signal pid {state.pid}: permission denied") from None
        if sig == signal.SIGKILL:
            # As a PID namespace dies with its init, the whole sandbox dies with its Sentry.
            if state.config.get("freezer"):
                from runsc_py import freezer
                freezer.thaw(state.config["freezer"])
            procfs.kill_tree(state.pid, state.pid_start, signal.SIGKILL, KILL_TIMEOUT)
    if sig == signal.SIGKILL:
        forget_dead_run(store, container_id)


def forget_dead_run(store: StateStore, container_id: str) -> None:
    """Remove the state of a `run` container whose run process is gone.

    `runsc-py run` removes its container's state as it returns; a run process that was SIGKILLed
    (by `kill ID KILL`, which reaches it because the Sentry runs in it) cannot, so what it would
    have done is done here: poststop hooks, then the state directory.  runc's `run` survives a
    KILL of the container's init and cleans up itself; the user sees the same: no stale state.
    """
    try:
        with store.locked(container_id) as state:
            if not state.config.get("run") or state.live_status() != STOPPED:
                return
            poststop(store, state, state.config.get("hooks", {}))
            store.remove(container_id)
    except ContainerNotExist:
        pass


def delete_container(store: StateStore, container_id: str, force: bool) -> None:
    """`runsc-py delete`: remove a stopped (or created; or with --force any) container."""
    try:
        with store.locked(container_id) as state:
            status = state.live_status()
            if status in (RUNNING, PAUSED) and not force:
                raise UserError(f"cannot delete container {container_id} that is not stopped: {status}")
            if status != STOPPED:
                _kill_quietly(state.pid)
                if state.config.get("freezer"):     # frozen processes cannot die (cgroup v1)
                    from runsc_py import freezer
                    freezer.thaw(state.config["freezer"])
            # The Sentry's helpers (Gofer, stubs) must die with it; make sure, even if
            # they outlived it (they stay in its session).
            if not procfs.kill_tree(state.pid, state.pid_start, signal.SIGKILL, KILL_TIMEOUT):
                raise UserError(f"cannot delete container {container_id}: "
                                f"sandbox pid {state.pid} did not exit")
            if state.config.get("freezer"):
                from runsc_py import freezer
                freezer.remove(state.config["freezer"])
            if state.config.get("cgroups"):
                from runsc_py import cgroups
                cgroups.remove(state.config["cgroups"])
            poststop(store, state, state.config.get("hooks", {}))
            store.remove(container_id)
    except ContainerNotExist:
        if not force:        # runc: delete --force of an unknown id succeeds
            raise
        if os.path.lexists(store.dir(container_id)):
            store.remove(container_id)      # a remnant of an interrupted delete
    except StateUnreadable:
        if not force:
            raise
        store.remove(container_id)          # unreadable state: --force still clears it


def wait_container(store: StateStore, container_id: str, timeout: float | None = None) -> int:
    """`runsc-py wait`: block until the container stops; return its exit status.

    The Sentry records its status in the state directory as it exits; a
    Sentry that left none was SIGKILLed (delete --force, kill 9): 137.
    """
    with store.locked(container_id, exclusive=False) as state:
        pid, started = state.pid, state.pid_start
    deadline = None if timeout is None else time.monotonic() + timeout
    while procfs.is_alive(pid, started):
        if deadline is not None and time.monotonic() >= deadline:
            raise UserError(f"container {container_id} still running after {timeout:g}s")
        time.sleep(0.05)
    try:
        with open(store.path(container_id, EXIT_STATUS_FILE)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        if not os.path.isdir(store.dir(container_id)):
            raise UserError(f"container {container_id} was deleted; its exit status is gone") from None
        return 128 + signal.SIGKILL


# ---------------------------------------------------------------- ps

def container_pids(store: StateStore, container_id: str) -> list[int]:
    """Host pids of the container: the Sentry and its Gofer/stub children, and whatever else is in
    its linux.cgroupsPath (as runc lists it; a factory-made container's proxy is there)."""
    with store.locked(container_id, exclusive=False) as state:
        if state.live_status() == STOPPED:
            return []
        pids = set(procfs.descendants(state.pid, session=True))
        if state.config.get("cgroups"):
            from runsc_py import cgroups
            pids.update(cgroups.members(state.config["cgroups"]))
        return sorted(pids)


def sandbox_ps_table(store: StateStore, container_id: str) -> str | None:
    """The application's processes as the Sentry sees them (sandbox pids), or None if unreachable."""
    with store.locked(container_id, exclusive=False) as state:
        if state.live_status() == STOPPED:
            return None
    path = store.path(container_id, "control.sock")
    if not os.path.exists(path):
        return None
    try:
        from sentry.control import ControlError, ps
    except Exception:      # an older or broken Sentry: the host view still works
        return None
    try:
        procs = ps(path, container_id)     # in a pod's Sentry: this container's processes only
    except (ControlError, OSError):
        return None
    rows = [["UID", "PID", "PPID", "CMD"]]
    rows += [[str(p.get("uid", "")), str(p.get("pid", "")), str(p.get("ppid", "")),
              " ".join(p.get("args") or []) or f"[{p.get('comm', '')}]"] for p in procs]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "".join(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}\n" for r in rows)


def ps_table(pids: list[int], ps_args: list[str]) -> str:
    """`ps ARGS` (default -ef) filtered to `pids`, header kept, as runc does."""
    import subprocess
    try:
        out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise UserError(f"ps: {e}") from None
    lines = out.splitlines()
    if not lines:
        return ""
    header = lines[0].split()
    if "PID" not in header:
        raise UserError("ps: no PID column in the output of ps")
    col = header.index("PID")
    wanted = {str(p) for p in pids}
    kept = [lines[0]] + [ln for ln in lines[1:] if len(ln.split()) > col and ln.split()[col] in wanted]
    return "\n".join(kept) + "\n"
