"""The `runsc-py` command line, driven as a user and a container engine drive it.

Every test runs `python3 -m runsc_py.cli` as a real subprocess (PYTHONPATH
points at the checkout, so nothing needs installing).  Three groups:

* bad input: each mistake costs exactly one line on stderr and a non-zero
  exit -- no traceback, no state directory, no process left behind;
* the state store and lifecycle errors, exercised against real host
  processes recorded as containers (a `sleep` as a running Sentry, a
  process parked on the start fifo as a created one), so they do not need
  the Sentry;
* end to end through the Sentry (`run`, `do`, `create`/`start`/`kill`/
  `delete`): these need `sentry.boot.run_sandbox`.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.rootfs import default_config, make_bundle, make_busybox_rootfs

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 60


def repo_env() -> dict[str, str]:
    """The caller's environment with the checkout first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def cli(*args: str, root: Path | None = None, cwd: Path | None = None, timeout: float = TIMEOUT,
        stdin: int | None = subprocess.DEVNULL, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run `runsc-py [--root ROOT] ARGS...` and capture its output."""
    full_env = repo_env() if env is None else env
    cmd = [sys.executable, "-m", "runsc_py.cli"]
    if root is not None:
        cmd += ["--root", str(root)]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, stdin=stdin, env=full_env)


def assert_one_line_error(p: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Non-zero exit, exactly one line on stderr naming `needles`, and no traceback anywhere."""
    assert p.returncode != 0, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    line = lines[0]
    assert line.startswith("runsc-py: "), line
    for needle in needles:
        assert needle in line, line
    return line


def processes_mentioning(marker: str) -> list[str]:
    """Command lines of live processes (other than us) that mention `marker`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if marker in cmdline:
            found.append(cmdline)
    return found


def assert_nothing_left(root: Path, marker: str) -> None:
    entries = sorted(os.listdir(root)) if root.exists() else []
    assert entries == [], f"state left behind: {entries}"
    assert processes_mentioning(marker) == []


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(make_busybox_rootfs(str(tmp_path_factory.mktemp("busybox") / "rootfs")))


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A fresh --root; whatever a failed test left in it is force-deleted afterwards."""
    path = tmp_path / "state"
    yield path
    if path.exists():
        for cid in os.listdir(path):
            if not cid.startswith("."):
                cli("delete", "--force", cid, root=path)


def bundle_with(tmp_path: Path, rootfs: Path, args: list[str], name: str = "bundle", **over) -> Path:
    return Path(make_bundle(str(tmp_path / name), args, rootfs=str(rootfs), **over))


def write_config(bundle: Path, cfg: object) -> None:
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))


# ------------------------------------------------------------------ bad bundles

def _config(rootfs: Path) -> dict:
    cfg = default_config(["/bin/echo", "hi"])
    cfg["root"]["path"] = str(rootfs)
    return cfg


