"""POSIX message queues (mq_overview(7)), in the shape of Linux's ipc/mqueue.c.

* A queue belongs to an IPC namespace: `ipcns_of(t).objects["mqueue"]` is an `MqNamespace`
  (names -> queues, the /proc/sys/fs/mqueue limits, the queue count).  The sandbox's own
  namespace is the Kernel's `sysv_ipcns`, the one System V IPC (sentry/ipc/__init__.py) uses,
  so both kinds of object live in one namespace object and `unshare(CLONE_NEWIPC)` starts
  from no queues.
* A queue is an inode of Linux's internal mqueue filesystem: it lives while it has a name or
  an open description (`MqFile`); `mq_unlink` takes the name away only.  Its memory is charged
  to the creator's RLIMIT_MSGQUEUE as Linux's mqueue_get_inode computes it, and given back when
  the last of both goes.
* Messages are kept per priority (highest first, FIFO within one).  Blocked senders and
  receivers wait FIFO in `senders`/`receivers`, and a message moves as Linux's pipelined_send
  and pipelined_receive move it: a sender that finds a receiver waiting hands the message to
  it (no notification then), a receiver that frees a slot takes the first waiting sender's
  message in.  The waiter's continuation (`MqWait`) holds what was handed over, so a waiter
  woken with its work done completes even if a signal came meanwhile, as wq_sleep's
  STATE_READY check wins over signal_pending.
* `poll` waits on `pollq` (POLLIN while messages, POLLOUT while room), as mqueue_poll_file.
* mq_notify: one registration per queue (its owner: a process), SIGEV_SIGNAL or SIGEV_NONE,
  used up by the message that makes an empty queue non-empty when no receiver was waiting;
  the signal is not sent to an owner that has exec'd since (self_exec_id: here its mm is no
  longer the one it registered from).  The owner's close of a descriptor of the queue removes
  it (mqueue_flush_file); one that exited or holds no descriptor of it any more is found
  lazily and counts as removed.

Single-threaded Sentry: no locks.
"""
from __future__ import annotations

import bisect
import collections
import errno
import time

from sentry.errors import SyscallError
from sentry.pipe import POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM
from sentry.task import Continuation
from sentry.vfs.file import O_ACCMODE, O_NONBLOCK, File, _seek_common, scatter
from sentry.vfs.inode import Stat
from sentry.waitq import WaitQueue

MQ_PRIO_MAX = 32768
HARD_MSGMAX, HARD_MSGSIZEMAX = 65536, 16 * 1024 * 1024
DFLT_QUEUESMAX, DFLT_MSG, DFLT_MSGMAX, DFLT_MSGSIZE, DFLT_MSGSIZEMAX = 256, 10, 10, 8192, 8192
FILENT_SIZE = 80
MSG_MSG_SIZE, TREE_NODE_SIZE = 48, 48        # sizeof(struct msg_msg), (struct posix_msg_tree_node)
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD = 0, 1, 2
SI_MESGQ = -3
MQUEUE_DEV = 0x13                              # st_dev of the internal mqueue mount
NAME_MAX = 255
_ino = iter(range(0x1000, 1 << 62))


class MqNamespace:
    """The queues of one IPC namespace and its /proc/sys/fs/mqueue knobs."""
    __slots__ = ("queues", "count", "queues_max", "msg_max", "msgsize_max", "msg_default", "msgsize_default")

    def __init__(self) -> None:
        self.queues: dict[bytes, MessageQueue] = {}
        self.count = 0                               # queues alive (named or open)
        self.queues_max = DFLT_QUEUESMAX
        self.msg_max, self.msgsize_max = DFLT_MSGMAX, DFLT_MSGSIZEMAX
        self.msg_default, self.msgsize_default = DFLT_MSG, DFLT_MSGSIZE


def ipcns_of(t):
    """`t`'s IPC namespace object (its own, or the sandbox's kept on the Kernel)."""
    ns = t.tg.ipcns
    if ns is None:
        k = t.kernel
        ns = getattr(k, "sysv_ipcns", None)
        if ns is None:
            from sentry.syscalls.namespaces import IPCNamespace
            ns = k.sysv_ipcns = IPCNamespace(None)
    return ns


def mq_ns(t) -> MqNamespace:
    objs = ipcns_of(t).objects
    m = objs.get("mqueue")
    if m is None:
        m = objs["mqueue"] = MqNamespace()
    return m


