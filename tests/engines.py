"""Real container engines for the integration tests: dockerd, containerd (with ctr) and podman.

Each engine keeps all of its state under a directory the test chooses (a
pytest tmp dir), is started by a fixture and stopped afterwards by its pid
(never by name: other engines and other sessions may run on this machine).
What is left behind -- processes mentioning the directory, mounts under it --
is cleaned up by the same pid/mount-point, then the directory is removed.
The recipes (flags, config files, gotchas) are ../shared/ENGINES.md's.

Images come from the busybox-static rootfs of `tests/rootfs.py`: `docker
import` / `podman import` of a tarball of it, and for containerd an OCI
image layout built with umoci and imported with `ctr images import`.
"""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Iterable, Sequence

from tests.rootfs import make_busybox_rootfs

ENGINE_TIMEOUT = 120


# ------------------------------------------------------------------ tools

def runsc_py_binary() -> str | None:
    """Absolute path of the installed `runsc-py` console script, as an engine is given it.

    The one beside this interpreter first: a pyenv shim on PATH would work too,
    but costs a bash + pyenv start on every one of the engine's calls.
    """
    beside = Path(sys.executable).parent / "runsc-py"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("runsc-py")
    return os.path.abspath(found) if found else None


def which(name: str, *candidates: str) -> str | None:
    """`name` on PATH, preferring the absolute `candidates` (e.g. the Debian package's binary)."""
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return shutil.which(name)


# The docker CLI of the docker.io package (another, newer one may sit in /usr/local/bin).
DOCKER = which("docker", "/usr/bin/docker")
DOCKERD = which("dockerd", "/usr/sbin/dockerd", "/usr/bin/dockerd")
CONTAINERD = which("containerd", "/usr/bin/containerd")
CTR = which("ctr", "/usr/bin/ctr")
PODMAN = which("podman", "/usr/bin/podman")
UMOCI = which("umoci", "/usr/bin/umoci")
RUNC = which("runc", "/usr/sbin/runc", "/usr/bin/runc")


def missing(*tools: tuple[str, str | None]) -> str | None:
    """A skip reason naming the first missing binary, or None."""
    for name, path in tools:
        if not path:
            return f"{name} is not installed (apt-get install docker.io containerd podman umoci runc)"
    return None


# ------------------------------------------------------------------ processes and mounts

