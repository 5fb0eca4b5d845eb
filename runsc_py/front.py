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
* the command is one whose process does not outlive it in a way the caller
  relies on (`run` in the foreground and the short lifecycle commands; never
  `create` or `exec`, whose pids a shim must be able to reap);
* no stdio fd is a terminal (a controlling terminal cannot be handed over);
* the factory accepts: same uid, same namespaces and root as this process,
  code unchanged since it started; it refuses otherwise, and the command runs
  here.  `RUNSC_PY_FACTORY=0` skips it.
"""
import os
import sys

import _signal
import _socket

# Commands a factory may run (see the module docstring).
FACTORY_COMMANDS = frozenset({"run", "start", "state", "kill", "delete", "list", "ps", "wait", "events",
                              "pause", "resume", "update"})
DEFAULT_ROOT = "/var/run/runsc-py"
FACTORY_DIR = ".factory"
SOCKET_NAME = "sock"
# The global flags that take a value, as the click group in runsc_py.cli declares them.
GLOBAL_VALUE_FLAGS = frozenset({"--root", "--log", "--log-format", "--debug-log", "--rootless", "--criu",
                                "--platform", "--network", "--overlay"})
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


def try_factory(root: str, argv: list[str]) -> int | None:
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
    try:
        sock.connect(socket_path(root))
        umask = os.umask(0)
        os.umask(umask)
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
        sock.sendmsg([encode_request(argv, cwd, umask, dict(os.environb))],
                     [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        reply = sock.recv(256)
    except OSError:                 # no factory (or it went away before taking the command)
        sock.close()
        return None
    if not reply.startswith(b"PID "):
        sock.close()                # refused ("NO reason"): run it here
        return None
    child = int(reply[4:])

    def relay(signum, _frame):
        try:
            os.kill(child, signum)
        except OSError:
            pass
    for s in RELAYED:
        _signal.signal(s, relay)
    while True:
        try:
            reply = sock.recv(256)
        except InterruptedError:
            continue
        except OSError:
            reply = b""
        break
    if reply.startswith(b"EXIT "):
        return exit_code(int(reply[5:]))
    os.write(2, b"runsc-py: the factory lost the command (its process died)\n")
    return 1


def main() -> None:
    argv = sys.argv[1:]
    if os.environ.get("RUNSC_PY_FACTORY", "1") != "0":
        root, command = scan(argv)
        if command in FACTORY_COMMANDS and not (command == "run" and ("-d" in argv or "--detach" in argv)):
            code = try_factory(root, argv)
            if code is not None:
                os._exit(code)
    from runsc_py.cli import main as cli_main
    cli_main(argv)


if __name__ == "__main__":
    main()
