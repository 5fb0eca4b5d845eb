"""Scheduling attributes a process can set and read back: policy and priority, I/O priority,
personality, and membarrier.

The Sentry does not schedule application threads itself (they run on host CPUs as
the host schedules the stubs), so a policy or an I/O priority is kept on the task
and reported back exactly as Linux would -- with Linux's checks (kernel/sched/
syscalls.c, block/ioprio.c): real-time policies need CAP_SYS_NICE or an
RLIMIT_RTPRIO that allows the priority, and changing another user's process needs
CAP_SYS_NICE.  In this Sentry root holds every capability and nobody else any
(see capget), so "capable" is euid 0.  Policy and priorities are per thread and
copied to the child by fork/clone (`inherit`, called from clone) unless
SCHED_RESET_ON_FORK was set.

membarrier(2) is real: its barrier commands run the host's MEMBARRIER_CMD_GLOBAL,
which makes every CPU -- and so every running thread of the application -- pass a
full memory barrier before the call returns.
"""
from __future__ import annotations

import ctypes
import errno

from sentry.errors import SyscallError
from sentry.syscalls.args import s32
from sentry.syscalls.registry import Support, syscall

SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE = 0, 1, 2, 3, 5, 6
SCHED_RESET_ON_FORK = 0x40000000
RT_POLICIES = (SCHED_FIFO, SCHED_RR)
VALID_POLICIES = (SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE)
RR_TIMESLICE_NS = 100_000_000          # Linux's RR_TIMESLICE: 100 ms
RLIMIT_RTPRIO = 14


def _target(t, pid: int):
    """The task `pid` names (0: the caller); EINVAL for a negative pid, ESRCH for an unknown one."""
    if pid < 0:
        raise SyscallError(errno.EINVAL)
    if pid == 0:
        return t
    task = t.kernel.tasks.get(pid)
    if task is None:
        raise SyscallError(errno.ESRCH)
    return task


def policy_of(task) -> tuple[int, int, bool]:
    """(policy, rt priority, reset-on-fork) of a task; a new task starts with its creator's."""
    return task.sched_attr


def _capable(t) -> bool:
    return t.tg.creds.euid == 0


def _may_change(t, task) -> None:
    """Another user's task needs CAP_SYS_NICE (check_same_owner)."""
    if task is t or _capable(t):
        return
    c, o = t.tg.creds, task.tg.creds
    if c.euid not in (o.euid, o.ruid):
        raise SyscallError(errno.EPERM)


def _set(t, pid: int, policy: int | None, param: int) -> int:
    if not param:
        raise SyscallError(errno.EINVAL)
    task = _target(t, pid)
    prio = s32(t.mm.read_u32(param))
    cur_policy, cur_prio, cur_reset = policy_of(task)
    reset = cur_reset
    if policy is None:
        policy = cur_policy
    else:
        reset = bool(policy & SCHED_RESET_ON_FORK)
        policy &= ~SCHED_RESET_ON_FORK
        if policy not in VALID_POLICIES:
            raise SyscallError(errno.EINVAL)
    if policy in RT_POLICIES:
        if not 1 <= prio <= 99:
            raise SyscallError(errno.EINVAL)
    elif prio != 0:
        raise SyscallError(errno.EINVAL)
    if not _capable(t):
        limit = t.tg.rlimits[RLIMIT_RTPRIO][0]
        if policy in RT_POLICIES and cur_policy not in RT_POLICIES and limit == 0:
            raise SyscallError(errno.EPERM)
        if policy in RT_POLICIES and prio > max(cur_prio, limit):
            raise SyscallError(errno.EPERM)
        if cur_reset and not reset:
            raise SyscallError(errno.EPERM)
        _may_change(t, task)
    task.sched_attr = (policy, prio, reset)
    return 0


@syscall("sched_setscheduler", Support.PARTIAL, "policy and priority kept and reported with Linux's checks; "
         "the host schedules the threads (SCHED_DEADLINE is EINVAL here, as for sched_setscheduler on Linux)")
def sched_setscheduler(t, pid, policy, param):
    """sched_setscheduler(2)."""
    pid, policy = s32(pid), s32(policy)
    if pid < 0:
        raise SyscallError(errno.EINVAL)
    return _set(t, pid, policy & 0xFFFFFFFF, param)


@syscall("sched_setparam", Support.PARTIAL, "priority kept and reported with Linux's checks; the host schedules")
def sched_setparam(t, pid, param):
    """sched_setparam(2)."""
    pid = s32(pid)
    if pid < 0:
        raise SyscallError(errno.EINVAL)
    return _set(t, pid, None, param)


