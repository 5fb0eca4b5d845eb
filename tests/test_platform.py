"""The ptrace platform's stub really confines what it runs.

These tests drive `platforms.ptrace.tracer.PtracePlatform` directly, with a
real `sentry.mm.memfile.MemoryFile`, from the test process (which becomes
the stubs' tracer).  They pin down the stub's contract from
platforms/ptrace/stub.py and DESIGN.md:

* A fresh stub has installed its seccomp filter (`Seccomp: 2`,
  `NoNewPrivs: 1`), holds no fd but the MemoryFile and maps nothing but its
  own page (no host binary, no vDSO, no stack).
* The filter allows only the injectable syscalls, and only from the stub's
  one `syscall` instruction (`site`): injecting any other syscall at the
  site kills the stub with SIGSYS.
* Application code resumed with PTRACE_CONT (i.e. not under SYSEMU) that
  reaches a `syscall` instruction anywhere else is killed by SIGSYS and the
  call never executes -- even for a number the filter allows at `site`.
* Under PTRACE_SYSEMU the same instruction is reported to the tracer as a
  syscall stop and does not execute on the host.
"""
from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from platforms.ptrace import stub as stubmod
from platforms.ptrace._ptrace_ext import ffi, lib
from platforms.ptrace.tracer import (PTRACE_CONT, PTRACE_SYSEMU, SYSCALL_STOP, PlatformError,
                                     PtracePlatform)
from sentry.mm.memfile import MemoryFile

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stub tests run as root")

PAGE = 4096
__WALL = 0x40000000
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4

SYS_getpid, SYS_mkdir, SYS_exit_group, SYS_kill = 39, 83, 231, 62

CODE_ADDR = 0x10000000      # where the tests map "application" code
DATA_ADDR = 0x10001000      # and a data page (path strings)

# The application code: `syscall; int3`, at CODE_ADDR.
APP_CODE = stubmod.SYSCALL + stubmod.INT3


@pytest.fixture
def platform():
    memfile = MemoryFile(size=1 << 30)
    plat = PtracePlatform(memfile)
    spaces = []

    def new_space():
        space = plat.new_address_space()
        spaces.append(space)
        return space

    plat.test_new_space = new_space
    yield plat
    for space in spaces:
        space.release()
    os.close(plat.stub_fd)
    os.close(memfile.fd)


def map_app_pages(platform, space, path: bytes = b"") -> None:
    """Map an executable code page with `syscall; int3` and a data page holding `path`."""
    code_off = platform.memfile.allocate(PAGE)
    data_off = platform.memfile.allocate(PAGE)
    platform.memfile.view[code_off:code_off + len(APP_CODE)] = APP_CODE
    platform.memfile.view[data_off:data_off + len(path) + 1] = path + b"\0"
    space.map(CODE_ADDR, PAGE, PROT_READ | PROT_EXEC, code_off)
    space.map(DATA_ADDR, PAGE, PROT_READ | PROT_WRITE, data_off)


