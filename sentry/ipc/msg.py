"""System V message queues (msgget/msgsnd/msgrcv/msgctl), after Linux's ipc/msg.c.

A `MsgQueue` holds its messages in order, with the counters msqid_ds reports.  Blocking is the
Sentry's (sentry/waitq.py): a sender that does not fit parks on `senders` and runs again when a
receive or IPC_SET makes room (Linux's ss_wakeup: every woken sender checks again); a receiver
that finds nothing registers its wish (`MsgRecv`, its continuation) in `receivers` and parks.
A send first offers its message to those receivers in order, as Linux's pipelined_send: the
first whose type matches gets it directly (its continuation holds the message; E2BIG if its
buffer is too small and it did not say MSG_NOERROR), so a woken receiver never races another
task for the message it was given.  Removal marks the queue deleted and wakes everyone: they
fail with EIDRM.  A registered receiver is live only while its task is still parked in that
very call (`t.cont is r`); a stale one (interrupted, killed) is dropped when met.

Limits are Linux's defaults (MSGMAX 8192, MSGMNB 16384, MSGMNI 32000); msg_qbytes above
MSGMNB needs CAP_SYS_RESOURCE.  Since a privileged process could raise msg_qbytes without
bound, all queued messages of the sandbox together are capped at `MAX_TOTAL_BYTES` (each
counted with a header, as kmalloc would): past that a send is ENOMEM, never Sentry memory.
"""
from __future__ import annotations

import errno
import struct

from sentry.errors import SyscallError
from sentry.ipc import (IPC_INFO, IPC_NOWAIT, IPC_RMID, IPC_SET, IPC_STAT, S_IRUGO, S_IWUGO, IpcPerm,
                        ctl_check, ids_of, ipcperms, now, pid_seen, usage)
from sentry.task import Continuation
from sentry.waitq import WaitQueue

MSGMNI, MSGMAX, MSGMNB, MSGSSZ, MSGSEG = 32000, 8192, 16384, 16, 0xFFFF
MSGPOOL = MSGMNI * MSGMNB // 1024
MSG_STAT, MSG_INFO, MSG_STAT_ANY = 11, 12, 13
MSG_NOERROR, MSG_EXCEPT, MSG_COPY = 0o10000, 0o20000, 0o40000
SEARCH_ANY, SEARCH_EQUAL, SEARCH_NOTEQUAL, SEARCH_LESSEQUAL, SEARCH_NUMBER = range(5)
LONG_MAX = (1 << 63) - 1
MSG_HEADER = 48                       # what a struct msg_msg costs beside its text
MAX_TOTAL_BYTES = 64 << 20
# struct msqid64_ds after its ipc64_perm: stime rtime ctime cbytes qnum qbytes lspid lrpid, 2 unused.
MSQID_TAIL = struct.Struct("<qqqQQQii16x")
MSQID_SIZE = 48 + MSQID_TAIL.size    # 120
MSGINFO = struct.Struct("<7iH2x")    # msgpool msgmap msgmax msgmnb msgmni msgssz msgtql msgseg

class MsgQueue:
    __slots__ = ("perm", "messages", "qbytes", "cbytes", "stime", "rtime", "ctime", "lspid", "lrpid",
                 "senders", "receivers")

    def __init__(self, perm: IpcPerm) -> None:
        self.perm = perm
        self.messages: list[tuple[int, bytes]] = []     # (mtype, text), oldest first
        self.qbytes = MSGMNB
        self.cbytes = 0
        self.stime = self.rtime = 0
        self.ctime = now()
        self.lspid = self.lrpid = 0
        self.senders = WaitQueue()
        self.receivers: list[MsgRecv] = []

    def fits(self, size: int) -> bool:
        """msg_fits_inqueue."""
        return size + self.cbytes <= self.qbytes and 1 + len(self.messages) <= self.qbytes


class MsgSend(Continuation):
    """msgsnd parked on a full queue: the queue and the message, loaded once."""
    __slots__ = ("q", "mtype", "text")

    def __init__(self, q: MsgQueue, mtype: int, text: bytes) -> None:
        self.q, self.mtype, self.text = q, mtype, text


class MsgRecv(Continuation):
    """msgrcv parked on an empty queue (msg_receiver): what it wants, and what a sender gave it
    (`got`: a message, or an errno)."""
    __slots__ = ("q", "task", "msgtyp", "mode", "maxsize", "got")

    def __init__(self, q: MsgQueue, task, msgtyp: int, mode: int, maxsize: int) -> None:
        self.q, self.task, self.msgtyp, self.mode, self.maxsize = q, task, msgtyp, mode, maxsize
        self.got = None

    def live(self) -> bool:
        t = self.task
        return t.cont is self and t.in_syscall and not t.exited


