"""Lifelines: the host processes a sandbox cannot outlive.

A sandbox's files come from its Gofers (one for the rootfs, one per bind mount).  If one dies
(`kill -9`, an OOM kill, a bug), every later file operation would fail with EIO and the
application would limp on, or hang, with nothing said.  gVisor ends the sandbox instead; so do
we: the Sentry holds a pidfd for each Gofer (opened before confinement: pidfd_open is not on
its allowlist) and the task loop polls them whenever it waits on the host, and a Gofer client
that reads end-of-file on its channel reports the loss at once.  Either way the sandbox ends with
one line that names what died, and a non-zero exit status (EXIT_LOST).

Stubs need no lifeline: a dead stub is an ExitEvent of its own tasks (that process is killed);
and a dead Sentry takes everything with it (PTRACE_O_EXITKILL, the Gofers' PDEATHSIG).
"""
from __future__ import annotations

import os
import select

# runsc-py's exit status when the sandbox ends because a part of it died (not the application).
EXIT_LOST = 255


class Lifelines:
    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self.what: dict[int, str] = {}                 # pidfd -> what it stands for
        self.poll_fds: list[tuple[int, int]] = []      # (pidfd, POLLIN): what the task loop polls
        self.lost_what: str | None = None

    def watch(self, pid: int, what: str) -> None:
        """Tie the sandbox's life to host process `pid`, described as `what` in the last line."""
        fd = os.pidfd_open(pid)
        os.set_inheritable(fd, False)
        self.what[fd] = what
        self.poll_fds.append((fd, select.POLLIN))

    def check(self) -> None:
        """Called when a lifeline fd polled ready: end the sandbox if its process is gone."""
        for fd, what in self.what.items():
            p = select.poll()
            p.register(fd, select.POLLIN)
            if p.poll(0):
                self.lost(what)
                return

    def lost(self, what: str) -> None:
        """`what` died: end the sandbox (once) with one clear line."""
        if self.lost_what is not None:
            return
        self.lost_what = what
        self.kernel.log.warning(f"{what} died: ending the sandbox")
        if self.kernel.exit_code is None:
            self.kernel.exit_code = EXIT_LOST

    def close(self) -> None:
        for fd in self.what:
            try:
                os.close(fd)
            except OSError:
                pass
        self.what.clear()
        self.poll_fds.clear()
