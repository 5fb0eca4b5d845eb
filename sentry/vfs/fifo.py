"""Named pipes (FIFOs): a Sentry pipe per FIFO inode, with fifo(7)'s open rules.

A FIFO found on any filesystem (the Gofer's rootfs, tmpfs, the overlay) is
never opened on the host: its data only ever flows between sandbox
processes, so the Sentry's own `Pipe` serves it, keyed by (filesystem,
inode number) so every name of the FIFO reaches the same pipe.  This also
gives open(2) its blocking semantics, which a Gofer-opened host FIFO
(always O_NONBLOCK, so the Gofer never hangs) could not:

* O_RDONLY waits for a writer, O_WRONLY for a reader; O_RDWR never waits;
* O_RDONLY|O_NONBLOCK succeeds at once; O_WRONLY|O_NONBLOCK without a
  reader is ENXIO.

A task waiting in open(2) counts as a peer for the other side (Linux counts
it as a reader/writer before it sleeps).  Waiting is the usual restartable
block: the task's continuation is a `_Wait` token, so a wait that a
signal ended (EINTR or restart) stops counting on its own.
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError
from sentry.pipe import Pipe, PipeFile
from sentry.task import Continuation
from sentry.vfs.file import O_ACCMODE, O_NONBLOCK, O_RDONLY, O_RDWR

class _Wait(Continuation):
    __slots__ = ("seen",)

    def __init__(self, seen: int) -> None:
        self.seen = seen             # the other side's open count when this wait began


class _Fifo:
    def __init__(self) -> None:
        self.pipe = Pipe(named=True)
        self.r_opens = 0
        self.w_opens = 0
        self.r_wait: dict = {}       # task -> _Wait of tasks blocked opening for reading
        self.w_wait: dict = {}

    @staticmethod
    def live(waiting: dict) -> int:
        for t in [t for t, tok in waiting.items() if t.cont is not tok or t.exited]:
            del waiting[t]
        return len(waiting)


class FifoFile(PipeFile):
    """One end of a named pipe: pipe I/O, the FIFO inode's stat."""

    def __init__(self, pipe: Pipe, flags: int, dentry) -> None:
        super().__init__(pipe, flags)
        self.dentry = dentry
        self.mount = dentry.mount

    def stat(self):
        return self.dentry.inode.stat()


def open_fifo(t, inode, dentry, flags: int) -> FifoFile:
    fifos = t.kernel.fifos              # (filesystem, inode number) -> _Fifo, the kernel's table
    key = (id(inode.fs), inode.ino)
    fifo = fifos.get(key)
    if fifo is None:
        fifo = fifos[key] = _Fifo()
    p = fifo.pipe
    acc = flags & O_ACCMODE
    pipe_flags = acc | (flags & O_NONBLOCK)
    tok = t.resume(_Wait)
    if acc == O_RDONLY:
        if not flags & O_NONBLOCK and p.writers == 0 and not fifo.live(fifo.w_wait) and \
                (tok is None or tok.seen == fifo.w_opens):
            _wait(t, fifo.r_wait, tok, fifo.w_opens, p)
        fifo.r_wait.pop(t, None)
        f = FifoFile(p, pipe_flags, dentry)
        fifo.r_opens += 1
    elif acc == O_RDWR:
        f = FifoFile(p, pipe_flags, dentry)
        fifo.r_opens += 1
        fifo.w_opens += 1
    else:
        readers = p.readers + fifo.live(fifo.r_wait)
        if readers == 0 and (tok is None or tok.seen == fifo.r_opens):
            if flags & O_NONBLOCK:
                raise SyscallError(errno.ENXIO)
            _wait(t, fifo.w_wait, tok, fifo.r_opens, p)
        fifo.w_wait.pop(t, None)
        f = FifoFile(p, pipe_flags, dentry)
        fifo.w_opens += 1
    p.waitq.wake_all()
    return f


def _wait(t, waiting: dict, tok, other_opens: int, p) -> None:
    if tok is None:
        tok = t.begin(_Wait(other_opens))
        # A peer waiting on the other side may proceed now -- on the first wait only: woken again
        # with nothing new, waking the queue would wake the other waiters of this side, which
        # wake this one... (two threads opening one FIFO for writing spun the Sentry forever).
        p.waitq.wake_all()
    waiting[t] = tok
    t.block([p.waitq])
