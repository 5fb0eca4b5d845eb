"""Shared machinery for runsc-py benchmarks: run contestants side by side.

A benchmark script (``bench/getpid.py`` is the model) declares

* a :class:`Benchmark`: which number it reads, its unit, whether lower is
  better, and which contestants are the references that every row is
  compared to (``native``, ``C floor``, ...);
* a list of :class:`Contestant`: a name, the command line as a function of
  the iteration count, and optionally a default iteration count, a CPU to pin
  it to, extra environment, or a reason it has to be skipped.

and hands both to :func:`main`, which builds nothing, parses the common
command line (``--iterations``, ``--repeat``, ``--json``, ``--only``), runs
the contestants **interleaved** (round 1 runs every contestant once, round 2
again, ...; so background load smears over all of them instead of hitting
one), takes the median of each contestant's samples and prints a table with
the ratio of each row to each reference (or a JSON document).

How a sample is measured (``Benchmark.measure``):

* ``"stdout"`` (default): the program measures itself and prints a line
  ``<metric>=<float>`` (e.g. ``ns_per_call=83.1``); the last such line
  counts.  Process start-up is thereby excluded.
* ``"wall"``: the harness times the whole process (for ``python3 -c pass``
  or ``runsc-py run`` vs ``runc run`` style benchmarks); the value is in
  ``Benchmark.unit`` (``ns``, ``us``, ``ms`` or ``s``).

Ratios are always "how many times worse than the reference": value/reference
when lower is better, reference/value when higher is better (throughput).

A contestant that fails (missing tool, non-zero exit, no metric printed,
timeout) does not stop the run: its row reads ``unavailable (<first line of
stderr>)``.

:func:`build_c` compiles ``bench/c/*.c`` on demand into ``bench/.build/``
(ignored by git), rebuilding when the source is newer than the binary.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
C_DIR = os.path.join(BENCH_DIR, "c")
BUILD_DIR = os.path.join(BENCH_DIR, ".build")

_WALL_UNITS = {"ns": 1e9, "us": 1e6, "ms": 1e3, "s": 1.0}


class Unavailable(Exception):
    """A contestant (or a tool it needs) cannot run here; the message says why."""


# --------------------------------------------------------------------------
# building helper programs


def build_c(name: str, sources: Sequence[str] | None = None,
            flags: Sequence[str] = ("-O2", "-static"),
            libs: Sequence[str] = ()) -> str:
    """Compile bench/c/<name>.c (or ``sources``) into bench/.build/<name>.

    Returns the absolute path of the binary.  Raises :class:`Unavailable`
    if no C compiler is installed or the compilation fails.
    """
    srcs = [os.path.join(C_DIR, s) for s in (sources or [name + ".c"])]
    out = os.path.join(BUILD_DIR, name)
    try:
        newest = max(os.path.getmtime(s) for s in srcs)
    except OSError as e:
        raise Unavailable(f"missing source: {e.filename}") from None
    if os.path.exists(out) and os.path.getmtime(out) >= newest:
        return out
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise Unavailable("no C compiler (gcc) installed")
    os.makedirs(BUILD_DIR, exist_ok=True)
    tmp = out + ".tmp"
    cmd = [cc, *flags, "-o", tmp, *srcs, *libs]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        first = (p.stderr.strip().splitlines() or ["?"])[0]
        raise Unavailable(f"build of {name} failed: {first}")
    os.replace(tmp, out)
    return out


# --------------------------------------------------------------------------
# declarations


@dataclass
class Benchmark:
    name: str                       # e.g. "getpid"
    title: str                      # one line shown above the table
    metric: str = "ns_per_call"     # key printed by the program (stdout mode)
    unit: str = "ns/call"           # column header / unit of the value
    lower_is_better: bool = True
    references: Sequence[str] = ("native",)   # contestant names to compare to
    measure: str = "stdout"         # "stdout" or "wall"
    default_iterations: int = 100_000
    repeat: int = 3                 # samples per contestant (median shown)
    budget_s: float = 25.0          # later rounds are dropped past this
    timeout_s: float = 60.0         # per process


@dataclass
class Contestant:
    name: str
    # argv as a function of the iteration count (None when skipped)
    argv: Callable[[int], list[str]] | None
    iterations: int | None = None   # default for this contestant
    cpu: int | None = None          # pin the process (and its children) here
    env: dict[str, str] | None = None
    skip: str | None = None         # reason: shown instead of running
    note: str = ""                  # shown in the table's last column
    ok_returncodes: Sequence[int] | None = (0,)   # None: any, if metric seen
    # explains a failed run better than stderr's first line can:
    # diagnose(stdout, stderr, returncode) -> reason or None
    diagnose: Callable[[str, str, int], str | None] | None = None


@dataclass
class Result:
    name: str
    status: str = "ok"              # ok | unavailable | skipped
    reason: str = ""
    value: float | None = None      # median of samples
    samples: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    iterations: int | None = None
    argv: list[str] = field(default_factory=list)
    cpu: int | None = None
    note: str = ""
    ratios: dict[str, float | None] = field(default_factory=dict)


# --------------------------------------------------------------------------
# running


def add_runsc_py_option(parser: argparse.ArgumentParser) -> None:
    """--runsc-py CMD: how the benchmarks that run programs under `runsc-py do` start it."""
    parser.add_argument("--runsc-py", metavar="CMD", default=None,
                        help="command that runs runsc-py (default: "
                             "'python3 -m runsc_py.cli' from this tree)")


def runsc_py_do(args: argparse.Namespace, platform: str | None = None) -> tuple[list[str], dict[str, str]]:
    """(argv prefix up to and including `do --`, environment) for a program under runsc-py
    (on `platform` when given, e.g. "kvm")."""
    runsc = shlex.split(args.runsc_py) if args.runsc_py else [sys.executable, "-m", "runsc_py.cli"]
    pypath = os.pathsep.join(p for p in (REPO_DIR, os.environ.get("PYTHONPATH")) if p)
    plat = [f"--platform={platform}"] if platform else []
    return [*runsc, *plat, "do", "--"], {"PYTHONPATH": pypath}


def kvm_skip() -> str | None:
    """Why the KVM contestants cannot run here (None: they can)."""
    if not os.path.exists("/dev/kvm"):
        return "no /dev/kvm"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm not accessible"
    return None


def proot_contestants(argv: Callable[[int], list[str]], iterations: int, cpu: int,
                      pinned_iterations: int | None = None, note: str = "") -> list[Contestant]:
    """proot running `argv`, unpinned and on `cpu` (or one skipped row when proot is missing)."""
    proot = shutil.which("proot")
    if not proot:
        return [Contestant("proot", None, skip="proot not installed")]
    return [Contestant("proot", lambda n: [proot, *argv(n)], iterations=iterations, note=note),
            Contestant("proot (pinned)", lambda n: [proot, *argv(n)],
                       iterations=pinned_iterations or iterations, cpu=cpu, note=note)]


def first_cpu() -> int:
    """The lowest-numbered CPU this process may run on."""
    return min(os.sched_getaffinity(0))


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def run_once(bench: Benchmark, c: Contestant, iterations: int,
             res: Result) -> None:
    """Run contestant ``c`` once; append a sample to ``res`` or raise
    :class:`Unavailable`."""
    argv = c.argv(iterations)
    res.argv = argv
    env = dict(os.environ)
    if c.env:
        env.update(c.env)
    preexec = None
    if c.cpu is not None:
        cpu = c.cpu

        def preexec() -> None:      # noqa: E306 - runs in the child
            os.sched_setaffinity(0, {cpu})
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env, preexec_fn=preexec,
                             start_new_session=True, text=True,
                             errors="replace")
    except OSError as e:
        raise Unavailable(f"{argv[0]}: {e.strerror}") from None
    try:
        out, err = p.communicate(timeout=bench.timeout_s)
    except subprocess.TimeoutExpired:
        # only our own child's process group
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()
        raise Unavailable(f"timed out after {bench.timeout_s:.0f} s") from None
    wall = time.perf_counter() - t0
    # the child ran in its own session; make sure nothing of it lingers
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

    value = None
    if bench.measure == "stdout":
        pat = re.compile(rf"^{re.escape(bench.metric)}=([0-9.eE+-]+)\s*$")
        for line in out.splitlines():
            m = pat.match(line.strip())
            if m:
                value = float(m.group(1))
    else:
        value = wall * _WALL_UNITS[bench.unit.split("/")[0]]

    ok_rc = c.ok_returncodes is None or p.returncode in c.ok_returncodes
    if not ok_rc or value is None:
        why = (c.diagnose and c.diagnose(out, err, p.returncode)) \
            or _first_line(err) or _first_line(out)
        if not ok_rc:
            why = why or f"exit status {p.returncode}"
        else:
            why = why or f"printed no {bench.metric}= line"
        raise Unavailable(why)
    res.samples.append(value)
    res.wall_s.append(wall)


STATS = {"median": statistics.median, "min": min, "mean": statistics.mean}


def run(bench: Benchmark, contestants: Sequence[Contestant],
        iterations: int | None = None, repeat: int | None = None,
        progress=None, stat: str = "median") -> list[Result]:
    """Run all contestants ``repeat`` times, interleaved, within the budget."""
    repeat = repeat or bench.repeat
    results = []
    for c in contestants:
        r = Result(name=c.name, cpu=c.cpu, note=c.note,
                   iterations=iterations or c.iterations or bench.default_iterations)
        if c.skip or c.argv is None:
            r.status, r.reason = "skipped", c.skip or "no command"
        results.append(r)

    start = time.perf_counter()
    for rnd in range(repeat):
        for c, r in zip(contestants, results):
            if r.status != "ok":
                continue
            if rnd > 0:
                spent = time.perf_counter() - start
                if spent + (r.wall_s[-1] if r.wall_s else 0) > bench.budget_s:
                    continue        # keep the whole run within the budget
            if progress:
                progress(f"[{rnd + 1}/{repeat}] {c.name} (n={r.iterations}) ...")
            try:
                run_once(bench, c, r.iterations, r)
            except Unavailable as e:
                r.status, r.reason = "unavailable", str(e)

    for r in results:
        if r.status == "ok" and r.samples:
            # min is "best" only when lower is better
            pick = STATS[stat]
            if stat == "min" and not bench.lower_is_better:
                pick = max
            r.value = pick(r.samples)
    by_name = {r.name: r for r in results}
    for r in results:
        for ref in bench.references:
            base = by_name.get(ref)
            if r.value is None or base is None or not base.value:
                r.ratios[ref] = None
            elif bench.lower_is_better:
                r.ratios[ref] = r.value / base.value
            else:
                r.ratios[ref] = base.value / r.value if r.value else None
    return results


# --------------------------------------------------------------------------
# reporting


def machine_info() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus_online": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _fmt_value(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def format_table(bench: Benchmark, results: Sequence[Result],
                 stat: str = "median") -> str:
    headers = ["contestant", bench.unit] + [f"x {ref}" for ref in bench.references] + ["notes"]
    rows = []
    for r in results:
        if r.value is None:
            label = "skipped" if r.status == "skipped" else "unavailable"
            rows.append([r.name, f"{label} ({r.reason})"])
            continue
        notes = [f"n={r.iterations:,}"]
        if len(r.samples) > 1:
            notes.append(f"{len(r.samples)} runs {_fmt_value(min(r.samples))}"
                         f"..{_fmt_value(max(r.samples))}")
        if r.cpu is not None:
            notes.append(f"cpu {r.cpu}")
        if r.note:
            notes.append(r.note)
        ratios = ["-" if r.ratios.get(ref) is None else f"{r.ratios[ref]:.2f}x"
                  for ref in bench.references]
        rows.append([r.name, _fmt_value(r.value), *ratios, "; ".join(notes)])

    ncols = len(headers)
    widths = [len(h) for h in headers]
    for row in rows:
        widths[0] = max(widths[0], len(row[0]))
        if len(row) == ncols:
            for i, cell in enumerate(row[:-1]):
                widths[i] = max(widths[i], len(cell))
    lines = [bench.title, f"(value = {stat} of each contestant's runs)", ""]

    def fmt(row):
        cells = []
        for i, cell in enumerate(row):
            if i == len(row) - 1:
                cells.append(cell)
            elif i == 0:
                cells.append(cell.ljust(widths[i]))
            else:
                cells.append(cell.rjust(widths[i]))
        return "  ".join(cells).rstrip()

    lines.append(fmt(headers))
    lines.append("  ".join("-" * w for w in widths[:-1]) + "  " + "-" * 5)
    for row in rows:
        if len(row) == ncols:
            lines.append(fmt(row))
        else:   # unavailable / skipped: name + message
            lines.append(row[0].ljust(widths[0]) + "  " + row[1])
    return "\n".join(lines)


def to_json(bench: Benchmark, results: Sequence[Result]) -> dict:
    return {
        "benchmark": bench.name,
        "metric": bench.metric if bench.measure == "stdout" else "wall",
        "unit": bench.unit,
        "lower_is_better": bench.lower_is_better,
        "references": list(bench.references),
        "machine": machine_info(),
        "results": [{
            "name": r.name,
            "status": r.status,
            "reason": r.reason or None,
            "value": r.value,
            "samples": r.samples,
            "wall_s": [round(w, 4) for w in r.wall_s],
            "iterations": r.iterations,
            "cpu": r.cpu,
            "argv": r.argv,
            "ratios": r.ratios,
        } for r in results],
    }


# --------------------------------------------------------------------------
# command line


def arg_parser(bench: Benchmark, description: str = "") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"bench/{bench.name}.py",
                                description=description or bench.title)
    p.add_argument("--iterations", "-n", type=int, default=None,
                   help="iterations for every contestant (default: a per-contestant "
                        "count chosen so the whole run stays under ~30 s)")
    p.add_argument("--repeat", "-r", type=int, default=bench.repeat,
                   help=f"runs per contestant; the median is shown (default {bench.repeat})")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--only", action="append", default=[], metavar="SUBSTR",
                   help="run only contestants whose name contains SUBSTR (repeatable); "
                        "references are always run")
    p.add_argument("--stat", choices=sorted(STATS), default="median",
                   help="how a contestant's runs combine into its value (default "
                        "median; 'min' = best run, robust against a loaded machine)")
    p.add_argument("--cpu", type=int, default=None,
                   help="CPU for the pinned contestants (default: the first allowed one)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    return p


def main(bench: Benchmark, make_contestants: Callable[[argparse.Namespace], list[Contestant]],
         argv: Sequence[str] | None = None,
         parser: argparse.ArgumentParser | None = None) -> int:
    parser = parser or arg_parser(bench)
    args = parser.parse_args(argv)
    if args.iterations is not None and args.iterations <= 0:
        parser.error("--iterations must be > 0")
    if args.repeat <= 0:
        parser.error("--repeat must be > 0")
    if args.cpu is not None and args.cpu not in os.sched_getaffinity(0):
        parser.error(f"--cpu {args.cpu}: not a CPU this process may use")
    try:
        contestants = make_contestants(args)
    except Unavailable as e:
        print(f"bench/{bench.name}: {e}", file=sys.stderr)
        return 1
    if args.only:
        contestants = [c for c in contestants
                       if c.name in bench.references
                       or any(s in c.name for s in args.only)]

    def progress(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    results = run(bench, contestants, iterations=args.iterations,
                  repeat=args.repeat, progress=progress, stat=args.stat)
    if args.json:
        doc = to_json(bench, results)
        doc["stat"] = args.stat
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(format_table(bench, results, args.stat))
    return 0
