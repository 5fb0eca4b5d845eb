"""System V shared memory seen by real tools: util-linux `ipcmk -M`, `ipcs -m` and `ipcrm -m` in
the Debian rootfs print in the sandbox what they print natively (in a chroot of the same rootfs,
in a new IPC namespace so the host's segments do not show).  They read /proc/sysvipc/shm and
/proc/sys/kernel/shm*, and call shmctl (IPC_STAT, SHM_STAT, IPC_INFO, SHM_INFO).  Keys (random)
and dates are masked; the rest must match byte for byte.

The syscalls' own semantics are tests/syscall-conformance/ipc_shm.c.
"""
from __future__ import annotations

import os
import re

import pytest

from tests import test_sysvipc as base
from tests.debian import debian_overlay, debian_rootfs  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

SCRIPT = """\
ipcmk -M 4096; ipcmk -M 10000 -p 0600; ipcs -m; ipcs -m -i 0; ipcs -m -u; ipcs -m -l; ipcs -m -c
ipcrm -m 0; ipcs -m; ipcrm -m 0; echo rc=$?
"""


def _mask(text: str) -> str:
    """test_sysvipc's mask, and the creator's and last user's pids (the native run has no PID
    namespace of its own)."""
    return re.sub(r"\b(cpid|lpid)=\d+", r"\1=PID", base._mask(text))


def test_ipcs_shm_as_natively(debian_rootfs, debian_overlay, tmp_path, monkeypatch):  # noqa: F811
    if not os.path.exists(os.path.join(debian_rootfs, "usr/bin/ipcs")):
        pytest.skip("no ipcs in the Debian rootfs")
    monkeypatch.setattr(base, "SCRIPT", SCRIPT)      # the same runs as test_sysvipc, this script
    native = base._native(debian_overlay)
    assert native.returncode == 0, native.stderr
    sandbox = base._sandbox(debian_rootfs, tmp_path)
    assert sandbox.returncode == 0, sandbox.stderr
    assert "rc=1" in native.stdout                      # the script ran to its end
    assert "0x" in native.stdout and "4096" in native.stdout
    assert _mask(sandbox.stdout) == _mask(native.stdout), sandbox.stdout + sandbox.stderr
    assert _mask(sandbox.stderr) == _mask(native.stderr)
