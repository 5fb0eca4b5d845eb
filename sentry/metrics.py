"""What a running sandbox reports about itself: the control channel's "stats" request.

`runsc-py metrics-server` (Prometheus text), `runsc-py events` (runc's stats
events) and `runsc-py debug` read this from outside, without logging in: the
Sentry answers from its own bookkeeping, so the numbers are the sandbox's
view (its processes, its fds, its syscalls), not the host's.  The host's view
of the same sandbox (CPU and page faults of the Sentry, Gofer and stub
processes) is added by the caller from /proc, which the confined Sentry
cannot read.

Costs: the counters are kept all the time (one list increment per syscall in
the task loop, one dict increment per Gofer request); everything else is
computed when asked (a walk of the address spaces, SEEK_DATA over the
MemoryFile ranges they map).
"""
from __future__ import annotations

import time

# Memory kinds, after gVisor's usage.MemoryKind names: where MemoryFile pages (and tmpfs data,
# which lives on the Sentry's heap, see sentry/vfs/tmpfs.py) are used.
KINDS = ("anonymous", "mapped", "system", "tmpfs")


def memory(kernel) -> dict[str, int]:
    """Bytes in use by kind, plus "total" (the memfd's blocks, what the host charges)."""
    from sentry.mm.filemap import FileMapping
    memfile = kernel.memfile
    system: set[int] = set()
    vdso = kernel.vdso
    if vdso is not None and getattr(vdso, "available", False):
        system = {id(vdso.vvar), id(vdso.text)}
    seen: set[int] = set()
    out = dict.fromkeys(KINDS, 0)
    for mm in {id(tg.mm): tg.mm for tg in kernel.thread_groups.values() if tg.mm is not None}.values():
        for v in mm.vmas:
            b = v.backing
            if v.shared:
                if id(b) in seen:
                    continue
                seen.add(id(b))
                owner = getattr(b.on_release, "__self__", None)
                kind = "system" if id(b) in system else "mapped" if isinstance(owner, FileMapping) \
                    else "anonymous"
                out[kind] += memfile.committed(b.offset, b.length)
            else:
                out["anonymous"] += memfile.committed(v.offset, v.end - v.start)
    for m in kernel.vfs.mounts:
        used = getattr(m.fs, "used_pages", None)
        if isinstance(used, int):
            out["tmpfs"] += used * 4096
    out["total"] = memfile.used()
    return out


def syscalls(kernel) -> dict[str, int]:
    """Syscalls answered since start, by name (only those made at least once)."""
    from sentry.syscalls import TABLE
    out: dict[str, int] = {}
    counts = kernel.syscall_counts
    for nr, n in enumerate(counts):
        if n:
            entry = TABLE[nr] if nr < len(TABLE) else None
            name = entry.name if entry is not None else "unknown"
            out[name] = out.get(name, 0) + n
    return out


def gofer_requests(kernel) -> dict[str, int]:
    """Requests sent to the Gofers, by protocol op name."""
    from gofer.protocol import Op
    out: dict[str, int] = {}
    clients = {id(c): c for c in (getattr(m.fs, "client", None) for m in kernel.vfs.mounts) if c is not None}
    for c in clients.values():
        for op, n in getattr(c, "requests", {}).items():
            try:
                name = Op(op).name.lower()
            except ValueError:
                name = str(op)
            out[name] = out.get(name, 0) + n
    return out


def processes(kernel, container: str | None = None) -> list[dict]:
    """One entry per live thread group: pid, comm, threads, fds, CPU (ns), resident bytes.
    `container`: only that pod member's processes (sentry/pod.py), when it is one."""
    from sentry import pod
    member = pod.members(kernel).get(container) if container else None
    only = {id(tg) for tg in pod.processes(kernel, member)} if member is not None else None
    out = []
    for tg in sorted(kernel.thread_groups.values(), key=lambda g: g.tgid):
        if tg.zombie or (only is not None and id(tg) not in only):
            continue
        mm = tg.mm
        host = mm is not None and getattr(mm, "space", None) is not None
        out.append({
            "pid": tg.tgid,
            "comm": tg.comm.decode("utf-8", "replace"),
            "threads": sum(1 for t in kernel.tasks.values() if t.tg is tg),
            "fds": len(tg.fds.files),
            "cpu_ns": int(tg.utime) + (mm.space.cpu_time_ns() if host else 0),
            "rss": mm.resident_bytes() if mm is not None else 0,
        })
    return out


def snapshot(kernel, container: str | None = None) -> dict:
    """Everything above in one map (msgpack-able), with the Sentry's own CPU time.  For a pod member
    (`container`), its processes, fds and their CPU; memory, syscalls and Gofer requests stay the pod's."""
    procs = processes(kernel, container)
    return {
        "time": time.time(),
        "start_time": kernel.start_time,
        "sentry_cpu_ns": time.process_time_ns(),
        "app_cpu_ns": sum(p["cpu_ns"] for p in procs),
        "memory": memory(kernel),
        "memory_limit": kernel.memory_limit or 0,
        "pids_limit": kernel.pids_limit or 0,
        "syscalls": syscalls(kernel),
        "gofer_requests": gofer_requests(kernel),
        "faults": kernel.fault_count,
        "processes": procs,
        "threads": sum(p["threads"] for p in procs),
        "fds": sum(p["fds"] for p in procs),
    }
