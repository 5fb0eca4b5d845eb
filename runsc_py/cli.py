"""`runsc-py`: the runc-compatible command line.

The command tree follows runc (and runsc for `do`, `syscalls` and the
sandbox flags), because container engines drive it with runc's exact
arguments: global flags first (`--root R --log F --log-format json`, plus
Docker's `runtimeArgs`), then the subcommand.  This module only parses and
dispatches; the work lives in `spec` (bundle -> SandboxConfig), `state`
(the store under --root), `launch` (the Sentry process) and `lifecycle`.

Error contract: any failure a user can cause ends as a `UserError` caught in
`main`, reported as one line on stderr (and to --log in runc's shape), exit
status 1 (2 for command-line usage errors, as click does).  An unexpected
exception is reported the same way, with the traceback only in the debug
log -- a user never sees a traceback.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from runsc_py import errors, lifecycle
from runsc_py.errors import ErrorLog, UserError
from runsc_py.ids import validate_id
from runsc_py.state import OCI_VERSION, StateStore

if TYPE_CHECKING:
    from runsc_py.spec import Bundle
    from sentry.config import SandboxConfig
# `launch` and `spec` (and through them the Sentry) are imported by the commands that start a
# sandbox: a cold `state`, `kill` or `delete` does not pay for them.

DEFAULT_ROOT = "/var/run/runsc-py"


@dataclass
class Globals:
    """The global flags, as parsed."""
    root: str = DEFAULT_ROOT
    log: str | None = None
    log_format: str = "text"
    debug: bool = False
    debug_log: str | None = None
    platform: str = "ptrace"
    network: str = "none"
    overlay: str = "none"
    strace: bool = False
    cpu_pin: str = "auto"
    policy: str | None = None
    policy_log: str | None = None
    metrics_server: str | None = None
    _debug_fd: int | None = field(default=None, repr=False)

    @property
    def store(self) -> StateStore:
        return StateStore(self.root)

    def debug_fd(self, container_id: str, command: str) -> int | None:
        """The --debug-log file, opened for appending (`%ID%`, `%COMMAND%` substituted)."""
        if self._debug_fd is None and self.debug_log:
            path = self.debug_log.replace("%ID%", container_id).replace("%COMMAND%", command)
            if path.endswith("/"):
                path = os.path.join(path, f"runsc-py.{container_id or 'do'}.{command}.log")
            try:
                if os.path.dirname(path):
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                self._debug_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise UserError(f"--debug-log {path}: {e.strerror}") from None
        return self._debug_fd

    def apply(self, cfg: SandboxConfig, container_id: str, command: str) -> SandboxConfig:
        """Copy the sandbox flags into `cfg`."""
        cfg.platform, cfg.network, cfg.overlay = self.platform, self.network, self.overlay
        cfg.strace, cfg.debug, cfg.cpu_pin = self.strace, self.debug, self.cpu_pin
        cfg.container_id = container_id
        cfg.log_fd = self.debug_fd(container_id, command)
        from runsc_py.compat_cmd import attach_policy
        attach_policy(cfg, self.policy, self.policy_log)
        return cfg


def _globals() -> Globals:
    obj = click.get_current_context().find_root().obj
    return obj if isinstance(obj, Globals) else Globals()


def _bundle_for(g: Globals, container_id: str, bundle_dir: str, command: str) -> Bundle:
    from runsc_py.spec import load_bundle
    validate_id(container_id)
    bundle = load_bundle(bundle_dir, container_id)
    g.apply(bundle.config, container_id, command)
    return bundle


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    try:
        from importlib.metadata import version
        ours = version("runsc-py")
    except Exception:      # running from a checkout that is not installed
        ours = "0.1.0+checkout"
    click.echo(f"runsc-py version {ours}\nspec: {OCI_VERSION}")
    ctx.exit(0)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "terminal_width": 100}


@click.group(context_settings=CONTEXT)
@click.option("--root", default=DEFAULT_ROOT, show_default=True, metavar="DIR",
              help="Directory holding the state of every container.")
@click.option("--log", metavar="FILE", help="Also write errors (and --debug lines) to FILE.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Shape of --log entries: logrus text, or runc's JSON objects.")
@click.option("--debug", is_flag=True, help="Log debug lines (to --log, else stderr) and enable Sentry debug output.")
@click.option("--debug-log", metavar="PATH",
              help="File for the Sentry's debug and --strace output (%ID% and %COMMAND% are "
                   "substituted; a trailing '/' means a directory).")
@click.option("--systemd-cgroup", is_flag=True, help="Accepted for runc compatibility; ignored.")
@click.option("--rootless", default=None, hidden=True, help="Accepted for runc compatibility; ignored.")
@click.option("--criu", default=None, hidden=True, help="Accepted for runc compatibility; ignored.")
@click.option("--platform", type=click.Choice(["ptrace", "kvm", "seccomp_notify"]), default="ptrace", show_default=True,
              envvar="RUNSC_PY_PLATFORM",
              help="How application code runs: ptrace stubs, or a KVM guest (default from "
                   "$RUNSC_PY_PLATFORM, so a whole test run can choose).")
@click.option("--network", type=click.Choice(["none", "host"]), default="none", show_default=True,
              help="Sandbox network: loopback only, or the host's network namespace.")
@click.option("--overlay", type=click.Choice(["none", "memory"]), default="none", show_default=True,
              help="Put an in-memory writable layer over the root filesystem.")
@click.option("--strace", is_flag=True, help="Log every syscall of the application with decoded arguments.")
@click.option("--cpu-pin", type=click.Choice(["auto", "none"]), default="auto", show_default=True,
              help="auto: run the sandbox's host threads on one CPU (ptrace stops stay local, several "
                   "times cheaper); none: keep the host's CPU mask (parallel application threads).")
@click.option("--metrics-server", metavar="HOST:PORT", default=None,
              help="Address of `metrics-server` (Prometheus metrics of every sandbox under --root).")
@click.option("--policy", metavar="FILE", help="Syscall policy (JSON, or TOML for *.toml): deny or audit by "
              "syscall, path prefix and network destination (see README).")
@click.option("--policy-log", metavar="FILE", help="Append the policy's audit records (JSON lines) to FILE.")
@click.option("-v", "--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print the version and the OCI spec version, and exit.")
@click.pass_context
def cli(ctx: click.Context, root: str, log: str | None, log_format: str, debug: bool,
        debug_log: str | None, systemd_cgroup: bool, rootless: str | None, criu: str | None,
        platform: str, network: str, overlay: str, strace: bool, cpu_pin: str,
        metrics_server: str | None, policy: str | None = None, policy_log: str | None = None) -> None:
    """runsc-py: an OCI runtime whose containers run on a Python application kernel.

    Commands and flags follow runc, so Docker, containerd, podman and
    Kubernetes can use it in runc's place.
    """
    errors.set_log(ErrorLog(log, log_format, debug))
    ctx.obj = Globals(root=root, log=log, log_format=log_format, debug=debug, debug_log=debug_log,
                      platform=platform, network=network, overlay=overlay, strace=strace, cpu_pin=cpu_pin,
                      metrics_server=metrics_server)
    ctx.obj.policy, ctx.obj.policy_log = policy, policy_log
    errors.log().debug(f"runsc-py {' '.join(sys.argv[1:])}")


# ------------------------------------------------------------------ spec

@cli.command(context_settings=CONTEXT)
@click.option("-b", "--bundle", default=".", show_default=True, metavar="DIR",
              help="Bundle directory to write config.json into.")
@click.argument("args", nargs=-1)
def spec(bundle: str, args: tuple[str, ...]) -> None:
    """Write a default config.json into the bundle (never overwrites one).

    ARGS after `--` replace process.args (and turn the terminal off).
    """
    from runsc_py.spec import write_default_spec
    write_default_spec(bundle, list(args) or None)


# ------------------------------------------------------------------ run / do

@cli.command(context_settings=CONTEXT)
@click.option("-b", "--bundle", default=".", show_default=True, metavar="DIR",
              help="Bundle directory holding config.json and the rootfs.")
@click.option("--pid-file", metavar="FILE", help="Write the container's host pid to FILE.")
@click.option("--console-socket", metavar="SOCKET",
              help="With --detach and process.terminal: socket that receives the terminal's master fd.")
@click.option("-d", "--detach", is_flag=True,
              help="Create and start the container, then return (as create + start); delete it yourself.")
@click.option("--no-pivot", is_flag=True, hidden=True)
@click.option("--no-new-keyring", is_flag=True, hidden=True)
@click.argument("container_id", metavar="ID")
def run(bundle: str, pid_file: str | None, console_socket: str | None, detach: bool,
        no_pivot: bool, no_new_keyring: bool, container_id: str) -> int:
    """Run a container in the foreground and exit with its exit status (128+N if killed by signal N)."""
    from runsc_py import launch
    g = _globals()
    b = _bundle_for(g, container_id, bundle, "run")
    if g.metrics_server:                # runsc's --metric-server: started on demand for this --root
        from runsc_py.metrics import ensure_server
        ensure_server(g.root, g.metrics_server)
    opts = launch.LaunchOptions(pid_file=pid_file, debug_fd=b.config.log_fd,
                                console_socket=console_socket if detach else None)
    if detach:
        launch.create_container(g.store, container_id, b, opts)
        lifecycle.start_container(g.store, container_id)
        return 0
    return launch.run_container(g.store, container_id, b, opts)


@cli.command(name="do", context_settings={**CONTEXT, "allow_interspersed_args": False})
@click.option("--root", "rootfs", default="/", show_default=True, metavar="DIR",
              help="Root filesystem to serve read-only to the command.")
@click.option("--cwd", metavar="DIR", help="Working directory inside the sandbox (default: the current one).")
@click.option("--env", "envs", multiple=True, metavar="KEY=VALUE", help="Set an environment variable (repeatable).")
@click.option("--hostname", default=None, metavar="NAME", help="Sandbox hostname (default: the host's).")
@click.argument("command", nargs=-1, required=True, metavar="-- CMD [ARGS]...")
def do(rootfs: str, cwd: str | None, envs: tuple[str, ...], hostname: str | None,
       command: tuple[str, ...]) -> int:
    """Run CMD in a sandbox over the host's root filesystem (read-only; writes stay in memory), as `runsc do`.

    The command gets the caller's environment, working directory, uid and gid.
    """
    from runsc_py.do import do_config
    cfg = do_config(list(command), rootfs, cwd, list(envs), hostname)
    _globals().apply(cfg, cfg.container_id, "do")
    cfg.overlay = "memory"      # `do` always overlays the host root in memory (the global default is none)
    cfg.host_readonly = True
    from runsc_py.sandbox import run_sandbox_guarded
    try:
        return run_sandbox_guarded(cfg, cfg.log_fd)
    except KeyboardInterrupt:
        return 130


@cli.command(context_settings={**CONTEXT, "allow_interspersed_args": False})
@click.option("--root", "rootfs", default="/", show_default=True, metavar="DIR",
              help="Root filesystem (the host's is served read-only, writes stay in memory).")
@click.option("--cwd", metavar="DIR", help="Working directory inside the sandbox.")
@click.option("--env", "envs", multiple=True, metavar="KEY=VALUE", help="Set an environment variable (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table",
              show_default=True, help="Report format.")
@click.option("-o", "--output", metavar="FILE", help="Write the report to FILE (default: stderr).")
@click.argument("command", nargs=-1, required=True, metavar="-- CMD [ARGS]...")
def compat(rootfs: str, cwd: str | None, envs: tuple[str, ...], fmt: str, output: str | None,
           command: tuple[str, ...]) -> int:
    """Run CMD and report the syscalls, ioctls, /proc and /sys files and socket families it used,
    each marked supported, partial or unsupported from the syscall table, with a verdict."""
    from runsc_py.compat_cmd import run_compat
    g = _globals()
    return run_compat(list(command), rootfs, cwd, list(envs), fmt, output, g.network, g.platform,
                      g.policy, g.policy_log)


# ------------------------------------------------------------------ syscalls

@cli.command(context_settings=CONTEXT)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table",
              show_default=True, help="Output format.")
def syscalls(fmt: str) -> None:
    """Print the syscall compatibility list, generated from the Sentry's syscall table."""
    from runsc_py.syscall_list import render
    click.echo(render(fmt), nl=False)