def _without(path: str):
    def edit(cfg: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            cfg = cfg[p]
        del cfg[last]
    return edit


def _set(path: str, value: object):
    def edit(cfg: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            cfg = cfg[p]
        cfg[last] = value
    return edit


BAD_CONFIGS = {
    "missing_oci_version": (_without("ociVersion"), "ociVersion"),
    "oci_version_not_string": (_set("ociVersion", 1), "ociVersion"),
    "missing_process": (_without("process"), "process"),
    "process_not_object": (_set("process", []), "process"),
    "missing_args": (_without("process.args"), "process.args must be a non-empty list of strings"),
    "empty_args": (_set("process.args", []), "process.args must be a non-empty list of strings"),
    "args_not_list": (_set("process.args", "/bin/echo hi"), "process.args"),
    "args_with_number": (_set("process.args", ["/bin/echo", 3]), "process.args"),
    "empty_args0": (_set("process.args", [""]), "process.args"),
    "env_not_list": (_set("process.env", "PATH=/bin"), "process.env"),
    "env_entry_without_equals": (_set("process.env", ["PATH"]), "process.env"),
    "env_entry_not_string": (_set("process.env", [1]), "process.env"),
    "missing_cwd": (_without("process.cwd"), "process.cwd"),
    "relative_cwd": (_set("process.cwd", "tmp"), "process.cwd must be an absolute path"),
    "uid_string": (_set("process.user.uid", "0"), "process.user.uid"),
    "gid_negative": (_set("process.user.gid", -1), "process.user.gid"),
    "uid_bool": (_set("process.user.uid", True), "process.user.uid"),
    "user_not_object": (_set("process.user", 0), "process.user"),
    "terminal_not_bool": (_set("process.terminal", "yes"), "process.terminal"),
    "hostname_not_string": (_set("hostname", 7), "hostname"),
    "missing_root": (_without("root"), "root"),
    "root_path_not_string": (_set("root.path", 1), "root.path"),
    "root_readonly_not_bool": (_set("root.readonly", "no"), "root.readonly"),
    "rlimit_unknown": (_set("process.rlimits", [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
                       "process.rlimits[0].type"),
    "rlimit_soft_over_hard": (_set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 9, "hard": 1}]),
                              "process.rlimits[0]"),
    "mounts_not_list": (_set("mounts", {}), "mounts"),
    "mount_relative_destination": (_set("mounts", [{"destination": "proc", "type": "proc"}]),
                                   "mounts[0].destination"),
    "annotations_not_strings": (_set("annotations", {"a": 1}), "annotations"),
    "hooks_not_object": (_set("hooks", []), "hooks"),
    "hook_relative_path": (_set("hooks", {"prestart": [{"path": "true"}]}), "hooks.prestart[0].path"),
    "hook_args_not_strings": (_set("hooks", {"poststop": [{"path": "/bin/true", "args": [1]}]}),
                              "hooks.poststop[0].args"),
    "hook_bad_timeout": (_set("hooks", {"poststart": [{"path": "/bin/true", "timeout": 0}]}),
                         "hooks.poststart[0].timeout"),
    "namespaces_not_list": (_set("linux", {"namespaces": {}}), "linux.namespaces"),
    "memory_limit_not_int": (_set("linux", {"resources": {"memory": {"limit": "1g"}}}),
                             "linux.resources.memory.limit"),
    "pids_limit_negative": (_set("linux", {"resources": {"pids": {"limit": -5}}}), "linux.resources.pids.limit"),
    "resources_not_object": (_set("linux", {"resources": []}), "linux.resources"),
    "netns_relative_path": (_set("linux", {"namespaces": [{"type": "network", "path": "ns"}]}),
                            "linux.namespaces[0].path"),
}


@pytest.mark.parametrize("command", ["run", "create"])
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_and_leaves_nothing(tmp_path: Path, rootfs: Path, root: Path,
                                                  command: str, case: str) -> None:
    edit, needle = BAD_CONFIGS[case]
    cfg = _config(rootfs)
    edit(cfg)
    bundle = tmp_path / "bundle"
    write_config(bundle, cfg)
    p = cli(command, "--bundle", str(bundle), "--pid-file", str(tmp_path / "pid"), "c1", root=root)
    line = assert_one_line_error(p, "config.json", needle)
    assert p.returncode == 1, line
    assert p.stdout == ""
    assert not (tmp_path / "pid").exists()
    assert_nothing_left(root, str(tmp_path))


@pytest.mark.parametrize("command", ["run", "create"])
def test_missing_bundle_directory(tmp_path: Path, root: Path, command: str) -> None:
    p = cli(command, "--bundle", str(tmp_path / "nope"), "c1", root=root)
    assert_one_line_error(p, "bundle", "nope")
    assert_nothing_left(root, str(tmp_path))


@pytest.mark.parametrize("command", ["run", "create"])
def test_missing_config_json(tmp_path: Path, root: Path, command: str) -> None:
    (tmp_path / "bundle").mkdir()
    p = cli(command, "--bundle", str(tmp_path / "bundle"), "c1", root=root)
    assert_one_line_error(p, "config.json", "no such file")
    assert_nothing_left(root, str(tmp_path))


@pytest.mark.parametrize("text", ["", "{", "{\"ociVersion\": }", "[1, 2]", "\"x\"", "\xff\xfe"])
def test_malformed_config_json(tmp_path: Path, root: Path, text: str) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_bytes(text.encode("latin-1"))
    p = cli("run", "--bundle", str(bundle), "c1", root=root)
    assert_one_line_error(p, "config.json")
    assert_nothing_left(root, str(tmp_path))


def test_unreadable_config_json_is_a_directory(tmp_path: Path, root: Path) -> None:
    (tmp_path / "bundle" / "config.json").mkdir(parents=True)
    p = cli("run", "--bundle", str(tmp_path / "bundle"), "c1", root=root)
    assert_one_line_error(p, "config.json")
    assert_nothing_left(root, str(tmp_path))


@pytest.mark.parametrize("command", ["run", "create"])
def test_missing_rootfs(tmp_path: Path, root: Path, command: str) -> None:
    bundle = tmp_path / "bundle"
    write_config(bundle, default_config(["/bin/echo", "hi"]))   # root.path "rootfs", never made
    p = cli(command, "--bundle", str(bundle), "c1", root=root)
    assert_one_line_error(p, "root.path", str(bundle / "rootfs"))
    assert_nothing_left(root, str(tmp_path))


def test_bundle_defaults_to_the_current_directory(tmp_path: Path, root: Path) -> None:
    p = cli("run", "c1", root=root, cwd=tmp_path)
    assert_one_line_error(p, "config.json", str(tmp_path))


# ------------------------------------------------------------------ container ids

BAD_IDS = ["../x", "", "a/b", ".", "..", "x" * 1025, "a b", "_x", ".hidden", "é"]


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=lambda s: repr(s[:12]))
@pytest.mark.parametrize("command", ["run", "create"])
def test_bad_container_id_is_rejected_before_anything(tmp_path: Path, rootfs: Path, root: Path,
                                                     command: str, bad_id: str) -> None:
    bundle = bundle_with(tmp_path, rootfs, ["/bin/echo", "hi"])
    p = cli(command, "--bundle", str(bundle), "--", bad_id, root=root)
    assert_one_line_error(p, "invalid container ID")
    assert_nothing_left(root, str(tmp_path))


@pytest.mark.parametrize("command", [["start"], ["state"], ["kill"], ["delete"], ["delete", "--force"],
                                     ["ps", "--format", "json"]])
def test_bad_container_id_in_every_command(root: Path, command: list[str]) -> None:
    for bad_id in ("../x", "a/b", ".."):
        p = cli(*command, "--", bad_id, root=root)
        assert_one_line_error(p, "invalid container ID")
    assert not root.exists()


def test_longest_valid_id_passes_validation(root: Path) -> None:
    p = cli("state", "a" * 1024, root=root)
    assert_one_line_error(p, "container does not exist")


def test_missing_id_is_a_usage_error(root: Path) -> None:
    for command in ("run", "create", "start", "state", "kill", "delete"):
        p = cli(command, root=root)
        assert_one_line_error(p, "Missing argument")


# ------------------------------------------------------------------ global flags and logging

def test_unknown_flag_is_one_line(root: Path) -> None:
    assert_one_line_error(cli("--no-such-flag", "list", root=root), "--no-such-flag")
    assert_one_line_error(cli("state", "--no-such-flag", "c1", root=root), "--no-such-flag")
    assert_one_line_error(cli("frobnicate", root=root), "frobnicate")


def test_bad_choice_for_sandbox_flags(root: Path) -> None:
    assert_one_line_error(cli("--platform", "vmx", "list", root=root), "--platform")
    assert_one_line_error(cli("--network", "bridge", "list", root=root), "--network")
    assert_one_line_error(cli("--overlay", "disk", "list", root=root), "--overlay")


def test_engine_style_runtime_args_before_the_subcommand(tmp_path: Path, root: Path) -> None:
    log = tmp_path / "log.json"
    p = cli("--platform", "ptrace", "--network", "none", "--overlay", "memory", "--strace",
            "--systemd-cgroup", "--log", str(log), "--log-format", "json", "--debug-log",
            str(tmp_path / "debug.log"), "state", "c1", root=root)
    assert_one_line_error(p, "container does not exist")


