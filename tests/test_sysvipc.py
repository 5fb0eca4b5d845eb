"""System V IPC seen by real tools: util-linux `ipcmk`, `ipcs` and `ipcrm` in the Debian rootfs
print in the sandbox what they print natively (in a chroot of the same rootfs, in a new IPC
namespace so the host's objects do not show).  They read /proc/sysvipc/msg and sem,
/proc/sys/kernel/msg* and sem, and call msgctl/semctl (IPC_STAT, SEM_STAT, IPC_INFO, MSG_INFO,
SEM_INFO, GETALL...).  Keys (random) and dates are masked; the rest must match byte for byte.
Shared memory is left out (shmget is ENOSYS in the Sentry).

The syscalls' own semantics are tests/syscall-conformance/ipc_msg.c and ipc_sem.c.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid

import pytest

from tests.debian import debian_overlay, debian_rootfs  # noqa: F401  (fixtures)
from tests.rootfs import make_bundle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 120

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

SCRIPT = """\
ipcmk -Q; ipcmk -Q -p 0600; ipcmk -S 3; ipcs -q; ipcs -s; ipcs -q -i 1; ipcs -s -i 0
ipcs -q -u; ipcs -s -u; ipcs -q -l; ipcs -s -l; ipcs -q -p; ipcs -s -c
ipcrm -q 0; ipcrm -s 0; ipcs -q; ipcs -s; ipcrm -q 0; echo rc=$?
"""


def _mask(text: str) -> str:
    text = re.sub(r"0x[0-9a-f]{8}", "KEY", text)
    text = re.sub(r"(\w{3} )?\w{3} +\d+ \d\d:\d\d:\d\d( \d{4})?", "DATE", text)
    return text


def _native(root: str) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-i", "-m", f"--mount-proc={root}/proc", "chroot", root,
                           "/bin/sh", "-c", SCRIPT], capture_output=True, text=True, timeout=TIMEOUT)


def _sandbox(root: str, tmp_path) -> subprocess.CompletedProcess:
    bundle = str(tmp_path / "bundle")
    state = str(tmp_path / "state")
    os.makedirs(state)
    make_bundle(bundle, ["/bin/sh", "-c", SCRIPT], rootfs=root)
    cfg_path = os.path.join(bundle, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["root"]["readonly"] = True           # the Debian rootfs is a shared cache
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    cid = f"ipc-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, PYTHONPATH=REPO)
    py = shutil.which("python3") or "python3"
    try:
        return subprocess.run([py, "-m", "runsc_py.cli", "--root", state, "run", "--bundle", bundle, cid],
                              capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=bundle)
    finally:
        subprocess.run([py, "-m", "runsc_py.cli", "--root", state, "delete", "--force", cid],
                       capture_output=True, env=env)


def test_ipcs_as_natively(debian_rootfs, debian_overlay, tmp_path):  # noqa: F811
    if not os.path.exists(os.path.join(debian_rootfs, "usr/bin/ipcs")):
        pytest.skip("no ipcs in the Debian rootfs")
    native = _native(debian_overlay)
    assert native.returncode == 0, native.stderr
    sandbox = _sandbox(debian_rootfs, tmp_path)
    assert sandbox.returncode == 0, sandbox.stderr
    assert "rc=1" in native.stdout                      # the script ran to its end
    assert _mask(sandbox.stdout) == _mask(native.stdout), sandbox.stdout + sandbox.stderr
    assert _mask(sandbox.stderr) == _mask(native.stderr)
