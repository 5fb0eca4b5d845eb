"""The first code every `runsc-py` command runs: hand the command to a warm factory, or run it here.

Importing the front end and the Sentry costs a Python `runsc-py` ~50-70 ms
per command -- twice a whole `runc run`.  `runsc-py factory start` (see
`runsc_py.factory`) keeps one process per --root with all of that already
imported; this module, which imports nothing but builtins (`_socket`,
`_signal`), sends it the command line, working directory, environment,
umask and stdio fds over `ROOT/.factory/sock`.  The factory forks a child
that runs the command exactly as `runsc_py.cli.main` would here and reports
its exit status back; meanwhile this process relays the signals runc
forwards (TERM, INT, HUP, QUIT, USR1, USR2, WINCH, CONT) to the child, and
if this process dies the child is killed (it watches the connection).

The factory is only used where the result cannot differ from a cold run:
* the command is `run` in the foreground, `do`, `create` or `exec` (for the last two the
  front leaves a proxy, its own child, as the pid an engine reaps; see
  runsc_py/factory.py) or a short lifecycle command;
* no stdio fd is a terminal (a controlling terminal cannot be handed over);
* the factory accepts: same uid, same namespaces and root as this process,
  code unchanged since it started; it refuses otherwise, and the command runs
  here.  `RUNSC_PY_FACTORY=0` skips it.

The factory is on by default: the first `run`, `do`, `create` or `exec` under a --root
that has none starts one in the background (a detached process, `runsc_py.factory.autostart`)
and runs cold itself; later commands are warm; the factory exits after two idle minutes.
`RUNSC_PY_FACTORY=0` starts none, `runsc-py factory start` one that stays.
"""
import os
import sys

import _signal
import _socket

# Commands that start a factory for their --root when it has none.
AUTOSTART_COMMANDS = frozenset({"run", "do", "create", "exec"})
# Commands a factory may run (see the module docstring).
FACTORY_COMMANDS = frozenset({"run", "do", "create", "exec", "start", "state", "kill", "delete", "list", "ps", "wait", "events",
                              "pause", "resume", "update"})
DEFAULT_ROOT = "/var/run/runsc-py"
FACTORY_DIR = ".factory"
SOCKET_NAME = "sock"
# The global flags that take a value, as the click group in runsc_py.cli declares them.
GLOBAL_VALUE_FLAGS = frozenset({"--root", "--log", "--log-format", "--debug-log", "--rootless", "--criu",
                                "--platform", "--network", "--overlay", "--cpu-pin"})
RELAYED = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2,
           _signal.SIGWINCH, _signal.SIGCONT)
MAGIC = b"RUNSC-PY-FACTORY 1"
MAX_MESSAGE = 1 << 20


def scan(argv: list[str]) -> tuple[str, str | None]:
    """(--root, subcommand) from a runc-style command line; subcommand None if it cannot be told."""
    root = DEFAULT_ROOT
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-"):
            return root, a
        name, eq, value = a.partition("=")
        if name in GLOBAL_VALUE_FLAGS:
            if not eq:
                i += 1
                if i >= len(argv):
                    return root, None
                value = argv[i]
            if name == "--root":
                root = value
        elif a in ("-h", "--help", "-v", "--version", "--"):
            return root, None
        i += 1
    return root, None


def socket_path(root: str) -> str:
    return os.path.join(root, FACTORY_DIR, SOCKET_NAME)


def encode_request(argv: list[str], cwd: str, umask: int, env: dict[bytes, bytes]) -> bytes:
    """NUL-separated fields: magic, cwd, umask, argc, argv..., env entries (KEY=VALUE)."""
    fields = [MAGIC, os.fsencode(cwd), b"%o" % umask, b"%d" % len(argv)]
    fields += [os.fsencode(a) for a in argv]
    fields += [k + b"=" + v for k, v in env.items()]
    return b"\0".join(fields)


