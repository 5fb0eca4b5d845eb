"""The sandbox's filesystems, end to end: a busybox container changes its rootfs,
reads its own /proc, and gets the mounts its config.json asks for.

Each test runs `runsc-py run` on a fresh busybox bundle (real Gofer, real
ptrace platform) and checks what the container printed and what the host
sees in the bundle afterwards.  Commands are single busybox applets or a
small static C probe (`/bin/fsprobe`, built here) so that each check names
exactly one syscall's errno.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import uuid

import pytest

from tests.rootfs import default_config, make_busybox_rootfs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 120

PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* fsprobe OP ARGS...: do one syscall, print "ok" or the errno name. */
int main(int argc, char **argv)
{
	int r = -1;
	const char *op = argv[1];
	if (!strcmp(op, "rename")) r = rename(argv[2], argv[3]);
	else if (!strcmp(op, "link")) r = link(argv[2], argv[3]);
	else if (!strcmp(op, "mkdir")) r = mkdir(argv[2], 0755);
	else if (!strcmp(op, "creat")) { r = open(argv[2], O_CREAT | O_WRONLY, 0644); if (r >= 0) r = 0; }
	else if (!strcmp(op, "read")) { r = open(argv[2], O_RDONLY); if (r >= 0) r = 0; }
	else if (!strcmp(op, "write1m")) {
		/* write MiB after MiB to argv[2] until argv[3] MiB or an error */
		static char buf[1 << 20];
		int fd = open(argv[2], O_CREAT | O_WRONLY | O_TRUNC, 0644), n = atoi(argv[3]), i;
		if (fd < 0) { printf("%s\n", strerrorname_np(errno)); return 1; }
		for (i = 0; i < n; i++) {
			long w = write(fd, buf, sizeof buf);
			if (w < 0) { printf("MiB %d: %s\n", i + 1, strerrorname_np(errno)); return 1; }
			if (w != sizeof buf) { printf("MiB %d: short %ld\n", i + 1, w); return 1; }
		}
		r = 0;
	}
	else if (!strcmp(op, "many")) {
		/* create, stat, rename and remove argv[3] files in directory argv[2] */
		int n = atoi(argv[3]), i;
		char p[512], q[512];
		struct stat s;
		mkdir(argv[2], 0755);
		for (i = 0; i < n; i++) {
			snprintf(p, sizeof p, "%s/f%d", argv[2], i);
			int fd = open(p, O_CREAT | O_WRONLY, 0644);
			if (fd < 0 || write(fd, "x", 1) != 1) { printf("create %d: %s\n", i, strerrorname_np(errno)); return 1; }
			close(fd);
		}
		for (i = 0; i < n; i++) {
			snprintf(p, sizeof p, "%s/f%d", argv[2], i);
			snprintf(q, sizeof q, "%s/g%d", argv[2], i);
			if (stat(p, &s) || s.st_size != 1 || rename(p, q)) { printf("stat/rename %d: %s\n", i, strerrorname_np(errno)); return 1; }
		}
		for (i = 0; i < n; i++) {
			snprintf(q, sizeof q, "%s/g%d", argv[2], i);
			if (unlink(q)) { printf("unlink %d: %s\n", i, strerrorname_np(errno)); return 1; }
		}
		r = rmdir(argv[2]);
	}
	if (r < 0) { printf("%s\n", strerrorname_np(errno)); return 1; }
	printf("ok\n");
	return 0;
}
"""


@pytest.fixture(scope="session")
def probe(tmp_path_factory) -> str:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the probe")
    out = str(tmp_path_factory.mktemp("probe") / "fsprobe")
    src = out + ".c"
    with open(src, "w") as f:
        f.write(PROBE_C)
    subprocess.run(["gcc", "-O1", "-static", "-o", out, src], check=True)
    return out


@pytest.fixture
def bundle(tmp_path, probe):
    """A busybox bundle; returns a function running one command in it: (status, stdout, stderr)."""
    path = tmp_path / "bundle"
    rootfs = path / "rootfs"
    make_busybox_rootfs(str(rootfs))
    shutil.copy(probe, rootfs / "bin" / "fsprobe")

    def run(args: list[str], mounts: list[dict] | None = None, flags: tuple[str, ...] = (),
            **over) -> tuple[int, str, str]:
        cfg = default_config(args, **over)
        if mounts is not None:
            cfg["mounts"] = [{"destination": "/proc", "type": "proc", "source": "proc"}] + mounts
        with open(path / "config.json", "w") as f:
            json.dump(cfg, f)
        cid = f"fs-{uuid.uuid4().hex[:8]}"
        state = tmp_path / "state"
        env = dict(os.environ, PYTHONPATH=REPO)
        proc = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(state), *flags, "run",
                               "--bundle", str(path), cid], capture_output=True, text=True, env=env,
                              timeout=TIMEOUT, stdin=subprocess.DEVNULL, cwd=str(path))
        return proc.returncode, proc.stdout, proc.stderr

    run.rootfs = str(rootfs)            # type: ignore[attr-defined]
    run.path = str(path)                # type: ignore[attr-defined]
    return run