def test_json_log_has_runcs_error_shape(tmp_path: Path, root: Path) -> None:
    log = tmp_path / "log.json"
    p = cli("--log", str(log), "--log-format", "json", "state", "nope", root=root)
    assert_one_line_error(p, "container does not exist")
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["level"] == "error"
    assert entry["msg"] == "container does not exist"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["time"]), entry["time"]


def test_text_log_has_logrus_shape(tmp_path: Path, root: Path) -> None:
    log = tmp_path / "log.txt"
    p = cli("--log", str(log), "start", "nope", root=root)
    assert_one_line_error(p, "container does not exist")
    line = log.read_text().strip()
    assert re.fullmatch(r'time="[^"]+" level=error msg="container does not exist"', line), line


def test_help_describes_flags(root: Path) -> None:
    p = cli("--help")
    assert p.returncode == 0
    for flag in ("--root", "--log", "--log-format", "--debug", "--debug-log", "--systemd-cgroup",
                 "--platform", "--network", "--overlay", "--strace"):
        assert flag in p.stdout
    for command in ("run", "create", "start", "state", "kill", "delete", "list", "ps", "spec", "do",
                    "syscalls"):
        assert re.search(rf"^\s+{command}\s+\S", p.stdout, re.M), command
    p = cli("create", "--help")
    assert "--pid-file" in p.stdout and "--console-socket" in p.stdout and "--bundle" in p.stdout


# ------------------------------------------------------------------ spec

def test_spec_writes_valid_default_config(tmp_path: Path) -> None:
    p = cli("spec", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["ociVersion"].startswith("1.")
    assert cfg["process"]["args"] == ["sh"]
    assert cfg["process"]["cwd"] == "/"
    assert cfg["root"] == {"path": "rootfs", "readonly": True}
    assert {m["destination"] for m in cfg["mounts"]} >= {"/proc", "/dev", "/sys"}


def test_spec_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("mine")
    p = cli("spec", "--bundle", str(tmp_path))
    assert_one_line_error(p, "config.json exists")
    assert (tmp_path / "config.json").read_text() == "mine"


def test_spec_args_after_double_dash(tmp_path: Path) -> None:
    p = cli("spec", "--bundle", str(tmp_path), "--", "/bin/echo", "hello")
    assert p.returncode == 0, p.stderr
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["process"]["args"] == ["/bin/echo", "hello"]
    assert cfg["process"]["terminal"] is False


def test_spec_missing_bundle(tmp_path: Path) -> None:
    assert_one_line_error(cli("spec", "--bundle", str(tmp_path / "nope")), "nope")


def test_spec_output_loads_as_a_bundle_once_rootfs_exists(tmp_path: Path, root: Path) -> None:
    assert cli("spec", "--bundle", str(tmp_path)).returncode == 0
    p = cli("create", "--bundle", str(tmp_path), "c1", root=root)
    assert_one_line_error(p, "root.path")      # the spec validates up to the missing rootfs


# ------------------------------------------------------------------ syscalls

def test_syscalls_table_lists_getpid() -> None:
    p = cli("syscalls")
    assert p.returncode == 0, p.stderr
    assert re.search(r"^\s*39\s+getpid\s+\S+", p.stdout, re.M), p.stdout[:500]


def test_syscalls_json_is_generated_from_the_table() -> None:
    p = cli("syscalls", "--format", "json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["getpid"]["nr"] == 39
    assert by_name["read"]["nr"] == 0
    assert all(set(r) == {"nr", "name", "support", "note"} for r in rows)
    assert {r["support"] for r in rows} <= {"full", "partial", "error", "unimplemented"}
    check = subprocess.run([sys.executable, "-c", "import json, sentry.syscalls as s; "
                            "print(json.dumps([[x.nr, x.name, x.support.value] for x in s.all_syscalls()]))"],
                           capture_output=True, text=True, cwd=REPO, env=repo_env())
    assert [[r["nr"], r["name"], r["support"]] for r in rows] == json.loads(check.stdout)


def test_syscalls_markdown() -> None:
    p = cli("syscalls", "--format", "markdown")
    assert p.returncode == 0, p.stderr
    assert "| NR | Name | Support | Note |" in p.stdout
    assert re.search(r"^\| 39 \| getpid \|", p.stdout, re.M)


# ------------------------------------------------------------------ unknown containers

@pytest.mark.parametrize("command", [["start"], ["state"], ["kill"], ["kill", "--all"], ["delete"],
                                     ["ps"], ["ps", "--format", "json"]])
def test_unknown_container(root: Path, command: list[str]) -> None:
    p = cli(*command, "nope", root=root)
    line = assert_one_line_error(p, "container does not exist")
    assert p.returncode == 1, line


def test_delete_force_of_unknown_container_succeeds_like_runc(root: Path) -> None:
    p = cli("delete", "--force", "nope", root=root)
    assert p.returncode == 0 and p.stderr == ""


def test_list_of_an_empty_root(root: Path) -> None:
    p = cli("list", root=root)
    assert p.returncode == 0
    assert p.stdout.split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert cli("list", "-q", root=root).stdout == ""
    assert json.loads(cli("list", "--format", "json", root=root).stdout) is None


@pytest.mark.parametrize("sig", ["NOPE", "SIGNOPE", "0", "999", "-9"])
def test_kill_with_a_bad_signal(root: Path, sig: str) -> None:
    p = cli("kill", "c1", "--", sig, root=root) if sig.startswith("-") else cli("kill", "c1", sig, root=root)
    assert_one_line_error(p, "signal")


# ------------------------------------------------------------------ the state store, with real host processes
# A recorded container whose pid is a real process: what `create` leaves
# behind, built with the store itself, so lifecycle rules can be tested
# before the Sentry exists.

def record_container(root: Path, cid: str, pid: int, status: str, tmp_path: Path) -> None:
    code = (
        "import sys; from runsc_py.state import StateStore, ContainerState; from runsc_py import procfs\n"
        "root, cid, pid, status, bundle = sys.argv[1:]\n"
        "st = ContainerState(id=cid, bundle=bundle, rootfs=bundle + '/rootfs', status=status, pid=int(pid),\n"
        "                    pid_start=procfs.start_time(int(pid)), annotations={'k': 'v'})\n"
        "with StateStore(root).create(st) as _:\n"
        "    pass\n")
    subprocess.run([sys.executable, "-c", code, str(root), cid, str(pid), status, str(tmp_path)],
                   check=True, cwd=REPO, env=repo_env())


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "60"])
    yield p
    if p.poll() is None:
        p.kill()
    p.wait()


