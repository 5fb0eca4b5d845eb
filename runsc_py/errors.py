"""Errors for the user, reported the way runc reports them.

Every failure a user can cause (bad flags, bad bundle, unknown container,
wrong lifecycle state) is a `UserError`: one line, no traceback.  `cli.main`
catches it and hands it to the `ErrorLog`, which writes

* one line on stderr, `runsc-py: MESSAGE`, always; and
* when `--log FILE` was given, one entry in the file in runc's shape:
  `--log-format json` -> `{"level":"error","msg":"...","time":"RFC3339"}`,
  `--log-format text` -> `time="..." level=error msg="..."` (logrus text).

containerd's shim reads the json log to surface the reason of a failed
command, and only the exit status otherwise, so both shapes matter.  The log
file is opened only when something is written: the detached Sentry forked by
`create` must not inherit it.
"""
from __future__ import annotations

import datetime
import json
import sys


class UserError(Exception):
    """A failure caused by the user's input or the container's state: one line, exit 1."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.message = " ".join(message.split("\n"))
        self.exit_code = exit_code


def _now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ErrorLog:
    """Where errors (and, with --debug, debug lines) go."""

    def __init__(self, path: str | None = None, fmt: str = "text", debug: bool = False):
        self.path = path
        self.fmt = fmt
        self.debug_enabled = debug

    def _entry(self, level: str, msg: str) -> str:
        if self.fmt == "json":
            return json.dumps({"level": level, "msg": msg, "time": _now_rfc3339()}, separators=(",", ":"))
        return f'time="{_now_rfc3339()}" level={level} msg={json.dumps(msg)}'

    def _append(self, line: str) -> bool:
        if not self.path:
            return False
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
            return True
        except OSError:
            return False

    def error(self, msg: str) -> None:
        """Record an error: in the log file (if any) and as one line on stderr."""
        self._append(self._entry("error", msg))
        try:
            sys.stderr.write(f"runsc-py: {msg}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def warning(self, msg: str) -> None:
        """Record a warning: in the log file (if any), else one line on stderr."""
        if not self._append(self._entry("warning", msg)):
            try:
                sys.stderr.write(f"runsc-py: warning: {msg}\n")
            except (OSError, ValueError):
                pass

    def debug(self, msg: str) -> None:
        """Record a debug line when --debug is on (to the log file, else stderr)."""
        if not self.debug_enabled:
            return
        entry = self._entry("debug", msg)
        if not self._append(entry):
            try:
                sys.stderr.write(entry + "\n")
            except (OSError, ValueError):
                pass


_current = ErrorLog()


def set_log(log: ErrorLog) -> None:
    """Install the log the global flags asked for (done once, by the CLI group)."""
    global _current
    _current = log


def log() -> ErrorLog:
    """The log installed by the CLI (stderr only until the flags are parsed)."""
    return _current
