"""OCI hooks, run on the host as runc runs them.

Each hook gets the container's OCI state JSON on stdin, its own `args`
(args[0] is by convention the program name) and `env`, and an optional
`timeout` in seconds.  Where they run in our lifecycle:

* `prestart`, `createRuntime`, `createContainer` -- in `create` once the
  Sentry is up and parked at the gate (for `run`, before the sandbox runs);
* `startContainer` -- in `start`, before the gate opens (runc runs it inside
  the container's namespaces; ours has no host-visible ones, so the host);
* `poststart` -- in `start`, after the gate opened;
* `poststop` -- in `delete`, after the Sentry is gone (and after `run`).

A failing hook before the application runs fails the command (and the
container is torn down); a failing `poststart`/`poststop` is logged as a
warning and does not, as the runtime spec says.
"""
from __future__ import annotations

import json
from typing import Any

from runsc_py import errors
from runsc_py.errors import UserError
from runsc_py.state import STOPPED, ContainerState, StateStore

HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def validate_hooks(raw: Any) -> dict[str, list[dict[str, Any]]]:
    """config.json's `hooks`, checked: {kind: [{path, args?, env?, timeout?}]}."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError("config.json: hooks must be an object")
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, hooks in raw.items():
        if kind not in HOOK_KINDS:
            continue                     # unknown kinds are ignored, as runc ignores them
        if not isinstance(hooks, list):
            raise UserError(f"config.json: hooks.{kind} must be a list")
        for i, h in enumerate(hooks):
            name = f"hooks.{kind}[{i}]"
            if not isinstance(h, dict):
                raise UserError(f"config.json: {name} must be an object")
            path = h.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                raise UserError(f"config.json: {name}.path must be an absolute path")
            for key in ("args", "env"):
                v = h.get(key, [])
                if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
                    raise UserError(f"config.json: {name}.{key} must be a list of strings")
            timeout = h.get("timeout")
            if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool)
                                        or timeout <= 0):
                raise UserError(f"config.json: {name}.timeout must be a positive integer")
        out[kind] = list(hooks)
    return out


def run_hooks(hooks: dict[str, list[dict[str, Any]]], kind: str, state: dict[str, Any]) -> None:
    """Run every hook of `kind` in order with `state` on stdin; UserError on the first failure."""
    if not hooks.get(kind):
        return
    import subprocess      # only when there are hooks to run: a costly import for every command
    payload = json.dumps(state).encode()
    for i, h in enumerate(hooks.get(kind, [])):
        args = h.get("args") or [h["path"]]
        try:
            p = subprocess.run(args, executable=h["path"], input=payload, env=_env(h.get("env", [])),
                               capture_output=True, timeout=h.get("timeout"), close_fds=True)
        except subprocess.TimeoutExpired:
            raise UserError(f"{kind} hook #{i} ({h['path']}) timed out after {h.get('timeout')}s") from None
        except OSError as e:
            raise UserError(f"{kind} hook #{i} ({h['path']}): {e.strerror}") from None
        if p.returncode != 0:
            detail = p.stderr.decode(errors="replace").strip().splitlines()
            tail = f": {detail[-1]}" if detail else ""
            raise UserError(f"{kind} hook #{i} ({h['path']}) exited with status {p.returncode}{tail}")


def _env(entries: list[str]) -> dict[str, str] | None:
    """The hook's environment; none given means ours, as runc (Go's exec) does."""
    if not entries:
        return None
    env: dict[str, str] = {}
    for e in entries:
        key, _, value = e.partition("=")
        if key:
            env[key] = value
    return env


def hook_state(store: StateStore, state: ContainerState, status: str | None = None) -> dict[str, Any]:
    """The OCI state document a hook reads on stdin (`status` overrides the live one)."""
    doc = state.oci_state(store.owner(state.id))
    if status is not None:
        doc["status"] = status
    return doc


def poststop(store: StateStore, state: ContainerState, hooks: dict[str, list[dict[str, Any]]]) -> None:
    """Run the poststop hooks; a failure is a warning, as the runtime spec says."""
    try:
        run_hooks(hooks, "poststop", hook_state(store, state, STOPPED))
    except UserError as e:
        errors.log().warning(e.message)
