"""Where the sandbox's host threads run, and which CPUs the application is told it has.

On the ptrace platform every application syscall is a round trip between
a stub thread and the Sentry.  When the two sit on different CPUs, each
stop wakes the other CPU: measured on this project's 2-vCPU VM, a trapped
getpid costs ~5 µs with both on one CPU and ~75 µs across an idle one
(bench/getpid.py), and a busybox loop of 300 `ls` runs in 0.85 s instead
of 1.6 s.  So by default (`--cpu-pin=auto`) the sandbox -- the Sentry, its
Gofers and its stubs, which inherit the mask -- is pinned to the one CPU
the Sentry was started on.  The cost: the application's threads no longer
run in parallel with each other; `--cpu-pin=none` keeps the host's mask
for CPU-bound, multi-threaded workloads.

Either way the application sees the CPUs the sandbox was *allowed*
(sched_getaffinity, /proc/cpuinfo, /proc/self/status, /sys/devices/system/cpu),
so `nproc` and thread pools size themselves as they would under runc.
"""
from __future__ import annotations

import os

_allowed: frozenset[int] | None = None


def sandbox_cpus() -> frozenset[int]:
    """The CPUs the application is told it may use (the host mask before pinning)."""
    if _allowed is not None:
        return _allowed
    return frozenset(os.sched_getaffinity(0))


def current_cpu() -> int | None:
    """The CPU this thread last ran on (/proc/self/stat field 39)."""
    try:
        with open("/proc/thread-self/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def pin(mode: str) -> int | None:
    """Apply --cpu-pin (`auto` or `none`) to this thread and what it will start; the CPU chosen."""
    global _allowed
    allowed = frozenset(os.sched_getaffinity(0))
    _allowed = allowed
    if mode != "auto" or len(allowed) < 2:
        return None
    cpu = current_cpu()
    if cpu not in allowed:
        cpu = min(allowed)
    os.sched_setaffinity(0, {cpu})
    return cpu
