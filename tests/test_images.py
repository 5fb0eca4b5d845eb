"""Real images: a Debian bookworm rootfs under `runsc-py run` against the same rootfs under chroot.

Each command runs twice, in fresh private copies (overlayfs) of the cached
Debian rootfs (tests/debian.py), with the same argv and environment:

* natively: `unshare --pid --fork --mount-proc=ROOT/proc chroot ROOT CMD...`
  (its own PID namespace, so `ps aux` sees only its own processes, as a
  container would);
* in the sandbox: `runsc-py run` on a bundle whose root.path is the copy, with
  proc at /proc and tmpfs at /tmp.

Both must give the same stdout and exit status (for `ps aux` and `date`: the
same shape).  On a difference the message shows both sides and the sandbox's
stderr.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass

import pytest

from tests.debian import debian_rootfs, private_copy  # noqa: F401  (fixture)
from tests.rootfs import make_bundle

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C"}
MOUNTS = [{"destination": "/proc", "type": "proc", "source": "proc"},
          {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}]


@dataclass
class Result:
    side: str
    cmd: list[str]
    status: int | None
    stdout: str
    stderr: str

    def show(self) -> str:
        err = "\n".join(self.stderr.strip().splitlines()[-15:])
        return (f"--- {self.side}: exit {self.status}\n  command: {shlex.join(self.cmd)}\n"
                f"  stdout:\n{_indent(self.stdout)}\n  stderr (tail):\n{_indent(err)}")


def _indent(s: str) -> str:
    return "\n".join("    " + ln for ln in s.splitlines()[:60])


def _communicate(side: str, cmd: list[str], cleanup=lambda: None, **kw) -> Result:
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, text=True, errors="replace", **kw)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
        return Result(side, cmd, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        cleanup()
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            out, err = "", "(output lost)"
        return Result(side, cmd, None, out, err + f"\n(timed out after {TIMEOUT}s)")


def run_chroot(root: str, args: list[str]) -> Result:
    cmd = ["unshare", "--pid", "--fork", f"--mount-proc={root}/proc", "chroot", root,
           "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in ENV.items()), *args]
    return _communicate("chroot", cmd, env=dict(ENV), cwd="/")


def run_sandbox(root: str, args: list[str], tmp: str, extra_flags: tuple[str, ...] = ()) -> Result:
    bundle = os.path.join(tmp, "bundle")
    state = os.path.join(tmp, "state")
    os.makedirs(state, exist_ok=True)
    make_bundle(bundle, args, rootfs=root, env=[f"{k}={v}" for k, v in ENV.items()], mounts=MOUNTS)
    cid = f"images-{uuid.uuid4().hex[:8]}"
    runsc = [sys.executable, "-m", "runsc_py.cli", "--root", state, *extra_flags]
    env = dict(os.environ, PYTHONPATH=REPO)

    def force_delete() -> None:
        subprocess.run([*runsc, "delete", "--force", cid], env=env, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=60, check=False)

    try:
        return _communicate("sandbox", [*runsc, "run", "--bundle", bundle, cid], cleanup=force_delete,
                            env=env, cwd=bundle)
    finally:
        force_delete()


def both(debian_rootfs: str, tmp_path, args: list[str]) -> tuple[Result, Result]:  # noqa: F811
    """Run `args` natively and in the sandbox, each in its own private copy of the rootfs."""
    with private_copy(debian_rootfs, str(tmp_path / "native")) as root:
        native = run_chroot(root, args)
    with private_copy(debian_rootfs, str(tmp_path / "sandbox-root")) as root:
        sandbox = run_sandbox(root, args, str(tmp_path / "sandbox"))
    return native, sandbox


def assert_same(native: Result, sandbox: Result) -> None:
    assert native.status is not None, f"the native run timed out:\n{native.show()}"
    same = (native.stdout, native.status) == (sandbox.stdout, sandbox.status)
    assert same, f"the sandbox differs from chroot:\n{sandbox.show()}\n{native.show()}"


# Each gives the same stdout and exit status in the sandbox as under chroot.
SAME = {
    "bash-pipeline": ["bash", "-c", "for i in $(seq 1 50); do echo $i; done | sort -n | tail -1"],
    "ls-usr-bin": ["bash", "-c", "ls -la /usr/bin | wc -l"],
    "python3-imports": ["python3", "-c", "import json, hashlib, sqlite3, subprocess, threading; "
                        "print(subprocess.run(['echo','hi'], capture_output=True).stdout)"],
    "python3-compileall": ["python3", "-m", "compileall", "-q", "/usr/lib/python3.11/json"],
    "sqlite3": ["sqlite3", "/tmp/t.db", "create table t(x); insert into t values (1),(2); select sum(x) from t;"],
    "dpkg-l": ["bash", "-c", "dpkg -l | wc -l"],
    "apt-get-version": ["apt-get", "--version"],
    "sha256sum": ["sha256sum", "/usr/bin/python3.11"],
    # The loader: the interpreter run directly; a PIE (ls) and a non-PIE static binary (busybox).
    "ld-so-direct": ["/lib64/ld-linux-x86-64.so.2", "/bin/ls", "/"],
    "pie": ["bash", "-c", "file=$(od -An -tx1 -j16 -N1 /bin/ls); echo type$file; /bin/ls /"],
    "non-pie": ["bash", "-c", "echo type$(od -An -tx1 -j16 -N1 /bin/busybox) $(od -An -tx1 -j16 -N1 /usr/bin/python3.11); "
                "/bin/busybox echo static; /usr/bin/python3.11 -c 'print(1+1)'"],
    # A #! chain: a script whose interpreter is a script, with an interpreter argument.
    "shebang-chain": ["bash", "-c",
                      "printf '#!/bin/bash -e\\necho inner \"$@\"\\n' > /tmp/inner; "
                      "printf '#!/tmp/inner -x\\necho never\\n' > /tmp/outer; "
                      "printf '#!/bin/sh\\necho direct $0\\n' > /tmp/direct; "
                      "chmod +x /tmp/inner /tmp/outer /tmp/direct; /tmp/direct; /tmp/outer a b; echo status $?"],
}


@pytest.mark.parametrize("name", list(SAME))
def test_same_as_chroot(name, debian_rootfs, tmp_path):  # noqa: F811
    native, sandbox = both(debian_rootfs, tmp_path, SAME[name])
    assert_same(native, sandbox)


def test_compileall_writes_the_same_files(debian_rootfs, tmp_path):  # noqa: F811
    """compileall in the sandbox writes the same .pyc files as natively (and they import)."""
    args = ["bash", "-c", "python3 -m compileall -q /usr/lib/python3.11/json; echo $?; "
            "ls /usr/lib/python3.11/json/__pycache__ | sort; python3 -c 'import json; print(json.dumps([1]))'"]
    native, sandbox = both(debian_rootfs, tmp_path, args)
    assert_same(native, sandbox)


def _ps_shape(out: str) -> tuple[str, list[tuple[str, str]]]:
    lines = out.splitlines()
    header = " ".join(lines[0].split()) if lines else ""
    rows = []
    for ln in lines[1:]:
        f = ln.split(None, 10)
        if len(f) == 11:
            rows.append((f[1], f[10]))  # PID, COMMAND
    return header, rows


def test_ps_aux(debian_rootfs, tmp_path):  # noqa: F811
    """`ps aux` has the same header, and lists only the sandbox's own processes, PID 1 first."""
    args = ["bash", "-c", "ps aux; echo status $?"]
    native, sandbox = both(debian_rootfs, tmp_path, args)
    assert native.status == 0 and sandbox.status == 0, f"{sandbox.show()}\n{native.show()}"
    n_head, n_rows = _ps_shape(native.stdout)
    s_head, s_rows = _ps_shape(sandbox.stdout)
    detail = f"\n{sandbox.show()}\n{native.show()}"
    assert s_head == n_head, f"header differs{detail}"
    assert sandbox.stdout.rstrip().endswith("status 0"), detail
    pids = [p for p, _ in s_rows]
    cmds = [c for _, c in s_rows]
    assert pids and pids[0] == "1", f"PID 1 is not listed first{detail}"
    assert len(s_rows) == len(n_rows) == 2, f"expected exactly bash and ps{detail}"
    assert cmds[0].startswith("bash -c ps aux") and cmds[1] == "ps aux", f"unexpected processes{detail}"


DATE_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                     r"[ 0-3]\d [0-2]\d:[0-5]\d:[0-6]\d [A-Z]+ \d{4}$")


def test_date(debian_rootfs, tmp_path):  # noqa: F811
    """`date` prints the same format (and a time within a minute of the native one)."""
    args = ["bash", "-c", "date; date +%s"]
    native, sandbox = both(debian_rootfs, tmp_path, args)
    detail = f"\n{sandbox.show()}\n{native.show()}"
    assert native.status == sandbox.status == 0, detail
    n_lines, s_lines = native.stdout.splitlines(), sandbox.stdout.splitlines()
    assert len(s_lines) == 2 and DATE_RE.match(s_lines[0]), f"date format{detail}"
    assert DATE_RE.match(n_lines[0])
    assert s_lines[0].split()[4] == n_lines[0].split()[4], f"time zone differs{detail}"
    assert abs(int(s_lines[1]) - int(n_lines[1])) < 120, f"clock differs{detail}"
