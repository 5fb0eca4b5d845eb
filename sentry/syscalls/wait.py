"""wait4(2) and waitid(2): reaping children, as Linux's do_wait.

Which children match (pid, process group, pidfd, __WALL/__WCLONE), what is
reported (exit, stop, continue) and when the caller blocks: a blocked wait
is a continuation the task loop resumes when a child changes state
(sentry/process.py notifies), interruptible by signals like Linux's.
"""
from __future__ import annotations

import errno
import struct

from sentry.errors import SyscallError
from sentry.syscalls.args import s32, u32
from sentry.syscalls.registry import syscall
from sentry.pidns import kill_target, to_ns


# -- wait ---------------------------------------------------------------------------

WNOHANG, WUNTRACED, WSTOPPED, WEXITED, WCONTINUED, WNOWAIT = 1, 2, 2, 4, 8, 0x01000000
__WNOTHREAD, __WALL, __WCLONE = 0x20000000, 0x40000000, 0x80000000
P_ALL, P_PID, P_PGID, P_PIDFD = 0, 1, 2, 3
RUSAGE = struct.Struct("<qqqq14q")


def _matches(tg, child, idtype: int, ident: int, options: int) -> bool:
    if idtype == P_PID and child.tgid != ident:
        return False
    if idtype == P_PGID and child.pgid != ident:
        return False
    # __WCLONE selects children that report to the parent with a signal other than SIGCHLD.
    if not options & __WALL and bool(options & __WCLONE) != (child.exit_signal != 17):
        return False
    return True


def _wait_common(t, idtype: int, ident: int, options: int):
    """The state change to report: (child, kind) with kind 'exit'|'stop'|'cont', or None with WNOHANG.

    Parks the caller while children exist but none changed; ECHILD when none match."""
    tg = t.tg                   # __WNOTHREAD changes nothing: a group's threads share `children`
    found = False
    for child in list(tg.children):
        if not _matches(tg, child, idtype, ident, options):
            continue
        if child.zombie and not options & WEXITED:
            continue        # wait_task_zombie: an exited child is no candidate for a stop/continue wait
        found = True
        # A child continued and then gone reports the continue first (it happened first).
        if options & WCONTINUED and child.stop_state == "continued" and not child.stop_reported:
            return child, "cont"
        if child.zombie and options & WEXITED:
            return child, "exit"
        if options & WSTOPPED and child.stop_state == "stopped" and not child.stop_reported and not child.zombie:
            return child, "stop"
    if not found:
        raise SyscallError(errno.ECHILD)
    if options & WNOHANG:
        return None
    t.block([tg.child_waitq])


def _rusage_bytes(child) -> bytes:
    return RUSAGE.pack(0, 0, 0, 0, *([0] * 14))


@syscall("wait4")
def wait4(t, pid, wstatus, options, rusage):
    """wait4(2)."""
    from sentry import process
    pid, options = s32(pid), u32(options)
    if options & ~(WNOHANG | WUNTRACED | WCONTINUED | __WNOTHREAD | __WALL | __WCLONE):
        raise SyscallError(errno.EINVAL)
    if pid == -1:
        idtype, ident = P_ALL, 0
    elif pid == 0:
        idtype, ident = P_PGID, t.tg.pgid
    elif pid < -1:
        idtype, ident = P_PGID, -pid
    else:
        idtype, ident = P_PID, pid
    if t.tg.pidns is not None and idtype != P_ALL and pid != 0:
        ident = abs(kill_target(t.tg.pidns, ident))
    r = _wait_common(t, idtype, ident, options | WEXITED)
    if r is None:
        return 0
    child, kind = r
    if kind == "exit":
        status = child.exit_status
    elif kind == "stop":
        status = (child.stop_sig << 8) | 0x7F
    else:
        status = 0xFFFF
    if wstatus:
        t.mm.write_u32(wstatus, status)
    if rusage:
        t.mm.write(rusage, _rusage_bytes(child))
    if kind == "exit":
        process.reap(t.kernel, child)
    else:
        child.stop_reported = True
    return child.tgid if t.tg.pidns is None else to_ns(t.tg.pidns, child.tgid)


@syscall("waitid")
def waitid(t, idtype, ident, infop, options, rusage):
    """waitid(2)."""
    from sentry import process
    from sentry import signals as sg
    idtype, ident, options = s32(idtype), s32(ident), u32(options)
    if options & ~(WNOHANG | WSTOPPED | WEXITED | WCONTINUED | WNOWAIT | __WNOTHREAD | __WALL | __WCLONE):
        raise SyscallError(errno.EINVAL)
    if not options & (WEXITED | WSTOPPED | WCONTINUED):
        raise SyscallError(errno.EINVAL)
    if idtype not in (P_ALL, P_PID, P_PGID):
        raise SyscallError(errno.EINVAL)
    if idtype == P_PGID and ident == 0:
        ident = t.tg.pgid
    if idtype in (P_PID, P_PGID) and ident <= 0:
        raise SyscallError(errno.EINVAL)
    if t.tg.pidns is not None and idtype != P_ALL and not (idtype == P_PGID and ident == t.tg.pgid):
        ident = kill_target(t.tg.pidns, ident)
    r = _wait_common(t, idtype, ident, options)
    if r is None:
        if infop:
            t.mm.write(infop, bytes(128))
        return 0
    child, kind = r
    if kind == "exit":
        code, status = process.child_code(child.exit_status)
    elif kind == "stop":
        code, status = sg.CLD_STOPPED, child.stop_sig
    else:
        code, status = sg.CLD_CONTINUED, sg.SIGCONT
    if infop:
        t.mm.write(infop, sg.siginfo(sg.SIGCHLD, code, pid=to_ns(t.tg.pidns, child.tgid), uid=child.creds.ruid,
                                     status=status))
    if rusage:
        t.mm.write(rusage, _rusage_bytes(child))
    if not options & WNOWAIT:
        if kind == "exit":
            process.reap(t.kernel, child)
        else:
            child.stop_reported = True
    return 0
