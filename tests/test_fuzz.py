"""Syscall fuzzing: random system calls against the Sentry (tests/syscall-fuzz/fuzz.c).

The fuzzer runs as the container's PID 1 and keeps several worker processes (each with several
threads) making random syscalls with boundary-value arguments; see the header of fuzz.c for what
it calls and how.  A worker crashing, hanging or exec'ing something is the application's business;
the test fails only when the sandbox itself does wrong:

* the Sentry logs an internal error (a Python exception while handling a syscall or fault:
  sentry/kernel.py's INTERNAL_ERROR marker in --debug-log),
* the sandbox dies or hangs (no "FUZZ done" report within the time, a non-zero exit),
* a worker cannot be killed with SIGKILL (the driver reports "FUZZ unkillable"),
* a host file outside the rootfs changes (a canary next to the bundle).

The figures (syscalls made; distinct (number, argument class) pairs; (number, position, class)
triples) are printed and kept in .build/fuzz/last-run.txt.  CI runs about a minute
(`test_fuzz_bounded`); `test_fuzz_long` (slow) runs ten minutes with a time-based seed.
Replay a run: RUNSC_PY_FUZZ_SEED=N (the driver prints its workers' seeds).
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import uuid

import pytest

from tests.rootfs import make_bundle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, "tests", "syscall-fuzz", "fuzz.c")
BUILD_DIR = os.path.join(REPO, ".build", "fuzz")
CFLAGS = ["-O1", "-static", "-Wall", "-Werror", "-fno-stack-protector", "-pthread"]
INTERNAL_ERROR = "internal error"          # sentry/kernel.py: the marker of a Sentry bug in the log


def build() -> str:
    os.makedirs(BUILD_DIR, exist_ok=True)
    binary = os.path.join(BUILD_DIR, "fuzz")
    digest = hashlib.sha256(open(SRC, "rb").read() + " ".join(CFLAGS).encode()).hexdigest()
    stamp = binary + ".sha256"
    if os.path.exists(binary) and os.path.exists(stamp) and open(stamp).read().strip() == digest:
        return binary
    tmp = f"{binary}.tmp.{os.getpid()}"
    subprocess.run(["gcc", *CFLAGS, "-o", tmp, SRC], check=True)
    os.replace(tmp, binary)
    with open(stamp, "w") as f:
        f.write(digest + "\n")
    return binary


def _fingerprint(path: str) -> tuple:
    st = os.stat(path)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest(), st.st_size, st.st_mtime_ns, st.st_mode


def run_fuzz(tmp_path, seconds: int, seed: int, procs: int, threads: int) -> str:
    binary = build()
    root = tmp_path / "rootfs"
    for d in ("tmp", "dev", "proc", "etc"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/:/fuzz\n")
    with open(binary, "rb") as src, open(root / "fuzz", "wb") as dst:
        dst.write(src.read())
    os.chmod(root / "fuzz", 0o755)
    # A host file outside the rootfs, next to it: nothing in the sandbox may reach it.
    canary = tmp_path / "canary.txt"
    canary.write_text("the host's file: the sandbox must never change it\n")
    before = _fingerprint(str(canary))
    bundle = str(tmp_path / "bundle")
    env_list = ["PATH=/", "RUNSC_PY_FUZZ=1"]
    make_bundle(bundle, ["/fuzz", str(seconds), str(seed), str(procs), str(threads)], rootfs=str(root), env=env_list)
    state = str(tmp_path / "state")
    os.makedirs(state)
    log = tmp_path / "sentry.log"
    cid = f"fuzz-{uuid.uuid4().hex[:8]}"
    runsc = [sys.executable, "-m", "runsc_py.cli", "--root", state, "--debug-log", str(log)]
    env = dict(os.environ, PYTHONPATH=REPO)
    started = time.monotonic()
    try:
        p = subprocess.run([*runsc, "run", "--bundle", bundle, cid], cwd=bundle, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=seconds + 180)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"the sandbox hung: no end {seconds + 180} s into a {seconds} s run (seed {seed})\n{out[-2000:]}")
    finally:
        subprocess.run([*runsc, "delete", "--force", cid], env=env, capture_output=True, timeout=60, check=False)
    elapsed = time.monotonic() - started
    text = log.read_text(errors="replace") if log.exists() else ""
    report = "\n".join(line for line in p.stdout.splitlines() if line.startswith("FUZZ"))
    summary = f"seed {seed}, {procs} processes x {threads} threads, {elapsed:.0f} s\n{report}"
    print(summary)
    os.makedirs(BUILD_DIR, exist_ok=True)
    with open(os.path.join(BUILD_DIR, "last-run.txt"), "w") as f:
        f.write(summary + "\n")
    with open(os.path.join(BUILD_DIR, "last-sentry.log"), "w") as f:
        f.write(text)
    assert INTERNAL_ERROR not in text, f"the Sentry logged an internal error ({summary}):\n" + \
        "\n".join(line for line in text.splitlines() if INTERNAL_ERROR in line or line.startswith(("Traceback", "  File", "    ")) or ": " in line[:40])[-6000:]
    assert "FUZZ unkillable" not in report, summary
    assert p.returncode == 0 and "FUZZ done" in report, \
        f"the sandbox did not finish the run (exit {p.returncode}):\n{summary}\n{p.stderr[-3000:]}"
    assert _fingerprint(str(canary)) == before, "a host file outside the rootfs changed"
    m = re.search(r"calls=(\d+) pairs=(\d+)", report)
    assert m and int(m.group(1)) > 0 and int(m.group(2)) > 0, summary
    return report


def test_fuzz_bounded(tmp_path):
    """About a minute: three workers of two threads at a time, a fixed seed unless one is given."""
    seed = int(os.environ.get("RUNSC_PY_FUZZ_SEED", "1"))
    run_fuzz(tmp_path, seconds=int(os.environ.get("RUNSC_PY_FUZZ_SECONDS", "60")), seed=seed, procs=3, threads=2)


@pytest.mark.slow
def test_fuzz_long(tmp_path):
    """Ten minutes, four workers of three threads, a new seed each time (printed)."""
    seed = int(os.environ.get("RUNSC_PY_FUZZ_SEED", str(int(time.time()))))
    run_fuzz(tmp_path, seconds=int(os.environ.get("RUNSC_PY_FUZZ_SECONDS", "600")), seed=seed, procs=4, threads=3)


# -- what the fuzzer found, where the sandbox answers differently from Linux on purpose ----------

HUGE_MEMFD = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
int main(void)
{
	int fd = memfd_create("huge", 0);
	int r = ftruncate(fd, 1LL << 40);
	printf("%d %d\n", r, r ? errno : 0);
	return 0;
}
"""


def test_huge_memfd_is_refused_not_a_memory_error(tmp_path):
    """ftruncate(memfd, 2^40): Linux keeps tmpfs files sparse; the Sentry's are dense, so past its
    tmpfs limit (half the host's memory, Linux's default tmpfs size) it answers ENOSPC -- it used
    to attempt the allocation (a MemoryError, an internal error)."""
    src = tmp_path / "huge.c"
    src.write_text(HUGE_MEMFD)
    binary = str(tmp_path / "huge")
    subprocess.run(["gcc", "-O1", "-static", "-o", binary, str(src)], check=True)
    log = tmp_path / "sentry.log"
    p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--debug-log", str(log), "do", "--", binary],
                       capture_output=True, text=True, timeout=120, cwd="/", env=dict(os.environ, PYTHONPATH=REPO))
    assert p.returncode == 0 and p.stdout.split() == ["-1", "28"], (p.stdout, p.stderr[-2000:])   # ENOSPC
    assert INTERNAL_ERROR not in (log.read_text() if log.exists() else "")
