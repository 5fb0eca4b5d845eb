"""`runsc-py do` serves the host's own root: nothing the sandbox does may change the host.

These run against the real host filesystem, with unique names, and check from
the host side afterwards.  A regression here is a sandbox escape.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _do(*argv: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "runsc_py.cli", *extra, "do", "--", *argv],
                          capture_output=True, text=True, env=env, timeout=120, cwd="/")


@pytest.mark.parametrize("flags", [(), ("--overlay", "none"), ("--overlay", "memory")])
def test_writes_in_do_never_reach_the_host(flags) -> None:
    tag = uuid.uuid4().hex[:12]
    canary = f"/tmp/runsc-do-canary-{tag}"
    victim = f"/tmp/runsc-do-victim-{tag}"
    with open(victim, "w") as f:
        f.write("original\n")
    try:
        p = _do("/bin/busybox", "sh", "-c",
                f"echo x > {canary}; echo changed > {victim}; rm -f {victim}; mkdir -p /tmp/dir-{tag}; "
                f"cat {canary} 2>/dev/null; true", extra=flags)
        assert p.returncode == 0, p.stderr
        assert not os.path.exists(canary)
        assert not os.path.exists(f"/tmp/dir-{tag}")
        with open(victim) as f:
            assert f.read() == "original\n"
    finally:
        for path in (canary, victim):
            if os.path.exists(path):
                os.unlink(path)
        if os.path.isdir(f"/tmp/dir-{tag}"):
            os.rmdir(f"/tmp/dir-{tag}")


def test_do_sees_its_own_writes_in_memory() -> None:
    tag = uuid.uuid4().hex[:12]
    p = _do("/bin/busybox", "sh", "-c", f"echo in-memory > /tmp/x-{tag}; cat /tmp/x-{tag}")
    assert (p.returncode, p.stdout) == (0, "in-memory\n"), p.stderr
    assert not os.path.exists(f"/tmp/x-{tag}")
