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
* `native true`: the program itself on the host, for scale;
* `python3 -c pass`: the interpreter's start, which every runsc-py command
  pays once (the engine's sequence four times) -- the floor of this design.

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
    b = q(bundle)

    def cleanup() -> None:
        for cmd, root in ((runc_cmd, runc_root), (runsc_cmd, runsc_root)):
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
        Contestant("native true", lambda n: [os.path.join(bundle, "rootfs", "bin", "true")],
                   note="host, no container"),
        Contestant("python3 -c pass", lambda n: [sys.executable, "-c", "pass"],
                   note="interpreter start: the floor of each runsc-py command"),
    ]


def main(argv=None) -> int:
    parser = harness.arg_parser(BENCH, __doc__.split("\n\n")[0])
    parser.add_argument("--runsc-py", metavar="CMD", default=None,
                        help="command that runs runsc-py (default: the installed runsc-py "
                             "beside this python3, as an engine runs it)")
    return harness.main(BENCH, contestants, argv, parser)


if __name__ == "__main__":
    sys.exit(main())
