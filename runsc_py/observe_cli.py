"""The commands that look at sandboxes from outside: `debug`, `fs`, `events`, `metrics-server`.

Kept out of runsc_py/cli.py (which parses the lifecycle commands engines
drive) and registered on its group by `register(cli, CONTEXT, _globals)`; each command
imports its module (debug_cmd, fs_cmd, events, metrics) only when it runs.
They reach a running Sentry over its control channel, never by logging in.
"""
from __future__ import annotations

import sys

import click

from runsc_py.ids import validate_id


def register(cli: click.Group, context: dict, _globals) -> None:
    """Add the commands to `cli`; `_globals` is cli.py's accessor of the parsed global flags (passed,
    not imported: under `python -m runsc_py.cli` that module is __main__, and importing
    runsc_py.cli would load a second copy whose Globals class the parsed flags are not of)."""
    @cli.command(context_settings=context)
    @click.option("--seccomp", is_flag=True, help="Print the Sentry's and the Gofer's seccomp allowlists and sizes.")
    @click.option("--ps", "show_ps", is_flag=True, help="The sandbox's processes, as the Sentry sees them (needs ID).")
    @click.option("--stacks", is_flag=True, help="Each task's state and registers, and the Sentry's stack (needs ID).")
    @click.option("--mounts", is_flag=True, help="The sandbox's mount table (needs ID).")
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
                  help="Output format.")
    @click.argument("container_id", metavar="[ID]", required=False)
    def debug(seccomp: bool, show_ps: bool, stacks: bool, mounts: bool, fmt: str, container_id: str | None) -> None:
        """Look at a sandbox from outside: how it is confined (--seccomp), and for a running ID its
        processes (--ps), tasks and stacks (--stacks) and mounts (--mounts), over its control channel."""
        from runsc_py import debug_cmd
        wanted = [name for name, on in (("ps", show_ps), ("stacks", stacks), ("mounts", mounts)) if on]
        if not seccomp and not wanted:
            raise click.UsageError("nothing to show: give --seccomp, --ps, --stacks or --mounts")
        if wanted and not container_id:
            raise click.UsageError(f"--{wanted[0]} needs a container ID")
        if seccomp:
            click.echo(debug_cmd.render_seccomp(fmt), nl=False)
        if wanted:
            validate_id(container_id)
            click.echo(debug_cmd.render_sandbox(_globals().store, container_id, wanted, fmt), nl=False)

    @cli.command(name="fs", context_settings=context)
    @click.option("--rw", is_flag=True, help="Allow writes (default: read-only).")
    @click.argument("container_id", metavar="ID")
    @click.argument("mountpoint", metavar="MOUNTPOINT")
    def fs_cmd(rw: bool, container_id: str, mountpoint: str) -> int:
        """Mount what the sandbox's processes see at / on MOUNTPOINT (FUSE; needs the `fuse` extra).

        Runs until the sandbox stops or it is interrupted, then unmounts.  Served by the Sentry
        over its control channel: this process never touches the rootfs on the host."""
        from runsc_py.fs_cmd import mount
        validate_id(container_id)
        return mount(_globals().store, container_id, mountpoint, rw)

    @cli.command(context_settings=context)
    @click.option("--stats", "once", is_flag=True, help="Print the statistics once and exit.")
    @click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(min=0.01),
                  metavar="SECONDS", help="Seconds between statistics events.")
    @click.argument("container_id", metavar="ID")
    def events(once: bool, interval: float, container_id: str) -> None:
        """Print the container's resource statistics as JSON events, one line per --interval, until it stops."""
        from runsc_py.events import stream
        validate_id(container_id)

        def emit(line: str) -> None:
            click.echo(line)
            sys.stdout.flush()
        stream(_globals().store, container_id, interval, once, emit)

    @cli.command(name="metrics-server", context_settings=context)
    @click.option("--address", default=None, metavar="HOST:PORT",
                  help="Where to listen  [default: the global --metrics-server, else 127.0.0.1:9115].")
    def metrics_server(address: str | None) -> None:
        """Serve Prometheus metrics of every sandbox under --root (runs until interrupted)."""
        from runsc_py.metrics import serve
        g = _globals()

        def ready(addr: tuple) -> None:       # the port, when 0 asked the kernel to choose one
            click.echo(f"runsc-py metrics-server: listening on http://{addr[0]}:{addr[1]}/metrics", err=True)
            sys.stderr.flush()
        serve(g.root, address or g.metrics_server or "127.0.0.1:9115", ready)