def test_state_of_a_running_container(tmp_path: Path, root: Path, sleeper: subprocess.Popen) -> None:
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    p = cli("state", "c1", root=root)
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    assert st["ociVersion"].startswith("1.")
    assert (st["id"], st["pid"], st["status"], st["bundle"]) == ("c1", sleeper.pid, "running", str(tmp_path))
    assert st["annotations"] == {"k": "v"}
    assert list(st)[:5] == ["ociVersion", "id", "pid", "status", "bundle"]


def test_a_dead_pid_reads_as_stopped_and_can_be_deleted(tmp_path: Path, root: Path,
                                                       sleeper: subprocess.Popen) -> None:
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    sleeper.kill()
    sleeper.wait()
    st = json.loads(cli("state", "c1", root=root).stdout)
    assert st["status"] == "stopped" and st["pid"] == 0
    assert_one_line_error(cli("kill", "c1", "TERM", root=root), "container not running")
    assert_one_line_error(cli("start", "c1", root=root), "cannot start a container that has stopped")
    p = cli("delete", "c1", root=root)
    assert p.returncode == 0, p.stderr
    assert os.listdir(root) == []


def test_delete_of_running_container_needs_force(tmp_path: Path, root: Path,
                                                 sleeper: subprocess.Popen) -> None:
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    p = cli("delete", "c1", root=root)
    assert_one_line_error(p, "cannot delete container c1 that is not stopped: running")
    assert sleeper.poll() is None
    p = cli("delete", "--force", "c1", root=root)
    assert p.returncode == 0, p.stderr
    assert sleeper.wait(timeout=10) == -signal.SIGKILL
    assert os.listdir(root) == []


def test_create_with_an_existing_id_fails_like_runc(tmp_path: Path, rootfs: Path, root: Path,
                                                    sleeper: subprocess.Popen) -> None:
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    bundle = bundle_with(tmp_path, rootfs, ["/bin/echo", "hi"])
    for command in ("run", "create"):
        p = cli(command, "--bundle", str(bundle), "c1", root=root)
        assert_one_line_error(p)
    assert os.listdir(root) == ["c1"]
    assert json.loads(cli("state", "c1", root=root).stdout)["pid"] == sleeper.pid


@pytest.mark.parametrize("sig,expected", [("TERM", signal.SIGTERM), ("SIGUSR1", signal.SIGUSR1),
                                          ("9", signal.SIGKILL), ("sigint", signal.SIGINT)])
def test_kill_sends_named_or_numbered_signals(tmp_path: Path, root: Path, sleeper: subprocess.Popen,
                                              sig: str, expected: int) -> None:
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    p = cli("kill", "c1", sig, root=root)
    assert p.returncode == 0, p.stderr
    assert sleeper.wait(timeout=10) == -expected


def test_kill_defaults_to_sigterm_and_accepts_all(tmp_path: Path, root: Path, sleeper: subprocess.Popen) -> None:
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    assert cli("kill", "--all", "c1", root=root).returncode == 0
    assert sleeper.wait(timeout=10) == -signal.SIGTERM


def test_list_and_ps(tmp_path: Path, root: Path, sleeper: subprocess.Popen) -> None:
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    assert cli("list", "-q", root=root).stdout.split() == ["c1"]
    table = cli("list", root=root).stdout.splitlines()
    assert table[1].split()[:4] == ["c1", str(sleeper.pid), "running", str(tmp_path)]
    docs = json.loads(cli("list", "--format", "json", root=root).stdout)
    assert [(d["id"], d["status"]) for d in docs] == [("c1", "running")]
    assert json.loads(cli("ps", "--format", "json", "c1", root=root).stdout) == [sleeper.pid]
    ps = cli("ps", "c1", root=root).stdout.splitlines()
    assert "PID" in ps[0] and len(ps) == 2 and str(sleeper.pid) in ps[1].split()


GATE_HOLDER = """
import os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
fd = os.open(sys.argv[1], os.O_RDWR)
print("ready", flush=True)
sys.stdout.write(os.read(fd, 1).decode())
"""


