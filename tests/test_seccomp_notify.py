"""The seccomp_notify platform (platforms/seccomp_notify): ptrace stubs with a seccomp
user-notification fast path.

* Driven directly (a MemoryFile, an address space, a context, hand-assembled code): a FAST call
  (getpid) arrives as a notification with lazy registers, a slow one (brk) as a RET_TRACE stop
  with all of them; reading a lazy register (rsp) converts the notification into a ptrace stop
  with the real value; a result set there reaches the thread; a kick interrupts running code.
* The invariant: the host never executes an application syscall.  A program in a sandbox
  unlinks / rmdirs / renames host paths that exist on the host but not in its rootfs, through
  both paths (unlink, unlinkat: notifications; rmdir, rename: RET_TRACE); the host files stay,
  and the program sees ENOENT, as Linux does for its rootfs.  Its getpid is the sandbox's 1.
* The whole conformance suite (tests/syscall-conformance, static and dynamic) with
  `--platform=seccomp_notify`, judged as tests/test_conformance.py judges the ptrace runs
  (NOTIFY_CONFORMANCE="prog1 prog2 ..." narrows it), as tests/test_kvm.py runs it on kvm.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from platforms import SYSCALL_EVENT, INTERRUPT_EVENT, get_platform
from sentry.mm.memfile import MemoryFile
from tests import test_conformance as conf
from tests.rootfs import make_bundle

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="platforms are tested as root")
REPO = conf.REPO
PAGE = 4096
CODE, DATA = 0x400000, 0x401000


@pytest.fixture
def notify():
    mf = MemoryFile(1 << 28)
    p = get_platform("seccomp_notify", mf)
    space = p.new_address_space()
    yield mf, p, space
    space.release()
    p.release_pool()
    os.close(p.stub_fd)


def _load(mf, space, code: bytes) -> None:
    off = mf.allocate(2 * PAGE)
    mf.map[off:off + len(code)] = code
    space.map(CODE, PAGE, 5, off)
    space.map(DATA, PAGE, 3, off + PAGE)


MOV_EAX = b"\xb8"
SYSCALL = b"\x0f\x05"


def _call(nr: int) -> bytes:
    return MOV_EAX + nr.to_bytes(4, "little") + SYSCALL


def test_fast_and_slow_paths_and_lazy_registers(notify):
    mf, p, space = notify
    # getpid; brk; getpid; mov rbx, rax; jmp $
    _load(mf, space, _call(39) + _call(12) + _call(39) + b"\x48\x89\xc3" + b"\xeb\xfe")
    ctx = space.new_context()
    ctx.clear_regs(CODE, DATA + PAGE)
    got, ev = p.run(ctx)
    assert got is ctx and ev is SYSCALL_EVENT and ctx.regs.orig_rax == 39 and ctx.regs.rip == CODE + 7
    assert type(ctx.regs).__name__ == "LazyRegs"            # a notification: rsp etc. not fetched
    ctx.regs.rax = 4242
    got, ev = p.run(ctx)
    assert ev is SYSCALL_EVENT and ctx.regs.orig_rax == 12      # a RET_TRACE stop, all registers
    assert type(ctx.regs).__name__ == "NotifyRegs" and ctx.regs.rsp == DATA + PAGE
    ctx.regs.rax = 7
    got, ev = p.run(ctx)
    assert ev is SYSCALL_EVENT and ctx.regs.orig_rax == 39
    assert ctx.regs.rsp == DATA + PAGE                       # materialized: the real stack pointer
    assert type(ctx.regs).__name__ == "NotifyRegs"
    ctx.regs.rax = 99
    for _ in range(10000):
        # Kick until it is parked at `jmp $` (a kick may land before it got there: run it again).
        p.resume(ctx)
        p.kick(ctx)
        got, ev = p.wait(-1, [])
        assert got is ctx and ev is INTERRUPT_EVENT
        if ctx.regs.rip == CODE + 24:
            break
    assert ctx.regs.rbx == 99 and ctx.regs.rip == CODE + 24  # the result of the converted stop
    space.release_context(ctx)


def test_fast_path_result_reaches_the_thread(notify):
    mf, p, space = notify
    _load(mf, space, _call(39) + b"\x48\x89\xc3" + _call(12) + b"\xeb\xfe")   # getpid; mov rbx, rax; brk
    ctx = space.new_context()
    ctx.clear_regs(CODE, DATA + PAGE)
    _, ev = p.run(ctx)
    assert ev is SYSCALL_EVENT and type(ctx.regs).__name__ == "LazyRegs"
    ctx.regs.rax = 0x1234
    _, ev = p.run(ctx)                                       # answered by NOTIF_SEND alone
    assert ev is SYSCALL_EVENT and ctx.regs.orig_rax == 12 and ctx.regs.rbx == 0x1234
    space.release_context(ctx)


CANARY_C = r"""
#include <stdio.h>
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    const char *file = argv[1], *dir = argv[2], *other = argv[3];
    long a = syscall(SYS_unlink, file);            int ea = errno;   /* notification */
    long b = syscall(SYS_unlinkat, -100, file, 0); int eb = errno;   /* notification */
    long c = syscall(SYS_rmdir, dir);              int ec = errno;   /* RET_TRACE */
    long d = syscall(SYS_rename, file, other);     int ed = errno;   /* RET_TRACE */
    printf("unlink=%ld/%d unlinkat=%ld/%d rmdir=%ld/%d rename=%ld/%d getpid=%ld\n",
           a, ea, b, eb, c, ec, d, ed, syscall(SYS_getpid));
    return 0;
}
"""


def test_the_host_never_executes_an_application_syscall(tmp_path):
    src = tmp_path / "canary.c"
    src.write_text(CANARY_C)
    root = tmp_path / "rootfs"
    root.mkdir()
    subprocess.run(["gcc", "-O2", "-static", "-o", str(root / "canary"), str(src)], check=True)
    # Host paths the sandbox's rootfs does not have: if the host ran the calls, they would go.
    host = tmp_path / "host"
    host.mkdir()
    canary, cdir, other = host / "canary", host / "canary.d", host / "renamed"
    canary.write_text("keep me")
    cdir.mkdir()
    bundle = str(tmp_path / "bundle")
    make_bundle(bundle, ["/canary", str(canary), str(cdir), str(other)], rootfs=str(root))
    state = str(tmp_path / "state")
    cid = f"notify-{uuid.uuid4().hex[:8]}"
    runsc = [sys.executable, "-m", "runsc_py.cli", "--root", state, "--platform=seccomp_notify"]
    env = dict(os.environ, PYTHONPATH=REPO)
    try:
        p = subprocess.run([*runsc, "run", "--bundle", bundle, cid], env=env, cwd=bundle,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=conf.TIMEOUT)
    finally:
        subprocess.run([*runsc, "delete", "--force", cid], env=env, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert canary.read_text() == "keep me" and cdir.is_dir() and not other.exists()
    assert p.stdout.strip() == "unlink=-1/2 unlinkat=-1/2 rmdir=-1/2 rename=-1/2 getpid=1", p.stdout


# -- the conformance suite on seccomp_notify -------------------------------------------------

# NOTIFY_CONFORMANCE="name ..." narrows it (when working on one program).
PROGRAMS = tuple(os.environ.get("NOTIFY_CONFORMANCE", "").split()) or tuple(conf.PROGRAMS)
builds = conf.builds
rootfs = conf.rootfs


def run_notify_sandbox(name: str, root: str, tmp_path) -> conf.Run:
    bundle = str(tmp_path / "bundle")
    make_bundle(bundle, [f"/conformance/{name}"], rootfs=root)
    state = str(tmp_path / "state")
    cid = f"notify-{uuid.uuid4().hex[:8]}"
    runsc = [sys.executable, "-m", "runsc_py.cli", "--root", state, "--platform=seccomp_notify"]
    env = dict(os.environ, PYTHONPATH=REPO)
    try:
        p = subprocess.run([*runsc, "run", "--bundle", bundle, cid], env=env, cwd=bundle,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=conf.TIMEOUT)
        return conf.Run("seccomp_notify", [name], p.returncode, p.stdout, p.stderr)
    except subprocess.TimeoutExpired as e:
        return conf.Run("seccomp_notify", [name], None, (e.stdout or b"").decode(errors="replace"),
                        (e.stderr or b"").decode(errors="replace"))
    finally:
        subprocess.run([*runsc, "delete", "--force", cid], env=env, capture_output=True, timeout=60)


@pytest.mark.parametrize("build", ["static", "dynamic"])
@pytest.mark.parametrize("name", [n for n in conf.PROGRAMS if n in PROGRAMS])
def test_conformance_on_seccomp_notify(name: str, build: str, builds, rootfs, tmp_path) -> None:
    if build == "dynamic":
        name += conf.DYNAMIC_SUFFIX
    binary, gcc_output = builds[name]
    assert binary, gcc_output
    native = conf.run_native(name, rootfs)
    if native.problems():
        pytest.skip(f"{name} fails natively: a test bug, see test_conformance")
    run = run_notify_sandbox(name, rootfs, tmp_path)
    assert not run.problems(), f"{name} differs from Linux on seccomp_notify:\n{run.report()}\n{native.report()}"
