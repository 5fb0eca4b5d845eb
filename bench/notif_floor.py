#!/usr/bin/env python3
"""Trap floors of the seccomp_notify platform: ns per intercepted getpid, per mechanism, in C.

bench/c/notif_floor.c answers a child's raw getpid calls itself (the host never runs them)
through each mechanism the `seccomp_notify` platform combines, beside bench/c/sysemu_floor.c
(the ptrace platform's PTRACE_SYSEMU):

  notif         SECCOMP_RET_USER_NOTIF, blocking NOTIF_RECV + NOTIF_SEND (the fast path)
  notif-poll    the same with a poll() before each RECV (the platform waits on several fds)
  notif-traced  the child also ptraced under PTRACE_CONT (as the platform's threads are)
  trace         SECCOMP_RET_TRACE stop, GETREGS/SETREGS with orig_rax = -1 (the slow path)
  trace-poke    the same with two POKEUSERs (orig_rax, rax) instead of GETREGS/SETREGS
  sysemu        PTRACE_SYSEMU + GETREGS/SETREGS (the ptrace platform's floor)

each unpinned and pinned (supervisor and child on one CPU).

    python3 bench/notif_floor.py [--iterations N] [--repeat R] [--json] [--only NAME]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Benchmark, Contestant  # noqa: E402

BENCH = Benchmark(
    name="notif_floor",
    title="seccomp_notify trap floors: ns per intercepted getpid, measured inside the child",
    references=("sysemu (pinned)",),
    repeat=5,
)

MODES = ("notif", "notif-poll", "notif-traced", "trace", "trace-poke")


def contestants(args) -> list[Contestant]:
    floor = harness.build_c("notif_floor")
    sysemu = harness.build_c("sysemu_floor")
    loop = harness.build_c("getpid_loop")
    cpu = args.cpu if args.cpu is not None else harness.first_cpu()
    cs = []
    for mode in MODES:
        cs.append(Contestant(mode, lambda n, m=mode: [floor, m, str(n)], iterations=50_000))
        cs.append(Contestant(f"{mode} (pinned)", lambda n, m=mode: [floor, f"--pin={cpu}", m, str(n)],
                             iterations=100_000, cpu=cpu))
    cs.append(Contestant("sysemu", lambda n: [sysemu, loop, str(n)], iterations=50_000))
    cs.append(Contestant("sysemu (pinned)", lambda n: [sysemu, f"--pin={cpu}", loop, str(n)],
                         iterations=100_000, cpu=cpu))
    return cs


def main(argv=None) -> int:
    return harness.main(BENCH, contestants, argv, harness.arg_parser(BENCH, __doc__.split("\n\n")[0]))


if __name__ == "__main__":
    sys.exit(main())
