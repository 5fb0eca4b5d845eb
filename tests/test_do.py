"""`runsc-py do -- CMD`: the host's own dynamically linked programs in a sandbox over the host root.

As gVisor's `runsc do`: the host root is served read-only by the Gofer with
an in-memory overlay on top (writes never reach the host), the caller's
working directory and environment pass through, and the command is PID 1.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 180


def do(args: list[str], cwd: str = "/", env: dict | None = None, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "runsc_py.cli", *flags, "do", "--", *args], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)


def show(p: subprocess.CompletedProcess) -> str:
    return f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr[-3000:]}"


def test_ls_l_usr_matches_host():
    host = subprocess.run(["/bin/ls", "-l", "/usr"], capture_output=True, text=True, env={"LANG": "C"})
    sandbox = do(["/bin/ls", "-l", "/usr"], env={"LANG": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert sandbox.returncode == host.returncode == 0, show(sandbox)
    assert sandbox.stdout == host.stdout, show(sandbox)


def test_python3_is_pid_1():
    p = do(["python3", "-c", "import os; print(os.getpid())"])
    assert (p.returncode, p.stdout) == (0, "1\n"), show(p)


def test_cwd_passes_through(tmp_path):
    (tmp_path / "marker-file").write_text("x")
    p = do(["sh", "-c", "pwd; ls"], cwd=str(tmp_path))
    assert (p.returncode, p.stdout) == (0, f"{tmp_path}\nmarker-file\n"), show(p)


def test_environment_passes_through():
    env = dict(os.environ, RUNSC_PY_DO_TEST="a value with spaces", PATH=os.environ.get("PATH", "/usr/bin:/bin"))
    p = do(["sh", "-c", 'echo "$RUNSC_PY_DO_TEST"; echo "$PATH"'], env=env)
    assert (p.returncode, p.stdout) == (0, f"a value with spaces\n{env['PATH']}\n"), show(p)
    p = do(["python3", "-c", "import os, sys; sys.stdout.write(repr(sorted(os.environ.items())))"], env=env)
    assert p.returncode == 0, show(p)
    inside = dict(eval(p.stdout))  # noqa: S307 -- our own repr
    missing = {k for k in env if k not in inside or inside[k] != env[k]}
    # PYTHONPATH is the only variable this harness itself adds; it must pass too.
    assert not missing, f"variables lost or changed: {sorted(missing)}\n{show(p)}"


@pytest.fixture
def canary():
    path = f"/tmp/runsc-py-canary-{uuid.uuid4().hex[:12]}"
    assert not os.path.lexists(path)
    yield path
    if os.path.lexists(path):
        os.unlink(path)


def _tmp_listing() -> set[str]:
    return set(os.listdir("/tmp"))


def test_write_never_reaches_the_host(canary):
    """Whatever happens inside, the host's /tmp is unchanged afterwards."""
    before = _tmp_listing()
    p = do(["sh", "-c", f"echo x > {canary}"])
    assert not os.path.lexists(canary), f"the write reached the host!\n{show(p)}"
    # Other tests may create files in /tmp meanwhile; only the canary's name matters here.
    assert canary.rsplit("/", 1)[1] not in _tmp_listing() - before


def test_write_lands_in_an_in_memory_overlay(canary):
    """As `runsc do`: the write succeeds inside (an in-memory overlay) and is readable back.

    A failure here with EROFS ('Read-only file system') means `do` serves the
    host root read-only without the overlay the issue asks for."""
    p = do(["sh", "-c", f"echo x > {canary} && cat {canary} && rm {canary} && echo removed"])
    assert not os.path.lexists(canary), f"the write reached the host!\n{show(p)}"
    assert (p.returncode, p.stdout) == (0, "x\nremoved\n"), show(p)


def test_explicit_memory_overlay(canary):
    """`runsc-py --overlay memory do`: the write lands in the in-memory layer, never on the host."""
    p = do(["sh", "-c", f"echo x > {canary} && cat {canary}"], flags=("--overlay", "memory"))
    assert not os.path.lexists(canary), f"the write reached the host!\n{show(p)}"
    assert (p.returncode, p.stdout) == (0, "x\n"), show(p)


@pytest.mark.skipif(shutil.which("python3") is None, reason="no python3 on the host")
def test_host_python_runs_a_script(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import json, hashlib\nprint(json.dumps({'h': hashlib.sha256(b'x').hexdigest()[:8]}))\n")
    p = do(["python3", str(script)], cwd=str(tmp_path))
    assert (p.returncode, p.stdout) == (0, '{"h": "2d711642"}\n'), show(p)
