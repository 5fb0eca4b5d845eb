#!/usr/bin/env python3
"""Filesystem syscalls, side by side: stat and open+close (ns/op), small-file
create+write+unlink (ns/op, and ops/s = 1e9 / that), 64 MiB sequential write and read (MB/s).

Every contestant runs bench/c/fileops.c on the same host directory: natively,
under proot (-r the directory's rootfs), and under `runsc-py run` of a bundle
whose rootfs is that directory (so the Gofer serves it: its round trips and
the Sentry's dentry cache are part of what is measured).

    python3 bench/fileops.py [--only NAME] [--mode stat --mode open] [--pin [--cpu N]]

--mode MODE (repeatable) runs only those workloads; --pin runs every contestant (native,
the whole sandbox, proot) on one CPU (--cpu, default the first allowed one).  Unpinned, on
a machine with an idle second CPU, every ptrace stop can become a cross-CPU wake-up of a
halted vCPU (tens of microseconds: see README, getpid.py), for proot and runsc-py alike.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Benchmark, Contestant  # noqa: E402

MODES = [  # (mode, metric, unit, iterations)
    ("stat", "ns_per_op", "ns/op", 20_000),
    ("open", "ns_per_op", "ns/op", 10_000),
    ("create", "ns_per_op", "ns/op (create+write+unlink)", 1_000),
    ("write", "mb_per_s", "MB/s (64 MiB sequential write)", 1),
    ("read", "mb_per_s", "MB/s (64 MiB sequential read)", 1),
]


def _world() -> tuple[str, str, str]:
    """A rootfs holding the program and /data, and a bundle over it."""
    base = tempfile.mkdtemp(prefix="bench-fileops-")
    root = os.path.join(base, "rootfs")
    os.makedirs(os.path.join(root, "data"))
    prog = harness.build_c("fileops")
    shutil.copy2(prog, os.path.join(root, "fileops"))
    bundle = os.path.join(base, "bundle")
    os.makedirs(bundle)
    cfg = {"ociVersion": "1.0.2", "process": {"args": ["/fileops"], "cwd": "/", "env": ["PATH=/"],
                                              "user": {"uid": 0, "gid": 0}},
           "root": {"path": root, "readonly": False}, "hostname": "bench"}
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    return base, root, bundle


def main(argv=None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--mode", action="append", default=[], choices=[m[0] for m in MODES])
    pre.add_argument("--pin", action="store_true")
    own, argv = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print("fileops.py's own options: --mode {%s} (repeatable: only those workloads), --pin (every "
              "contestant on one CPU, --cpu)\n" % ",".join(m[0] for m in MODES))
    pin = None
    if own.pin:                         # the harness's own --cpu names the CPU
        cpu = argparse.ArgumentParser(add_help=False)
        cpu.add_argument("--cpu", type=int, default=harness.first_cpu())
        pin = cpu.parse_known_args(argv)[0].cpu
    base, root, bundle = _world()
    pypath = os.pathsep.join(p for p in (harness.REPO_DIR, os.environ.get("PYTHONPATH")) if p)
    runsc = [sys.executable, "-m", "runsc_py.cli", "--root", os.path.join(base, "state")]
    proot = shutil.which("proot")
    status = 0
    try:
        for mode, metric, unit, iters in MODES:
            if own.mode and mode not in own.mode:
                continue
            bench = Benchmark(name=f"fileops-{mode}", title=f"fileops {mode}: {unit}", metric=metric, unit=unit,
                              references=("native",), default_iterations=iters)

            def contestants(args, mode=mode, iters=iters) -> list[Contestant]:
                def in_bundle(n: int) -> list[str]:
                    with open(os.path.join(bundle, "config.json")) as f:
                        cfg = json.load(f)
                    cfg["process"]["args"] = ["/fileops", mode, str(n), "/data"]
                    with open(os.path.join(bundle, "config.json"), "w") as f:
                        json.dump(cfg, f)
                    return [*runsc, "run", "--bundle", bundle, f"fileops-{mode}-{os.getpid()}"]
                cs = [Contestant("native", lambda n: [os.path.join(root, "fileops"), mode, str(n),
                                                      os.path.join(root, "data")], iterations=iters, cpu=pin),
                      Contestant("runsc-py", in_bundle, iterations=iters, env={"PYTHONPATH": pypath}, cpu=pin)]
                if proot:
                    cs.append(Contestant("proot", lambda n: [proot, "-r", root, "/fileops", mode, str(n), "/data"],
                                         iterations=iters, cpu=pin))
                else:
                    cs.append(Contestant("proot", None, skip="proot not installed"))
                return cs

            status |= harness.main(bench, contestants, argv, harness.arg_parser(bench, __doc__.split("\n\n")[0]))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
