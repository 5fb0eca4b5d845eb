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


# ------------------------------------------------------------------ a pod's tenants

@pytest.fixture(scope="module")
def tenants(pod: Pod) -> Pod:
    """Members A and B of the pod, each sleeping; B's rootfs holds /marker = B-SECRET."""
    pod.member("ten-b", "exec sleep 99999", marker="B-SECRET")
    pod.member("ten-a", "exec sleep 88888", marker="A-OWN")
    return pod


def _b_pid_script(body: str) -> str:
    """sh in A: $B is the pid of B's init (found by its cmdline in the pod's shared /proc)."""
    return ("B=; for d in /proc/[0-9]*; do [ \"$(tr '\\0' ' ' < $d/cmdline 2>/dev/null)\" = 'sleep 99999 ' ] "
            "&& B=${d#/proc/}; done; [ -n \"$B\" ] || { echo no-B; exit 3; }; " + body)


def test_pod_member_cannot_reach_another_by_path(tenants: Pod) -> None:
    """`..` chains from A's root, an absolute symlink aimed at B's host path, and the host path of
    B's rootfs itself: all stay in A (A's own /marker, never B's)."""
    host_b = str(tenants.tmp / "r-ten-b")
    script = ("cat /marker; cat /../../../../marker; cat /../../r-ten-b/marker; "
              f"cat {host_b}/marker; ln -s {host_b} /tmp/lb && cat /tmp/lb/marker; "
              "ln -s ../../../../../.. /tmp/up && cat /tmp/up/r-ten-b/marker; echo done")
    p = tenants.exec("ten-a", script)
    assert "B-SECRET" not in p.stdout, p.stdout
    assert p.stdout.count("A-OWN") == 2 and "done" in p.stdout, p.stdout


def test_pod_proc_pid_root_of_another_member_as_linux(tenants: Pod) -> None:
    """A shared PID namespace (the pod's, as with shareProcessNamespace): root reading
    /proc/B/root lands in B's root, as Linux's ptrace_may_access allows it -- and no further
    (`..` from there is B's root again)."""
    p = tenants.exec("ten-a", _b_pid_script("cat /proc/$B/root/marker; cat /proc/$B/root/../../../marker; "
                                            "readlink /proc/$B/root; echo done"))
    assert p.stdout.split() == ["B-SECRET", "B-SECRET", "/", "done"] or \
        p.stdout.split()[:2] == ["B-SECRET", "B-SECRET"], p.stdout
    assert str(tenants.tmp) not in p.stdout, p.stdout


def test_pod_proc_pid_root_refused_to_an_unprivileged_tenant(tenants: Pod) -> None:
    """uid 1000 in A following /proc/B/root, cwd or exe of B's root-owned init: EACCES, as
    Linux's proc_fd_access_allowed (PTRACE_MODE_READ_FSCREDS: another uid, no CAP_SYS_PTRACE)."""
    p = tenants.exec("ten-a", _b_pid_script("cat /proc/$B/root/marker; cat /proc/$B/cwd/marker; "
                                            "readlink /proc/$B/root; readlink /proc/$B/exe; ls /proc/$B/fd; "
                                            "echo done"), user="1000:1000")
    assert "B-SECRET" not in p.stdout, p.stdout
    assert p.stdout.count("Permission denied") >= 3 and "done" in p.stdout, p.stdout