def _usage(k) -> dict:
    """Bytes charged to RLIMIT_MSGQUEUE per (kernel) uid, sandbox-wide (Linux's ucounts)."""
    u = getattr(k, "mq_usage", None)
    if u is None:
        u = k.mq_usage = {}
    return u


class MqWait(Continuation):
    """A blocked mq_timedsend/mq_timedreceive: its deadline (monotonic s), and what was handed
    over while it waited (a receiver's message; a sender's `done`)."""
    __slots__ = ("deadline", "msg", "prio", "done")

    def __init__(self, deadline, msg=None, prio=0) -> None:
        self.deadline = deadline
        self.msg = msg
        self.prio = prio
        self.done = False


class MessageQueue:
    """One queue (an mqueue inode)."""

    def __init__(self, ns: MqNamespace, k, mode: int, creds, maxmsg: int, msgsize: int) -> None:
        self.ns, self.k = ns, k
        self.ino = next(_ino)
        self.mode = mode & 0o7777
        self.uid, self.gid = creds.fsuid, creds.fsgid
        self.maxmsg, self.msgsize = maxmsg, msgsize
        self.prios: list[int] = []                   # priorities present, ascending
        self.msgs: dict[int, collections.deque] = {}
        self.curmsgs = 0
        self.qsize = 0
        self.senders, self.receivers, self.pollq = WaitQueue(), WaitQueue(), WaitQueue()
        self.notify = None         # (tg, sigev_notify, signo, value, mm, notifier userns) or None
        self.named = True
        self.opens = 0
        self.charged = (creds.ruid, 0)
        now = time.time_ns()
        self.atime = self.mtime = self.ctime = now

    # -- lifetime -------------------------------------------------------------------------------

    def charge(self, t) -> None:
        """mqueue_get_inode's RLIMIT_MSGQUEUE accounting: EMFILE past the creator's limit."""
        treesize = self.maxmsg * MSG_MSG_SIZE + min(self.maxmsg, MQ_PRIO_MAX) * TREE_NODE_SIZE
        nbytes = self.maxmsg * self.msgsize + treesize
        usage = _usage(self.k)
        uid = t.tg.creds.ruid
        if usage.get(uid, 0) + nbytes > t.tg.rlimits[12][0]:
            raise SyscallError(errno.EMFILE)
        usage[uid] = usage.get(uid, 0) + nbytes
        self.charged = (uid, nbytes)

    def maybe_free(self) -> None:
        if self.named or self.opens:
            return
        uid, nbytes = self.charged
        usage = _usage(self.k)
        usage[uid] = usage.get(uid, 0) - nbytes
        if usage[uid] <= 0:
            del usage[uid]
        self.charged = (uid, 0)
        self.ns.count -= 1

    # -- messages -------------------------------------------------------------------------------

    def insert(self, msg: bytes, prio: int) -> None:
        d = self.msgs.get(prio)
        if d is None:
            d = self.msgs[prio] = collections.deque()
            bisect.insort(self.prios, prio)
        d.append(msg)
        self.curmsgs += 1
        self.qsize += len(msg)

    def take(self) -> tuple[bytes, int]:
        prio = self.prios[-1]
        d = self.msgs[prio]
        msg = d.popleft()
        if not d:
            del self.msgs[prio]
            self.prios.pop()
        self.curmsgs -= 1
        self.qsize -= len(msg)
        return msg, prio

    def send(self, t, msg: bytes, prio: int) -> bool:
        """Queue or hand over `msg`; False when the queue is full (the caller waits or fails)."""
        if self.curmsgs >= self.maxmsg:
            return False
        if self.receivers.waiters:                   # pipelined_send: straight to the first waiter
            r = self.receivers.waiters[0]
            r.cont.msg, r.cont.prio = msg, prio
            t.kernel.wake(r)
        else:
            self.insert(msg, prio)
            if self.curmsgs == 1:
                self._do_notify(t)
        self.mtime = self.ctime = time.time_ns()
        self.pollq.wake_all(POLLIN | POLLRDNORM)
        return True

    def receive(self, t) -> tuple[bytes, int] | None:
        """The highest-priority oldest message, or None when empty; a waiting sender's message
        takes the freed slot (pipelined_receive)."""
        if not self.curmsgs:
            return None
        got = self.take()
        if self.senders.waiters:
            s = self.senders.waiters[0]
            self.insert(s.cont.msg, s.cont.prio)
            s.cont.done = True
            t.kernel.wake(s)
        self.atime = self.ctime = time.time_ns()
        self.pollq.wake_all(POLLOUT | POLLWRNORM)
        return got

    # -- notification ---------------------------------------------------------------------------

    def owner_alive(self):
        """The registration, after dropping it lazily if its owner has exited or holds no
        descriptor of this queue (every such owner closed one, which removed it on Linux)."""
        n = self.notify
        if n is None:
            return None
        tg = n[0]
        if tg.exiting or tg.zombie or not any(isinstance(f, MqFile) and f.queue is self
                                             for f in tg.fds.files.values()):
            self.notify = None
            return None
        return n

    def _do_notify(self, t) -> None:
        n = self.owner_alive()
        if n is None:
            return
        self.notify = None
        tg, how, signo, value, mm, _ = n
        if how == SIGEV_SIGNAL and signo and tg.mm is mm:
            from sentry import process, signals
            from sentry.pidns import to_ns
            from sentry.userns import uid_seen
            pid = to_ns(tg.pidns, t.tg.tgid)
            uid = uid_seen(tg.leader or t, t.tg.creds.ruid) if tg.leader is not None else t.tg.creds.ruid
            process.send_to_group(t.kernel, tg, signo, signals.siginfo(signo, SI_MESGQ, pid=pid, uid=uid,
                                                                      value=value))

    def status_line(self, t) -> bytes:
        """What read(2) of the queue gives (mqueue_read_file)."""
        n = self.owner_alive()
        how = n[1] if n is not None else 0
        signo = n[2] if n is not None and n[1] == SIGEV_SIGNAL else 0
        pid = 0
        if n is not None:
            from sentry.pidns import to_ns
            pid = to_ns(t.tg.pidns, n[0].tgid)
        return f"QSIZE:{self.qsize:<10} NOTIFY:{how:<5} SIGNO:{signo:<5} NOTIFY_PID:{pid:<6}\n".encode()


