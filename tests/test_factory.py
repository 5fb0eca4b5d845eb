"""`runsc-py factory`: warm starts that must behave exactly like cold ones.

The front end (`python3 -m runsc_py.front`, what the installed `runsc-py`
launcher runs) hands `run` and the short lifecycle commands to a factory
when one serves the --root; these tests drive it as a user would and check
that output, stdin, exit status, signals, the death of the caller and the
refusals are those of a cold run.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rootfs import make_bundle
from tests.test_cli import REPO, repo_env
from tests.test_security import _wait_for

TIMEOUT = 60


def front(root: Path, *args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runsc_py.front", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env or repo_env(), **kw)


def ppid_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    return _wait_for(predicate, timeout, what)


@pytest.fixture
def factory(tmp_path: Path):
    root = tmp_path / "root"
    p = front(root, "factory", "start")
    assert p.returncode == 0, p.stderr
    pid = int((root / ".factory" / "pid").read_text())
    yield root, pid
    front(root, "factory", "stop")
    wait_for(lambda: not alive(pid), what="the factory to stop")


def state_pid(root: Path, cid: str) -> int | None:
    import json
    p = front(root, "state", cid)
    return json.loads(p.stdout)["pid"] if p.returncode == 0 else None


def test_factory_start_status_stop(tmp_path: Path) -> None:
    root = tmp_path / "root"
    p = front(root, "factory", "start")
    assert p.returncode == 0 and "factory running, pid" in p.stdout, p.stderr
    pid = int((root / ".factory" / "pid").read_text())
    assert alive(pid)
    assert front(root, "factory", "start").stdout == p.stdout        # idempotent: the same factory
    assert '"running": true' in front(root, "factory", "status").stdout
    assert oct((root / ".factory").stat().st_mode & 0o777) == "0o700"
    assert oct((root / ".factory" / "sock").stat().st_mode & 0o777) == "0o600"
    assert front(root, "list", "-q").stdout == ""                     # not a container
    assert front(root, "factory", "stop").returncode == 0
    wait_for(lambda: not alive(pid), what="the factory to stop")
    assert not (root / ".factory" / "sock").exists()
    p = front(root, "factory", "stop")
    assert p.returncode == 1 and "no factory" in p.stderr


def test_run_through_the_factory_is_a_cold_run(factory, tmp_path: Path) -> None:
    root, fpid = factory
    bundle = make_bundle(str(tmp_path / "b"), ["/bin/sh", "-c",
                         'echo out $FOO; echo err >&2; read x; echo got "$x"; exit 3'],
                         env=["PATH=/bin", "FOO=bar"])
    runs = []
    for factory_env in ("1", "0"):
        env = dict(repo_env(), RUNSC_PY_FACTORY=factory_env)
        runs.append(front(root, "run", "-b", bundle, f"c{factory_env}", input="line\n", env=env))
    warm, cold = runs
    assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    assert warm.returncode == 3 and warm.stdout == "out bar\ngot line\n" and warm.stderr == "err\n"
    assert front(root, "list", "-q").stdout == ""                    # run removed its state


def test_the_factory_really_runs_the_command_and_the_caller_relays_signals(factory, tmp_path: Path) -> None:
    root, fpid = factory
    bundle = make_bundle(str(tmp_path / "b"), ["/bin/sh", "-c",
                         "trap 'echo term; exit 7' TERM; echo ready; while :; do sleep 0.05; done"])
    proc = subprocess.Popen([sys.executable, "-m", "runsc_py.front", "--root", str(root), "run", "-b", bundle,
                             "sig"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=repo_env())
    try:
        assert proc.stdout.readline() == "ready\n"
        pid = wait_for(lambda: state_pid(root, "sig"), what="the container's state")
        assert ppid_of(pid) == fpid                  # forked by the factory, not by the caller
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert (proc.returncode, out) == (7, "term\n"), err


def test_killing_the_caller_kills_its_sandbox(factory, tmp_path: Path) -> None:
    root, fpid = factory
    bundle = make_bundle(str(tmp_path / "b"), ["/bin/sh", "-c", "echo ready; while :; do sleep 1; done"])
    proc = subprocess.Popen([sys.executable, "-m", "runsc_py.front", "--root", str(root), "run", "-b", bundle,
                             "orphan"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=repo_env())
    assert proc.stdout.readline() == "ready\n"
    pid = wait_for(lambda: state_pid(root, "orphan"), what="the container's state")
    sandbox = [int(p) for p in os.listdir("/proc") if p.isdigit() and alive(int(p))
               and int(p) != pid and _descends(int(p), pid)]
    assert sandbox, "the Sentry and its stubs should run under the command"
    proc.kill()
    proc.wait()
    for p in [pid, *sandbox]:
        wait_for(lambda p=p: not alive(p), what=f"process {p} to go with its caller")
    assert alive(fpid)


def _descends(pid: int, ancestor: int) -> bool:
    try:
        while pid > 1:
            pid = ppid_of(pid)
            if pid == ancestor:
                return True
    except OSError:
        return False
    return False


def test_lifecycle_commands_through_the_factory(factory, tmp_path: Path) -> None:
    root, _ = factory
    bundle = make_bundle(str(tmp_path / "b"), ["/bin/sh", "-c", "exit 5"])
    env = dict(repo_env())
    create = subprocess.run([sys.executable, "-m", "runsc_py.front", "--root", str(root), "create", "-b", bundle,
                             "lc"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            timeout=TIMEOUT, env=env)      # the container keeps create's stdio
    assert create.returncode == 0
    assert front(root, "start", "lc").returncode == 0
    p = front(root, "wait", "lc")
    assert p.returncode == 5 and '"exitStatus": 5' in p.stdout
    p = front(root, "start", "lc")
    assert p.returncode != 0 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert front(root, "delete", "lc").returncode == 0
    p = front(root, "state", "lc")
    assert p.returncode == 1 and p.stderr.strip() == "runsc-py: container does not exist"


def test_malformed_and_foreign_requests_are_refused_and_the_factory_keeps_serving(factory, tmp_path: Path) -> None:
    root, fpid = factory
    path = str(root / ".factory" / "sock")
    for payload, fds in ((b"garbage", 3), (b"RUNSC-PY-FACTORY 1\0relative\0022\0001\0state", 3),
                         (b"RUNSC-PY-FACTORY 1\0/\0022\0009\0state", 3), (b"RUNSC-PY-FACTORY 1\0/\0022\0000", 1),
                         (b"\xff" * 70000, 0)):
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.connect(path)
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(os.dup(0).to_bytes(4, sys.byteorder)) * fds)] \
                if fds else []
            s.sendmsg([payload], anc)
            assert s.recv(256).startswith(b"NO "), payload[:40]
    assert alive(fpid)
    assert front(root, "list", "-q").returncode == 0


def test_a_changed_tree_stops_the_factory_and_the_command_runs_cold(factory, tmp_path: Path) -> None:
    root, fpid = factory
    victim = REPO / "runsc_py" / "front.py"
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        p = front(root, "list", "-q")
        assert p.returncode == 0 and p.stdout == ""
        wait_for(lambda: not alive(fpid), what="the stale factory to stop")
        p = front(root, "factory", "start")              # a fresh one for the changed tree
        assert p.returncode == 0, p.stderr
        fresh = int((root / ".factory" / "pid").read_text())
        assert fresh != fpid and alive(fresh)
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
        p = front(root, "factory", "start")              # start replaces a factory running older code
        assert p.returncode == 0, p.stderr
        newest = int((root / ".factory" / "pid").read_text())
        assert newest != fresh and not alive(fresh) and alive(newest)
    finally:
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_without_a_factory_the_front_runs_the_command_itself(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / ".factory").mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.bind(str(root / ".factory" / "sock"))           # a stale socket: nobody listens
    p = front(root, "state", "nosuch")
    assert p.returncode == 1 and p.stderr.strip() == "runsc-py: container does not exist"


SHIM = r"""
import ctypes, os, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)          # PR_SET_CHILD_SUBREAPER, as containerd's shim is
front, root, bundle, pid_file = sys.argv[1:5]
base = [sys.executable, "-m", "runsc_py.front", "--root", root]
null = subprocess.DEVNULL
assert subprocess.run(base + ["create", "-b", bundle, "--pid-file", pid_file, "shimmed"],
                      stdin=null, stdout=null, stderr=null).returncode == 0
