"""Observability from outside: Prometheus metrics for every sandbox under --root, and runc's stats events.

Two views are combined, each from where it is true:
* the sandbox's own, asked over its control channel (sentry/metrics.py):
  syscalls by name, memory by kind, Gofer requests, open fds, processes,
  faults the platform handed to the Sentry, the Sentry's and the
  application's CPU time, start time;
* the host's, from /proc of the sandbox's host process tree (Sentry, Gofer,
  ptrace stubs): CPU time and page faults, which the confined Sentry cannot
  read and which are what the sandbox costs the machine.

`runsc-py --root R metrics-server --address 127.0.0.1:9115` serves the text
format at any path (GET /metrics as Prometheus scrapes it); a sandbox that does
not answer is reported as `runsc_py_sandbox_up 0`, never as an error of the
whole scrape.
"""
from __future__ import annotations

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runsc_py import procfs
from runsc_py.errors import UserError
from runsc_py.state import StateStore

CONTROL_SOCKET = "control.sock"
_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
NS = 1e9


def host_usage(pid: int) -> dict[str, int]:
    """The host's view of the process tree under `pid`: CPU (ns), page faults, RSS, process count."""
    out = dict.fromkeys(("user_ns", "kernel_ns", "minflt", "majflt", "rss", "processes"), 0)
    for p in procfs.descendants(pid, session=True) if pid else []:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields[0] is proc(5)'s field 3: minflt=10, majflt=12, utime=14, stime=15, rss=24.
        out["minflt"] += int(fields[7])
        out["majflt"] += int(fields[9])
        out["user_ns"] += int(fields[11]) * _TICK_NS
        out["kernel_ns"] += int(fields[12]) * _TICK_NS
        out["rss"] += int(fields[21]) * _PAGE
        out["processes"] += 1
    return out


def sandbox_stats(store: StateStore, container_id: str) -> tuple[str, int, dict | None]:
    """(status, host pid, the Sentry's stats or None when it cannot be asked)."""
    with store.locked(container_id, exclusive=False) as st:
        status = st.live_status()
        pid = st.pid if status != "stopped" else 0
    if status == "stopped":
        return status, 0, None
    path = store.path(container_id, CONTROL_SOCKET)
    try:
        from sentry.control import ControlError, stats
        return status, pid, stats(path, container_id)      # a pod member: its own processes
    except (ControlError, OSError, KeyError, TypeError, ValueError):
        return status, pid, None


# -- Prometheus text format ------------------------------------------------------------------