def test_start_opens_the_gate_once(tmp_path: Path, root: Path) -> None:
    """A process parked on start.fifo stands in for a created Sentry: `start` releases it."""
    holder = subprocess.Popen([sys.executable, "-c", GATE_HOLDER, str(root / "c1" / "start.fifo")],
                              stdout=subprocess.PIPE, text=True)
    try:
        record_container(root, "c1", holder.pid, "created", tmp_path)
        os.mkfifo(root / "c1" / "start.fifo")
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        assert json.loads(cli("state", "c1", root=root).stdout)["status"] == "created"
        p = cli("start", "c1", root=root)
        assert p.returncode == 0, p.stderr
        out, _ = holder.communicate(timeout=10)
        assert out == "S"
        p = cli("start", "c1", root=root)
        assert_one_line_error(p, "cannot start a container that has stopped")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_concurrent_creates_of_one_id_have_one_winner(tmp_path: Path, root: Path) -> None:
    code = (
        "import sys, os; from runsc_py.state import StateStore, ContainerState; from runsc_py.errors import UserError\n"
        "st = ContainerState(id='c1', bundle='/b', rootfs='/b/rootfs', status='running', pid=os.getpid())\n"
        "try:\n"
        "    with StateStore(sys.argv[1]).create(st): print('won')\n"
        "except UserError as e: print(e.message)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO, env=repo_env()) for _ in range(8)]
    outs = [p.communicate(timeout=30)[0].strip() for p in procs]
    assert outs.count("won") == 1, outs
    assert all(o in ("won", "container with given ID already exists") for o in outs), outs
    assert os.listdir(root) == ["c1"]


# ------------------------------------------------------------------ through the Sentry
# These need sentry.boot.run_sandbox (and the ptrace platform and Gofer).

def test_run_prints_and_exits_zero(tmp_path: Path, rootfs: Path, root: Path) -> None:
    bundle = bundle_with(tmp_path, rootfs, ["/bin/echo", "hello", "world"])
    p = cli("run", "--bundle", str(bundle), "c1", root=root)
    assert (p.returncode, p.stdout) == (0, "hello world\n"), p.stderr
    assert_nothing_left(root, str(tmp_path))


def test_run_exit_status_passes_through(tmp_path: Path, rootfs: Path, root: Path) -> None:
    bundle = bundle_with(tmp_path, rootfs, ["/bin/sh", "-c", "exit 7"])
    p = cli("run", "--bundle", str(bundle), "c1", root=root)
    assert p.returncode == 7, p.stderr
    assert_nothing_left(root, str(tmp_path))


def test_run_applies_hostname_user_cwd_env(tmp_path: Path, rootfs: Path, root: Path) -> None:
    bundle = bundle_with(tmp_path, rootfs, ["/bin/sh", "-c", 'uname -n; id -u; id -g; pwd; echo "$FOO"'],
                         hostname="box", user={"uid": 1000, "gid": 1000}, cwd="/tmp",
                         env=["PATH=/bin:/usr/bin", "FOO=bar"])
    p = cli("run", "--bundle", str(bundle), "c1", root=root)
    assert (p.returncode, p.stdout.split()) == (0, ["box", "1000", "1000", "/tmp", "bar"]), p.stderr


def test_run_writes_pid_file_and_state_while_running(tmp_path: Path, rootfs: Path, root: Path) -> None:
    bundle = bundle_with(tmp_path, rootfs, ["/bin/sleep", "3"])
    pid_file = tmp_path / "pid"
    run = subprocess.Popen([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "run", "--bundle",
                            str(bundle), "--pid-file", str(pid_file), "c1"],
                           env=repo_env(), stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
        assert int(pid_file.read_text()) == run.pid
        st = json.loads(cli("state", "c1", root=root).stdout)
        assert (st["status"], st["pid"]) == ("running", run.pid)
        assert_one_line_error(cli("run", "--bundle", str(bundle), "c1", root=root), "already exists")
        assert run.wait(timeout=30) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert_nothing_left(root, str(tmp_path))


def test_do_runs_a_host_program_and_never_writes_the_host(tmp_path: Path) -> None:
    """As `runsc do`: the host root is served read-only; writes land in the Sentry's memory."""
    probe = tmp_path / "probe"
    p = cli("do", "--", "/bin/busybox", "sh", "-c", f"echo hello; echo inside > {probe}; cat {probe}",
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["hello", "inside"]
    assert not probe.exists()


def test_do_resolves_the_command_in_path_and_passes_env(tmp_path: Path) -> None:
    p = cli("do", "--env", "GREETING=hi", "--", "busybox", "sh", "-c", 'echo "$GREETING"; pwd', cwd=tmp_path)
    assert (p.returncode, p.stdout.split()) == (0, ["hi", str(tmp_path)]), p.stderr


def test_do_unknown_command(tmp_path: Path) -> None:
    p = cli("do", "--", "no-such-command-xyz")
    assert_one_line_error(p, "no-such-command-xyz")


def _wait_status(root: Path, cid: str, want: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = json.loads(cli("state", cid, root=root).stdout)
        if st["status"] == want or time.monotonic() > deadline:
            return st
        time.sleep(0.1)


def test_create_start_kill_delete(tmp_path: Path, rootfs: Path, root: Path) -> None:
    bundle = bundle_with(tmp_path, rootfs, ["/bin/sleep", "60"])
    pid_file = tmp_path / "init.pid"
    with open(tmp_path / "out", "w") as out:   # the Sentry keeps create's stdio: never a pipe we wait on
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "create", "--bundle",
                            str(bundle), "--pid-file", str(pid_file), "c1"], stdout=out, stderr=out,
                           stdin=subprocess.DEVNULL, env=repo_env(), timeout=60)
    try:
        assert p.returncode == 0, (tmp_path / "out").read_text()
        pid = int(pid_file.read_text())
        st = json.loads(cli("state", "c1", root=root).stdout)
        assert (st["status"], st["pid"]) == ("created", pid)
        assert pid in json.loads(cli("ps", "--format", "json", "c1", root=root).stdout)
        assert cli("start", "c1", root=root).returncode == 0
        assert json.loads(cli("state", "c1", root=root).stdout)["status"] == "running"
        assert_one_line_error(cli("start", "c1", root=root), "cannot start an already running container")
        assert_one_line_error(cli("delete", "c1", root=root), "not stopped")
        assert cli("kill", "c1", "KILL", root=root).returncode == 0
        assert _wait_status(root, "c1", "stopped")["status"] == "stopped"
        assert_one_line_error(cli("kill", "c1", "TERM", root=root), "container not running")
        assert_one_line_error(cli("start", "c1", root=root), "cannot start a container that has stopped")
        assert cli("delete", "c1", root=root).returncode == 0
        assert_one_line_error(cli("state", "c1", root=root), "container does not exist")
    finally:
        cli("delete", "--force", "c1", root=root)
    assert_nothing_left(root, str(tmp_path))


def test_create_then_delete_without_start(tmp_path: Path, rootfs: Path, root: Path) -> None:
    bundle = bundle_with(tmp_path, rootfs, ["/bin/echo", "never"])
    with open(tmp_path / "out", "w") as out:
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "create", "--bundle",
                            str(bundle), "c1"], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                           env=repo_env(), timeout=60)
    assert p.returncode == 0, (tmp_path / "out").read_text()
    assert cli("delete", "c1", root=root).returncode == 0
    assert "never" not in (tmp_path / "out").read_text()
    assert_nothing_left(root, str(tmp_path))