def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def live_pids() -> Iterable[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def is_zombie(pid: int) -> bool:
    try:
        return _stat_fields(pid)[0] == "Z"
    except OSError:
        return True


def processes_mentioning(marker: str) -> dict[int, str]:
    """Live (non-zombie) processes other than us whose command line mentions `marker`."""
    found = {}
    for pid in live_pids():
        if pid == os.getpid():
            continue
        try:
            cmd = _cmdline(pid)
        except OSError:
            continue
        if marker in cmd and not is_zombie(pid):
            found[pid] = cmd
    return found


def session_members(sid: int) -> dict[int, str]:
    """Live processes in session `sid` (a sandbox's Sentry, Gofer and stubs share its session)."""
    found = {}
    for pid in live_pids():
        try:
            fields = _stat_fields(pid)
            if fields[0] != "Z" and int(fields[3]) == sid:
                with open(f"/proc/{pid}/comm") as f:
                    found[pid] = f.read().strip()
        except (OSError, IndexError, ValueError):
            continue
    return found


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        return int(_stat_fields(pid)[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(processes: Iterable[tuple[int, int | None]]) -> list[tuple[int, str]]:
    """Which (pid, start time) pairs are still live, non-zombie processes, with their comm."""
    found = []
    for pid, started in processes:
        if started is not None and start_time(pid) == started and not is_zombie(pid):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    found.append((pid, f.read().strip()))
            except OSError:
                pass
    return found


def session_of(pid: int) -> int | None:
    try:
        return int(_stat_fields(pid)[3])
    except (OSError, IndexError, ValueError):
        return None


def mounts_under(path: str | os.PathLike) -> list[str]:
    """Mount points (in our mount namespace) at or below `path`, deepest first."""
    prefix = os.path.realpath(path)
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def stop_pid(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM `pid`, SIGKILL it after `timeout`, and wait for it (reaping it if it is our child)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got, _ = os.waitpid(pid, os.WNOHANG)
            if got:
                return
        except ChildProcessError:
            if not os.path.exists(f"/proc/{pid}") or is_zombie(pid):
                return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def clean_up_under(directory: str | os.PathLike, grace: float = 0.0) -> list[str]:
    """Kill what still mentions `directory`, unmount what is mounted under it, remove it.

    Processes get `grace` seconds to finish on their own first.  Returns a
    description of what had to be killed (for the test to report)."""
    left = []
    deadline = time.monotonic() + grace
    while processes_mentioning(str(directory)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid, cmd in processes_mentioning(str(directory)).items():
        left.append(f"process {pid}: {cmd[:200]}")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for point in mounts_under(directory):
        subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(directory, ignore_errors=True)
    return left


def clean_cgroup(directory: Path) -> None:
    """rmdir a cgroup directory, if it is there and empty of processes."""
    try:
        directory.rmdir()
    except OSError:
        pass


# ------------------------------------------------------------------ images

def busybox_tarball(directory: Path) -> Path:
    """A tarball of the busybox-static rootfs (what `docker import` and `podman import` take)."""
    rootfs = Path(make_busybox_rootfs(str(directory / "rootfs")))
    tar = directory / "busybox-rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    return tar


def umoci_image(directory: Path, rootfs: Path) -> Path:
    """An OCI image layout tarball holding `rootfs` as its single layer (for `ctr images import`)."""
    layout, unpacked = directory / "layout", directory / "unpacked"
    for cmd in (["init", "--layout", str(layout)],
                ["new", "--image", f"{layout}:latest"],
                ["unpack", "--image", f"{layout}:latest", str(unpacked)]):
        subprocess.run([UMOCI, *cmd], check=True, capture_output=True)
    subprocess.run(["cp", "-a", f"{rootfs}/.", str(unpacked / "rootfs")], check=True)
    subprocess.run([UMOCI, "repack", "--image", f"{layout}:latest", str(unpacked)], check=True,
                   capture_output=True)
    tar = directory / "oci-image.tar"
    subprocess.run(["tar", "-C", str(layout), "-cf", str(tar), "."], check=True)
    shutil.rmtree(unpacked)
    return tar


# ------------------------------------------------------------------ engines

class EngineError(RuntimeError):
    pass


def _wait_until(check, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise EngineError(f"{what} not ready after {timeout:.0f} s\n{tail}")


class Dockerd:
    """A dockerd whose data, exec root, socket and pid file live under `directory`."""

    def __init__(self, directory: Path, runtimes: dict[str, str] | None = None,
                 config_file: Path | None = None, daemon_env: dict[str, str] | None = None) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.sock = directory / "docker.sock"
        self.log = directory / "dockerd.log"
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}")
        self.env.pop("DOCKER_CONTEXT", None)
        cmd = [DOCKERD, "--data-root", str(directory / "data"), "--exec-root", str(directory / "exec"),
               "--pidfile", str(directory / "dockerd.pid"), "-H", f"unix://{self.sock}",
               "--iptables=false", "--ip-masq=false", "--bridge=none"]
        if config_file is not None:
            cmd += ["--config-file", str(config_file)]
        for name, path in (runtimes or {}).items():
            cmd += ["--add-runtime", f"{name}={path}"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env=dict(os.environ, **(daemon_env or {})))
        try:
            _wait_until(self._answers, 60, "dockerd", self.log)
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise EngineError(f"dockerd exited with {self.proc.returncode}:\n"
                              + self.log.read_text(errors="replace")[-3000:])
        return subprocess.run([DOCKER, "version"], env=self.env, capture_output=True).returncode == 0

    def docker(self, *args: str, timeout: float = ENGINE_TIMEOUT, check: bool = False,
               **kw) -> subprocess.CompletedProcess[str]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, **kw)
        if check and p.returncode != 0:
            raise EngineError(f"docker {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
        return p

    def import_image(self, tarball: Path, ref: str) -> str:
        with open(tarball, "rb") as f:
            p = subprocess.run([DOCKER, "import", "-", ref], env=self.env, stdin=f, capture_output=True,
                               text=True, timeout=ENGINE_TIMEOUT)
        if p.returncode != 0:
            raise EngineError(f"docker import: {p.stderr.strip()}")
        return ref

    def stop(self, grace: float = 0.0) -> list[str]:
        """Stop dockerd by its pid (it stops its containerd), then clean the directory's remains
        (what is left gets `grace` seconds to go by itself)."""
        stop_pid(self.proc.pid, timeout=30)
        return clean_up_under(self.dir, grace=grace)


class Containerd:
    """A containerd (CRI plugin off) with root, state and socket under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.sock = directory / "containerd.sock"
        self.log = directory / "containerd.log"
        config = directory / "config.toml"
        config.write_text(f'version = 2\nroot = "{directory}/root"\nstate = "{directory}/state"\n'
                          'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                          f'[grpc]\n  address = "{self.sock}"\n')
        self.proc = subprocess.Popen([CONTAINERD, "--config", str(config)], stdin=subprocess.DEVNULL,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            _wait_until(self._answers, 30, "containerd", self.log)
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise EngineError(f"containerd exited with {self.proc.returncode}:\n"
                              + self.log.read_text(errors="replace")[-3000:])
        return self.ctr("version").returncode == 0

    def ctr(self, *args: str, timeout: float = ENGINE_TIMEOUT, **kw) -> subprocess.CompletedProcess[str]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run([CTR, "-a", str(self.sock), *args], capture_output=True, text=True,
                              timeout=timeout, **kw)

    def stop(self) -> list[str]:
        stop_pid(self.proc.pid, timeout=20)
        return clean_up_under(self.dir)


class Podman:
    """podman (daemonless) with every store under `directory`, and ENGINES.md's flags."""

    RUN_FLAGS = ("--network=none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.flags = ["--root", str(directory / "root"), "--runroot", str(directory / "runroot"),
                      "--tmpdir", str(directory / "tmp"), "--cgroup-manager", "cgroupfs",
                      "--events-backend", "file"]

    def podman(self, *args: str, timeout: float = ENGINE_TIMEOUT, **kw) -> subprocess.CompletedProcess[str]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run([PODMAN, *self.flags, *args], capture_output=True, text=True,
                              timeout=timeout, **kw)

    def import_image(self, tarball: Path, ref: str) -> str:
        with open(tarball, "rb") as f:
            p = self.podman("import", "-", ref, stdin=f)
        if p.returncode != 0:
            raise EngineError(f"podman import: {p.stderr.strip()}")
        return ref

    def stop(self) -> list[str]:
        # podman leaves no daemon; conmon finishes a --rm run's cleanup after podman returns
        return clean_up_under(self.dir, grace=15)


# ------------------------------------------------------------------ terminals

def run_in_pty(argv: Sequence[str], rows: int, cols: int, env: dict[str, str] | None = None,
               timeout: float = ENGINE_TIMEOUT,
               dialogue: Sequence[tuple[str, bytes]] = ()) -> tuple[int, str]:
    """Run `argv` with a fresh pty of size rows x cols as its controlling terminal and stdio.

    `dialogue`: (text to wait for in the output, bytes to type then), in order.
    Returns (exit status, everything written to the terminal)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def become_terminal_owner() -> None:      # runs in the child
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, env=env,
                            preexec_fn=become_terminal_owner, close_fds=True)
    os.close(slave)
    out = b""
    step = typed_at = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:           # EIO: every slave fd is closed
                    break
                if not chunk:
                    break
                out += chunk
                while step < len(dialogue) and dialogue[step][0].encode() in out[typed_at:]:
                    typed_at = out.index(dialogue[step][0].encode(), typed_at) + len(dialogue[step][0])
                    os.write(master, dialogue[step][1])
                    step += 1
            elif proc.poll() is not None:
                break
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    # both ptys (the container's and ours) turn \n into \r\n
    return status, re.sub(r"\r+\n", "\n", out.decode(errors="replace"))


def read_json_file(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)
