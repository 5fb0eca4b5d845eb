"""runsc_py.Sandbox, the library (runsc_py/api.py): runs, files, pipes, threads, asyncio, cleanup.

python3 comes from the host's own root (served read-only under an in-memory overlay, as
`runsc-py do` does); everything else uses a static busybox rootfs, which starts faster.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from runsc_py import Sandbox
from runsc_py.procfs import descendants
from tests.rootfs import make_busybox_rootfs


@pytest.fixture(scope="module")
def busybox(tmp_path_factory) -> str:
    return make_busybox_rootfs(str(tmp_path_factory.mktemp("lib") / "rootfs"))


def _gone(keeper: int, pids: list[int], tmpdir: str) -> None:
    """Nothing of a closed sandbox is left: no process, no temp dir."""
    deadline = time.monotonic() + 10
    alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if os.path.exists(f"/proc/{p}")
                 and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")]
    assert not alive, f"processes left behind: {alive}"
    with pytest.raises(ChildProcessError):
        os.waitpid(keeper, os.WNOHANG)
    assert not os.path.exists(tmpdir)


def test_python3_stdout_exit_status_and_usage():
    with Sandbox("/") as sb:
        r = sb.run(["python3", "-c", "import sys; print(sum(range(10))); sys.stderr.write('e'); sys.exit(3)"])
    assert (r.returncode, r.stdout, r.stderr) == (3, b"45\n", b"e")
    assert r.cpu_time > 0 and r.peak_memory > 1 << 20 and r.syscalls > 50, r


def test_input_text_and_check(busybox):
    with Sandbox(busybox) as sb:
        r = sb.run(["tr", "a-z", "A-Z"], input="hello\n", text=True)
        assert (r.returncode, r.stdout) == (0, "HELLO\n")
        with pytest.raises(subprocess.CalledProcessError):
            sb.run(["false"], check=True)
        with pytest.raises(FileNotFoundError):
            sb.run(["/no/such/program"])


def test_ten_runs_share_files_and_the_rootfs_is_untouched(busybox):
    with Sandbox(busybox) as sb:
        for i in range(10):
            r = sb.run(["sh", "-c", f"echo run{i} >> /tmp/shared; wc -l < /tmp/shared"])
            assert (r.returncode, r.stdout.strip()) == (0, str(i + 1).encode())
        assert sb.read_file("/tmp/shared") == b"".join(b"run%d\n" % i for i in range(10))
    assert not os.path.exists(os.path.join(busybox, "tmp/shared"))     # overlay=True: in memory only


def test_files_through_the_vfs(busybox):
    with Sandbox(busybox) as sb:
        assert sb.run(["sh", "-c", "mkdir /tmp/d && printf guest > /tmp/d/out"]).returncode == 0
        assert sb.read_file("/tmp/d/out") == b"guest"
        big = os.urandom(1_500_000)                  # more than one control message
        sb.write_file("/tmp/d/in", big)
        r = sb.run(["md5sum", "/tmp/d/in"])
        import hashlib
        assert r.stdout.split()[0].decode() == hashlib.md5(big).hexdigest()
        assert sb.read_file("/tmp/d/in") == big
        assert sb.listdir("/tmp/d") == ["in", "out"]
        with pytest.raises(FileNotFoundError):
            sb.read_file("/tmp/nothing")
        with pytest.raises(IsADirectoryError):
            sb.write_file("/tmp/d", b"x")


def test_popen_streams(busybox):
    with Sandbox(busybox) as sb:
        p = sb.popen(["cat"])
        for line in (b"one\n", b"two\n"):
            p.stdin.write(line)
            assert p.stdout.readline() == line
        p.stdin.close()
        assert p.wait(30) == 0
        p = sb.popen(["sleep", "30"])
        assert p.poll() is None
        p.terminate()
        assert p.wait(30) == 128 + 15


def test_timeout_kills_the_run_and_the_sandbox_goes_on(busybox):
    with Sandbox(busybox, timeout=1.0) as sb:
        with pytest.raises(subprocess.TimeoutExpired):
            sb.run(["sh", "-c", "sleep 60 & sleep 60"])
        assert sb.run(["echo", "still here"]).stdout == b"still here\n"


def test_thread_pool_of_8_sandboxes(busybox):
    def one(i: int):
        with Sandbox(busybox) as sb:
            r = sb.run(["sh", "-c", f"echo {i} > /tmp/me; cat /tmp/me"])
            info = (sb.pid, descendants(sb.pid, session=True), os.path.dirname(sb.control_path))
        return i, r, info
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    for i, r, (keeper, pids, tmpdir) in results:
        assert (r.returncode, r.stdout) == (0, f"{i}\n".encode())
        assert len(pids) >= 3            # keeper, Sentry, Gofer at least
        _gone(keeper, pids, tmpdir)


def test_asyncio(busybox):
    async def main():
        async with Sandbox(busybox) as sb:
            a, b = await asyncio.gather(sb.arun(["echo", "a"]), sb.arun(["echo", "b"]))
            return a.stdout, b.stdout
    assert asyncio.run(main()) == (b"a\n", b"b\n")


def test_close_leaves_nothing_even_with_processes_running(busybox):
    mounts_before = open("/proc/self/mountinfo").read()
    sb = Sandbox(busybox)
    p = sb.popen(["sh", "-c", "sleep 100 & sleep 100"])
    keeper, tmpdir = sb.pid, os.path.dirname(sb.control_path)
    pids = descendants(keeper, session=True)
    sb.close()
    sb.close()                               # idempotent
    _gone(keeper, pids, tmpdir)
    assert p.wait(10) == 255 or p.returncode is not None
    assert open("/proc/self/mountinfo").read() == mounts_before


def test_a_bad_rootfs_is_one_error(tmp_path):
    from runsc_py import SandboxError
    with pytest.raises(SandboxError):
        Sandbox(str(tmp_path / "missing"))


def test_mounts_limits_and_a_bundle_dir(tmp_path, busybox):
    from tests.rootfs import make_bundle
    share = tmp_path / "share"
    share.mkdir()
    (share / "a").write_text("hostdata\n")
    with Sandbox(busybox, mounts=[(str(share), "/mnt", "ro")], pids_limit=4) as sb:
        assert sb.run(["cat", "/mnt/a"]).stdout == b"hostdata\n"
        r = sb.run(["sh", "-c", "echo x > /mnt/b"])
        assert r.returncode != 0 and b"Read-only file system" in r.stderr
        r = sb.run(["sh", "-c", "for i in 1 2 3 4 5 6; do sleep 1 & done; wait"])
        assert b"Resource temporarily unavailable" in r.stderr
    assert sorted(os.listdir(share)) == ["a"]
    bundle = make_bundle(str(tmp_path / "bundle"), ["true"], rootfs=busybox)   # an OCI bundle (image dir)
    with Sandbox(bundle) as sb:
        assert sb.run(["sh", "-c", "echo $TERM"]).stdout == b"xterm\n"     # the bundle's process.env
