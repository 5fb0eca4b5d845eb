"""A sandbox dies with its parts: a dead Gofer ends it with one line and a non-zero exit.

Before sentry/lifeline.py, `kill -9` of the Gofer left the sandbox running with every new file
creation failing EIO and nothing said, and `run` exited 0.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import assert_nothing_left, bundle_with, repo_env, root, rootfs  # noqa: F401 (fixtures)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in _children(p):
            out.append(c)
            todo.append(c)
    return out


def _gofers(run_pid: int) -> list[int]:
    """The Gofers under a `run`: the non-stub children of the process whose children are stubs."""
    procs = [run_pid] + _descendants(run_pid)
    sentries = [p for p in procs if any(_comm(c) == "runsc-py-stub" for c in _children(p))]
    return [c for s in sentries for c in _children(s) if _comm(c) != "runsc-py-stub"]


def _start(tmp_path: Path, root: Path, bundle: Path) -> subprocess.Popen:
    out = open(tmp_path / "out", "w")
    return subprocess.Popen([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "run", "--bundle",
                             str(bundle), "c1"], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                            env=repo_env())


def _wait_for_gofers(run: subprocess.Popen, n: int, tmp_path: Path) -> list[int]:
    for _ in range(400):
        g = _gofers(run.pid)
        if len(g) >= n:
            return g
        assert run.poll() is None, (tmp_path / "out").read_text()
        time.sleep(0.05)
    pytest.fail(f"no {n} Gofers appeared: " + (tmp_path / "out").read_text())


@pytest.mark.parametrize("workload", [
    # Busy with files: the next Gofer round trip reads end-of-file.
    "while true; do ls / > /dev/null; echo x > /tmp/f; done",
    # Idle: only the pidfd the task loop polls while it waits can tell.
    "sleep 60",
])
def test_killing_the_gofer_ends_the_sandbox_with_one_line(tmp_path: Path, rootfs: Path, root: Path,
                                                          workload: str) -> None:
    run = _start(tmp_path, root, bundle_with(tmp_path, rootfs, ["/bin/sh", "-c", workload]))
    try:
        gofer = _wait_for_gofers(run, 1, tmp_path)[0]
        time.sleep(0.3)
        os.kill(gofer, signal.SIGKILL)
        rc = run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    out = (tmp_path / "out").read_text()
    assert rc == 255, out
    lines = [ln for ln in out.splitlines() if "died" in ln]
    assert len(lines) == 1 and f"the Gofer (pid {gofer}) serving the root file system died" in lines[0], out
    assert "Traceback" not in out
    assert_nothing_left(root, str(tmp_path))


def test_killing_a_bind_mount_gofer_ends_the_sandbox(tmp_path: Path, rootfs: Path, root: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    b = bundle_with(tmp_path, rootfs, ["/bin/sh", "-c", "while true; do ls /data > /dev/null; done"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["mounts"].append({"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind"]})
    (b / "config.json").write_text(json.dumps(cfg))
    run = _start(tmp_path, root, b)
    try:
        gofers = _wait_for_gofers(run, 2, tmp_path)
        time.sleep(0.3)
        os.kill(max(gofers), signal.SIGKILL)      # the bind mount's Gofer is spawned after the root's
        rc = run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    out = (tmp_path / "out").read_text()
    assert rc == 255, out
    assert f"serving bind mount {str(src)!r} died" in out, out
    assert_nothing_left(root, str(tmp_path))


def test_killing_the_sentry_of_a_created_container_leaves_nothing(tmp_path: Path, rootfs: Path,
                                                                   root: Path) -> None:
    b = bundle_with(tmp_path, rootfs, ["/bin/sleep", "60"])
    with open(tmp_path / "out", "w") as out:
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "create", "--bundle",
                            str(b), "c1"], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                           env=repo_env(), timeout=60)
    assert p.returncode == 0, (tmp_path / "out").read_text()
    state = json.loads((root / "c1" / "state.json").read_text())
    sentry = state["pid"]
    parts = _descendants(sentry)
    assert parts, "the Sentry has no Gofer or stub"
    os.kill(sentry, signal.SIGKILL)
    for _ in range(200):
        if not any(os.path.exists(f"/proc/{p}") and _comm(p) for p in parts):
            break
        time.sleep(0.05)
    left = [p for p in parts if os.path.exists(f"/proc/{p}/comm") and
            open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
    assert left == [], f"left running after the Sentry died: {[(p, _comm(p)) for p in left]}"
    st = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "state", "c1"],
                        capture_output=True, text=True, env=repo_env(), timeout=60)
    assert json.loads(st.stdout)["status"] == "stopped"
    subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "delete", "c1"],
                   env=repo_env(), timeout=60, check=True)
    assert_nothing_left(root, str(tmp_path))
