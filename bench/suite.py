#!/usr/bin/env python3
"""The issue-13 bench suite: real workloads side by side, native vs runc, gVisor, runsc-py, proot.

Every contestant runs the SAME driver script (/bin/sh, written here) on the
SAME Debian bookworm rootfs (tests/debian.py builds it into
.build/debian-rootfs), with the same two bind mounts:

  /bench   (read-only)  the static workload programs (bench/c/*.c) and the driver
  /data    (writable)   a fresh host scratch directory per run: file workloads, tar, sqlite

The driver runs every workload in turn; each workload measures itself inside
the sandbox (the C programs time their own loop; `timeit` times whole
commands: fork, execve, wait), so sandbox start-up is not in these numbers.
Start-up is measured on its own: the last row, `run: python3 -c pass`, is
the wall time of one whole `run` (runsc-py/runc/runsc), `chroot` (native) or
`proot` command, timed from outside.

Contestants (one invocation, interleaved: round 1 runs each once, round 2...):

  native     unshare -m: bind the two dirs into the rootfs, chroot, run the driver
  runc       runc run of an OCI bundle (root read-only, /proc, /tmp tmpfs, the binds)
  gVisor     runsc --platform=ptrace --network=none run of the same bundle
             (Debian's `runsc` package, release 2022-12-19)
  runsc-py   runsc-py run of the same bundle (default settings)
  proot      proot -r ROOTFS -b ... /bin/sh driver

Output: one table, a row per workload, a column per contestant (value, and the
ratio to native: "times worse", so > 1 is slower for every metric, throughput
too), the geometric mean of the ratios per contestant, and the load average
before and after (the CPUs are shared: read ratios within one run).

    python3 bench/suite.py              # full: 3 rounds, full iteration counts (several minutes)
    python3 bench/suite.py --quick      # 1 round, small counts (about a minute)
    python3 bench/suite.py --only runsc-py --only native --workload fork --workload exec
    python3 bench/suite.py --json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ROOTFS = os.path.join(harness.REPO_DIR, ".build", "debian-rootfs")
MARKER = ".runsc-py-debian-rootfs.complete"
PROGRAMS = ("getpid_loop", "fileops", "fork_wait", "pipe_throughput", "timeit")
IMPORTS = "import json, email, http.client, sqlite3, asyncio"
SHELL_LOOP = "i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i+1)); done"
TAR = ("cd /data && tar czf t.tgz -C /usr/lib/python3.11 email json asyncio http && mkdir x && "
       "tar xzf t.tgz -C x && rm -rf x t.tgz")
SQLITE = "rm -f /data/t.db && sqlite3 /data/t.db < /bench/inserts.sql"
SQLITE_ROWS = 20_000

# name, title, metric printed, unit, lower is better, command (full count, quick count)
WORKLOADS = [
    ("getpid", "getpid", "ns_per_call", "ns", True, "/bench/getpid_loop {n}", (200_000, 20_000)),
    ("open", "open+close", "ns_per_op", "ns", True, "/bench/fileops open {n} /data", (20_000, 2_000)),
    ("stat", "stat", "ns_per_op", "ns", True, "/bench/fileops stat {n} /data", (20_000, 2_000)),
    ("create", "create+write+unlink", "ns_per_op", "ns", True, "/bench/fileops create {n} /data",
     (2_000, 200)),
    ("fork", "fork+exit+wait", "us_per_op", "us", True, "/bench/fork_wait {n}", (500, 50)),
    ("fork32", "fork+exit+wait, 32 MiB heap touched", "us_per_op", "us", True, "/bench/fork_wait {n} 32",
     (300, 30)),
    ("exec", "exec dynamic /bin/true", "ms_per_run", "ms", True, "/bench/timeit {n} /bin/true", (50, 10)),
    ("pipe", "pipe 64 KiB writes", "mb_per_s", "MB/s", False, "/bench/pipe_throughput {n}", (256, 32)),
    ("fwrite", "file write 64 MiB", "mb_per_s", "MB/s", False, "/bench/fileops write 1 /data", (1, 1)),
    ("fread", "file read 64 MiB", "mb_per_s", "MB/s", False, "/bench/fileops read 1 /data", (1, 1)),
    ("pypass", "python3 -c pass", "ms_per_run", "ms", True, "/bench/timeit {n} python3 -c pass", (10, 3)),
    ("pyimports", "python3 -c 'import json, email, http.client, sqlite3, asyncio'", "ms_per_run", "ms", True,
     "/bench/timeit {n} python3 -c " + shlex.quote(IMPORTS), (5, 2)),
    ("shloop", "sh: 100x /bin/true", "ms_per_run", "ms", True,
     "/bench/timeit {n} /bin/sh -c " + shlex.quote(SHELL_LOOP), (3, 1)),
    ("tar", "tar czf + tar xzf (python3.11 email json asyncio http)", "ms_per_run", "ms", True,
     "/bench/timeit {n} /bin/sh -c " + shlex.quote(TAR), (3, 1)),
    ("sqlite", f"sqlite3: {SQLITE_ROWS:,} inserts (one transaction)", "ms_per_run", "ms", True,
     "/bench/timeit {n} /bin/sh -c " + shlex.quote(SQLITE), (3, 1)),
]
STARTUP = ("startup", "run: python3 -c pass (whole command, from outside)", "ms", True)
CONTESTANTS = ("native", "runc", "gVisor", "runsc-py", "proot")


def rootfs_reason() -> str | None:
    if not os.path.isfile(os.path.join(ROOTFS, MARKER)):
        return (f"no Debian rootfs at {ROOTFS}: build it with "
                "python3 -c 'from tests.debian import build_debian_rootfs as b; b()'")
    return None


class World:
    """Programs, the driver, bundles and state roots in one temporary directory (removed at exit)."""

    def __init__(self, workloads: list[tuple], quick: bool) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-suite-")
        self.tools = os.path.join(self.dir, "tools")
        os.makedirs(self.tools)
        for p in PROGRAMS:
            shutil.copy2(harness.build_c(p), os.path.join(self.tools, p))
        with open(os.path.join(self.tools, "inserts.sql"), "w") as f:
            f.write("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, value REAL);\nBEGIN;\n")
            for i in range(SQLITE_ROWS):
                f.write(f"INSERT INTO t (name, value) VALUES ('row-{i}', {i * 0.5});\n")
            f.write("COMMIT;\nSELECT count(*) FROM t;\n")
        lines = ["#!/bin/sh", "# written by bench/suite.py", "export LANG=C HOME=/root", "cd /"]
        for name, _t, _m, _u, _l, cmd, counts in workloads:
            n = counts[1] if quick else counts[0]
            lines.append(f"echo @{name}")
            lines.append(cmd.format(n=n) + " || echo @failed")
        with open(os.path.join(self.tools, "driver.sh"), "w") as f:
            f.write("\n".join(lines) + "\n")
        for d in ("bench", "data"):          # mount points (empty dirs) in the shared rootfs
            os.makedirs(os.path.join(ROOTFS, d), exist_ok=True)

    def scratch(self) -> str:
        d = os.path.join(self.dir, f"data-{uuid.uuid4().hex[:8]}")
        os.makedirs(d)
        return d

    def bundle(self, args: list[str], data: str) -> str:
        path = os.path.join(self.dir, f"bundle-{uuid.uuid4().hex[:8]}")
        os.makedirs(path)
        cfg = {
            "ociVersion": "1.0.2",
            "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                "HOME=/root", "LANG=C"],
                        "cwd": "/", "noNewPrivileges": True},
            "root": {"path": ROOTFS, "readonly": True},
            "hostname": "bench",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
                {"destination": "/bench", "type": "bind", "source": self.tools, "options": ["rbind", "ro"]},
                {"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]},
            ],
            "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]},
        }
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        return path

    def state(self, who: str) -> str:
        d = os.path.join(self.dir, f"state-{who}")
        os.makedirs(d, exist_ok=True)
        return d

    def cleanup(self) -> None:
        for who in ("runc", "gVisor", "runsc-py"):
            pass        # containers are run with `run`: each is deleted when it exits
        shutil.rmtree(self.dir, ignore_errors=True)


def runsc_py_cmd(args) -> list[str]:
    if args.runsc_py:
        return shlex.split(args.runsc_py)
    beside = os.path.join(os.path.dirname(sys.executable), "runsc-py")
    return [beside] if os.access(beside, os.X_OK) else [sys.executable, "-m", "runsc_py.cli"]


def command(who: str, world: World, args, inner: list[str], data: str) -> list[str] | None:
    """argv running `inner` (inside the rootfs) for contestant `who`."""
    cid = f"bench-{uuid.uuid4().hex[:10]}"
    if who == "native":
        script = (f"mount --bind {shlex.quote(world.tools)} {ROOTFS}/bench && "
                  f"mount --bind {shlex.quote(data)} {ROOTFS}/data && "
                  f"exec chroot {ROOTFS} /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C "
                  + " ".join(shlex.quote(a) for a in inner))
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
    if who == "proot":
        return ["proot", "-r", ROOTFS, "-b", f"{world.tools}:/bench", "-b", f"{data}:/data", "-w", "/",
                "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C", *inner]
    bundle = world.bundle(inner, data)
    if who == "runc":
        return ["runc", "--root", world.state("runc"), "run", "--bundle", bundle, cid]
    if who == "gVisor":
        return ["runsc", "--platform=ptrace", "--network=none", "--root", world.state("gVisor"),
                "run", "--bundle", bundle, cid]
    if who == "runsc-py":
        return [*runsc_py_cmd(args), "--root", world.state("runsc-py"), "run", "--bundle", bundle, cid]
    if who in args.extra:                 # --also NAME=CMD: another runsc-py (a before/after pair)
        return [*shlex.split(args.extra[who]), "--root", world.state(who), "run", "--bundle", bundle, cid]
    raise ValueError(who)


def skip_reason(who: str) -> str | None:
    tool = {"native": "unshare", "runc": "runc", "gVisor": "runsc", "proot": "proot"}.get(who)
    if tool and not shutil.which(tool):
        return f"{tool} not installed"
    if who == "native" and os.geteuid() != 0:
        return "needs root (mount, chroot)"
    return None


def parse_driver(out: str, workloads: list[tuple]) -> dict[str, float | str]:
    metric = {w[0]: w[2] for w in workloads}
    got: dict[str, float | str] = {}
    cur = None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("@"):
            if line == "@failed" and cur:
                got[cur] = "failed"
            else:
                cur = line[1:]
            continue
        if cur and "=" in line:
            k, _, v = line.partition("=")
            if k == metric.get(cur) and not isinstance(got.get(cur), str):
                try:
                    got[cur] = float(v)
                except ValueError:
                    pass
    return got


def run_cmd(argv: list[str], timeout: float, cwd: str = "/") -> tuple[int, str, str, float]:
    """(status, stdout, stderr, wall seconds); run from `cwd` ("/": `python3 -m` puts the cwd on sys.path)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, errors="replace", start_new_session=True, cwd=cwd)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        out, err = p.communicate()
        return -9, out, err + f"\ntimed out after {timeout:.0f} s", time.perf_counter() - t0
    return p.returncode, out, err, time.perf_counter() - t0


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 round, small iteration counts")
    ap.add_argument("--repeat", "-r", type=int, default=None, help="rounds (default 3, --quick 1)")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="contestants to run (repeatable; native always runs)")
    ap.add_argument("--workload", action="append", default=[], metavar="NAME",
                    help="workloads to run (repeatable): " + ", ".join(w[0] for w in WORKLOADS) + ", startup")
    ap.add_argument("--stat", choices=("median", "min"), default="median")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per driver run")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=CMD",
                    help="one more runsc-py contestant NAME run as CMD, e.g. base='env PYTHONPATH=/tmp/base "
                         "python3 -m runsc_py.cli' (a before/after comparison in one invocation)")
    harness.add_runsc_py_option(ap)
    args = ap.parse_args(argv)
    args.extra = dict(a.split("=", 1) for a in args.also)
    why = rootfs_reason()
    if why:
        print(f"bench/suite: {why}", file=sys.stderr)
        return 1
    rounds = args.repeat or (1 if args.quick else 3)
    workloads = [w for w in WORKLOADS if not args.workload or w[0] in args.workload]
    do_startup = not args.workload or "startup" in args.workload
    who_all = [c for c in CONTESTANTS if c == "native" or not args.only or c in args.only] + list(args.extra)
    skipped = {c: skip_reason(c) for c in who_all}
    who = [c for c in who_all if not skipped[c]]
    world = World(workloads, args.quick)
    samples: dict[str, dict[str, list[float]]] = {c: {} for c in who}
    failures: dict[str, dict[str, str]] = {c: {} for c in who}
    load_before = loadavg()
    t_start = time.time()

    def note(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)
    try:
        for rnd in range(rounds):
            for c in who:
                if workloads:
                    note(f"[{rnd + 1}/{rounds}] {c}: driver ({len(workloads)} workloads) ...")
                    argv_c = command(c, world, args, ["/bin/sh", "/bench/driver.sh"], world.scratch())
                    rc, out, err, wall = run_cmd(argv_c, args.timeout)
                    got = parse_driver(out, workloads)
                    for w in workloads:
                        v = got.get(w[0])
                        if isinstance(v, float):
                            samples[c].setdefault(w[0], []).append(v)
                        elif w[0] not in samples[c]:
                            failures[c][w[0]] = ("failed" if v == "failed" else
                                                 f"no result (exit {rc}: {harness._first_line(err)})")
                    note(f"    {wall:.1f} s, exit {rc}")
                if do_startup:
                    argv_s = command(c, world, args, ["/usr/bin/python3", "-c", "pass"], world.scratch())
                    rc, out, err, wall = run_cmd(argv_s, 120)
                    if rc == 0:
                        samples[c].setdefault("startup", []).append(wall * 1e3)
                    elif "startup" not in samples[c]:
                        failures[c]["startup"] = f"exit {rc}: {harness._first_line(err)}"
    finally:
        world.cleanup()
    rows = [(w[0], w[1], w[3], w[4]) for w in workloads] + ([STARTUP] if do_startup else [])
    pick = statistics.median if args.stat == "median" else None
    table: dict[str, dict[str, float]] = {c: {} for c in who}
    for c in who:
        for name, _t, _u, lower in rows:
            s = samples[c].get(name)
            if s:
                table[c][name] = pick(s) if pick else (min(s) if lower else max(s))
    ratios: dict[str, dict[str, float]] = {c: {} for c in who}
    for c in who:
        for name, _t, _u, lower in rows:
            v, base = table[c].get(name), table.get("native", {}).get(name)
            if v and base:
                ratios[c][name] = v / base if lower else base / v
    geo = {c: (math.exp(sum(math.log(r) for k, r in ratios[c].items() if k != "startup")
                        / max(1, len([k for k in ratios[c] if k != "startup"])))
               if [k for k in ratios[c] if k != "startup"] else None) for c in who}
    doc = {"benchmark": "suite", "quick": args.quick, "rounds": rounds, "stat": args.stat,
           "machine": harness.machine_info(), "load_before": load_before, "load_after": loadavg(),
           "seconds": round(time.time() - t_start), "rootfs": ROOTFS,
           "skipped": {c: r for c, r in skipped.items() if r},
           "workloads": [{"name": n, "title": t, "unit": u, "lower_is_better": low} for n, t, u, low in rows],
           "values": table, "samples": samples, "ratios": ratios, "failures": failures,
           "geomean_ratio": geo}
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0
    print(f"bench/suite.py{' --quick' if args.quick else ''}: {rounds} round(s), {args.stat} of rounds, "
          f"Debian rootfs; value (x native: times worse, > 1 is slower)")
    head = ["workload", "unit"] + who
    out_rows = []
    for name, title, unit, _low in rows:
        cells = [title[:44], unit]
        for c in who:
            v = table[c].get(name)
            if v is None:
                cells.append(failures[c].get(name, "-")[:24])
            else:
                r = ratios[c].get(name)
                val = f"{v:,.0f}" if v >= 100 else f"{v:.2f}"
                cells.append(val if c == "native" or r is None else f"{val} ({r:.2f}x)")
        out_rows.append(cells)
    out_rows.append(["geometric mean of ratios", ""] +
                    [("-" if geo[c] is None else f"{geo[c]:.2f}x") for c in who])
    widths = [max(len(r[i]) for r in [head] + out_rows) for i in range(len(head))]
    for r in [head] + out_rows:
        print("  ".join(cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(r)))
    for c, r in skipped.items():
        if r:
            print(f"{c}: skipped ({r})")
    m = doc["machine"]
    print(f"load average before {load_before}, after {doc['load_after']}; {m['cpus_online']} CPUs, "
          f"kernel {m['kernel']}, {m['date_utc']}, {doc['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
