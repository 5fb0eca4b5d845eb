"""System V semaphore sets (semget/semop/semtimedop/semctl), after Linux's ipc/sem.c.

A `SemSet` holds its values (0..SEMVMX) and the pid of the last process to change each, and a
FIFO of pending operations (`SemWait`, the parked task's continuation).  An operation array is
applied all-or-nothing (`_perform`, perform_atomic_semop: in order, on a scratch copy, so an
array naming one semaphore twice sees its own earlier steps).  As in Linux, a parked
operation is performed by the task whose change made it possible (`_update`, update_queue:
scan the FIFO, and scan again after every altering success), which records the result in the
sleeper's continuation and wakes it; the sleeper, running again, only reports it.  Timeouts
(semtimedop) are the task loop's deadlines: EAGAIN.  A signal ends the wait with EINTR (semop
is never restarted, Linux returns -EINTR itself).  A pending entry counts only while its task
is still parked in that very call (`t.cont is w`); stale ones are dropped when met.

SEM_UNDO: each process (`ThreadGroup.sem_undo`: set -> `SemUndo`; threads share it, a fork
starts without one, as without CLONE_SYSVSEM) keeps, per set, the adjustment that undoes its
SEM_UNDO operations; `exit_sem` applies them when the process exits, clamped to 0..SEMVMX
(Linux's exit_sem), and wakes whoever that lets run.  SETVAL/SETALL clear the adjustments of
the semaphores they set in every process; removing the set drops them.

GETNCNT/GETZCNT count parked operations whose blocking step is a decrement / wait-for-zero of
that semaphore (count_semcnt since Linux 4.x).  Limits: SEMMSL 32000 per set, SEMOPM 500 per
call, SEMMNI 32000 sets; values live in compact arrays, and all sets of the sandbox together
hold at most `MAX_TOTAL_SEMS` (past that semget is ENOMEM rather than Sentry memory).
"""
from __future__ import annotations

import errno
import struct
import time as _time
from array import array

from sentry.errors import SyscallError
from sentry.ipc import IPC_NOWAIT, IPC_RMID, S_IRUGO, S_IWUGO, IpcPerm, ctl_check, ids_of, ipcperms, now, pid_seen, usage
from sentry.task import Continuation

SEMMNI, SEMMSL, SEMOPM, SEMVMX = 32000, 32000, 500, 32767
SEMMNS = SEMMNI * SEMMSL
SEMAEM, SEMUME, SEMMNU, SEMMAP, SEMUSZ = SEMVMX, SEMOPM, SEMMNS, SEMMNS, 20
SEM_UNDO = 0x1000
GETPID, GETVAL, GETALL, GETNCNT, GETZCNT, SETVAL, SETALL = 11, 12, 13, 14, 15, 16, 17
SEM_STAT, SEM_INFO, SEM_STAT_ANY = 18, 19, 20
MAX_TOTAL_SEMS = 1 << 22
SEMBUF = struct.Struct("<HhH")            # struct sembuf: sem_num, sem_op, sem_flg
SEMID_TAIL = struct.Struct("<qQqQQQQ")    # semid64_ds after ipc64_perm: otime, pad, ctime, pad, nsems, 2 pads
SEMID_SIZE = 48 + SEMID_TAIL.size         # 104
SEMINFO = struct.Struct("<10i")

class SemSet:
    __slots__ = ("perm", "vals", "pids", "otime", "ctime", "pending", "undos")

    def __init__(self, perm: IpcPerm, nsems: int) -> None:
        self.perm = perm
        self.vals = array("h", bytes(2 * nsems))
        self.pids = array("i", bytes(4 * nsems))
        self.otime = 0
        self.ctime = now()
        self.pending: list[SemWait] = []
        self.undos: list[SemUndo] = []      # every process's adjustments for this set (list_id)


class SemUndo:
    """One process's adjustments for one set (struct sem_undo): semnum -> semadj."""
    __slots__ = ("adj", "owner")

    def __init__(self, owner: dict) -> None:
        self.adj: dict[int, int] = {}
        self.owner = owner                   # the process's set -> SemUndo dict


class SemWait(Continuation):
    """semop/semtimedop parked (struct sem_queue): its operations, its undo, its deadline, and
    the result a waker recorded (`status`, None while pending)."""
    __slots__ = ("s", "task", "sops", "undo", "pid", "alter", "deadline", "status", "blocking")
    restart_keeps = True                     # a restart with no handler keeps waiting, not queued twice

    def __init__(self, s: SemSet, task, sops, undo, alter: bool, deadline: float | None, blocking: int) -> None:
        self.s, self.task, self.sops, self.undo, self.alter = s, task, sops, undo, alter
        self.pid = task.tg.tgid
        self.deadline, self.status, self.blocking = deadline, None, blocking

    def live(self) -> bool:
        t = self.task
        return t.cont is self and t.in_syscall and not t.exited

    def eintr(self, t) -> None:
        if self in self.s.pending:
            self.s.pending.remove(self)


def ids(t):
    return ids_of(t, "sem", SEMMNI)


