"""Security properties of a runsc-py sandbox, checked from both sides.

Issue 2's "Done means", as specifications run against real sandboxes (real
`runsc-py run`, real ptrace, real Gofer; as root, no mocks):

1. No path escapes the rootfs.  A canary file lives OUTSIDE the rootfs,
   next to it (`W/canary`, where the rootfs is `W/rootfs`), and the rootfs
   holds a decoy at the canary's host absolute path (`rootfs/W/canary`).
   `..` above `/`, absolute symlinks to host paths, relative symlink chains
   climbing above the root, a symlink to `/etc/shadow`, dirfd-relative
   `..`, and `/proc/self/root`-style paths all resolve inside the rootfs:
   they read the rootfs's file or fail with ENOENT, never the host's.
2. Application syscalls never reach the host: `syscall(SYS_getpid)` is 1,
   `getppid` 0, `kill(<a host pid>)` is ESRCH and delivers nothing, uname
   reports config.json's hostname.  Seen from the host, the stub processes
   that hold the application are seccomp-filtered, no-new-privs, hold only
   the MemoryFile, map only the stub page and MemoryFile pages, and die
   with the Sentry.
4. The Sentry opens no host path after start-up (strace on the Sentry while
   the application opens, lists and reads files).
5. An unimplemented syscall is ENOSYS and named once in the log; `--strace`
   shows every call with decoded arguments.
6. Bad input: one line on stderr, non-zero exit, no traceback and nothing
   left running -- checked with a child-subreaper watcher, so even a stub
   or Gofer that double-forked away would be caught.

(3, the stub's seccomp filter itself, is tests/test_platform.py.)
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.rootfs import BUSYBOX, default_config, make_bundle, make_busybox_rootfs

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 90

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes run as root")


def repo_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


RUNSC = [sys.executable, "-m", "runsc_py.cli"]

# ---------------------------------------------------------------------------
# Probe programs: static C, copied into the rootfs at /probe/NAME.
# ---------------------------------------------------------------------------
ERRNAMES = r"""
#include <errno.h>
#include <stdio.h>
static const char *errname(int e) {
    switch (e) {
    case ENOENT: return "ENOENT"; case ENOTDIR: return "ENOTDIR"; case ELOOP: return "ELOOP";
    case EACCES: return "EACCES"; case EPERM: return "EPERM"; case EISDIR: return "EISDIR";
    case ESRCH: return "ESRCH"; case ENOSYS: return "ENOSYS"; case EBADF: return "EBADF";
    case EINVAL: return "EINVAL"; case EFAULT: return "EFAULT";
    }
    static char buf[32];
    snprintf(buf, sizeof buf, "errno%d", e);
    return buf;
}
"""

PROBES = {
    # catf PATH...: one line per path: "PATH: OK <content>" or "PATH: ERR <ENAME>".
    "catf": ERRNAMES + r"""
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        int fd = open(argv[i], O_RDONLY);
        if (fd < 0) { printf("%s: ERR %s\n", argv[i], errname(errno)); continue; }
        char buf[4096]; ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n < 0) { printf("%s: ERR read %s\n", argv[i], errname(errno)); close(fd); continue; }
        while (n > 0 && buf[n - 1] == '\n') n--;
        buf[n] = 0;
        printf("%s: OK %s\n", argv[i], buf);
        close(fd);
    }
    return 0;
}
""",
    # dirfd: `..` through directory fds, cwd and /proc/self/fd; one "name: result" line each.
    "dirfd": ERRNAMES + r"""
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
static void show(const char *name, int fd) {
    if (fd < 0) { printf("%s: ERR %s\n", name, errname(errno)); return; }
    char buf[256]; ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) { printf("%s: ERR read %s\n", name, errname(errno)); close(fd); return; }
    while (n > 0 && buf[n - 1] == '\n') n--;
    buf[n] = 0; printf("%s: OK %s\n", name, buf); close(fd);
}
static void same(const char *name, int a, int b) {
    struct stat sa, sb;
    if (a < 0 || b < 0 || fstat(a, &sa) || fstat(b, &sb)) { printf("%s: ERR %s\n", name, errname(errno)); return; }
    printf("%s: %s\n", name, sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino ? "same" : "different");
}
static void cwd(const char *name) {
    char buf[4096];
    if (!getcwd(buf, sizeof buf)) printf("%s: ERR %s\n", name, errname(errno));
    else printf("%s: %s\n", name, buf);
}
int main(void) {
    int root = open("/", O_RDONLY | O_DIRECTORY);
    int tmp = open("/tmp", O_RDONLY | O_DIRECTORY);
    same("openat(root, ..) is root", root, openat(root, "..", O_RDONLY | O_DIRECTORY));
    same("openat(root, ../../..) is root", root, openat(root, "../../..", O_RDONLY | O_DIRECTORY));
    same("openat(tmp, ../../..) is root", root, openat(tmp, "../../..", O_RDONLY | O_DIRECTORY));
    show("openat(root, ../canary)", openat(root, "../canary", O_RDONLY));
    show("openat(root, ../twin)", openat(root, "../twin", O_RDONLY));
    show("openat(tmp, ../../../../twin)", openat(tmp, "../../../../twin", O_RDONLY));
    if (chdir("/tmp") == 0 && chdir("../../../..") == 0) cwd("chdir /tmp then ../../../..");
    show("open(twin) from there", open("twin", O_RDONLY));
    show("open(../canary) from there", open("../canary", O_RDONLY));
    if (fchdir(root) == 0 && chdir("..") == 0) cwd("fchdir(root) then ..");
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d/../canary", root);
    show("/proc/self/fd/ROOT/../canary", open(path, O_RDONLY));
    snprintf(path, sizeof path, "/proc/self/fd/%d/../twin", root);
    show("/proc/self/fd/ROOT/../twin", open(path, O_RDONLY));
    return 0;
}
""",
    # ids HOSTPID: pids, uname and kills, all as raw syscalls.
    "ids": ERRNAMES + r"""
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>
static void res(const char *name, long r) {
    if (r == -1) printf("%s: -1 %s\n", name, errname(errno)); else printf("%s: %ld\n", name, r);
}
int main(int argc, char **argv) {
    long host = argc > 1 ? atol(argv[1]) : 0;
    res("getpid", syscall(SYS_getpid));
    res("getppid", syscall(SYS_getppid));
    res("gettid", syscall(SYS_gettid));
    res("kill(host pid, 0)", syscall(SYS_kill, host, 0));
    res("kill(host pid, SIGUSR1)", syscall(SYS_kill, host, SIGUSR1));
    res("tgkill(host pid, host pid, SIGUSR1)", syscall(SYS_tgkill, host, host, SIGUSR1));
    res("kill(-1, 0)", syscall(SYS_kill, -1, 0));
    struct utsname u;
    if (syscall(SYS_uname, &u) == 0) printf("nodename: %s\n", u.nodename); else res("uname", -1);
    return 0;
}
""",
    # nosys NR: the raw syscall NR, twice.
    "nosys": ERRNAMES + r"""
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long nr = atol(argv[1]);
    for (int i = 0; i < 2; i++) {
        long r = syscall(nr, 0, 0, 0, 0, 0, 0);
        if (r == -1) printf("call %d: -1 %s\n", i, errname(errno)); else printf("call %d: %ld\n", i, r);
    }
    return 0;
}
""",
    # calls: a known sequence of raw syscalls between two markers (getppid twice, then once).
    "calls": r"""
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    char buf[16];
    syscall(SYS_getppid); syscall(SYS_getppid);                 /* begin marker */
    long fd = syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY, 0);
    syscall(SYS_read, fd, buf, 5);
    syscall(SYS_close, fd);
    syscall(SYS_close, 99);
    syscall(SYS_write, 1, "hello\n", 6);
    syscall(SYS_getpid);
    syscall(SYS_lseek, 1000, 7, SEEK_END);
    syscall(SYS_getppid);                                        /* end marker */
    return 0;
}
""",

    # stubpage OP BASE SIZE: try OP against the stub's page, check the sandbox still maps
    # memory, print "ready" and sleep, so the test can look at the stub from the host.
    "stubpage": "#define _GNU_SOURCE\n" + ERRNAMES + r"""
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static void res(const char *name, long r) {
    if (r == -1) printf("%s: -1 %s\n", name, errname(errno)); else printf("%s: %#lx\n", name, r);
    fflush(stdout);
}
#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)
int main(int argc, char **argv) {
    const char *op = argv[1];
    unsigned long base = strtoul(argv[2], 0, 0), size = strtoul(argv[3], 0, 0);
    long rwx = PROT_READ | PROT_WRITE | PROT_EXEC;
    if (!strcmp(op, "mmap-fixed"))
        res(op, syscall(SYS_mmap, base, size, rwx, MAP_FIXED | ANON, -1, 0));
    else if (!strcmp(op, "mmap-fixed-shared"))
        res(op, syscall(SYS_mmap, base, size, rwx, MAP_FIXED | MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    else if (!strcmp(op, "mmap-fixed-straddling"))
        res(op, syscall(SYS_mmap, base - 4096, size + 4096, rwx, MAP_FIXED | ANON, -1, 0));
    else if (!strcmp(op, "mmap-fixed-noreplace"))
        res(op, syscall(SYS_mmap, base, size, rwx, MAP_FIXED_NOREPLACE | ANON, -1, 0));
    else if (!strcmp(op, "mprotect"))
        res(op, syscall(SYS_mprotect, base, size, rwx));
    else if (!strcmp(op, "madvise"))
        res(op, syscall(SYS_madvise, base, size, MADV_DONTNEED));
    else if (!strcmp(op, "munmap"))
        res(op, syscall(SYS_munmap, base, size));
    else if (!strcmp(op, "munmap-straddling"))
        res(op, syscall(SYS_munmap, base - 4096, size + 4096));
    else if (!strcmp(op, "mremap-fixed")) {
        void *p = mmap(0, size, PROT_READ | PROT_WRITE, ANON, -1, 0);
        res(op, syscall(SYS_mremap, p, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, base));
    } else if (!strcmp(op, "mremap-grow-in-place")) {
        void *p = mmap((void *)(base - 4096), 4096, PROT_READ | PROT_WRITE, ANON, -1, 0);
        res("mmap below", (long)p);
        res(op, syscall(SYS_mremap, p, 4096, 4096 + size, 0, 0));
    } else {
        printf("unknown op\n");
        return 2;
    }
    /* The Sentry can still change this address space (each of these is injected into the stub). */
    char *q = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, ANON, -1, 0);
    if (q != MAP_FAILED && (memset(q, 1, 1 << 20), mprotect(q, 4096, PROT_READ) == 0) && munmap(q, 1 << 20) == 0)
        printf("still working\n");
    printf("ready\n");
    fflush(stdout);
    struct timespec ts = {60, 0};
    nanosleep(&ts, 0);
    return 0;
}
""",
    # int80: a 32-bit `int $0x80` system call from 64-bit code: i386 exit(1); read as
    # x86_64 it would be write(1, "MISREAD\n", 8).
    "int80": r"""
#include <stdio.h>
static const char msg[] = "MISREAD\n";
int main(void) {
    long ret;
    __asm__ volatile("mov $1, %%rdi\n mov %1, %%rsi\n mov $8, %%rdx\n"
                     "mov $1, %%ebx\n mov %1, %%rcx\n mov $1, %%eax\n int $0x80"
                     : "=a"(ret) : "r"(msg) : "rdi", "rsi", "rdx", "rbx", "rcx", "memory");
    printf("int80 returned %ld\n", ret);
    return 0;
}
""",
    # vsyscall: the legacy vsyscall page's time(), which the host kernel emulates.
    "vsyscall": r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    time_t (*vtime)(time_t *) = (time_t (*)(time_t *))0xffffffffff600400UL;
    printf("before\n");
    fflush(stdout);
    printf("vsyscall time %ld\n", (long)vtime(0));
    return 0;
}
""",
    # fds: every open descriptor below 1024.
    "fds": r"""
#include <stdio.h>
#include <sys/stat.h>
int main(void) {
    struct stat st;
    for (int i = 0; i < 1024; i++)
        if (fstat(i, &st) == 0) printf("open %d\n", i);
    return 0;
}
""",
    # uconn PATH: connect a unix stream socket to PATH; say what happened.
    "uconn": ERRNAMES + r"""
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0) { printf("socket: ERR %s\n", errname(errno)); return 0; }
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { printf("connect: ERR %s\n", errname(errno)); return 0; }
    printf("connect: OK\n");
    fflush(stdout);
    if (write(s, "ESCAPED\n", 8) < 0) printf("write: ERR %s\n", errname(errno));
    return 0;
}
""",
    # shmap FILE: map FILE (opened O_RDONLY) shared and read-only, try to make the mapping
    # writable and write through it, then read FILE back through a fresh fd and a child `cat`.
    "shmap": "#define _GNU_SOURCE\n" + ERRNAMES + r"""
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) { printf("open: ERR %s\n", errname(errno)); return 1; }
    char *w = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("mmap rw shared: %s\n", w == MAP_FAILED ? errname(errno) : "OK");
    char *q = mmap(0, 4096, PROT_READ, MAP_SHARED, fd, 0);
    if (q == MAP_FAILED) { printf("mmap r shared: ERR %s\n", errname(errno)); return 1; }
    int r = mprotect(q, 4096, PROT_READ | PROT_WRITE);
    printf("mprotect rw: %s\n", r ? errname(errno) : "OK");
    if (r == 0) {
        memcpy(q, "PWNED", 5);
        msync(q, 4096, MS_SYNC);
    }
    char buf[64] = {0};
    int fd2 = open(argv[1], O_RDONLY);
    if (read(fd2, buf, 63) < 0) printf("read: ERR %s\n", errname(errno));
    buf[strcspn(buf, "\n")] = 0;
    printf("read back: %s\n", buf);
    fflush(stdout);
    if (fork() == 0) { execl("/bin/cat", "cat", argv[1], (char *)0); _exit(127); }
    wait(0);
    return 0;
}
""",
}


