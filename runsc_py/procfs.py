"""Facts about host processes, read from /proc.

A recorded pid alone cannot tell whether a container is alive: the Sentry
may have exited and its pid been reused.  We record the process's start time
(field 22 of /proc/PID/stat) beside its pid and call the pid alive only if
both still match and it is not a zombie (an exited Sentry waiting for the
shim to reap it is, for OCI purposes, stopped).
"""
from __future__ import annotations

import os
import time


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is parenthesised and may contain spaces.
    rparen = data.rfind(")")
    if rparen < 0:
        return None
    return [data[:rparen + 1]] + data[rparen + 2:].split()   # [pid+comm, state, ppid, pgrp, session, ...]


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it does not exist."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 21:
        return None
    return int(fields[20])


def is_alive(pid: int, started: int | None = None) -> bool:
    """True if `pid` runs (not a zombie) and, when given, started at `started`."""
    if pid <= 0:
        return False
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 21:
        return False
    if fields[1] in ("Z", "X"):
        return False
    return started is None or int(fields[20]) == started


def wait_gone(pid: int, started: int | None, timeout: float) -> bool:
    """Poll until `pid` is no longer alive; True if it went within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while is_alive(pid, started):
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def descendants(pid: int, session: bool = False) -> list[int]:
    """`pid` and every process below it, parents first.

    With `session`, also every process in the session `pid` leads: the
    detached Sentry is a session leader, so its helpers stay findable even
    after they were re-parented away from it.
    """
    children: dict[int, list[int]] = {}
    in_session: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is None or len(fields) < 5 or fields[1] in ("Z", "X"):
            continue
        children.setdefault(int(fields[2]), []).append(int(name))
        if session and int(fields[4]) == pid:
            in_session.append(int(name))
    out: list[int] = []
    todo = [pid] + sorted(in_session)
    while todo:
        p = todo.pop(0)
        if p in out:
            continue
        out.append(p)
        todo.extend(sorted(children.get(p, [])))
    return out


def kill_tree(pid: int, started: int | None, sig: int, timeout: float) -> bool:
    """Send `sig` to `pid` and everything below it or in its session until all are gone.

    True if they all went within `timeout` seconds.  The tree is re-read on
    every round, since a process may fork while we kill.
    """
    deadline = time.monotonic() + timeout
    seen: dict[int, int | None] = {}       # pid -> start time: never signal a reused pid
    delay = 0.002
    while True:
        alive = is_alive(pid, started)
        # Once the leader is dead (gone, or a zombie nobody reaps) its orphans still
        # carry its session id -- unless the pid was reused: then leave that alone.
        if alive or start_time(pid) in (None, started):
            for p in descendants(pid, session=True):
                if p != pid and p not in seen:
                    seen[p] = start_time(p)
        targets = ({pid} if alive else set()) | {p for p, st in seen.items() if is_alive(p, st)}
        if not targets:
            return True
        for p in targets:
            try:
                os.kill(p, sig)
            except OSError:
                pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
