"""Timers and accounting: alarm, setitimer/getitimer, POSIX timers, getrusage, times,
priorities and scheduler queries.

Timers are entries in the kernel's deadline heap (the same one sleeping tasks
use); when one fires it generates its signal through the normal signal path.
ITIMER_REAL counts wall time; ITIMER_VIRTUAL and ITIMER_PROF would need the
application's CPU time and answer EINVAL-free but never fire (documented).
"""
from __future__ import annotations

import errno
import heapq
import os
import struct
import time as _time

from sentry import signals as sg
from sentry.errors import SyscallError
from sentry.syscalls.args import s32, u32
from sentry.syscalls.registry import Support, syscall
from sentry.syscalls.time import CLOCK_BOOTTIME, CLOCK_MONOTONIC, CLOCK_REALTIME, TIMESPEC, clock_ns

ITIMERVAL = struct.Struct("<qqqq")
ITIMERSPEC = struct.Struct("<qqqq")
ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF = 0, 1, 2
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID = 0, 1, 2, 4
TIMER_ABSTIME = 1


class Timer:
    """One armed timer: fires `signo` at its group (or thread), re-arms with `interval`."""

    def __init__(self, k, tg, signo: int, target_tid: int = 0, timer_id: int = -1, value: int = 0,
                 notify: int = SIGEV_SIGNAL) -> None:
        self.k = k
        self.tg = tg
        self.signo = signo
        self.target_tid = target_tid
        self.timer_id = timer_id
        self.value = value
        self.notify = notify
        self.deadline: float | None = None
        self.interval = 0.0
        self.overrun = 0
        self.pending_overrun = 0
        self.entry = None

    def arm(self, delay: float | None, interval: float) -> None:
        if self.entry is not None:
            self.entry[2] = None
            self.entry = None
        self.interval = interval
        if delay is None:
            self.deadline = None
            return
        self.deadline = _time.monotonic() + delay
        self.entry = [self.deadline, next(self.k._seq), self]
        heapq.heappush(self.k.timers, self.entry)

    def remaining(self) -> float:
        if self.deadline is None:
            return 0.0
        return max(0.0, self.deadline - _time.monotonic())

    # Called by the kernel's timer heap (like a Task, it is "woken").
    def fire(self) -> None:
        from sentry import process
        self.entry = None
        now = _time.monotonic()
        if self.interval > 0:
            missed = 0
            nxt = self.deadline + self.interval
            if nxt <= now:
                missed = int((now - nxt) / self.interval) + 1
                nxt += missed * self.interval
            self.overrun = missed
            self.deadline = nxt
            self.entry = [nxt, next(self.k._seq), self]
            heapq.heappush(self.k.timers, self.entry)
        else:
            self.deadline = None
        if self.tg.exiting or self.notify == SIGEV_NONE:
            return
        if self.timer_id >= 0:
            info = sg.siginfo(self.signo, sg.SI_TIMER, tid=self.timer_id, overrun=self.overrun, value=self.value)
        else:
            info = sg.siginfo(self.signo, sg.SI_KERNEL)
        if self.target_tid:
            t = self.k.tasks.get(self.target_tid)
            if t is not None and t.tg is self.tg:
                process.send_to_task(self.k, t, self.signo, info)
                return
        process.send_to_group(self.k, self.tg, self.signo, info)


def _itimers(tg) -> list:
    its = getattr(tg, "itimers", None)
    if its is None:
        its = tg.itimers = [None, None, None]
    return its


def _tv(sec_usec: tuple[int, int]) -> float:
    sec, usec = sec_usec
    if sec < 0 or not 0 <= usec < 1_000_000:
        raise SyscallError(errno.EINVAL)
    return sec + usec / 1e6


def _split_us(x: float) -> tuple[int, int]:
    us = int(round(x * 1e6))
    return us // 1_000_000, us % 1_000_000


@syscall("setitimer", Support.PARTIAL, "ITIMER_REAL fires SIGALRM; ITIMER_VIRTUAL/PROF are kept but never fire")
def setitimer(t, which, new, old):
    """setitimer(2)."""
    which = s32(which)
    if which not in (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF):
        raise SyscallError(errno.EINVAL)
    its = _itimers(t.tg)
    cur = its[which]
    if old:
        iv, rem = (cur.interval, cur.remaining()) if cur else (0.0, 0.0)
        t.mm.write_struct(old, ITIMERVAL, *_split_us(iv), *_split_us(rem))
    if new:
        isec, iusec, vsec, vusec = t.mm.read_struct(new, ITIMERVAL)
        interval, value = _tv((isec, iusec)), _tv((vsec, vusec))
        if cur is None:
            sig = {ITIMER_REAL: sg.SIGALRM, ITIMER_VIRTUAL: sg.SIGVTALRM, ITIMER_PROF: sg.SIGPROF}[which]
            cur = its[which] = Timer(t.kernel, t.tg, sig)
        if which == ITIMER_REAL:
            cur.arm(value if value > 0 else None, interval)
        else:
            cur.interval, cur.deadline = interval, None
    return 0


