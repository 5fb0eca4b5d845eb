#!/usr/bin/env python3
"""Idle-sandbox memory: PSS of N concurrent idle containers, runsc-py beside runc (and gVisor).

Each runtime starts N containers (default 20) of the busybox-static bundle of
tests/rootfs.py running `sleep 100000`, with `create` + `start` as an engine
does (runsc-py's default settings: its factory starts on the first command and
forks the later Sentries), waits
until all are up and a moment more, then sums the proportional set size
(/proc/PID/smaps_rollup `Pss:`) of every process that belongs to a
container:

  runc      the container's process (runc itself exits after `start`)
  runsc-py  the Sentry (the state's pid), its Gofer and stubs (its descendants)
  gVisor    every process whose command line names the container's bundle or id
            (runsc's sandbox and gofer), with --platform=ptrace --network=none

PSS divides each shared page among its sharers, so N sandboxes that share
their interpreter's pages (forked from one factory) each count a fraction
of them.  Printed: total and per-container PSS in MB for each runtime, and
runsc-py's per-container excess over runc (the issue's target: at most
10 MB).  Every container is killed and deleted at the end.

    python3 bench/idle_pss.py [-n 20] [--only runc --only runsc-py] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

RUNTIMES = ("runc", "runsc-py", "gVisor")


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(p))
    return kids


def tree(pid: int, kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def cmdline_has(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return needle in f.read()
    except OSError:
        return False


def runsc_py_cmd() -> list[str]:
    beside = os.path.join(os.path.dirname(sys.executable), "runsc-py")
    return [beside] if os.access(beside, os.X_OK) else [sys.executable, "-m", "runsc_py.cli"]


def command(runtime: str, root: str) -> list[str]:
    if runtime == "runc":
        return ["runc", "--root", root]
    if runtime == "gVisor":
        return ["runsc", "--platform=ptrace", "--network=none", "--root", root]
    return [*runsc_py_cmd(), "--root", root]


def state_pid(cmd: list[str], cid: str) -> int | None:
    for _ in range(5):                  # gVisor's state can fail while its sandboxes are busy
        p = subprocess.run([*cmd, "state", cid], capture_output=True, text=True, timeout=60)
        if p.returncode == 0:
            return json.loads(p.stdout).get("pid")
        time.sleep(0.5)
    return None


def measure(runtime: str, n: int, base: str, bundle: str, settle: float) -> dict:
    root = os.path.join(base, f"state-{runtime}")
    os.makedirs(root, exist_ok=True)
    cmd = command(runtime, root)
    ids = [f"idle-{runtime.lower().replace('-', '')}-{i:04d}" for i in range(n)]   # fixed width: gVisor takes an id prefix
    started = []
    try:
        for cid in ids:
            # stdio goes to the container with -d: a file, never a pipe we would wait on
            err = os.path.join(base, f"{cid}.err")
            with open(err, "w+") as ef:
                p = subprocess.run([*cmd, "create", "--bundle", bundle, cid], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=ef, timeout=120)
                if p.returncode == 0:
                    started.append(cid)
                    p = subprocess.run([*cmd, "start", cid], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=ef, timeout=120)
                ef.seek(0)
                why = harness._first_line(ef.read())
            if p.returncode != 0:
                return {"runtime": runtime, "error": f"create/start {cid}: {why}"}
        time.sleep(settle)
        kids = children_map()
        pids: set[int] = set()
        for cid in ids:
            pid = state_pid(cmd, cid)
            if pid is None:
                return {"runtime": runtime, "error": f"no state for {cid}"}
            if runtime == "gVisor":
                pids |= {int(p) for p in os.listdir("/proc") if p.isdigit() and cmdline_has(int(p), cid.encode())}
                pids |= set(tree(pid, kids))
            else:
                pids |= set(tree(pid, kids))
        total = sum(pss_kb(p) for p in pids)
        return {"runtime": runtime, "containers": n, "processes": len(pids), "pss_total_mb": total / 1024,
                "pss_per_container_mb": total / 1024 / n}
    finally:
        for cid in started:
            subprocess.run([*cmd, "kill", cid, "KILL"], capture_output=True, timeout=60)
        for cid in started:
            subprocess.run([*cmd, "delete", "--force", cid], capture_output=True, timeout=60)
        if runtime == "runsc-py":
            subprocess.run([*cmd, "factory", "stop"], capture_output=True, timeout=60)
        # Whatever a failed delete left (gVisor's sandbox outlives a lost state): ours by bundle path.
        for p in os.listdir("/proc"):
            if p.isdigit() and int(p) != os.getpid() and cmdline_has(int(p), bundle.encode()) \
                    and any(cmdline_has(int(p), cid.encode()) for cid in started):
                try:
                    os.kill(int(p), 9)
                except OSError:
                    pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20, help="concurrent containers per runtime (default 20)")
    ap.add_argument("--only", action="append", default=[], choices=RUNTIMES)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait after the last start")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    sys.path.insert(0, harness.REPO_DIR)
    from tests.rootfs import make_bundle
    base = tempfile.mkdtemp(prefix="bench-idle-pss-")
    results = []
    try:
        bundle = make_bundle(os.path.join(base, "bundle"), ["/bin/sleep", "100000"])
        for rt in args.only or RUNTIMES:
            tool = {"runc": "runc", "gVisor": "runsc"}.get(rt)
            if tool and not shutil.which(tool):
                results.append({"runtime": rt, "error": f"{tool} not installed"})
                continue
            print(f"{rt}: starting {args.n} containers ...", file=sys.stderr, flush=True)
            results.append(measure(rt, args.n, base, bundle, args.settle))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    by = {r["runtime"]: r for r in results}
    if "runc" in by and "runsc-py" in by and "error" not in by["runc"] and "error" not in by["runsc-py"]:
        by["runsc-py"]["excess_over_runc_mb"] = (by["runsc-py"]["pss_per_container_mb"]
                                                 - by["runc"]["pss_per_container_mb"])
    if args.json:
        json.dump({"machine": harness.machine_info(), "results": results}, sys.stdout, indent=2)
        print()
        return 0
    print(f"idle containers (`sleep`), {args.n} at once: PSS of every process of each container")
    for r in results:
        if "error" in r:
            print(f"  {r['runtime']:9} unavailable ({r['error']})")
            continue
        extra = f"; {r['excess_over_runc_mb']:+.1f} MB per container over runc" if "excess_over_runc_mb" in r else ""
        print(f"  {r['runtime']:9} {r['pss_total_mb']:8.1f} MB total, {r['pss_per_container_mb']:6.2f} MB per "
              f"container ({r['processes']} processes){extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
