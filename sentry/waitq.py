"""WaitQueue: a list of parked tasks, woken explicitly.

The Sentry is single-threaded, so there is no locking.  A handler that
cannot finish (empty pipe, wait4 with no exited child, a sleep) calls
`task.block(...)`, which parks the task on zero or more wait queues and/or
a deadline and unwinds the handler.  When woken, the task re-runs the same
syscall from its saved registers: the restartable shape that Linux's own
blocking paths have.  State that must survive the restart (a sleep's
deadline, the bytes already moved) lives in the task's typed continuation
(`Task.begin`/`Task.resume`, sentry/task.py), ended when the syscall completes.

A queue can also have watchers: callables told of every wake, with the wake's
poll mask (`key`, 0 when the waker does not say) -- what Linux's wait-queue
callbacks give epoll, so an edge-triggered registration sees each new event
(a second write to a pipe whose first byte is still unread) and not only a
change of readiness.
"""
from __future__ import annotations


class WaitQueue:
    __slots__ = ("waiters", "watchers")

    def __init__(self) -> None:
        self.waiters: list = []
        self.watchers: list | None = None

    def add(self, task) -> None:
        self.waiters.append(task)

    def remove(self, task) -> None:
        try:
            self.waiters.remove(task)
        except ValueError:
            pass

    def watch(self, fn) -> None:
        if self.watchers is None:
            self.watchers = []
        self.watchers.append(fn)

    def unwatch(self, fn) -> None:
        if self.watchers is not None:
            try:
                self.watchers.remove(fn)
            except ValueError:
                pass

    def wake_all(self, key: int = 0) -> None:
        if self.watchers:
            for fn in list(self.watchers):
                fn(key)
        waiters, self.waiters = self.waiters, []
        for t in waiters:
            t.kernel.wake(t)

    def wake_one(self, key: int = 0) -> bool:
        if self.watchers:
            for fn in list(self.watchers):
                fn(key)
        if self.waiters:
            t = self.waiters.pop(0)
            t.kernel.wake(t)
            return True
        return False

    def __len__(self) -> int:
        return len(self.waiters)
