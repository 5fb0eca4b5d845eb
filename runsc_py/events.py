"""`runsc-py events`: a container's resource statistics as runc's stats events, streamed.

runc prints one JSON object per line, `{"type": "stats", "id": ID, "data":
{...}}`, every `--interval` until the container stops (`--stats`: once); the
data is go-runc's `Stats` (cpu.usage.{total,percpu_usage,kernel,user},
memory.usage.{usage,limit,max,failcnt}, memory.raw, pids.{current,limit}),
which containerd's runc shim and `docker stats` decode.

runc reads the container's cgroup; a runsc-py container's costs are two
things, and each comes from where it is known: the host's view of the
sandbox's process tree (Sentry, Gofer, stubs: CPU time, resident memory;
runsc_py/metrics.host_usage) and the Sentry's own accounting, asked over the
control channel (sentry/metrics.py: memory by kind, the application's
processes, syscalls).  If the Sentry cannot be asked (it is starting, or
stopped between two reads) the host's view alone is reported.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable

from runsc_py.errors import UserError
from runsc_py.metrics import host_usage, sandbox_stats
from runsc_py.state import StateStore


def event(container_id: str, pid: int, s: dict | None) -> dict[str, Any]:
    """One runc-shaped stats event from the host usage of `pid`'s tree and the Sentry's stats `s`."""
    h = host_usage(pid)
    mem = dict(s["memory"]) if s else {}
    usage = mem.get("total", h["rss"]) if s else h["rss"]
    raw = {f"{k}_bytes": int(v) for k, v in mem.items()}
    raw["host_rss_bytes"] = h["rss"]
    raw["host_processes"] = h["processes"]
    raw["pgfault"] = h["minflt"] + h["majflt"]
    raw["pgmajfault"] = h["majflt"]
    data: dict[str, Any] = {
        "cpu": {"usage": {"total": h["user_ns"] + h["kernel_ns"], "kernel": h["kernel_ns"], "user": h["user_ns"]},
                "throttling": {}},
        "memory": {"usage": {"usage": usage, "limit": int(s["memory_limit"]) if s else 0, "max": 0, "failcnt": 0},
                   "swap": {"limit": 0, "failcnt": 0}, "kernel": {"limit": 0, "failcnt": 0},
                   "raw": raw},
        "pids": {"current": len(s["processes"]) if s else h["processes"],
                 "limit": int(s["pids_limit"]) if s else 0},
        "blkio": {},
        "hugetlb": {},
    }
    if s:
        data["memory"]["cache"] = int(mem.get("mapped", 0)) + int(mem.get("tmpfs", 0))
        data["syscalls"] = {"total": sum(s["syscalls"].values())}
    return {"type": "stats", "id": container_id, "data": data}


def stats(container_id: str, pid: int) -> dict[str, Any]:
    """Host view only (kept for callers that have no store): the event for the tree under `pid`."""
    return event(container_id, pid, None)


def stream(store: StateStore, container_id: str, interval: float, once: bool,
           emit: Callable[[str], None]) -> None:
    """Emit one event line now and then every `interval` seconds until the container stops.

    The cadence is kept against a monotonic clock (a slow read does not push later lines back)."""
    first = True
    deadline = time.monotonic()
    while True:
        try:
            status, pid, s = sandbox_stats(store, container_id)
        except UserError:
            if first:
                raise
            return                  # deleted: the stream ends as runc's does
        if status == "stopped":
            if once:                # `--stats` of a stopped container: zeros, as before
                emit(json.dumps(event(container_id, 0, None)))
            elif first:
                raise UserError("container not running")
            return
        emit(json.dumps(event(container_id, pid, s)))
        if once:
            return
        first = False
        deadline += interval
        delay = deadline - time.monotonic()
        if delay < 0:               # fell behind: carry on from now
            deadline, delay = time.monotonic(), 0
        time.sleep(delay)