@pytest.fixture(scope="session")
def probes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("probes")
    built = {}
    for name, src in PROBES.items():
        c = out / f"{name}.c"
        c.write_text(src)
        p = subprocess.run(["gcc", "-O1", "-static", "-Wall", "-Werror", "-o", str(out / name), str(c)],
                           capture_output=True, text=True)
        assert p.returncode == 0, f"probe {name} does not build:\n{p.stderr}"
        built[name] = out / name
    return built


# ---------------------------------------------------------------------------
# The world: W/canary (host), W/twin (host), W/rootfs (the sandbox's root).
# ---------------------------------------------------------------------------
class World:
    def __init__(self, base: Path, probes: dict[str, Path]) -> None:
        self.token = uuid.uuid4().hex
        self.base = base                                   # W: a unique host directory
        self.rootfs = base / "rootfs"
        self.host_canary = f"HOST-CANARY-{self.token}"     # must never be seen inside
        self.host_twin = f"HOST-TWIN-{self.token}"
        self.host_only = f"HOST-ONLY-{self.token}"
        self.rootfs_twin = f"ROOTFS-TWIN-{self.token}"
        self.rootfs_decoy = f"ROOTFS-DECOY-{self.token}"   # at the canary's host path, inside
        self.rootfs_shadow = f"ROOTFS-SHADOW-{self.token}"

        make_busybox_rootfs(str(self.rootfs))
        r = self.rootfs
        (base / "canary").write_text(self.host_canary + "\n")
        (base / "twin").write_text(self.host_twin + "\n")
        (base / "only-on-host").write_text(self.host_only + "\n")
        (r / "twin").write_text(self.rootfs_twin + "\n")
        # The canary's host absolute path also exists inside, with other content.
        decoy_dir = r / str(base).lstrip("/")
        decoy_dir.mkdir(parents=True)
        (decoy_dir / "canary").write_text(self.rootfs_decoy + "\n")
        (r / "etc/shadow").write_text(self.rootfs_shadow + "\n")
        os.chmod(r / "etc/shadow", 0o640)
        links = r / "links"
        (links / "a/b").mkdir(parents=True)
        os.symlink(str(base / "canary"), links / "abs-canary")            # host absolute path
        os.symlink(str(base / "only-on-host"), links / "abs-host-only")   # exists only on the host
        os.symlink(str(base), links / "abs-dir")                          # host directory
        os.symlink("/etc/shadow", links / "shadow")
        os.symlink("/etc/gshadow", links / "gshadow")                     # host has it, rootfs not
        os.symlink("../../../../../../../../canary", links / "up-canary")
        os.symlink("../../../../../../../../twin", links / "up-twin")
        # A relative chain: /links/chain1 -> a/chain2 -> b/chain3 -> ../../../../../../canary
        os.symlink("a/chain2", links / "chain1")
        os.symlink("b/chain3", links / "a/chain2")
        os.symlink("../../../../../../canary", links / "a/b/chain3")
        os.symlink("a/twin2", links / "twin1")
        os.symlink("b/twin3", links / "a/twin2")
        os.symlink("../../../../../../twin", links / "a/b/twin3")
        os.symlink("../../../../..", links / "updir")                     # a directory above the root
        os.symlink("/..", links / "slashdotdot")
        os.makedirs(r / "probe")
        for name, binary in probes.items():
            shutil.copy2(binary, r / "probe" / name)

    def must_not_leak(self, text: str) -> None:
        for secret in (self.host_canary, self.host_twin, self.host_only):
            assert secret not in text, f"host file content seen inside the sandbox:\n{text}"


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, probes: dict[str, Path]) -> World:
    return World(tmp_path_factory.mktemp("escape"), probes)


