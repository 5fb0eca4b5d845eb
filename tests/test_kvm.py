"""The KVM platform (platforms/kvm): the same sandbox with application code in guest ring 3.

* The platform object implements the contract (platforms/contract.py).
* Driven directly (a MemoryFile, an address space, a context, hand-assembled code): a syscall
  reaches the Sentry with its registers; a wild pointer is a SIGSEGV whose si_addr is the
  address; an unmapped page stays unreachable after munmap (the shadow MMU is flushed); the
  guest cannot see the platform's own supervisor pages; ud2 / int3 / divide by zero give the
  signals Linux gives.
* Through runsc-py: busybox `echo hi`, a wild pointer killing the program with SIGSEGV, and the
  whole conformance suite (tests/syscall-conformance, static and dynamic) with `--platform=kvm`,
  judged exactly as tests/test_conformance.py judges the ptrace runs.

Every test skips, with the reason, where /dev/kvm is missing or unusable.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from platforms import contract
from sentry.mm.memfile import MemoryFile
from tests import test_conformance as conf
from tests.rootfs import make_bundle

REPO = conf.REPO


def _kvm_unusable() -> str | None:
    try:
        from platforms.kvm import KvmPlatform
        KvmPlatform(MemoryFile(1 << 30))
    except contract.PlatformUnavailable as e:
        return str(e)
    except Exception as e:            # noqa: BLE001 -- any failure to start is a reason to skip
        return f"the kvm platform cannot start here: {e}"
    return None


_REASON = _kvm_unusable()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

PAGE = 4096
CODE, DATA = 0x400000, 0x600000


@pytest.fixture
def kvm():
    from platforms.kvm import KvmPlatform
    mf = MemoryFile(1 << 32)
    p = KvmPlatform(mf)
    space = p.new_address_space()
    yield mf, p, space
    space.release()


def _load(mf, space, code: bytes) -> int:
    off = mf.allocate(2 * PAGE)
    mf.map[off:off + len(code)] = code
    space.map(CODE, PAGE, 5, off)                 # r-x
    space.map(DATA, PAGE, 3, off + PAGE)          # rw-
    return off


def test_contract():
    from platforms.kvm import KvmPlatform
    p = KvmPlatform(MemoryFile(1 << 30))
    assert isinstance(p, contract.Platform)
    space = p.new_address_space()
    assert isinstance(space, contract.AddressSpace)
    assert isinstance(space.new_context(), contract.Context)
    assert "ioctl" in p.syscall_filters()


def test_syscall_reaches_the_sentry(kvm):
    mf, p, space = kvm
    # mov $39,%eax; mov $7,%edi; syscall; ud2
    _load(mf, space, bytes([0xB8, 39, 0, 0, 0, 0xBF, 7, 0, 0, 0, 0x0F, 0x05, 0x0F, 0x0B]))
    ctx = space.new_context()
    ctx.clear_regs(CODE, DATA + PAGE)
    c, ev = p.run(ctx)
    assert c is ctx and ev is contract.SYSCALL_EVENT
    assert (ctx.regs.orig_rax, ctx.regs.rdi, ctx.regs.rip) == (39, 7, CODE + 12)
    ctx.regs.rax = 1234
    c, ev = p.run(ctx)
    assert isinstance(ev, contract.FaultEvent)
    assert (ev.signo, ev.addr, ctx.regs.rip, ctx.regs.rax) == (signal.SIGILL, CODE + 12, CODE + 12, 1234)


@pytest.mark.parametrize("addr", [0xDEAD000, 0x7F7FFFFFF000, 0x7F8000000000, 0x7F8000005000])
def test_wild_pointer_is_sigsegv_at_its_address(kvm, addr):
    """0x7f80...: the platform's own pages (the GDT, the ring-0 stack) are invisible to ring 3."""
    mf, p, space = kvm
    _load(mf, space, bytes([0x48, 0xA1]) + addr.to_bytes(8, "little"))      # mov addr,%rax
    ctx = space.new_context()
    ctx.clear_regs(CODE, DATA + PAGE)
    _, ev = p.run(ctx)
    assert isinstance(ev, contract.FaultEvent)
    assert (ev.signo, ev.addr, ctx.regs.rip) == (signal.SIGSEGV, addr, CODE)