def test_create_of_a_missing_program_fails_cleanly(tmp_path: Path, rootfs: Path, root: Path) -> None:
    bundle = bundle_with(tmp_path, rootfs, ["/bin/no-such-program"])
    with open(tmp_path / "err", "w") as err:
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "create", "--bundle",
                            str(bundle), "c1"], stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                           env=repo_env(), timeout=60)
    text = (tmp_path / "err").read_text()
    assert p.returncode != 0 and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1, text
    assert_nothing_left(root, str(tmp_path))


# ------------------------------------------------------------------ install / uninstall

def test_install_merges_into_daemon_json_and_uninstall_restores(tmp_path: Path) -> None:
    daemon = tmp_path / "daemon.json"
    original = {"debug": True, "runtimes": {"other": {"path": "/usr/bin/other"}}, "log-level": "warn"}
    daemon.write_text(json.dumps(original))
    exe = tmp_path / "runsc-py"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    p = cli("install", "--config-file", str(daemon), "--path", str(exe), "--", "--platform=kvm", "--strace")
    assert p.returncode == 0, p.stderr
    data = json.loads(daemon.read_text())
    assert list(data) == ["debug", "runtimes", "log-level"]
    assert data["runtimes"] == {"other": {"path": "/usr/bin/other"},
                                "runsc-py": {"path": str(exe), "runtimeArgs": ["--platform=kvm", "--strace"]}}
    p = cli("uninstall", "--config-file", str(daemon))
    assert p.returncode == 0, p.stderr
    assert json.loads(daemon.read_text()) == original


def test_install_with_a_runtime_name_into_a_new_file(tmp_path: Path) -> None:
    daemon = tmp_path / "docker" / "daemon.json"
    p = cli("install", "--config-file", str(daemon), "--runtime", "gv", "--path", "/bin/true")
    assert p.returncode == 0, p.stderr
    assert json.loads(daemon.read_text()) == {"runtimes": {"gv": {"path": "/bin/true"}}}


@pytest.mark.parametrize("text", ["{bad", "[]", '{"runtimes": []}'])
def test_install_refuses_a_malformed_daemon_json_and_leaves_it(tmp_path: Path, text: str) -> None:
    daemon = tmp_path / "daemon.json"
    daemon.write_text(text)
    p = cli("install", "--config-file", str(daemon), "--path", "/bin/true")
    assert_one_line_error(p, str(daemon))
    assert daemon.read_text() == text
    assert os.listdir(tmp_path) == ["daemon.json"]


def test_uninstall_of_a_runtime_that_is_not_there(tmp_path: Path) -> None:
    daemon = tmp_path / "daemon.json"
    daemon.write_text('{"debug": true}')
    assert_one_line_error(cli("uninstall", "--config-file", str(daemon)), "not installed")
    assert daemon.read_text() == '{"debug": true}'


def test_events_stats_of_a_running_container(tmp_path: Path, root: Path, sleeper: subprocess.Popen) -> None:
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    p = cli("events", "--stats", "c1", root=root)
    assert p.returncode == 0, p.stderr
    event = json.loads(p.stdout)
    assert (event["type"], event["id"]) == ("stats", "c1")
    assert event["data"]["pids"]["current"] == 1
    assert event["data"]["memory"]["usage"]["usage"] > 0
    assert_one_line_error(cli("events", "--stats", "nope", root=root), "container does not exist")


# ------------------------------------------------------------------ recovery from interrupted commands

def test_a_remnant_of_an_interrupted_delete_does_not_block_the_id(tmp_path: Path, rootfs: Path,
                                                                 root: Path, sleeper: subprocess.Popen) -> None:
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    os.unlink(root / "c1" / "state.json")          # as if `delete` died half-way
    assert_one_line_error(cli("state", "c1", root=root), "container does not exist")
    assert cli("list", "-q", root=root).stdout == ""
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    assert json.loads(cli("state", "c1", root=root).stdout)["status"] == "running"


def test_delete_force_clears_an_unreadable_state(tmp_path: Path, root: Path, sleeper: subprocess.Popen) -> None:
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    (root / "c1" / "state.json").write_text("{torn")
    assert_one_line_error(cli("state", "c1", root=root), "unreadable state")
    assert_one_line_error(cli("delete", "c1", root=root), "unreadable state")
    assert cli("delete", "--force", "c1", root=root).returncode == 0
    assert os.listdir(root) == []


def _hook(log: Path, name: str) -> dict:
    """A hook that appends `name STATUS PID` (from the state on its stdin) to `log`."""
    script = (f'import json, sys; s = json.load(sys.stdin); '
              f'open({str(log)!r}, "a").write(f"{name} {{s[\'status\']}} {{s[\'pid\']}} {{s[\'id\']}}\\n")')
    return {"path": sys.executable, "args": ["python3", "-c", script]}


def test_hooks_run_on_the_host_at_each_step(tmp_path: Path, rootfs: Path, root: Path) -> None:
    log = tmp_path / "hooks.log"
    hooks = {kind: [_hook(log, kind)] for kind in
             ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")}
    bundle = bundle_with(tmp_path, rootfs, ["/bin/sleep", "60"], hooks=hooks)
    with open(tmp_path / "out", "w") as out:
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "create", "--bundle",
                            str(bundle), "--pid-file", str(tmp_path / "pid"), "c1"], stdout=out, stderr=out,
                           stdin=subprocess.DEVNULL, env=repo_env(), timeout=60)
    try:
        assert p.returncode == 0, (tmp_path / "out").read_text()
        pid = int((tmp_path / "pid").read_text())
        assert log.read_text().split("\n")[:3] == [f"prestart creating {pid} c1", f"createRuntime creating {pid} c1",
                                                    f"createContainer creating {pid} c1"]
        assert cli("start", "c1", root=root).returncode == 0
        assert cli("delete", "--force", "c1", root=root).returncode == 0
        assert log.read_text().splitlines()[3:] == [f"startContainer created {pid} c1",
                                                   f"poststart running {pid} c1", "poststop stopped 0 c1"]
    finally:
        cli("delete", "--force", "c1", root=root)
    assert_nothing_left(root, str(tmp_path))


