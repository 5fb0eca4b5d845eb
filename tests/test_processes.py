"""Processes, threads, signals and pipes: real programs, natively and in the sandbox.

* Busybox `sh -c` scripts (pipelines, command substitution, background jobs,
  traps, timeout, SIGPIPE, xargs, subshells) give the same stdout and exit
  status under `runsc-py run` as natively under `chroot ROOTFS /bin/sh -c`
  (we are root).  Both sides use the same busybox rootfs.
* Small static C programs (sources below, built with `gcc -static` into the
  rootfs at /t/NAME): a segfault is exit 139; a SIGSEGV handler sees the
  faulting address in si_addr; a bounded fork bomb leaves no zombie in the
  sandbox (wait4 gives ECHILD) and no stub on the host; the two pthread
  programs of tests/syscall-conformance/thread_*.c pass.
* Container init: SIGTERM, SIGINT and SIGHUP sent to `runsc-py run` reach
  PID 1 (a trap prints), an untrapped one makes `runsc-py run` exit 143; when PID 1 exits,
  its background children die with it and no stub is left on the host.

A stub is a host process whose /proc/PID/comm or cmdline is `runsc-py-stub`
(platforms/ptrace).  Which stubs belong to one sandbox is read from the host
process tree under that `runsc-py run`.
"""
from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid

import pytest

from tests.rootfs import make_bundle, make_busybox_rootfs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF_DIR = os.path.join(REPO, "tests", "syscall-conformance")
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "xterm"}
TIMEOUT = 90

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, namespaces)")

# ---------------------------------------------------------------------------
# C programs put into the rootfs at /t/NAME
# ---------------------------------------------------------------------------
C_PROGRAMS = {
    "segv": r"""
#include <stdio.h>
int main(void) {
    printf("before\n"); fflush(stdout);
    *(volatile int *)16 = 1;
    printf("after\n");
    return 0;
}
""",
    "segv_handler": r"""
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
static sigjmp_buf env;
static volatile void *addr; static volatile int code, signo;
static void h(int sig, siginfo_t *si, void *uc) {
    (void)uc; signo = sig; addr = si->si_addr; code = si->si_code;
    siglongjmp(env, 1);
}
int main(void) {
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h; sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    volatile char *bad = (volatile char *)0x12345678;
    if (!sigsetjmp(env, 1)) *bad = 1;
    printf("unmapped: sig=%d addr_ok=%d code=%s\n", signo, addr == (void *)bad,
           code == SEGV_MAPERR ? "SEGV_MAPERR" : "other");
    char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    signo = 0;
    if (!sigsetjmp(env, 1)) ((volatile char *)ro)[100] = 1;
    printf("read-only: sig=%d addr_ok=%d code=%s\n", signo, addr == (void *)(ro + 100),
           code == SEGV_ACCERR ? "SEGV_ACCERR" : "other");
    return 0;
}
""",
    "forkbomb": r"""
#include <errno.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    int forked = 0, reaped = 0, ok = 0;
    for (int i = 0; i < 1000; i++) {
        pid_t p = fork();
        if (p == 0) _exit(i & 0x7f);
        if (p > 0) forked++;
    }
    int st;
    pid_t p;
    while ((p = wait4(-1, &st, 0, NULL)) > 0) {
        reaped++;
        if (WIFEXITED(st)) ok++;
    }
    printf("forked=%d reaped=%d exited=%d last=%s\n", forked, reaped, ok,
           p == -1 && errno == ECHILD ? "ECHILD" : "other");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) ;   /* hold on until the test closes stdin */
    return 0;
}
""",
}