pid = int(open(pid_file).read())
print("ppid", int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) == os.getpid(), flush=True)
assert subprocess.run(base + ["start", "shimmed"]).returncode == 0
got, status = os.waitpid(pid, 0)                   # what the shim's reaper does
print("status", os.waitstatus_to_exitcode(status), flush=True)
subprocess.run(base + ["delete", "shimmed"])
"""


def test_create_through_the_factory_leaves_a_proxy_the_engine_reaps(factory, tmp_path: Path) -> None:
    """The pid file names the caller's child (adopted by the shim, a subreaper), which exits with the
    container's status; the Sentry process itself was forked by the factory."""
    root, fpid = factory
    bundle = make_bundle(str(tmp_path / "b"), ["/bin/sh", "-c", "exit 6"])
    p = subprocess.run([sys.executable, "-c", SHIM, "front", str(root), bundle, str(tmp_path / "pid")],
                       capture_output=True, text=True, timeout=TIMEOUT, env=repo_env(), cwd=str(REPO))
    assert p.stdout == "ppid True\nstatus 6\n", p.stderr
    log = (root / ".factory" / "log").read_text()
    assert "served: create " in log and "served: start " in log


def test_killing_the_proxy_kills_the_sandbox(factory, tmp_path: Path) -> None:
    root, fpid = factory
    bundle = make_bundle(str(tmp_path / "b"), ["/bin/sh", "-c", "sleep 100"])
    p = subprocess.run([sys.executable, "-m", "runsc_py.front", "--root", str(root), "create", "-b", bundle,
                        "--pid-file", str(tmp_path / "pid"), "victim"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT, env=repo_env())
    assert p.returncode == 0
    proxy = int((tmp_path / "pid").read_text())
    sentry = state_pid(root, "victim")
    assert sentry != proxy and ppid_of(sentry) == fpid         # adopted by the factory
    assert front(root, "start", "victim").returncode == 0
    sandbox = wait_for(lambda: [int(q) for q in os.listdir("/proc") if q.isdigit() and alive(int(q))
                                and _descends(int(q), sentry)], what="the sandbox's processes")
    os.kill(proxy, signal.SIGKILL)
    for q in [sentry, *sandbox]:
        wait_for(lambda q=q: not alive(q), what=f"process {q} to go with the proxy")
    assert '"status": "stopped"' in front(root, "state", "victim").stdout
    assert front(root, "delete", "victim").returncode == 0


def test_exec_through_the_factory(factory, tmp_path: Path) -> None:
    """exec: without --detach the status comes back; with it, the pid file names the caller's child,
    which a subreaper reaps with the exec'd process's status."""
    root, fpid = factory
    bundle = make_bundle(str(tmp_path / "b"), ["/bin/sh", "-c", "sleep 100"])
    p = subprocess.run([sys.executable, "-m", "runsc_py.front", "--root", str(root), "run", "-d", "-b", bundle,
                        "ex"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=TIMEOUT, env=repo_env())
    assert p.returncode == 0
    try:
        p = front(root, "exec", "ex", "sh", "-c", "echo in; exit 4")
        assert (p.returncode, p.stdout) == (4, "in\n"), p.stderr
        script = SHIM_EXEC.replace("ROOT", repr(str(root))).replace("PIDFILE", repr(str(tmp_path / "exec.pid")))
        p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT,
                           env=repo_env(), cwd=str(REPO))
        assert p.stdout == "ppid True\nstatus 9\n", p.stderr
        assert "served: exec " in (root / ".factory" / "log").read_text()
    finally:
        front(root, "delete", "--force", "ex")


SHIM_EXEC = r"""
import ctypes, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)          # PR_SET_CHILD_SUBREAPER, as containerd's shim is
null = subprocess.DEVNULL
p = subprocess.run([sys.executable, "-m", "runsc_py.front", "--root", ROOT, "exec", "--detach", "--pid-file",
                    PIDFILE, "ex", "sh", "-c", "sleep 0.2; exit 9"], stdin=null, stdout=null, stderr=null)
assert p.returncode == 0
pid = int(open(PIDFILE).read())
print("ppid", int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) == os.getpid(), flush=True)
got, status = os.waitpid(pid, 0)
print("status", os.waitstatus_to_exitcode(status), flush=True)
"""


def test_do_through_the_factory_sees_the_callers_environment_and_directory(factory, tmp_path: Path) -> None:
    root, fpid = factory
    env = dict(repo_env(), RUNSC_PY_DO_MARK="warm value", PATH=os.environ.get("PATH", "/usr/bin:/bin"))
    outs = []
    for use in ("1", "0"):
        p = front(root, "do", "--", "/bin/sh", "-c", 'echo "$RUNSC_PY_DO_MARK"; pwd; exit 3',
                  env=dict(env, RUNSC_PY_FACTORY=use), cwd=str(tmp_path))
        outs.append((p.returncode, p.stdout, p.stderr))
    assert outs[0] == outs[1] == (3, f"warm value\n{tmp_path}\n", "")
    assert "served: do " in (root / ".factory" / "log").read_text()


def test_the_first_command_starts_a_factory_that_serves_the_next_and_exits_when_idle(tmp_path: Path) -> None:
    root = tmp_path / "root"
    bundle = make_bundle(str(tmp_path / "b"), ["/bin/sh", "-c", "echo hi"], env=["PATH=/bin"])
    env = dict(repo_env(), RUNSC_PY_FACTORY_IDLE="3")
    env.pop("RUNSC_PY_FACTORY", None)
    first = front(root, "run", "-b", bundle, "c1", env=env)
    assert (first.returncode, first.stdout) == (0, "hi\n"), first.stderr
    wait_for(lambda: (root / ".factory" / "sock").exists(), what="the factory to start")
    pid = int((root / ".factory" / "pid").read_text())
    second = front(root, "run", "-b", bundle, "c2", env=env)
    assert (second.returncode, second.stdout, second.stderr) == (first.returncode, first.stdout, first.stderr)
    assert "served: run" in (root / ".factory" / "log").read_text()       # the second one was warm
    wait_for(lambda: not alive(pid), timeout=30, what="the idle factory to exit")
    assert not (root / ".factory" / "sock").exists()


def test_no_factory_is_started_with_RUNSC_PY_FACTORY_0_or_for_other_commands(tmp_path: Path) -> None:
    root = tmp_path / "root"
    bundle = make_bundle(str(tmp_path / "b"), ["/bin/true"], env=["PATH=/bin"])
    assert front(root, "run", "-b", bundle, "c1", env=dict(repo_env(), RUNSC_PY_FACTORY="0")).returncode == 0
    assert front(root, "list", "-q").returncode == 0
    assert not (root / ".factory" / "sock").exists()


def test_a_factory_whose_root_is_removed_exits(tmp_path: Path) -> None:
    import shutil
    root = tmp_path / "root"
    bundle = make_bundle(str(tmp_path / "b"), ["/bin/true"], env=["PATH=/bin"])
    env = dict(repo_env(), RUNSC_PY_FACTORY_IDLE="600")
    env.pop("RUNSC_PY_FACTORY", None)
    assert front(root, "run", "-b", bundle, "c1", env=env).returncode == 0
    wait_for(lambda: (root / ".factory" / "pid").exists(), what="the factory to start")
    pid = int((root / ".factory" / "pid").read_text())
    shutil.rmtree(root)
    wait_for(lambda: not alive(pid), timeout=30, what="the factory of a removed root to exit")


def test_an_auto_started_factory_is_one_status_and_stop_know(tmp_path: Path) -> None:
    root = tmp_path / "root"
    bundle = make_bundle(str(tmp_path / "b"), ["/bin/true"], env=["PATH=/bin"])
    env = dict(repo_env(), RUNSC_PY_FACTORY_IDLE="600")
    env.pop("RUNSC_PY_FACTORY", None)
    assert front(root, "run", "-b", bundle, "c1", env=env).returncode == 0
    wait_for(lambda: (root / ".factory" / "sock").exists(), what="the factory to start")
    assert '"running": true' in front(root, "factory", "status").stdout
    pid = int((root / ".factory" / "pid").read_text())
    assert front(root, "factory", "stop").returncode == 0
    wait_for(lambda: not alive(pid), what="the factory to stop")
