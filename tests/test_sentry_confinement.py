"""After start-up the Sentry cannot open a host path: its seccomp filter refuses every path-based
syscall (EACCES) and kills on host-reshaping ones; it holds no capability and sees an empty root.
Both the Sentry's filter and the Gofer's allowlist are installed in a live sandbox."""
from __future__ import annotations

import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.rootfs import make_bundle  # noqa: E402

PROBE = r"""
import os, sys
sys.path.insert(0, %r)
from sentry.confine import build_filter
import ctypes
ctypes.CDLL(None).prctl(38, 1, 0, 0, 0)
build_filter().load()
results = []
for name, fn in (("open", lambda: os.open("/etc/hostname", os.O_RDONLY)),
                 ("stat", lambda: os.stat("/etc/hostname")),
                 ("listdir", lambda: os.listdir("/")),
                 ("access", lambda: os.access("/etc/hostname", os.R_OK) or (_ for _ in ()).throw(PermissionError(13, "")))):
    try:
        fn()
        results.append(name + "=ALLOWED")
    except PermissionError:
        results.append(name + "=EACCES")
fd_ok = os.fstat(1) is not None
results.append("fstat(fd)=" + ("ok" if fd_ok else "fail"))
print(" ".join(results))
"""


def test_the_sentry_filter_refuses_host_paths_and_keeps_fd_calls() -> None:
    p = subprocess.run([sys.executable, "-c", PROBE % REPO], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["open=EACCES", "stat=EACCES", "listdir=EACCES", "access=EACCES", "fstat(fd)=ok"]


def test_the_sentry_filter_kills_on_mount() -> None:
    code = PROBE.split("results = []")[0] % REPO + "\nimport ctypes\nctypes.CDLL(None).mount(b'none', b'/mnt', b'tmpfs', 0, None)\nprint('survived')\n"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == -31 and "survived" not in p.stdout, (p.returncode, p.stdout, p.stderr)   # SIGSYS


def _status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def test_a_live_sentry_and_gofer_are_confined(tmp_path) -> None:
    bundle = make_bundle(str(tmp_path / "b"), ["sleep", "5"])
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-m", "runsc_py.cli", "--root", str(tmp_path / "s"), "run", "--bundle",
                             bundle, "conf"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sentry = gofer = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (sentry is None or gofer is None):
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                try:
                    st = _status(int(name))
                    comm = open(f"/proc/{name}/comm").read().strip()
                except OSError:
                    continue
                if comm == "runsc-py-stub" and st.get("TracerPid", "0") != "0":
                    tracer = int(st["TracerPid"])
                    if _status(tracer).get("PPid") == str(proc.pid):
                        sentry = tracer
            if sentry is not None:
                for name in os.listdir("/proc"):
                    if name.isdigit() and int(name) != sentry:
                        try:
                            if _status(int(name)).get("PPid") == str(sentry) and \
                                    open(f"/proc/{name}/comm").read().strip() != "runsc-py-stub":
                                gofer = int(name)
                        except OSError:
                            pass
            time.sleep(0.1)
        assert sentry is not None and gofer is not None, "could not find the Sentry and its Gofer"
        s = _status(sentry)
        assert (s["Seccomp"], s["NoNewPrivs"], s["CapEff"], s["CapBnd"]) == ("2", "1", "0" * 16, "0" * 16), s
        assert os.readlink(f"/proc/{sentry}/root") != "/"          # an empty tmpfs in its own namespace
        g = _status(gofer)
        assert (g["Seccomp"], g["NoNewPrivs"]) == ("2", "1"), g
        assert int(g["CapEff"], 16) == 0x1F                       # CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID
    finally:
        proc.kill()
        proc.wait()