# ------------------------------------------------------------------ lifecycle

@cli.command(context_settings=CONTEXT)
@click.option("-b", "--bundle", default=".", show_default=True, metavar="DIR",
              help="Bundle directory holding config.json and the rootfs.")
@click.option("--pid-file", metavar="FILE", help="Write the Sentry's host pid (the container's) to FILE.")
@click.option("--console-socket", metavar="SOCKET",
              help="Unix socket that receives the terminal's master fd (process.terminal).")
@click.option("--no-pivot", is_flag=True, hidden=True)
@click.option("--no-new-keyring", is_flag=True, hidden=True)
@click.argument("container_id", metavar="ID")
def create(bundle: str, pid_file: str | None, console_socket: str | None, no_pivot: bool,
           no_new_keyring: bool, container_id: str) -> None:
    """Create a container: start its Sentry, loaded but parked until `start`."""
    from runsc_py import launch
    g = _globals()
    b = _bundle_for(g, container_id, bundle, "create")
    if g.metrics_server:                # runsc's --metric-server: started on demand for this --root
        from runsc_py.metrics import ensure_server
        ensure_server(g.root, g.metrics_server)
    from runsc_py import pod
    sandbox_id = pod.sandbox_of(g.store, b.annotations)     # a CRI pod's app container: join its Sentry
    if sandbox_id is not None:
        pid = pod.create_member(g.store, container_id, b, sandbox_id, pid_file, console_socket)
        errors.log().debug(f"created {container_id} in pod {sandbox_id}: proxy pid {pid}")
        return
    opts = launch.LaunchOptions(pid_file=pid_file, console_socket=console_socket,
                                   debug_fd=b.config.log_fd)
    pid = launch.create_container(g.store, container_id, b, opts)
    errors.log().debug(f"created {container_id}: sandbox pid {pid}")


