"""The keeper: the process that owns a library Sandbox's Sentry (runsc_py/api.py).

The caller forks a keeper, which runs `sentry.boot.run_sandbox` (the usual monitor + confined
Sentry pair).  The keeper watches a pipe whose other end only the caller holds: if the caller
dies, the keeper SIGKILLs itself and the Sentry follows (PR_SET_PDEATHSIG), its stubs and Gofer
after it.  `cleanup` is the last resort for a Sandbox that was never closed.
"""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time


def _preload() -> None:
    """Import the Sentry here once, so each fork starts with it loaded (and imports nothing)."""
    from sentry.boot import _preimport
    _preimport()


def _close_fds_except(keep: set[int]) -> None:
    """Close every fd but `keep` in a fresh fork: another sandbox's pipes must not live on in it."""
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _keeper(cfg, watch_r: int, err_w: int) -> None:
    """The forked keeper: run the sandbox; die at once if the caller goes."""
    code = 1
    try:
        os.setsid()            # the caller's terminal signals (^C) are the caller's to handle
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)

        def watch() -> None:
            while True:
                try:
                    if not os.read(watch_r, 1):
                        break
                except InterruptedError:
                    continue
                except OSError:
                    break
            os.kill(os.getpid(), signal.SIGKILL)
        threading.Thread(target=watch, daemon=True, name="caller-watch").start()
        from sentry.boot import BootError, run_sandbox
        try:
            code = run_sandbox(cfg)
        except BootError as e:
            os.write(err_w, str(e).encode()[:4000])
            code = e.exit_code
        except BaseException as e:         # noqa: BLE001 -- reported to the caller as one line
            os.write(err_w, f"{type(e).__name__}: {e}".encode()[:4000])
    finally:
        os._exit(code if isinstance(code, int) else 1)


def _reap(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if got:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def _cleanup(owner: int, pid: int, fds: list[int], tmpdir: str) -> None:
    """Last resort (a Sandbox never closed): kill the keeper, free what it held.  Only in the
    process that made it: a forked child of the caller exiting must not take it down."""
    if os.getpid() != owner:
        return
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid, 5.0)
    shutil.rmtree(tmpdir, ignore_errors=True)
