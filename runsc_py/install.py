"""`runsc-py install` / `uninstall`: register the runtime in Docker's daemon.json.

Like `runsc install`, this edits one key -- `runtimes.NAME` -- and keeps
every other key and its order.  A file that is not a JSON object (or whose
`runtimes` is not an object) is refused with one line and left untouched:
we never rewrite what we could not parse.  The new file is written beside
the old one and renamed over it, keeping its mode, so dockerd never reads a
half-written daemon.json.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from typing import Any

from runsc_py.errors import UserError

DEFAULT_DAEMON_JSON = "/etc/docker/daemon.json"
DEFAULT_RUNTIME = "runsc-py"


def runtime_path(explicit: str | None) -> str:
    """The absolute path Docker should run: --path, this script, or `runsc-py` on PATH."""
    if explicit:
        path = os.path.abspath(explicit)
    elif os.path.basename(sys.argv[0]) == "runsc-py":
        path = os.path.abspath(sys.argv[0])
    else:
        found = shutil.which("runsc-py")
        if not found:
            raise UserError("runsc-py is not on PATH (install it with pip, or give --path)")
        path = os.path.abspath(found)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise UserError(f"{path} is not an executable file")
    return path


def _read(config_file: str, must_exist: bool) -> dict[str, Any]:
    try:
        with open(config_file, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if must_exist:
            raise UserError(f"{config_file}: no such file") from None
        return {}
    except OSError as e:
        raise UserError(f"{config_file}: {e.strerror}") from None
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{config_file}: not valid JSON ({e}); left unchanged") from None
    if not isinstance(data, dict):
        raise UserError(f"{config_file}: must hold a JSON object; left unchanged")
    if not isinstance(data.get("runtimes", {}), dict):
        raise UserError(f"{config_file}: \"runtimes\" must be an object; left unchanged")
    return data


def _write(config_file: str, data: dict[str, Any]) -> None:
    directory = os.path.dirname(os.path.abspath(config_file))
    try:
        mode = stat.S_IMODE(os.stat(config_file).st_mode)
    except OSError:
        mode = 0o644
    tmp = os.path.join(directory, f".{os.path.basename(config_file)}.{os.getpid()}.tmp")
    try:
        os.makedirs(directory, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=4)
            f.write("\n")
        os.chmod(tmp, mode)
        os.rename(tmp, config_file)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UserError(f"{config_file}: {e.strerror}") from None


def install(config_file: str, runtime: str, path: str, runtime_args: list[str]) -> None:
    """Add (or replace) `runtimes.RUNTIME` in `config_file`."""
    data = _read(config_file, must_exist=False)
    entry: dict[str, Any] = {"path": path}
    if runtime_args:
        entry["runtimeArgs"] = list(runtime_args)
    data.setdefault("runtimes", {})[runtime] = entry
    _write(config_file, data)


def uninstall(config_file: str, runtime: str) -> None:
    """Remove `runtimes.RUNTIME` from `config_file` (and `runtimes` if it becomes empty)."""
    data = _read(config_file, must_exist=True)
    runtimes = data.get("runtimes", {})
    if runtime not in runtimes:
        raise UserError(f"{config_file}: runtime {runtime!r} is not installed")
    del runtimes[runtime]
    if not runtimes:
        del data["runtimes"]
    _write(config_file, data)