def test_a_failing_prestart_hook_fails_create_and_leaves_nothing(tmp_path: Path, rootfs: Path, root: Path) -> None:
    hooks = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo no network >&2; exit 3"]}]}
    bundle = bundle_with(tmp_path, rootfs, ["/bin/sleep", "60"], hooks=hooks)
    with open(tmp_path / "err", "w") as err:
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "create", "--bundle",
                            str(bundle), "c1"], stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                           env=repo_env(), timeout=60)
    text = (tmp_path / "err").read_text()
    assert p.returncode == 1 and len(text.strip().splitlines()) == 1, text
    assert "prestart hook" in text and "status 3" in text and "no network" in text
    assert_nothing_left(root, str(tmp_path))


# ------------------------------------------------------------------ terminals and many cycles

def test_console_socket_without_terminal_is_refused(tmp_path: Path, rootfs: Path, root: Path) -> None:
    bundle = bundle_with(tmp_path, rootfs, ["/bin/echo", "hi"], terminal=False)
    p = cli("create", "--bundle", str(bundle), "--console-socket", str(tmp_path / "sock"), "c1", root=root)
    assert_one_line_error(p, "console-socket")
    assert_nothing_left(root, str(tmp_path))


def test_create_sends_the_terminal_over_the_console_socket(tmp_path: Path, rootfs: Path, root: Path) -> None:
    import socket
    bundle = bundle_with(tmp_path, rootfs, ["/bin/sh", "-c", "tty; stty size; echo on-the-tty"], terminal=True)
    sock_path = str(tmp_path / "console.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(sock_path)
        listener.listen(1)
        create = subprocess.Popen([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "create",
                                   "--bundle", str(bundle), "--console-socket", sock_path, "c1"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=open(tmp_path / "err", "w"), env=repo_env())
        listener.settimeout(30)
        conn, _ = listener.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
    master = fds[0]
    try:
        assert os.isatty(master)
        import fcntl
        import struct
        import termios
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))   # as the engine does
        assert create.wait(timeout=60) == 0, (tmp_path / "err").read_text()
        assert cli("start", "c1", root=root).returncode == 0
        out = b""
        deadline = time.monotonic() + 30
        while b"on-the-tty" not in out and time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        lines = out.decode(errors="replace").splitlines()
        assert "on-the-tty" in lines, lines
        assert lines[0].startswith("/dev/pts/"), lines
        assert lines[1] == "33 101", lines
    finally:
        os.close(master)
        cli("delete", "--force", "c1", root=root)
    assert_nothing_left(root, str(tmp_path))


@pytest.mark.slow
def test_200_create_start_delete_cycles_leave_nothing(tmp_path: Path, rootfs: Path, root: Path) -> None:
    bundle = bundle_with(tmp_path, rootfs, ["/bin/true"])
    fds_before = len(os.listdir("/proc/self/fd"))
    with open(tmp_path / "out", "w") as out:
        for i in range(200):
            cid = f"cycle-{i}"
            for args in (["create", "--bundle", str(bundle), cid], ["start", cid]):
                p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), *args],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=repo_env(), timeout=60)
                assert p.returncode == 0, (args, (tmp_path / "out").read_text()[-2000:])
            assert _wait_status(root, cid, "stopped")["status"] == "stopped"
            assert cli("delete", cid, root=root).returncode == 0
    assert_nothing_left(root, str(tmp_path))
    assert len(os.listdir("/proc/self/fd")) == fds_before


def test_debug_lines_go_to_the_log_beside_errors(tmp_path: Path, root: Path) -> None:
    log = tmp_path / "log.json"
    p = cli("--debug", "--log", str(log), "--log-format", "json", "state", "nope", root=root)
    assert_one_line_error(p, "container does not exist")
    levels = [json.loads(line)["level"] for line in log.read_text().splitlines()]
    assert levels[0] == "debug" and levels[-1] == "error"


# ------------------------------------------------------------------ wait

def test_wait_times_out_on_a_running_container(tmp_path: Path, root: Path, sleeper: subprocess.Popen) -> None:
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    assert_one_line_error(cli("wait", "--timeout", "0.2", "c1", root=root), "still running")


def test_wait_without_a_recorded_status_means_sigkill(tmp_path: Path, root: Path,
                                                       sleeper: subprocess.Popen) -> None:
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    sleeper.kill()
    sleeper.wait()
    p = cli("wait", "c1", root=root)
    assert p.returncode == 137 and json.loads(p.stdout) == {"id": "c1", "exitStatus": 137}


def test_wait_returns_the_applications_exit_status(tmp_path: Path, rootfs: Path, root: Path) -> None:
    bundle = bundle_with(tmp_path, rootfs, ["/bin/sh", "-c", "exit 5"])
    with open(tmp_path / "out", "w") as out:
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "create", "--bundle",
                            str(bundle), "c1"], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                           env=repo_env(), timeout=60)
    assert p.returncode == 0, (tmp_path / "out").read_text()
    assert cli("start", "c1", root=root).returncode == 0
    p = cli("wait", "--timeout", "60", "c1", root=root)
    assert (p.returncode, json.loads(p.stdout)["exitStatus"]) == (5, 5), p.stderr
    assert cli("delete", "c1", root=root).returncode == 0
    assert_nothing_left(root, str(tmp_path))


# ------------------------------------------------------------------ pause / resume