def semget(t, key: int, nsems: int, flags: int) -> int:
    if nsems < 0 or nsems > SEMMSL:
        raise SyscallError(errno.EINVAL)
    i = ids(t)

    def create():
        if nsems == 0:
            raise SyscallError(errno.EINVAL)
        if i.extra + nsems > SEMMNS:
            raise SyscallError(errno.ENOSPC)
        if len(i.by_idx) >= i.limit:
            raise SyscallError(errno.ENOSPC)
        u = usage(t.kernel)
        if u.sems + nsems > MAX_TOTAL_SEMS:
            raise SyscallError(errno.ENOMEM)
        i.extra += nsems
        u.sems += nsems
        return SemSet(IpcPerm(key, flags, t.tg.creds), nsems)

    def more_checks(s):
        if nsems > len(s.vals):
            raise SyscallError(errno.EINVAL)
    return i.get(t, key, flags, create, more_checks)


def _perform(s: SemSet, sops, undo: SemUndo | None, pid: int) -> tuple[int, int]:
    """perform_atomic_semop: (0, -1) done; (1, i) would block at step i; (-errno, i) failed.
    Nothing changes unless every step can be done."""
    vals = s.vals
    new: dict[int, int] = {}
    adj: dict[int, int] = {}
    for i, (num, op, flg) in enumerate(sops):
        cur = new.get(num, vals[num])
        if (op == 0 and cur) or cur + op < 0:
            return (-errno.EAGAIN if flg & IPC_NOWAIT else 1), i
        r = cur + op
        if r > SEMVMX:
            return -errno.ERANGE, i
        if flg & SEM_UNDO:
            u = adj.get(num, undo.adj.get(num, 0)) - op
            if u < -SEMAEM - 1 or u > SEMAEM:
                return -errno.ERANGE, i
            adj[num] = u
        new[num] = r
    for num, r in new.items():
        vals[num] = r
    for num, u in adj.items():
        if u:
            undo.adj[num] = u
        else:
            undo.adj.pop(num, None)
    for num, _, _ in sops:
        s.pids[num] = pid
    return 0, -1


def _update(s: SemSet) -> None:
    """update_queue: perform the parked operations that can now run, oldest first, scanning
    again after each one that changed a value."""
    again = True
    while again:
        again = False
        for w in list(s.pending):
            if not w.live():
                s.pending.remove(w)
                continue
            r, i = _perform(s, w.sops, w.undo, w.pid)
            if r == 1:
                w.blocking = i
                continue
            s.pending.remove(w)
            w.status = -r
            w.task.kernel.wake(w.task)
            if r == 0:
                s.otime = now()
                if w.alter:
                    again = True
                    break


def _undo_of(t, s: SemSet) -> SemUndo:
    """find_alloc_undo: this process's adjustments for `s`."""
    lst = getattr(t.tg, "sem_undo", None)
    if lst is None:
        lst = t.tg.sem_undo = {}
    un = lst.get(s)
    if un is None:
        un = lst[s] = SemUndo(lst)
        s.undos.append(un)
    return un


def semop(t, semid: int, sops: list[tuple[int, int, int]], timeout_ns: int | None) -> int:
    """do_semtimedop once the operations (and timeout) are read and checked."""
    w = t.resume(SemWait)
    if w is not None:
        if w.status is not None:
            if w.status:
                raise SyscallError(w.status)
            return 0
        s = w.s
        if s.perm.deleted:
            raise SyscallError(errno.EIDRM)
        if t.timed_out or (w.deadline is not None and w.deadline <= _time.monotonic()):
            w.eintr(t)
            raise SyscallError(errno.EAGAIN)
        if w not in s.pending:
            s.pending.append(w)
        t.block(deadline=w.deadline)
    s = ids(t).check(semid)
    if max(num for num, _, _ in sops) >= len(s.vals):
        raise SyscallError(errno.EFBIG)
    alter = any(op for _, op, _ in sops)
    if not ipcperms(t, ids(t), s.perm, S_IWUGO if alter else S_IRUGO):
        raise SyscallError(errno.EACCES)
    undo = _undo_of(t, s) if any(flg & SEM_UNDO for _, _, flg in sops) else None
    r, i = _perform(s, sops, undo, t.tg.tgid)
    if r == 0:
        s.otime = now()
        if alter:
            _update(s)
        return 0
    if r < 0:
        raise SyscallError(-r)
    if timeout_ns == 0:
        raise SyscallError(errno.EAGAIN)
    deadline = None if timeout_ns is None else _time.monotonic() + timeout_ns / 1e9
    w = t.begin(SemWait(s, t, sops, undo, alter, deadline, i))
    s.pending.append(w)
    t.block(deadline=deadline)


def _count(s: SemSet, semnum: int, zero: bool) -> int:
    """count_semcnt: parked operations blocked on `semnum` by a wait-for-zero or a decrement."""
    n = 0
    for w in s.pending:
        if w.live():
            num, op, _ = w.sops[w.blocking]
            if num == semnum and (op == 0 if zero else op < 0):
                n += 1
    return n


