"""Kubernetes' path to runsc-py: containerd's CRI plugin driven over its gRPC socket, as kubelet does.

No kubelet exists in Debian; this is the same API surface (runtime.v1):
RunPodSandbox with the `runsc-py` runtime handler, CreateContainer,
StartContainer, ContainerStatus, ExecSync, ListContainers, StopContainer,
RemoveContainer, StopPodSandbox, RemovePodSandbox -- against a containerd
started here with a private config, root and socket (tests/cri/harness.py),
local images (nothing pulled).  The runtime's own view (`runsc-py --root R
list`, the host's processes) shows that runsc-py ran the pod, and that
removing it leaves no process, mount or state behind.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.engines import CONTAINERD, CTR, UMOCI, mounts_under, missing, processes_mentioning, runsc_py_binary

pytestmark = pytest.mark.slow

WAIT = 120                   # gRPC deadline of each call: an upper bound under load, not a measurement


@pytest.fixture(scope="module")
def cri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    reason = missing(("containerd", CONTAINERD), ("ctr", CTR), ("umoci", UMOCI))
    if reason:
        pytest.skip(reason)
    try:
        import grpc  # noqa: F401
        import grpc_tools  # noqa: F401
    except ImportError:
        pytest.skip("grpcio and grpcio-tools are not installed (pip install -e '.[cri]'; .ci/run does)")
    exe = runsc_py_binary()
    if exe is None:
        pytest.skip("runsc-py is not installed (pip install -e .)")
    from tests.cri.harness import CriContainerd
    base = tmp_path_factory.mktemp("cri")
    c = CriContainerd(base / "containerd", exe)
    try:
        c.import_images(base / "images")
        yield c
    finally:
        left = c.stop()
        assert left == [], left


def _runsc_py(c, *args: str) -> subprocess.CompletedProcess[str]:
    # The runc shim gives the runtime --root ROOT/NAMESPACE (k8s.io for the CRI plugin).
    from tests.cri.harness import NAMESPACE
    return subprocess.run([runsc_py_binary(), "--root", str(c.runsc_root / NAMESPACE), *args], capture_output=True,
                          text=True, timeout=WAIT)


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def _sentries(c) -> list[int]:
    """Host pids of the Sentries (session leaders named runsc-sandbox) started under this runsc-py root."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == pid and _comm(pid) == "runsc-sandbox" \
                and str(c.runsc_root).encode() in cmdline:
            out.append(pid)
    return out


def _sandbox_config(c, tmp_path: Path, name: str):
    pb = c.pb
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="default", attempt=0),
        hostname=name, log_directory=str(logs), labels={"app": name},
        # hostNetwork (NODE): the pod needs no CNI plugin; inside, runsc-py's sandbox has its own loopback.
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD))))


def _container_config(c, name: str, command: list[str]):
    from tests.cri.harness import BUSYBOX_IMAGE
    pb = c.pb
    return pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name, attempt=0),
                              image=pb.ImageSpec(image=BUSYBOX_IMAGE), command=command,
                              envs=[pb.KeyValue(key="GREETING", value="from-cri")],
                              labels={"container": name}, log_path=f"{name}.log")