@cli.command(context_settings=CONTEXT)
@click.argument("container_id", metavar="ID")
def start(container_id: str) -> None:
    """Start a created container's application."""
    lifecycle.start_container(_globals().store, validate_id(container_id))


@cli.command(context_settings=CONTEXT)
@click.argument("container_id", metavar="ID")
def state(container_id: str) -> None:
    """Print the container's OCI state as JSON."""
    store = _globals().store
    with store.locked(validate_id(container_id), exclusive=False) as st:
        doc = st.oci_state(store.owner(container_id))
    click.echo(json.dumps(doc, indent=2))


@cli.command(context_settings=CONTEXT)
@click.option("-a", "--all", "all_", is_flag=True, help="Signal every process of the container, not just PID 1.")
@click.argument("container_id", metavar="ID")
@click.argument("sig", default="SIGTERM", metavar="[SIGNAL]")
def kill(all_: bool, container_id: str, sig: str) -> None:
    """Send SIGNAL (a name like TERM/SIGTERM or a number; default SIGTERM) to the container."""
    signum = lifecycle.parse_signal(sig)
    lifecycle.kill_container(_globals().store, validate_id(container_id), signum, all_)


@cli.command(context_settings=CONTEXT)
@click.option("-f", "--force", is_flag=True, help="Kill the container first if it is still running.")
@click.argument("container_id", metavar="ID")
def delete(force: bool, container_id: str) -> None:
    """Delete a container and its state."""
    lifecycle.delete_container(_globals().store, validate_id(container_id), force)