_HELP = {
    "runsc_py_sandbox_up": ("gauge", "1 if the sandbox's Sentry answered the stats request."),
    "runsc_py_sandbox_start_time_seconds": ("gauge", "When the Sentry started (Unix time)."),
    "runsc_py_cpu_seconds_total": ("counter", "CPU time inside the sandbox: the Sentry's own and the application's."),
    "runsc_py_host_cpu_seconds_total": ("counter", "Host CPU time of the sandbox's host processes (Sentry, Gofer, stubs)."),
    "runsc_py_memory_bytes": ("gauge", "MemoryFile (and tmpfs) bytes in use, by kind; kind=total is what the host charges."),
    "runsc_py_host_memory_rss_bytes": ("gauge", "Resident memory of the sandbox's host processes."),
    "runsc_py_syscalls_total": ("counter", "System calls the Sentry answered, by name."),
    "runsc_py_gofer_requests_total": ("counter", "Requests sent to the sandbox's Gofers, by operation."),
    "runsc_py_open_fds": ("gauge", "File descriptors open in the sandbox's processes."),
    "runsc_py_processes": ("gauge", "Processes (thread groups) in the sandbox."),
    "runsc_py_threads": ("gauge", "Threads (tasks) in the sandbox."),
    "runsc_py_page_faults_total": ("counter", "Page faults taken by the sandbox's host processes (minor, major)."),
    "runsc_py_sentry_faults_total": ("counter", "Faults the platform handed to the Sentry (signals, SIGSEGV...)."),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(name: str, labels: dict[str, str], value: float) -> str:
    lab = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    v = repr(float(value)) if isinstance(value, float) else str(int(value))
    return f"{name}{{{lab}}} {v}"


def pod_of(store: StateStore, container_id: str) -> str | None:
    """The CRI pod a container belongs to: its own id for a pod's sandbox container, the sandbox's for
    a member (runsc_py/pod.py), None otherwise."""
    try:
        with store.locked(container_id, exclusive=False) as st:
            if st.config.get("pod"):
                return str(st.config["pod"])
            if st.annotations.get("io.kubernetes.cri.container-type") == "sandbox":
                return container_id
    except UserError:
        pass
    return None


def samples(container_id: str, pid: int, s: dict | None, pod: str | None = None) -> list[tuple[str, dict, float]]:
    """Every sample of one sandbox as (metric, labels, value).  In a pod, label `pod` says which: its
    members share the pod's Sentry, so their memory, syscall and Gofer figures are the pod's."""
    sb = {"sandbox": container_id, **({"pod": pod} if pod else {})}
    out: list[tuple[str, dict, float]] = [("runsc_py_sandbox_up", sb, 1 if s is not None else 0)]
    h = host_usage(pid)
    out.append(("runsc_py_host_cpu_seconds_total", {**sb, "mode": "user"}, h["user_ns"] / NS))
    out.append(("runsc_py_host_cpu_seconds_total", {**sb, "mode": "kernel"}, h["kernel_ns"] / NS))
    out.append(("runsc_py_host_memory_rss_bytes", sb, h["rss"]))
    out.append(("runsc_py_page_faults_total", {**sb, "kind": "minor"}, h["minflt"]))
    out.append(("runsc_py_page_faults_total", {**sb, "kind": "major"}, h["majflt"]))
    if s is None:
        return out
    out.append(("runsc_py_sandbox_start_time_seconds", sb, float(s["start_time"])))
    out.append(("runsc_py_cpu_seconds_total", {**sb, "part": "sentry"}, s["sentry_cpu_ns"] / NS))
    out.append(("runsc_py_cpu_seconds_total", {**sb, "part": "application"}, s["app_cpu_ns"] / NS))
    for kind, n in sorted(s["memory"].items()):
        out.append(("runsc_py_memory_bytes", {**sb, "kind": kind}, n))
    for name, n in sorted(s["syscalls"].items()):
        out.append(("runsc_py_syscalls_total", {**sb, "syscall": name}, n))
    for op, n in sorted(s["gofer_requests"].items()):
        out.append(("runsc_py_gofer_requests_total", {**sb, "op": op}, n))
    out.append(("runsc_py_open_fds", sb, s["fds"]))
    out.append(("runsc_py_processes", sb, len(s["processes"])))
    out.append(("runsc_py_threads", sb, s["threads"]))
    out.append(("runsc_py_sentry_faults_total", sb, s["faults"]))
    return out


def render(store: StateStore) -> str:
    """The Prometheus text exposition (format 0.0.4) for every sandbox under the store's root."""
    by_metric: dict[str, list[str]] = {name: [] for name in _HELP}
    for cid in store.ids():
        try:
            status, pid, s = sandbox_stats(store, cid)
        except UserError:
            continue            # deleted while we looked
        if status == "stopped":
            continue
        for name, labels, value in samples(cid, pid, s, pod_of(store, cid)):
            by_metric[name].append(_sample(name, labels, value))
    lines = []
    for name, rows in by_metric.items():
        kind, text = _HELP[name]
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"] + rows
    return "\n".join(lines) + "\n"


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"metrics server address {address!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


ROOT_PATH = "/runsc-py-root"       # answers the --root served (ensure_server checks it)
PID_FILE = ".metrics-server.pid"   # under --root: the server started on demand (not a container: dot)
START_WAIT = 20.0                  # seconds an on-demand server may take to answer


def serve(root: str, address: str, ready=None) -> None:
    """Serve `render` over HTTP until interrupted."""
    store = StateStore(root)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:      # noqa: N802 -- http.server's name
            try:
                if self.path == ROOT_PATH:
                    body, code = (os.path.abspath(root) + "\n").encode(), 200
                else:
                    body = render(store).encode()
                    code = 200
            except Exception as e:     # noqa: BLE001 -- a scrape fails, the server lives on
                body, code = f"runsc-py metrics: {type(e).__name__}: {e}\n".encode(), 500
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:
            pass

    host, port = parse_address(address)
    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        raise UserError(f"metrics server {address}: {e.strerror or e}") from None
    server.daemon_threads = True
    if ready is not None:
        ready(server.server_address)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def _served_root(host: str, port: int) -> str | None:
    """The --root of the metrics server at host:port; None if nothing listens there."""
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{ROOT_PATH}", timeout=5) as r:
            return r.read().decode().strip()
    except OSError:
        return None


def ensure_server(root: str, address: str) -> None:
    """`--metrics-server ADDR` given to `create`/`run`: make sure a metrics server for this --root
    listens at ADDR, starting one in the background if nothing does (as runsc starts its metric
    server on demand).  Another root's server at ADDR is left alone, with a warning."""
    import subprocess
    import sys
    from runsc_py import errors
    host, port = parse_address(address)
    served = _served_root(host, port)
    if served is not None:
        if served != os.path.abspath(root):
            errors.log().warning(f"--metrics-server {address} serves --root {served}, not {root}: not started")
        return
    os.makedirs(root, exist_ok=True)
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        p = subprocess.Popen([sys.executable, "-m", "runsc_py.cli", "--root", root, "metrics-server",
                              "--address", address], stdin=devnull, stdout=devnull, stderr=devnull,
                             start_new_session=True, close_fds=True)
    finally:
        os.close(devnull)
    # Wait until it answers (so the next create sees it, not a second start), for a while at most.
    import time
    deadline = time.monotonic() + START_WAIT
    while _served_root(host, port) is None:
        if p.poll() is not None or time.monotonic() > deadline:
            errors.log().warning(f"--metrics-server {address}: the server did not start (status {p.poll()})")
            return
        time.sleep(0.05)
    with open(os.path.join(root, PID_FILE), "w") as f:
        f.write(f"{p.pid}\n")
