#!/usr/bin/env python3
"""python3 start-up: wall time of `python3 -c pass` and of `python3 -c 'import json, email, http.client'`.

Every contestant runs the same interpreter binary (Debian bookworm's
/usr/bin/python3, on the host and in the Debian test rootfs) with the same
code, and the harness times the whole process (measure="wall").  Two
workloads, one table each:

  pass      python3 -c pass
  imports   python3 -c 'import json, email, http.client'

Contestants:

  native                 /usr/bin/python3 on the host
  native chroot debian   chroot .build/debian-rootfs /usr/bin/python3 (same binary, other tree)
  runsc-py do            runsc-py do -- /usr/bin/python3 ...  (the host root, read-only, via the Gofer)
  runsc-py run debian    runsc-py run of a bundle whose root is the Debian rootfs (read-only),
                         proc at /proc, tmpfs at /tmp -- what a container start costs
  runsc-py do /bin/true  the sandbox's own start and teardown, for the breakdown
  proot                  proot /usr/bin/python3 ... (when proot is installed)

After the tables comes a breakdown for each workload (skip it with
--no-breakdown): one `runsc-py --strace do` run, its syscalls by kind (file
opens and stats are the calls that may walk the Gofer; the Sentry's dentry
cache answers repeats without a round trip, so they bound the round trips
from above), how many belong to the dynamic loader (from the first syscall to
ld.so's munmap of /etc/ld.so.cache after set_tid_address), and where the wall
time goes: sandbox start-up (do /bin/true minus native /bin/true), the
interpreter's own work (native), and the rest, i.e. the trapped syscalls,
divided per syscall.

The Debian rootfs is the one tests/debian.py builds (.build/debian-rootfs);
the rows that need it are skipped, with the reason, when it is missing.

    python3 bench/python_startup.py [--repeat R] [--json] [--only NAME] [--workload pass|imports]
"""
from __future__ import annotations

import collections
import json
import os
import re
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
from harness import Benchmark, Contestant  # noqa: E402

PYTHON = "/usr/bin/python3"
DEBIAN_ROOTFS = os.path.join(harness.REPO_DIR, ".build", "debian-rootfs")
DEBIAN_MARKER = ".runsc-py-debian-rootfs.complete"   # tests/debian.py writes it after a good build
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C"]
WORKLOADS = {
    "pass": "pass",
    "imports": "import json, email, http.client",
}


def bench_for(workload: str) -> Benchmark:
    return Benchmark(
        name="python_startup",
        title=f"python3 start-up, wall time of `python3 -c {shlex.quote(WORKLOADS[workload])}`",
        unit="ms",
        measure="wall",
        references=("native",),
        default_iterations=1,
        repeat=5,
        budget_s=60.0,
        timeout_s=120.0,
    )


def debian_rootfs_reason() -> str | None:
    if not os.path.isfile(os.path.join(DEBIAN_ROOTFS, DEBIAN_MARKER)):
        return f"no Debian rootfs at {DEBIAN_ROOTFS} (the tests build it: pytest tests/test_images.py)"
    if not os.path.exists(os.path.join(DEBIAN_ROOTFS, PYTHON.lstrip("/"))):
        return f"{DEBIAN_ROOTFS} has no {PYTHON}"
    return None