def decode_request(data: bytes) -> tuple[list[str], str, int, dict[str, str]]:
    """The inverse of encode_request; ValueError for anything malformed."""
    fields = data.split(b"\0")
    if len(fields) < 4 or fields[0] != MAGIC:
        raise ValueError("not a factory request")
    cwd = os.fsdecode(fields[1])
    umask = int(fields[2], 8)
    argc = int(fields[3])
    if not 0 <= argc <= len(fields) - 4 or not 0 <= umask <= 0o777 or not cwd.startswith("/"):
        raise ValueError("malformed factory request")
    argv = [os.fsdecode(a) for a in fields[4:4 + argc]]
    env = {}
    for entry in fields[4 + argc:]:
        key, eq, value = entry.partition(b"=")
        if not eq or not key:
            raise ValueError("malformed environment entry")
        env[os.fsdecode(key)] = os.fsdecode(value)
    return argv, cwd, umask, env


def exit_code(wait_status: int) -> int:
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def option_value(argv: list[str], command: str, *names: str) -> str | None:
    """The value of a subcommand option (`--pid-file X` or `--pid-file=X`), or None."""
    try:
        args = argv[argv.index(command) + 1:]
    except ValueError:
        return None
    for i, a in enumerate(args):
        if a in names and i + 1 < len(args):
            return args[i + 1]
        for n in names:
            if a.startswith(n + "="):
                return a[len(n) + 1:]
    return None


def write_pid_file(path: str | bytes, pid: int) -> None:
    path = os.fsdecode(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, b"%d" % pid)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def relay_signals(pid: int) -> None:
    """From now on, the signals runc forwards go to `pid` instead of us."""
    def relay(signum, _frame):
        try:
            os.kill(pid, signum)
        except OSError:
            pass
    for s in RELAYED:
        _signal.signal(s, relay)


def await_eof(sock) -> None:
    """Block until the peer of `sock` has gone (EOF or an error)."""
    while True:
        try:
            if sock.recv(16) == b"":
                return
        except InterruptedError:
            continue
        except OSError:
            return


def kill_self_at_eof(sock) -> None:
    """SIGKILL this process once the peer of `sock` has gone (run in a daemon thread)."""
    await_eof(sock)
    os.kill(os.getpid(), _signal.SIGKILL)