@cli.command(context_settings=CONTEXT)
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Give up (exit 1) if the container still runs after SECONDS.")
@click.argument("container_id", metavar="ID")
def wait(timeout: float | None, container_id: str) -> int:
    """Wait for the container to stop and exit with its exit status (128+N if killed by signal N)."""
    status = lifecycle.wait_container(_globals().store, validate_id(container_id), timeout)
    click.echo(json.dumps({"id": container_id, "exitStatus": status}))
    return status


@cli.command(context_settings=CONTEXT)
@click.argument("container_id", metavar="ID")
def pause(container_id: str) -> None:
    """Freeze every process of the container (cgroup freezer)."""
    lifecycle.pause_container(_globals().store, validate_id(container_id))


@cli.command(context_settings=CONTEXT)
@click.argument("container_id", metavar="ID")
def resume(container_id: str) -> None:
    """Thaw a paused container."""
    lifecycle.resume_container(_globals().store, validate_id(container_id))


@cli.command(name="exec", context_settings={**CONTEXT, "allow_interspersed_args": False})
@click.option("-p", "--process", "process_json", metavar="FILE", help="OCI process JSON (args, env, cwd, user, terminal).")
@click.option("-d", "--detach", is_flag=True, help="Start the process and return; --pid-file gets a waiter's pid.")
@click.option("--pid-file", metavar="FILE", help="Write the pid standing for the process (with --detach).")
@click.option("--console-socket", metavar="SOCKET", help="Unix socket that receives the terminal's master fd.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a terminal (needs --console-socket).")
@click.option("--cwd", metavar="DIR", help="Working directory inside the container.")
@click.option("-e", "--env", "envs", multiple=True, metavar="K=V", help="Extra environment variable.")
@click.option("-u", "--user", metavar="UID[:GID]", help="User (numeric) to run as.")
@click.option("-g", "--additional-gids", "gids", multiple=True, type=int, metavar="GID", help="Extra group.")
@click.option("--cap", multiple=True, hidden=True)
@click.option("--no-new-privs", is_flag=True, hidden=True)
@click.option("--process-label", hidden=True)
@click.option("--apparmor", hidden=True)
@click.option("--preserve-fds", type=int, default=0, hidden=True)
@click.argument("container_id", metavar="ID")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def exec_(process_json: str | None, detach: bool, pid_file: str | None, console_socket: str | None, tty: bool,
          cwd: str | None, envs: tuple[str, ...], user: str | None, gids: tuple[int, ...], cap: tuple[str, ...],
          no_new_privs: bool, process_label: str | None, apparmor: str | None, preserve_fds: int,
          container_id: str, command: tuple[str, ...]) -> int:
    """Run a new process inside a running container (its exit status, unless --detach)."""
    from runsc_py.exec_cmd import build_request, exec_in_container
    g = _globals()
    cid = validate_id(container_id)
    state = g.store.load(cid)
    request, terminal = build_request(state.config, process_json, list(command), tty, cwd, list(envs), user,
                                      list(gids))
    code = exec_in_container(g.store, cid, request, terminal, console_socket, detach, pid_file)
    if code:
        sys.exit(code)
    return code


