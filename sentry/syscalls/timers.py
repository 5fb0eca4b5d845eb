"""Timers and accounting: alarm, setitimer/getitimer, POSIX timers, getrusage, times,
priorities and scheduler queries.

Timers are entries in the kernel's deadline heap (the same one sleeping tasks use), in
CLOCK_MONOTONIC nanoseconds read through sentry/syscalls/args.py (checked and clamped to
KTIME_MAX as Linux does).  They follow Linux's rules for what an expiry costs, so that no
timer, however short its interval, can keep the Sentry busy:

* an expiry queues the timer's signal once; an interval timer is re-armed only when that
  signal is dequeued (delivered, or taken by sigtimedwait), forwarded past "now", and the
  periods missed meanwhile are the overrun count (timer_getoverrun, si_overrun) --
  posixtimer_deliver_signal, and dequeue_signal's re-arm of ITIMER_REAL;
* a signal ignored at expiry is not queued at all: ITIMER_REAL then stops (it_real_fn
  returns HRTIMER_NORESTART), a POSIX timer is parked until the signal is unignored, and its
  signal is then queued with the overrun of the whole time (posixtimer_sig_unignore).
ITIMER_VIRTUAL and ITIMER_PROF would need the application's CPU time: they are kept and
reported but never fire (documented in the table).
"""
from __future__ import annotations

import errno
import heapq
import os
import struct
import time as _time

from sentry import signals as sg
from sentry.errors import SyscallError
from sentry.syscalls.args import (KTIME_MAX, NSEC_PER_SEC, TIMESPEC_PAIR, add_safe, read_itimerspec, read_itimerval,
                                  s32, split_ns, u32)
from sentry.syscalls.registry import Support, syscall
from sentry.syscalls.time import CLOCK_BOOTTIME, CLOCK_MONOTONIC, CLOCK_REALTIME, TIMESPEC, clock_ns

ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF = 0, 1, 2
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID = 0, 1, 2, 4
TIMER_ABSTIME = 1
INT_MAX = 0x7FFFFFFF
MIN_REARM_NS = 200_000               # see Timer.dequeued
_OVERRUN_AT = 20                      # offset of si_overrun in a SI_TIMER siginfo


class TimerSiginfo(bytes):
    """A timer's queued siginfo: dequeuing it (`dequeued`) re-arms the timer that queued it."""

    def dequeued(self) -> bytes:
        return self.timer.dequeued(self)


