"""`runsc-py do`: a sandbox over the host's own root filesystem, as `runsc do`.

The quickest way to try the Sentry on an existing program: no bundle, no
state.  The root filesystem ("/" unless --root says otherwise) is served
read-only by the Gofer under an in-memory overlay, so the command may write
but the host never changes; the command sees the caller's environment, working
directory, uid, gid and the host's hostname.  As `runsc do` does, a command
without '/' is resolved in the caller's PATH on the host side first, so the
error for a missing program is ours and immediate.
"""
from __future__ import annotations

import os
import socket

from runsc_py.errors import UserError
from sentry.config import Mount, SandboxConfig


def resolve_in_path(cmd: str, rootfs: str, env: list[str]) -> str:
    """The in-sandbox path of `cmd`: itself if it has a '/', else the first PATH hit under `rootfs`."""
    if "/" in cmd:
        return cmd
    path = next((e[5:] for e in reversed(env) if e.startswith("PATH=")), os.defpath)
    for d in path.split(":"):
        if not d.startswith("/"):
            continue
        candidate = os.path.join(d, cmd)
        host = os.path.join(rootfs, candidate.lstrip("/"))
        if os.path.isfile(host) and os.access(host, os.X_OK):
            return candidate
    raise UserError(f"{cmd}: executable file not found in $PATH", exit_code=127)


def do_config(command: list[str], rootfs: str = "/", cwd: str | None = None,
              extra_env: list[str] | None = None, hostname: str | None = None) -> SandboxConfig:
    """The SandboxConfig for `do`, or a one-line UserError."""
    rootfs = os.path.abspath(rootfs)
    if not os.path.isdir(rootfs):
        raise UserError(f"--root {rootfs}: not a directory")
    env = dict(os.environ)
    for entry in extra_env or []:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise UserError(f"--env must be KEY=VALUE (got {entry!r})")
        env[key] = value
    env_list = [f"{k}={v}" for k, v in env.items()]
    workdir = cwd if cwd is not None else os.getcwd()
    if not workdir.startswith("/"):
        raise UserError(f"--cwd must be an absolute path (got {workdir!r})")
    if not command or not command[0]:
        raise UserError("the command must not be empty")
    args = [resolve_in_path(command[0], rootfs, env_list), *command[1:]]
    gid = os.getgid()
    return SandboxConfig(rootfs=rootfs, args=args, env=env_list, cwd=workdir, uid=os.getuid(), gid=gid,
                         additional_gids=[g for g in os.getgroups() if g != gid],
                         hostname=hostname or socket.gethostname(), root_readonly=False,
                         host_readonly=True,   # the Gofer never writes to the host, whatever the flags
                         overlay="memory",     # writes land in the Sentry's memory (as runsc do)
                         container_id=f"do-{os.getpid()}",
                         # The sandbox's own /proc, /sys and /dev hide the host's (never served by the Gofer).
                         mounts=[Mount("/proc", "proc", "proc"), Mount("/sys", "sysfs", "sysfs"),
                                 Mount("/dev", "tmpfs", "tmpfs", ["nosuid", "mode=755"])])