def run_sandbox(tmp_path: Path, rootfs: Path, args: list[str], *, strace: bool = False,
                hostname: str = "runsc-py", timeout: float = TIMEOUT, env: dict[str, str] | None = None,
                pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`runsc-py run` ARGS in a fresh bundle over `rootfs`; on a timeout the whole tree is killed."""
    bundle = tmp_path / f"bundle-{uuid.uuid4().hex[:8]}"
    make_bundle(str(bundle), args, rootfs=str(rootfs), hostname=hostname)
    cmd = [*RUNSC, "--root", str(tmp_path / "state")]
    if strace:
        cmd.append("--strace")
    cmd += ["run", "--bundle", str(bundle), f"sec-{uuid.uuid4().hex[:12]}"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", env=env or repo_env(), cwd=bundle,
                            start_new_session=True, pass_fds=pass_fds)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"the sandbox did not finish within {timeout}s (killed):\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def probe_lines(p: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """`name: result` lines of a probe's stdout, as a dict."""
    out = {}
    for line in p.stdout.splitlines():
        name, sep, result = line.partition(": ")
        if sep:
            out[name] = result
    return out


# ===========================================================================
# 1. No path escapes the rootfs
# ===========================================================================

# (path inside the sandbox, what opening it must give): "twin" = the rootfs's
# /twin, "decoy" = the rootfs's copy at the canary's host path, "shadow" = the
# rootfs's /etc/shadow, "ENOENT" = nothing there inside the rootfs.
PATH_CASES = [
    ("/../canary", "ENOENT"),                         # `..` above /: the host's W/canary is right there
    ("/../../../../../../canary", "ENOENT"),
    ("/../twin", "twin"),
    ("/etc/../../../twin", "twin"),
    ("/tmp/../../twin", "twin"),
    ("../../../twin", "twin"),                        # relative, from cwd /
    ("/links/abs-canary", "decoy"),                   # absolute symlink to the canary's host path
    ("/links/abs-host-only", "ENOENT"),               # absolute symlink to a file only the host has
    ("/links/abs-dir/canary", "decoy"),               # absolute symlink to a host directory
    ("/links/abs-dir/../canary", "ENOENT"),
    ("/links/shadow", "shadow"),                      # symlink to /etc/shadow: the rootfs's
    ("/links/gshadow", "ENOENT"),                     # /etc/gshadow: the host's exists, the rootfs's not
    ("/links/up-canary", "ENOENT"),                   # relative symlink climbing above the root
    ("/links/up-twin", "twin"),
    ("/links/chain1", "ENOENT"),                      # a chain of relative symlinks ending above the root
    ("/links/twin1", "twin"),
    ("/links/updir/twin", "twin"),                    # symlink to a directory above the root
    ("/links/updir/../canary", "ENOENT"),
    ("/links/slashdotdot/twin", "twin"),
    ("/links/a/b/../../../../../../canary", "ENOENT"),
    ("/proc/self/root/twin", "twin"),                 # /proc/self/root is the sandbox's root
    ("/proc/self/root/../canary", "ENOENT"),
    ("/proc/self/root/../twin", "twin"),
    ("/proc/1/root/links/abs-canary", "decoy"),
    ("/proc/self/cwd/../../canary", "ENOENT"),
    ("/proc/self/cwd/../../twin", "twin"),
]


@pytest.mark.parametrize("path,expect", PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_path_resolves_inside_the_rootfs(world: World, tmp_path: Path, path: str, expect: str) -> None:
    p = run_sandbox(tmp_path, world.rootfs, ["/probe/catf", path])
    world.must_not_leak(p.stdout + p.stderr)
    assert p.returncode == 0, p.stderr
    want = {"twin": f"OK {world.rootfs_twin}", "decoy": f"OK {world.rootfs_decoy}",
            "shadow": f"OK {world.rootfs_shadow}", "ENOENT": "ERR ENOENT"}[expect]
    assert probe_lines(p).get(path) == want, p.stdout


def test_the_host_files_really_are_there(world: World) -> None:
    """The control: every ENOENT above names a file that exists on the host, right outside."""
    assert (world.base / "canary").read_text().strip() == world.host_canary
    assert (world.rootfs / ".." / "canary").read_text().strip() == world.host_canary
    assert os.path.exists("/etc/gshadow") or os.path.exists("/etc/shadow")
    assert not (world.rootfs / "canary").exists()
    assert (world.base / "only-on-host").exists() and not (world.rootfs / "etc/gshadow").exists()


def test_dot_dot_through_directory_fds_and_cwd(world: World, tmp_path: Path) -> None:
    p = run_sandbox(tmp_path, world.rootfs, ["/probe/dirfd"])
    world.must_not_leak(p.stdout + p.stderr)
    assert p.returncode == 0, p.stderr
    got = probe_lines(p)
    twin = f"OK {world.rootfs_twin}"
    assert got == {
        "openat(root, ..) is root": "same",
        "openat(root, ../../..) is root": "same",
        "openat(tmp, ../../..) is root": "same",
        "openat(root, ../canary)": "ERR ENOENT",
        "openat(root, ../twin)": twin,
        "openat(tmp, ../../../../twin)": twin,
        "chdir /tmp then ../../../..": "/",
        "open(twin) from there": twin,
        "open(../canary) from there": "ERR ENOENT",
        "fchdir(root) then ..": "/",
        "/proc/self/fd/ROOT/../canary": "ERR ENOENT",
        "/proc/self/fd/ROOT/../twin": twin,
    }, p.stdout


def test_listing_above_the_root_lists_the_root(world: World, tmp_path: Path) -> None:
    script = ("ls -a / ; echo @@; ls -a /.. ; echo @@; ls -a /../../.. ; echo @@; ls -a /links/updir ;"
              f" echo @@; ls -a /links/abs-dir ; echo @@; cd /.. && pwd")
    p = run_sandbox(tmp_path, world.rootfs, ["/bin/sh", "-c", script])
    world.must_not_leak(p.stdout + p.stderr)
    assert p.returncode == 0, p.stderr
    root, dotdot, dotdot3, updir, absdir, pwd = p.stdout.split("@@\n")
    assert "twin" in root.split() and "rootfs" not in root.split()
    assert dotdot == root and dotdot3 == root and updir == root
    # /links/abs-dir is the rootfs's directory at W's host path: only the decoy.
    assert absdir.split() == [".", "..", "canary"]
    assert pwd.strip() == "/"


def test_readlink_of_proc_self_root_is_slash(world: World, tmp_path: Path) -> None:
    p = run_sandbox(tmp_path, world.rootfs, ["/bin/sh", "-c", "readlink /proc/self/root; readlink /proc/1/cwd"])
    world.must_not_leak(p.stdout + p.stderr)
    assert p.stdout.split() == ["/", "/"], (p.stdout, p.stderr)


def test_a_bind_mount_is_no_way_out(world: World, tmp_path: Path) -> None:
    """A host directory bind-mounted at /data: `..` from its root is the sandbox's /, its
    symlinks (absolute, or relative and climbing out of it) resolve in the sandbox, not next
    to the bind source on the host, and a read-only bind mount cannot be written."""
    src = tmp_path / "hostdata" / "inner"
    src.mkdir(parents=True)
    sibling = f"HOST-SIBLING-{world.token}"
    (src.parent / "sibling").write_text(sibling + "\n")
    (src / "file").write_text("bound\n")
    os.symlink(str(src.parent / "sibling"), src / "abs-sibling")
    os.symlink("../sibling", src / "rel-sibling")
    os.symlink("../../../../../../twin", src / "up-twin")
    bundle = tmp_path / "bundle"
    paths = ["/data/file", "/data/../sibling", "/data/abs-sibling", "/data/rel-sibling", "/data/up-twin",
             "/data/../twin"]
    make_bundle(str(bundle), ["/bin/sh", "-c", f"/probe/catf {' '.join(paths)}; echo x > /data/new; echo write=$?"],
                rootfs=str(world.rootfs),
                mounts=[{"destination": "/proc", "type": "proc", "source": "proc"},
                        {"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind", "ro"]}])
    p = subprocess.run([*RUNSC, "--root", str(tmp_path / "state"), "run", "--bundle", str(bundle), "bind"],
                       capture_output=True, text=True, env=repo_env(), timeout=TIMEOUT, cwd=bundle)
    assert sibling not in p.stdout + p.stderr, p.stdout
    world.must_not_leak(p.stdout + p.stderr)
    got = probe_lines(p)
    assert got == {
        "/data/file": "OK bound",
        "/data/../sibling": "ERR ENOENT",
        "/data/abs-sibling": "ERR ENOENT",
        "/data/rel-sibling": "ERR ENOENT",
        "/data/up-twin": f"OK {world.rootfs_twin}",
        "/data/../twin": f"OK {world.rootfs_twin}",
    }, p.stdout + p.stderr
    assert "write=0" not in p.stdout and not (src / "new").exists()


@pytest.fixture(scope="module")
def scratch_world(tmp_path_factory: pytest.TempPathFactory, probes: dict[str, Path]) -> World:
    """A second world for tests that write into the rootfs (the first one stays pristine)."""
    return World(tmp_path_factory.mktemp("escape-rw"), probes)


def test_symlinks_the_application_makes_resolve_inside_the_rootfs(scratch_world: World, tmp_path: Path) -> None:
    w = scratch_world
    name = f"made-{uuid.uuid4().hex[:8]}"
    script = (f"ln -s {w.base}/canary /tmp/{name}-abs && cat /tmp/{name}-abs; echo @@;"
              f" ln -s ../../../../../../../../.. /tmp/{name}-up && cat /tmp/{name}-up/twin; echo @@;"
              f" cat /tmp/{name}-up/canary; echo @@;"
              f" ln -s {w.base} /tmp/{name}-dir && ls -a /tmp/{name}-dir")
    p = run_sandbox(tmp_path, w.rootfs, ["/bin/sh", "-c", script])
    w.must_not_leak(p.stdout + p.stderr)
    abs_, up_twin, up_canary, listing = p.stdout.split("@@\n")
    assert abs_.strip() == w.rootfs_decoy
    assert up_twin.strip() == w.rootfs_twin
    assert up_canary.strip() == "" and "No such file" in p.stderr
    assert "canary" in listing.split() and "rootfs" not in listing.split()


def test_writes_through_symlinks_and_dotdot_land_inside_the_rootfs(scratch_world: World, tmp_path: Path) -> None:
    """Creating a file through a symlink to a host directory, or a path climbing above the
    root, or renaming a file there, creates it in the rootfs, never on the host."""
    w = scratch_world
    tag = uuid.uuid4().hex[:8]
    script = (f"ln -s {w.base} /tmp/hd-{tag} && echo two > /tmp/hd-{tag}/via-dir-{tag};"
              f" echo three > /../../../../via-dotdot-{tag};"
              f" echo four > /tmp/r-{tag} && mv /tmp/r-{tag} /../../via-rename-{tag};"
              f" mkdir -p /tmp/deep-{tag} && cd /tmp/deep-{tag} && echo five > ../../../../via-cwd-{tag}")
    p = run_sandbox(tmp_path, w.rootfs, ["/bin/sh", "-c", script])
    assert p.returncode == 0, p.stderr
    decoy_dir = w.rootfs / str(w.base).lstrip("/")
    assert (decoy_dir / f"via-dir-{tag}").read_text() == "two\n"
    assert (w.rootfs / f"via-dotdot-{tag}").read_text() == "three\n"
    assert (w.rootfs / f"via-rename-{tag}").read_text() == "four\n"
    assert (w.rootfs / f"via-cwd-{tag}").read_text() == "five\n"
    on_host = [str(p) for d in (w.base, w.base.parent, w.base.parent.parent) for p in d.glob(f"via-*-{tag}")]
    assert on_host == [], f"the sandbox wrote outside its rootfs: {on_host}"


def test_o_creat_through_a_dangling_absolute_symlink_creates_the_target_inside_the_rootfs(
        scratch_world: World, tmp_path: Path) -> None:
    """Linux: open(O_CREAT) of a dangling symlink creates its target.  The target here is a host
    path that only exists (as a directory) inside the rootfs: the file appears there."""
    w = scratch_world
    tag = uuid.uuid4().hex[:8]
    target = f"{w.base}/via-dangling-{tag}"
    p = run_sandbox(tmp_path, w.rootfs, ["/bin/sh", "-c", f"ln -s {target} /tmp/dl-{tag} && echo one > /tmp/dl-{tag}"])
    assert not Path(target).exists(), "the sandbox created a file on the host"
    assert p.returncode == 0, p.stderr
    assert (w.rootfs / target.lstrip("/")).read_text() == "one\n"


def test_device_nodes_in_the_rootfs_do_not_open_host_devices(scratch_world: World, tmp_path: Path) -> None:
    """An image may carry device nodes; opening one must not reach the host's device
    (here the host's kernel log and physical memory)."""
    w = scratch_world
    d = w.rootfs / f"evil-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    os.mknod(d / "kmsg", 0o644 | stat.S_IFCHR, os.makedev(1, 11))
    os.mknod(d / "mem", 0o644 | stat.S_IFCHR, os.makedev(1, 1))
    inside = "/" + d.name
    p = run_sandbox(tmp_path, w.rootfs, ["/probe/catf", f"{inside}/kmsg", f"{inside}/mem"])
    got = probe_lines(p)
    for name in ("kmsg", "mem"):
        assert got.get(f"{inside}/{name}", "").startswith("ERR"), f"opened the host's /dev/{name}: {p.stdout!r}"


def test_a_host_unix_socket_in_the_rootfs_cannot_be_connected(scratch_world: World, tmp_path: Path) -> None:
    """A socket a host process listens on, found inside the rootfs, is no way out of the sandbox."""
    import socket
    w = scratch_world
    name = f"host-{uuid.uuid4().hex[:8]}.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(w.rootfs / name))
        listener.listen(1)
        listener.setblocking(False)
        p = run_sandbox(tmp_path, w.rootfs, ["/probe/uconn", f"/{name}"])
        try:
            conn, _ = listener.accept()
            conn.close()
            accepted = True
        except BlockingIOError:
            accepted = False
    finally:
        listener.close()
    assert not accepted, "a host process accepted a connection from inside the sandbox"
    assert probe_lines(p).get("connect", "").startswith("ERR") or probe_lines(p).get("socket", "").startswith("ERR"), \
        p.stdout


def test_a_read_only_shared_file_mapping_cannot_be_made_writable(scratch_world: World, tmp_path: Path) -> None:
    """Linux refuses mprotect(PROT_WRITE) on a MAP_SHARED mapping of a file opened O_RDONLY
    (EACCES).  Otherwise an unprivileged process rewrites a root-owned 0644 file for every
    reader in the sandbox, and a write-back would reach the host file."""
    w = scratch_world
    victim = w.rootfs / f"victim-{uuid.uuid4().hex[:8]}"
    victim.write_text("original content\n")
    os.chmod(victim, 0o644)
    bundle = tmp_path / "bundle"
    make_bundle(str(bundle), ["/probe/shmap", "/" + victim.name], rootfs=str(w.rootfs),
                user={"uid": 1000, "gid": 1000})
    p = subprocess.run([*RUNSC, "--root", str(tmp_path / "state"), "run", "--bundle", str(bundle), "shmap"],
                       capture_output=True, text=True, env=repo_env(), timeout=TIMEOUT, cwd=bundle)
    assert victim.read_text() == "original content\n", "the host file was changed"
    got = probe_lines(p)
    assert got.get("mmap rw shared") == "EACCES", p.stdout
    assert "PWNED" not in p.stdout, f"a read-only mapping was written and other readers saw it:\n{p.stdout}"
    assert got.get("mprotect rw") == "EACCES", p.stdout


def test_runsc_do_writes_stay_in_the_sandbox(tmp_path: Path) -> None:
    """`runsc-py do` serves the host's root read-only: creating, changing and deleting files
    inside works on an in-memory layer and never touches the host."""
    victim = tmp_path / "victim.txt"
    victim.write_text("host content\n")
    new = tmp_path / f"created-{uuid.uuid4().hex[:8]}"
    script = (f"echo x > {new} && echo changed > {victim} && rm -f {victim}.gone; rm {victim} && "
              f"mkdir {new}.d && echo ok")
    (tmp_path / "victim.txt.gone").write_text("keep me\n")
    p = subprocess.run([*RUNSC, "do", "--", BUSYBOX, "sh", "-c", script], capture_output=True, text=True,
                       env=repo_env(), timeout=TIMEOUT, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and p.stdout == "ok\n", (p.stdout, p.stderr)
    assert victim.read_text() == "host content\n"
    assert (tmp_path / "victim.txt.gone").read_text() == "keep me\n"
    assert not new.exists() and not Path(f"{new}.d").exists()


def _tree(root: Path) -> dict[str, tuple]:
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            path = os.path.join(dirpath, n)
            st = os.lstat(path)
            snap[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_uid, st.st_gid)
    return snap


def test_a_read_only_root_cannot_be_changed(tmp_path: Path) -> None:
    """root.readonly: every kind of change is EROFS and the host tree stays byte-for-byte the same."""
    rootfs = Path(make_busybox_rootfs(str(tmp_path / "rootfs")))
    before = _tree(rootfs)
    ops = ["touch /new", "mkdir /newdir", "ln -s x /newlink", "ln /etc/passwd /hardlink", "echo x >> /etc/passwd",
           "mv /etc/group /etc/group2", "rm /etc/hostname", "chmod 777 /etc/passwd", "chown 1:1 /etc/passwd",
           "touch -d 2001-01-01 /etc/passwd", "echo x > /tmp/t", "mkfifo /tmp/fifo", "truncate -s 0 /etc/passwd"]
    script = "; ".join(f"{op} 2>/dev/null; echo $?" for op in ops)
    bundle = tmp_path / "bundle"
    cfg = default_config(["/bin/sh", "-c", script], root={"path": str(rootfs), "readonly": True})
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(cfg))
    proc = subprocess.run([*RUNSC, "--root", str(tmp_path / "state"), "run", "--bundle", str(bundle), "ro"],
                          capture_output=True, text=True, env=repo_env(), timeout=TIMEOUT, cwd=bundle)
    assert proc.returncode == 0, proc.stderr
    statuses = proc.stdout.split()
    assert len(statuses) == len(ops) and all(s != "0" for s in statuses), \
        [op for op, st in zip(ops, statuses) if st == "0"]
    assert _tree(rootfs) == before


# ===========================================================================
# 2. Application syscalls never reach the host
# ===========================================================================

def test_pids_kill_and_uname_are_answered_by_the_sentry(world: World, tmp_path: Path) -> None:
    hostname = f"sec-{world.token[:10]}"
    received: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: received.append(s))
    try:
        p = run_sandbox(tmp_path, world.rootfs, ["/probe/ids", str(os.getpid())], hostname=hostname)
        time.sleep(0.2)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert p.returncode == 0, p.stderr
    assert probe_lines(p) == {
        "getpid": "1",
        "getppid": "0",
        "gettid": "1",
        "kill(host pid, 0)": "-1 ESRCH",
        "kill(host pid, SIGUSR1)": "-1 ESRCH",
        "tgkill(host pid, host pid, SIGUSR1)": "-1 ESRCH",
        "kill(-1, 0)": "-1 ESRCH",          # nobody else in the sandbox's pid namespace
        "nodename": hostname,
    }, p.stdout
    assert received == [], "a signal from inside the sandbox reached the host test process"
    assert os.uname().nodename != hostname


