"""RLIMIT_CPU: SIGXCPU at the soft limit, once a second after it, SIGKILL at the hard limit.

Linux checks a process's CPU time against RLIMIT_CPU from the scheduler tick
(kernel/time/posix-cpu-timers.c, check_process_timers): at the hard limit it sends SIGKILL
and does nothing more; at the soft limit it sends SIGXCPU and raises the soft limit by one
second (visible to getrlimit), so the signal repeats every CPU second until the hard limit.
Both are sent as the kernel's own (SEND_SIG_PRIV: si_code SI_KERNEL), which even the
container's init cannot ignore for SIGKILL.

The Sentry has no tick: a sampler entry in the kernel's deadline heap looks at the CPU clocks
(the platform's, through sentry.syscalls.time.process_cpu_ns) every SAMPLE_S seconds, and is in
the heap only while some process has a finite soft limit -- a sandbox that sets none (the
default) pays nothing.  The granularity is SAMPLE_S of wall time, coarser than a tick; what the
application sees (the signals, the raised soft limit) is Linux's.
"""
from __future__ import annotations

import heapq
import time

from sentry import signals as sg
from sentry.process import send_to_group
from sentry.syscalls.time import process_cpu_ns

RLIMIT_CPU = 0
RLIM_INFINITY = (1 << 64) - 1
NSEC_PER_SEC = 1_000_000_000
SAMPLE_S = 0.05


class CpuLimits:
    def __init__(self, kernel) -> None:
        self.k = kernel
        self.entry: list | None = None        # its deadline-heap entry while armed

    def changed(self) -> None:
        """An RLIMIT_CPU was set (setrlimit, prlimit, a new process): start sampling if needed."""
        if self.entry is None and self._any_limited():
            self._arm()

    def _any_limited(self) -> bool:
        return any(tg.rlimits[RLIMIT_CPU][0] != RLIM_INFINITY and not tg.exiting
                   for tg in self.k.thread_groups.values())

    def _arm(self) -> None:
        self.entry = [time.monotonic() + SAMPLE_S, next(self.k._seq), self]
        heapq.heappush(self.k.timers, self.entry)

    def fire(self) -> None:
        """The sampler's turn (called by the task loop when its deadline passes)."""
        self.entry = None
        for tg in list(self.k.thread_groups.values()):
            soft, hard = tg.rlimits[RLIMIT_CPU]
            if soft == RLIM_INFINITY or tg.exiting or not tg.tasks:
                continue
            task = next((t for t in tg.tasks if not t.exited), None)
            if task is None:
                continue
            used = process_cpu_ns(task)
            if hard != RLIM_INFINITY and used >= hard * NSEC_PER_SEC:
                send_to_group(self.k, tg, sg.SIGKILL, sg.siginfo(sg.SIGKILL, sg.SI_KERNEL), force=True)
                continue
            if used >= soft * NSEC_PER_SEC:
                send_to_group(self.k, tg, sg.SIGXCPU, sg.siginfo(sg.SIGXCPU, sg.SI_KERNEL))
                if soft < hard:
                    tg.rlimits[RLIMIT_CPU][0] = soft + 1
        if self._any_limited():
            self._arm()