class RunBundles:
    """Bundles and a state root for `runsc-py run` contestants, removed at exit."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-python-startup-")
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.state)

    def bundle(self, args: list[str]) -> str:
        sys.path.insert(0, harness.REPO_DIR)
        from tests.rootfs import make_bundle
        path = os.path.join(self.dir, f"bundle-{uuid.uuid4().hex[:8]}")
        make_bundle(path, args, rootfs=DEBIAN_ROOTFS, env=ENV,
                    root={"path": DEBIAN_ROOTFS, "readonly": True},
                    mounts=[{"destination": "/proc", "type": "proc", "source": "proc"},
                            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}])
        return path

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def runsc_command(args) -> tuple[list[str], dict[str, str]]:
    runsc = shlex.split(args.runsc_py) if args.runsc_py else [sys.executable, "-m", "runsc_py.cli"]
    pypath = os.pathsep.join(p for p in (harness.REPO_DIR, os.environ.get("PYTHONPATH")) if p)
    return runsc, {"PYTHONPATH": pypath}


def contestants_for(workload: str, args, bundles: RunBundles) -> list[Contestant]:
    code = WORKLOADS[workload]
    py = [PYTHON, "-c", code]
    runsc, runsc_env = runsc_command(args)
    no_debian = debian_rootfs_reason()
    cs = [Contestant("native", lambda n: py, iterations=1)]
    if shutil.which("chroot") and not no_debian and os.geteuid() == 0:
        cs.append(Contestant("native chroot debian", lambda n: ["chroot", DEBIAN_ROOTFS, *py], iterations=1))
    else:
        cs.append(Contestant("native chroot debian", None, skip=no_debian or "needs root and chroot"))
    cs.append(Contestant("runsc-py do", lambda n: [*runsc, "do", "--", *py], iterations=1, env=runsc_env,
                         note="host root"))
    if no_debian:
        cs.append(Contestant("runsc-py run debian", None, skip=no_debian))
    else:
        bundle = bundles.bundle(py)

        def run_argv(n: int) -> list[str]:
            return [*runsc, "--root", bundles.state, "run", "--bundle", bundle, f"bench-{uuid.uuid4().hex[:8]}"]
        cs.append(Contestant("runsc-py run debian", run_argv, iterations=1, env=runsc_env, note="Debian rootfs"))
    cs.append(Contestant("runsc-py do /bin/true", lambda n: [*runsc, "do", "--", "/bin/true"], iterations=1,
                         env=runsc_env, note="sandbox start+exit, no python"))
    proot = shutil.which("proot")
    if proot:
        cs.append(Contestant("proot", lambda n: [proot, *py], iterations=1))
    else:
        cs.append(Contestant("proot", None, skip="proot not installed (apt-get install proot)"))
    return cs


# --------------------------------------------------------------------------
# breakdown

KINDS = [
    ("time (no vDSO: free natively)", {"clock_gettime", "gettimeofday", "time", "clock_getres"}),
    ("file opens", {"open", "openat", "openat2", "creat"}),
    ("stats/lookups", {"stat", "lstat", "fstat", "newfstatat", "statx", "access", "faccessat",
                       "faccessat2", "readlink", "readlinkat"}),
    ("reads", {"read", "pread64", "readv", "preadv", "preadv2"}),
    ("directory reads", {"getdents64", "getdents"}),
    ("memory (mmap/munmap/mprotect/brk)", {"mmap", "munmap", "mprotect", "brk", "mremap", "madvise"}),
    ("close", {"close"}),
]
LINE = re.compile(r"^\[\s*\d+:\s*\d+\] (\w+)\((.*)\) = (.*)$")


def parse_strace(path: str) -> list[tuple[str, str, str]]:
    calls = []
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if m:
                calls.append(m.groups())
    return calls


def loader_calls(calls: list[tuple[str, str, str]]) -> int:
    """Syscalls of ld.so: up to its munmap of /etc/ld.so.cache, the first munmap after set_tid_address."""
    seen_tid = False
    for i, (name, _, _) in enumerate(calls):
        if name == "set_tid_address":
            seen_tid = True
        elif seen_tid and name == "munmap":
            return i + 1
    return 0


def wall(argv: list[str], env: dict[str, str] | None = None, repeat: int = 3) -> float | None:
    """Median wall seconds of `argv` (None if it fails)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=dict(os.environ, **(env or {})))
        if p.returncode != 0:
            return None
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def breakdown(workload: str, args) -> dict:
    code = WORKLOADS[workload]
    runsc, runsc_env = runsc_command(args)
    with tempfile.TemporaryDirectory(prefix="bench-strace-") as tmp:
        log = os.path.join(tmp, "strace.log")
        t0 = time.perf_counter()
        p = subprocess.run([*runsc, "--strace", "--debug-log", log, "do", "--", PYTHON, "-c", code],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           env=dict(os.environ, **runsc_env))
        strace_wall = time.perf_counter() - t0
        if p.returncode != 0 or not os.path.exists(log):
            return {"workload": workload, "error": (p.stderr.strip().splitlines() or ["no strace log"])[-1]}
        calls = parse_strace(log)
    by_name = collections.Counter(name for name, _, _ in calls)
    kinds = {}
    rest = sum(by_name.values())
    for kind, names in KINDS:
        n = sum(by_name[x] for x in names)
        kinds[kind] = n
        rest -= n
    kinds["other"] = rest
    path_names = dict(KINDS)["file opens"] | dict(KINDS)["stats/lookups"]
    path_calls = [c for c in calls if c[0] in path_names and "'" in c[1] and "''" not in c[1]]
    failed = sum(1 for c in path_calls if c[2].startswith("-1"))
    t_native = wall([PYTHON, "-c", code])
    t_true_native = wall(["/bin/true"])
    t_sandbox = wall([*runsc, "do", "--", PYTHON, "-c", code], runsc_env)
    t_floor = wall([*runsc, "do", "--", "/bin/true"], runsc_env)
    out = {
        "workload": workload,
        "syscalls": len(calls),
        "by_kind": kinds,
        "top": by_name.most_common(12),
        "path_lookups": len(path_calls),
        "path_lookups_failed": failed,
        "loader_syscalls": loader_calls(calls),
        "wall_s": {"native": t_native, "native /bin/true": t_true_native, "runsc-py do": t_sandbox,
                   "runsc-py do /bin/true": t_floor, "runsc-py --strace do": strace_wall},
    }
    if None not in (t_native, t_true_native, t_sandbox, t_floor):
        startup = t_floor - t_true_native
        trapped = t_sandbox - t_floor - (t_native - t_true_native)
        out["split_s"] = {"sandbox start-up and teardown": startup,
                          "python's own work (as native)": t_native - t_true_native,
                          "trapped syscalls (the rest)": trapped}
        out["us_per_syscall"] = trapped / len(calls) * 1e6 if calls else None
        loader = out["loader_syscalls"]
        out["loader_s_estimate"] = loader * trapped / len(calls) if calls else None
    return out