# -- the gofer-backed rootfs ---------------------------------------------------------

def test_tree_changes_reach_the_bundle_rootfs(bundle):
    steps = [["mkdir", "-p", "/w/a/b/c"], ["sh", "-c", "echo x > /w/a/b/c/f"], ["cp", "-a", "/w/a", "/w/b"],
             ["mv", "/w/b", "/w/c"], ["ln", "-s", "c/b", "/w/l"], ["chmod", "600", "/w/a/b/c/f"],
             ["touch", "-d", "2020-01-01 00:00:00", "/w/a/b/c/f"]]
    for step in steps:
        status, out, err = bundle(step)
        assert status == 0, (step, out, err)
    root = bundle.rootfs
    f = os.path.join(root, "w/a/b/c/f")
    assert open(f).read() == "x\n"
    st = os.stat(f)
    assert st.st_mode & 0o7777 == 0o600
    assert st.st_mtime == pytest.approx(1577836800, abs=86400)   # local midnight, 2020-01-01
    assert open(os.path.join(root, "w/c/b/c/f")).read() == "x\n"
    assert os.readlink(os.path.join(root, "w/l")) == "c/b"
    assert not os.path.exists(os.path.join(root, "w/b"))
    status, out, err = bundle(["rm", "-rf", "/w"])
    assert status == 0, err
    assert not os.path.exists(os.path.join(root, "w"))


def test_ls_lR_matches_the_host_view(bundle):
    bundle(["mkdir", "-p", "/w/d/e"])
    bundle(["sh", "-c", "echo hello > /w/d/file"])
    status, out, err = bundle(["ls", "-lnR", "--full-time", "/w"])
    assert status == 0, err
    native = subprocess.run(["chroot", bundle.rootfs, "/bin/ls", "-lnR", "--full-time", "/w"],
                            capture_output=True, text=True)
    assert out == native.stdout


def test_created_file_is_owned_by_the_process_user(bundle):
    os.chmod(os.path.join(bundle.rootfs, "home"), 0o777)
    status, out, err = bundle(["/bin/fsprobe", "creat", "/home/mine"], user={"uid": 1000, "gid": 1000})
    assert status == 0, out + err
    st = os.stat(os.path.join(bundle.rootfs, "home/mine"))
    assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_non_root_user_gets_eacces_on_a_root_only_file(bundle):
    secret = os.path.join(bundle.rootfs, "etc/secret")
    with open(secret, "w") as f:
        f.write("s\n")
    os.chmod(secret, 0o600)
    status, out, err = bundle(["/bin/fsprobe", "read", "/etc/secret"], user={"uid": 1000, "gid": 1000})
    assert out.strip() == "EACCES", err


def test_readonly_root_refuses_writes_with_erofs(bundle):
    status, out, err = bundle(["/bin/fsprobe", "mkdir", "/newdir"], root={"path": "rootfs", "readonly": True})
    assert out.strip() == "EROFS", err


# -- procfs -------------------------------------------------------------------

def test_proc_self_status_is_the_sandbox_init(bundle):
    status, out, err = bundle(["cat", "/proc/self/status"])
    assert status == 0, err
    assert "Pid:\t1\n" in out and "PPid:\t0\n" in out and "Name:\tcat\n" in out


def test_proc_self_maps_names_the_executable(bundle):
    status, out, err = bundle(["cat", "/proc/self/maps"])
    assert status == 0, err
    assert "/bin/busybox" in out and "[stack]" in out
    assert bundle.path not in out


def test_ls_proc_self_fd(bundle):
    status, out, err = bundle(["ls", "-l", "/proc/self/fd/"])
    assert status == 0, err
    assert "0 -> /dev/null" in out and "1 -> pipe:[" in out


def test_ps_shows_pid_1(bundle):
    status, out, err = bundle(["ps"])
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["PID", "USER"]
    assert lines[1].split()[:2] == ["1", "root"]


