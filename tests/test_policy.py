"""Per-syscall policies (sentry/policy.py, sentry/policy_file.py): Python objects and policy files.

Tests only ever address loopback.  python3 comes from the host root (read-only, overlaid in
memory), so writes "under /etc" never reach the host.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from runsc_py import AUDIT, KILL, Sandbox, deny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONNECT = r'''
import errno, socket
out = []
for host in ("127.0.0.1", "127.0.0.2"):
    srv = socket.socket(); srv.bind((host, 0)); srv.listen(1)
    c = socket.socket()
    try:
        c.connect(srv.getsockname()); out.append("ok")
    except OSError as e:
        out.append(errno.errorcode[e.errno])
print(" ".join(out))
'''

ETC_WRITES = r'''
import errno, os, tempfile
def attempt(fn):
    try:
        fn(); return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
d = tempfile.mkdtemp()            # the host's /tmp shows through the overlay: our own names
os.symlink("/etc", d + "/etc-link")
open(d + "/x", "w").write("x")
print(attempt(lambda: os.open("/etc/hostname", os.O_WRONLY)),
      attempt(lambda: os.open("/etc/runsc-py-new-file", os.O_WRONLY | os.O_CREAT, 0o644)),
      attempt(lambda: os.open(d + "/etc-link/hostname", os.O_WRONLY)),
      attempt(lambda: os.rename(d + "/x", "/etc/runsc-py-x")),
      attempt(lambda: os.path.exists("/etc/runsc-py-new-file") and 1 / 0),
      attempt(lambda: os.path.exists(d + "/x") or 1 / 0),
      attempt(lambda: open("/etc/hostname").read()),
      attempt(lambda: open(d + "/y", "w").write("y")))
'''


class NoLoopback2:
    def connect(self, task, addr):
        if addr.family == "inet" and addr.host == "127.0.0.2":
            return deny(errno.EACCES)


class NoEtcWrites:
    def openat(self, task, path, flags):
        if (path == "/etc" or path.startswith("/etc/")) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            return deny(errno.EACCES)

    def rename(self, task, old, new):
        if new.startswith("/etc/"):
            return deny(errno.EACCES)


def test_connect_policy_denies_127_0_0_2_only():
    with Sandbox("/") as sb:          # without a policy both connect
        assert sb.run(["python3", "-c", CONNECT]).stdout == b"ok ok\n"
    with Sandbox("/", policy=NoLoopback2()) as sb:
        r = sb.run(["python3", "-c", CONNECT])
        assert (r.returncode, r.stdout) == (0, b"ok EACCES\n"), r.stderr
        log = sb.audit_log()
    assert [(e["syscall"], e["args"]["addr"]["host"], e["decision"], e["errno"]) for e in log] == \
        [("connect", "127.0.0.2", "deny", "EACCES")]


def test_python_policy_denies_writes_under_etc_exactly():
    with Sandbox("/", policy=NoEtcWrites()) as sb:
        r = sb.run(["python3", "-c", ETC_WRITES])
        # The Sentry's own checks come first: a missing name is ENOENT, not the policy's errno.
        missing = sb.run(["python3", "-c", "import os\ntry: os.open('/etc/no/such', os.O_WRONLY)\n"
                          "except OSError as e: print(e.errno)"])
        assert missing.stdout == b"%d\n" % errno.ENOENT
    # O_WRONLY, O_CREAT (no file made), through a symlink (resolved path), rename into /etc;
    # /tmp/x stays where it was; reads of /etc and writes elsewhere work.
    assert (r.returncode, r.stdout.split()) == (0, [b"EACCES"] * 4 + [b"ok"] * 4), r.stderr


def test_policy_file_toml_paths_and_json_network(tmp_path):
    toml = tmp_path / "policy.toml"
    toml.write_text('errno = "EACCES"\n[paths.write]\ndeny = ["/etc"]\n')
    p = _do(["python3", "-c", ETC_WRITES], "--policy", str(toml))
    assert (p.returncode, p.stdout.split()) == (0, ["EACCES"] * 4 + ["ok"] * 4), p.stderr
    js = tmp_path / "policy.json"
    js.write_text(json.dumps({"network": {"deny": ["127.0.0.2/32"]}}))
    p = _do(["python3", "-c", CONNECT], "--policy", str(js))
    assert (p.returncode, p.stdout) == (0, "ok EACCES\n"), p.stderr
    js.write_text(json.dumps({"network": {"deny": ["127.0.0.0/8"], "allow": ["127.0.0.1/32"]}}))
    p = _do(["python3", "-c", CONNECT], "--policy", str(js))
    assert (p.returncode, p.stdout) == (0, "ok EACCES\n"), p.stderr


BYPASSES = r'''
import errno, os, socket
def attempt(fn):
    try:
        fn(); return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
fd = os.open("/etc/hostname", os.O_RDONLY)
exe = os.open("/usr/bin/id", os.O_PATH)
s = socket.socket(socket.AF_UNIX)
print(attempt(lambda: os.fchmod(fd, 0o600)), attempt(lambda: os.utime("/etc/hostname")),
      attempt(lambda: os.utime(fd)), attempt(lambda: s.bind("/etc/runsc-py.sock")),
      attempt(lambda: os.path.exists("/etc/runsc-py.sock") and 1 / 0),
      attempt(lambda: os.link("/etc/hostname", "/tmp/runsc-py-hostname-link")),
      attempt(lambda: os.execve(exe, ["id"], {})))
'''


def test_no_bypass_through_fds_metadata_sockets_or_fexecve(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('[paths.write]\ndeny = ["/etc"]\n[paths.exec]\ndeny = ["/usr/bin/id"]\n')
    p = _do(["python3", "-c", BYPASSES], "--policy", str(policy))
    assert (p.returncode, p.stdout.split()) == (0, ["EACCES"] * 4 + ["ok"] + ["EACCES"] * 2), p.stderr


def test_audit_logs_every_execve_of_a_scripts_children_in_order(tmp_path):
    policy = tmp_path / "audit.json"
    log = tmp_path / "audit.jsonl"
    policy.write_text(json.dumps({"syscalls": {"audit": ["execve"]}}))
    script = "ls / > /dev/null; cat /etc/hostname > /dev/null; /bin/true; (echo x | wc -c) > /dev/null; uname"
    p = _do(["sh", "-c", script], "--policy", str(policy), "--policy-log", str(log))
    assert p.returncode == 0, p.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["args"]["argv"] for r in records] == \
        [["ls", "/"], ["cat", "/etc/hostname"], ["/bin/true"], ["wc", "-c"], ["uname"]]
    assert all(r["syscall"] == "execve" and r["decision"] == "audit" and r["args"]["path"].startswith("/")
               for r in records)
    # The library gives the same records back in memory.
    class Audit:
        def execve(self, task, path, argv):
            return AUDIT
    with Sandbox("/", policy=Audit()) as sb:
        assert sb.run(["sh", "-c", script]).returncode == 0
        assert [r["args"]["argv"] for r in sb.audit_log()] == [r["args"]["argv"] for r in records]


def test_kill_and_a_broken_policy():
    class Strict:
        def execve(self, task, path, argv):
            return KILL if argv[:1] == ["id"] else None

        def mkdir(self, task, path):
            raise RuntimeError("bug in the policy")
    with Sandbox("/", policy=Strict()) as sb:
        # The process that calls execve dies (the shell's child), the shell goes on.
        assert sb.run(["sh", "-c", "id; echo $?"]).stdout == b"137\n"
        r = sb.run(["id"])            # the first exec is the Sentry's own, not a syscall: runs
        assert r.returncode == 0
        r = sb.run(["sh", "-c", "exec id"])
        assert r.returncode == 128 + 9
        # An argv larger than the policy reads (256 KiB) is cut short, never a reason to skip it.
        r = sb.run(["python3", "-c", "import os; os.execv('/usr/bin/id', ['id'] + ['a' * 100000] * 3)"])
        assert r.returncode == 128 + 9
        r = sb.run(["python3", "-c", "import os\ntry: os.mkdir('/tmp/d')\nexcept OSError as e: print(e.errno)"])
        assert r.stdout == b"%d\n" % errno.EPERM


def test_catch_all_sees_decoded_arguments():
    class Watch:
        syscalls = {"unlink", "getpid"}

        def on_syscall(self, task, name, args):
            if name == "unlink" and args["path"] == "/tmp/keep":
                return deny(errno.EBUSY)
            if name == "getpid":
                return deny(errno.ENOSYS) if task.comm == "python3" else None
    with Sandbox("/", policy=Watch()) as sb:
        r = sb.run(["python3", "-c", "import os, ctypes\nopen('/tmp/keep','w'); open('/tmp/go','w')\n"
                    "for p in ('/tmp/keep', '/tmp/go'):\n"
                    "  try: os.unlink(p); print('gone')\n  except OSError as e: print(e.errno)\n"
                    "print(ctypes.CDLL(None, use_errno=True).syscall(39), ctypes.get_errno())"])
    assert r.stdout.split() == [b"%d" % errno.EBUSY, b"gone", b"-1", b"%d" % errno.ENOSYS], r.stderr


def test_unnamed_syscalls_keep_their_dispatch_entries():
    """The hook table: only the named syscalls' entries change; all others are the very same tuples."""
    from sentry.config import SandboxConfig
    from sentry.kernel import DISPATCH
    from sentry.policy import install
    from sentry.syscalls.registry import NR_BY_NAME

    class K:
        dispatch = DISPATCH
    k = K()
    install(k, SandboxConfig(rootfs="/", args=[], policy=NoLoopback2()))
    changed = [nr for nr in range(len(DISPATCH)) if k.dispatch[nr] is not DISPATCH[nr]]
    assert changed == [NR_BY_NAME["connect"]]
    k = K()
    install(k, SandboxConfig(rootfs="/", args=[], policy=NoEtcWrites()))
    assert sorted(nr for nr in range(len(DISPATCH)) if k.dispatch[nr] is not DISPATCH[nr]) == \
        sorted(NR_BY_NAME[n] for n in ("open", "openat", "openat2", "creat", "rename", "renameat", "renameat2"))


