"""Namespaces made inside the sandbox (sentry/syscalls/namespaces.py, sentry/userns.py).

* tests/namespaces/userns_rules.c: CLONE_NEWUSER and /proc/PID/uid_map, gid_map, setgroups
  with Linux's rules.  Not a conformance program: Linux refuses CLONE_NEWUSER to a chrooted
  process, so it runs natively without chroot (skipped where the host forbids user
  namespaces) and in the sandbox; both must pass.
* busybox `unshare -U/-r/-u/-p -f` in the sandbox prints what it prints natively (outside chroot,
  on this host's Linux): the lines are written below.
* util-linux `unshare -Urpf` in the Debian rootfs: pid 1, root, its exit status, and ps.
  (Natively in a chroot Linux refuses the user namespace; `--mount-proc` needs a mount
  namespace and mount(2), which the sandbox does not offer: EINVAL, said in the table.)
UTS and PID namespaces have conformance programs (tests/syscall-conformance/ns_uts.c, ns_pid.c).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from tests.debian import debian_rootfs  # noqa: F401  (fixture)
from tests.rootfs import make_bundle, make_busybox_rootfs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, "tests", "namespaces", "userns_rules.c")
TIMEOUT = 90

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

SCRIPT = """\
id -u; cat /proc/self/uid_map
unshare -Ur sh -c 'id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; \
echo 0 0 1 > /proc/self/uid_map 2>/dev/null || echo second-write-refused'
unshare -U sh -c 'id -u; wc -c < /proc/self/uid_map; cat /proc/self/setgroups'
unshare -Uru sh -c 'hostname inner; hostname'
hostname
unshare -Urpf sh -c 'echo $$ $PPID; id -u'
"""
# As Linux 6.x prints it (busybox 1.35, as root, not chrooted); the sandbox's hostname is runsc-py.
EXPECTED = """\
0
         0          0 4294967295
0
0
         0          0          1
         0          0          1
deny
second-write-refused
65534
0
allow
inner
runsc-py
1 0
0
"""


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ns-rootfs"))
    os.chmod(root, 0o755)                 # mktemp's 0700 would stop the programs' uid 65534 at /
    make_busybox_rootfs(root)
    out = os.path.join(root, "userns_rules")
    r = subprocess.run(["gcc", "-O1", "-static", "-Wall", "-Werror", "-o", out, SRC],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(root, "script.sh"), "w") as f:
        f.write(SCRIPT)
    return root


def _sandbox(root: str, tmp_path, args: list[str]) -> subprocess.CompletedProcess:
    bundle = str(tmp_path / "bundle")
    state = str(tmp_path / "state")
    os.makedirs(state)
    make_bundle(bundle, args, rootfs=root)
    cfg_path = os.path.join(bundle, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["root"]["readonly"] = True           # the Debian rootfs is a shared cache
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    cid = f"ns-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, PYTHONPATH=REPO)
    try:
        return subprocess.run([shutil.which("python3") or "python3", "-m", "runsc_py.cli", "--root", state,
                               "run", "--bundle", bundle, cid],
                              capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=bundle)
    finally:
        subprocess.run([shutil.which("python3") or "python3", "-m", "runsc_py.cli", "--root", state,
                        "delete", "--force", cid], capture_output=True, env=env)


def test_userns_rules_native(rootfs):
    probe = subprocess.run(["unshare", "-U", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("this host forbids user namespaces")
    # Run from a directory uid 65534 may search (pytest's are 0700): one check re-executes it.
    d = tempfile.mkdtemp(prefix="userns-rules-")
    try:
        os.chmod(d, 0o755)
        exe = os.path.join(d, "userns_rules")
        shutil.copy2(os.path.join(rootfs, "userns_rules"), exe)
        r = subprocess.run([exe], capture_output=True, text=True, timeout=TIMEOUT, cwd="/")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert r.returncode == 0 and "not ok" not in r.stdout, r.stdout + r.stderr


def test_userns_rules_sandbox(rootfs, tmp_path):
    r = _sandbox(rootfs, tmp_path, ["/userns_rules"])
    assert r.returncode == 0 and "not ok" not in r.stdout, r.stdout + r.stderr


def test_busybox_unshare_user_and_uts(rootfs, tmp_path):
    r = _sandbox(rootfs, tmp_path, ["/bin/sh", "/script.sh"])
    assert r.stdout == EXPECTED, r.stdout + r.stderr


def test_debian_unshare_user_pid(debian_rootfs, tmp_path):  # noqa: F811
    # (No ps: without --mount-proc, /proc is the sandbox's, and procps looks itself up there by
    # its namespace pid -- natively too.)
    script = "unshare -Urpf sh -c 'echo $$ $PPID; id -u; id >/dev/null; echo id=$?; exit 3'; echo rc=$?"
    r = _sandbox(debian_rootfs, tmp_path, ["/bin/sh", "-c", script])
    assert r.stdout == "1 0\n0\nid=0\nrc=3\n", r.stdout + r.stderr
