"""mq_open, mq_unlink, mq_timedsend, mq_timedreceive, mq_notify, mq_getsetattr (ipc/mqueue.c).

Thin handlers over sentry/mqueue.py; the checks come in Linux's order (a bad timeout before
the descriptor, the descriptor before the sizes, EMSGSIZE before copying the message in).
Names are what glibc passes: the part after the leading slash (glibc itself answers EINVAL
to a name without one), looked up as one path component of the mqueue filesystem: empty is
ENOENT, "." "..", or a slash inside EACCES, longer than NAME_MAX ENAMETOOLONG.
"""
from __future__ import annotations

import errno
import struct
import time as _time

from sentry.ipc import mqueue as mq
from sentry.errors import SyscallError
from sentry.syscalls.args import s32, ts_ns, u32
from sentry.syscalls.registry import Support, syscall
from sentry.vfs.file import O_ACCMODE, O_CREAT, O_EXCL, O_NONBLOCK
from sentry.vfs.inode import MAY_READ, MAY_WRITE, may_access

MQ_ATTR = struct.Struct("<qqqq32x")            # mq_flags, mq_maxmsg, mq_msgsize, mq_curmsgs, reserved
SIGEVENT = struct.Struct("<Qii48x")            # sigev_value, sigev_signo, sigev_notify, the union
TIMESPEC = struct.Struct("<qq")
PATH_MAX = 4096
_NSIG = 64


def _name(t, addr: int) -> bytes:
    """getname and lookup_one_len on the mqueue root."""
    if not addr:
        raise SyscallError(errno.EFAULT)
    name = t.mm.cstring(addr, PATH_MAX - 1)
    if not name:
        raise SyscallError(errno.ENOENT)
    if name in (b".", b"..") or b"/" in name:
        raise SyscallError(errno.EACCES)
    return name


def _queue_file(t, fd: int) -> mq.MqFile:
    f = t.fds.get(s32(fd))
    if not isinstance(f, mq.MqFile):
        raise SyscallError(errno.EBADF)
    return f


def _deadline(t, addr: int) -> float | None:
    """prepare_timeout: an absolute CLOCK_REALTIME timespec as a monotonic deadline (seconds)."""
    if not addr:
        return None
    sec, nsec = t.mm.read_struct(addr, TIMESPEC)
    ns = ts_ns(sec, nsec)                          # EINVAL for a negative or unnormalised one
    return _time.monotonic() + (ns - _time.clock_gettime_ns(0)) / 1e9


def _wait(t, q: mq.MessageQueue, st: mq.MqWait, queue) -> None:
    """wq_sleep: park on `queue` until handed a result, the deadline, or a signal."""
    if st.deadline is not None and st.deadline <= _time.monotonic():
        raise SyscallError(errno.ETIMEDOUT)
    t.begin(st)
    t.block([queue], deadline=st.deadline)


def _reserve_fd(t) -> None:
    """EMFILE when no descriptor below RLIMIT_NOFILE is free (checked before a queue is made)."""
    files, fd = t.fds.files, t.fds.free_hint
    while fd in files:
        fd += 1
    if fd >= t.tg.rlimits[7][0]:
        raise SyscallError(errno.EMFILE)


def _check_perm(t, q: mq.MessageQueue, oflag: int) -> None:
    acc = {0: MAY_READ, 1: MAY_WRITE, 2: MAY_READ | MAY_WRITE}[oflag & O_ACCMODE]
    st = mq.Stat(q.ino, mq.MQUEUE_DEV, 0o100000 | q.mode, 1, q.uid, q.gid, 0, 0, 0, 0, 0, 0, 0)
    if not may_access(st, t.tg.creds, acc):
        raise SyscallError(errno.EACCES)


@syscall("mq_open", Support.PARTIAL, "the internal mqueue filesystem only: /dev/mqueue mounts are empty "
         "directories (queues are not listed or opened there)")
