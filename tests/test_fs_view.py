"""`runsc-py fs ID DIR` (a FUSE view of a running sandbox) and `runsc-py debug --ps/--stacks/--mounts ID`.

The workload writes a file into its /tmp tmpfs -- memory of the Sentry, with
no host file behind it -- so seeing it under DIR shows the view is the
sandbox's own, served over the control channel; /proc/1/status is the
sandbox's procfs.  The view is read-only unless --rw, and goes away (unmount,
exit 0) when the sandbox stops.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import bundle_with, cli, repo_env, root, rootfs  # noqa: F401 -- fixtures

WAIT = 60
MOUNTS = [{"destination": "/proc", "type": "proc", "source": "proc"},
          {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}]
LONG = "x" * 120           # 1500 entries of long names: a listing well past one control message (~208 KiB)
WORKLOAD = (f"mkdir /tmp/many; i=0; while [ $i -lt 1500 ]; do : > /tmp/many/file-$i-{LONG}; i=$((i+1)); done; "
            "echo written-by-$$ > /tmp/note; while true; do sleep 0.2; done")


def _have_fuse() -> bool:
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        return False
    return os.path.exists("/dev/fuse")


needs_fuse = pytest.mark.skipif(not _have_fuse(), reason="pyfuse3 or /dev/fuse missing (install.sh installs them)")


def _start(tmp_path: Path, rootfs: Path, root: Path, cid: str, *flags: str,  # noqa: F811
           workload: str = WORKLOAD) -> None:
    bundle = bundle_with(tmp_path, rootfs, ["sh", "-c", workload], mounts=MOUNTS)
    with open(tmp_path / "out", "w") as out:
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), *flags, "run", "--detach",
                            "--bundle", str(bundle), cid], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                           env=repo_env(), timeout=WAIT)
    assert p.returncode == 0, (tmp_path / "out").read_text()


def _mount(root: Path, cid: str, where: Path, *extra: str) -> subprocess.Popen:  # noqa: F811
    where.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "fs", *extra, cid, str(where)],
                         env=repo_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()             # said once mounted (or the one-line error)
    assert "mounted at" in line, line + (p.stderr.read() if p.poll() is not None else "")
    assert os.path.ismount(where)
    return p


def _stop(p: subprocess.Popen, where: Path) -> None:
    if p.poll() is None:
        p.terminate()
        p.wait(WAIT)
    if os.path.ismount(where):
        subprocess.run(["fusermount3", "-u", "-z", str(where)], check=False)


@needs_fuse
def test_fs_view_shows_tmpfs_file_and_proc(tmp_path: Path, rootfs: Path, root: Path) -> None:  # noqa: F811
    _start(tmp_path, rootfs, root, "viewed")
    where = tmp_path / "view"
    deadline = time.monotonic() + WAIT
    fs = _mount(root, "viewed", where)
    try:
        note = where / "tmp" / "note"
        while not note.exists():                      # the workload may not have written it yet
            assert time.monotonic() < deadline, sorted(os.listdir(where / "tmp"))
            time.sleep(0.1)
        assert note.read_text() == "written-by-1\n"
        status = (where / "proc" / "1" / "status").read_text()
        assert status.startswith("Name:\tsh\n") and "\nPid:\t1\n" in status
        assert (where / "bin" / "busybox").stat().st_size > 100_000
        assert os.readlink(where / "bin" / "sh") == "/bin/busybox"
        assert "note" in os.listdir(where / "tmp")
        # A directory larger than one control message: listed in pages, every entry there.
        assert sorted(os.listdir(where / "tmp" / "many")) == sorted(f"file-{i}-{LONG}" for i in range(1500))
        # Read-only by default: the write is refused on the host, the sandbox's file unchanged.
        with pytest.raises(OSError) as e:
            (where / "tmp" / "new").write_text("x")
        assert e.value.errno == errno.EROFS
        # The sandbox stops: the view unmounts itself and the command exits 0.
        assert cli("kill", "viewed", "KILL", root=root).returncode == 0
        assert fs.wait(WAIT) == 0
        assert not os.path.ismount(where)
    finally:
        _stop(fs, where)


@needs_fuse
def test_fs_view_rw_writes_into_the_sandbox(tmp_path: Path, rootfs: Path, root: Path) -> None:  # noqa: F811
    _start(tmp_path, rootfs, root, "writable")
    where = tmp_path / "view"
    fs = _mount(root, "writable", where, "--rw")
    try:
        (where / "tmp" / "from-host").write_text("hello sandbox\n")
        (where / "tmp" / "dir").mkdir()
        p = cli("exec", "writable", "cat", "/tmp/from-host", root=root)
        assert p.returncode == 0 and p.stdout == "hello sandbox\n", p.stderr
        assert cli("exec", "writable", "test", "-d", "/tmp/dir", root=root).returncode == 0
        (where / "tmp" / "from-host").unlink()
        assert cli("exec", "writable", "test", "-e", "/tmp/from-host", root=root).returncode == 1
    finally:
        cli("kill", "writable", "KILL", root=root)
        _stop(fs, where)


@needs_fuse
def test_fs_view_shows_the_overlay_upper_layer(tmp_path: Path, rootfs: Path, root: Path) -> None:  # noqa: F811
    """With --overlay=memory a file the workload writes into its rootfs lives only in the Sentry's upper
    layer (the bundle is untouched); the view shows it, as the sandbox's processes see it."""
    _start(tmp_path, rootfs, root, "layered", "--overlay", "memory",
           workload="echo upper > /etc/only-in-upper; while true; do sleep 0.2; done")
    where = tmp_path / "view"
    fs = _mount(root, "layered", where)
    try:
        target = where / "etc" / "only-in-upper"
        deadline = time.monotonic() + WAIT
        while not target.exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert target.read_text() == "upper\n"
        assert not (rootfs / "etc" / "only-in-upper").exists()
        assert (where / "etc" / "passwd").read_text() == (rootfs / "etc" / "passwd").read_text()
    finally:
        cli("kill", "layered", "KILL", root=root)
        _stop(fs, where)


