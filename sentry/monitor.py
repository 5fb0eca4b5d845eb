"""The monitor: the unconfined parent of a confined Sentry.

It relays the host signals that runc forwards (TERM, INT, HUP, QUIT, USR1,
USR2, WINCH, CONT) to the Sentry, which hands them to the container's PID 1,
and returns the Sentry's exit status.  A start-up failure the Sentry
reported on the error pipe becomes a one-line BootError here.
"""
from __future__ import annotations

import os
import signal

RELAYED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
           signal.SIGWINCH, signal.SIGCONT)


def monitor(pid: int, err_fd: int, boot_error) -> int:
    def relay(sig, _frame):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    old = {s: signal.signal(s, relay) for s in RELAYED}
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    msg = b""
    while True:
        chunk = os.read(err_fd, 4096)
        if not chunk:
            break
        msg += chunk
    os.close(err_fd)
    if msg:
        code, _, text = msg.decode("utf-8", "replace").partition(" ")
        raise boot_error(text, int(code) if code.isdigit() else 1)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