def test_proc_mounts_show_the_sandbox_mounts_only(bundle):
    mounts = [{"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]}]
    status, out, err = bundle(["cat", "/proc/mounts"], mounts=mounts)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].split()[1] == "/"
    assert "tmpfs /mnt/t tmpfs rw,nosuid,size=1m 0 0" in lines
    assert "proc /proc proc rw,nosuid,nodev,noexec 0 0" in lines
    assert bundle.path not in out


def test_proc_sys_kernel_files(bundle):
    status, out, err = bundle(["cat", "/proc/sys/kernel/hostname", "/proc/sys/kernel/ostype",
                               "/proc/sys/vm/overcommit_memory"])
    assert status == 0, err
    assert out == "runsc-py\nLinux\n0\n"


# -- tmpfs, sysfs, bind mounts ---------------------------------------------------

def test_tmpfs_size_limit_refuses_the_second_mib(bundle):
    mounts = [{"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}]
    status, out, err = bundle(["/bin/fsprobe", "write1m", "/mnt/t/big", "2"], mounts=mounts)
    assert out.strip() == "MiB 2: ENOSPC", err
    assert not os.path.exists(os.path.join(bundle.rootfs, "mnt/t/big"))


def test_tmpfs_mode_option(bundle):
    mounts = [{"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs", "options": ["mode=700"]}]
    status, out, err = bundle(["stat", "-c", "%a %F", "/mnt/t"], mounts=mounts)
    assert out.strip() == "700 directory", err


def test_rename_across_mounts_is_exdev(bundle):
    mounts = [{"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs"}]
    status, out, err = bundle(["/bin/fsprobe", "rename", "/etc/passwd", "/mnt/t/passwd"], mounts=mounts)
    assert out.strip() == "EXDEV", err
    status, out, err = bundle(["/bin/fsprobe", "link", "/etc/passwd", "/dev/shm/passwd"])
    assert out.strip() == "EXDEV", err


def test_dev_shm_is_a_tmpfs(bundle):
    status, out, err = bundle(["stat", "-f", "-c", "%T", "/dev/shm"])
    assert out.strip() == "tmpfs", err


def test_sysfs_cpu_online(bundle):
    mounts = [{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "ro"]}]
    status, out, err = bundle(["cat", "/sys/devices/system/cpu/online"], mounts=mounts)
    assert status == 0, err
    n = len(os.sched_getaffinity(0))
    assert out == ("0\n" if n == 1 else f"0-{n - 1}\n")


def test_readonly_bind_mount_refuses_writes(bundle, tmp_path):
    src = tmp_path / "shared"
    src.mkdir()
    (src / "hello").write_text("from the host\n")
    mounts = [{"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind", "ro"]}]
    status, out, err = bundle(["cat", "/data/hello"], mounts=mounts)
    assert out == "from the host\n", err
    status, out, err = bundle(["/bin/fsprobe", "creat", "/data/new"], mounts=mounts)
    assert out.strip() == "EROFS", err
    assert sorted(os.listdir(src)) == ["hello"]


def test_rw_bind_mount_writes_reach_the_host(bundle, tmp_path):
    src = tmp_path / "shared"
    src.mkdir()
    mounts = [{"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind", "rw"]}]
    status, out, err = bundle(["sh", "-c", "echo written > /data/out"], mounts=mounts)
    assert status == 0, err
    assert (src / "out").read_text() == "written\n"


def test_more_files_than_the_gofer_has_handles(bundle):
    # The Gofer serves at most 10000 handles; the Sentry must evict, not fail.
    status, out, err = bundle(["/bin/fsprobe", "many", "/many", "10500"])
    assert out.strip() == "ok", err
    assert not os.path.exists(os.path.join(bundle.rootfs, "many"))


# -- whole scenarios, against the same commands run natively ---------------------------

SCENARIO = ("cd /tmp; mkdir -p a/b/c; echo x > a/b/c/f; cp -a a b; mv b c; ln -s c/b l; chmod 600 a/b/c/f; "
            "touch -d '2020-01-01 00:00:00' a/b/c/f; ls -lR; tar cf e.tar /etc 2>/dev/null; mkdir x; cd x; "
            "tar xf ../e.tar; ls -lnR .; cd ..; rm -rf x c")
RECENT = re.compile(r"[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d")


def _tree(root: str) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            data = open(p, "rb").read() if os.path.isfile(p) and not os.path.islink(p) else None
            link = os.readlink(p) if os.path.islink(p) else None
            rel = os.path.relpath(p, root)
            mtime = st.st_mtime_ns if rel == "tmp/a/b/c/f" else None   # the only time the scenario fixes
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, data, link, mtime)
    return out


