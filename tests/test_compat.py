"""The compatibility report (`runsc-py compat`, `Sandbox(compat=True)`): sentry/compat.py and
runsc_py/compat_report.py.  Its support levels must be the syscall table's, as `runsc-py
syscalls` prints them."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from runsc_py import Sandbox

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROGRAM = r'''
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
print("io_uring_setup", libc.syscall(425, 8, params), ctypes.get_errno())
r, w = os.pipe(); r2, w2 = os.pipe()
os.write(w, b"hello")
try:
    print("splice", os.splice(r, w2, 5))
except OSError as e:
    print("splice", errno.errorcode[e.errno])
open("/proc/self/status").read()
socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC).close()
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
except OSError as e:
    print("packet", errno.errorcode[e.errno])
'''
LEVEL = {"full": "supported", "partial": "partial", "error": "unsupported", "unimplemented": "unsupported"}


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "runsc_py.cli", *args], cwd="/", env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180)


def _table() -> dict:
    p = _cli("syscalls", "--format", "json")
    assert p.returncode == 0, p.stderr
    return {row["name"]: row for row in json.loads(p.stdout)}


def test_io_uring_setup_and_splice_are_named_as_the_table_says(tmp_path):
    out = tmp_path / "report.json"
    p = _cli("compat", "--format", "json", "-o", str(out), "--", "python3", "-c", PROGRAM)
    assert p.returncode == 0, p.stderr
    report = json.loads(out.read_text())
    table = _table()
    calls = {row["name"]: row for row in report["syscalls"]}
    for name in ("io_uring_setup", "splice"):
        row = calls[name]
        assert row["status"] == LEVEL[table[name]["support"]], row
        assert row["note"] == table[name]["note"] and row["count"] >= 1
        assert row["first"].startswith("python3[") and f"{name}(" in row["first"]
    # Every syscall in the report carries the table's own support level and note.
    for name, row in calls.items():
        assert (row["support"], row["note"]) == (table[name]["support"], table[name]["note"]), name
        assert row["status"] == LEVEL[row["support"]]
    if calls["io_uring_setup"]["status"] == "unsupported":
        assert calls["io_uring_setup"]["errors"] == {"ENOSYS": 1}
        assert report["verdict"].startswith("may not work")
    assert report["exit_status"] == 0
    summary = {k: 0 for k in ("supported", "partial", "unsupported")}
    for key in ("syscalls", "ioctls", "files", "sockets"):
        for row in report[key]:
            summary[row["status"]] += 1
    assert report["summary"] == summary


def test_files_sockets_and_the_library(tmp_path):
    with Sandbox("/", compat=True) as sb:
        r = sb.run(["python3", "-c", PROGRAM])
        assert r.returncode == 0, r.stderr
        report = sb.compat_report()
    files = {row["path"]: row for row in report["files"]}
    assert files["/proc/self/status"]["status"] == "supported"
    socks = {(row["family"], row["type"]): row for row in report["sockets"]}
    assert socks[("AF_INET", "SOCK_STREAM")]["status"] == "supported"
    assert socks[("AF_INET", "SOCK_STREAM")]["flags"] == "SOCK_CLOEXEC"
    assert socks[("AF_PACKET", "SOCK_RAW")]["status"] == "unsupported"
    assert socks[("AF_PACKET", "SOCK_RAW")]["errors"] == {"EAFNOSUPPORT": 1}
    assert "io_uring_setup" in {row["name"] for row in report["syscalls"]}


def test_markdown_and_table_formats_and_the_exit_status(tmp_path):
    out = tmp_path / "report.md"
    p = _cli("compat", "--format", "markdown", "-o", str(out), "--", "sh", "-c", "cat /proc/self/stat >/dev/null; exit 7")
    assert p.returncode == 7, p.stderr
    text = out.read_text()
    assert text.startswith("# runsc-py compatibility report")
    assert "| Item | Status | Count | Errors | First call | Note |" in text and "Workload exit status: 7" in text
    p = _cli("compat", "--", "true")
    assert p.returncode == 0 and "Verdict: " in p.stderr and "Syscalls:" in p.stderr, p.stderr