def _build(src: str, out: str, extra: list[str] | None = None) -> None:
    subprocess.run(["gcc", "-O1", "-static", "-Wall", "-o", out, src, *(extra or [])],
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory) -> str:
    if not shutil.which("gcc"):
        pytest.skip("gcc not installed")
    root = str(tmp_path_factory.mktemp("proc-rootfs"))
    make_busybox_rootfs(root)
    # the Sentry has its own /dev; natively the chroot needs real nodes
    # (a non-interactive sh opens /dev/null as a background job's stdin)
    for name, minor in (("null", 3), ("zero", 5), ("full", 7), ("urandom", 9)):
        path = os.path.join(root, "dev", name)
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
        os.chmod(path, 0o666)
    tdir = os.path.join(root, "t")
    os.makedirs(tdir)
    build = str(tmp_path_factory.mktemp("proc-build"))
    for name, code in C_PROGRAMS.items():
        src = os.path.join(build, name + ".c")
        with open(src, "w") as f:
            f.write(code)
        _build(src, os.path.join(tdir, name))
    with open(os.path.join(tdir, "hello.sh"), "w") as f:   # a #! script with an interpreter argument
        f.write('#!/bin/sh -eu\necho "script $0 $*"\nfalse\necho not reached\n')
    os.chmod(os.path.join(tdir, "hello.sh"), 0o755)
    for name in ("thread_mutex", "thread_signals"):
        _build(os.path.join(CONF_DIR, name + ".c"), os.path.join(tdir, name), ["-pthread"])
    return root


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------
def run_native(root: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["chroot", root, *args], env=dict(ENV), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT, start_new_session=True)


class Sandbox:
    """One `runsc-py run` of ARGS on the rootfs; started with .start(), or run with .run()."""

    def __init__(self, root: str, args: list[str], tmp_path) -> None:
        self.tmp = tmp_path / f"sb-{uuid.uuid4().hex[:8]}"
        self.bundle = str(self.tmp / "bundle")
        self.state = str(self.tmp / "state")
        os.makedirs(self.state)
        make_bundle(self.bundle, args, rootfs=root)
        self.cid = f"proc-{uuid.uuid4().hex[:8]}"
        self.env = dict(os.environ, PYTHONPATH=REPO)
        self.runsc = [sys.executable, "-m", "runsc_py.cli", "--root", self.state]
        self.proc: subprocess.Popen | None = None

    def cmd(self) -> list[str]:
        return [*self.runsc, "run", "--bundle", self.bundle, self.cid]

    def run(self) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(self.cmd(), env=self.env, cwd=self.bundle, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=TIMEOUT)
        finally:
            self.delete()

    def start(self, stdin=subprocess.DEVNULL) -> subprocess.Popen:
        self.proc = subprocess.Popen(self.cmd(), env=self.env, cwd=self.bundle, stdin=stdin,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return self.proc

    def readline(self, timeout: float = 60) -> str:
        """The next stdout line of a started sandbox (blocking up to `timeout`)."""
        import selectors
        assert self.proc and self.proc.stdout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
        if not ready:
            raise AssertionError(f"no output within {timeout}s")
        return self.proc.stdout.readline()

    def delete(self) -> None:
        subprocess.run([*self.runsc, "delete", "--force", self.cid], env=self.env,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False)

    def finish(self, timeout: float = TIMEOUT) -> tuple[int, str, str]:
        assert self.proc
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            self.delete()
            raise AssertionError(f"runsc-py run did not finish within {timeout}s; stderr: {err[-2000:]}")
        self.delete()
        return self.proc.returncode, out, err


# ---------------------------------------------------------------------------
# host process table: which stubs hang under a process
# ---------------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, starttime) of a host pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[1]), int(rest[19])


def _is_stub(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == "runsc-py-stub":
                return True
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0] == b"runsc-py-stub"
    except OSError:
        return False


def _holds_application_memory(pid: int) -> bool:
    """A stub serving a process maps the MemoryFile; the Sentry's spare (pooled) stubs do not."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "runsc-py-memory" in f.read()
    except OSError:
        return False


def stubs_under(root_pid: int, spares: bool = False) -> set[tuple[int, int]]:
    """(pid, starttime) of every stub process descended from root_pid (spare pool stubs only if asked)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st:
                children.setdefault(st[0], []).append(int(name))
                starts[int(name)] = st[1]
    found, todo = set(), [root_pid]
    while todo:
        pid = todo.pop()
        for c in children.get(pid, []):
            todo.append(c)
            if _is_stub(c) and (spares or _holds_application_memory(c)):
                found.add((c, starts[c]))
    return found


def still_alive(stubs: set[tuple[int, int]]) -> set[tuple[int, int]]:
    return {(pid, start) for pid, start in stubs
            if (st := _stat(pid)) is not None and st[1] == start and _is_stub(pid)}


# ---------------------------------------------------------------------------
# busybox scripts: same stdout and status as natively
# ---------------------------------------------------------------------------
SCRIPTS = {
    "pipeline": "ls / | sort | uniq -c | sort -n",
    "command-substitution": 'x=$(echo hello; echo world); n=$(ls / | wc -l); echo "[$x] $n"; echo "$(echo $(echo nested))"',
    "background-wait": "sleep 1 & sleep 1 & wait; echo waited $?",
    "trap-usr1": "trap 'echo got USR1' USR1; kill -USR1 $$; echo after",
    "timeout": "timeout 1 sleep 5; echo $?",
    "yes-head-sigpipe": "yes | head -n 100000 | wc -l",
    "find-xargs": "find / -xdev -type f | head -n 20 | xargs wc -c",
    "while-read": 'printf "a 1\\nb 2\\nc 3\\n" | while read k v; do echo "$v=$k"; done; echo done',
    "subshell-exit": "( exit 3 ); echo $?",
    "exit-status": "false | true; echo $?; true | false; echo $?; sh -c 'exit 7'; echo $?; sh -c 'kill -9 $$'; echo $?",
    "stop-cont-kill": "sleep 5 & p=$!; kill -STOP $p; kill -CONT $p; kill $p; wait $p; echo status $?",
    "signal-exit-status": "sh -c 'kill -TERM $$'; echo $?; sh -c 'kill -USR1 $$'; echo $?; (trap '' INT; kill -INT $$; echo survived)",
    "shebang": "/t/hello.sh a b; echo status $?; cat /t/hello.sh | /bin/sh -s x; echo $?",
    "job-pids": "sleep 0.2 & p=$!; kill -0 $p && echo alive; wait $p; echo reaped $?; kill -0 $p 2>/dev/null || echo gone",
}
SLOW_SCRIPTS = {"background-wait", "timeout", "yes-head-sigpipe", "find-xargs"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_SCRIPTS else n
                                  for n in SCRIPTS])
