"""What a sandbox is asked to run: the contract between the front end and the Sentry.

`runsc_py` turns an OCI bundle (or the `do` command line) into a
`SandboxConfig`; `sentry.boot.run_sandbox` takes it from there.  Nothing
in here touches the host: it is plain data, validated by the front end.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Mount:
    """One entry of config.json's `mounts` (only what the Sentry needs)."""
    destination: str
    type: str                      # "bind", "tmpfs", "proc", "sysfs", "devpts", "mqueue", ...
    source: str = ""
    options: list[str] = field(default_factory=list)


@dataclass
class SandboxConfig:
    rootfs: str                            # host path of the root filesystem (absolute)
    args: list[str]                        # process.args; args[0] is looked up in PATH from env if relative
    env: list[str] = field(default_factory=list)      # "KEY=VALUE" strings
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    hostname: str = "runsc-py"
    root_readonly: bool = False
    no_new_privs: bool = False             # process.noNewPrivileges (PR_GET_NO_NEW_PRIVS reads 1)
    # The served tree is the host's own (runsc-py do): the Gofer serves it read-only whatever the
    # overlay and root.readonly say, so no flag combination can ever write to the host.
    host_readonly: bool = False
    mounts: list[Mount] = field(default_factory=list)
    rlimits: dict[str, tuple[int, int]] = field(default_factory=dict)   # "RLIMIT_NOFILE" -> (soft, hard)
    stdio: tuple[int, int, int] = (0, 1, 2)  # host fds that become the application's fds 0, 1, 2
    platform: str = "ptrace"
    network: str = "none"                  # "none" | "host"
    overlay: str = "none"                  # "none" | "memory"
    strace: bool = False                   # one line per syscall (gVisor's --strace)
    cpu_pin: str = "auto"                  # "auto": the sandbox on one CPU | "none" (sentry/hostcpu.py)
    debug: bool = False
    log_fd: int | None = None              # host fd for --strace / --debug-log output (default: stderr)
    container_id: str = ""
    # create/start split (runc semantics).  When `start_gate_fd` is set, the
    # Sentry brings the sandbox up (Gofer running, init process loaded), writes
    # one byte b"R" to `ready_fd` (if set), and blocks until it can read one
    # byte from `start_gate_fd` before running the application.  EOF on the
    # gate without a byte means "abort": the Sentry tears down and exits 255.
    start_gate_fd: int | None = None
    ready_fd: int | None = None
    # Fork the Sentry and confine it after start-up (namespaces, empty root, no capabilities,
    # seccomp); the calling process stays outside as its monitor.  Off only for in-process tests.
    confine: bool = True
    # linux.resources, enforced by the Sentry: threads (clone fails with EAGAIN) and memory in use
    # (mmap/brk/mremap fail with ENOMEM).  `runsc-py update` changes them at run time.
    memory_limit: int | None = None
    pids_limit: int | None = None
    # Path of the control socket (`runsc-py exec`/`ps`), bound by the Sentry before it confines itself.
    control_socket: str | None = None
    # Library and policy hooks (sentry/policy.py, sentry/compat.py; issue 15).  `idle`: no init
    # process -- the Sentry waits for control requests (exec, files) until a "shutdown" request, as
    # a long-lived `runsc_py.Sandbox` wants.  `policy`: an object whose methods the Sentry calls for
    # the syscalls it names (it crosses the fork into the Sentry); its audit lines go to
    # `policy_log_fd`.  `compat`: record what the workload used, written as JSON to `compat_fd` at
    # the end (and served over the control channel).  `count_syscalls`: per-run syscall counts.
    idle: bool = False
    policy: object | None = None
    policy_log_fd: int | None = None
    compat: bool = False
    compat_fd: int | None = None
    count_syscalls: bool = False