def test_write_to_readonly_is_accerr(kvm):
    mf, p, space = kvm
    _load(mf, space, bytes([0x48, 0xA3]) + (CODE + 8).to_bytes(8, "little"))   # mov %rax,CODE+8
    ctx = space.new_context()
    ctx.clear_regs(CODE, DATA + PAGE)
    _, ev = p.run(ctx)
    assert (ev.signo, ev.code, ev.addr) == (signal.SIGSEGV, 2, CODE + 8)


def test_unmapped_page_is_gone(kvm):
    """The shadow MMU keeps what it saw of the page tables: munmap must flush it."""
    mf, p, space = kvm
    # loop: mov DATA,%rax; mov $39,%eax... -> read DATA, then syscall, then jump back
    code = bytes([0x48, 0x8B, 0x1C, 0x25]) + DATA.to_bytes(4, "little") + \
        bytes([0xB8, 39, 0, 0, 0, 0x0F, 0x05, 0xEB, 0xEF])
    off = _load(mf, space, code)
    mf.map[off + PAGE] = 0x5A
    ctx = space.new_context()
    ctx.clear_regs(CODE, DATA + PAGE)
    _, ev = p.run(ctx)
    assert ev is contract.SYSCALL_EVENT and ctx.regs.rbx & 0xFF == 0x5A
    other = mf.allocate(PAGE)
    mf.map[other] = 0x77
    space.map(DATA, PAGE, 3, other)              # replaced: the new page, not the stale one
    _, ev = p.run(ctx)
    assert ev is contract.SYSCALL_EVENT and ctx.regs.rbx & 0xFF == 0x77
    space.unmap(DATA, PAGE)
    _, ev = p.run(ctx)
    assert isinstance(ev, contract.FaultEvent) and (ev.signo, ev.code, ev.addr) == (signal.SIGSEGV, 1, DATA)


def test_remaps_past_the_table_pool(monkeypatch):
    """Every remap of a used page copies its table path; when the pool runs out the shadow MMU
    is flushed and the retired pages reused -- and the guest never sees a stale page."""
    from platforms.kvm import KvmPlatform, machine
    monkeypatch.setattr(machine, "PLAT_PAGES", machine.FIXED_PAGES + 24)
    mf = MemoryFile(1 << 30)
    p = KvmPlatform(mf)
    space = p.new_address_space()
    code = bytes([0x48, 0x8B, 0x1C, 0x25]) + DATA.to_bytes(4, "little") + \
        bytes([0xB8, 39, 0, 0, 0, 0x0F, 0x05, 0xEB, 0xEF])
    _load(mf, space, code)
    ctx = space.new_context()
    ctx.clear_regs(CODE, DATA + PAGE)
    for i in range(40):
        page = mf.allocate(PAGE)
        mf.map[page] = i
        space.map(DATA, PAGE, 3, page)
        _, ev = p.run(ctx)
        assert ev is contract.SYSCALL_EVENT and ctx.regs.rbx & 0xFF == i
    assert p.machine.flushes > 0
    space.release()


def test_prot_none_and_back_at_memfile_offset_zero(kvm):
    """mprotect(PROT_NONE) then back: the page (even MemoryFile offset 0) is there again."""
    mf, p, space = kvm
    code = bytes([0x48, 0x8B, 0x1C, 0x25]) + DATA.to_bytes(4, "little") + bytes([0xB8, 39, 0, 0, 0, 0x0F, 0x05])
    assert mf.allocate(PAGE) == 0
    mf.map[0] = 0x42
    _load(mf, space, code)
    space.map(DATA, PAGE, 0, 0)                  # offset 0, PROT_NONE
    ctx = space.new_context()
    ctx.clear_regs(CODE, DATA + PAGE)
    _, ev = p.run(ctx)
    assert isinstance(ev, contract.FaultEvent) and (ev.signo, ev.addr) == (signal.SIGSEGV, DATA)
    space.protect(DATA, PAGE, 1)
    ctx.clear_regs(CODE, DATA + PAGE)
    _, ev = p.run(ctx)
    assert ev is contract.SYSCALL_EVENT and ctx.regs.rbx & 0xFF == 0x42