class MqFile(File):
    """An open queue description (what mq_open returns): poll, read of the status line, seek."""

    def __init__(self, queue: MessageQueue, flags: int) -> None:
        super().__init__(flags)
        self.queue = queue
        queue.opens += 1

    def stat(self) -> Stat:
        q = self.queue
        return Stat(q.ino, MQUEUE_DEV, 0o100000 | q.mode, 1 if q.named else 0, q.uid, q.gid, 0, FILENT_SIZE,
                    4096, 0, q.atime, q.mtime, q.ctime)

    @property
    def can_read(self) -> bool:
        return (self.flags & O_ACCMODE) in (0, 2)

    def pread(self, t, dsts, offset: int) -> int:
        if not self.can_read:
            raise SyscallError(errno.EBADF)
        data = self.queue.status_line(t)
        return scatter(dsts, data[offset:]) if offset < len(data) else 0

    def read(self, t, dsts) -> int:
        n = self.pread(t, dsts, self.offset)
        self.offset += n
        return n

    def write(self, t, srcs) -> int:
        if (self.flags & O_ACCMODE) not in (1, 2):
            raise SyscallError(errno.EBADF)
        raise SyscallError(errno.EINVAL)

    def pwrite(self, t, srcs, offset: int) -> int:
        return self.write(t, srcs)

    def seek(self, offset: int, whence: int) -> int:
        return _seek_common(self, offset, whence, FILENT_SIZE)

    def readiness(self, events: int) -> int:
        q = self.queue
        r = (POLLIN | POLLRDNORM) if q.curmsgs else 0
        if q.curmsgs < q.maxmsg:
            r |= POLLOUT | POLLWRNORM
        return r & events

    def wait_queues(self) -> list:
        return [self.queue.pollq]

    def flush(self, t) -> None:
        """A close by the registered process removes its notification (mqueue_flush_file)."""
        q = self.queue
        if q.notify is not None and q.notify[0] is t.tg:
            q.notify = None

    def release(self) -> None:
        q = self.queue
        q.opens -= 1
        q.maybe_free()


def nonblocking(f: MqFile) -> bool:
    return bool(f.flags & O_NONBLOCK)