@cli.command(context_settings=CONTEXT)
@click.option("-r", "--resources", metavar="FILE", help="OCI LinuxResources JSON ('-' for stdin).")
@click.option("--memory", type=int, metavar="BYTES", help="Memory limit in bytes (-1: none).")
@click.option("--pids-limit", type=int, metavar="N", help="Maximum number of tasks (-1: none).")
@click.option("--cpu-shares", hidden=True)
@click.option("--cpu-quota", hidden=True)
@click.option("--cpu-period", hidden=True)
@click.option("--cpuset-cpus", hidden=True)
@click.option("--cpuset-mems", hidden=True)
@click.option("--memory-swap", hidden=True)
@click.option("--memory-reservation", hidden=True)
@click.option("--kernel-memory", hidden=True)
@click.option("--blkio-weight", hidden=True)
@click.argument("container_id", metavar="ID")
def update(resources: str | None, memory: int | None, pids_limit: int | None, container_id: str,
           **ignored: object) -> None:
    """Change a running container's memory and pids limits (enforced by the Sentry)."""
    from runsc_py.update_cmd import update_container
    update_container(_globals().store, validate_id(container_id), resources, memory, pids_limit)


@cli.command(name="list", context_settings=CONTEXT)
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("-q", "--quiet", is_flag=True, help="Print container ids only.")
def list_(fmt: str, quiet: bool) -> None:
    """List the containers under --root."""
    store = _globals().store
    docs: list[dict[str, Any]] = []
    for cid in store.ids():
        try:
            with store.locked(cid, exclusive=False) as st:
                docs.append(st.oci_state(store.owner(cid)))
        except UserError:
            continue          # deleted while we listed
    if quiet:
        for d in docs:
            click.echo(d["id"])
    elif fmt == "json":
        click.echo(json.dumps(docs or None))
    else:
        rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        rows += [[d["id"], str(d["pid"]), d["status"], d["bundle"], d["created"], d["owner"]] for d in docs]
        widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]) - 1)]
        for r in rows:
            click.echo("".join(c.ljust(w) for c, w in zip(r, widths)) + r[-1])


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format: `ps` output, or a JSON list of pids.")
@click.argument("container_id", metavar="ID")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
def ps(fmt: str, container_id: str, ps_args: tuple[str, ...]) -> None:
    """Show a container's processes: the application's (table), or host pids (json, for engines).

    The table lists the processes inside the sandbox, as the Sentry numbers
    them (`runsc ps`); with PS_ARGS, or when the Sentry cannot be reached, it
    is host `ps` output for the sandbox's host processes (Sentry, Gofer,
    stubs), as runc prints.  `--format json` is always the host pids, which
    is what containerd's shim and `docker top` expect.
    """
    store = _globals().store
    validate_id(container_id)
    if fmt == "table" and not ps_args:
        table = lifecycle.sandbox_ps_table(store, container_id)
        if table is not None:
            click.echo(table, nl=False)
            return
    pids = lifecycle.container_pids(store, container_id)
    if fmt == "json":
        click.echo(json.dumps(pids))
    else:
        click.echo(lifecycle.ps_table(pids, list(ps_args)), nl=False)


# ------------------------------------------------------------------ install

@cli.command(name="install", context_settings=CONTEXT)
@click.option("--config-file", default=None, metavar="PATH",
              help="Docker daemon configuration to edit  [default: /etc/docker/daemon.json].")
