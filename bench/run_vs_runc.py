"""Container start-up: create+start+wait+delete of a static `true`, runsc-py beside runc.

Every contestant runs the same OCI bundle (the busybox-static rootfs of
tests/rootfs.py, process `/bin/true`, built once in a temporary directory)
once per sample, and the harness times the whole thing (wall clock, ms):

* `runc run`: runc's own create+start+wait+delete in one command (the
  reference);
* `runc create,start,delete`: the four steps as an engine's shim sends them
  (runc has no `wait`: `state` is polled until `stopped`);
* `runsc-py run`: the same in one runsc-py command;
* `runsc-py create,start,wait,delete`: the engine's sequence, four processes;
* the same two with a warm `runsc-py factory` serving their --root (started
  once before the samples, stopped at exit): every command is forked from
  it (`create` leaves a proxy as the engine's pid, see runsc_py/factory.py);
* `native true`: the program itself on the host, for scale;
* `python3 -c pass`: the interpreter's start with `site`; `python3 -IS -c
  pass`: as the installed launcher starts it (runsc_py/launcher.py), which
  every cold runsc-py command pays once (the engine's sequence four times).

Each sample uses a fresh container id; every runtime keeps its state in its
own temporary --root, removed (after a `delete --force` of anything left)
at exit.  The issue's target: runsc-py within 2x of runc.

Usage: python3 bench/run_vs_runc.py [--repeat R] [--json] [--only NAME] [--runsc-py CMD]
"""
from __future__ import annotations

import atexit
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Benchmark, Contestant  # noqa: E402

BENCH = Benchmark(
    name="run_vs_runc",
    title="container start-up: wall ms of create+start+wait+delete of a static `true` bundle",
    unit="ms",
    measure="wall",
    references=("runc run",),
    default_iterations=1,
    repeat=10,
    budget_s=90.0,
    timeout_s=60.0,
)


def default_runsc_py() -> list[str]:
    """The installed console script beside this interpreter (what an engine runs), else `-m`."""
    beside = os.path.join(os.path.dirname(sys.executable), "runsc-py")
    if os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which("runsc-py")
    if found:
        return [found]
    return [sys.executable, "-m", "runsc_py.cli"]


def make_true_bundle(directory: str) -> str:
    sys.path.insert(0, harness.REPO_DIR)
    from tests.rootfs import make_bundle   # noqa: E402  (the tests' busybox-static rootfs)
    return make_bundle(os.path.join(directory, "bundle"), ["/bin/true"])


def sh(script: str) -> list[str]:
    """A contestant as one `sh -c` (its $$ gives each sample a fresh container id)."""
    return ["/bin/sh", "-c", script]


def contestants(args) -> list[Contestant]:
    work = tempfile.mkdtemp(prefix="bench-run-")
    bundle = make_true_bundle(work)
    runc = shutil.which("runc")
    runsc = shlex.split(args.runsc_py) if args.runsc_py else default_runsc_py()
    runc_root, runsc_root = os.path.join(work, "runc-root"), os.path.join(work, "runsc-root")
    q = shlex.quote
    runc_cmd = f"{q(runc)} --root {q(runc_root)}" if runc else ""
    runsc_cmd = " ".join(q(a) for a in runsc) + f" --root {q(runsc_root)}"
    warm_root = os.path.join(work, "runsc-warm-root")
    warm_cmd = " ".join(q(a) for a in runsc) + f" --root {q(warm_root)}"
    started = subprocess.run(shlex.split(warm_cmd) + ["factory", "start"], capture_output=True, text=True)
    no_factory = None if started.returncode == 0 else f"factory did not start: {started.stderr.strip()}"
    b = q(bundle)

    def cleanup() -> None:
        subprocess.run(shlex.split(warm_cmd) + ["factory", "stop"], capture_output=True)
        for cmd, root in ((runc_cmd, runc_root), (runsc_cmd, runsc_root), (warm_cmd, warm_root)):
            if cmd and os.path.isdir(root):
                for cid in os.listdir(root):
                    if not cid.startswith("."):
                        subprocess.run(shlex.split(cmd) + ["delete", "--force", cid], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    atexit.register(cleanup)

    no_runc = None if runc else "runc not installed (apt-get install runc)"
    return [
        Contestant("runc run", (lambda n: sh(f"exec {runc_cmd} run --bundle {b} r$$")) if runc else None,
                   skip=no_runc),
        Contestant("runc create,start,delete",
                   (lambda n: sh(f"{runc_cmd} create --bundle {b} c$$ && {runc_cmd} start c$$ && "
                                 f"until {runc_cmd} state c$$ | grep -q '\"stopped\"'; do :; done; "
                                 f"{runc_cmd} delete c$$")) if runc else None,
                   skip=no_runc, note="state polled for the exit"),
        Contestant("runsc-py run", lambda n: sh(f"exec {runsc_cmd} run --bundle {b} r$$")),
        Contestant("runsc-py create,start,wait,delete",
                   lambda n: sh(f"{runsc_cmd} create --bundle {b} c$$ && {runsc_cmd} start c$$ && "
                                f"{runsc_cmd} wait c$$ >/dev/null; {runsc_cmd} delete c$$"),
                   ok_returncodes=(0,)),
        Contestant("runsc-py run, factory", lambda n: sh(f"exec {warm_cmd} run --bundle {b} r$$"),
                   skip=no_factory, note="forked from a warm factory"),
        Contestant("runsc-py create,start,wait,delete, factory",
                   lambda n: sh(f"{warm_cmd} create --bundle {b} c$$ && {warm_cmd} start c$$ && "
                                f"{warm_cmd} wait c$$ >/dev/null; {warm_cmd} delete c$$"),
                   ok_returncodes=(0,), skip=no_factory, note="every command forked"),
        Contestant("native true", lambda n: [os.path.join(bundle, "rootfs", "bin", "true")],
                   note="host, no container"),
        Contestant("python3 -c pass", lambda n: [sys.executable, "-c", "pass"],
                   note="interpreter start, with site"),
        Contestant("python3 -IS -c pass", lambda n: [sys.executable, "-IS", "-c", "pass"],
                   note="interpreter start as the launcher does it: the floor of each cold command"),
    ]


def main(argv=None) -> int:
    parser = harness.arg_parser(BENCH, __doc__.split("\n\n")[0])
    parser.add_argument("--runsc-py", metavar="CMD", default=None,
                        help="command that runs runsc-py (default: the installed runsc-py "
                             "beside this python3, as an engine runs it)")
    return harness.main(BENCH, contestants, argv, parser)


if __name__ == "__main__":
    sys.exit(main())
