#!/usr/bin/env python3
"""Pipe throughput: MB/s through a pipe with 64 KiB writes, side by side.

Every contestant runs the same static program, bench/c/pipe_throughput.c:
a forked child writes N MiB into a pipe in 64 KiB write(2)s, the parent
reads them in 64 KiB read(2)s until EOF; it prints mb_per_s (10^6 bytes
per second) timed inside the parent from the first byte to EOF (start-up
and fork excluded).  In runsc-py the pipe is the Sentry's own (sentry/pipe.py):
every 64 KiB crosses application memory -> Sentry -> application memory.
Contestants:

  native              the program on the host kernel
  runsc-py            runsc-py do -- pipe_throughput N (the Python Sentry)
  runsc-py (pinned)   the same, the whole sandbox confined to one CPU
  proot, proot (pinned)   when proot is installed (the pipe is the host's)

The iteration count is the number of MiB.

    python3 bench/pipe_throughput.py [--iterations MIB] [--repeat R] [--json] [--only NAME]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Benchmark, Contestant  # noqa: E402

BENCH = Benchmark(
    name="pipe_throughput",
    title="pipe throughput: MB/s with 64 KiB writes and reads, measured inside the program",
    metric="mb_per_s",
    unit="MB/s",
    lower_is_better=False,
    references=("native",),
    default_iterations=256,
)


def contestants(args) -> list[Contestant]:
    prog = harness.build_c("pipe_throughput")
    cpu = harness.first_cpu()
    do, runsc_env = harness.runsc_py_do(args)

    cs = [
        Contestant("native", lambda n: [prog, str(n)], iterations=2_048, note="MiB"),
        Contestant("native (pinned)", lambda n: [prog, str(n)], iterations=1_024, cpu=cpu, note="MiB"),
        Contestant("runsc-py", lambda n: [*do, prog, str(n)],
                   iterations=128, env=runsc_env, note="MiB"),
        Contestant("runsc-py (pinned)", lambda n: [*do, prog, str(n)],
                   iterations=128, env=runsc_env, cpu=cpu, note="MiB"),
    ]
    return cs + harness.proot_contestants(lambda n: [prog, str(n)], 1_024, cpu, note="MiB")


def main(argv=None) -> int:
    parser = harness.arg_parser(BENCH, __doc__.split("\n\n")[0])
    harness.add_runsc_py_option(parser)
    return harness.main(BENCH, contestants, argv, parser)


if __name__ == "__main__":
    sys.exit(main())