@click.option("--runtime", default=None, metavar="NAME", help="Runtime name to register  [default: runsc-py].")
@click.option("--path", "exe", default=None, metavar="FILE",
              help="Runtime executable to register (default: the installed runsc-py).")
@click.argument("runtime_args", nargs=-1, metavar="[-- RUNTIME_ARGS]...")
def install_cmd(config_file: str | None, runtime: str | None, exe: str | None,
                runtime_args: tuple[str, ...]) -> None:
    """Register runsc-py as a Docker runtime in daemon.json (other keys are kept).

    RUNTIME_ARGS (e.g. `-- --platform=kvm`) become the runtime's runtimeArgs.
    """
    from runsc_py import install
    path = install.runtime_path(exe)
    target = config_file or install.DEFAULT_DAEMON_JSON
    name = runtime or install.DEFAULT_RUNTIME
    install.install(target, name, path, list(runtime_args))
    click.echo(f"runtime {name} ({path}) added to {target}; restart dockerd to use it", err=True)


@cli.command(name="uninstall", context_settings=CONTEXT)
@click.option("--config-file", default=None, metavar="PATH",
              help="Docker daemon configuration to edit  [default: /etc/docker/daemon.json].")
@click.option("--runtime", default=None, metavar="NAME", help="Runtime name to remove  [default: runsc-py].")
def uninstall_cmd(config_file: str | None, runtime: str | None) -> None:
    """Remove the runtime from Docker's daemon.json (other keys are kept)."""
    from runsc_py import install
    install.uninstall(config_file or install.DEFAULT_DAEMON_JSON, runtime or install.DEFAULT_RUNTIME)


# ------------------------------------------------------------------ factory

@cli.group(context_settings=CONTEXT)
def factory() -> None:
    """A warm process per --root that runs commands without Python's start-up (see runsc_py/factory.py).

    While it runs, `run` (foreground, no terminal) and the short lifecycle
    commands are handed to it by the `runsc-py` launcher; everything else,
    and every command it refuses, runs as before.
    """


@factory.command(name="start", context_settings=CONTEXT)
def factory_start() -> None:
    """Start the factory of --root in the background (no-op if one runs)."""
    from runsc_py import factory as f
    root = _globals().root
    click.echo(f"factory running, pid {f.start(root)} ({f.status(root)['socket']})")


@factory.command(name="stop", context_settings=CONTEXT)
def factory_stop() -> None:
    """Stop the factory of --root (commands it runs finish first)."""
    from runsc_py import factory as f
    if not f.stop(_globals().root):
        raise UserError("no factory is running for this --root")


@factory.command(name="status", context_settings=CONTEXT)
def factory_status() -> None:
    """Print the factory's state as JSON."""
    from runsc_py import factory as f
    click.echo(json.dumps(f.status(_globals().root), indent=2))


# ------------------------------------------------------------------ from outside

# debug, fs, events, metrics-server: runsc_py/observe_cli.py
from runsc_py import observe_cli  # noqa: E402 -- registers on this module's group (also when run as __main__)

observe_cli.register(cli, CONTEXT, _globals)


# ------------------------------------------------------------------ entry point

def main(argv: list[str] | None = None) -> None:
    """Console-script entry: run the CLI, turn every failure into one line and an exit status."""
    me = os.getpid()
    try:
        rv = cli.main(args=argv, prog_name="runsc-py", standalone_mode=False)
        code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except UserError as e:
        errors.log().error(e.message)
        code = e.exit_code
    except click.exceptions.Exit as e:
        code = e.exit_code
    except click.exceptions.Abort:
        errors.log().error("aborted")
        code = 130
    except click.UsageError as e:
        msg = e.format_message().rstrip(".")
        cmd = e.ctx.command_path if e.ctx is not None else "runsc-py"
        errors.log().error(f"{msg} (see '{cmd} --help')")
        code = 2
    except click.ClickException as e:
        errors.log().error(e.format_message())
        code = e.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 1
    except Exception as e:      # noqa: BLE001 -- a user never sees a traceback
        if os.getpid() != me:
            os._exit(1)
        import traceback
        errors.log().debug("".join(traceback.format_exception(e)))
        errors.log().error(f"internal error: {type(e).__name__}: {e}")
        code = 1
    if os.getpid() != me:
        os._exit(code)
    _flush()
    sys.exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


if __name__ == "__main__":
    main()
