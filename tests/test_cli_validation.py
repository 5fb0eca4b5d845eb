"""Hostile input to the front end: every number, path and state field it is given is checked.

Each case is something a user, an engine or a tampered --root could hand runsc-py; each must
cost one line on stderr and a non-zero exit, never a traceback, never a wrapped number, and
never a signal to the wrong process.  (The bundle-shape cases of the same kind live in
test_cli.py's BAD_CONFIGS; these are the ones issue 11 found missing.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import (_config, _set, assert_nothing_left, assert_one_line_error, bundle_with, cli,
                            record_container, repo_env, root, rootfs, sleeper, write_config)  # noqa: F401 (fixtures)


BAD_MOUNTS_AND_NAMESPACES = {
    "mount_unknown_type": (_set("mounts", [{"destination": "/x", "type": "nosuchfs", "source": "x"}]),
                           "mounts[0].type", "not a supported mount type"),
    "mount_without_type_or_bind": (_set("mounts", [{"destination": "/x", "source": "x"}]),
                                   "mounts[0].type"),
    "bind_source_missing": (_set("mounts", [{"destination": "/x", "type": "bind",
                                             "source": "/nonexistent/runsc-py-test", "options": ["rbind"]}]),
                            "mounts[0].source", "no such file"),
    "bind_without_source": (_set("mounts", [{"destination": "/x", "options": ["bind"]}]), "mounts[0].source"),
    "destination_with_nul": (_set("mounts", [{"destination": "/x\0y", "type": "tmpfs", "source": "t"}]),
                             "mounts[0].destination", "NUL"),
    "destination_with_dotdot": (_set("mounts", [{"destination": "/tmp/../../etc", "type": "tmpfs",
                                                 "source": "t"}]), "mounts[0].destination", ".."),
    "unknown_namespace": (_set("linux", {"namespaces": [{"type": "pid"}, {"type": "bogus"}]}),
                          "linux.namespaces[1].type"),
    "duplicate_namespace": (_set("linux", {"namespaces": [{"type": "pid"}, {"type": "pid"}]}),
                            "linux.namespaces[1].type", "twice"),
    "uid_2_to_the_32": (_set("process.user.uid", 1 << 32), "process.user.uid"),
    "rlimit_hard_2_to_the_64": (_set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1 << 64}]),
                                "process.rlimits[0].hard"),
}


@pytest.mark.parametrize("case", sorted(BAD_MOUNTS_AND_NAMESPACES))
def test_bad_mounts_and_namespaces_fail_like_runc(tmp_path: Path, rootfs: Path, root: Path, case: str) -> None:
    edit, *needles = BAD_MOUNTS_AND_NAMESPACES[case]
    cfg = _config(rootfs)
    edit(cfg)
    bundle = tmp_path / "bundle"
    write_config(bundle, cfg)
    p = cli("run", "--bundle", str(bundle), "c1", root=root)
    assert_one_line_error(p, *needles)
    assert_nothing_left(root, str(tmp_path))


def test_deeply_nested_config_json_is_one_line(tmp_path: Path, root: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    p = cli("run", "--bundle", str(bundle), "c1", root=root)
    assert_one_line_error(p, "config.json")
    assert_nothing_left(root, str(tmp_path))


def test_supported_mount_types_still_run(tmp_path: Path, rootfs: Path, root: Path) -> None:
    src = tmp_path / "shared"
    src.mkdir()
    (src / "f").write_text("bound\n")
    b = bundle_with(tmp_path, rootfs, ["/bin/sh", "-c", "cat /mnt/f; ls -d /run"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["mounts"] += [{"destination": "/mnt", "type": "bind", "source": str(src), "options": ["rbind", "ro"]},
                      {"destination": "/run", "type": "tmpfs", "source": "tmpfs"}]
    (b / "config.json").write_text(json.dumps(cfg))
    p = cli("run", "--bundle", str(b), "c1", root=root)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["bound", "/run"]


# ------------------------------------------------------------------ exec --user and process.json

@pytest.fixture
def running(tmp_path: Path, rootfs: Path, root: Path):
    """A created container (its init parked before exec), for `exec` into it."""
    b = bundle_with(tmp_path, rootfs, ["/bin/sleep", "60"])
    with open(tmp_path / "out", "w") as out:   # the Sentry keeps create's stdio: never a pipe we wait on
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "create", "--bundle",
                            str(b), "c1"], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                           env=repo_env(), timeout=60)
    assert p.returncode == 0, (tmp_path / "out").read_text()
    assert cli("start", "c1", root=root).returncode == 0
    yield "c1"
    cli("delete", "--force", "c1", root=root)


@pytest.mark.parametrize("user", ["4294967296", "4294967295", "-1", "0:-1", "0:4294967296", "99999999999999999999",
                                  "root", "1:x"])
def test_exec_user_out_of_range_is_refused(root: Path, running: str, user: str) -> None:
    p = cli("exec", "--user", user, running, "/bin/id", root=root)
    assert_one_line_error(p, "--user")
    # The container survived the bad request.
    p = cli("exec", running, "/bin/true", root=root)
    assert p.returncode == 0, p.stderr


def test_exec_user_in_range_runs_as_that_user(root: Path, running: str) -> None:
    p = cli("exec", "--user", "4294967294:7", running, "/bin/sh", "-c", "id -u; id -g", root=root)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["4294967294", "7"]


@pytest.mark.parametrize("gid", ["-1", "4294967296"])
def test_exec_additional_gid_out_of_range_is_refused(root: Path, running: str, gid: str) -> None:
    p = cli("exec", "--additional-gids", gid, running, "/bin/id", root=root)
    assert_one_line_error(p, "--additional-gids")


@pytest.mark.parametrize("proc", [
    {"args": ["/bin/id"], "user": {"uid": 1 << 32}},
    {"args": ["/bin/id"], "user": {"uid": -1}},
    {"args": ["/bin/id"], "user": {"uid": "0"}},
    {"args": ["/bin/id"], "user": {"uid": 0, "additionalGids": [-5]}},
    {"args": ["/bin/id"], "user": []},
    {"args": ["/bin/id"], "env": "PATH=/bin"},
    {"args": ["/bin/id"], "cwd": "relative"},
    {"args": ["/bin/i\0d"]},
])
def test_exec_process_json_is_validated(tmp_path: Path, root: Path, running: str, proc: dict) -> None:
    path = tmp_path / "process.json"
    path.write_text(json.dumps(proc))
    p = cli("exec", "--process", str(path), running, root=root)
    assert_one_line_error(p, "process")


# ------------------------------------------------------------------ a tampered state.json

TAMPERED = {
    "pid_minus_one": {"pid": -1},
    "pid_zero_string": {"pid": "0"},
    "pid_huge": {"pid": 1 << 40},
    "pid_bool": {"pid": True},
    "pid_start_negative": {"pid_start": -3},
    "status_unknown": {"status": "zombie"},
    "status_number": {"status": 3},
    "id_other": {"id": "c2"},
    "config_list": {"config": []},
    "annotations_numbers": {"annotations": {"a": 1}},
    "bundle_missing": {"bundle": None},
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_state_is_one_line_and_delete_force_clears_it(tmp_path: Path, root: Path,
                                                              sleeper: subprocess.Popen, case: str) -> None:
    record_container(root, "c1", sleeper.pid, "running", tmp_path)
    path = root / "c1" / "state.json"
    data = json.loads(path.read_text())
    for k, v in TAMPERED[case].items():
        if v is None:
            del data[k]
        else:
            data[k] = v
    path.write_text(json.dumps(data))
    for command in (["state", "c1"], ["kill", "c1", "KILL"], ["delete", "c1"], ["ps", "c1"]):
        assert_one_line_error(cli(*command, root=root), "invalid state")
    assert sleeper.poll() is None          # nothing was signalled on the tampered pid's word
    assert cli("delete", "--force", "c1", root=root).returncode == 0
    assert os.listdir(root) == []
    assert sleeper.poll() is None


def test_list_skips_a_tampered_state(tmp_path: Path, root: Path, sleeper: subprocess.Popen) -> None:
    record_container(root, "good", sleeper.pid, "running", tmp_path)
    record_container(root, "bad", sleeper.pid, "running", tmp_path)
    path = root / "bad" / "state.json"
    data = json.loads(path.read_text())
    data["pid"] = -1
    path.write_text(json.dumps(data))
    p = cli("list", "--format", "json", root=root)
    assert "Traceback" not in p.stderr
    assert p.returncode == 0, p.stderr
    assert [c["id"] for c in json.loads(p.stdout)] == ["good"]


# ------------------------------------------------------------------ kill KILL of a `run` container

def test_kill_9_of_a_run_container_leaves_no_state(tmp_path: Path, rootfs: Path, root: Path) -> None:
    b = bundle_with(tmp_path, rootfs, ["/bin/sleep", "60"])
    with open(tmp_path / "out", "w") as out:
        run = subprocess.Popen([sys.executable, "-m", "runsc_py.cli", "--root", str(root), "run", "--bundle",
                                str(b), "c1"], stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=repo_env())
    try:
        for _ in range(600):
            p = cli("state", "c1", root=root)
            if p.returncode == 0 and json.loads(p.stdout)["status"] == "running":
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run container never reached running: " + (tmp_path / "out").read_text())
        assert cli("kill", "c1", "KILL", root=root).returncode == 0
        assert run.wait(timeout=30) == -9
        assert_one_line_error(cli("state", "c1", root=root), "container does not exist")
        assert json.loads(cli("list", "--format", "json", root=root).stdout) is None
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert_nothing_left(root, str(tmp_path))
