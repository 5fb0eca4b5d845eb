#!/usr/bin/env python3
"""Policy cost: open+close (ns/op) under `runsc-py do` without a policy, with a policy that
names nothing, and with policies that name openat (sentry/policy.py).

Every contestant runs bench/c/fileops.c `open N DIR` (N open(O_RDONLY)+close of one file,
timed inside the program).  Contestants:

  no policy            runsc-py do -- fileops open N DIR
  policy: nothing      runsc-py --policy F do ...: F is a policy file naming no syscall
                       (the hook table is installed; every entry is the unhooked one)
  policy: openat path  F denies writes under /nonexistent: the open family is hooked,
                       each open's path is resolved and checked (and allowed)
  policy: openat audit F audits openat: the same, plus one JSON line per open (to /dev/null)

The claim measured: a policy costs nothing for the syscalls it does not name ("policy:
nothing" matches "no policy"), and what a named syscall pays.

    python3 bench/policy_cost.py [--iterations N] [--repeat R] [--json] [--only NAME]
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Benchmark, Contestant  # noqa: E402

BENCH = Benchmark(
    name="policy_cost",
    title="open+close under runsc-py do: ns/op without a policy, with one naming nothing, naming openat",
    metric="ns_per_op",
    unit="ns/op",
    references=("no policy",),
    default_iterations=5_000,
    budget_s=90.0,                  # a loaded machine: keep enough interleaved rounds
)

POLICIES = {
    "policy: nothing": {},
    "policy: openat path": {"paths": {"write": {"deny": ["/nonexistent"]}}},
    "policy: openat audit": {"syscalls": {"audit": ["openat"]}, "audit_log": "/dev/null"},
}


def contestants(args) -> list[Contestant]:
    prog = harness.build_c("fileops")
    base = tempfile.mkdtemp(prefix="bench-policy-")
    import atexit
    atexit.register(shutil.rmtree, base, True)
    data = os.path.join(base, "data")
    os.makedirs(data)
    prefix, env = harness.runsc_py_do(args)
    runsc, do = prefix[:-2], prefix[-2:]
    out = [Contestant("no policy", lambda n: [*prefix, prog, "open", str(n), data], env=env)]
    for name, policy in POLICIES.items():
        path = os.path.join(base, name.split(": ")[1].replace(" ", "-") + ".json")
        with open(path, "w") as f:
            json.dump(policy, f)
        out.append(Contestant(name, lambda n, path=path: [*runsc, "--policy", path, *do, prog, "open", str(n), data],
                              env=env))
    return out


def main(argv=None) -> int:
    parser = harness.arg_parser(BENCH, __doc__.split("\n\n")[0])
    harness.add_runsc_py_option(parser)
    return harness.main(BENCH, contestants, argv, parser)


if __name__ == "__main__":
    sys.exit(main())
