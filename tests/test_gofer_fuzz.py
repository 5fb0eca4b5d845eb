"""Property: a live Gofer answers every message -- random bytes, random msgpack, well-shaped
requests with hostile names and handles -- with a result or an errno, never crashes, and never
touches a canary outside its tree.  Thousands of examples per run (hypothesis)."""
from __future__ import annotations

import array
import os
import socket
import stat

import msgpack
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from gofer.client import spawn_gofer  # noqa: E402
from gofer.protocol import Op  # noqa: E402

NAMES = st.one_of(st.binary(max_size=40), st.sampled_from([b"..", b".", b"", b"/", b"a/b", b"../canary",
                                                            b"file", b"dir", b"link", b"\0x", b"x" * 300]))
ANY = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=True),
                             st.text(max_size=20), st.binary(max_size=40)),
                   lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                   max_leaves=12)
OPS = st.sampled_from([int(o) for o in Op] + [0, 18, 99, -1, 2**40, 2**63])
SHAPED = st.builds(lambda op, args: [op, *args], OPS,
                   st.lists(st.one_of(st.integers(-5, 20), NAMES, st.lists(NAMES, max_size=4), ANY), max_size=7))
RAW = st.binary(max_size=200)
MESSAGE = st.one_of(SHAPED.map(msgpack.packb), st.lists(ANY, max_size=6).map(msgpack.packb), RAW)


@pytest.fixture(scope="module")
def live_gofer(tmp_path_factory):
    base = tmp_path_factory.mktemp("gofer-fuzz")
    root = base / "rootfs"
    (root / "dir").mkdir(parents=True)
    (root / "file").write_bytes(b"inside\n")
    os.symlink("../canary", root / "link")
    canary = base / "canary"
    canary.write_bytes(b"outside\n")
    os.utime(canary, ns=(1_000_000_000, 1_000_000_000))
    before = (canary.read_bytes(), canary.stat().st_mtime_ns, sorted(os.listdir(base)))
    pid, client = spawn_gofer(str(root), readonly=False)
    yield client, pid, canary, base, before
    client.sock.close()
    os.waitpid(pid, 0)


def _exchange(sock: socket.socket, data: bytes):
    sock.sendmsg([data], [], socket.MSG_NOSIGNAL)
    sock.settimeout(5)
    reply, anc, _flags, _ = sock.recvmsg(1 << 17, socket.CMSG_SPACE(4 * 4))
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[:len(payload) - len(payload) % 4])
            for fd in fds:
                os.close(fd)
    return reply


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
@given(message=MESSAGE)
def test_every_message_gets_a_result_or_an_errno(live_gofer, message: bytes) -> None:
    client, pid, canary, base, before = live_gofer
    if not message:
        return                      # a zero-length SEQPACKET datagram reads as EOF: the Gofer would exit
    reply = msgpack.unpackb(_exchange(client.sock, message), raw=False, strict_map_key=False)
    assert isinstance(reply, list) and reply and isinstance(reply[0], int)
    assert 0 <= reply[0] < 4096, reply          # 0 = a result, else an errno
    assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the Gofer died"


def test_the_canary_outside_is_untouched_after_the_fuzzing(live_gofer) -> None:
    client, pid, canary, base, before = live_gofer
    assert (canary.read_bytes(), canary.stat().st_mtime_ns, sorted(os.listdir(base))) == before
    assert stat.S_ISREG(canary.stat().st_mode)
    assert os.waitpid(pid, os.WNOHANG) == (0, 0)