@pytest.mark.parametrize("code,signo", [
    (bytes([0xCC]), signal.SIGTRAP),
    (bytes([0x31, 0xC9, 0xF7, 0xF1]), signal.SIGFPE),          # xor %ecx,%ecx; div %ecx
    (bytes([0xF4]), signal.SIGSEGV),                           # hlt: privileged
    (bytes([0xE6, 0x10]), signal.SIGSEGV),                     # out: no I/O for the application
])
def test_exceptions_become_linux_signals(kvm, code, signo):
    mf, p, space = kvm
    _load(mf, space, code)
    ctx = space.new_context()
    ctx.clear_regs(CODE, DATA + PAGE)
    _, ev = p.run(ctx)
    assert isinstance(ev, contract.FaultEvent) and ev.signo == signo


def test_int80_is_the_i386_syscall(kvm):
    mf, p, space = kvm
    _load(mf, space, bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80]))     # mov $20,%eax; int $0x80
    ctx = space.new_context()
    ctx.clear_regs(CODE, DATA + PAGE)
    _, ev = p.run(ctx)
    assert ev is contract.SYSCALL32_EVENT
    assert (ctx.regs.orig_rax, ctx.regs.rip) == (20, CODE + 7)


def test_tls_base_reaches_the_guest(kvm):
    mf, p, space = kvm
    # mov %fs:0,%rbx; mov $39,%eax; syscall
    _load(mf, space, bytes([0x64, 0x48, 0x8B, 0x1C, 0x25, 0, 0, 0, 0, 0xB8, 39, 0, 0, 0, 0x0F, 0x05]))
    ctx = space.new_context()
    ctx.clear_regs(CODE, DATA + PAGE)
    ctx.regs.fs_base = CODE
    _, ev = p.run(ctx)
    assert ev is contract.SYSCALL_EVENT
    assert ctx.regs.rbx == int.from_bytes(bytes([0x64, 0x48, 0x8B, 0x1C, 0x25, 0, 0, 0]), "little")


def test_fpstate_round_trip(kvm):
    mf, p, space = kvm
    ctx = space.new_context()
    st = bytearray(ctx.get_fpstate())
    assert len(st) == p.fpstate_size
    st[160:176] = bytes(range(16))                 # xmm0
    st[512] |= 2                                   # XSTATE_BV: SSE state present
    ctx.set_fpstate(bytes(st))
    assert ctx.get_fpstate()[160:176] == bytes(range(16))


# -- through runsc-py -----------------------------------------------------------------------