def mq_open(t, name, oflag, mode, attr):
    """mq_open(3)'s system call: the name without its leading slash."""
    oflag, mode = s32(oflag), mode & 0xFFFF
    a = t.mm.read_struct(attr, MQ_ATTR) if attr else None          # EFAULT first, as Linux
    n = _name(t, name)
    _reserve_fd(t)                                   # get_unused_fd_flags: EMFILE before the lookup
    ns = mq.mq_ns(t)
    q = ns.queues.get(n)
    if q is None:
        if len(n) > mq.NAME_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        if not oflag & O_CREAT:
            raise SyscallError(errno.ENOENT)
        privileged = t.tg.creds.euid == 0
        if ns.count >= ns.queues_max and not privileged:
            raise SyscallError(errno.ENOSPC)
        maxmsg, msgsize = (a[1], a[2]) if a is not None else (ns.msg_default, ns.msgsize_default)
        if maxmsg <= 0 or msgsize <= 0:
            raise SyscallError(errno.EINVAL)
        if privileged:
            if maxmsg > mq.HARD_MSGMAX or msgsize > mq.HARD_MSGSIZEMAX:
                raise SyscallError(errno.EINVAL)
        elif maxmsg > ns.msg_max or msgsize > ns.msgsize_max:
            raise SyscallError(errno.EINVAL)
        q = mq.MessageQueue(ns, t.kernel, mode & ~t.tg.fs.umask, t.tg.creds, maxmsg, msgsize)
        q.charge(t)                                  # EMFILE past RLIMIT_MSGQUEUE
        ns.count += 1
        ns.queues[n] = q
    else:
        if oflag & O_CREAT and oflag & O_EXCL:
            raise SyscallError(errno.EEXIST)
        if oflag & O_ACCMODE == O_ACCMODE:
            raise SyscallError(errno.EINVAL)
        _check_perm(t, q, oflag)
    f = mq.MqFile(q, (oflag & (O_ACCMODE | O_NONBLOCK)))
    try:
        # get_unused_fd_flags(O_CLOEXEC): a queue descriptor never survives exec.
        return t.fds.install(f, True, limit=t.tg.rlimits[7][0])
    except SyscallError:
        f.release()
        raise


@syscall("mq_unlink")
def mq_unlink(t, name):
    """mq_unlink(3): the name goes; the queue lives on while descriptors of it are open."""
    n = _name(t, name)
    ns = mq.mq_ns(t)
    q = ns.queues.get(n)
    if q is None:
        if len(n) > mq.NAME_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        raise SyscallError(errno.ENOENT)
    c = t.tg.creds
    # The mqueue root is 01777: the sticky bit lets only the owner (or CAP_FOWNER) unlink.
    if c.fsuid != 0 and c.fsuid != q.uid:
        raise SyscallError(errno.EPERM)
    del ns.queues[n]
    q.named = False
    q.ctime = _time.time_ns()
    q.maybe_free()
    return 0


@syscall("mq_timedsend")
def mq_timedsend(t, mqdes, msg_ptr, msg_len, msg_prio, abs_timeout):
    """mq_timedsend(3)."""
    st = t.resume(mq.MqWait)
    if st is not None:
        if st.done:
            return 0
        if t.timed_out:
            raise SyscallError(errno.ETIMEDOUT)
    prio = u32(msg_prio)
    if prio >= mq.MQ_PRIO_MAX:
        raise SyscallError(errno.EINVAL)
    deadline = _deadline(t, abs_timeout) if st is None else st.deadline
    f = _queue_file(t, mqdes)
    if (f.flags & O_ACCMODE) not in (1, 2):
        raise SyscallError(errno.EBADF)
    q = f.queue
    if msg_len > q.msgsize:
        raise SyscallError(errno.EMSGSIZE)
    msg = st.msg if st is not None else (t.mm.read(msg_ptr, msg_len) if msg_len else b"")
    if q.send(t, msg, prio):
        return 0
    if mq.nonblocking(f):
        raise SyscallError(errno.EAGAIN)
    _wait(t, q, st or mq.MqWait(deadline, msg, prio), q.senders)


@syscall("mq_timedreceive")
def mq_timedreceive(t, mqdes, msg_ptr, msg_len, msg_prio, abs_timeout):
    """mq_timedreceive(3): the length of the message taken."""
    st = t.resume(mq.MqWait)
    got = None
    if st is not None and st.msg is not None:
        got = (st.msg, st.prio)
    elif st is not None and t.timed_out:
        raise SyscallError(errno.ETIMEDOUT)
    if got is None:
        deadline = _deadline(t, abs_timeout) if st is None else st.deadline
        f = _queue_file(t, mqdes)
        if not f.can_read:
            raise SyscallError(errno.EBADF)
        q = f.queue
        if msg_len < q.msgsize:
            raise SyscallError(errno.EMSGSIZE)
        got = q.receive(t)
        if got is None:
            if mq.nonblocking(f):
                raise SyscallError(errno.EAGAIN)
            _wait(t, q, st or mq.MqWait(deadline), q.receivers)
    msg, prio = got
    # The message is taken already: a fault copying it out loses it, as on Linux.
    if msg_prio:
        t.mm.write(msg_prio, struct.pack("<I", prio))
    if msg:
        t.mm.write(msg_ptr, msg)
    return len(msg)


@syscall("mq_notify", Support.PARTIAL, "SIGEV_SIGNAL and SIGEV_NONE; SIGEV_THREAD needs a netlink socket, "
         "which the Sentry has none of (EBADF/ENOTSOCK/EINVAL as Linux for what is given)")
