"""Observability from outside, without logging in: `runsc-py metrics-server` and `runsc-py events`.

Both ask the running Sentry over its control channel (sentry/metrics.py) and
add the host's view of the sandbox's processes.  The metrics test scrapes
the Prometheus endpoint (HTTP to 127.0.0.1 only) while a workload runs and
waits for its syscall counts to rise; the events test reads the JSON stream
(runc's stats events) and checks it ends when the container stops.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_cli import bundle_with, cli, repo_env, root, rootfs  # noqa: F401 -- fixtures

WAIT = 60          # an upper bound for things to happen under load, never a measured duration
LOOP = "while true; do echo tick > /tmp/out; cat /tmp/out > /dev/null; sleep 0.05; done"


def _start(tmp_path: Path, rootfs: Path, root: Path, cid: str) -> None:  # noqa: F811
    bundle = bundle_with(tmp_path, rootfs, ["sh", "-c", LOOP])
    with open(tmp_path / "out", "w") as out:      # the container keeps its stdio: not a pipe we wait on
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "run", "--detach",
                            "--bundle", str(bundle), cid], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                           env=repo_env(), timeout=WAIT)
    assert p.returncode == 0, (tmp_path / "out").read_text()


def _scrape(url: str) -> dict[tuple[str, str], float]:
    """{(metric, labels text): value} of one GET."""
    with urllib.request.urlopen(url, timeout=WAIT) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = re.fullmatch(r'(\w+)\{(.*)\} (\S+)', line)
        assert m, line
        out[(m[1], m[2])] = float(m[3])
    return out


def test_metrics_server_shows_syscalls_rising(tmp_path: Path, rootfs: Path, root: Path) -> None:  # noqa: F811
    _start(tmp_path, rootfs, root, "metered")
    server = subprocess.Popen([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "metrics-server",
                               "--address", "127.0.0.1:0"], env=repo_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+/metrics)", line)
        assert m, line
        url = m[1]
        first = _scrape(url)
        sb = 'sandbox="metered"'
        assert first[("runsc_py_sandbox_up", sb)] == 1
        writes = ("runsc_py_syscalls_total", sb + ',syscall="write"')
        assert first[writes] > 0
        # Every family the issue names is there, from the Sentry and from the host.
        names = {k[0] for k in first}
        for need in ("runsc_py_cpu_seconds_total", "runsc_py_memory_bytes", "runsc_py_gofer_requests_total",
                     "runsc_py_open_fds", "runsc_py_processes", "runsc_py_page_faults_total",
                     "runsc_py_sandbox_start_time_seconds", "runsc_py_host_cpu_seconds_total"):
            assert need in names, need
        assert first[("runsc_py_memory_bytes", sb + ',kind="total"')] > 0
        assert first[("runsc_py_memory_bytes", sb + ',kind="anonymous"')] > 0
        assert first[("runsc_py_gofer_requests_total", sb + ',op="walk_stat"')] > 0
        assert first[("runsc_py_processes", sb)] >= 1
        assert first[("runsc_py_open_fds", sb)] >= 3
        assert abs(first[("runsc_py_sandbox_start_time_seconds", sb)] - time.time()) < 3600
        # The workload keeps writing: a later scrape shows more.
        deadline = time.monotonic() + WAIT
        while True:
            later = _scrape(url)
            if later[writes] > first[writes] and \
                    later[("runsc_py_syscalls_total", sb + ',syscall="execve"')] > \
                    first[("runsc_py_syscalls_total", sb + ',syscall="execve"')]:
                break
            assert time.monotonic() < deadline, "syscall counts did not rise"
            time.sleep(0.2)
        # A stopped sandbox leaves the scrape (and does not break it).
        assert cli("kill", "metered", "KILL", root=root).returncode == 0
        deadline = time.monotonic() + WAIT
        while ("runsc_py_sandbox_up", sb) in _scrape(url):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(WAIT)


def test_events_streams_until_the_container_stops(tmp_path: Path, rootfs: Path, root: Path) -> None:  # noqa: F811
    _start(tmp_path, rootfs, root, "evented")
    ev = subprocess.Popen([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "events", "--interval", "1",
                           "evented"], env=repo_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        events = []
        for _ in range(3):
            line = ev.stdout.readline()
            assert line.endswith("\n"), (line, ev.stderr.read() if ev.poll() is not None else "")
            events.append(json.loads(line))
        for e in events:
            assert e["type"] == "stats" and e["id"] == "evented"
            d = e["data"]
            # What go-runc's Stats (containerd's runc shim, docker stats) decodes.
            assert set(d["cpu"]["usage"]) >= {"total", "kernel", "user"}
            assert d["cpu"]["usage"]["total"] == d["cpu"]["usage"]["kernel"] + d["cpu"]["usage"]["user"]
            assert d["memory"]["usage"]["usage"] > 0
            assert d["pids"]["current"] >= 1
            assert d["memory"]["raw"]["anonymous_bytes"] > 0
        totals = [e["data"]["syscalls"]["total"] for e in events]
        assert totals == sorted(totals) and totals[-1] > totals[0]
        # Stopping the container ends the stream, with status 0.
        assert cli("kill", "evented", "KILL", root=root).returncode == 0
        out, err = ev.communicate(timeout=WAIT)
        assert ev.returncode == 0, err
        for line in out.splitlines():
            assert json.loads(line)["type"] == "stats"
    finally:
        if ev.poll() is None:
            ev.kill()
            ev.wait()


def test_events_stats_once_and_unknown_container(tmp_path: Path, rootfs: Path, root: Path) -> None:  # noqa: F811
    _start(tmp_path, rootfs, root, "once")
    p = cli("events", "--stats", "once", root=root)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["id"] == "once"
    p = cli("events", "--stats", "nosuch", root=root)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1


def test_metrics_server_started_on_demand(tmp_path: Path, rootfs: Path, root: Path) -> None:  # noqa: F811
    """`--metrics-server ADDR` given to `run`: a server for this --root starts if none listens there
    (runsc's --metric-server), and serves the sandbox; a second run reuses it."""
    import socket
    with socket.socket() as s:              # a free port on 127.0.0.1
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    bundle = bundle_with(tmp_path, rootfs, ["sh", "-c", LOOP])
    for cid in ("auto1", "auto2"):
        with open(tmp_path / "out", "w") as out:
            p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "--metrics-server", address,
                                "run", "--detach", "--bundle", str(bundle), cid], stdout=out, stderr=out,
                               stdin=subprocess.DEVNULL, env=repo_env(), timeout=WAIT)
        assert p.returncode == 0, (tmp_path / "out").read_text()
    pid = int((root / ".metrics-server.pid").read_text())
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                got = _scrape(f"http://{address}/metrics")
                if ("runsc_py_sandbox_up", 'sandbox="auto2"') in got:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert got[("runsc_py_sandbox_up", 'sandbox="auto1"')] == 1
        with urllib.request.urlopen(f"http://{address}/runsc-py-root", timeout=WAIT) as r:
            assert r.read().decode().strip() == str(root)
        assert (root / ".metrics-server.pid").read_text().strip() == str(pid)     # the second run reused it
    finally:
        os.kill(pid, signal.SIGTERM)
        for cid in ("auto1", "auto2"):
            cli("kill", cid, "KILL", root=root)
