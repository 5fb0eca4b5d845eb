"""After start-up the Sentry cannot open a host path: its seccomp filter is an allowlist of the host
calls it makes (fewer than gVisor's ~70), refuses every path-based syscall (EACCES) and kills on
anything else, host-reshaping calls included; it holds no capability and sees an empty root.  Both
the Sentry's and the Gofer's allowlists are installed in a live sandbox, and the sandbox's
legitimate host paths (inet sockets, a host tty) still work under them."""
from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.rootfs import make_bundle  # noqa: E402

PROBE = r"""
import os, sys
sys.path.insert(0, %r)
from sentry.confine import build_filter
import ctypes, fcntl, socket
ctypes.CDLL(None).prctl(38, 1, 0, 0, 0)
build_filter().load()
results = []
for name, fn in (("open", lambda: os.open("/etc/hostname", os.O_RDONLY)),
                 ("stat", lambda: os.stat("/etc/hostname")),
                 ("listdir", lambda: os.listdir("/")),
                 ("access", lambda: os.access("/etc/hostname", os.R_OK) or (_ for _ in ()).throw(PermissionError(13, "")))):
    try:
        fn()
        results.append(name + "=ALLOWED")
    except PermissionError:
        results.append(name + "=EACCES")
fd_ok = os.fstat(1) is not None
results.append("fstat(fd)=" + ("ok" if fd_ok else "fail"))
print(" ".join(results))
"""


