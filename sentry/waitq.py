"""WaitQueue: a list of parked tasks, woken explicitly.

The Sentry is single-threaded, so there is no locking.  A handler that
cannot finish (empty pipe, wait4 with no exited child, a sleep) calls
`task.block(...)`, which parks the task on zero or more wait queues and/or
a deadline and unwinds the handler.  When woken, the task re-runs the same
syscall from its saved registers: the restartable shape that Linux's own
blocking paths have.  State that must survive the restart (a sleep's
deadline, the bytes already moved) lives in the task's typed continuation
(`Task.begin`/`Task.resume`, sentry/task.py), ended when the syscall completes.
"""
from __future__ import annotations


class WaitQueue:
    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: list = []

    def add(self, task) -> None:
        self.waiters.append(task)

    def remove(self, task) -> None:
        try:
            self.waiters.remove(task)
        except ValueError:
            pass

    def wake_all(self) -> None:
        waiters, self.waiters = self.waiters, []
        for t in waiters:
            t.kernel.wake(t)

    def wake_one(self) -> bool:
        if self.waiters:
            t = self.waiters.pop(0)
            t.kernel.wake(t)
            return True
        return False

    def __len__(self) -> int:
        return len(self.waiters)
