"""`runsc-py compat -- CMD` and `--policy FILE`: the command-line faces of the library's features.

`compat` is built on `runsc_py.Sandbox` (runsc_py/api.py): a sandbox with the compat
recorder on, the command run with the caller's stdio, then the report (compat_report.py)
written to --output or stderr.  `attach_policy` turns `--policy FILE` (and `--policy-log`)
into the SandboxConfig's policy object and audit fd, for run, create and do alike.
"""
from __future__ import annotations

import os

from runsc_py.errors import UserError


def load_policy(path: str):
    from sentry.policy_file import PolicyFileError, load
    try:
        return load(path)
    except OSError as e:
        raise UserError(f"--policy {path}: {e.strerror}") from None
    except PolicyFileError as e:
        raise UserError(f"--policy {path}: {e}") from None


def open_audit_log(path: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise UserError(f"audit log {path}: {e.strerror}") from None


def attach_policy(cfg, policy_path: str | None, log_path: str | None) -> None:
    """Give `cfg` the policy of `--policy FILE` and its audit log (--policy-log beats the file's)."""
    if not policy_path:
        if log_path:
            raise UserError("--policy-log needs --policy")
        return
    policy = load_policy(policy_path)
    cfg.policy = policy
    log = log_path or policy.audit_log
    if log:
        cfg.policy_log_fd = open_audit_log(log)


def run_compat(command: list[str], rootfs: str, cwd: str | None, envs: list[str], fmt: str,
               output: str | None, network: str, platform: str, policy_path: str | None,
               policy_log: str | None) -> int:
    from runsc_py.api import Sandbox, SandboxError
    from runsc_py.compat_report import finish, render
    from runsc_py.do import resolve_in_path
    rootfs = os.path.abspath(rootfs)
    if not os.path.isdir(rootfs):
        raise UserError(f"--root {rootfs}: not a directory")
    host_root = os.path.realpath(rootfs) == "/"
    env = dict(os.environ) if host_root else {}
    for entry in envs:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise UserError(f"--env must be KEY=VALUE (got {entry!r})")
        env[key] = value
    workdir = cwd or (os.getcwd() if host_root else "/")
    env_list = [f"{k}={v}" for k, v in env.items()] or None
    args = [resolve_in_path(command[0], rootfs, env_list or [f"PATH={os.defpath}"]), *command[1:]]
    policy = load_policy(policy_path) if policy_path else None
    log = policy_log or (policy.audit_log if policy is not None else None)
    try:
        with Sandbox(rootfs, network=network, platform=platform, compat=True, env=env or None, policy=policy,
                     policy_log=log) as sb:
            p = sb.popen(args, stdin=None, stdout=None, stderr=None, cwd=workdir)
            try:
                status = p.wait()
            except KeyboardInterrupt:
                p.kill_tree()
                status = p.wait()
            report = finish(sb._request({"op": "compat"})["report"], status)
    except SandboxError as e:
        raise UserError(str(e)) from None
    except (FileNotFoundError, PermissionError) as e:
        raise UserError(str(e.strerror), 127 if isinstance(e, FileNotFoundError) else 126) from None
    text = render(report, fmt)
    if output:
        try:
            with open(output, "w") as f:
                f.write(text)
        except OSError as e:
            raise UserError(f"--output {output}: {e.strerror}") from None
    else:
        os.write(2, text.encode())
    return status