def ids(t):
    return ids_of(t, "msg", MSGMNI)


def msgget(t, key: int, flags: int) -> int:
    def create():
        return MsgQueue(IpcPerm(key, flags, t.tg.creds))
    return ids(t).get(t, key, flags, create)


def _testmsg(mtype: int, want: int, mode: int) -> bool:
    if mode == SEARCH_EQUAL:
        return mtype == want
    if mode == SEARCH_NOTEQUAL:
        return mtype != want
    if mode == SEARCH_LESSEQUAL:
        return mtype <= want
    return True


def _find(q: MsgQueue, want: int, mode: int) -> int | None:
    """find_msg: the index of the message to take (the lowest type for SEARCH_LESSEQUAL, the
    `want`th for MSG_COPY), or None."""
    if mode == SEARCH_LESSEQUAL:
        best = None
        for i, (mtype, _) in enumerate(q.messages):
            if mtype <= want and (best is None or mtype < q.messages[best][0]):
                best = i
        return best
    if mode == SEARCH_NUMBER:
        return want if 0 <= want < len(q.messages) else None
    for i, (mtype, _) in enumerate(q.messages):
        if _testmsg(mtype, want, mode):
            return i
    return None


def send(t, msqid: int, mtype: int, text: bytes, flags: int) -> int:
    """do_msgsnd once the message is loaded: offered to waiting receivers, queued, or parked."""
    c = t.resume(MsgSend)
    if c is not None:
        q = c.q
    else:
        if usage(t.kernel).msg_bytes + MSG_HEADER + len(text) > MAX_TOTAL_BYTES:
            raise SyscallError(errno.ENOMEM)        # load_msg could not allocate it
        q = ids(t).check(msqid)
    if not ipcperms(t, ids(t), q.perm, S_IWUGO):
        raise SyscallError(errno.EACCES)
    if q.perm.deleted:
        raise SyscallError(errno.EIDRM)
    if not q.fits(len(text)):
        if flags & IPC_NOWAIT:
            raise SyscallError(errno.EAGAIN)
        if c is None:
            t.begin(MsgSend(q, mtype, text))
        t.block([q.senders])
    q.lspid = t.tg.tgid
    q.stime = now()
    if not _pipelined(q, mtype, text):
        q.messages.append((mtype, text))
        q.cbytes += len(text)
        usage(t.kernel).msg_bytes += MSG_HEADER + len(text)
    return 0


def _pipelined(q: MsgQueue, mtype: int, text: bytes) -> bool:
    """pipelined_send: hand the message to the first waiting receiver that wants it."""
    for r in list(q.receivers):
        if not r.live():
            q.receivers.remove(r)
            continue
        if not _testmsg(mtype, r.msgtyp, r.mode):
            continue
        q.receivers.remove(r)
        if r.maxsize < len(text):
            r.got = errno.E2BIG
            r.task.kernel.wake(r.task)
            continue
        r.got = (mtype, text)
        q.lrpid = r.task.tg.tgid
        q.rtime = now()
        r.task.kernel.wake(r.task)
        return True
    return False


def receive(t, msqid: int, bufsz: int, msgtyp: int, flags: int) -> tuple[int, bytes]:
    """do_msgrcv up to the copy-out: the (mtype, text) taken, or an errno, or a park."""
    c = t.resume(MsgRecv)
    if c is not None:
        q = c.q
        if c.got is not None:
            if isinstance(c.got, int):
                raise SyscallError(c.got)
            return c.got
        if c in q.receivers:
            q.receivers.remove(c)
        mode, want = c.mode, c.msgtyp
    else:
        q = ids(t).check(msqid)
        mode, want = _mode(msgtyp, flags)
    if not ipcperms(t, ids(t), q.perm, S_IRUGO):
        raise SyscallError(errno.EACCES)
    if q.perm.deleted:
        raise SyscallError(errno.EIDRM)
    i = _find(q, want, mode)
    if i is not None:
        mtype, text = q.messages[i]
        if bufsz < len(text) and not flags & MSG_NOERROR:
            raise SyscallError(errno.E2BIG)
        if flags & MSG_COPY:
            if len(text) > min(bufsz, MSGMAX):
                raise SyscallError(errno.EINVAL)        # copy_msg: the copy buffer is too small
            return mtype, text
        del q.messages[i]
        q.cbytes -= len(text)
        usage(t.kernel).msg_bytes -= MSG_HEADER + len(text)
        q.rtime = now()
        q.lrpid = t.tg.tgid
        q.senders.wake_all()
        return mtype, text
    if flags & IPC_NOWAIT:
        raise SyscallError(errno.ENOMSG)
    if c is None:
        c = t.begin(MsgRecv(q, t, want, mode, 0x7FFFFFFF if flags & MSG_NOERROR else bufsz))
    q.receivers.append(c)
    t.block()