def test_script_matches_native(name: str, rootfs: str, tmp_path) -> None:
    script = SCRIPTS[name]
    native = run_native(rootfs, ["/bin/sh", "-c", script])
    sandbox = Sandbox(rootfs, ["/bin/sh", "-c", script], tmp_path).run()
    assert native.stdout, f"the script prints nothing natively: {native.stderr}"
    assert (sandbox.stdout, sandbox.returncode) == (native.stdout, native.returncode), (
        f"script: {script}\n--- native (status {native.returncode}):\n{native.stdout}"
        f"\n--- sandbox (status {sandbox.returncode}):\n{sandbox.stdout}"
        f"\n--- sandbox stderr:\n{sandbox.stderr[-3000:]}")


# ---------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------
def test_segfault_is_exit_139(rootfs: str, tmp_path) -> None:
    native = run_native(rootfs, ["/t/segv"])
    assert native.returncode == -signal.SIGSEGV
    r = Sandbox(rootfs, ["/t/segv"], tmp_path).run()
    assert (r.returncode, r.stdout) == (139, "before\n"), r.stderr[-3000:]


def test_sigsegv_handler_gets_si_addr(rootfs: str, tmp_path) -> None:
    want = ("unmapped: sig=11 addr_ok=1 code=SEGV_MAPERR\n"
            "read-only: sig=11 addr_ok=1 code=SEGV_ACCERR\n")
    native = run_native(rootfs, ["/t/segv_handler"])
    assert (native.returncode, native.stdout) == (0, want)
    r = Sandbox(rootfs, ["/t/segv_handler"], tmp_path).run()
    assert (r.returncode, r.stdout) == (0, want), r.stderr[-3000:]


# ---------------------------------------------------------------------------
# fork bomb: no zombies inside, no stubs outside
# ---------------------------------------------------------------------------
@pytest.mark.slow
def test_bounded_fork_bomb_leaves_nothing(rootfs: str, tmp_path) -> None:
    want = "forked=1000 reaped=1000 exited=1000 last=ECHILD\n"
    native = run_native(rootfs, ["/t/forkbomb"])
    assert native.stdout == want
    sb = Sandbox(rootfs, ["/t/forkbomb"], tmp_path)
    proc = sb.start(stdin=subprocess.PIPE)
    try:
        line = sb.readline(timeout=TIMEOUT)
        assert line == want
        # PID 1 itself still runs (blocked reading stdin): exactly its stub remains.
        stubs = stubs_under(proc.pid)
        assert len(stubs) == 1, f"stubs under runsc-py run after the fork bomb: {sorted(stubs)}"
    finally:
        assert proc.stdin
        proc.stdin.close()
        proc.stdin = None
        status, out, err = sb.finish()
    assert status == 0, err[-3000:]
    assert not still_alive(stubs)


