"""System V message queues and semaphores: msgget(2) msgsnd(2) msgrcv(2) msgctl(2) semget(2)
semop(2) semtimedop(2) semctl(2), and /proc/sysvipc.

Thin handlers: they decode the registers with the C types Linux declares, check arguments in
Linux's order (what is read from user memory first faults first), and call sentry/ipc/msg.py
and sentry/ipc/sem.py, which keep the objects (per IPC namespace) and do the blocking.  A call
that parked runs again when woken: its continuation carries what it already read, so user
memory is read once per call, as Linux loads a message or an operation array once.
Shared memory (shmget...) is not here (ENOSYS); /proc/sysvipc/shm lists none.
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError
from sentry.ipc import IPC_INFO, IPC_RMID, IPC_SET, IPC_STAT
from sentry.ipc import msg, sem
from sentry.syscalls.args import TIMESPEC, s32, s64, ts_ns, u32
from sentry.syscalls.registry import Support, syscall


@syscall("msgget", Support.FULL, "IPC_PRIVATE and keys, IPC_CREAT|IPC_EXCL, mode checks (CAP_IPC_OWNER), "
         "MSGMNI 32000 (ENOSPC); per IPC namespace")
def msgget(t, key, msgflg):
    """msgget(2)."""
    return msg.msgget(t, s32(key), s32(msgflg))


@syscall("msgsnd", Support.FULL, "blocks while the queue is full (msg_qbytes) unless IPC_NOWAIT; hands the "
         "message to a waiting receiver first (pipelined_send); EIDRM/EINTR; MSGMAX 8192; the sandbox's queued "
         "messages together are capped at 64 MiB (ENOMEM past it)")
def msgsnd(t, msqid, msgp, msgsz, msgflg):
    """msgsnd(2)."""
    msqid, msgflg = s32(msqid), s32(msgflg)
    c = t.resume(msg.MsgSend)
    if c is not None:
        return msg.send(t, msqid, c.mtype, c.text, msgflg)
    mtype = s64(t.mm.read_u64(msgp))
    if msgsz > msg.MSGMAX or msqid < 0:
        raise SyscallError(errno.EINVAL)
    if mtype < 1:
        raise SyscallError(errno.EINVAL)
    text = t.mm.read(msgp + 8, msgsz)
    return msg.send(t, msqid, mtype, text, msgflg)


@syscall("msgrcv", Support.FULL, "by type (0, >0, <0, MSG_EXCEPT), MSG_NOERROR/E2BIG, IPC_NOWAIT/ENOMSG, "
         "MSG_COPY; blocks until a matching send, EIDRM on removal, EINTR on a signal")
def msgrcv(t, msqid, msgp, msgsz, msgtyp, msgflg):
    """msgrcv(2)."""
    msqid, msgtyp, msgflg = s32(msqid), s64(msgtyp), s32(msgflg)
    if msqid < 0 or s64(msgsz) < 0:
        raise SyscallError(errno.EINVAL)
    if msgflg & msg.MSG_COPY and t.resume(msg.MsgRecv) is None:
        if msgflg & msg.MSG_EXCEPT or not msgflg & msg.IPC_NOWAIT:
            raise SyscallError(errno.EINVAL)
        t.mm.read(msgp, min(msgsz, msg.MSGMAX))          # prepare_copy loads the buffer first
    mtype, text = msg.receive(t, msqid, msgsz, msgtyp, msgflg)
    n = min(msgsz, len(text))
    t.mm.write_u64(msgp, mtype)
    t.mm.write(msgp + 8, text[:n])
    return n


@syscall("msgctl", Support.FULL, "IPC_STAT IPC_SET (msg_qbytes above MSGMNB needs CAP_SYS_RESOURCE) IPC_RMID "
         "IPC_INFO MSG_INFO MSG_STAT MSG_STAT_ANY")
def msgctl(t, msqid, cmd, buf):
    """msgctl(2)."""
    msqid, cmd = s32(msqid), s32(cmd)
    if msqid < 0 or cmd < 0:
        raise SyscallError(errno.EINVAL)
    if cmd in (IPC_INFO, msg.MSG_INFO):
        r, data = msg.info(t, cmd)
    elif cmd in (IPC_STAT, msg.MSG_STAT, msg.MSG_STAT_ANY):
        r, data = msg.stat(t, msqid, cmd)
    elif cmd == IPC_SET:
        return msg.ctl_down(t, msqid, cmd, t.mm.read(buf, msg.MSQID_SIZE))
    elif cmd == IPC_RMID:
        return msg.ctl_down(t, msqid, cmd, None)
    else:
        raise SyscallError(errno.EINVAL)
    t.mm.write(buf, data)
    return r


@syscall("semget", Support.FULL, "IPC_PRIVATE and keys, IPC_CREAT|IPC_EXCL, mode checks, SEMMSL 32000 "
         "(EINVAL), SEMMNI/SEMMNS (ENOSPC); per IPC namespace; at most 4M semaphores in the "
         "whole sandbox (ENOMEM past it)")
def semget(t, key, nsems, semflg):
    """semget(2)."""
    return sem.semget(t, s32(key), s32(nsems), s32(semflg))


def _semtimedop(t, semid: int, tsops: int, nsops: int, timeout: int) -> int:
    """do_semtimedop's argument checks, in Linux's order."""
    w = t.resume(sem.SemWait)
    if w is not None:
        return sem.semop(t, semid, w.sops, None)
    raw_timeout = t.mm.read_struct(timeout, TIMESPEC) if timeout else None
    if nsops < 1 or semid < 0:
        raise SyscallError(errno.EINVAL)
    if nsops > sem.SEMOPM:
        raise SyscallError(errno.E2BIG)
    data = t.mm.read(tsops, nsops * sem.SEMBUF.size)
    sops = [sem.SEMBUF.unpack_from(data, i * sem.SEMBUF.size) for i in range(nsops)]
    timeout_ns = ts_ns(*raw_timeout) if raw_timeout is not None else None
    return sem.semop(t, semid, sops, timeout_ns)


@syscall("semop", Support.PARTIAL, "atomic arrays, blocking decrement and wait-for-zero (performed by the "
         "waker, FIFO), IPC_NOWAIT, SEM_UNDO (applied at process exit; per process: CLONE_SYSVSEM between "
         "processes does not share undo lists), EIDRM, EINTR, ERANGE, EFBIG, E2BIG past SEMOPM 500")
def semop(t, semid, sops, nsops):
    """semop(2)."""
    return _semtimedop(t, s32(semid), sops, u32(nsops), 0)


@syscall("semtimedop", Support.PARTIAL, "as semop (undo lists per process, not shared by "
         "CLONE_SYSVSEM), with a relative CLOCK_MONOTONIC timeout (EAGAIN)")
def semtimedop(t, semid, sops, nsops, timeout):
    """semtimedop(2)."""
    return _semtimedop(t, s32(semid), sops, u32(nsops), timeout)


@syscall("semctl", Support.FULL, "GETVAL SETVAL GETALL SETALL GETPID GETNCNT GETZCNT IPC_STAT IPC_SET "
         "IPC_RMID IPC_INFO SEM_INFO SEM_STAT SEM_STAT_ANY; ERANGE past SEMVMX 32767")
def semctl(t, semid, semnum, cmd, arg):
    """semctl(2)."""
    semid, semnum, cmd = s32(semid), s32(semnum), s32(cmd)
    if semid < 0:
        raise SyscallError(errno.EINVAL)
    if cmd in (IPC_INFO, sem.SEM_INFO):
        r, data = sem.info(t, cmd)
    elif cmd in (IPC_STAT, sem.SEM_STAT, sem.SEM_STAT_ANY):
        r, data = sem.stat(t, semid, cmd)
    elif cmd in (sem.GETALL, sem.GETVAL, sem.GETPID, sem.GETNCNT, sem.GETZCNT, sem.SETALL, sem.SETVAL):
        return sem.main(t, semid, semnum, cmd, arg)
    elif cmd == IPC_SET:
        return sem.ctl_down(t, semid, cmd, t.mm.read(arg, sem.SEMID_SIZE))
    elif cmd == IPC_RMID:
        return sem.ctl_down(t, semid, cmd, None)
    else:
        raise SyscallError(errno.EINVAL)
    t.mm.write(arg, data)
    return r


def proc_sysvipc_dir(fs):
    """/proc/sysvipc: msg, sem and shm, each listing the reader's IPC namespace."""
    from sentry.vfs.procfs import O_PATH, File, ProcDir, ProcFile, SeqFile

    shm_header = (b"       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid"
                  b"      atime      dtime      ctime                   rss                  swap\n")

    class SysvFile(ProcFile):
        def __init__(self, name: bytes, lines) -> None:
            super().__init__(fs, ("sysvipc", name), None)
            self.lines = lines

        def open(self, t, dentry, flags: int):
            if flags & O_PATH:
                return File(flags, dentry, dentry.mount)
            if flags & 3:
                raise SyscallError(errno.EACCES)
            return SeqFile(flags, dentry, self.lines(t))

    entries = {b"msg": lambda: SysvFile(b"msg", msg.proc_lines),
               b"sem": lambda: SysvFile(b"sem", sem.proc_lines),
               b"shm": lambda: SysvFile(b"shm", lambda t: shm_header)}
    return ProcDir(fs, ("sysvipc",), lambda: entries)