def wait_thread(tid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(tid, __WALL)
            return status
        except InterruptedError:
            continue


def set_call(ctx, nr: int, *args: int) -> None:
    """Point an application thread at CODE_ADDR with syscall `nr` in its registers."""
    ctx.clear_regs(CODE_ADDR, 0)
    r = ctx.regs
    r.rax = nr
    for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
        setattr(r, name, value)


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    if os.WIFEXITED(status):
        return f"exited {os.WEXITSTATUS(status)}"
    if os.WIFSTOPPED(status):
        return f"stopped {os.WSTOPSIG(status):#x} event {status >> 16}"
    return f"status {status:#x}"


# ---------------------------------------------------------------- the stub at rest

def test_a_fresh_stub_is_filtered_and_holds_only_the_memory_file(platform) -> None:
    space = platform.test_new_space()
    st = proc_status(space.pid)
    assert st["Seccomp"] == "2", st
    assert st["NoNewPrivs"] == "1", st
    assert st["TracerPid"] == str(os.getpid())
    fds = {fd: os.readlink(f"/proc/{space.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{space.pid}/fd")}
    assert list(fds) == [str(stubmod.STUB_MEMFD)], fds
    assert fds[str(stubmod.STUB_MEMFD)].startswith("/memfd:runsc-py-memory"), fds
    with open(f"/proc/{space.pid}/maps") as f:
        maps = f.read().splitlines()
    names = [ln.split(None, 5)[5] if len(ln.split(None, 5)) == 6 else "" for ln in maps]
    # Only the stub's own page (and the kernel's fixed, unremovable vsyscall page).
    assert [n for n in names if n != "[vsyscall]"] == ["/memfd:runsc-py-stub (deleted)"], maps
    assert os.readlink(f"/proc/{space.pid}/exe").startswith("/memfd:runsc-py-stub")


def test_allowed_syscall_injected_at_the_site_runs(platform) -> None:
    """The positive control: mmap/mprotect/munmap injected at `site` work."""
    space = platform.test_new_space()
    map_app_pages(platform, space)
    space.protect(DATA_ADDR, PAGE, PROT_READ)
    space.unmap(DATA_ADDR, PAGE)
    with open(f"/proc/{space.pid}/maps") as f:
        maps = f.read()
    assert f"{CODE_ADDR:08x}-" in maps and f"{DATA_ADDR:08x}-" not in maps, maps


# ---------------------------------------------------------------- the filter kills

def test_injecting_a_syscall_off_the_allowlist_kills_the_stub(platform) -> None:
    space = platform.test_new_space()
    assert SYS_getpid not in stubmod.INJECTABLE
    with pytest.raises(PlatformError):
        space.inject(SYS_getpid)
    # The stub is gone: its pid was reaped by inject's waitpid, or is a zombie at most.
    try:
        st = proc_status(space.pid)
        assert st["State"].startswith(("Z", "X")), st
    except FileNotFoundError:
        pass


def test_injected_getpid_at_the_site_dies_of_sigsys(platform) -> None:
    """The same, watched by hand so the exit status shows the signal: SIGSYS, not a getpid answer."""
    space = platform.test_new_space()
    regs = ffi.new("struct user_regs_struct *")
    ffi.memmove(regs, space._template, ffi.sizeof("struct user_regs_struct"))
    regs.rip = stubmod.STUB.site
    regs.rax = SYS_getpid
    regs.orig_rax = 0xFFFFFFFFFFFFFFFF
    assert lib.rp_resume(space.pid, regs, PTRACE_CONT, 0) == 0
    status = wait_thread(space.pid)
    space.released = True          # nothing left to kill
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, describe(status)


def test_application_syscall_under_cont_is_killed_not_executed(platform, tmp_path) -> None:
    """A `syscall` outside the stub's site, reached without SYSEMU, never runs: SIGSYS."""
    target = tmp_path / f"must-not-exist-{uuid.uuid4().hex}"
    space = platform.test_new_space()
    map_app_pages(platform, space, str(target).encode())
    ctx = space.new_context()
    set_call(ctx, SYS_mkdir, DATA_ADDR, 0o755)
    assert lib.rp_resume(ctx.tid, ctx.regs, PTRACE_CONT, 0) == 0
    status = wait_thread(ctx.tid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, describe(status)
    assert not target.exists(), "the stub executed mkdir on the host"
    space.release()


def test_an_allowed_number_from_the_wrong_instruction_is_killed(platform) -> None:
    """exit_group is injectable at `site`, but from application code it is SIGSYS, not an exit."""
    assert SYS_exit_group in stubmod.INJECTABLE
    space = platform.test_new_space()
    map_app_pages(platform, space)
    ctx = space.new_context()
    set_call(ctx, SYS_exit_group, 42)
    assert lib.rp_resume(ctx.tid, ctx.regs, PTRACE_CONT, 0) == 0
    status = wait_thread(ctx.tid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, describe(status)
    space.release()


def test_application_kill_under_cont_does_not_reach_the_host(platform) -> None:
    """kill(<this test process>, SIGUSR1) from application code: the stub dies, we receive nothing."""
    got = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    try:
        space = platform.test_new_space()
        map_app_pages(platform, space)
        ctx = space.new_context()
        set_call(ctx, SYS_kill, os.getpid(), signal.SIGUSR1)
        assert lib.rp_resume(ctx.tid, ctx.regs, PTRACE_CONT, 0) == 0
        status = wait_thread(ctx.tid)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, describe(status)
        space.release()
        assert got == []
    finally:
        signal.signal(signal.SIGUSR1, old)


# ---------------------------------------------------------------- SYSEMU reports, never executes

def test_application_syscall_under_sysemu_stops_in_the_tracer_and_is_not_executed(platform, tmp_path) -> None:
    target = tmp_path / f"must-not-exist-{uuid.uuid4().hex}"
    space = platform.test_new_space()
    map_app_pages(platform, space, str(target).encode())
    ctx = space.new_context()
    set_call(ctx, SYS_mkdir, DATA_ADDR, 0o755)
    assert lib.rp_resume(ctx.tid, ctx.regs, PTRACE_SYSEMU, 0) == 0
    status = wait_thread(ctx.tid)
    assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == SYSCALL_STOP, describe(status)
    regs = ffi.new("struct user_regs_struct *")
    assert lib.rp_ptrace(12, ctx.tid, 0, int(ffi.cast("unsigned long", regs))) == 0   # GETREGS
    assert regs.orig_rax == SYS_mkdir
    assert regs.rdi == DATA_ADDR
    assert regs.rip == CODE_ADDR + len(stubmod.SYSCALL)     # stopped just after the instruction
    assert not target.exists(), "SYSEMU let mkdir run on the host"
    # The thread is alive and stopped: still ours to answer.
    assert proc_status(ctx.tid)["State"].startswith("t")
    space.release()
    assert not target.exists()


def test_exit_group_under_sysemu_is_reported_and_the_stub_lives_on(platform) -> None:
    space = platform.test_new_space()
    map_app_pages(platform, space)
    ctx = space.new_context()
    set_call(ctx, SYS_exit_group, 42)
    assert lib.rp_resume(ctx.tid, ctx.regs, PTRACE_SYSEMU, 0) == 0
    status = wait_thread(ctx.tid)
    assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == SYSCALL_STOP, describe(status)
    assert os.path.exists(f"/proc/{space.pid}")
    assert proc_status(space.pid)["State"][0] in "tT"
    # And the platform's own run loop sees the same thing as a syscall event.
    set_call(ctx, SYS_getpid)
    got_ctx, event = platform.run(ctx)
    assert got_ctx is ctx and type(event).__name__ == "SyscallEvent"
    assert ctx.regs.orig_rax == SYS_getpid
    space.release()


def test_stubs_die_with_their_tracer(tmp_path) -> None:
    """A stub outlives no Sentry: kill the (child) process that traces it, the stub goes too."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # the "Sentry": make a stub, report its pid, then wait to be killed
        try:
            os.close(r)
            plat = PtracePlatform(MemoryFile(size=1 << 24))
            space = plat.new_address_space()
            os.write(w, f"{space.pid}\n".encode())
            signal.pause()
        finally:
            os._exit(1)
    os.close(w)
    with os.fdopen(r) as f:
        stub_pid = int(f.readline())
    assert proc_status(stub_pid)["TracerPid"] == str(child)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if proc_status(stub_pid)["State"].startswith(("Z", "X")):
                break
        except FileNotFoundError:
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"stub {stub_pid} still alive 10s after its tracer was killed: {proc_status(stub_pid)}")