def _detach() -> None:
    """A proxy's start: its own session, stdio on /dev/null (the container's stdio is not ours)."""
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _proxy(watch: _socket.socket, sentry: int, status_path: bytes) -> None:
    """The process an engine reaps for a factory-made container (never returns).

    Relays signals to the Sentry process; when the Sentry process and everything it
    started are gone (the watch socket reaches EOF), exits with the status it recorded,
    or dies of SIGKILL if it recorded none (it was killed).  If this process is killed,
    the Sentry process sees EOF on its end and kills itself."""
    try:
        _detach()
        relay_signals(sentry)
        await_eof(watch)
        try:
            fd = os.open(status_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                code = int(os.read(fd, 64))
            finally:
                os.close(fd)
        except (OSError, ValueError):
            os.kill(os.getpid(), _signal.SIGKILL)
            code = 137
        os._exit(code & 0xFF)
    finally:
        os._exit(1)


def try_factory(root: str, argv: list[str], command: str = "") -> int | None:
    """Run the command in the factory; its exit code, or None to run it here instead."""
    try:
        cwd = os.getcwd()
        for fd in (0, 1, 2):
            if os.isatty(fd):
                return None
            os.fstat(fd)
    except OSError:                 # a closed stdio fd, a deleted cwd: the cold path reports it
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    send = [0, 1, 2]
    if command == "create":         # the proxy's watch socket (see _proxy)
        watch, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        send.append(theirs.fileno())
    try:
        sock.connect(socket_path(root))
        umask = os.umask(0)
        os.umask(umask)
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in send)
        try:
            sock.sendmsg([encode_request(argv, cwd, umask, dict(os.environb))],
                         [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        finally:
            if command == "create":
                theirs.close()
        reply = sock.recv(256)
    except OSError:                 # no factory (or it went away before taking the command)
        sock.close()
        if command == "create":
            watch.close()
            theirs.close()
        return None
    if not reply.startswith(b"PID "):
        sock.close()                # refused ("NO reason"): run it here
        if command == "create":
            watch.close()
        return None
    relay_signals(int(reply[4:]))
    sentry = waiter = None
    while True:
        try:
            reply, anc, _, _ = sock.recvmsg(4096 + 64, _socket.CMSG_SPACE(4))
        except InterruptedError:
            continue
        except OSError:
            reply, anc = b"", []
        if reply.startswith(b"SENTRY "):
            pid, _, path = reply[7:].partition(b" ")
            sentry = int(pid), path
            continue
        if reply.startswith(b"WAITER "):
            waiter_pid_file = reply[7:]
            for level, kind, data in anc:
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
                    waiter = int.from_bytes(data[:4], sys.byteorder, signed=True)
            continue
        break
    if reply.startswith(b"EXIT "):
        code = exit_code(int(reply[5:]))
        if command == "create":
            if code == 0 and sentry is not None:
                sock.close()
                return _leave_proxy(watch, sentry, argv)
            watch.close()
        if waiter is not None:
            sock.close()
            if code == 0:
                return _leave_waiter(waiter, waiter_pid_file)
            os.close(waiter)
        return code
    os.write(2, b"runsc-py: the factory lost the command (its process died)\n")
    return 1


def _leave_proxy(watch: _socket.socket, sentry: tuple[int, bytes], argv: list[str]) -> int:
    """`create` succeeded in the factory: fork the proxy and give the engine its pid."""
    pid = os.fork()
    if pid == 0:
        _proxy(watch, *sentry)
    watch.close()
    from runsc_py import cgroups        # the engine accounts the container by its pid's cgroups
    cgroups.follow(sentry[0], pid)
    pid_file = option_value(argv, "create", "--pid-file")
    if pid_file:
        try:
            write_pid_file(pid_file, pid)
        except OSError as e:
            os.kill(pid, _signal.SIGKILL)         # the Sentry process follows its proxy
            os.write(2, f"runsc-py: cannot write pid file {pid_file}: {e.strerror}\n".encode())
            return 1
    return 0


def _leave_waiter(control: int, pid_file: bytes) -> int:
    """`exec --detach` ran in the factory: our child waits for the process (the engine reaps it)."""
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            _detach()
            from runsc_py.exec_cmd import wait_detached   # imported here: off the caller's path
            import socket
            code = wait_detached(socket.socket(fileno=control))
        finally:
            os._exit(code)
    os.close(control)
    if pid_file:
        try:
            write_pid_file(pid_file, pid)
        except OSError as e:
            os.kill(pid, _signal.SIGKILL)
            os.write(2, f"runsc-py: cannot write pid file {os.fsdecode(pid_file)}: {e.strerror}\n".encode())
            return 1
    return 0


def _autostart(root: str) -> None:
    """Start `root`'s factory in a detached grandchild (this command goes on cold, at once)."""
    try:
        pid = os.fork()
    except OSError:
        return
    if pid:
        try:
            os.waitpid(pid, 0)
        except OSError:
            pass
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 1 << 16)    # nothing of the caller's (an engine's pipes) may stay open in it
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        # A fresh interpreter (its command line names the factory, as `factory status` checks),
        # with this process's import path.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        os.execve(sys.executable, [sys.executable, "-S", "-c", "import sys; from runsc_py.factory import autostart; "
                                   "autostart(sys.argv[2])", "runsc-py-factory", os.path.abspath(root)], env)
    finally:
        os._exit(0)


def main() -> None:
    argv = sys.argv[1:]
    if os.environ.get("RUNSC_PY_FACTORY", "1") != "0":
        root, command = scan(argv)
        if command in FACTORY_COMMANDS and not (command == "run" and ("-d" in argv or "--detach" in argv)):
            code = try_factory(root, argv, command)
            if code is not None:
                os._exit(code)
            if command in AUTOSTART_COMMANDS and not os.path.exists(socket_path(root)):
                _autostart(root)
    from runsc_py.cli import main as cli_main
    cli_main(argv)


if __name__ == "__main__":
    main()