@syscall("getitimer")
def getitimer(t, which, cur_addr):
    """getitimer(2)."""
    which = s32(which)
    if which not in (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF):
        raise SyscallError(errno.EINVAL)
    cur = _itimers(t.tg)[which]
    iv, rem = (cur.interval, cur.remaining()) if cur else (0.0, 0.0)
    t.mm.write_struct(cur_addr, ITIMERVAL, *_split_us(iv), *_split_us(rem))
    return 0


@syscall("alarm")
def alarm(t, seconds):
    """alarm(2): returns the seconds left on the previous alarm (rounded up)."""
    its = _itimers(t.tg)
    cur = its[ITIMER_REAL]
    left = cur.remaining() if cur else 0.0
    if cur is None:
        cur = its[ITIMER_REAL] = Timer(t.kernel, t.tg, sg.SIGALRM)
    secs = u32(seconds)
    cur.arm(float(secs) if secs else None, 0.0)
    if left <= 0:
        return 0
    return max(1, int(left + 0.5))


# -- POSIX timers --------------------------------------------------------------------

SIGEVENT = struct.Struct("<Qii i")   # sigev_value, sigev_signo, sigev_notify, sigev_notify_thread_id


def _timers(tg) -> dict:
    ts = getattr(tg, "posix_timers", None)
    if ts is None:
        ts = tg.posix_timers = {}
    return ts


@syscall("timer_create", Support.PARTIAL, "SIGEV_SIGNAL, SIGEV_THREAD_ID, SIGEV_NONE on REALTIME/MONOTONIC/BOOTTIME")
def timer_create(t, clock, sevp, timerid):
    """timer_create(2)."""
    clock = s32(clock)
    if clock not in (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, 8, 9):
        raise SyscallError(errno.EINVAL if clock not in (2, 3) else errno.ENOTSUP)
    ts = _timers(t.tg)
    if sevp:
        value, signo, notify, tid = t.mm.read_struct(sevp, SIGEVENT)
    else:
        value, signo, notify, tid = 0, sg.SIGALRM, SIGEV_SIGNAL, 0
    if notify & ~SIGEV_THREAD_ID not in (SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD):
        raise SyscallError(errno.EINVAL)
    if notify != SIGEV_NONE and not 1 <= signo <= 64:
        raise SyscallError(errno.EINVAL)
    target = 0
    if notify & SIGEV_THREAD_ID:
        task = t.kernel.tasks.get(tid)
        if task is None or task.tg is not t.tg:
            raise SyscallError(errno.EINVAL)
        target = tid
    tid_new = 0
    while tid_new in ts:
        tid_new += 1
    if not sevp:
        value = tid_new
    ts[tid_new] = Timer(t.kernel, t.tg, signo, target, tid_new, value, notify & ~SIGEV_THREAD_ID)
    ts[tid_new].clock = clock
    t.mm.write_u32(timerid, tid_new)
    return 0


def _get_timer(t, timerid: int) -> Timer:
    tm = _timers(t.tg).get(s32(timerid))
    if tm is None:
        raise SyscallError(errno.EINVAL)
    return tm


def _ts(ns: int) -> tuple[int, int]:
    return ns // 1_000_000_000, ns % 1_000_000_000


@syscall("timer_settime")
def timer_settime(t, timerid, flags, new, old):
    """timer_settime(2)."""
    tm = _get_timer(t, timerid)
    isec, insec, vsec, vnsec = t.mm.read_struct(new, ITIMERSPEC)
    for sec, nsec in ((isec, insec), (vsec, vnsec)):
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            raise SyscallError(errno.EINVAL)
    if old:
        t.mm.write_struct(old, ITIMERSPEC, *_ts(int(tm.interval * 1e9)), *_ts(int(tm.remaining() * 1e9)))
    interval = isec + insec / 1e9
    value_ns = vsec * 1_000_000_000 + vnsec
    if value_ns == 0:
        tm.arm(None, interval)
        return 0
    if u32(flags) & TIMER_ABSTIME:
        delay = (value_ns - clock_ns(t, tm.clock)) / 1e9
    else:
        delay = value_ns / 1e9
    tm.arm(max(delay, 0.0), interval)
    return 0


@syscall("timer_gettime")
def timer_gettime(t, timerid, cur):
    """timer_gettime(2)."""
    tm = _get_timer(t, timerid)
    t.mm.write_struct(cur, ITIMERSPEC, *_ts(int(tm.interval * 1e9)), *_ts(int(tm.remaining() * 1e9)))
    return 0


