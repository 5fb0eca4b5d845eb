"""`runsc-py events`: resource statistics of a container, in runc's event shape.

runc reads cgroup files; a runsc-py container's processes are the Sentry,
its Gofer and the ptrace stubs, so we sum what the host knows about that
process tree from /proc: CPU time (utime/stime), resident memory, and the
number of host processes.  These are the sandbox's costs on the host, which
is what an engine's `docker stats` wants to see; per-application
accounting inside the Sentry would need a control channel.
"""
from __future__ import annotations

import os
from typing import Any

from runsc_py import procfs

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _proc_stat(pid: int) -> tuple[int, int, int] | None:
    """(user ns, kernel ns, rss bytes) of one process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is field 3 (state): utime=14, stime=15, rss=24 in proc(5) numbering.
    return int(fields[11]) * _TICK_NS, int(fields[12]) * _TICK_NS, int(fields[21]) * _PAGE


def stats(container_id: str, pid: int) -> dict[str, Any]:
    """A runc-shaped `{"type": "stats", ...}` event for the process tree under `pid`."""
    user = kernel = rss = count = 0
    for p in procfs.descendants(pid, session=True) if pid else []:
        got = _proc_stat(p)
        if got is None:
            continue
        user, kernel, rss, count = user + got[0], kernel + got[1], rss + got[2], count + 1
    return {
        "type": "stats",
        "id": container_id,
        "data": {
            "cpu": {"usage": {"total": user + kernel, "kernel": kernel, "user": user}},
            "memory": {"usage": {"usage": rss}},
            "pids": {"current": count},
        },
    }