def format_breakdown(b: dict) -> str:
    if "error" in b:
        return f"breakdown ({b['workload']}): unavailable ({b['error']})"
    lines = [f"breakdown of `runsc-py do -- python3 -c {shlex.quote(WORKLOADS[b['workload']])}` "
             f"(one --strace run; times are medians of 3)"]
    lines.append(f"  syscalls: {b['syscalls']}  (" + ", ".join(f"{k} {v}" for k, v in b["by_kind"].items()) + ")")
    lines.append(f"  path lookups (opens + stats naming a path; each may walk the Gofer, "
                 f"the dentry cache answers repeats): {b['path_lookups']}, of which {b['path_lookups_failed']} failed")
    lines.append(f"  dynamic loader (ld.so, up to its munmap of ld.so.cache): {b['loader_syscalls']} syscalls")
    lines.append("  most frequent: " + ", ".join(f"{n} {c}" for n, c in b["top"]))
    w = b["wall_s"]
    lines.append("  wall: " + ", ".join(f"{k} {v * 1e3:.0f} ms" if v is not None else f"{k} failed"
                                      for k, v in w.items()))
    if "split_s" in b:
        total = w["runsc-py do"]
        parts = ", ".join(f"{k} {v * 1e3:.0f} ms ({v / total:.0%})" for k, v in b["split_s"].items())
        lines.append(f"  where the {total * 1e3:.0f} ms go: {parts}")
        if b.get("us_per_syscall") is not None:
            lines.append(f"  => {b['us_per_syscall']:.0f} us per trapped syscall on average; "
                         f"the loader's share about {b['loader_s_estimate'] * 1e3:.0f} ms")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = harness.arg_parser(bench_for("pass"), __doc__.split("\n\n")[0])
    parser.add_argument("--runsc-py", metavar="CMD", default=None,
                        help="command that runs runsc-py (default: 'python3 -m runsc_py.cli' from this tree)")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), action="append", default=[],
                        help="run only this workload (repeatable; default both)")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the --strace breakdown")
    args = parser.parse_args(argv)
    if args.repeat <= 0:
        parser.error("--repeat must be > 0")
    if not os.path.exists(PYTHON):
        print(f"bench/python_startup: {PYTHON} not found", file=sys.stderr)
        return 1
    workloads = args.workload or list(WORKLOADS)
    bundles = RunBundles()
    docs = []
    try:
        for wl in workloads:
            bench = bench_for(wl)
            cs = contestants_for(wl, args, bundles)
            if args.only:
                cs = [c for c in cs if c.name in bench.references or any(s in c.name for s in args.only)]

            def progress(msg: str) -> None:
                if not args.quiet:
                    print(f"{wl}: {msg}", file=sys.stderr, flush=True)
            results = harness.run(bench, cs, iterations=1, repeat=args.repeat, progress=progress, stat=args.stat)
            doc = harness.to_json(bench, results)
            doc.update(workload=wl, code=WORKLOADS[wl], stat=args.stat)
            if not args.no_breakdown:
                if not args.quiet:
                    print(f"{wl}: breakdown ...", file=sys.stderr, flush=True)
                doc["breakdown"] = breakdown(wl, args)
            docs.append(doc)
            if not args.json:
                print(harness.format_table(bench, results, args.stat))
                if "breakdown" in doc:
                    print()
                    print(format_breakdown(doc["breakdown"]))
                print()
    finally:
        bundles.cleanup()
    if args.json:
        json.dump(docs, sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
