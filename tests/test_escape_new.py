"""Escape tests for this session's features: a pod's tenants, its confined Sentry, the control channel.

Each test is an attacker's attempt (a tenant of a pod, a process inside a sandbox, a local
non-root user on the host) and the answer Linux (or gVisor) gives in the same place:

* pods (sentry/pod.py, runsc_py/pod.py): container A of a pod must not reach container B's
  rootfs by `..`, an absolute symlink or its own root; /proc/PID/root of B's process does lead
  into B's root, as in a Linux pod with a shared PID namespace (shareProcessNamespace), but
  only for a reader ptrace_may_access would allow (root; not uid 1000 reading root's process:
  EACCES, proc_fd_access_allowed) -- and never further than B's root;
* the confined Sentry: adding a member with a file bind mount makes no host path call
  (strace of the Sentry shows no path-taking call at all, refused or not);
* the control channel: the socket is 0600 root; a uid-1000 host user cannot connect; malformed
  and oversized requests get an error and the Sentry lives on; fs_* paths with `..` or host
  paths stay in the sandbox.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.rootfs import make_bundle, make_busybox_rootfs  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes run as root")

WAIT = 90
POD = "pod-esc"
TYPE, SID = "io.kubernetes.cri.container-type", "io.kubernetes.cri.sandbox-id"


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), RUNSC_PY_FACTORY="0")


def _cli(root: Path, *args: str, out: Path | None = None) -> subprocess.CompletedProcess:
    """runsc-py ARGS with output in a file (create's children keep a pipe open)."""
    out = out or root.parent / f"out-{time.monotonic_ns()}"
    with open(out, "w+") as o:
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), *args], stdout=o,
                           stderr=o, stdin=subprocess.DEVNULL, env=_env(), timeout=WAIT)
        o.seek(0)
        p.stdout = o.read()
    return p


def _children(pid: int) -> list[int]:
    got = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            got += [int(c) for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except OSError:
            pass
    return got


def _sentry_pid(root: Path, cid: str) -> int:
    """The confined Sentry: the monitor's (state's pid) child with a seccomp filter."""
    monitor = json.loads(_cli(root, "state", cid).stdout)["pid"]
    for c in _children(monitor):
        if "Seccomp:\t2" in open(f"/proc/{c}/status").read():
            return c
    raise AssertionError(f"no confined child of the monitor {monitor}")


class Pod:
    def __init__(self, tmp: Path) -> None:
        self.tmp, self.root = tmp, tmp / "state"
        self.n = 0
        pause = make_bundle(str(tmp / "pause"), ["sleep", "100000"], rootfs=make_busybox_rootfs(str(tmp / "r-pause")),
                            annotations={TYPE: "sandbox"})
        for args in (["create", "--bundle", pause, POD], ["start", POD]):
            p = _cli(self.root, *args)
            assert p.returncode == 0, p.stdout

    def member(self, cid: str, script: str, mounts: list | None = None, marker: str | None = None) -> Path:
        rootfs = Path(make_busybox_rootfs(str(self.tmp / f"r-{cid}")))
        if marker:
            (rootfs / "marker").write_text(marker + "\n")
        bundle = make_bundle(str(self.tmp / f"b-{cid}"), ["sh", "-c", script], rootfs=str(rootfs),
                             annotations={TYPE: "container", SID: POD},
                             mounts=[{"destination": "/proc", "type": "proc", "source": "proc"}] + (mounts or []))
        out = self.tmp / f"out-{cid}"
        for args in (["create", "--bundle", bundle, cid], ["start", cid]):
            p = _cli(self.root, *args, out=out if args[0] == "create" else None)
            assert p.returncode == 0, (args, p.stdout, out.read_text() if out.exists() else "")
        return out

    def exec(self, cid: str, script: str, user: str = "0:0") -> subprocess.CompletedProcess:
        return _cli(self.root, "exec", "--user", user, cid, "sh", "-c", script)

    def close(self) -> None:
        for cid in sorted(os.listdir(self.root), reverse=True) if self.root.exists() else ():
            if not cid.startswith("."):
                _cli(self.root, "delete", "--force", cid)


@pytest.fixture(scope="module")
def pod(tmp_path_factory) -> Pod:
    p = Pod(tmp_path_factory.mktemp("pod"))
    try:
        yield p
    finally:
        p.close()


def _wait_for(path: Path, text: str) -> str:
    deadline = time.monotonic() + WAIT
    while text not in (got := path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, got
        time.sleep(0.2)
    return got


# ------------------------------------------------------------------ the confined Sentry

def test_pod_member_file_bind_makes_no_host_path_call(pod: Pod) -> None:
    """The pod helper's find: mount_bind_file called os.path.realpath on the host source in the
    confined Sentry (refused by seccomp with EACCES: an attempt all the same).  The front resolves
    the source (runsc_py/pod.py), the member's builder uses it as given."""
    hosts = pod.tmp / "bind-src" / "hosts"
    hosts.parent.mkdir()
    hosts.write_text("10.9.9.9 from-the-bind\n")
    (hosts.parent / "sibling").write_text("SIBLING-CANARY\n")
    sentry = _sentry_pid(pod.root, POD)
    log = pod.tmp / "strace.log"
    st = subprocess.Popen(["strace", "-p", str(sentry), "-e", "trace=%file", "-o", str(log)],
                          stderr=subprocess.PIPE, text=True)
    try:
        assert "attached" in st.stderr.readline()
        out = pod.member("fbind", "cat /etc/hosts; cat /etc/sibling /etc/hosts/../sibling; echo end-of-member",
                         mounts=[{"destination": "/etc/hosts", "type": "bind", "source": str(hosts),
                                  "options": ["rbind", "ro"]}])
        got = _wait_for(out, "end-of-member")
    finally:
        st.send_signal(signal.SIGINT)
        st.wait(WAIT)
    assert "from-the-bind" in got and "SIBLING-CANARY" not in got, got
    calls = [ln for ln in log.read_text().splitlines() if "(" in ln and not ln.startswith(("---", "+++"))]
    # fstat() of a held descriptor is newfstatat(fd, "", AT_EMPTY_PATH): the only "file" call allowed.
    named = [ln for ln in calls if not (ln.startswith("newfstatat(") and '"", ' in ln and "AT_EMPTY_PATH" in ln)]
    assert named == [], named
