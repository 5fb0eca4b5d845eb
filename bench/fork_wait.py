#!/usr/bin/env python3
"""fork + exit + wait latency: microseconds per round, side by side.

Every contestant runs the same static program, bench/c/fork_wait.c: N
rounds of fork(), the child _exit(0)s at once, the parent wait4()s for it;
it prints us_per_op measured inside itself (start-up excluded).  In
runsc-py a round is a new address space (a new stub process on the ptrace
platform, its memory duplicated), a task, an exit and a reap in the Sentry.
Contestants:

  native              the program on the host kernel
  runsc-py            runsc-py do -- fork_wait N (the Python Sentry)
  runsc-py (pinned)   the same, the whole sandbox confined to one CPU
  runsc-py kvm        runsc-py --platform=kvm do -- fork_wait N (a new page-table root and
                      vCPU per child; the copy-on-write breaks flush the shadow MMU)
  proot, proot (pinned)   when proot is installed

    python3 bench/fork_wait.py [--iterations N] [--repeat R] [--json] [--only NAME]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Benchmark, Contestant  # noqa: E402

BENCH = Benchmark(
    name="fork_wait",
    title="fork + exit + wait: microseconds per round, measured inside the program",
    metric="us_per_op",
    unit="us/op",
    references=("native",),
    default_iterations=1_000,
)


def contestants(args) -> list[Contestant]:
    prog = harness.build_c("fork_wait")
    cpu = harness.first_cpu()
    do, runsc_env = harness.runsc_py_do(args)

    cs = [
        Contestant("native", lambda n: [prog, str(n)], iterations=5_000),
        Contestant("native (pinned)", lambda n: [prog, str(n)], iterations=5_000, cpu=cpu),
        Contestant("runsc-py", lambda n: [*do, prog, str(n)],
                   iterations=300, env=runsc_env),
        Contestant("runsc-py (pinned)", lambda n: [*do, prog, str(n)],
                   iterations=300, env=runsc_env, cpu=cpu),
    ]
    no_kvm = harness.kvm_skip()
    kvm_do, _ = harness.runsc_py_do(args, "kvm")
    cs.append(Contestant("runsc-py kvm", None, skip=no_kvm) if no_kvm else
              Contestant("runsc-py kvm", lambda n: [*kvm_do, prog, str(n)], iterations=100,
                         env=runsc_env, note="--platform=kvm"))
    return cs + harness.proot_contestants(lambda n: [prog, str(n)], 1_000, cpu)


def main(argv=None) -> int:
    parser = harness.arg_parser(BENCH, __doc__.split("\n\n")[0])
    harness.add_runsc_py_option(parser)
    return harness.main(BENCH, contestants, argv, parser)


if __name__ == "__main__":
    sys.exit(main())
