#!/usr/bin/env python3
"""kvm_floor: the C floor of one KVM-platform exit on this machine, in ns per round trip.

Builds bench/c/kvm_floor.c (a minimal VM set up as platforms/kvm sets it up) and prints, for
each kind of round trip, the median over --repeat runs of N trips, timed inside the program:

  bare          ring 0 loops on `out`: KVM_RUN -> I/O exit -> KVM_RUN, nothing else
  trap          ring-3 `int3` -> IDT gate in ring 0 -> `out` -> host returns to ring 3
                through the sync-regs area (how platforms/kvm answers a fault)
  trapiret      the same, the gate returning with `iretq`
  syscall-int3  ring-3 `syscall` -> LSTAR page `int3` -> ring-0 gate `out` -> host
  syscall       ring-3 `syscall` -> LSTAR page `out` -> host sets rip = rcx (the path
                platforms/kvm takes for every application syscall: the C floor of
                `runsc-py --platform=kvm` getpid)

and the same syscall round trip driven from Python through platforms/kvm, to show where the
time of one exit goes between the C floor and `runsc-py --platform=kvm` (bench/getpid.py):

  py rk_run     the platform's C entry `rk_run` called through cffi in a Python loop
                (registers copied to and from the kvm_run page, the exit classified)
  py Platform.run   KvmPlatform.run(ctx): the contract's per-syscall call

    python3 bench/kvm_floor.py [--iterations N] [--repeat R]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MODES = ("bare", "trap", "trapiret", "syscall-int3", "syscall")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("kvm_floor: /dev/kvm is missing or not accessible", file=sys.stderr)
        return 1
    try:
        exe = harness.build_c("kvm_floor")
    except harness.Unavailable as e:
        print(f"kvm_floor: {e}", file=sys.stderr)
        return 1
    samples: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(args.repeat):
        for m in MODES:                 # interleaved, so background load smears over all modes
            out = subprocess.run([exe, m, str(args.iterations)], capture_output=True, text=True,
                                 timeout=120)
            if out.returncode != 0:
                print(f"kvm_floor {m}: failed: {out.stderr.strip()}", file=sys.stderr)
                return 1
            samples[m].append(float(re.search(r"ns_per_call=([\d.]+)", out.stdout).group(1)))
        for name, ns in python_rows(args.iterations).items():
            samples.setdefault(name, []).append(ns)
    print(f"KVM exit floor on this machine ({args.iterations} round trips x {args.repeat}, median)")
    for m in samples:
        print(f"  {m:14s} {statistics.median(samples[m]):10.0f} ns")
    return 0


def python_rows(n: int) -> dict[str, float]:
    """The syscall loop (`mov $39,%eax; syscall; jmp`) on platforms/kvm, timed from Python."""
    import time
    sys.path.insert(0, harness.REPO_DIR)
    from platforms.kvm import KvmPlatform
    from platforms.kvm._kvm_ext import lib
    from sentry.mm.memfile import MemoryFile
    mf = MemoryFile(1 << 30)
    plat = KvmPlatform(mf)
    space = plat.new_address_space()
    off = mf.allocate(4096)
    mf.map[off:off + 9] = bytes([0xB8, 39, 0, 0, 0, 0x0F, 0x05, 0xEB, 0xF7])
    space.map(0x400000, 4096, 5, off)
    ctx = space.new_context()
    ctx.clear_regs(0x400000, 0)
    out = {}
    rk_run, vcpu, regs, layout = lib.rk_run, ctx.vcpu, ctx.regs, plat.machine.layout
    t = time.perf_counter_ns()
    for _ in range(n):
        rk_run(vcpu, regs, layout, 0)
    out["py rk_run"] = (time.perf_counter_ns() - t) / n
    run = plat.run
    t = time.perf_counter_ns()
    for _ in range(n):
        run(ctx)
    out["py Platform.run"] = (time.perf_counter_ns() - t) / n
    space.release()
    return out


if __name__ == "__main__":
    sys.exit(main())
