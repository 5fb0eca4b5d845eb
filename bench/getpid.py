#!/usr/bin/env python3
"""getpid latency: the cost of one trapped system call, side by side.

Every contestant runs the same static program, bench/c/getpid_loop.c, which
makes N raw syscall(SYS_getpid) calls and prints ns_per_call measured inside
itself (start-up excluded).  Contestants:

  native              the program on the host kernel
  C floor             bench/c/sysemu_floor.c: a minimal C tracer answering
                      getpid under PTRACE_SYSEMU (the physical floor of any
                      ptrace sandbox on this machine)
  C floor (pinned)    the same, tracer and tracee on one CPU
  Py floor ctypes|cffi[ (pinned)]  bench/py_sysemu_floor.py: the same tracer
                      in Python (ctypes, or a cffi API-mode module): the
                      cheapest conceivable Python Sentry loop
  runsc-py            runsc-py do -- getpid_loop N (the Python Sentry)
  runsc-py (pinned)   the same, the whole sandbox confined to one CPU
  runsc-py kvm        runsc-py --platform=kvm do -- getpid_loop N (application in a KVM guest)
  runsc-py seccomp_notify[ (pinned)]  runsc-py --platform=seccomp_notify do -- getpid_loop N
                      (getpid as a seccomp user notification; floors: bench/notif_floor.py)
  KVM C floor         bench/c/kvm_floor.c syscall: the cheapest possible KVM-platform round
                      trip on this machine (guest `syscall` -> I/O exit -> host -> guest)
  proot, proot (pinned)   when proot is installed
  UML                 User-Mode Linux, when a `linux` binary is installed

    python3 bench/getpid.py [--iterations N] [--repeat R] [--json] [--only NAME]
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Benchmark, Contestant  # noqa: E402

BENCH = Benchmark(
    name="getpid",
    title="getpid latency: ns per raw syscall(SYS_getpid), measured inside the program",
    metric="ns_per_call",
    unit="ns/call",
    references=("native", "C floor", "C floor (pinned)", "KVM C floor"),
)


def uml_contestant(loop: str) -> Contestant:
    """User-Mode Linux: boot a UML kernel on the host's / (hostfs) with the
    benchmark program as init.  Only when a UML `linux` binary exists."""
    uml = shutil.which("linux") or shutil.which("linux.uml")
    if not uml:
        return Contestant("UML", None, skip="no User-Mode Linux kernel installed "
                          "(apt-get install user-mode-linux provides /usr/bin/linux)")

    # UML keeps a per-instance directory (default ~/.uml/<umid>) that a
    # panicking kernel leaves behind: keep it in a temporary dir we remove.
    uml_dir = tempfile.mkdtemp(prefix="bench-uml-")
    atexit.register(shutil.rmtree, uml_dir, True)

    def argv(n: int) -> list[str]:
        # the kernel hands the words after "--" to init as its arguments;
        # init's output reaches us through the console on our stdout.
        return [uml, f"uml_dir={uml_dir}", "mem=256M", "rootfstype=hostfs", "rootflags=/", "ro",
                f"init={loop}", "con=null", "con0=null,fd:1", "quiet",
                "--", str(n)]
    def diagnose(out: str, err: str, rc: int) -> str | None:
        if "ptrace set fp regs failed" in out:
            # seen with Debian's UML 6.1 on a host whose CPU has AMX: the
            # host's xstate is larger than the buffer UML hands to ptrace.
            return ("UML kernel cannot set its processes' FP registers on this "
                    "host (ptrace set fp regs failed: EFAULT; large AMX xstate?)")
        for line in out.splitlines():
            if "Kernel panic" in line:
                return line.strip()
        return None

    # init exits -> the UML kernel panics and stops with some status; the
    # printed number is all that matters.
    return Contestant("UML", argv, iterations=10_000, ok_returncodes=None,
                      diagnose=diagnose, note="init=getpid_loop on hostfs")


def contestants(args) -> list[Contestant]:
    loop = harness.build_c("getpid_loop")
    floor = harness.build_c("sysemu_floor")
    pyfloor = os.path.join(harness.BENCH_DIR, "py_sysemu_floor.py")
    cpu = args.cpu if args.cpu is not None else harness.first_cpu()

    do, runsc_env = harness.runsc_py_do(args)

    cs = [
        Contestant("native", lambda n: [loop, str(n)], iterations=2_000_000),
        Contestant("C floor", lambda n: [floor, loop, str(n)], iterations=10_000,
                   note="PTRACE_SYSEMU"),
        Contestant("C floor (pinned)", lambda n: [floor, f"--pin={cpu}", loop, str(n)],
                   iterations=200_000, cpu=cpu, note="PTRACE_SYSEMU"),
        Contestant("Py floor ctypes", lambda n: [sys.executable, pyfloor, loop, str(n)],
                   iterations=10_000),
        Contestant("Py floor ctypes (pinned)",
                   lambda n: [sys.executable, pyfloor, loop, str(n)],
                   iterations=100_000, cpu=cpu),
        Contestant("Py floor cffi", lambda n: [sys.executable, pyfloor, "--cffi", loop, str(n)],
                   iterations=10_000),
        Contestant("Py floor cffi (pinned)",
                   lambda n: [sys.executable, pyfloor, "--cffi", loop, str(n)],
                   iterations=100_000, cpu=cpu),
        Contestant("runsc-py", lambda n: [*do, loop, str(n)],
                   iterations=5_000, env=runsc_env),
        Contestant("runsc-py (pinned)", lambda n: [*do, loop, str(n)],
                   iterations=20_000, env=runsc_env, cpu=cpu),
    ]
    sn_do, _ = harness.runsc_py_do(args, "seccomp_notify")
    cs += [Contestant("runsc-py seccomp_notify", lambda n: [*sn_do, loop, str(n)], iterations=5_000,
                      env=runsc_env, note="--platform=seccomp_notify"),
           Contestant("runsc-py seccomp_notify (pinned)", lambda n: [*sn_do, loop, str(n)], iterations=20_000,
                      env=runsc_env, cpu=cpu, note="--platform=seccomp_notify")]
    kvm_do, _ = harness.runsc_py_do(args, "kvm")
    no_kvm = harness.kvm_skip()
    if no_kvm:
        cs += [Contestant("runsc-py kvm", None, skip=no_kvm), Contestant("KVM C floor", None, skip=no_kvm)]
    else:
        kvm_floor = harness.build_c("kvm_floor")
        cs += [Contestant("runsc-py kvm", lambda n: [*kvm_do, loop, str(n)], iterations=5_000,
                          env=runsc_env, note="--platform=kvm"),
               Contestant("KVM C floor", lambda n: [kvm_floor, "syscall", str(n)], iterations=10_000,
                          note="guest syscall -> out exit -> host")]
    cs += harness.proot_contestants(lambda n: [loop, str(n)], 10_000, cpu, pinned_iterations=100_000)
    cs.append(uml_contestant(loop))
    return cs


def main(argv=None) -> int:
    parser = harness.arg_parser(BENCH, __doc__.split("\n\n")[0])
    harness.add_runsc_py_option(parser)
    return harness.main(BENCH, contestants, argv, parser)


if __name__ == "__main__":
    sys.exit(main())