def _mode(msgtyp: int, flags: int) -> tuple[int, int]:
    """convert_mode: how to search, and for what type."""
    if flags & MSG_COPY:
        return SEARCH_NUMBER, msgtyp
    if msgtyp == 0:
        return SEARCH_ANY, 0
    if msgtyp < 0:
        return SEARCH_LESSEQUAL, LONG_MAX if msgtyp == -(1 << 63) else -msgtyp
    if flags & MSG_EXCEPT:
        return SEARCH_NOTEQUAL, msgtyp
    return SEARCH_EQUAL, msgtyp


def _wake_receivers(q: MsgQueue, err: int | None) -> None:
    """expunge_all: every parked receiver runs again (err: what it fails with, None to retry)."""
    for r in q.receivers:
        if r.live():
            if err is not None:
                r.got = err
            r.task.kernel.wake(r.task)
    q.receivers = []


def remove(k, ns_ids, q: MsgQueue) -> None:
    """freeque: the queue is gone; its waiters fail with EIDRM, its messages are freed."""
    ns_ids.remove(q)
    _wake_receivers(q, errno.EIDRM)
    q.senders.wake_all()
    usage(k).msg_bytes -= sum(MSG_HEADER + len(text) for _, text in q.messages)
    q.messages = []
    q.cbytes = 0


def stat(t, msqid: int, cmd: int) -> tuple[int, bytes]:
    """msgctl_stat: (the return value, the msqid64_ds bytes)."""
    i = ids(t)
    q = i.at_index(msqid) if cmd in (MSG_STAT, MSG_STAT_ANY) else i.check(msqid)
    if cmd != MSG_STAT_ANY and not ipcperms(t, i, q.perm, S_IRUGO):
        raise SyscallError(errno.EACCES)
    data = q.perm.pack(t) + MSQID_TAIL.pack(q.stime, q.rtime, q.ctime, q.cbytes, len(q.messages), q.qbytes,
                                            pid_seen(t, q.lspid), pid_seen(t, q.lrpid))
    return (0 if cmd == IPC_STAT else q.perm.id), data


def info(t, cmd: int) -> tuple[int, bytes]:
    """msgctl_info (IPC_INFO, MSG_INFO)."""
    i = ids(t)
    if cmd == MSG_INFO:
        nmsgs = sum(len(q.messages) for q in i.by_idx.values())
        nbytes = sum(q.cbytes for q in i.by_idx.values())
        vals = (len(i.by_idx), min(nmsgs, 0x7FFFFFFF), MSGMAX, MSGMNB, MSGMNI, MSGSSZ, min(nbytes, 0x7FFFFFFF))
    else:
        vals = (MSGPOOL, MSGMNB, MSGMAX, MSGMNB, MSGMNI, MSGSSZ, MSGMNB)
    return i.max_idx(), MSGINFO.pack(*vals, MSGSEG)


def ctl_down(t, msqid: int, cmd: int, raw: bytes | None) -> int:
    """msgctl_down: IPC_RMID and IPC_SET."""
    from sentry.userns import capable
    i = ids(t)
    q = ctl_check(t, i, msqid)
    if cmd == IPC_RMID:
        remove(t.kernel, i, q)
        return 0
    qbytes = MSQID_TAIL.unpack_from(raw, 48)[5]
    if qbytes > MSGMNB and not capable(t, None):
        raise SyscallError(errno.EPERM)
    q.perm.update(t, raw)
    q.qbytes = qbytes
    q.ctime = now()
    _wake_receivers(q, None)             # stricter permissions may now exclude them
    q.senders.wake_all()                 # a larger queue may take them
    return 0


def proc_lines(t) -> bytes:
    """/proc/sysvipc/msg (sysvipc_msg_proc_show), the reader's namespace."""
    from sentry.userns import gid_seen, uid_seen
    out = [b"       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid"
           b"      stime      rtime      ctime\n"]
    for q in ids(t).ordered():
        p = q.perm
        out.append(b"%10d %10d  %4o  %10u %10u %5u %5u %5u %5u %5u %5u %10u %10u %10u\n" % (
            p.key, p.id, p.mode, q.cbytes, len(q.messages), pid_seen(t, q.lspid), pid_seen(t, q.lrpid),
            uid_seen(t, p.uid), gid_seen(t, p.gid), uid_seen(t, p.cuid), gid_seen(t, p.cgid),
            q.stime, q.rtime, q.ctime))
    return b"".join(out)


__all__ = ["msgget", "send", "receive", "stat", "info", "ctl_down", "proc_lines", "IPC_INFO", "IPC_SET"]