def test_shell_scenario_matches_native(bundle, tmp_path):
    native_root = str(tmp_path / "native")
    shutil.copytree(bundle.rootfs, native_root, symlinks=True)
    os.mknod(os.path.join(native_root, "dev/null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    status, out, err = bundle(["sh", "-c", SCENARIO])
    assert status == 0, err
    native = subprocess.run(["chroot", native_root, "/bin/sh", "-c", SCENARIO], capture_output=True, text=True)
    assert RECENT.sub("T", out) == RECENT.sub("T", native.stdout)
    native_tree = _tree(native_root)
    del native_tree["dev/null"]
    assert _tree(bundle.rootfs) == native_tree


def test_overlay_memory_leaves_the_rootfs_untouched(bundle):
    before = _tree(bundle.rootfs)
    script = ("echo changed > /etc/hostname; cat /etc/hostname; rm /etc/passwd; mkdir -p /new/dir; "
              "echo y > /new/dir/f; cat /new/dir/f; rm -rf /home; ls /; mount | head -1")
    status, out, err = bundle(["sh", "-c", script], flags=("--overlay=memory",))
    assert status == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["changed", "y"]
    assert "home" not in lines and "new" in lines
    assert lines[-1].startswith("overlay on / type overlay")
    assert _tree(bundle.rootfs) == before


def test_file_bind_mount(bundle, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 sandboxed\n")
    (tmp_path / "sibling").write_text("not for the sandbox\n")
    mounts = [{"destination": "/etc/hosts", "type": "bind", "source": str(hosts), "options": ["rbind", "ro"]},
              {"destination": "/etc/newfile", "type": "bind", "source": str(hosts), "options": ["rbind", "rw"]}]
    status, out, err = bundle(["sh", "-c", "cat /etc/hosts; echo more >> /etc/newfile; ls /etc | grep -c sibling; "
                                           "/bin/fsprobe creat /etc/hosts"], mounts=mounts)
    assert out.splitlines() == ["127.0.0.1 sandboxed", "0", "EROFS"], err
    assert hosts.read_text() == "127.0.0.1 sandboxed\nmore\n"


# -- the Sentry's caches, in process (a real Gofer, no application) --------------------------

class _Creds:
    fsuid = fsgid = euid = egid = ruid = rgid = 0
    groups: list[int] = []


class _FS:
    umask = 0o022


def test_gofer_handles_and_dentries_stay_bounded(tmp_path):
    """Walking more files than the handle budget evicts handles (re-taken by name when needed)
    and prunes the dentry cache back to about the budget."""
    from types import SimpleNamespace
    from gofer.client import spawn_gofer
    from sentry.vfs.goferfs import GoferFS
    from sentry.vfs.walk import AT_FDCWD, VFS
    tree = tmp_path / "tree"
    tree.mkdir()
    n = 2000
    for i in range(n):
        (tree / f"f{i}").write_text(str(i))
    pid, client = spawn_gofer(str(tree))
    try:
        vfs = VFS()
        fs = GoferFS(client, dev=1, readonly=False)
        fs.HANDLES_HIGH, fs.HANDLES_LOW = 500, 300
        vfs.mount_root(fs, fs.root_inode(), flags=frozenset({"rw"}))
        tg = SimpleNamespace(creds=_Creds(), fs=SimpleNamespace(root=vfs.root, cwd=vfs.root, umask=0o22),
                             fds=SimpleNamespace(files={}))
        fs.kernel = SimpleNamespace(thread_groups={1: tg}, vfs=vfs)
        t = SimpleNamespace(tg=tg, kernel=fs.kernel)
        for i in range(n):
            assert vfs.resolve(t, AT_FDCWD, f"/f{i}".encode()).inode.stat().size == len(str(i))
        assert len(fs.lru) <= 500 and fs.evictions >= n - 500
        assert len(vfs.root.children) <= 500 and fs.pruned > 0
        first = vfs.resolve(t, AT_FDCWD, b"/f0")           # evicted and pruned long ago: looked up again
        assert first.inode.stat().size == 1
        f = first.inode.open(t, first, os.O_RDONLY)
        for i in range(1, n):                              # churn: the open file's inode is never evicted
            vfs.resolve(t, AT_FDCWD, f"/f{i}".encode())
        assert first.inode._h is not None
        f.release()
    finally:
        client.sock.close()
        os.waitpid(pid, 0)