@syscall("timer_getoverrun")
def timer_getoverrun(t, timerid):
    """timer_getoverrun(2)."""
    return _get_timer(t, timerid).overrun


@syscall("timer_delete")
def timer_delete(t, timerid):
    """timer_delete(2)."""
    tm = _get_timer(t, timerid)
    tm.arm(None, 0.0)
    del _timers(t.tg)[s32(timerid)]
    return 0


# -- accounting ------------------------------------------------------------------------

RUSAGE = struct.Struct("<qqqq14q")
RUSAGE_SELF, RUSAGE_CHILDREN, RUSAGE_THREAD = 0, -1, 1


def _cpu(t, thread: bool) -> int:
    """CPU ns of this thread, or of the whole process (live threads plus those that exited)."""
    from sentry.syscalls.time import process_cpu_ns
    return process_cpu_ns(t)


@syscall("getrusage", Support.PARTIAL, "user time is the stub's CPU time; system time and counters are 0")
def getrusage(t, who, usage):
    """getrusage(2)."""
    who = s32(who)
    if who == RUSAGE_SELF:
        ns, rss = _cpu(t, False), max(getattr(t.tg, "maxrss_kb", 0), t.mm.resident_bytes() // 1024)
    elif who == RUSAGE_THREAD:
        ns, rss = _cpu(t, True), t.mm.resident_bytes() // 1024
    elif who == RUSAGE_CHILDREN:
        ns, rss = t.tg.cutime, getattr(t.tg, "children_maxrss_kb", 0)
    else:
        raise SyscallError(errno.EINVAL)
    us = ns // 1000
    t.mm.write(usage, RUSAGE.pack(us // 1_000_000, us % 1_000_000, 0, 0, rss, *([0] * 13)))
    return 0


@syscall("times")
def times(t, buf):
    """times(2): clock ticks (100 Hz) since boot; CPU times in ticks."""
    ticks = int(_time.monotonic() * 100)
    if buf:
        ut = _cpu(t, False) // 10_000_000
        t.mm.write(buf, struct.pack("<qqqq", ut, 0, t.tg.cutime // 10_000_000, 0))
    ticks &= 0x7FFFFFFFFFFFFFFF
    return ticks


@syscall("getpriority")
def getpriority(t, which, who):
    """getpriority(2): returns 20 - nice, as the raw syscall does."""
    which, who = s32(which), s32(who)
    if which not in (0, 1, 2):
        raise SyscallError(errno.EINVAL)
    if which == 0 and who not in (0,) and who not in t.kernel.thread_groups:
        raise SyscallError(errno.ESRCH)
    return 20 - getattr(t.tg, "nice", 0)


@syscall("setpriority")
def setpriority(t, which, who, prio):
    """setpriority(2): kept per process; lowering nice needs root (EACCES)."""
    which, who, prio = s32(which), s32(who), s32(prio)
    if which not in (0, 1, 2):
        raise SyscallError(errno.EINVAL)
    tg = t.tg if who == 0 else t.kernel.thread_groups.get(who)
    if tg is None:
        raise SyscallError(errno.ESRCH)
    prio = max(-20, min(19, prio))
    if prio < getattr(tg, "nice", 0) and t.tg.creds.euid != 0:
        raise SyscallError(errno.EACCES)
    tg.nice = prio
    return 0


@syscall("sched_getscheduler")
def sched_getscheduler(t, pid):
    """sched_getscheduler(2): everything runs SCHED_OTHER."""
    pid = s32(pid)
    if pid < 0:
        raise SyscallError(errno.EINVAL)
    if pid and pid not in t.kernel.tasks:
        raise SyscallError(errno.ESRCH)
    return 0


@syscall("sched_getparam")
def sched_getparam(t, pid, param):
    """sched_getparam(2)."""
    pid = s32(pid)
    if pid < 0 or not param:
        raise SyscallError(errno.EINVAL)
    if pid and pid not in t.kernel.tasks:
        raise SyscallError(errno.ESRCH)
    t.mm.write_u32(param, 0)
    return 0


@syscall("sched_get_priority_max")
def sched_get_priority_max(t, policy):
    policy = s32(policy)
    if policy in (1, 2):
        return 99
    if policy in (0, 3, 5, 6):
        return 0
    raise SyscallError(errno.EINVAL)


@syscall("sched_get_priority_min")
def sched_get_priority_min(t, policy):
    policy = s32(policy)
    if policy in (1, 2):
        return 1
    if policy in (0, 3, 5, 6):
        return 0
    raise SyscallError(errno.EINVAL)
