"""--cpu-pin: the sandbox's host threads share one CPU by default (sentry/hostcpu.py), yet the
application sees every CPU the sandbox may use, as under runc."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rootfs import make_bundle
from tests.test_cli import repo_env
from tests.test_factory import _descends, alive, wait_for

HOST_CPUS = sorted(os.sched_getaffinity(0))


def cpus_allowed(pid: int) -> str | None:
    """The pid's Cpus_allowed_list, or None if it has exited since it was listed."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    return line.split(":", 1)[1].strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
    raise AssertionError("no Cpus_allowed_list")


@pytest.mark.parametrize("mode", ["auto", "none"])
def test_the_application_sees_every_allowed_cpu(tmp_path: Path, mode: str) -> None:
    bundle = make_bundle(str(tmp_path / "b"), ["/bin/sh", "-c", "nproc; grep -c ^processor /proc/cpuinfo"])
    p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(tmp_path / "root"), "--cpu-pin", mode,
                        "run", "-b", bundle, "c"], capture_output=True, text=True, timeout=60, env=repo_env())
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(len(HOST_CPUS))] * 2


@pytest.mark.skipif(len(HOST_CPUS) < 2, reason="one CPU: nothing to pin")
@pytest.mark.parametrize("mode", ["auto", "none"])
def test_the_sentry_gofer_and_stubs_share_one_cpu_unless_told_not_to(tmp_path: Path, mode: str) -> None:
    bundle = make_bundle(str(tmp_path / "b"), ["/bin/sh", "-c", "echo ready; sleep 100"])
    proc = subprocess.Popen([sys.executable, "-m", "runsc_py.cli", "--root", str(tmp_path / "root"), "--cpu-pin",
                             mode, "run", "-b", bundle, "c"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=repo_env())
    try:
        assert proc.stdout.readline() == "ready\n"
        sandbox = wait_for(lambda: [int(q) for q in os.listdir("/proc") if q.isdigit() and alive(int(q))
                                    and _descends(int(q), proc.pid)], what="the sandbox's processes")
        masks = {cpus_allowed(q) for q in sandbox} - {None}     # a process gone since: not judged
        assert masks, sandbox
        if mode == "auto":
            assert len(masks) == 1 and masks.pop().isdigit(), masks     # one CPU, the same for all
        else:
            assert masks == {cpus_allowed(os.getpid())}
    finally:
        proc.kill()
        proc.wait()