def test_pause_freezes_and_resume_thaws(tmp_path: Path, root: Path) -> None:
    ticker = subprocess.Popen([sys.executable, "-c", "import time, sys\nwhile True:\n"
                               " print(time.monotonic(), flush=True); time.sleep(0.02)"],
                              stdout=open(tmp_path / "ticks", "w"))
    try:
        record_container(root, "c1", ticker.pid, "running", tmp_path)
        assert_one_line_error(cli("resume", "c1", root=root), "container not paused")
        p = cli("pause", "c1", root=root)
        assert p.returncode == 0, p.stderr
        assert json.loads(cli("state", "c1", root=root).stdout)["status"] == "paused"
        assert_one_line_error(cli("pause", "c1", root=root), "already paused")
        assert_one_line_error(cli("delete", "c1", root=root), "not stopped: paused")
        before = (tmp_path / "ticks").read_text()
        time.sleep(0.3)
        assert (tmp_path / "ticks").read_text() == before
        assert cli("resume", "c1", root=root).returncode == 0
        assert json.loads(cli("state", "c1", root=root).stdout)["status"] == "running"
        time.sleep(0.3)
        assert (tmp_path / "ticks").read_text() != before
        assert cli("pause", "c1", root=root).returncode == 0
        cgroup = json.loads((root / "c1" / "state.json").read_text())["config"]["freezer"]
        assert os.path.isdir(cgroup)
        assert cli("delete", "--force", "c1", root=root).returncode == 0     # thaws so SIGKILL lands
        assert ticker.wait(timeout=10) == -signal.SIGKILL
        assert not os.path.exists(cgroup)
    finally:
        if ticker.poll() is None:
            ticker.kill()
            ticker.wait()


def test_pause_of_a_stopped_container(tmp_path: Path, root: Path, sleeper: subprocess.Popen) -> None:
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    sleeper.kill()
    sleeper.wait()
    assert_one_line_error(cli("pause", "c1", root=root), "container not running")
    assert_one_line_error(cli("resume", "c1", root=root), "container not paused")


def test_run_detach_is_create_plus_start(tmp_path: Path, rootfs: Path, root: Path) -> None:
    bundle = bundle_with(tmp_path, rootfs, ["/bin/sh", "-c", "echo detached; exit 4"])
    with open(tmp_path / "out", "w") as out:
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "run", "--detach",
                            "--bundle", str(bundle), "c1"], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                           env=repo_env(), timeout=60)
    assert p.returncode == 0, (tmp_path / "out").read_text()
    p = cli("wait", "--timeout", "60", "c1", root=root)
    assert p.returncode == 4, p.stderr
    assert (tmp_path / "out").read_text() == "detached\n"
    assert cli("delete", "c1", root=root).returncode == 0
    assert_nothing_left(root, str(tmp_path))


def test_created_containers_stdio_carries_only_the_application(tmp_path: Path, rootfs: Path, root: Path) -> None:
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n")
    mounts = [{"destination": "/proc", "type": "proc", "source": "proc"},
              {"destination": "/etc/no-such-dir/hosts", "type": "bind", "source": str(tmp_path / "hosts"),
               "options": ["rbind", "ro"]}]
    bundle = bundle_with(tmp_path, rootfs, ["/bin/sh", "-c", "echo out; echo err >&2"], mounts=mounts)
    with open(tmp_path / "out", "w") as out:
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "run", "--detach",
                            "--bundle", str(bundle), "c1"], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                           env=repo_env(), timeout=60)
    assert p.returncode == 0, (tmp_path / "out").read_text()
    assert cli("wait", "--timeout", "60", "c1", root=root).returncode == 0
    assert sorted((tmp_path / "out").read_text().splitlines()) == ["err", "out"]
    assert cli("delete", "c1", root=root).returncode == 0


LEADER_WITH_HELPER = """
import os, subprocess, sys, time
os.setsid()
helper = subprocess.Popen(["sleep", "60"])
print(helper.pid, flush=True)
time.sleep(60)
"""


def test_delete_kills_helpers_that_outlived_the_sentry(tmp_path: Path, root: Path) -> None:
    """The Gofer and stubs stay in the Sentry's session: delete finds them even once orphaned."""
    leader = subprocess.Popen([sys.executable, "-c", LEADER_WITH_HELPER], stdout=subprocess.PIPE, text=True)
    assert leader.stdout is not None
    helper = int(leader.stdout.readline())
    try:
        record_container(root, "c1", leader.pid, "running", tmp_path)
        assert helper in json.loads(cli("ps", "--format", "json", "c1", root=root).stdout)
        leader.kill()
        leader.wait()
        assert json.loads(cli("state", "c1", root=root).stdout)["status"] == "stopped"
        assert cli("delete", "c1", root=root).returncode == 0
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{helper}") and time.monotonic() < deadline:
            with open(f"/proc/{helper}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.02)
        with open(f"/proc/{helper}/stat") if os.path.exists(f"/proc/{helper}") else open(os.devnull) as f:
            text = f.read()
        assert not text or text.rsplit(")", 1)[1].split()[0] == "Z", "helper survived delete"
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()
        try:
            os.kill(helper, signal.SIGKILL)
        except OSError:
            pass


def test_ps_shows_the_sandbox_processes_and_json_the_host_pids(tmp_path: Path, rootfs: Path, root: Path) -> None:
    bundle = bundle_with(tmp_path, rootfs, ["/bin/sh", "-c", "sleep 30 & sleep 30"])
    with open(tmp_path / "out", "w") as out:
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "run", "--detach",
                            "--bundle", str(bundle), "--pid-file", str(tmp_path / "pid"), "c1"],
                           stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=repo_env(), timeout=60)
    assert p.returncode == 0, (tmp_path / "out").read_text()
    deadline = time.monotonic() + 30
    while True:
        table = cli("ps", "c1", root=root).stdout.splitlines()
        if len(table) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert table[0].split() == ["UID", "PID", "PPID", "CMD"]
    assert [row.split()[1:3] for row in table[1:]] == [["1", "0"], ["2", "1"]]
    host = json.loads(cli("ps", "--format", "json", "c1", root=root).stdout)
    assert host[0] == int((tmp_path / "pid").read_text())
    custom = cli("ps", "c1", "-o", "pid", root=root).stdout.split()
    assert custom[0] == "PID" and [int(x) for x in custom[1:]] == host
    assert cli("delete", "--force", "c1", root=root).returncode == 0
    assert_nothing_left(root, str(tmp_path))