class Timer:
    """ITIMER_REAL or a POSIX timer of one process: fires `signo` at the group (or one thread)."""

    def __init__(self, k, tg, signo: int, target_tid: int = 0, timer_id: int = -1, value: int = 0,
                 notify: int = SIGEV_SIGNAL, clock: int = CLOCK_MONOTONIC) -> None:
        self.k = k
        self.tg = tg
        self.signo = signo
        self.target_tid = target_tid
        self.timer_id = timer_id          # -1: ITIMER_REAL (siginfo SI_KERNEL, no overrun)
        self.value = value
        self.notify = notify
        self.clock = clock
        self.expires: int | None = None   # monotonic ns of the next (or last) expiry; None: disarmed
        self.interval = 0                 # ns
        self.entry = None                 # its heap entry while armed and not yet expired
        self.sig_pending = False          # its signal is queued and not yet dequeued
        self.parked = False               # expired while its signal was ignored (POSIX timers)
        self.overrun = -1                 # it_overrun: periods forwarded since the last signal, minus one
        self.overrun_last = 0             # what timer_getoverrun and si_overrun report
        self.seq = 0                      # bumped by every (re)setting: an older signal re-arms nothing

    # -- setting ---------------------------------------------------------------------

    def arm(self, value_ns: int | None, interval_ns: int) -> None:
        """Start (value: ns from now) or stop (None) the timer, as timer_settime/setitimer do."""
        self._cancel()
        self.seq += 1
        self.sig_pending = self.parked = False
        self.overrun, self.overrun_last = -1, 0
        if value_ns is None:
            self.expires, self.interval = None, 0
            return
        self.interval = interval_ns
        self.expires = add_safe(_time.monotonic_ns(), value_ns)
        if self.notify != SIGEV_NONE:
            self._queue_expiry()

    def _cancel(self) -> None:
        if self.entry is not None:
            self.entry[2] = None          # a cancelled entry stays in the heap, ignored
            self.entry = None

    def _queue_expiry(self, floor: int = 0) -> None:
        self.entry = [max(self.expires, floor) / 1e9, next(self.k._seq), self]
        heapq.heappush(self.k.timers, self.entry)

    def _forward(self, now: int) -> int:
        """hrtimer_forward: move `expires` past `now` by whole intervals; return how many."""
        if self.expires is None or now < self.expires or self.interval <= 0:
            return 0
        n = (now - self.expires) // self.interval + 1
        self.expires = min(self.expires + n * self.interval, KTIME_MAX)
        return n

    def remaining(self) -> int:
        """ns until the next expiry as timer_gettime/getitimer report it (0: disarmed)."""
        if self.expires is None:
            return 0
        now = _time.monotonic_ns()
        waiting = self.sig_pending or self.parked or self.notify == SIGEV_NONE
        if self.interval and waiting:
            self.overrun += self._forward(now)
        elif self.entry is None and self.notify != SIGEV_NONE:
            return 0                      # a one-shot timer that fired, or ITIMER_REAL stopped
        left = self.expires - now
        if left <= 0:
            return 0 if self.notify == SIGEV_NONE else 1
        return left

    # -- expiry and signal -------------------------------------------------------------

    def fire(self) -> None:
        """The heap reached `expires` (the kernel calls this, as it wakes a sleeping task)."""
        self.entry = None
        if self.tg.exiting:
            return
        if self._ignored():
            if self.timer_id >= 0:
                self.parked = True        # POSIX: until the signal is unignored
            elif self.interval == 0:
                self.expires = None
            return                        # ITIMER_REAL: stops (the interval is still reported)
        self._send()

    def _ignored(self) -> bool:
        tg = self.tg
        if not sg.is_ignored(tg, self.signo):
            return False
        bit = sg.bit(self.signo)           # a blocked signal is queued even if ignored (sig_ignored)
        return not all((t.sigmask | (t.saved_sigmask or 0)) & bit for t in tg.tasks if not t.exited)

    def _send(self) -> None:
        from sentry import process
        if self.timer_id >= 0:
            raw = sg.siginfo(self.signo, sg.SI_TIMER, tid=self.timer_id, overrun=0, value=self.value)
        else:
            raw = sg.siginfo(self.signo, sg.SI_KERNEL)
        info = TimerSiginfo(raw)
        info.timer, info.seq = self, self.seq
        self.sig_pending = True
        target = self.k.tasks.get(self.target_tid) if self.target_tid else None
        if target is not None and target.tg is not self.tg:
            target = None
        pend = target.pending if target is not None else self.tg.shared_pending
        if self.signo < 32 and self.signo in pend:
            pend[self.signo].append(info)  # behind a pending kill(): a timer's sigqueue is its own
            return
        if target is not None:
            process.send_to_task(self.k, target, self.signo, info)
        else:
            process.send_to_group(self.k, self.tg, self.signo, info)
        if not any(x is info for x in pend.get(self.signo, ())):
            self.sig_pending = False      # dropped at generation after all
            if self.timer_id >= 0:
                self.parked = True

    def dequeued(self, info: TimerSiginfo) -> bytes:
        """Its signal left the pending set: re-arm an interval timer past now, count the overrun
        and report it in the siginfo (posixtimer_deliver_signal)."""
        if info.seq != self.seq or not self.sig_pending:
            return bytes(info)            # from an older setting: re-arms nothing
        self.sig_pending = False
        if not self.interval or self.expires is None or self.tg.exiting:
            return bytes(info)
        now = _time.monotonic_ns()
        self.overrun += self._forward(now)
        self.overrun_last, self.overrun = max(self.overrun, 0), -1
        # The next signal comes no sooner than one signal round trip of the Sentry from now, so
        # the task runs some of its own code between two handlers (natively a round trip is
        # about a microsecond; here it is tens).  Periods missed meanwhile still count as overrun.
        self._queue_expiry(now + MIN_REARM_NS)
        if self.timer_id < 0:
            return bytes(info)
        return info[:_OVERRUN_AT] + struct.pack("<i", min(self.overrun_last, INT_MAX)) + info[_OVERRUN_AT + 4:]

    def discarded(self, info: TimerSiginfo) -> None:
        """Its queued signal was flushed (the signal became ignored): park as at an ignored expiry."""
        if info.seq == self.seq and self.sig_pending:
            self.sig_pending = False
            if self.timer_id >= 0:
                self.parked = True

    def unignored(self) -> None:
        """Its signal is no longer ignored: a parked POSIX timer queues it now."""
        if self.parked and not self.tg.exiting:
            self.parked = False
            self._send()


