"""The package installs like any other: sdist -> wheel -> a clean venv outside the tree, and `pip install DIR`.

Each path ends with the venv's own `runsc-py` running a sandbox from a
directory outside the checkout, with a sys.path that cannot see the checkout
(checked, not assumed): a package left out of the wheel, a vDSO not shipped,
or a cffi extension not built fails here, where an editable install would
hide it.  Slow: every build runs in pip's isolated build environment.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.rootfs import make_bundle

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 600
# What a sandbox needs from the package, by kind: each is a file that was once left out.
NEEDED_IN_WHEEL = ["sentry/socket/unix.py", "sentry/vdso/__init__.py", "sentry/vdso/vdso.so",
                   "sentry/syscalls/__init__.py", "sentry/mm/manager.py", "sentry/vfs/walk.py",
                   "gofer/client.py", "platforms/ptrace/tracer.py", "platforms/kvm/__init__.py",
                   "runsc_py/cli.py"]


def _run(cmd: list[str], cwd: str, env: dict | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, f"{cmd}: {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def _clean_env() -> dict:
    """No PYTHONPATH or virtualenv of the caller leaks into the venv's commands."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def _venv(where: Path) -> Path:
    _run([sys.executable, "-m", "venv", str(where)], cwd=str(where.parent))
    return where / "bin"


def _check_outside(vbin: Path, cwd: Path) -> None:
    """The venv's interpreter imports our packages from its site-packages, never from the checkout."""
    code = ("import json, sys, sentry, runsc_py, platforms.ptrace._ptrace_ext as x;"
            "print(json.dumps({'path': sys.path, 'files': [sentry.__file__, runsc_py.__file__, x.__file__]}))")
    got = json.loads(_run([str(vbin / "python"), "-c", code], cwd=str(cwd), env=_clean_env()).stdout)
    repo = str(REPO)
    assert not [p for p in got["path"] if p.startswith(repo)], got["path"]
    venv = str(vbin.parent)
    assert all(f.startswith(venv + "/") for f in got["files"]), got["files"]


def _sandbox(vbin: Path, work: Path, name: str) -> None:
    """The venv's runsc-py runs a busybox bundle: the socket code, the vDSO and the ptrace ext in use."""
    bundle = work / f"bundle-{name}"
    # (The Sentry imports every module of its packages before it confines itself: sentry.socket too.)
    make_bundle(str(bundle), ["sh", "-c", "echo hello-from-$0; grep -c '\\[vdso\\]' /proc/self/maps", name])
    p = _run([str(vbin / "runsc-py"), "--root", str(work / "state"), "run", "--bundle", str(bundle), name],
             cwd=str(work), env=_clean_env())
    lines = p.stdout.split()
    assert lines[:2] == [f"hello-from-{name}", "1"], p.stdout + p.stderr
    # The warm factory a first `run` starts for its --root (runsc_py/factory.py) is ours to stop.
    subprocess.run([str(vbin / "runsc-py"), "--root", str(work / "state"), "factory", "stop"], cwd=str(work),
                   env=_clean_env(), capture_output=True, timeout=TIMEOUT)


def test_sdist_wheel_venv(tmp_path: Path) -> None:
    """sdist (with the vDSO's sources), a wheel built from it, installed in a venv that cannot see the tree."""
    _run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path / "dist"), str(REPO)],
         cwd=str(tmp_path))
    sdist, = glob.glob(str(tmp_path / "dist" / "*.tar.gz"))
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for need in ("setup.py", "pyproject.toml", "sentry/vdso/vdso.c", "sentry/vdso/build.sh",
                 "sentry/vdso/layout.lds", "sentry/socket/unix.py", "platforms/ptrace/_build_ptrace.py"):
        assert need in names, need
    assert "sentry/vdso/vdso.so" not in names          # built by the backend, not shipped as a binary

    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "wheels"), sdist],
         cwd=str(tmp_path))
    wheel, = glob.glob(str(tmp_path / "wheels" / "runsc_py-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    for need in NEEDED_IN_WHEEL:
        assert need in names, need
    assert [n for n in names if n.startswith("platforms/ptrace/_ptrace_ext") and n.endswith(".so")]

    vbin = _venv(tmp_path / "venv")
    _run([str(vbin / "pip"), "install", "-q", wheel], cwd=str(tmp_path), env=_clean_env())
    _check_outside(vbin, tmp_path)
    _sandbox(vbin, tmp_path, "fromwheel")


def test_pip_install_dir(tmp_path: Path) -> None:
    """`pip install DIR` (not editable) into a clean venv: the same working runsc-py."""
    vbin = _venv(tmp_path / "venv")
    _run([str(vbin / "pip"), "install", "-q", str(REPO)], cwd=str(tmp_path), env=_clean_env())
    _check_outside(vbin, tmp_path)
    _sandbox(vbin, tmp_path, "fromdir")