def _runsc(args: list[str], bundle: str, tmp_path, timeout: int = conf.TIMEOUT):
    state = str(tmp_path / "state")
    os.makedirs(state, exist_ok=True)
    cid = f"kvm-{uuid.uuid4().hex[:8]}"
    runsc = [sys.executable, "-m", "runsc_py.cli", "--root", state, "--platform=kvm"]
    env = dict(os.environ, PYTHONPATH=REPO)
    try:
        return subprocess.run([*runsc, "run", "--bundle", bundle, cid], env=env, cwd=bundle,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    finally:
        subprocess.run([*runsc, "delete", "--force", cid], env=env, capture_output=True, timeout=60)


def test_busybox_echo(tmp_path):
    bundle = make_bundle(str(tmp_path / "bundle"), ["/bin/echo", "hi"])
    p = _runsc([], bundle, tmp_path)
    assert (p.returncode, p.stdout) == (0, "hi\n"), p.stderr


def test_busybox_shell(tmp_path):
    bundle = make_bundle(str(tmp_path / "bundle"), ["/bin/sh", "-c", "for i in 1 2 3; do echo $i; done | wc -l; ls / >/dev/null && echo ok"])
    p = _runsc([], bundle, tmp_path)
    assert (p.returncode, p.stdout.split()) == (0, ["3", "ok"]), p.stderr


WILD = r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    printf("sig=%d addr=%p\n", sig, si->si_addr);
    fflush(stdout);
    _exit(0);
}
int main(int argc, char **argv) {
    if (argc > 1) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, 0);
    }
    return *(volatile int *)0x5eadbee0;
}
"""


@pytest.fixture(scope="module")
def wild(tmp_path_factory):
    d = tmp_path_factory.mktemp("wild")
    src, exe = d / "wild.c", d / "rootfs" / "wild"
    src.write_text(WILD)
    os.makedirs(d / "rootfs")
    subprocess.run(["gcc", "-O1", "-static", "-o", str(exe), str(src)], check=True)
    return str(d / "rootfs")


def test_wild_pointer_kills_with_sigsegv(tmp_path, wild):
    p = _runsc([], make_bundle(str(tmp_path / "bundle"), ["/wild"], rootfs=wild), tmp_path)
    assert p.returncode == 128 + signal.SIGSEGV, p.stderr


def test_wild_pointer_si_addr(tmp_path, wild):
    p = _runsc([], make_bundle(str(tmp_path / "bundle"), ["/wild", "handle"], rootfs=wild), tmp_path)
    assert (p.returncode, p.stdout) == (0, f"sig=11 addr=0x5eadbee0\n"), p.stderr


SPIN = r"""
#include <pthread.h>
#include <stdio.h>
#include <time.h>
static volatile int flag;
static void *setter(void *a) { struct timespec ts = {0, 50000000}; nanosleep(&ts, 0); flag = 1; return a; }
static void *spinner(void *a) { while (!flag) ; return a; }
int main(void) {
    pthread_t t1, t2;
    pthread_create(&t2, 0, spinner, 0);
    pthread_create(&t1, 0, setter, 0);
    pthread_join(t1, 0);
    pthread_join(t2, 0);
    flag = 0;
    pthread_create(&t1, 0, setter, 0);
    while (!flag) ;
    pthread_join(t1, 0);
    puts("spin ok");
    return 0;
}
"""


def test_spinning_threads_take_turns(tmp_path):
    """Contexts run one at a time on the Sentry's thread: one spinning in the guest must not keep
    a sleeping one (or the Sentry's timers) from running (the time slice)."""
    root = tmp_path / "rootfs"
    root.mkdir()
    (tmp_path / "spin.c").write_text(SPIN)
    subprocess.run(["gcc", "-O2", "-static", "-pthread", "-o", str(root / "spin"), str(tmp_path / "spin.c")],
                   check=True)
    p = _runsc([], make_bundle(str(tmp_path / "bundle"), ["/spin"], rootfs=str(root)), tmp_path, timeout=60)
    assert (p.returncode, p.stdout) == (0, "spin ok\n"), p.stderr


def test_unusable_dev_kvm_is_one_line(tmp_path, monkeypatch):
    from platforms.kvm import machine
    monkeypatch.setattr(machine, "open_kvm", lambda: (_ for _ in ()).throw(
        contract.PlatformUnavailable("the kvm platform needs /dev/kvm: No such file or directory; "
                                     "use --platform=ptrace")))
    from platforms.kvm import KvmPlatform
    with pytest.raises(contract.PlatformUnavailable) as e:
        KvmPlatform(MemoryFile(1 << 30))
    assert "\n" not in str(e.value)


# -- the conformance suite on kvm ------------------------------------------------------------

def run_kvm_sandbox(name: str, root: str, tmp_path) -> conf.Run:
    bundle = str(tmp_path / "bundle")
    make_bundle(bundle, [f"/conformance/{name}"], rootfs=root)
    p = None
    try:
        p = _runsc([], bundle, tmp_path)
        return conf.Run("kvm", [name], p.returncode, p.stdout, p.stderr)
    except subprocess.TimeoutExpired as e:
        return conf.Run("kvm", [name], None, (e.stdout or b"").decode(errors="replace"),
                        (e.stderr or b"").decode(errors="replace"))


builds = conf.builds
rootfs = conf.rootfs


@pytest.mark.parametrize("build", ["static", "dynamic"])
@pytest.mark.parametrize("name", conf.PROGRAMS)
def test_conformance_on_kvm(name: str, build: str, builds, rootfs, tmp_path) -> None:
    if build == "dynamic":
        name += conf.DYNAMIC_SUFFIX
    binary, gcc_output = builds[name]
    assert binary, gcc_output
    native = conf.run_native(name, rootfs)
    if native.problems():
        pytest.skip(f"{name} fails natively: a test bug, see test_conformance")
    run = run_kvm_sandbox(name, rootfs, tmp_path)
    assert not run.problems(), f"{name} differs from Linux on kvm:\n{run.report()}\n{native.report()}"
