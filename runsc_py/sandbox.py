"""Calling into the Sentry: `run_sandbox` with the front end's error rules.

`sentry.boot.run_sandbox(cfg)` runs the sandbox in the calling process and
returns the status to exit with.  It may fork (Gofer, stubs); if control
ever comes back to us in a process other than the caller, that process must
leave at once with `os._exit` -- it must not run the CLI's cleanup (which
would, for example, delete the container's state directory).

The Sentry is imported lazily, on first use, so every command that does not
run a sandbox (spec, state, list, kill, ...) works without it.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

from runsc_py.errors import UserError
from sentry.config import SandboxConfig


def load_run_sandbox() -> Callable[[SandboxConfig], int]:
    """Import `sentry.boot.run_sandbox`, or raise a one-line UserError."""
    try:
        from sentry.boot import run_sandbox
    except Exception as e:        # ImportError, or an error inside the Sentry's imports
        raise UserError(f"cannot load the Sentry (sentry.boot.run_sandbox): "
                        f"{type(e).__name__}: {e}") from None
    return run_sandbox


def describe(e: BaseException) -> str:
    """One line saying what went wrong inside the Sentry."""
    if isinstance(e, OSError) and e.strerror:
        text = f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    else:
        text = str(e).strip() or type(e).__name__
    return " ".join(text.split())


def run_sandbox_guarded(cfg: SandboxConfig, debug_fd: int | None = None) -> int:
    """Run the sandbox here; return its exit status, or raise UserError on a Sentry failure.

    With `debug_fd` set, a failure's traceback is written there as well.
    """
    run_sandbox = load_run_sandbox()
    caller = os.getpid()
    try:
        status = run_sandbox(cfg)
    except KeyboardInterrupt:
        if os.getpid() != caller:
            os._exit(130)
        raise
    except SystemExit as e:
        if os.getpid() != caller:
            os._exit(e.code if isinstance(e.code, int) else 1)
        return e.code if isinstance(e.code, int) else 1
    except BaseException as e:
        if os.getpid() != caller:
            _flush_quietly()
            os._exit(1)
        if debug_fd is not None:
            import traceback
            try:
                os.write(debug_fd, "".join(traceback.format_exception(e)).encode())
            except OSError:
                pass
        if isinstance(e, UserError):
            raise
        code = getattr(e, "exit_code", 1)     # sentry.boot.BootError carries one (127: no such program)
        if type(e).__name__ == "BootError":
            raise UserError(describe(e), code if isinstance(code, int) else 1) from None
        raise UserError(f"sandbox failed: {describe(e)}", code if isinstance(code, int) else 1) from None
    if os.getpid() != caller:
        _flush_quietly()
        os._exit(status if isinstance(status, int) else 1)
    if not isinstance(status, int) or isinstance(status, bool):
        raise UserError(f"sandbox failed: run_sandbox returned {status!r}, not an exit status")
    return status & 0xFF if status >= 0 else 1


def _flush_quietly() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