def test_bad_policy_files_are_one_line_errors(tmp_path):
    for text, words in (('{"paths": {"write": {"deny": ["etc"]}}}', "absolute"),
                        ('{"syscalls": {"deny": ["no_such_call"]}}', "no_such_call"),
                        ('{"network": {"deny": ["300.1.1.1/8"]}}', "CIDR"),
                        ('{"colour": 1}', "unknown key"), ("{", "not valid JSON")):
        f = tmp_path / "bad.json"
        f.write_text(text)
        p = _do(["true"], "--policy", str(f))
        assert p.returncode == 1 and words in p.stderr and "Traceback" not in p.stderr, p.stderr


def _do(args: list[str], *flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "runsc_py.cli", *flags, "do", "--", *args], cwd="/", env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)


def test_policy_file_on_run_of_a_bundle(tmp_path):
    from tests.rootfs import make_bundle
    bundle = make_bundle(str(tmp_path / "bundle"), ["sh", "-c", "echo x > /etc/foo; echo rc=$?; echo y > /tmp/y; cat /tmp/y"])
    policy = tmp_path / "p.toml"
    policy.write_text('audit_log = "%s"\n[paths.write]\ndeny = ["/etc"]\n' % (tmp_path / "audit.jsonl"))
    env = dict(os.environ, PYTHONPATH=REPO)
    p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--root", str(tmp_path / "state"), "--policy", str(policy),
                        "run", "--bundle", bundle, "pol"], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=180)
    assert (p.returncode, p.stdout) == (0, "rc=1\ny\n"), p.stderr
    assert "Permission denied" in p.stderr
    assert not os.path.exists(os.path.join(bundle, "rootfs/etc/foo"))
    [record] = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert (record["syscall"], record["args"]["path"], record["errno"]) == ("openat", "/etc/foo", "EACCES")