# ---------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------
def _tap_passes(out: str) -> bool:
    lines = out.splitlines()
    return bool(lines) and lines[0].startswith("1..") and \
        int(lines[0][3:]) == sum(ln.startswith("ok ") for ln in lines) and \
        not any(ln.startswith("not ok") for ln in lines)


@pytest.mark.slow
def test_pthread_mutex_condvar_exact_total(rootfs: str, tmp_path) -> None:
    r = Sandbox(rootfs, ["/t/thread_mutex"], tmp_path).run()
    assert r.returncode == 0 and _tap_passes(r.stdout), r.stdout + r.stderr[-3000:]
    assert "# total=800000\n" in r.stdout


def test_pthread_kill_sigwait_tls_join(rootfs: str, tmp_path) -> None:
    r = Sandbox(rootfs, ["/t/thread_signals"], tmp_path).run()
    assert r.returncode == 0 and _tap_passes(r.stdout), r.stdout + r.stderr[-3000:]


# ---------------------------------------------------------------------------
# container init semantics
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("sig", ["TERM", "INT", "HUP"])
def test_signal_to_runsc_reaches_pid1_trap(sig: str, rootfs: str, tmp_path) -> None:
    script = f"trap 'echo got {sig}; exit 5' {sig}; echo ready; while :; do sleep 0.1; done"
    sb = Sandbox(rootfs, ["/bin/sh", "-c", script], tmp_path)
    proc = sb.start()
    try:
        assert sb.readline() == "ready\n"
        time.sleep(0.3)
        proc.send_signal(getattr(signal, "SIG" + sig))
    finally:
        status, out, err = sb.finish(timeout=60)
    assert (out, status) == (f"got {sig}\n", 5), err[-3000:]


def test_untrapped_sigterm_is_ignored_by_pid1(rootfs: str, tmp_path) -> None:
    """pid_namespaces(7), as under runc: a signal from outside reaches the container's init only if
    init handles it (or it is SIGKILL/SIGSTOP).  `docker stop` of a plain process then escalates."""
    sb = Sandbox(rootfs, ["/bin/sh", "-c", "echo ready; sleep 2; echo survived"], tmp_path)
    proc = sb.start()
    try:
        assert sb.readline() == "ready\n"
        time.sleep(0.3)
        stubs = stubs_under(proc.pid, spares=True)      # every stub must go at the end, spares too
        proc.send_signal(signal.SIGTERM)
    finally:
        status, out, err = sb.finish(timeout=60)
    assert (status, out) == (0, "survived\n"), err[-3000:]
    assert not still_alive(stubs)


def test_sigkill_of_runsc_py_run_leaves_nothing(rootfs: str, tmp_path) -> None:
    """The Sentry dies with the runsc-py process it serves; the stubs die with the Sentry."""
    sb = Sandbox(rootfs, ["/bin/sh", "-c", "echo ready; sleep 100 & sleep 100"], tmp_path)
    proc = sb.start()
    try:
        assert sb.readline() == "ready\n"
        time.sleep(0.3)
        stubs = stubs_under(proc.pid, spares=True)
        assert stubs
        proc.send_signal(signal.SIGKILL)
    finally:
        sb.finish(timeout=60)
    deadline = time.monotonic() + 5
    while still_alive(stubs) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not still_alive(stubs)


def test_pid1_exit_kills_background_children(rootfs: str, tmp_path) -> None:
    script = "sleep 100 & sleep 100 & (while :; do sleep 1; done) & echo started; sleep 0.5; exit 4"
    sb = Sandbox(rootfs, ["/bin/sh", "-c", script], tmp_path)
    proc = sb.start()
    t0 = time.monotonic()
    try:
        assert sb.readline() == "started\n"
        stubs = stubs_under(proc.pid)
        assert len(stubs) >= 4, f"expected PID 1 and 3 background jobs as stubs, saw {sorted(stubs)}"
        stubs |= stubs_under(proc.pid, spares=True)     # and afterwards none at all may remain
    finally:
        status, out, err = sb.finish(timeout=60)
    assert status == 4, err[-3000:]
    assert time.monotonic() - t0 < 30, "runsc-py run waited for the background jobs"
    deadline = time.monotonic() + 5
    while still_alive(stubs) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not still_alive(stubs), f"stubs left on the host after PID 1 exited: {sorted(still_alive(stubs))}"
