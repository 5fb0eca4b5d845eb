"""The Gofer, as the Sentry sees it: a confined file server reached through GoferClient.

Every test runs a real Gofer process (fork, mount namespace, chroot, dropped
capabilities, seccomp) over a real SOCK_SEQPACKET socket.  The fixture checks
at teardown that the Gofer exited 0 when its socket closed, so a test that
made it crash, or made it hit its seccomp filter (SIGSYS), fails there.
Needs root.
"""
from __future__ import annotations

import array
import errno
import os
import socket
import stat
import time

import msgpack
import pytest

from gofer import protocol
from gofer.client import Stat, spawn_gofer
from gofer.protocol import (AT_REMOVEDIR, RENAME_EXCHANGE, RENAME_NOREPLACE, UTIME_NOW,
                            UTIME_OMIT, Op)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the Gofer chroots and drops caps: needs root")

CANARY = b"host secret: must never be served\n"


@pytest.fixture
def tree(tmp_path):
    """tmp/canary (outside) and tmp/rootfs/ with files, dirs and hostile symlinks."""
    (tmp_path / "canary").write_bytes(CANARY)
    root = tmp_path / "rootfs"
    for d in ("etc", "d/sub", "empty", "full/inner"):
        (root / d).mkdir(parents=True)
    (root / "etc/hosts").write_bytes(b"127.0.0.1 localhost\n")
    (root / "d/file").write_bytes(b"0123456789")
    (root / "full/inner/x").write_bytes(b"x")
    os.symlink("/etc/shadow", root / "etc/shadow_link")               # absolute
    os.symlink(str(tmp_path / "canary"), root / "etc/canary_link")    # absolute, to the host file
    os.symlink("../../canary", root / "d/up")                         # relative, escapes upward
    os.symlink("up", root / "d/chain")                                # chain into the escape
    os.symlink("file", root / "d/to_file")                            # harmless relative
    return tmp_path


def _start(rootfs, readonly=False):
    pid, client = spawn_gofer(str(rootfs), readonly=readonly)
    client.sock.settimeout(30)           # a hung Gofer fails the test instead of hanging it
    return pid, client


def _stop(pid, client):
    client.sock.close()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"gofer died: status {status:#x}"


@pytest.fixture
def gofer(tree):
    pid, client = _start(tree / "rootfs")
    yield pid, client
    _stop(pid, client)


@pytest.fixture
def client(gofer):
    return gofer[1]


@pytest.fixture
def ro_client(tree):
    pid, client = _start(tree / "rootfs", readonly=True)
    yield client
    _stop(pid, client)


def walk(client, path: bytes):
    root, _ = client.mount()
    return client.walk_stat(root, [n for n in path.split(b"/") if n])


def handle_of(client, path: bytes) -> int:
    entries, status = walk(client, path)
    assert status == "ok", (path, status)
    return entries[-1][0] if entries else client.mount()[0]


def raises_errno(err: int, fn, *args, **kw):
    with pytest.raises(OSError) as info:
        fn(*args, **kw)
    assert info.value.errno == err, f"expected {errno.errorcode[err]}, got {info.value!r}"


def read_all(client, handle: int) -> bytes:
    """Open `handle` through the Gofer and read the donated fd to the end."""
    fd = client.open_at(handle, os.O_RDONLY)
    try:
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


def raw_request(client, data: bytes, fds=()) -> list:
    """Send bytes as a request, bypassing the client's encoder; return the decoded reply."""
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    client.sock.sendmsg([data], anc)
    reply, _, _, _ = client.sock.recvmsg(protocol.MAX_MESSAGE)
    return msgpack.unpackb(reply)


# ---- reading ----