def mq_notify(t, mqdes, notification):
    """mq_notify(3): register (or with NULL remove) this process's notification."""
    n = None
    if notification:
        value, signo, how = SIGEVENT.unpack(t.mm.read(notification, SIGEVENT.size))
        if how not in (mq.SIGEV_NONE, mq.SIGEV_SIGNAL, mq.SIGEV_THREAD):
            raise SyscallError(errno.EINVAL)
        if how == mq.SIGEV_SIGNAL and not 0 <= signo <= _NSIG:
            raise SyscallError(errno.EINVAL)
        if how == mq.SIGEV_THREAD:
            t.mm.read(value, 32)                    # the notification cookie: EFAULT
            sock = t.fds.get(signo)                 # netlink_getsockbyfd: EBADF
            from sentry.socket.host import HostSocket
            from sentry.socket.unix import UnixSocket      # no socket here is AF_NETLINK
            raise SyscallError(errno.EINVAL if isinstance(sock, (HostSocket, UnixSocket)) else errno.ENOTSOCK)
        n = (t.tg, how, signo, value, t.tg.mm, t.tg.userns)
    f = _queue_file(t, mqdes)
    q = f.queue
    if n is None:
        if q.notify is not None and q.notify[0] is t.tg:
            q.notify = None
        return 0
    if q.owner_alive() is not None:
        raise SyscallError(errno.EBUSY)
    q.notify = n
    return 0


@syscall("mq_getsetattr")
def mq_getsetattr(t, mqdes, new, old):
    """mq_getsetattr(2): the attributes; only O_NONBLOCK of the description can change."""
    flags = None
    if new:
        flags = t.mm.read_struct(new, MQ_ATTR)[0]
        if flags & ~O_NONBLOCK:
            raise SyscallError(errno.EINVAL)
    f = _queue_file(t, mqdes)
    q = f.queue
    cur = (f.flags & O_NONBLOCK, q.maxmsg, q.msgsize, q.curmsgs)
    if flags is not None:
        f.flags = (f.flags & ~O_NONBLOCK) | (flags & O_NONBLOCK)
        q.atime = q.ctime = _time.time_ns()
    if old:
        t.mm.write(old, MQ_ATTR.pack(*cur))
    return 0


# /proc/sys/fs/mqueue: the reader's namespace's limits (ipc/mq_sysctl.c), each with its range.
PROC_KNOBS = {b"queues_max": ("queues_max", 0, 0x7FFFFFFF), b"msg_max": ("msg_max", 1, mq.HARD_MSGMAX),
              b"msgsize_max": ("msgsize_max", 128, mq.HARD_MSGSIZEMAX),
              b"msg_default": ("msg_default", 1, mq.HARD_MSGMAX),
              b"msgsize_default": ("msgsize_default", 128, mq.HARD_MSGSIZEMAX)}


def proc_mqueue_dir(fs):
    """/proc/sys/fs/mqueue: reads the opener's IPC namespace's limits; a write (root only, as
    the files' 0644 says) within proc_dointvec_minmax's range changes them, else EINVAL."""
    from sentry.vfs.procfs import O_PATH, File, ProcDir, ProcFile, SeqFile

    class KnobSeq(SeqFile):
        def __init__(self, flags, dentry, t, field, lo, hi) -> None:
            self.ns, self.field, self.lo, self.hi = mq.mq_ns(t), field, lo, hi
            super().__init__(flags, dentry, b"%d\n" % getattr(self.ns, field), writable=True)

        def write(self, t, srcs) -> int:
            data = b"".join(bytes(s) for s in srcs)
            if t.tg.creds.fsuid != 0:
                raise SyscallError(errno.EACCES)
            try:
                v = int(data.split(b"\0")[0].strip() or b"x", 10)
            except ValueError:
                raise SyscallError(errno.EINVAL) from None
            if not self.lo <= v <= self.hi:
                raise SyscallError(errno.EINVAL)
            setattr(self.ns, self.field, v)
            return len(data)

        def pwrite(self, t, srcs, offset: int) -> int:
            return self.write(t, srcs)

    class Knob(ProcFile):
        def __init__(self, name: bytes) -> None:
            super().__init__(fs, ("sys", b"fs", b"mqueue", name), None, None, 0o644)
            self.spec = PROC_KNOBS[name]

        def open(self, t, dentry, flags: int):
            if flags & O_PATH:
                return File(flags, dentry, dentry.mount)
            return KnobSeq(flags, dentry, t, *self.spec)

    entries = {name: (lambda name=name: Knob(name)) for name in PROC_KNOBS}
    return ProcDir(fs, ("sys", b"fs", b"mqueue"), lambda: entries)