def remove(k, i, s: SemSet) -> None:
    """freeary: the set and every process's adjustments for it are gone; waiters get EIDRM."""
    i.remove(s)
    for un in s.undos:
        un.owner.pop(s, None)
    s.undos = []
    for w in s.pending:
        if w.live():
            w.status = errno.EIDRM
            w.task.kernel.wake(w.task)
    s.pending = []
    i.extra -= len(s.vals)
    usage(k).sems -= len(s.vals)


def exit_sem(tg) -> None:
    """The process exits: apply its SEM_UNDO adjustments (clamped to 0..SEMVMX)."""
    lst = getattr(tg, "sem_undo", None)
    if not lst:
        return
    tg.sem_undo = {}
    for s, un in lst.items():
        if s.perm.deleted:
            continue
        for num, a in un.adj.items():
            s.vals[num] = max(0, min(SEMVMX, s.vals[num] + a))
            s.pids[num] = tg.tgid
        if un in s.undos:
            s.undos.remove(un)
        s.otime = now()
        _update(s)


def main(t, semid: int, semnum: int, cmd: int, arg: int) -> int:
    """semctl_main (GETALL SETALL GETVAL GETPID GETNCNT GETZCNT) and semctl_setval (SETVAL)."""
    i = ids(t)
    if cmd == SETVAL:
        val = arg & 0xFFFFFFFF
        val = val - (1 << 32) if val & 0x80000000 else val
        if val < 0 or val > SEMVMX:
            raise SyscallError(errno.ERANGE)
    s = i.check(semid)
    n = len(s.vals)
    if cmd == SETVAL:
        if semnum < 0 or semnum >= n:
            raise SyscallError(errno.EINVAL)
    if not ipcperms(t, i, s.perm, S_IWUGO if cmd in (SETALL, SETVAL) else S_IRUGO):
        raise SyscallError(errno.EACCES)
    if cmd == GETALL:
        t.mm.write(arg, s.vals.tobytes())
        return 0
    if cmd == SETALL:
        new = array("H", t.mm.read(arg, 2 * n))
        if any(v > SEMVMX for v in new):
            raise SyscallError(errno.ERANGE)
        s.vals = array("h", new.tobytes())
        for k in range(n):
            s.pids[k] = t.tg.tgid
        for un in s.undos:
            un.adj.clear()
        s.ctime = now()
        _update(s)
        return 0
    if semnum < 0 or semnum >= n:
        raise SyscallError(errno.EINVAL)
    if cmd == SETVAL:
        for un in s.undos:
            un.adj.pop(semnum, None)
        s.vals[semnum] = val
        s.pids[semnum] = t.tg.tgid
        s.ctime = now()
        _update(s)
        return 0
    if cmd == GETVAL:
        return s.vals[semnum]
    if cmd == GETPID:
        return pid_seen(t, s.pids[semnum])
    return _count(s, semnum, cmd == GETZCNT)


def stat(t, semid: int, cmd: int) -> tuple[int, bytes]:
    """semctl_stat (IPC_STAT, SEM_STAT, SEM_STAT_ANY)."""
    i = ids(t)
    s = i.at_index(semid) if cmd in (SEM_STAT, SEM_STAT_ANY) else i.check(semid)
    if cmd != SEM_STAT_ANY and not ipcperms(t, i, s.perm, S_IRUGO):
        raise SyscallError(errno.EACCES)
    data = s.perm.pack(t) + SEMID_TAIL.pack(s.otime, 0, s.ctime, 0, len(s.vals), 0, 0)
    return (s.perm.id if cmd != 2 else 0), data


def info(t, cmd: int) -> tuple[int, bytes]:
    """semctl_info (IPC_INFO, SEM_INFO)."""
    i = ids(t)
    usz, aem = (len(i.by_idx), i.extra) if cmd == SEM_INFO else (SEMUSZ, SEMAEM)
    return i.max_idx(), SEMINFO.pack(SEMMAP, SEMMNI, SEMMNS, SEMMNU, SEMMSL, SEMOPM, SEMUME, usz, SEMVMX, aem)


def ctl_down(t, semid: int, cmd: int, raw: bytes | None) -> int:
    """semctl_down: IPC_RMID and IPC_SET."""
    i = ids(t)
    s = ctl_check(t, i, semid)
    if cmd == IPC_RMID:
        remove(t.kernel, i, s)
        return 0
    s.perm.update(t, raw)
    s.ctime = now()
    return 0


def proc_lines(t) -> bytes:
    """/proc/sysvipc/sem (sysvipc_sem_proc_show), the reader's namespace."""
    from sentry.userns import gid_seen, uid_seen
    out = [b"       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n"]
    for s in ids(t).ordered():
        p = s.perm
        out.append(b"%10d %10d  %4o %10u %5u %5u %5u %5u %10u %10u\n" % (
            p.key, p.id, p.mode, len(s.vals), uid_seen(t, p.uid), gid_seen(t, p.gid), uid_seen(t, p.cuid),
            gid_seen(t, p.cgid), s.otime, s.ctime))
    return b"".join(out)