def test_walk_open_read_returns_the_files_data(client):
    entries, status = walk(client, b"etc/hosts")
    assert status == "ok" and len(entries) == 2
    handle, st = entries[-1]
    assert isinstance(st, Stat) and stat.S_ISREG(st.mode) and st.size == 20
    fd = client.open_at(handle, os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"127.0.0.1 localhost\n"
    finally:
        os.close(fd)


def test_mount_returns_the_root_directory(client, tree):
    _, st = client.mount()
    host = os.stat(tree / "rootfs")
    assert (st.ino, st.dev) == (host.st_ino, host.st_dev) and stat.S_ISDIR(st.mode)


def test_walk_stops_at_a_missing_component_with_the_existing_prefix(client):
    entries, status = walk(client, b"d/nope/deeper")
    assert status == "missing" and len(entries) == 1
    assert stat.S_ISDIR(entries[0][1].mode)


def test_walk_through_a_regular_file_is_enotdir(client):
    root, _ = client.mount()
    raises_errno(errno.ENOTDIR, client.walk_stat, root, [b"d", b"file", b"x"])


def test_walk_of_more_components_than_one_request_holds(client, tree):
    path = tree / "rootfs"
    names = [b"n%d" % i for i in range(protocol.WALK_BATCH * 2 + 5)]
    os.makedirs(os.path.join(os.fsencode(path), *names))
    root, _ = client.mount()
    entries, status = client.walk_stat(root, names)
    assert status == "ok" and len(entries) == len(names)
    assert len({h for h, _ in entries}) == len(names)


@pytest.mark.parametrize("bad", [b"..", b".", b"", b"etc/hosts", b"/etc", b"a\0b"])
def test_names_that_are_not_one_component_are_einval(client, bad):
    root, _ = client.mount()
    raises_errno(errno.EINVAL, client.walk_stat, root, [bad])
    raises_errno(errno.EINVAL, client.mkdir_at, root, bad, 0o755, 0, 0)
    raises_errno(errno.EINVAL, client.unlink_at, root, bad, 0)


def test_overlong_name_is_enametoolong(client):
    root, _ = client.mount()
    raises_errno(errno.ENAMETOOLONG, client.walk_stat, root, [b"x" * 256])


def test_absolute_symlink_is_returned_as_a_symlink_not_followed(client):
    entries, status = walk(client, b"etc/shadow_link/more")
    assert status == "symlink" and len(entries) == 2
    handle, st = entries[-1]
    assert stat.S_ISLNK(st.mode)
    assert client.readlink_at(handle) == b"/etc/shadow"


def test_symlinks_escaping_upward_are_returned_as_symlinks(client, tree):
    for path, target in ((b"d/up", b"../../canary"), (b"d/chain", b"up"),
                         (b"etc/canary_link", os.fsencode(tree / "canary"))):
        entries, status = walk(client, path)
        assert status == "symlink"
        assert client.readlink_at(entries[-1][0]) == target


def test_opening_a_symlink_handle_is_eloop_never_the_target(client):
    for path in (b"d/up", b"etc/canary_link", b"d/to_file"):
        entries, _ = walk(client, path)
        for flags in (os.O_RDONLY, os.O_RDONLY | os.O_NONBLOCK, os.O_RDWR):
            raises_errno(errno.ELOOP, client.open_at, entries[-1][0], flags)


def test_readlink_of_a_non_symlink_is_einval(client):
    raises_errno(errno.EINVAL, client.readlink_at, handle_of(client, b"d/file"))


def test_getdents64_lists_every_entry_with_dot_and_dotdot(client, tree):
    names = {n for _, _, n in client.getdents64(handle_of(client, b"d"))}
    assert names == {b".", b"..", b"sub", b"file", b"up", b"chain", b"to_file"}
    types = {n: t for _, t, n in client.getdents64(handle_of(client, b"d"))}
    assert types[b"sub"] == 4 and types[b"file"] == 8 and types[b"up"] == 10   # DT_DIR/REG/LNK


def test_getdents64_of_a_directory_larger_than_one_reply(client, tree):
    big = tree / "rootfs/big"
    big.mkdir()
    want = {b"%04d-" % i + b"y" * 200 for i in range(600)}          # ~140 KiB of dirents
    for name in want:
        (big / os.fsdecode(name)).touch()
    got = [n for _, _, n in client.getdents64(handle_of(client, b"big"))]
    assert len(got) == len(want) + 2 and set(got) == want | {b".", b".."}


def test_getdents64_of_a_file_is_enotdir(client):
    raises_errno(errno.ENOTDIR, client.getdents64, handle_of(client, b"d/file"))


def test_directories_are_never_given_out_as_descriptors(client):
    """A directory fd in the Sentry could reach past the rootfs with fd-relative lookups of `..`."""
    h = handle_of(client, b"d")
    for flags in (os.O_RDONLY | os.O_DIRECTORY, os.O_RDONLY, os.O_WRONLY):
        raises_errno(errno.EISDIR, client.open_at, h, flags)
    raises_errno(errno.ENOTDIR, client.open_at, handle_of(client, b"d/file"), os.O_DIRECTORY)


def test_open_flags_outside_the_contract_are_einval(client):
    h = handle_of(client, b"d/file")
    for flags in (os.O_CREAT, os.O_EXCL, os.O_RDONLY | os.O_PATH, os.O_ACCMODE):
        raises_errno(errno.EINVAL, client.open_at, h, flags)


def test_device_nodes_are_never_opened(client, tree):
    os.mknod(tree / "rootfs/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    raises_errno(errno.EPERM, client.open_at, handle_of(client, b"null"), os.O_RDONLY)


def test_a_file_replaced_behind_the_gofers_back_is_estale(client, tree):
    h = handle_of(client, b"d/file")
    os.rename(tree / "rootfs/etc/hosts", tree / "rootfs/d/file")
    raises_errno(errno.ESTALE, client.open_at, h, os.O_RDONLY)


def test_fstat_fstatfs_and_fsync(client, tree):
    h = handle_of(client, b"d/file")
    assert client.fstat(h).size == 10
    fs = client.fstatfs(h)
    assert fs["f_namelen"] == 255 and fs["f_bsize"] > 0 and set(fs) == set(protocol.STATFS_FIELDS)
    client.fsync(h)
    client.fsync(handle_of(client, b"d"))


def test_close_releases_handles_and_unknown_ones_are_ebadf(client):
    h = handle_of(client, b"d/file")
    client.close([h])
    raises_errno(errno.EBADF, client.fstat, h)
    raises_errno(errno.EBADF, client.close, [h])
    raises_errno(errno.EBADF, client.close, [987654])


def test_handles_are_capped_with_emfile_and_reusable_after_close(client, tree):
    names = [b"c%d" % i for i in range(protocol.WALK_BATCH)]
    os.makedirs(os.path.join(os.fsencode(tree / "rootfs"), *names))
    root, _ = client.mount()
    held = []
    with pytest.raises(OSError) as info:
        for _ in range(20000 // len(names)):
            entries, _ = client.walk_stat(root, names)
            held += [h for h, _ in entries]
    assert info.value.errno == errno.EMFILE and 1000 < len(held) <= 10000
    client.close(held)
    assert client.walk_stat(root, names)[1] == "ok"


# ---- malformed requests ----

@pytest.mark.parametrize("data, err", [
    (b"\xc1\xff garbage", errno.EINVAL),                               # not msgpack
    (bytes(range(256)) * 4, errno.EINVAL),                             # random bytes
    (msgpack.packb({"op": 1}), errno.EINVAL),                          # not an array
    (msgpack.packb([]), errno.EINVAL),
    (msgpack.packb([999]), errno.EINVAL),                              # unknown op
    (msgpack.packb(["FStat", 1]), errno.EINVAL),
    (msgpack.packb([Op.FSTAT, "1"]), errno.EINVAL),                    # wrong types
    (msgpack.packb([Op.FSTAT, True]), errno.EINVAL),
    (msgpack.packb([Op.FSTAT, -1]), errno.EINVAL),
    (msgpack.packb([Op.FSTAT, 2 ** 40]), errno.EINVAL),
    (msgpack.packb([Op.WALK_STAT, 1, ["etc"]]), errno.EINVAL),         # str, not bytes
    (msgpack.packb([Op.WALK_STAT, 1, b"etc"]), errno.EINVAL),
    (msgpack.packb([Op.FSTAT]), errno.EINVAL),                         # wrong arity
    (msgpack.packb([Op.FSTAT, 1, 2]), errno.EINVAL),
    (msgpack.packb([Op.FSTAT, 4242]), errno.EBADF),                    # bad handle
    (msgpack.packb([Op.OPEN_AT, 4242, 0]), errno.EBADF),
    (msgpack.packb([Op.CLOSE, [4242]]), errno.EBADF),
    (b"\x91" * 5000 + b"\x01", errno.EINVAL),                         # nested too deep
    (b"\x92" + b"\x91" * 100000, errno.EMSGSIZE),                     # larger than MAX_MESSAGE
])
def test_malformed_messages_get_an_errno_and_the_gofer_keeps_serving(client, data, err):
    client.mount()
    assert raw_request(client, data) == [err]
    entries, status = walk(client, b"etc/hosts")
    assert status == "ok"


def test_descriptors_sent_to_the_gofer_are_discarded(gofer, tree):
    pid, client = gofer
    with open(tree / "canary", "rb") as f:
        assert raw_request(client, msgpack.packb([Op.FSTAT, 4242]), fds=[f.fileno()]) == [errno.EBADF]
    targets = [os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")]
    assert not any("canary" in t for t in targets)


# ---- confinement ----

def test_gofer_runs_with_five_capabilities_no_new_privs_and_seccomp(gofer):
    pid, _ = gofer
    status = dict(line.split(":\t", 1) for line in open(f"/proc/{pid}/status").read().splitlines()
                  if ":\t" in line)
    kept = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4)   # CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[field], 16) == kept, field
    assert int(status["CapInh"], 16) == 0 and int(status["CapAmb"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"


def test_gofer_root_is_the_rootfs_and_it_holds_nothing_outside(gofer, tree):
    pid, _ = gofer
    rootfs = os.path.realpath(tree / "rootfs")
    assert os.readlink(f"/proc/{pid}/root") == rootfs
    root_st, host_st = os.stat(f"/proc/{pid}/root"), os.stat(rootfs)
    assert (root_st.st_dev, root_st.st_ino) == (host_st.st_dev, host_st.st_ino)
    assert os.readlink(f"/proc/{pid}/cwd") == rootfs
    for n in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{n}")
        assert target.startswith("socket:") or target == rootfs or target.startswith(rootfs + "/"), target


def test_gofer_is_in_its_own_mount_network_ipc_and_uts_namespaces(gofer):
    pid, _ = gofer
    for ns in ("mnt", "net", "ipc", "uts"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns


def test_closing_the_socket_makes_the_gofer_exit_zero(tree):
    pid, client = _start(tree / "rootfs")
    client.mount()
    client.sock.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            return
        time.sleep(0.01)
    os.kill(pid, 9)
    pytest.fail("gofer did not exit after its socket closed")


def test_spawn_of_a_missing_rootfs_raises(tmp_path):
    with pytest.raises(OSError):
        spawn_gofer(str(tmp_path / "no-such-rootfs"))


def test_client_uses_only_sendmsg_and_recvmsg(tree):
    """The Sentry calls the client under its own seccomp filter: nothing but sendmsg/recvmsg."""
    import pyseccomp
    pid, client = spawn_gofer(str(tree / "rootfs"))
    sentry = os.fork()
    if sentry == 0:
        code = 1
        try:
            f = pyseccomp.SyscallFilter(defaction=pyseccomp.KILL_PROCESS)
            for name in ("sendmsg", "recvmsg", "exit_group", "exit", "brk", "mmap", "munmap",
                         "mremap", "madvise", "futex", "rt_sigprocmask", "rt_sigreturn", "close"):
                f.add_rule(pyseccomp.ALLOW, name)
            f.load()
            root, _ = client.mount()
            entries, _ = client.walk_stat(root, [b"etc", b"hosts"])
            fd = client.open_at(entries[-1][0], os.O_RDONLY)
            client.getdents64(root)
            client.close([h for h, _ in entries] + [root])
            code = 0 if fd >= 0 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(sentry, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"status {status:#x}"
    _stop(pid, client)


# ---- read-only ----

def test_read_only_gofer_refuses_every_write_with_erofs(ro_client, tree):
    c = ro_client
    root, _ = c.mount()
    f = handle_of(c, b"d/file")
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
        raises_errno(errno.EROFS, c.open_at, f, flags)
    raises_errno(errno.EROFS, c.open_create_at, root, b"new", os.O_RDWR, 0o644, 0, 0)
    raises_errno(errno.EROFS, c.mkdir_at, root, b"newdir", 0o755, 0, 0)
    raises_errno(errno.EROFS, c.mknod_at, root, b"fifo", stat.S_IFIFO | 0o644, 0, 0)
    raises_errno(errno.EROFS, c.symlink_at, root, b"ln", b"target", 0, 0)
    raises_errno(errno.EROFS, c.link_at, root, b"hard", f)
    raises_errno(errno.EROFS, c.unlink_at, handle_of(c, b"d"), b"file", 0)
    raises_errno(errno.EROFS, c.unlink_at, root, b"empty", AT_REMOVEDIR)
    raises_errno(errno.EROFS, c.rename_at, root, b"etc", root, b"etc2", 0)
    raises_errno(errno.EROFS, c.set_stat, f, mode=0o777)
    raises_errno(errno.EROFS, c.set_stat, f, size=0)
    raises_errno(errno.EROFS, c.set_stat, f, mtime_ns=0)
    assert read_all(c, f) == b"0123456789"
    assert sorted(os.listdir(tree / "rootfs")) == ["d", "empty", "etc", "full"]


# ---- writing ----

def test_open_create_at_makes_a_file_with_mode_and_owner_and_donates_an_fd(client, tree):
    d = handle_of(client, b"d")
    h, st, fd = client.open_create_at(d, b"new", os.O_RDWR, 0o640, 1000, 1001)
    try:
        os.write(fd, b"written through the donated fd")
    finally:
        os.close(fd)
    host = os.stat(tree / "rootfs/d/new")
    assert stat.S_ISREG(st.mode) and stat.S_IMODE(st.mode) == 0o640
    assert (st.uid, st.gid) == (host.st_uid, host.st_gid) == (1000, 1001)
    assert (tree / "rootfs/d/new").read_bytes() == b"written through the donated fd"
    assert client.fstat(h).size == 30


def test_open_create_at_mode_ignores_the_gofers_umask_and_keeps_setgid(client, tree):
    h, st, fd = client.open_create_at(handle_of(client, b"d"), b"sg", os.O_WRONLY, 0o2777, 1000, 1000)
    os.close(fd)
    assert stat.S_IMODE(os.stat(tree / "rootfs/d/sg").st_mode) == 0o2777


def test_open_create_at_of_an_existing_file(client, tree):
    d = handle_of(client, b"d")
    raises_errno(errno.EEXIST, client.open_create_at, d, b"file", os.O_RDWR | os.O_EXCL, 0o600, 7, 7)
    h, st, fd = client.open_create_at(d, b"file", os.O_RDWR | os.O_TRUNC, 0o600, 7, 7)
    os.close(fd)
    host = os.stat(tree / "rootfs/d/file")
    assert host.st_size == 0 and host.st_uid == 0 and stat.S_IMODE(host.st_mode) == 0o644
    raises_errno(errno.EISDIR, client.open_create_at, d, b"sub", os.O_RDONLY, 0o600, 0, 0)
    raises_errno(errno.ELOOP, client.open_create_at, d, b"up", os.O_RDONLY, 0o600, 0, 0)
    raises_errno(errno.EINVAL, client.open_create_at, d, b"x", os.O_RDONLY | os.O_DIRECTORY, 0o600, 0, 0)


def test_open_create_at_in_a_removed_directory_is_enoent(client, tree):
    h = handle_of(client, b"empty")
    os.rmdir(tree / "rootfs/empty")
    raises_errno(errno.ENOENT, client.open_create_at, h, b"x", os.O_RDWR, 0o600, 0, 0)


def test_mkdir_at_makes_an_owned_directory_and_eexist_after(client, tree):
    root, _ = client.mount()
    h, st = client.mkdir_at(root, b"made", 0o750, 1000, 1000)
    assert stat.S_ISDIR(st.mode) and stat.S_IMODE(st.mode) == 0o750 and st.uid == 1000
    assert os.stat(tree / "rootfs/made").st_gid == 1000
    assert {n for _, _, n in client.getdents64(h)} == {b".", b".."}
    raises_errno(errno.EEXIST, client.mkdir_at, root, b"made", 0o750, 0, 0)
    raises_errno(errno.ENOTDIR, client.mkdir_at, handle_of(client, b"d/file"), b"x", 0o755, 0, 0)


def test_mknod_at_makes_fifos_and_sockets_only(client, tree):
    root, _ = client.mount()
    h, st = client.mknod_at(root, b"fifo", stat.S_IFIFO | 0o600, 1000, 1000)
    assert stat.S_ISFIFO(st.mode) and st.uid == 1000
    _, st = client.mknod_at(root, b"sock", stat.S_IFSOCK | 0o600, 0, 0)
    assert stat.S_ISSOCK(os.lstat(tree / "rootfs/sock").st_mode)
    for mode in (stat.S_IFCHR | 0o600, stat.S_IFBLK | 0o600, stat.S_IFREG | 0o600, stat.S_IFDIR | 0o700):
        raises_errno(errno.EPERM, client.mknod_at, root, b"dev", mode, 0, 0)
    assert not os.path.lexists(tree / "rootfs/dev")
    raises_errno(errno.EEXIST, client.mknod_at, root, b"fifo", stat.S_IFIFO | 0o600, 0, 0)


def test_a_fifo_opens_without_blocking_the_gofer(client):
    root, _ = client.mount()
    h, _ = client.mknod_at(root, b"fifo", stat.S_IFIFO | 0o600, 0, 0)
    fd = client.open_at(h, os.O_RDONLY)                 # no writer: would block without O_NONBLOCK
    try:
        wfd = client.open_at(h, os.O_WRONLY)
        os.write(wfd, b"through the fifo")
        os.close(wfd)
        assert os.read(fd, 100) == b"through the fifo"
    finally:
        os.close(fd)


def test_symlink_at_makes_an_owned_symlink_that_is_never_followed(client, tree):
    root, _ = client.mount()
    h, st = client.symlink_at(root, b"evil", b"/../../canary", 1000, 1000)
    assert stat.S_ISLNK(st.mode) and st.uid == 1000
    assert os.lstat(tree / "rootfs/evil").st_uid == 1000
    assert client.readlink_at(h) == b"/../../canary"
    raises_errno(errno.ELOOP, client.open_at, h, os.O_RDONLY)
    raises_errno(errno.EEXIST, client.symlink_at, root, b"evil", b"x", 0, 0)
    raises_errno(errno.ENOENT, client.symlink_at, root, b"empty_target", b"", 0, 0)


def test_link_at_adds_a_name_for_the_same_file(client, tree):
    f = handle_of(client, b"d/file")
    root, _ = client.mount()
    h, st = client.link_at(root, b"hard", f)
    assert st.nlink == 2 and st.ino == client.fstat(f).ino
    assert (tree / "rootfs/hard").read_bytes() == b"0123456789"
    raises_errno(errno.EEXIST, client.link_at, root, b"hard", f)
    raises_errno(errno.EPERM, client.link_at, root, b"dirlink", handle_of(client, b"d"))


def test_unlink_at_removes_files_and_empty_directories(client, tree):
    root, _ = client.mount()
    d = handle_of(client, b"d")
    client.unlink_at(d, b"file", 0)
    assert not os.path.lexists(tree / "rootfs/d/file")
    raises_errno(errno.ENOENT, client.unlink_at, d, b"file", 0)
    raises_errno(errno.EISDIR, client.unlink_at, d, b"sub", 0)
    raises_errno(errno.ENOTDIR, client.unlink_at, d, b"up", AT_REMOVEDIR)
    raises_errno(errno.ENOTEMPTY, client.unlink_at, root, b"full", AT_REMOVEDIR)
    raises_errno(errno.EINVAL, client.unlink_at, root, b"empty", 0x4000)
    client.unlink_at(root, b"empty", AT_REMOVEDIR)
    assert not os.path.lexists(tree / "rootfs/empty")
    client.unlink_at(d, b"up", 0)                       # removes the link, not the target
    assert (tree / "canary").read_bytes() == CANARY


def test_unlink_at_closes_the_handles_it_is_given_only_on_success(client, tree):
    d = handle_of(client, b"d")
    f = handle_of(client, b"d/file")
    raises_errno(errno.EBADF, client.unlink_at, d, b"file", 0, [f, 99999])   # an unknown handle: nothing done
    assert os.path.exists(tree / "rootfs/d/file")
    assert client.fstat(f).size == 10
    raises_errno(errno.ENOENT, client.unlink_at, d, b"nothere", 0, [f])       # failed unlink: f stays open
    assert client.fstat(f).size == 10
    client.unlink_at(d, b"file", 0, [f, f])                                   # listed twice, closed once
    assert not os.path.lexists(tree / "rootfs/d/file")
    raises_errno(errno.EBADF, client.fstat, f)
    assert client.fstat(d).nlink >= 2                                         # the directory's handle lives


def test_rename_at_moves_an_entry_and_its_handles_follow(client, tree):
    f = handle_of(client, b"d/file")
    root, _ = client.mount()
    client.rename_at(handle_of(client, b"d"), b"file", root, b"moved", 0)
    assert (tree / "rootfs/moved").read_bytes() == b"0123456789"
    assert read_all(client, f) == b"0123456789"        # the old handle still opens the file
    raises_errno(errno.ENOENT, client.rename_at, root, b"nothing", root, b"x", 0)


def test_rename_at_noreplace_and_exchange(client, tree):
    root, _ = client.mount()
    d = handle_of(client, b"d")
    hosts, f = handle_of(client, b"etc/hosts"), handle_of(client, b"d/file")
    raises_errno(errno.EEXIST, client.rename_at, d, b"file", handle_of(client, b"etc"), b"hosts",
                 RENAME_NOREPLACE)
    client.rename_at(d, b"file", handle_of(client, b"etc"), b"hosts", RENAME_EXCHANGE)
    assert (tree / "rootfs/etc/hosts").read_bytes() == b"0123456789"
    assert (tree / "rootfs/d/file").read_bytes() == b"127.0.0.1 localhost\n"
    assert read_all(client, hosts) == b"127.0.0.1 localhost\n"     # handles follow their files
    assert read_all(client, f) == b"0123456789"
    raises_errno(errno.EINVAL, client.rename_at, d, b"file", d, b"x",
                 RENAME_EXCHANGE | RENAME_NOREPLACE)
    raises_errno(errno.ENOTEMPTY, client.rename_at, root, b"empty", root, b"full", 0)


def test_set_stat_changes_owner_mode_size_and_times(client, tree):
    f = handle_of(client, b"d/file")
    st = client.set_stat(f, uid=1000, gid=1000, mode=0o4755)
    assert (st.uid, st.gid, stat.S_IMODE(st.mode)) == (1000, 1000, 0o4755)
    st = client.set_stat(f, size=4)
    assert st.size == 4 and (tree / "rootfs/d/file").read_bytes() == b"0123"
    st = client.set_stat(f, atime_ns=1_000_000_123, mtime_ns=2_000_000_456)
    assert (st.atime_ns, st.mtime_ns) == (1_000_000_123, 2_000_000_456)
    st = client.set_stat(f, atime_ns=UTIME_OMIT, mtime_ns=UTIME_NOW)
    assert st.atime_ns == 1_000_000_123 and st.mtime_ns > 2_000_000_456
    st = client.set_stat(f, gid=0)
    assert (st.uid, st.gid) == (1000, 0)
    host = os.stat(tree / "rootfs/d/file")
    assert (host.st_uid, host.st_gid, host.st_size) == (1000, 0, 4)


def test_set_stat_errors(client):
    raises_errno(errno.EISDIR, client.set_stat, handle_of(client, b"d"), size=0)
    link = walk(client, b"d/up")[0][-1][0]
    raises_errno(errno.EOPNOTSUPP, client.set_stat, link, mode=0o777)
    st = client.set_stat(link, uid=1000)                # lchown: the link, not its target
    assert st.uid == 1000 and stat.S_ISLNK(st.mode)


def test_rename_over_an_entry_leaves_the_overwritten_files_handle_stale(client):
    d = handle_of(client, b"d")
    old = handle_of(client, b"d/file")
    _, _, fd = client.open_create_at(d, b"other", os.O_WRONLY, 0o644, 0, 0)
    os.close(fd)
    client.rename_at(d, b"other", d, b"file", 0)
    raises_errno(errno.ESTALE, client.open_at, old, os.O_RDONLY)
    assert client.fstat(old).nlink == 0            # the handle still names the unlinked inode


def test_a_fifo_without_a_reader_refuses_a_writer_with_enxio(client):
    root, _ = client.mount()
    h, _ = client.mknod_at(root, b"lonely", stat.S_IFIFO | 0o600, 0, 0)
    raises_errno(errno.ENXIO, client.open_at, h, os.O_WRONLY)


def test_read_only_tree_is_also_mounted_read_only_in_the_gofers_namespace(tree):
    pid, client = _start(tree / "rootfs", readonly=True)
    try:
        mounts = [line.split() for line in open(f"/proc/{pid}/mountinfo")]
        root_mount = [m for m in mounts if m[4] == "/"]
        assert root_mount and "ro" in root_mount[-1][5].split(",")
    finally:
        _stop(pid, client)


@pytest.mark.parametrize("forbidden", [
    "os.getuid()",                                           # not in the allowlist
    "os.open('/', os.O_RDONLY)",                             # openat without O_NOFOLLOW
    "socket.socket(socket.AF_INET, socket.SOCK_STREAM)",     # no new sockets
])
def test_gofer_seccomp_filter_kills_calls_outside_the_allowlist(forbidden):
    from gofer import confine
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        try:
            confine.build_seccomp_filter(b.fileno()).load()
            eval(forbidden)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    a.close()
    b.close()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 31, f"status {status:#x}"  # SIGSYS


@pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs the host's busybox-static")
def test_serves_a_busybox_rootfs(tmp_path):
    from tests.rootfs import make_busybox_rootfs
    rootfs = make_busybox_rootfs(str(tmp_path / "rootfs"))
    pid, client = _start(rootfs)
    try:
        entries, status = walk(client, b"bin/sh")
        assert status == "symlink" and client.readlink_at(entries[-1][0]) == b"/bin/busybox"
        assert read_all(client, handle_of(client, b"bin/busybox"))[:4] == b"\x7fELF"
        listed = {n for _, _, n in client.getdents64(handle_of(client, b"bin"))}
        assert {b"busybox", b"sh", b"ls"} <= listed
        assert b"root:x:0:0" in read_all(client, handle_of(client, b"etc/passwd"))
    finally:
        _stop(pid, client)



def test_a_dead_gofer_is_eio_to_the_client(tree):
    pid, client = _start(tree / "rootfs")
    root, _ = client.mount()
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    for _ in range(2):                                   # the first call may still see EOF, later EPIPE
        raises_errno(errno.EIO, client.fstat, root)
    client.sock.close()


def test_kernels_without_openat2_and_fchmodat2_get_the_same_answers(tree, monkeypatch):
    """The fallbacks (openat+O_NOFOLLOW, reopen+fchmod) are chosen before fork, so force them."""
    from gofer import hostcalls
    monkeypatch.setattr(hostcalls, "_openat2_works", False)
    monkeypatch.setattr(hostcalls, "_fchmodat2_works", False)
    pid, client = _start(tree / "rootfs")
    try:
        assert read_all(client, handle_of(client, b"etc/hosts")) == b"127.0.0.1 localhost\n"
        entries, status = walk(client, b"d/up/x")
        assert status == "symlink"
        raises_errno(errno.ELOOP, client.open_at, entries[-1][0], os.O_RDONLY)
        raises_errno(errno.EINVAL, client.walk_stat, client.mount()[0], [b".."])
        assert stat.S_IMODE(client.set_stat(handle_of(client, b"d/file"), mode=0o600).mode) == 0o600
        assert stat.S_IMODE(client.set_stat(handle_of(client, b"d"), mode=0o700).mode) == 0o700
        _, st = client.mkdir_at(client.mount()[0], b"sgid", 0o2775, 1000, 1000)
        assert stat.S_IMODE(st.mode) == 0o2775 and st.gid == 1000
    finally:
        _stop(pid, client)


def test_donated_fds_are_blocking_unless_o_nonblock_was_asked(client):
    h = handle_of(client, b"d/file")
    for flags, blocking in ((os.O_RDONLY, True), (os.O_RDONLY | os.O_NONBLOCK, False)):
        fd = client.open_at(h, flags)
        try:
            assert os.get_blocking(fd) is blocking
        finally:
            os.close(fd)


def test_created_files_get_their_owner_and_set_id_bits_without_open_tree_too(tree, monkeypatch):
    """A create answers the same whether the handle comes from open_tree(fd) or, where the
    kernel or a runtime's filter refuses open_tree, from a lookup of the name checked against
    the fd; chown (only when the owner differs) keeps the set-id bits asked for."""
    from gofer import hostcalls
    for works in (True, False):
        monkeypatch.setattr(hostcalls, "_open_tree_works", works)
        pid, client = _start(tree / "rootfs")
        try:
            root, _ = client.mount()
            h, st, fd = client.open_create_at(root, b"own%d" % works, os.O_WRONLY | os.O_EXCL, 0o4755, 1000, 1001)
            assert (st.uid, st.gid, stat.S_IMODE(st.mode)) == (1000, 1001, 0o4755)
            os.write(fd, b"data")
            os.close(fd)
            assert client.fstat(h).size == 4 and client.fstat(h).ino == st.ino
            h2, st2, fd2 = client.open_create_at(root, b"mine%d" % works, os.O_RDWR | os.O_EXCL, 0o640, 0, 0)
            os.close(fd2)
            assert (st2.uid, st2.gid, stat.S_IMODE(st2.mode)) == (0, 0, 0o640)
            client.unlink_at(root, b"mine%d" % works, 0, [h2])
            raises_errno(errno.EBADF, client.fstat, h2)
        finally:
            _stop(pid, client)


def test_gofer_seccomp_filter_allows_open_tree_only_as_an_o_path_reopen():
    from gofer import confine, hostcalls
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            confine.build_seccomp_filter(b.fileno()).load()
            fd = hostcalls.path_of_fd(b.fileno())                 # allowed: an O_PATH fd
            status = 0 if fd is not None and fd >= 0 else 2
            hostcalls._open_tree_call(hostcalls.SYS_OPEN_TREE, b.fileno(), b"",
                                      hostcalls.OPEN_TREE_PATH_FLAGS | 1)   # OPEN_TREE_CLONE: killed
            status = 3
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    a.close()
    b.close()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 31, f"status {status:#x}"  # SIGSYS