def test_fs_without_pyfuse3_is_one_line(tmp_path: Path, root: Path) -> None:  # noqa: F811
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "pyfuse3.py").write_text("raise ImportError('No module named pyfuse3')\n")
    env = repo_env()
    env["PYTHONPATH"] = f"{shadow}{os.pathsep}{env['PYTHONPATH']}"
    p = cli("fs", "anything", str(tmp_path), root=root, env=env)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and "pyfuse3" in lines[0] and "runsc-py[fuse]" in lines[0], p.stderr


def test_debug_ps_stacks_mounts_from_outside(tmp_path: Path, rootfs: Path, root: Path) -> None:  # noqa: F811
    _start(tmp_path, rootfs, root, "debugged")
    try:
        p = cli("debug", "--ps", "--mounts", "--stacks", "--format", "json", "debugged", root=root)
        assert p.returncode == 0, p.stderr
        import json
        rep = json.loads(p.stdout)
        assert rep["ps"][0]["pid"] == 1 and rep["ps"][0]["comm"] == "sh"
        paths = {m["path"]: m["fstype"] for m in rep["mounts"]}
        assert paths["/"] and paths["/tmp"] == "tmpfs" and paths["/proc"] == "proc"
        assert rep["stacks"]["tasks"][0]["tid"] == 1 and rep["stacks"]["tasks"][0]["state"]
        assert "fsview" in rep["stacks"]["sentry"]
        text = cli("debug", "--ps", "debugged", root=root)
        assert text.returncode == 0 and "sh -c" in text.stdout
        bad = cli("debug", "--ps", root=root)
        assert bad.returncode == 2 and "needs a container ID" in bad.stderr
    finally:
        cli("kill", "debugged", "KILL", root=root)
