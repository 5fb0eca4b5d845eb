"""`runsc-py update`: change a running container's resource limits, as `runc update`.

`--resources FILE` (or `-` for stdin) takes the OCI LinuxResources JSON
(`{"memory": {"limit": N}, "pids": {"limit": N}}`); `--memory` and
`--pids-limit` set the same fields.  The Sentry enforces them (sentry/kernel.py
charge_memory, clone's pids check), so they reach it over its control channel.
Fields we do not enforce (cpu, blkio, ...) are accepted and ignored, as runc
ignores what the cgroup driver lacks.
"""
from __future__ import annotations

import json
import sys

from runsc_py.errors import UserError
from runsc_py.launch import CONTROL_SOCKET
from runsc_py.state import CREATED, PAUSED, RUNNING, StateStore


def _limit(obj: dict, key: str) -> int | None:
    part = obj.get(key)
    if part is None:
        return None
    if not isinstance(part, dict):
        raise UserError(f"resources: {key} must be an object")
    value = part.get("limit")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserError(f"resources: {key}.limit must be an integer")
    return value


def update_container(store: StateStore, container_id: str, resources: str | None, memory: int | None,
                     pids: int | None) -> None:
    from sentry.control import ControlError, update
    mem_limit, pids_limit = memory, pids
    if resources is not None:
        try:
            raw = sys.stdin.read() if resources == "-" else open(resources).read()
            obj = json.loads(raw) if raw.strip() else {}
        except OSError as e:
            raise UserError(f"--resources {resources}: {e.strerror}") from None
        except ValueError as e:
            raise UserError(f"--resources: not valid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise UserError("--resources: must be a JSON object")
        mem_limit = _limit(obj, "memory") if mem_limit is None else mem_limit
        pids_limit = _limit(obj, "pids") if pids_limit is None else pids_limit
    state = store.load(container_id)
    if state.live_status() not in (RUNNING, CREATED, PAUSED):
        raise UserError(f"cannot update a stopped container ({container_id})")
    try:
        update(store.path(container_id, CONTROL_SOCKET), mem_limit, pids_limit)
    except ControlError as e:
        raise UserError(str(e)) from None
