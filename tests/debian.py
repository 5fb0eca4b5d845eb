"""A Debian bookworm rootfs for the tests, built once with debootstrap and cached.

`debian_rootfs` (session scope) returns the path of a Debian bookworm minbase
rootfs with python3, sqlite3, busybox-static and procps, built by

    debootstrap --variant=minbase --include=python3,sqlite3,busybox-static,procps \
        bookworm DIR http://deb.debian.org/debian

into `.build/debian-rootfs` (ignored by git).  The build takes minutes, so it
happens once: the rootfs is built in a temporary sibling directory, the marker
file `.runsc-py-debian-rootfs.complete` is written into it, and only then is it
renamed into place -- an interrupted build never looks complete, and a
directory without the marker is rebuilt.  The test is skipped (with the reason)
only when debootstrap cannot run: not installed, not root, or no network.

The cache is read-only for the tests.  A test that writes (and every chroot
run, which may) uses `debian_overlay`: a fresh host overlayfs mount whose lower
layer is the cache and whose upper layer is in the test's tmp_path, so a test
sees a private copy for the price of a mount; where overlayfs cannot be
mounted, it falls back to a full copy (`cp -a`).

Usage in a test module:

    from tests.debian import debian_rootfs, debian_overlay  # noqa: F401  (fixtures)
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_DIR = os.path.join(REPO, ".build")
ROOTFS = os.path.join(BUILD_DIR, "debian-rootfs")
MARKER_NAME = ".runsc-py-debian-rootfs.complete"  # inside the rootfs: it moves with the rename
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
INCLUDE = "python3,sqlite3,busybox-static,procps"
BUILD_TIMEOUT = 1800  # seconds


def debootstrap_command(dest: str) -> list[str]:
    return ["debootstrap", "--variant=minbase", f"--include={INCLUDE}", SUITE, dest, MIRROR]


def marker(root: str) -> str:
    return os.path.join(root, MARKER_NAME)


def is_complete(root: str) -> bool:
    return os.path.isfile(marker(root))


def cannot_build_reason() -> str | None:
    """Why debootstrap cannot run here, or None if it can."""
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (apt-get install debootstrap)"
    if os.geteuid() != 0:
        return "debootstrap needs root"
    try:
        import socket
        socket.create_connection(("deb.debian.org", 80), timeout=10).close()
    except OSError as e:
        return f"no network: cannot reach deb.debian.org:80 ({e})"
    return None


def _umount_leftovers(root: str) -> None:
    """debootstrap mounts /proc and /sys inside the target; a killed run can leave them mounted."""
    try:
        with open("/proc/self/mounts") as f:
            points = [ln.split()[1] for ln in f]
    except OSError:
        return
    prefix = os.path.realpath(root) + "/"
    for p in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True, check=False)


def _remove(path: str) -> None:
    if os.path.lexists(path):
        _umount_leftovers(path)
        shutil.rmtree(path, ignore_errors=True)


def build_debian_rootfs(dest: str = ROOTFS, log=None) -> str:
    """Build the rootfs at `dest` unless a complete one is there; return dest.

    Raises RuntimeError with debootstrap's output tail if the build fails."""
    if is_complete(dest):
        return dest
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{dest}.building.{os.getpid()}.{int(time.time())}"
    _remove(tmp)
    logfile = tmp + ".log"
    started = time.monotonic()
    with open(logfile, "w") as out:
        try:
            proc = subprocess.run(debootstrap_command(tmp), stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT, check=False)
            status = proc.returncode
        except subprocess.TimeoutExpired:
            status = None
    _umount_leftovers(tmp)
    if status != 0 or not os.path.exists(os.path.join(tmp, "usr/bin/python3")):
        with open(logfile, errors="replace") as f:
            tail = "".join(f.readlines()[-20:])
        _remove(tmp)
        what = "timed out" if status is None else f"exited {status}"
        raise RuntimeError(f"debootstrap {what} (log {logfile}):\n{tail}")
    with open(marker(tmp), "w") as f:
        f.write(f"{' '.join(debootstrap_command(dest))}\nbuilt in {time.monotonic() - started:.0f}s\n")
    # Whatever sits at dest is incomplete (no marker): move it aside, then ours into place.
    if os.path.lexists(dest):
        stale = f"{dest}.stale.{os.getpid()}"
        os.rename(dest, stale)
        os.rename(tmp, dest)
        _remove(stale)
    else:
        os.rename(tmp, dest)
    os.unlink(logfile)
    if log:
        log(f"built {dest} in {time.monotonic() - started:.0f}s")
    return dest


@pytest.fixture(scope="session")
def debian_rootfs() -> str:
    """The cached Debian bookworm rootfs (built on first use).  Treat it as read-only."""
    if not is_complete(ROOTFS):
        reason = cannot_build_reason()
        if reason:
            pytest.skip(f"no Debian rootfs at {ROOTFS} and cannot build one: {reason}")
        build_debian_rootfs(ROOTFS)
    return ROOTFS


def _mount_overlay(lower: str, base: str) -> str | None:
    upper, work, merged = (os.path.join(base, d) for d in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        os.makedirs(d, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                           f"lowerdir={lower},upperdir={upper},workdir={work}", merged],
                          capture_output=True, text=True, check=False)
    return merged if proc.returncode == 0 else None


@contextlib.contextmanager
def private_copy(rootfs: str, base: str):
    """A private, writable view of `rootfs` under `base`: overlayfs over it, else a full copy."""
    merged = _mount_overlay(rootfs, base)
    if merged is None:
        merged = os.path.join(base, "copy")
        subprocess.run(["cp", "-a", rootfs, merged], check=True)
        yield merged
        return
    try:
        yield merged
    finally:
        _umount_leftovers(merged)
        subprocess.run(["umount", merged], capture_output=True, check=False)
        if os.path.ismount(merged):
            subprocess.run(["umount", "-l", merged], capture_output=True, check=False)


@pytest.fixture
def debian_overlay(debian_rootfs, tmp_path):
    """A private, writable view of the Debian rootfs for one test (overlayfs, else a copy)."""
    with private_copy(debian_rootfs, str(tmp_path / "debian")) as root:
        yield root
