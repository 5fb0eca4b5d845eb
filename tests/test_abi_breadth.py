"""Issue 12's user-level checks that a C conformance program cannot make natively: changes that would
touch the host if run outside the sandbox (sethostname), and the one-liners the issue names, run under
`runsc-py do` (the host's root filesystem, read-only, served through the Gofer)."""
from __future__ import annotations

import subprocess
import sys

from tests.test_cli import REPO, repo_env

RUNSC = [sys.executable, "-m", "runsc_py.front"]


def do(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RUNSC, "do", "--", *argv], capture_output=True, text=True, env=repo_env(),
                          cwd=REPO, timeout=120)


def test_sethostname_as_root_changes_the_sandbox_uts_name_only() -> None:
    host = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    p = do("/bin/sh", "-c", "hostname inside-sandbox && hostname && uname -n && cat /proc/sys/kernel/hostname")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["inside-sandbox"] * 3
    assert subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip() == host


def test_python_pidfd_open_and_preadv_round_trip() -> None:
    code = ("import os; fd = os.pidfd_open(os.getpid()); print(fd > 0); "
            "r, w = os.pipe(); os.write(w, b'abcdef'); "
            "f = os.memfd_create('x'); os.pwritev(f, [b'hello ', b'world'], 3); "
            "a, b = bytearray(5), bytearray(6); print(os.preadv(f, [a, b], 4), bytes(a + b))")
    p = do("/usr/bin/python3", "-c", code)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["True", "10 b'ello world\\x00'"]   # 10 bytes to EOF: b's last byte untouched


def test_threads_and_subprocesses_go_through_clone3() -> None:
    code = ("import threading, subprocess; t = threading.Thread(target=print, args=('thread',)); t.start(); "
            "t.join(); print(subprocess.run(['/bin/true']).returncode)")
    p = subprocess.run([*RUNSC, "--strace", "--debug-log", "/dev/stderr", "do", "--", "/usr/bin/python3", "-c",
                        code], capture_output=True, text=True, env=repo_env(), cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.splitlines() == ["thread", "0"]
    calls = [ln for ln in p.stderr.splitlines() if "] clone3(" in ln]
    assert calls, "glibc made no clone3 call"
    assert not [ln for ln in calls if "= -1" in ln], calls