def test_the_sentry_filter_refuses_host_paths_and_keeps_fd_calls() -> None:
    p = subprocess.run([sys.executable, "-c", PROBE % REPO], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["open=EACCES", "stat=EACCES", "listdir=EACCES", "access=EACCES", "fstat(fd)=ok"]


def test_the_sentry_filter_kills_on_mount() -> None:
    code = PROBE.split("results = []")[0] % REPO + "\nimport ctypes\nctypes.CDLL(None).mount(b'none', b'/mnt', b'tmpfs', 0, None)\nprint('survived')\n"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == -31 and "survived" not in p.stdout, (p.returncode, p.stdout, p.stderr)   # SIGSYS


# Calls off the allowlist: each kills the process that loaded the filter (SIGSYS), harmless ones too.
UNLISTED = {
    "getuid (harmless, not needed)": "os.getuid()",
    "fork (clone without a stub thread's flags)": "os.fork()",
    "PTRACE_ATTACH": "ctypes.CDLL(None).ptrace(16, os.getpid(), 0, 0)",
    "socket(AF_UNIX)": "socket.socket(socket.AF_UNIX)",
    "kill with a signal other than SIGKILL": "os.kill(os.getpid(), 0)",
    "ioctl TIOCSTI": "fcntl.ioctl(0, 0x5412, b'x')",
    "uname": "os.uname()",
}


@pytest.mark.parametrize("what", sorted(UNLISTED))
def test_the_sentry_filter_is_an_allowlist(what: str) -> None:
    code = (PROBE.split("results = []")[0] % REPO
            + f"\nprint('loaded', flush=True)\n{UNLISTED[what]}\nprint('survived')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    # Killed by that one call: everything before it (imports included) ran under the filter.
    assert p.returncode == -31 and p.stdout == "loaded\n", (what, p.returncode, p.stdout, p.stderr)


EXEC_PROBE = r"""
import ctypes, os, sys
sys.path.insert(0, %r)
from platforms.ptrace.filters import syscall_filters
from platforms.ptrace.stub import STUB
from sentry.confine import build_filter
image, other = os.memfd_create("runsc-py-stub"), os.memfd_create("something-else")
os.write(image, STUB.elf)
os.write(other, STUB.elf)
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(38, 1, 0, 0, 0)
build_filter(syscall_filters(image)).load()
argv, envp = (ctypes.c_char_p * 2)(b"stub", None), (ctypes.c_char_p * 1)(None)
print("loaded", flush=True)
libc.syscall(322, %s, b"", argv, envp, 0x1000)          # execveat(fd, "", ..., AT_EMPTY_PATH)
print("survived")
"""


@pytest.mark.parametrize("target, signal_number", [("image", 5), ("other", 31)])
def test_execveat_starts_only_the_stub_image(target: str, signal_number: int) -> None:
    """The stub image runs its set-up (prctl, munmap, seccomp) under the Sentry's filter and stops
    at its first int3 (SIGTRAP, nobody traces it here); any other file kills on execveat."""
    p = subprocess.run([sys.executable, "-c", EXEC_PROBE % (REPO, target)], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert (p.returncode, p.stdout) == (-signal_number, "loaded\n"), (p.returncode, p.stdout, p.stderr)


def test_the_allowlist_has_what_the_ptrace_platform_uses() -> None:
    from platforms.ptrace import filters, tracer
    from sentry import confine
    assert "ptrace" not in confine.ALLOWLIST and "clone" not in confine.ALLOWLIST   # the platform's, not the Sentry's
    rules = confine.allowlist(filters.syscall_filters(7))
    assert filters.CLONE_STUB_THREAD == tracer.CLONE_THREAD_FLAGS
    requests = {c[0][3] for c in rules["ptrace"]}
    assert {tracer.PTRACE_CONT, tracer.PTRACE_SYSEMU, tracer.PTRACE_SETOPTIONS, tracer.PTRACE_GETREGSET,
            tracer.PTRACE_SETREGSET, tracer.PTRACE_PEEKTEXT} <= requests
    assert not {16, 0x4206} & requests                       # PTRACE_ATTACH, PTRACE_SEIZE
    assert rules["execveat"] == (((0, "dirfd", "==", 7, "the stub image memfd"),
                                  (4, "flags", "has", 0x1000, "AT_EMPTY_PATH")),)
    # What the Sentry injects into a stub, and what a stub does before its own filter, run under this one.
    assert {"mmap", "munmap", "mprotect", "clone", "exit", "prctl", "seccomp", "execveat",
            "vfork"} <= set(rules)
    for name in ("open", "openat", "execve", "mount", "pivot_root", "chroot", "bpf", "setns", "unshare"):
        assert name not in rules
    assert len(rules) < 70


def test_debug_seccomp_prints_both_allowlists_and_their_sizes() -> None:
    from gofer import confine as gofer_confine
    from sentry import confine as sentry_confine
    env = dict(os.environ, PYTHONPATH=REPO)
    p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "debug", "--seccomp"], capture_output=True,
                       text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    sentry_part, _, gofer_part = p.stdout.partition("\ngofer: ")
    from platforms.ptrace.filters import syscall_filters
    merged = sentry_confine.allowlist(syscall_filters("stub_fd"))      # the default platform's
    n = len(merged)
    assert n < 70
    assert sentry_part.startswith(f"sentry: {n} syscalls allowed (default: kill)\n"), sentry_part[:200]
    assert gofer_part.startswith(f"{len(gofer_confine.ALLOWLIST)} syscalls allowed (default: kill)\n")
    listed = {line.split()[1]: line for line in sentry_part.splitlines()[1:] if line[:6].strip().isdigit()}
    assert set(listed) == set(merged)
    assert "AT_EMPTY_PATH" in listed["execveat"] and "AT_EMPTY_PATH" in listed["newfstatat"]
    assert "PTRACE_SYSEMU" in listed["ptrace"] and "PTRACE_ATTACH" not in listed["ptrace"]
    assert "openat" not in listed and "execve" not in listed
    assert "mount" in sentry_part.split("never allowed")[1]
    glisted = {line.split()[1] for line in gofer_part.splitlines()[1:] if line[:6].strip().isdigit()}
    assert glisted == set(gofer_confine.ALLOWLIST)
    j = subprocess.run([sys.executable, "-m", "runsc_py.cli", "debug", "--seccomp", "--format", "json"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert j.returncode == 0, j.stderr
    assert [(f["name"], f["size"], f["default"]) for f in json.loads(j.stdout)] == \
        [("sentry", n, "kill"), ("gofer", len(gofer_confine.ALLOWLIST), "kill")]
    bare = subprocess.run([sys.executable, "-m", "runsc_py.cli", "debug"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert bare.returncode != 0 and "--seccomp" in bare.stderr


def _status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def test_a_live_sentry_and_gofer_are_confined(tmp_path) -> None:
    bundle = make_bundle(str(tmp_path / "b"), ["sleep", "5"])
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-m", "runsc_py.cli", "--root", str(tmp_path / "s"), "run", "--bundle",
                             bundle, "conf"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sentry = gofer = stub = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (sentry is None or gofer is None):
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                try:
                    st = _status(int(name))
                    comm = open(f"/proc/{name}/comm").read().strip()
                except OSError:
                    continue
                if comm == "runsc-py-stub" and st.get("TracerPid", "0") != "0":
                    tracer = int(st["TracerPid"])
                    if _status(tracer).get("PPid") == str(proc.pid):
                        sentry, stub = tracer, int(name)
            if sentry is not None:
                for name in os.listdir("/proc"):
                    if name.isdigit() and int(name) != sentry:
                        try:
                            if _status(int(name)).get("PPid") == str(sentry) and \
                                    open(f"/proc/{name}/comm").read().strip() != "runsc-py-stub":
                                gofer = int(name)
                        except OSError:
                            pass
            time.sleep(0.1)
        assert sentry is not None and gofer is not None, "could not find the Sentry and its Gofer"
        s = _status(sentry)
        assert (s["Seccomp"], s["NoNewPrivs"], s["CapEff"], s["CapBnd"]) == ("2", "1", "0" * 16, "0" * 16), s
        assert os.readlink(f"/proc/{sentry}/root") != "/"          # an empty tmpfs in its own namespace
        g = _status(gofer)
        assert (g["Seccomp"], g["NoNewPrivs"]) == ("2", "1"), g
        assert int(g["CapEff"], 16) == 0x1F                       # CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID
        if "Seccomp_filters" in s:
            # The Gofer was forked before the Sentry confined itself: only its own filter.  A stub
            # carries the Sentry's filter under its own.
            st = _status(stub)
            assert (s["Seccomp_filters"], g["Seccomp_filters"], st["Seccomp_filters"]) == ("1", "1", "2"), (s, g, st)
    finally:
        proc.kill()
        proc.wait()


# TCP and UDP over loopback, v4 and (where the namespace has it) v6: every host socket call the
# Sentry makes for the sandbox's inet sockets.  No other test opens an inet socket in a sandbox.
INET_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(x) do { if (!(x)) { printf("FAIL %d %s errno=%d\n", __LINE__, #x, errno); return 1; } } while (0)

static int tcp(int family) {
    struct sockaddr_storage ss; socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        struct sockaddr_in *a = (void *)&ss;
        a->sin_family = AF_INET; a->sin_addr.s_addr = htonl(INADDR_LOOPBACK); len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (void *)&ss;
        a->sin6_family = AF_INET6; a->sin6_addr = in6addr_loopback; len = sizeof *a;
    }
    int l = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0); CHECK(l >= 0);
    int one = 1; CHECK(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
    if (bind(l, (void *)&ss, len) != 0) { CHECK(family == AF_INET6 && errno == EADDRNOTAVAIL); close(l); return 0; }
    CHECK(listen(l, 4) == 0);
    socklen_t alen = sizeof ss; CHECK(getsockname(l, (void *)&ss, &alen) == 0);
    int c = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0); CHECK(c >= 0);
    int r = connect(c, (void *)&ss, alen); CHECK(r == 0 || errno == EINPROGRESS);
    struct pollfd p = {c, POLLOUT, 0}; CHECK(poll(&p, 1, 5000) == 1);
    int err = -1; socklen_t el = sizeof err; CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0);
    int a = accept4(l, NULL, NULL, SOCK_CLOEXEC); CHECK(a >= 0);
    CHECK(setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0);
    struct sockaddr_storage peer; socklen_t pl = sizeof peer; CHECK(getpeername(a, (void *)&peer, &pl) == 0);
    char buf[16];
    CHECK(send(c, "ping", 4, 0) == 4);
    struct pollfd q = {a, POLLIN, 0}; CHECK(poll(&q, 1, 5000) == 1);
    CHECK(recv(a, buf, sizeof buf, 0) == 4 && memcmp(buf, "ping", 4) == 0);
    CHECK(write(a, "pong", 4) == 4);
    struct pollfd s = {c, POLLIN, 0}; CHECK(poll(&s, 1, 5000) == 1);
    CHECK(read(c, buf, sizeof buf) == 4 && memcmp(buf, "pong", 4) == 0);
    CHECK(shutdown(c, SHUT_WR) == 0);
    CHECK(recv(a, buf, sizeof buf, 0) == 0);
    close(a); close(c); close(l);
    return 0;
}

static int udp(void) {
    struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_DGRAM, 0); CHECK(s >= 0);
    CHECK(bind(s, (void *)&a, sizeof a) == 0);
    socklen_t al = sizeof a; CHECK(getsockname(s, (void *)&a, &al) == 0);
    int t = socket(AF_INET, SOCK_DGRAM, 0); CHECK(t >= 0);
    char buf[16]; struct sockaddr_in from; socklen_t fl = sizeof from;
    CHECK(sendto(t, "dgram", 5, 0, (void *)&a, sizeof a) == 5);
    CHECK(recvfrom(s, buf, sizeof buf, 0, (void *)&from, &fl) == 5);
    CHECK(connect(t, (void *)&a, sizeof a) == 0);
    CHECK(send(t, "x", 1, 0) == 1 && recv(s, buf, sizeof buf, 0) == 1);
    close(s); close(t);
    return 0;
}

int main(void) {
    if (tcp(AF_INET) || tcp(AF_INET6) || udp()) return 1;
    printf("inet ok\n");
    return 0;
}
"""


@pytest.mark.parametrize("network", ["none", "host"])
def test_inet_sockets_work_under_the_sentry_filter(tmp_path, network: str) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    bundle = make_bundle(str(tmp_path / "b"), ["/inet"])
    (tmp_path / "inet.c").write_text(INET_C)
    subprocess.run(["gcc", "-O1", "-static", "-o", os.path.join(bundle, "rootfs", "inet"), str(tmp_path / "inet.c")],
                   check=True, capture_output=True, timeout=120)
    p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(tmp_path / "s"), "--network", network,
                        "run", "--bundle", bundle, f"inet-{network}"], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=REPO), stdin=subprocess.DEVNULL)
    assert (p.returncode, p.stdout) == (0, "inet ok\n"), (p.returncode, p.stdout, p.stderr)


def test_a_host_tty_works_under_the_sentry_filter(tmp_path) -> None:
    """stdio on a host terminal (no process.terminal): termios and window-size ioctls reach the host tty."""
    import fcntl
    import struct
    import termios
    bundle = make_bundle(str(tmp_path / "b"), ["/bin/sh", "-c", "stty size; stty rows 33 cols 77; stty size;"
                                                                " stty -echo; stty echo; echo tty-done"])
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "runsc_py.cli", "--root", str(tmp_path / "s"), "run", "--bundle",
                             bundle, "tty"], stdin=slave, stdout=slave, stderr=slave,
                            env=dict(os.environ, PYTHONPATH=REPO))
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:                # EIO: every slave is closed
                break
            if not chunk:
                break
            out += chunk
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert status == 0 and out.split() == [b"24", b"80", b"33", b"77", b"tty-done"], (status, out)