def test_pod_lifecycle_as_kubelet_drives_it(cri, tmp_path: Path) -> None:
    from tests.cri.harness import HANDLER
    c, pb, rt = cri, cri.pb, cri.runtime
    assert rt.Version(pb.VersionRequest(version="v1"), timeout=WAIT).runtime_api_version == "v1"

    sandbox_config = _sandbox_config(c, tmp_path, "lifecycle")
    pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config, runtime_handler=HANDLER),
                           timeout=WAIT).pod_sandbox_id
    status = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod), timeout=WAIT).status
    assert status.state == pb.SANDBOX_READY and status.runtime_handler == HANDLER

    config = _container_config(c, "app", ["sh", "-c", "echo started $GREETING; while true; do sleep 1; done"])
    cid = rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod, config=config,
                                                       sandbox_config=sandbox_config), timeout=WAIT).container_id
    assert rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=WAIT).status.state \
        == pb.CONTAINER_CREATED
    rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=WAIT)
    st = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=WAIT).status
    assert st.state == pb.CONTAINER_RUNNING and st.started_at > 0

    # runsc-py ran the pod's sandbox (pause) container, whose Sentry is the pod's, and the app container
    # in it (sentry/pod.py): the app's host process is its proxy, not a second Sentry.
    listed = json.loads(_runsc_py(c, "list", "--format", "json").stdout or "null") or []
    states = {d["id"]: d for d in listed}
    assert pod in states and cid in states, sorted(states)
    assert states[cid]["status"] == "running"
    assert _comm(states[pod]["pid"]) == "runsc-sandbox" and _comm(states[cid]["pid"]) == "runsc-py-member"
    assert len(_sentries(c)) == 1, _sentries(c)

    # ExecSync: output, a separate stderr and the exit code come back; it ran inside the sandbox.
    r = rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", "echo out $GREETING; echo err >&2; exit 3"],
                                       timeout=60), timeout=WAIT)
    assert (r.stdout, r.stderr, r.exit_code) == (b"out from-cri\n", b"err\n", 3)
    # One kernel for the pod: its PID 1 is the pause process.
    r = rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["cat", "/proc/1/cmdline"], timeout=60), timeout=WAIT)
    assert r.exit_code == 0 and r.stdout == b"/pause\0"

    # Exec with streaming, as `kubectl exec` reaches it: the URL of containerd's streaming server,
    # spoken to over WebSocket (tests/cri/stream.py).
    from tests.cri.stream import exec_stream
    url = rt.Exec(pb.ExecRequest(container_id=cid, cmd=["sh", "-c", "echo streamed $GREETING; echo e >&2; exit 4"],
                                 stdout=True, stderr=True), timeout=WAIT).url
    assert exec_stream(url, timeout=WAIT) == (b"streamed from-cri\n", b"e\n", 4)

    listed = rt.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=pod)),
                               timeout=WAIT).containers
    assert [(x.id, x.state, x.metadata.name) for x in listed] == [(cid, pb.CONTAINER_RUNNING, "app")]

    # The container's log, written by the shim from the sandbox's stdout (CRI log format).
    log = Path(sandbox_config.log_directory) / "app.log"
    assert " stdout F started from-cri" in log.read_text()

    # StopContainer: SIGTERM through the container's proxy; sh is not the pod kernel's PID 1 (pause is,
    # as in a pod sharing its PID namespace), so the default action ends it: 143.
    rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=30), timeout=WAIT)
    st = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=WAIT).status
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 143 and st.finished_at >= st.started_at

    rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=WAIT)
    assert rt.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=pod)),
                             timeout=WAIT).containers == []
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=WAIT)
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=WAIT)      # idempotent, as kubelet relies on
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=WAIT)
    assert [p.id for p in rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=WAIT).items if p.id == pod] == []

    # Nothing left: no runsc-py state, no process naming the pod or container, no mount of theirs.
    deadline = time.monotonic() + WAIT
    while _runsc_py(c, "list", "-q").stdout.strip() or processes_mentioning(pod) or processes_mentioning(cid):
        assert time.monotonic() < deadline, (_runsc_py(c, "list").stdout, processes_mentioning(pod),
                                             processes_mentioning(cid))
        time.sleep(0.2)
    assert [m for m in mounts_under(c.dir / "state") if pod in m or cid in m] == []


def test_container_that_exits_reports_its_code(cri, tmp_path: Path) -> None:
    from tests.cri.harness import HANDLER
    c, pb, rt = cri, cri.pb, cri.runtime
    sandbox_config = _sandbox_config(c, tmp_path, "oneshot")
    pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config, runtime_handler=HANDLER),
                           timeout=WAIT).pod_sandbox_id
    try:
        config = _container_config(c, "job", ["sh", "-c", "echo done; exit 7"])
        cid = rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod, config=config,
                                                           sandbox_config=sandbox_config), timeout=WAIT).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=WAIT)
        deadline = time.monotonic() + WAIT
        while (st := rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=WAIT).status).state \
                != pb.CONTAINER_EXITED:
            assert time.monotonic() < deadline, st
            time.sleep(0.2)
        assert st.exit_code == 7 and st.reason == "Error"
        rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=WAIT)
    finally:
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=WAIT)
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=WAIT)


