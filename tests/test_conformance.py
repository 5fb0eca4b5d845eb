"""Syscall conformance: each C program in tests/syscall-conformance/ runs natively and in the sandbox.

Every program (one per syscall family) prints TAP: `1..N`, then `ok N - name` or
`not ok N - name # detail`, and exits 0 only if all its checks passed.  The
programs are built with `gcc -O1 -static -Wall -Werror` into `.build/conformance/`
(only when their source or a shared header changed), then copied into ONE rootfs per test
session at `/conformance/NAME`, next to the `/fixtures` tree they read.

Each program is run twice, and both runs must exit 0 and print nothing but the
plan, `ok` lines and `#` comments, with as many `ok` lines as the plan says:

* `test_conformance[NAME-native]`: `chroot ROOTFS /conformance/NAME` (we are root);
  the answers of the host kernel, i.e. the definition of "right".  This run also
  proves the program does not write to the rootfs (which is read-only in the
  sandbox): the tree is snapshotted before and after.
* `test_conformance[NAME-sandbox]`: `runsc-py run` on a bundle whose `root.path`
  is that rootfs, so every syscall is answered by the Sentry.  On failure the
  message shows the sandbox's `not ok` lines next to the native run's result.

Every program is ALSO built dynamically (`gcc -O1 -Wall -Werror`, no
`-static`) as `/conformance/NAME.dynamic`, and run the same two ways as
`test_conformance[NAME-dynamic-native]` and `test_conformance[NAME-dynamic-sandbox]`.
The dynamic binaries use the host's glibc: every library `ldd` lists for them
(and the loader, /lib64/ld-linux-x86-64.so.2) is copied into the rootfs at
the same path, so the sandbox runs the PT_INTERP loader, mmaps the shared
objects from the Gofer-backed rootfs and relocates them, as real images do.
"""
from __future__ import annotations

import glob
import hashlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import uuid
from dataclasses import dataclass

import pytest

from tests.rootfs import make_bundle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC_DIR = os.path.join(REPO, "tests", "syscall-conformance")
BUILD_DIR = os.path.join(REPO, ".build", "conformance")
CFLAGS = ["-O1", "-static", "-Wall", "-Werror"]
DYNAMIC_CFLAGS = ["-O1", "-Wall", "-Werror"]
DYNAMIC_SUFFIX = ".dynamic"  # /conformance/NAME.dynamic and .build/conformance/NAME.dynamic
HEADERS = ["tap.h", "fixtures.h", "mm.h", "files.h"]
TIMEOUT = 120  # seconds per run; the Sentry is Python, give it room

PROGRAMS = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(SRC_DIR, "*.c")))

# The environment a program sees on both sides: the one tests/rootfs.py's
# default_config() puts in config.json.
PROGRAM_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "xterm"}

# ---------------------------------------------------------------------------
# The /fixtures tree.  The C programs rely on every detail here (summarised
# in syscall-conformance/fixtures.h); change both together.
# ---------------------------------------------------------------------------
FILE_TXT = b"0123456789abcdefghijklmnopqrstuvwxyz\n"  # 37 bytes
FIXED_MTIME_NS = 1_000_000_000 * 10**9 + 123_456_789   # 2001-09-09T01:46:40.123456789Z
CHAIN_LEN = 40  # Linux follows at most 40 symlinks (MAXSYMLINKS) in one lookup

# (path, kind, payload, mode): kind is "file", "dir" or "symlink" (payload = target).
FIXTURES = [
    ("fixtures", "dir", None, 0o755),
    ("fixtures/file.txt", "file", FILE_TXT, 0o644),          # known content, fixed mtime
    ("fixtures/empty", "file", b"", 0o644),                  # empty file
    ("fixtures/secret", "file", b"top secret\n", 0o600),     # mode 0600
    ("fixtures/script.sh", "file", b"#!/bin/sh\nexit 0\n", 0o755),  # executable
    ("fixtures/dir", "dir", None, 0o755),                    # known entries:
    ("fixtures/dir/alpha", "file", b"A\n", 0o644),           #   regular file
    ("fixtures/dir/beta", "file", b"BB\n", 0o644),           #   regular file
    ("fixtures/dir/gamma", "dir", None, 0o755),              #   directory
    ("fixtures/dir/link", "symlink", "alpha", None),         #   symlink
    ("fixtures/emptydir", "dir", None, 0o755),               # only . and ..
    ("fixtures/link-rel", "symlink", "file.txt", None),      # relative symlink
    ("fixtures/link-abs", "symlink", "/fixtures/file.txt", None),  # absolute symlink
    ("fixtures/link-up", "symlink", "../fixtures/file.txt", None),  # relative, via ..
    ("fixtures/link-dir", "symlink", "dir", None),           # symlink to a directory
    ("fixtures/link-gamma", "symlink", "dir/gamma", None),   # link-gamma/.. is dir, not /fixtures
    ("fixtures/loop-a", "symlink", "loop-b", None),          # two-link loop
    ("fixtures/loop-b", "symlink", "loop-a", None),
    ("fixtures/self-loop", "symlink", "self-loop", None),    # one-link loop
    ("fixtures/dangling", "symlink", "does-not-exist", None),  # dangling symlink
    ("fixtures/chain", "dir", None, 0o755),
]
# fixtures/chain/l0 -> l1 -> ... -> l40 -> ../file.txt: opening l1 follows exactly
# 40 symlinks (allowed), opening l0 follows 41 (ELOOP).
for _i in range(CHAIN_LEN + 1):
    _target = f"l{_i + 1}" if _i < CHAIN_LEN else "../file.txt"
    FIXTURES.append((f"fixtures/chain/l{_i}", "symlink", _target, None))