@syscall("sched_getscheduler")
def sched_getscheduler(t, pid):
    """sched_getscheduler(2): the policy, with SCHED_RESET_ON_FORK when set."""
    policy, _, reset = policy_of(_target(t, s32(pid)))
    return policy | (SCHED_RESET_ON_FORK if reset else 0)


@syscall("sched_getparam")
def sched_getparam(t, pid, param):
    """sched_getparam(2)."""
    pid = s32(pid)
    if pid < 0 or not param:
        raise SyscallError(errno.EINVAL)
    t.mm.write_u32(param, policy_of(_target(t, pid))[1])
    return 0


@syscall("sched_get_priority_max")
def sched_get_priority_max(t, policy):
    """sched_get_priority_max(2)."""
    policy = s32(policy)
    if policy in RT_POLICIES:
        return 99
    if policy in (SCHED_OTHER, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE):
        return 0
    raise SyscallError(errno.EINVAL)


@syscall("sched_get_priority_min")
def sched_get_priority_min(t, policy):
    """sched_get_priority_min(2)."""
    policy = s32(policy)
    if policy in RT_POLICIES:
        return 1
    if policy in (SCHED_OTHER, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE):
        return 0
    raise SyscallError(errno.EINVAL)


@syscall("sched_rr_get_interval")
def sched_rr_get_interval(t, pid, tp):
    """sched_rr_get_interval(2): 100 ms for SCHED_RR (RR_TIMESLICE), 0 for the others (FIFO never
    slices; for the fair classes Linux reports a slice only while other tasks share the CPU)."""
    task = _target(t, s32(pid))
    ns = RR_TIMESLICE_NS if policy_of(task)[0] == SCHED_RR else 0
    t.mm.write(tp, (ns // 1_000_000_000).to_bytes(8, "little") + (ns % 1_000_000_000).to_bytes(8, "little"))
    return 0


# -- I/O priority ------------------------------------------------------------------------------

IOPRIO_WHO_PROCESS, IOPRIO_WHO_PGRP, IOPRIO_WHO_USER = 1, 2, 3
IOPRIO_CLASS_NONE, IOPRIO_CLASS_RT, IOPRIO_CLASS_BE, IOPRIO_CLASS_IDLE = 0, 1, 2, 3
IOPRIO_CLASS_SHIFT = 13
IOPRIO_NR_LEVELS = 8


def _io_targets(t, which: int, who: int) -> list:
    k = t.kernel
    if which == IOPRIO_WHO_PROCESS:
        return [_target(t, who)] if who >= 0 else []
    if which == IOPRIO_WHO_PGRP:
        pgrp = who or t.tg.pgid
        return [task for g in k.thread_groups.values() if g.pgid == pgrp and not g.exiting for task in g.tasks]
    if which == IOPRIO_WHO_USER:
        uid = who or t.tg.creds.ruid
        return [task for g in k.thread_groups.values() if g.creds.ruid == uid and not g.exiting for task in g.tasks]
    raise SyscallError(errno.EINVAL)


@syscall("ioprio_set", Support.PARTIAL, "kept per thread and reported by ioprio_get with Linux's checks; the host "
         "orders the Sentry's I/O")
def ioprio_set(t, which, who, ioprio):
    """ioprio_set(2)."""
    which, who, ioprio = s32(which), s32(who), s32(ioprio)
    # The low 3 bits of the data are the level; bits 3-12 are 6.5+'s hints (not checked here).
    cls, data = (ioprio >> IOPRIO_CLASS_SHIFT) & 0x7, ioprio & 0x7
    if ioprio < 0 or ioprio >> 16:
        raise SyscallError(errno.EINVAL)
    if cls == IOPRIO_CLASS_RT:
        if not _capable(t):
            raise SyscallError(errno.EPERM)
        if data >= IOPRIO_NR_LEVELS:
            raise SyscallError(errno.EINVAL)
    elif cls == IOPRIO_CLASS_BE:
        if data >= IOPRIO_NR_LEVELS:
            raise SyscallError(errno.EINVAL)
    elif cls == IOPRIO_CLASS_IDLE:
        pass
    elif cls == IOPRIO_CLASS_NONE:
        if data:
            raise SyscallError(errno.EINVAL)
    else:
        raise SyscallError(errno.EINVAL)
    if which not in (IOPRIO_WHO_PROCESS, IOPRIO_WHO_PGRP, IOPRIO_WHO_USER):
        raise SyscallError(errno.EINVAL)
    targets = _io_targets(t, which, who)
    if not targets:
        raise SyscallError(errno.ESRCH)
    for task in targets:
        _may_change(t, task)
        task.ioprio = ioprio
    return 0


@syscall("ioprio_get")
def ioprio_get(t, which, who):
    """ioprio_get(2): for a group or user, the highest priority among its tasks (IOPRIO_DEFAULT is 0)."""
    which, who = s32(which), s32(who)
    if which not in (IOPRIO_WHO_PROCESS, IOPRIO_WHO_PGRP, IOPRIO_WHO_USER):
        raise SyscallError(errno.EINVAL)
    targets = _io_targets(t, which, who)
    if not targets:
        raise SyscallError(errno.ESRCH)
    if which == IOPRIO_WHO_PROCESS:
        return targets[0].ioprio

    def rank(p: int) -> tuple[int, int]:     # ioprio_best: a lower class number, then lower data, wins
        cls = p >> IOPRIO_CLASS_SHIFT
        return (IOPRIO_CLASS_BE if cls == IOPRIO_CLASS_NONE else cls, p & 0xFF)
    return min((task.ioprio for task in targets), key=rank)


# -- personality ---------------------------------------------------------------------------------

@syscall("personality", Support.PARTIAL, "the persona is kept per process, inherited and reported; its flags "
         "(ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ...) change nothing in the Sentry's memory layout")
def personality(t, persona):
    """personality(2): 0xffffffff queries; anything else is stored; the old persona is returned."""
    persona &= 0xFFFFFFFF
    old = t.tg.personality
    if persona != 0xFFFFFFFF:
        t.tg.personality = persona
    return old


# -- membarrier ----------------------------------------------------------------------------------

MEMBARRIER_CMD_QUERY = 0
MEMBARRIER_CMD_GLOBAL = 1
MEMBARRIER_CMD_GLOBAL_EXPEDITED = 2
MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = 4
MEMBARRIER_CMD_PRIVATE_EXPEDITED = 8
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED = 16
MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE = 32
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE = 64
MEMBARRIER_CMD_GET_REGISTRATIONS = 512
SUPPORTED = (MEMBARRIER_CMD_GLOBAL | MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED
             | MEMBARRIER_CMD_PRIVATE_EXPEDITED | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED
             | MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE
             | MEMBARRIER_CMD_GET_REGISTRATIONS)
# A barrier command -> the registration it needs (on the address space, as Linux's mm->membarrier_state).
NEEDS = {MEMBARRIER_CMD_PRIVATE_EXPEDITED: MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
         MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE}
_SYS_membarrier = 324


def host_barrier() -> None:
    """Every host CPU passes a full memory barrier (and a core serialisation: a context switch)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) != 0:
        raise SyscallError(ctypes.get_errno() or errno.EINVAL)


@syscall("membarrier", Support.PARTIAL, "QUERY, GLOBAL, the private and global expedited commands and their "
         "registrations, GET_REGISTRATIONS; every barrier is the host's MEMBARRIER_CMD_GLOBAL (correct, ~10 ms); "
         "the RSEQ commands are EINVAL (rseq is ENOSYS)")
def membarrier(t, cmd, flags, cpu_id):
    """membarrier(2)."""
    cmd, flags = s32(cmd), s32(flags)
    if flags:
        raise SyscallError(errno.EINVAL)
    regs = getattr(t.mm, "membarrier_registrations", 0)
    if cmd == MEMBARRIER_CMD_QUERY:
        return SUPPORTED
    if cmd == MEMBARRIER_CMD_GET_REGISTRATIONS:
        return regs
    if cmd in (MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
               MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE):
        t.mm.membarrier_registrations = regs | cmd
        return 0
    if cmd in NEEDS:
        if not regs & NEEDS[cmd]:
            raise SyscallError(errno.EPERM)
    elif cmd not in (MEMBARRIER_CMD_GLOBAL, MEMBARRIER_CMD_GLOBAL_EXPEDITED):
        raise SyscallError(errno.EINVAL)
    host_barrier()
    return 0


def inherit(parent, child) -> None:
    """fork/clone: the child task takes its creator's policy (SCHED_OTHER, priority 0, if the creator
    set SCHED_RESET_ON_FORK from a real-time policy), I/O priority and, for a new process, persona."""
    policy, prio, reset = attr = parent.sched_attr
    child.sched_attr = (SCHED_OTHER, 0, False) if reset and policy in RT_POLICIES else \
        ((policy, prio, False) if reset else attr)
    child.ioprio = parent.ioprio
    if child.tg is not parent.tg:
        child.tg.personality = parent.tg.personality
