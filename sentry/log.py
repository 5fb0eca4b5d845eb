"""The Sentry's log: warnings, --debug lines and --strace lines.

Written to the fd the front end chose (`--debug-log`/`--log`), or stderr.
The fd is opened before start-up, so logging never opens a host path.
"""
from __future__ import annotations

import os
import time


class SentryLog:
    def __init__(self, fd: int | None, debug: bool) -> None:
        self.fd = 2 if fd is None else fd
        self.debug_enabled = debug

    def _write(self, level: str, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {level} runsc-py[{os.getpid()}]: {msg}\n"
        try:
            os.write(self.fd, line.encode("utf-8", "backslashreplace"))
        except OSError:
            pass

    def warning(self, msg: str) -> None:
        self._write("W", msg)

    def debug(self, msg: str) -> None:
        if self.debug_enabled:
            self._write("D", msg)

    def strace(self, line: str) -> None:
        try:
            os.write(self.fd, (line + "\n").encode("utf-8", "backslashreplace"))
        except OSError:
            pass