def test_two_container_pod_is_one_sandbox(cri, tmp_path: Path) -> None:
    """Container A serves on 127.0.0.1, container B reaches it: one Sentry, one loopback for the pod."""
    from tests.cri.harness import HANDLER
    c, pb, rt = cri, cri.pb, cri.runtime
    sandbox_config = _sandbox_config(c, tmp_path, "twins")
    pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config, runtime_handler=HANDLER),
                           timeout=WAIT).pod_sandbox_id
    ids = []
    for name, command in (("server", ["sh", "-c", "mkdir -p /srv/www; echo served-by-a > /srv/www/index.html; "
                                      "exec httpd -f -p 127.0.0.1:8080 -h /srv/www"]),
                          ("client", ["sh", "-c", "while true; do sleep 1; done"])):
        cid = rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod, config=_container_config(c, name, command),
                                                           sandbox_config=sandbox_config), timeout=WAIT).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=WAIT)
        ids.append(cid)
    server, client = ids
    try:
        # B reaches A over the pod's loopback (A may still be starting: ask until it answers).
        deadline = time.monotonic() + WAIT
        while True:
            r = rt.ExecSync(pb.ExecSyncRequest(container_id=client, cmd=["wget", "-qO-", "http://127.0.0.1:8080/"],
                                               timeout=60), timeout=WAIT)
            if r.exit_code == 0:
                break
            assert time.monotonic() < deadline, r
            time.sleep(0.2)
        assert r.stdout == b"served-by-a\n"
        # Each container has its own root, a filesystem of its own (st_dev): A's files are not B's.
        devs = [rt.ExecSync(pb.ExecSyncRequest(container_id=x, cmd=["stat", "-c", "%d", "/", "/dev"], timeout=60),
                            timeout=WAIT).stdout.split() for x in (server, client)]
        assert len({d for pair in devs for d in pair}) == 4, devs
        r = rt.ExecSync(pb.ExecSyncRequest(container_id=client, cmd=["ls", "/srv/www"], timeout=60), timeout=WAIT)
        assert r.exit_code != 0 and r.stdout == b""
        r = rt.ExecSync(pb.ExecSyncRequest(container_id=client, cmd=["sh", "-c", "exit 5"], timeout=60), timeout=WAIT)
        assert r.exit_code == 5
        # The bind mounts containerd gives every container (the busybox image has no /etc/hosts of its
        # own): served by Gofers the front started for them.
        r = rt.ExecSync(pb.ExecSyncRequest(container_id=client, cmd=["sh", "-c", "test -f /etc/hosts && "
                                           "test -f /etc/resolv.conf && grep -c . /etc/hostname"], timeout=60),
                        timeout=WAIT)
        assert r.exit_code == 0 and r.stdout == b"1\n", r
        # One Sentry process for the whole pod, seen from the host; both containers are its processes.
        assert len(_sentries(c)) == 1, _sentries(c)
        # `ps` per container: each sees its own processes of the shared kernel.
        ps = _runsc_py(c, "ps", server)
        assert "httpd -f -p 127.0.0.1:8080" in ps.stdout and "/pause" not in ps.stdout, ps.stdout + ps.stderr
        ps = _runsc_py(c, "ps", pod)
        assert "/pause" in ps.stdout and "httpd" not in ps.stdout, ps.stdout + ps.stderr
        # Per-container state and events: the member's own processes (httpd alone in the server).
        states = {d["id"]: d["status"] for d in json.loads(_runsc_py(c, "list", "--format", "json").stdout)}
        assert states[server] == states[client] == states[pod] == "running"
        assert json.loads(_runsc_py(c, "state", server).stdout)["status"] == "running"
        ev = json.loads(_runsc_py(c, "events", "--stats", server).stdout)
        assert ev["id"] == server and ev["data"]["pids"]["current"] == 1, ev
    finally:
        for cid in ids:
            rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10), timeout=WAIT)
            rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=WAIT)
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=WAIT)
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=WAIT)
    # Removing the pod leaves no process, mount or state behind.
    deadline = time.monotonic() + WAIT
    while _runsc_py(c, "list", "-q").stdout.strip() or _sentries(c) \
            or any(processes_mentioning(x) for x in [pod, *ids]):
        assert time.monotonic() < deadline, (_runsc_py(c, "list").stdout, _sentries(c))
        time.sleep(0.2)
    assert [m for m in mounts_under(c.dir) if pod in m or any(x in m for x in ids)] == []


def test_pod_member_with_a_terminal(cri, tmp_path: Path) -> None:
    """A tty container (kubectl run -it): the shim's console socket gets the pty master, the process in
    the pod's Sentry has the slave as its controlling terminal; its output reaches the CRI log."""
    from tests.cri.harness import HANDLER
    c, pb, rt = cri, cri.pb, cri.runtime
    sandbox_config = _sandbox_config(c, tmp_path, "tty")
    pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config, runtime_handler=HANDLER),
                           timeout=WAIT).pod_sandbox_id
    try:
        config = _container_config(c, "term", ["sh", "-c", "tty; test -t 0 && echo is-a-tty; sleep 1000"])
        config.tty = True
        config.stdin = True
        cid = rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod, config=config,
                                                           sandbox_config=sandbox_config), timeout=WAIT).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=WAIT)
        log = Path(sandbox_config.log_directory) / "term.log"
        deadline = time.monotonic() + WAIT
        while "is-a-tty" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
            time.sleep(0.2)
        assert "/dev/pts/" in log.read_text()
        rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10), timeout=WAIT)
        rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=WAIT)
    finally:
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=WAIT)
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=WAIT)