# Character devices the programs use; the Sentry provides its own /dev, natively
# the chroot needs real nodes.
DEVICES = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("urandom", 1, 9)]


def make_fixtures(root: str) -> None:
    for rel, kind, payload, mode in FIXTURES:
        path = os.path.join(root, rel)
        if kind == "dir":
            os.makedirs(path, exist_ok=True)
        elif kind == "file":
            with open(path, "wb") as f:
                f.write(payload)
        else:
            os.symlink(payload, path)
        if mode is not None:
            os.chmod(path, mode)
    os.utime(os.path.join(root, "fixtures/file.txt"), ns=(FIXED_MTIME_NS, FIXED_MTIME_NS))


def copy_libraries(root: str, binaries: list[str]) -> list[str]:
    """Copy every shared library `ldd` lists for `binaries` (and the loader) into `root`, at the same paths."""
    paths: set[str] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
            for word in line.split():
                if word.startswith("/"):
                    paths.add(word)
    for path in sorted(paths):
        dest = os.path.join(root, path.lstrip("/"))
        if not os.path.exists(dest):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy2(path, dest)  # the file itself, not a symlink out of the rootfs
    return sorted(paths)


def make_rootfs(root: str, binaries: dict[str, str]) -> str:
    for d in ("conformance", "etc", "tmp", "dev", "proc"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    with open(os.path.join(root, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(root, "etc/group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    for name, major, minor in DEVICES:
        path = os.path.join(root, "dev", name)
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(path, 0o666)
    make_fixtures(root)
    for name, binary in binaries.items():
        shutil.copy2(binary, os.path.join(root, "conformance", name))
    dynamic = [b for n, b in binaries.items() if n.endswith(DYNAMIC_SUFFIX)]
    if dynamic:
        copy_libraries(root, dynamic)
    return root


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------
def _source_digest(name: str, cflags: list[str] = CFLAGS) -> str:
    h = hashlib.sha256()
    h.update(" ".join(["gcc", *cflags]).encode() + b"\0")
    for fname in [f"{name}.c", *HEADERS]:
        with open(os.path.join(SRC_DIR, fname), "rb") as f:
            h.update(fname.encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()


def build(name: str, dynamic: bool = False) -> tuple[str | None, str]:
    """Compile NAME.c unless the cached binary is current; return (binary path or None, gcc output).

    dynamic=True builds NAME.dynamic without -static."""
    cflags = DYNAMIC_CFLAGS if dynamic else CFLAGS
    os.makedirs(BUILD_DIR, exist_ok=True)
    binary = os.path.join(BUILD_DIR, name + (DYNAMIC_SUFFIX if dynamic else ""))
    stamp = binary + ".sha256"
    digest = _source_digest(name, cflags)
    try:
        with open(stamp) as f:
            if f.read().strip() == digest and os.path.exists(binary):
                return binary, ""
    except FileNotFoundError:
        pass
    tmp = f"{binary}.tmp.{os.getpid()}"
    proc = subprocess.run(["gcc", *cflags, "-o", tmp, os.path.join(SRC_DIR, f"{name}.c")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        if os.path.exists(tmp):
            os.unlink(tmp)
        return None, proc.stdout + proc.stderr
    os.replace(tmp, binary)
    with open(stamp + ".tmp", "w") as f:
        f.write(digest + "\n")
    os.replace(stamp + ".tmp", stamp)
    return binary, proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def builds() -> dict[str, tuple[str | None, str]]:
    out = {name: build(name) for name in PROGRAMS}
    out.update({name + DYNAMIC_SUFFIX: build(name, dynamic=True) for name in PROGRAMS})
    return out


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory, builds) -> str:
    root = str(tmp_path_factory.mktemp("conformance-rootfs"))
    return make_rootfs(root, {name: b for name, (b, _) in builds.items() if b})


# ---------------------------------------------------------------------------
# Running and judging
# ---------------------------------------------------------------------------
@dataclass
class Run:
    side: str
    cmd: list[str]
    status: int | None  # None: timed out
    stdout: str
    stderr: str

    def problems(self) -> list[str]:
        """Everything that keeps this run from being a pass; empty if it passed."""
        out: list[str] = []
        lines = [ln for ln in self.stdout.splitlines() if ln.strip()]
        if self.status is None:
            out.append(f"timed out after {TIMEOUT}s")
        elif self.status < 0:
            out.append(f"killed by {signal.Signals(-self.status).name}, expected exit status 0")
        elif self.status != 0:
            out.append(f"exit status {self.status}, expected 0")
        planned = None
        if lines and lines[0].startswith("1.."):
            planned = lines[0][3:]
        else:
            out.append("no TAP plan line `1..N` first")
        oks = 0
        for ln in lines[1:] if planned is not None else lines:
            if ln.startswith("ok "):
                oks += 1
            elif ln.startswith("#"):
                continue
            else:
                out.append(ln)  # `not ok ...` lines and anything unexpected
        if planned is not None and (not planned.isdigit() or int(planned) != oks):
            out.append(f"plan says {planned} checks, {oks} passed")
        return out

    def report(self) -> str:
        probs = self.problems()
        head = f"--- {self.side}: " + ("PASS" if not probs else f"{len(probs)} problem(s)")
        body = [head, *("    " + p for p in probs)]
        if probs:
            hint = " (add --strace after `--root DIR` to trace it)" if self.side == "sandbox" else ""
            body.append(f"  {self.side} command{hint}: {shlex.join(self.cmd)}")
        if probs and self.stderr.strip():
            tail = self.stderr.strip().splitlines()[-15:]
            body += [f"  {self.side} stderr (last {len(tail)} lines):", *("    " + t for t in tail)]
        return "\n".join(body)


def _run(side: str, cmd: list[str], env: dict[str, str], cwd: str | None = None,
         on_timeout=lambda: None) -> Run:
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=cwd, start_new_session=True, text=True, errors="replace")
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
        return Run(side, cmd, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
    except ProcessLookupError:
        pass
    on_timeout()
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        # Something outside our process group still holds the pipes open.
        proc.stdout.close()
        proc.stderr.close()
        proc.wait()
        out, err = "", "(output lost: the pipes were still held open after the kill)"
    return Run(side, cmd, None, out, err)


def _snapshot(root: str) -> dict[str, tuple]:
    """Everything about the tree a program could change by writing (atime excluded)."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            snap[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_uid, st.st_gid)
    return snap


_native_runs: dict[str, Run] = {}


def _reads_proc(name: str) -> bool:
    """Does NAME.c (the static or the dynamic build) read /proc?  Natively it then gets a proc mount."""
    with open(os.path.join(SRC_DIR, name.split(".")[0] + ".c")) as f:
        return '"/proc/' in f.read()


def run_native(name: str, root: str) -> Run:
    if name not in _native_runs:
        before = _snapshot(root)
        cmd = ["chroot", root, f"/conformance/{name}"]
        if _reads_proc(name):
            # A private mount namespace with proc at ROOT/proc, as the sandbox has.
            cmd = ["unshare", f"--mount-proc={root}/proc", *cmd]
        run = _run("native", cmd, env=dict(PROGRAM_ENV))
        after = _snapshot(root)
        if before != after:
            changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
            run.stdout += f"\nwrote to the read-only rootfs: {', '.join(changed)}\n"
        _native_runs[name] = run
    return _native_runs[name]


def run_sandbox(name: str, root: str, tmp_path) -> Run:
    bundle = str(tmp_path / "bundle")
    state_root = str(tmp_path / "state")
    os.makedirs(state_root)
    make_bundle(bundle, [f"/conformance/{name}"], rootfs=root)
    cid = f"conformance-{name}-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, PYTHONPATH=REPO)
    runsc = [sys.executable, "-m", "runsc_py.cli", "--root", state_root]

    def force_delete() -> None:
        # `run` deletes the container itself; this matters only if it hung or
        # crashed, so that no sandbox outlives its test.  The sandbox may have
        # left our process group (setsid), which the timeout kill cannot reach.
        try:
            subprocess.run([*runsc, "delete", "--force", cid], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60, check=False)
        except subprocess.TimeoutExpired:
            pass

    try:
        return _run("sandbox", [*runsc, "run", "--bundle", bundle, cid], env=env, cwd=bundle,
                    on_timeout=force_delete)
    finally:
        force_delete()


@pytest.mark.parametrize("side", ["native", "sandbox", "dynamic-native", "dynamic-sandbox"])
@pytest.mark.parametrize("name", PROGRAMS)
def test_conformance(name: str, side: str, builds, rootfs, tmp_path) -> None:
    cflags = CFLAGS
    if side.startswith("dynamic-"):
        side = side[len("dynamic-"):]
        name += DYNAMIC_SUFFIX
        cflags = DYNAMIC_CFLAGS
    binary, gcc_output = builds[name]
    assert binary, f"{name.split('.')[0]}.c does not build with gcc {' '.join(cflags)}:\n{gcc_output}"
    native = run_native(name, rootfs)
    if side == "native":
        passed = not native.problems()
        assert passed, f"{name} fails natively (a bug in the test, not the Sentry):\n{native.report()}"
        return
    sandbox = run_sandbox(name, rootfs, tmp_path)
    passed = not sandbox.problems()
    assert passed, f"{name} differs from Linux in the sandbox:\n{sandbox.report()}\n{native.report()}"