def signal_unignored(tg, sig: int) -> None:
    """rt_sigaction made `sig` not ignored: POSIX timers parked on it queue their signal."""
    for tm in list(tg.posix_timers.values()):
        if tm.signo == sig and tm.parked:
            tm.unignored()


def _tv_pair(interval_ns: int, value_ns: int) -> tuple[int, int, int, int]:
    """An itimerval from ns, microseconds truncated as Linux's put_itimerval does."""
    return (interval_ns // NSEC_PER_SEC, interval_ns % NSEC_PER_SEC // 1000,
            value_ns // NSEC_PER_SEC, value_ns % NSEC_PER_SEC // 1000)


def _real_remaining(tm: Timer | None) -> int:
    """ITIMER_REAL's time left: at least 1 us while armed (itimer_get_remtime)."""
    if tm is None or tm.entry is None:
        return 0
    return max(tm.remaining(), 1000)


@syscall("setitimer", Support.PARTIAL, "ITIMER_REAL fires SIGALRM; ITIMER_VIRTUAL/PROF are kept but never fire")
def setitimer(t, which, new, old):
    """setitimer(2): a NULL new value disarms the timer, as Linux does since 2.6.x (with a warning)."""
    which = s32(which)
    if which not in (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF):
        raise SyscallError(errno.EINVAL)
    interval, value = read_itimerval(t, new) if new else (0, 0)
    its = t.tg.itimers
    cur = its[which]
    if old:
        if which == ITIMER_REAL:
            t.mm.write_struct(old, TIMESPEC_PAIR, *_tv_pair(cur.interval if cur else 0, _real_remaining(cur)))
        else:
            t.mm.write_struct(old, TIMESPEC_PAIR, *_tv_pair(cur.interval if cur else 0, 0))
    if cur is None:
        sig = {ITIMER_REAL: sg.SIGALRM, ITIMER_VIRTUAL: sg.SIGVTALRM, ITIMER_PROF: sg.SIGPROF}[which]
        cur = its[which] = Timer(t.kernel, t.tg, sig)
    if which == ITIMER_REAL:
        cur.arm(value if value > 0 else None, interval)
    else:
        cur.interval, cur.expires = (interval if value else 0), None
    return 0


@syscall("getitimer")
def getitimer(t, which, cur_addr):
    """getitimer(2)."""
    which = s32(which)
    if which not in (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF):
        raise SyscallError(errno.EINVAL)
    cur = t.tg.itimers[which]
    value = _real_remaining(cur) if which == ITIMER_REAL else 0
    t.mm.write_struct(cur_addr, TIMESPEC_PAIR, *_tv_pair(cur.interval if cur else 0, value))
    return 0


@syscall("alarm")
def alarm(t, seconds):
    """alarm(2): returns the seconds left on the previous alarm (rounded to the nearest)."""
    its = t.tg.itimers
    cur = its[ITIMER_REAL]
    left = _real_remaining(cur)
    if cur is None:
        cur = its[ITIMER_REAL] = Timer(t.kernel, t.tg, sg.SIGALRM)
    secs = u32(seconds)
    cur.arm(secs * NSEC_PER_SEC if secs else None, 0)
    sec, usec = left // NSEC_PER_SEC, left % NSEC_PER_SEC // 1000
    if (not sec and usec) or usec >= 500000:
        sec += 1
    return sec


# -- POSIX timers --------------------------------------------------------------------

SIGEVENT = struct.Struct("<Qii i")   # sigev_value, sigev_signo, sigev_notify, sigev_notify_thread_id


@syscall("timer_create", Support.PARTIAL, "SIGEV_SIGNAL, SIGEV_THREAD_ID, SIGEV_NONE on REALTIME/MONOTONIC/BOOTTIME")
def timer_create(t, clock, sevp, timerid):
    """timer_create(2)."""
    clock = s32(clock)
    if clock not in (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, 8, 9):
        raise SyscallError(errno.EINVAL if clock not in (2, 3) else errno.ENOTSUP)
    ts = t.tg.posix_timers
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
    t.mm.write_u32(timerid, tid_new)
    ts[tid_new] = Timer(t.kernel, t.tg, signo, target, tid_new, value, notify & ~SIGEV_THREAD_ID, clock)
    return 0


def _get_timer(t, timerid: int) -> Timer:
    tm = t.tg.posix_timers.get(s32(timerid))
    if tm is None:
        raise SyscallError(errno.EINVAL)
    return tm


def _write_itimerspec(t, addr: int, tm: Timer) -> None:
    value = tm.remaining()
    t.mm.write_struct(addr, TIMESPEC_PAIR, *split_ns(tm.interval), *split_ns(value))


@syscall("timer_settime")
def timer_settime(t, timerid, flags, new, old):
    """timer_settime(2)."""
    tm = _get_timer(t, timerid)
    interval, value = read_itimerspec(t, new)
    if old:
        _write_itimerspec(t, old, tm)
    if value == 0:
        tm.arm(None, 0)
        return 0
    if u32(flags) & TIMER_ABSTIME:
        value = max(value - clock_ns(t, tm.clock), 0)
    tm.arm(value, interval)
    return 0


@syscall("timer_gettime")
def timer_gettime(t, timerid, cur):
    """timer_gettime(2)."""
    _write_itimerspec(t, cur, _get_timer(t, timerid))
    return 0


@syscall("timer_getoverrun")
def timer_getoverrun(t, timerid):
    """timer_getoverrun(2): the periods missed before the last signal was taken (at most INT_MAX)."""
    return min(_get_timer(t, timerid).overrun_last, INT_MAX)


@syscall("timer_delete")
def timer_delete(t, timerid):
    """timer_delete(2)."""
    tm = _get_timer(t, timerid)
    tm.arm(None, 0)
    del t.tg.posix_timers[s32(timerid)]
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
        ns, rss = _cpu(t, False), max(t.tg.maxrss_kb, t.mm.resident_bytes() // 1024)
    elif who == RUSAGE_THREAD:
        ns, rss = _cpu(t, True), t.mm.resident_bytes() // 1024
    elif who == RUSAGE_CHILDREN:
        ns, rss = t.tg.cutime, t.tg.children_maxrss_kb
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
    return 20 - t.tg.nice


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
    if prio < tg.nice and t.tg.creds.euid != 0:
        raise SyscallError(errno.EACCES)
    tg.nice = prio
    return 0


# sched_getscheduler, sched_getparam and sched_get_priority_max/min live in sched.py with their setters.