def _proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _alive(pid: int) -> bool:
    try:
        return not _proc_status(pid)["State"].startswith(("Z", "X"))
    except (FileNotFoundError, ProcessLookupError):
        return False


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _traced_by(tracer: int) -> list[int]:
    out = []
    for pid in _all_pids():
        try:
            if _proc_status(pid).get("TracerPid") == str(tracer):
                out.append(pid)
        except OSError:
            pass
    return out


def _wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def _descendants(root: int) -> list[int]:
    """Every live process below `root` (children, grandchildren, ...)."""
    kids: dict[int, list[int]] = {}
    for pid in _all_pids():
        try:
            st = _proc_status(pid)
        except OSError:
            continue
        if not st["State"].startswith(("Z", "X")):
            kids.setdefault(int(st["PPid"]), []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _find_sentry(run_pid: int) -> tuple[int, list[int]]:
    """The Sentry below a `runsc-py run` process: the tracer of its stub processes; (sentry, stubs)."""
    stubs = [p for p in _descendants(run_pid) if _is_stub(p)]
    if not stubs:
        return 0, []
    tracers = {_proc_status(p)["TracerPid"] for p in stubs}
    assert len(tracers) == 1, f"stubs traced by several processes: {tracers}"
    return int(tracers.pop()), stubs


def _kill_tree(pid: int) -> None:
    for p in [pid, *_descendants(pid)]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Sleeper:
    """A sandbox whose processes sleep: the `runsc-py run` process, its Sentry and the stubs."""

    def __init__(self, tmp_path: Path, rootfs: Path) -> None:
        bundle = tmp_path / "sleeper"
        # Three application processes (sh and two sleeps), so three stubs.
        make_bundle(str(bundle), ["/bin/sh", "-c", "sleep 60 & sleep 60 & wait"], rootfs=str(rootfs))
        self.proc = subprocess.Popen([*RUNSC, "--root", str(tmp_path / "state"), "run", "--bundle", str(bundle),
                                      f"sleeper-{uuid.uuid4().hex[:8]}"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=repo_env(),
                                     start_new_session=True)
        try:
            # Wait until the application sleeps in its stub.
            _wait_for(lambda: len(_find_sentry(self.proc.pid)[1]) >= 3, 30, "the sandbox's three stub processes")
            time.sleep(0.3)
            self.sentry, self.stubs = _find_sentry(self.proc.pid)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            _kill_tree(self.proc.pid)
        self.proc.communicate(timeout=30)


def _is_stub(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/exe").startswith("/memfd:runsc-py-stub")
    except OSError:
        return False


@pytest.fixture
def sleeper(world: World, tmp_path: Path):
    s = Sleeper(tmp_path, world.rootfs)
    yield s
    s.kill()


def test_stub_processes_are_filtered_and_hold_only_the_memory_file(sleeper: Sleeper) -> None:
    assert sleeper.stubs, "no stub process found"
    for pid in sleeper.stubs:
        st = _proc_status(pid)
        assert st["TracerPid"] == str(sleeper.sentry)
        assert st["Seccomp"] == "2", st
        assert st["NoNewPrivs"] == "1", st
        with open(f"/proc/{pid}/comm") as f:
            assert "runsc-py" in f.read()        # "runsc-py-stub" (or "memfd:runsc-py-" from fexecve)
        fds = {fd: os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert len(fds) == 1 and next(iter(fds.values())).startswith("/memfd:runsc-py-memory"), fds
        # Every thread of the stub is traced by the Sentry and filtered.
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                tst = f.read()
            assert f"TracerPid:\t{sleeper.sentry}\n" in tst and "Seccomp:\t2\n" in tst, tst


def test_stub_maps_only_its_page_and_the_memory_file(sleeper: Sleeper) -> None:
    for pid in sleeper.stubs:
        with open(f"/proc/{pid}/maps") as f:
            maps = f.read().splitlines()
        names = [ln.split(None, 5)[5] if len(ln.split(None, 5)) == 6 else "(anonymous)" for ln in maps]
        unexpected = [ln for ln, n in zip(maps, names)
                      if n not in ("/memfd:runsc-py-stub (deleted)", "/memfd:runsc-py-memory (deleted)",
                                   "[vsyscall]")]   # vsyscall: the kernel's fixed page, never a VMA to unmap
        assert unexpected == [], "\n".join(maps)
        assert sum(n == "/memfd:runsc-py-stub (deleted)" for n in names) == 1, "\n".join(maps)
        assert not any(n in ("[vdso]", "[vvar]", "[stack]", "[heap]") for n in names)


def test_killing_the_sentry_leaves_nothing_behind(sleeper: Sleeper) -> None:
    others = [p for p in _descendants(sleeper.sentry) if p not in sleeper.stubs]   # the Gofer
    threads = [int(t) for pid in sleeper.stubs for t in os.listdir(f"/proc/{pid}/task")]
    everything = [sleeper.sentry] + sleeper.stubs + threads + others
    os.kill(sleeper.sentry, signal.SIGKILL)
    # The front end notices and ends too (with a failure status), rather than hanging.
    sleeper.proc.communicate(timeout=30)
    assert sleeper.proc.returncode != 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in everything):
        time.sleep(0.05)
    left = [(p, _proc_status(p).get("Name")) for p in everything if _alive(p)]
    assert left == [], f"still running 10s after the Sentry was SIGKILLed: {left}"


def test_the_gofer_is_chrooted_into_the_rootfs_and_holds_nothing_outside_it(sleeper: Sleeper,
                                                                            world: World) -> None:
    """The Gofer (the Sentry's non-stub child) lives in the rootfs: its root and cwd are the
    rootfs, each file it holds is inside it, and it is filtered without the capabilities a
    chroot escape needs (SYS_CHROOT, SYS_ADMIN, SYS_PTRACE)."""
    gofers = [p for p in _descendants(sleeper.sentry) if p not in sleeper.stubs and not _is_stub(p)]
    assert len(gofers) == 1, gofers
    gofer = gofers[0]
    rootfs = os.path.realpath(world.rootfs)
    assert os.readlink(f"/proc/{gofer}/root") == rootfs
    assert os.readlink(f"/proc/{gofer}/cwd") == rootfs
    outside = []
    for fd in os.listdir(f"/proc/{gofer}/fd"):
        try:
            target = os.readlink(f"/proc/{gofer}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("/") and not (target == rootfs or target.startswith(rootfs + "/")):
            outside.append((fd, target))
    assert outside == [], f"the Gofer holds host files outside the rootfs: {outside}"
    st = _proc_status(gofer)
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", st
    for field in ("CapEff", "CapPrm", "CapBnd"):
        caps = int(st[field], 16)
        for cap, name in ((18, "SYS_CHROOT"), (21, "SYS_ADMIN"), (19, "SYS_PTRACE"), (16, "SYS_MODULE")):
            assert not caps >> cap & 1, f"the Gofer keeps CAP_{name} in {field}"


# ===========================================================================
# The application cannot reach the platform under it
# ===========================================================================

STUB_OPS = ["mmap-fixed", "mmap-fixed-shared", "mmap-fixed-straddling", "mmap-fixed-noreplace", "mprotect",
            "madvise", "munmap", "munmap-straddling", "mremap-fixed", "mremap-grow-in-place"]


@pytest.mark.parametrize("op", STUB_OPS)
def test_the_application_cannot_touch_the_stub_page(world: World, tmp_path: Path, op: str) -> None:
    """The stub's page (its `syscall; int3` injection site) is above every application address:
    mapping over it, moving a mapping onto it, growing into it, changing its protection or
    unmapping it is refused, and from the host the page is still the stub's own, read-only code."""
    from platforms.ptrace.stub import STUB_BASE, STUB_SIZE
    bundle = tmp_path / "stubpage"
    make_bundle(str(bundle), ["/probe/stubpage", op, hex(STUB_BASE), hex(STUB_SIZE)], rootfs=str(world.rootfs))
    proc = subprocess.Popen([*RUNSC, "--root", str(tmp_path / "state"), "run", "--bundle", str(bundle),
                             f"stubpage-{uuid.uuid4().hex[:8]}"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=repo_env(), start_new_session=True)
    try:
        out = _read_until(proc, b"ready\n", 30).decode(errors="replace")
        sentry, stubs = _find_sentry(proc.pid)
        maps = ""
        for pid in stubs:
            with open(f"/proc/{pid}/maps") as f:
                text = f.read()
            # Only stubs holding application memory: the Sentry also keeps a few spare stubs ready.
            if "runsc-py-memory" in text:
                maps += text
    finally:
        _kill_tree(proc.pid)
        _, err = proc.communicate(timeout=30)
    assert "ready" in out, f"{op} on the stub page: the probe never got through (the Sentry hung or died):\n" \
        f"stdout: {out!r}\nstderr: {err.decode(errors='replace')}"
    got = probe_lines(subprocess.CompletedProcess([], 0, out, ""))
    assert got.get(op, "").startswith("-1 "), f"{op} on the stub page was not refused: {out}"
    assert "still working" in out, out
    stub_lines = [ln for ln in maps.splitlines() if int(ln.split("-")[0], 16) < STUB_BASE + STUB_SIZE
                  and int(ln.split("-")[1].split()[0], 16) > STUB_BASE]
    assert len(stub_lines) == 1 and stub_lines[0].split()[1] == "r-xp" \
        and stub_lines[0].endswith("/memfd:runsc-py-stub (deleted)"), f"the stub page was changed:\n{maps}"


def test_a_32_bit_int80_syscall_is_not_run_as_the_64_bit_call_of_that_number(world: World, tmp_path: Path) -> None:
    """`int $0x80` with eax=1 is i386 exit(1).  The Sentry may run it as that, refuse it (ENOSYS)
    or kill the process; it must never treat it as x86_64 syscall 1, write(rdi, rsi, rdx)."""
    p = run_sandbox(tmp_path, world.rootfs, ["/probe/int80"], timeout=60)
    assert "MISREAD" not in p.stdout, f"int $0x80 ran as x86_64 write(): {p.stdout!r}"
    assert "Traceback" not in p.stderr


def test_a_vsyscall_call_does_not_reach_the_host_or_break_the_sentry(world: World, tmp_path: Path) -> None:
    """The host kernel emulates the legacy vsyscall page.  In the stub that call comes from an
    instruction other than the injection site, so the stub's filter kills it (or the Sentry
    emulates it); either way the Sentry reports cleanly and nothing keeps running."""
    p = run_sandbox(tmp_path, world.rootfs, ["/probe/vsyscall"], timeout=60)
    assert p.stdout.startswith("before\n"), p.stdout
    assert "Traceback" not in p.stderr, p.stderr
    if "vsyscall time" not in p.stdout:
        assert p.returncode != 0, (p.stdout, p.stderr)


def test_host_fds_and_environment_do_not_reach_the_application(world: World, tmp_path: Path) -> None:
    """An fd and an environment variable the runtime was started with stay outside the sandbox."""
    secret = f"HOST-ENV-{world.token}"
    env = dict(repo_env(), RUNSC_SECURITY_SECRET=secret)
    fd = os.open(world.base / "canary", os.O_RDONLY)
    try:
        os.dup2(fd, 37)
        p = run_sandbox(tmp_path, world.rootfs,
                        ["/bin/sh", "-c", "/probe/fds; env; cat /proc/self/environ /proc/1/environ; echo;"
                         " cat <&37; ls /proc/self/fd"], env=env, pass_fds=(37,))
    finally:
        os.close(fd)
        os.close(37)
    world.must_not_leak(p.stdout + p.stderr)
    assert secret not in p.stdout
    assert [ln for ln in p.stdout.splitlines() if ln.startswith("open ")] == ["open 0", "open 1", "open 2"], p.stdout


def test_proc_mounts_do_not_reveal_host_paths(world: World, tmp_path: Path) -> None:
    p = run_sandbox(tmp_path, world.rootfs, ["/bin/sh", "-c", "cat /proc/self/mounts /proc/self/mountinfo;"
                                             " for l in exe cwd root; do readlink /proc/self/$l; done"])
    assert p.returncode == 0, p.stderr
    assert str(world.base) not in p.stdout and "pytest" not in p.stdout, p.stdout


# ===========================================================================
# 4. The Sentry opens no host path after start-up
# ===========================================================================

PATH_SYSCALLS = re.compile(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\w+)\((.*)$")


def _read_until(proc: subprocess.Popen, marker: bytes, timeout: float) -> bytes:
    """Read the sandbox's stdout (unbuffered) until `marker` has arrived, EOF or the timeout."""
    out = b""
    deadline = time.monotonic() + timeout
    while marker not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
    return out


def test_the_sentry_opens_no_host_path_after_start_up(world: World, tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    bundle = tmp_path / "shell"
    make_bundle(str(bundle), ["/bin/sh"], rootfs=str(world.rootfs))
    proc = subprocess.Popen([*RUNSC, "--root", str(tmp_path / "state"), "run", "--bundle", str(bundle),
                             f"shell-{uuid.uuid4().hex[:8]}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=repo_env(), start_new_session=True)
    log = tmp_path / "strace.log"
    tracer = None
    try:
        # Start-up is over once the shell answers.
        proc.stdin.write(b"echo ready\n")
        proc.stdin.flush()
        assert _read_until(proc, b"ready\n", 60) == b"ready\n", "the sandboxed shell did not answer"
        sentry, stubs = _find_sentry(proc.pid)
        assert sentry and stubs, "no Sentry tracing a stub below the `runsc-py run` process"
        tids = sorted(int(t) for t in os.listdir(f"/proc/{sentry}/task"))
        tracer = subprocess.Popen(["strace", "-q", "-e", "trace=%file,openat2,creat,open,recvmsg",
                                   "-o", str(log), *[a for t in tids for a in ("-p", str(t))]],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # strace -q hides "attached" lines; wait until every Sentry thread shows it as its tracer.
        _wait_for(lambda: all(_proc_status(t).get("TracerPid") == str(tracer.pid)
                              for t in tids if os.path.exists(f"/proc/{t}")), 30, "strace to attach")
        digest = hashlib.sha256(Path(BUSYBOX).read_bytes()).hexdigest()
        proc.stdin.write(b"cat /etc/passwd; ls -l /; sha256sum /bin/busybox;"
                         b" head -c 10 /dev/urandom | wc -c; cat /links/abs-canary\n"
                         # More of the Sentry's code paths, so a lazy import or a stray host open shows:
                         b"ls -l /proc/self/ /dev >/dev/null; cat /proc/self/status >/dev/null; sleep 0.1;"
                         b" id; uname -a; date >/dev/null; find /etc /links -maxdepth 1 >/dev/null;"
                         b" stat /links/abs-canary >/dev/null; readlink /links/abs-dir; no-such-cmd 2>/dev/null;"
                         b" (exit 3); echo status=$?; kill -0 $$; cat /probe/../twin; echo x | wc -c;"
                         b" echo @@end@@\n")
        proc.stdin.flush()
        out = _read_until(proc, b"@@end@@\n", TIMEOUT)
        # The window ends while the application still runs: detach strace, then let the shell exit.
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        rest, err = proc.communicate(b"exit 0\n", timeout=TIMEOUT)
        out += rest
    finally:
        if proc.poll() is None:
            _kill_tree(proc.pid)
            proc.communicate()
        if tracer is not None and tracer.poll() is None:
            tracer.kill()
            tracer.wait()
    text = out.decode(errors="replace")
    world.must_not_leak(text + err.decode(errors="replace"))
    assert proc.returncode == 0, err.decode(errors="replace")
    assert (world.rootfs / "etc/passwd").read_text() in text
    assert "twin" in text and "links" in text                      # ls -l /
    assert f"{digest}  /bin/busybox" in text
    assert "\n10\n" in text
    assert world.rootfs_decoy in text
    assert "status=3" in text and f"{world.base}\n" in text         # (exit 3); readlink /links/abs-dir
    # Every path-taking syscall the Sentry made while the application opened,
    # listed and read files: none may name a host path.
    calls, gofer_replies = [], 0
    for line in log.read_text().splitlines():
        m = PATH_SYSCALLS.match(line)
        if not m:
            continue
        name, args = m.groups()
        if name == "recvmsg":
            gofer_replies += 1
            continue
        # fd-relative with an empty path (fstatat(fd, "", AT_EMPTY_PATH)) names no path.
        if re.match(r'^(\d+|AT_FDCWD), "", ', args) and "AT_EMPTY_PATH" in args:
            continue
        calls.append(line)
    # The control: strace did watch the Sentry receive the Gofer's replies (and their fds).
    assert gofer_replies > 0, "strace saw no recvmsg: it was not watching the Sentry"
    assert calls == [], "the Sentry made path-based host syscalls after start-up:\n" + "\n".join(calls)


# ===========================================================================
# 5. Unimplemented syscalls and --strace
# ===========================================================================

def _unimplemented() -> tuple[int, str]:
    p = subprocess.run([*RUNSC, "syscalls", "--format", "json"], capture_output=True, text=True,
                       env=repo_env(), timeout=60, check=True)
    table = json.loads(p.stdout)
    unimpl = {e["name"]: e["nr"] for e in table if e["support"] == "unimplemented"}
    for name in ("acct", "vhangup", "sysfs", "ustat", "syslog", "swapoff"):
        if name in unimpl:
            return unimpl[name], name
    pytest.skip("no harmless unimplemented syscall left in the table")


def test_an_unimplemented_syscall_is_enosys_and_named_once(world: World, tmp_path: Path) -> None:
    nr, name = _unimplemented()
    p = run_sandbox(tmp_path, world.rootfs, ["/probe/nosys", str(nr)])
    assert p.returncode == 0, p.stderr
    assert probe_lines(p) == {"call 0": "-1 ENOSYS", "call 1": "-1 ENOSYS"}, p.stdout
    mentions = [ln for ln in p.stderr.splitlines() if re.search(rf"\b{name}\b", ln)]
    assert len(mentions) == 1, f"expected the log to name {name} exactly once:\n{p.stderr}"
    assert "unimplemented" in mentions[0] and str(nr) in mentions[0], mentions[0]


def _strace_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if re.match(r"^\[\s*\d+:\s*\d+\] \w+\(", ln)]


def test_strace_shows_every_call_with_decoded_arguments(world: World, tmp_path: Path) -> None:
    p = run_sandbox(tmp_path, world.rootfs, ["/probe/calls"], strace=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello\n"
    lines = [re.sub(r"^\[\s*\d+:\s*\d+\] ", "", ln) for ln in _strace_lines(p.stderr)]
    names = [ln.split("(", 1)[0] for ln in lines]
    # Between the begin marker (getppid twice in a row) and the end marker.
    start = next(i for i in range(len(names) - 1) if names[i] == names[i + 1] == "getppid") + 2
    end = names.index("getppid", start)
    between = lines[start:end]
    assert [ln.split("(", 1)[0] for ln in between] == ["openat", "read", "close", "close", "write", "getpid",
                                                        "lseek"], "\n".join(lines)
    openat, read, close3, close99, write, getpid, lseek = between
    assert re.search(r"""['"]/etc/hostname['"]""", openat) and re.search(r"= 3$", openat), openat
    assert re.search(r"^read\(3, 0x[0-9a-f]+, 5\) = 5$", read), read
    assert re.search(r"^close\(3\) = 0$", close3), close3
    assert re.search(r"^close\(99\) = -1 EBADF", close99), close99
    assert re.search(r"^write\(1, .*, 6\) = 6$", write), write
    assert re.search(r"^lseek\(1000, (0x)?7, .*\) = -1 EBADF", lseek), lseek
    assert getpid.endswith("= 1"), getpid


def test_strace_shows_no_arguments_for_a_call_that_takes_none(world: World, tmp_path: Path) -> None:
    """`getpid()`, not six raw registers: decoding follows each syscall's prototype."""
    p = run_sandbox(tmp_path, world.rootfs, ["/probe/calls"], strace=True)
    lines = [re.sub(r"^\[\s*\d+:\s*\d+\] ", "", ln) for ln in _strace_lines(p.stderr)]
    assert "getpid() = 1" in lines, "\n".join(ln for ln in lines if ln.startswith(("getpid", "getppid")))
    assert "getppid() = 0" in lines


# ===========================================================================
# 6. Bad input leaves nothing running
# ===========================================================================

# Runs a command as a child subreaper: any process the command leaves behind
# (even one that double-forked or setsid'd away) is reparented to the watcher,
# which reports it, kills it and reaps it.
WATCHER = r'''
import ctypes, json, os, signal, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)          # PR_SET_CHILD_SUBREAPER
cmd, report, cwd = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
# Files, not pipes: a leftover process holding a pipe open must not make us wait for it.
with open(report + ".out", "w+b") as out, open(report + ".err", "w+b") as err:
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=120, cwd=cwd)
    out.seek(0); err.seek(0)
    p.stdout, p.stderr = out.read(), err.read()
me = str(os.getpid())

def reap():
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return

def children():
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[1] != me or fields[0] == "Z":
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cl = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        out[pid] = f"{comm}: {cl}"
    return out

deadline = time.monotonic() + 2.0
reap()
left = children()
while left and time.monotonic() < deadline:
    time.sleep(0.05)
    reap()
    left = children()
for _ in range(50):
    now = children()
    if not now:
        break
    for pid in now:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.05)
    reap()
with open(report, "w") as f:
    json.dump({"returncode": p.returncode, "stdout": p.stdout.decode(errors="replace"),
               "stderr": p.stderr.decode(errors="replace"), "left": left}, f)
'''


def watched(tmp_path: Path, *args: str) -> dict:
    report = tmp_path / f"report-{uuid.uuid4().hex[:8]}.json"
    cmd = [*RUNSC, "--root", str(tmp_path / "state"), *args]
    subprocess.run([sys.executable, "-c", WATCHER, json.dumps(cmd), str(report), str(tmp_path)],
                   env=repo_env(), timeout=180, check=True)
    return json.loads(report.read_text())


def assert_clean_failure(r: dict) -> str:
    assert r["returncode"] != 0, r
    assert "Traceback" not in r["stderr"] + r["stdout"], r["stderr"]
    lines = r["stderr"].strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr:\n{r['stderr']}"
    assert r["left"] == {}, f"left running after the command failed: {r['left']}"
    return lines[0]


@pytest.fixture(scope="session")
def plain_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(make_busybox_rootfs(str(tmp_path_factory.mktemp("plain") / "rootfs")))


def _bundle(tmp_path: Path, rootfs: Path | None, args: list[str]) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir(exist_ok=True)
    cfg = default_config(args)
    cfg["root"]["path"] = str(rootfs) if rootfs else str(tmp_path / "no-such-rootfs")
    (bundle / "config.json").write_text(json.dumps(cfg))
    return bundle


def test_missing_bundle_leaves_nothing(tmp_path: Path) -> None:
    line = assert_clean_failure(watched(tmp_path, "run", "--bundle", str(tmp_path / "nope"), "c1"))
    assert "nope" in line


def test_malformed_config_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "config.json").write_text('{"ociVersion": "1.0.2", "process": {')
    line = assert_clean_failure(watched(tmp_path, "run", "--bundle", str(tmp_path / "bundle"), "c1"))
    assert "config.json" in line


def test_config_without_process_args_leaves_nothing(tmp_path: Path, plain_rootfs: Path) -> None:
    bundle = _bundle(tmp_path, plain_rootfs, ["/bin/true"])
    cfg = json.loads((bundle / "config.json").read_text())
    del cfg["process"]["args"]
    (bundle / "config.json").write_text(json.dumps(cfg))
    line = assert_clean_failure(watched(tmp_path, "run", "--bundle", str(bundle), "c1"))
    assert "process.args" in line


@pytest.mark.parametrize("command", ["run", "create"])
def test_missing_rootfs_leaves_nothing(tmp_path: Path, command: str) -> None:
    bundle = _bundle(tmp_path, None, ["/bin/true"])
    line = assert_clean_failure(watched(tmp_path, command, "--bundle", str(bundle), "c1"))
    assert "no-such-rootfs" in line


@pytest.mark.parametrize("args0", ["/bin/no-such-program", "no-such-program", "/etc"],
                         ids=["absolute", "in-PATH", "a-directory"])
@pytest.mark.parametrize("command", ["run", "create"])
def test_missing_executable_leaves_nothing(tmp_path: Path, plain_rootfs: Path, command: str, args0: str) -> None:
    """This one gets as far as starting the Sentry and the Gofer: both must be gone afterwards."""
    bundle = _bundle(tmp_path, plain_rootfs, [args0])
    r = watched(tmp_path, command, "--bundle", str(bundle), "c1")
    line = assert_clean_failure(r)
    assert args0 in line, line
    assert not (tmp_path / "state").exists() or os.listdir(tmp_path / "state") == [], \
        os.listdir(tmp_path / "state")


@pytest.mark.parametrize("bad_id", ["../x", "", "x" * 1025], ids=["dotdot", "empty", "1025-chars"])
def test_bad_container_id_leaves_nothing(tmp_path: Path, plain_rootfs: Path, bad_id: str) -> None:
    bundle = _bundle(tmp_path, plain_rootfs, ["/bin/true"])
    assert_clean_failure(watched(tmp_path, "run", "--bundle", str(bundle), "--", bad_id))
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


FINISHED = {
    "exit-0": (["/bin/true"], 0),
    "exit-7": (["/bin/sh", "-c", "exit 7"], 7),
    "background-children": (["/bin/sh", "-c", "sleep 100 & sleep 100 & exit 3"], 3),
    "child-killed-by-a-signal": (["/bin/sh", "-c", "sleep 100 & /bin/sh -c 'kill -SEGV $$'; exit $?"], 128 + signal.SIGSEGV),
}


@pytest.mark.parametrize("case", sorted(FINISHED))
def test_a_finished_sandbox_leaves_nothing_running(tmp_path: Path, plain_rootfs: Path, case: str) -> None:
    """When the container's init ends, the sandbox ends: its other processes, the Sentry, the
    stubs and the Gofer are all gone (the watcher is their subreaper, so none can hide)."""
    args, status = FINISHED[case]
    bundle = _bundle(tmp_path, plain_rootfs, args)
    r = watched(tmp_path, "run", "--bundle", str(bundle), "c1")
    assert r["returncode"] == status, r
    assert "Traceback" not in r["stderr"], r["stderr"]
    assert r["left"] == {}, f"left running after the container exited: {r['left']}"
