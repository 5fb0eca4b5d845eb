"""config.json: the default spec and the mapping of a bundle onto a SandboxConfig.

`load_bundle` is the only place that reads a bundle.  It validates the
fields the Sentry needs before anything is started or written, so a bad
bundle costs the user one clear line and nothing else.  Each message names
the field in config.json's own dotted spelling (`process.args`,
`root.path`) so a user can find it.

Validation is deliberately about shape and meaning we rely on (types,
absolute paths, "K=V" env entries, known rlimit names), not about the whole
OCI schema: unknown keys are ignored, as runc ignores them, so engines that
send newer fields keep working.
"""
from __future__ import annotations

import copy
import json
import os
import resource
from dataclasses import dataclass, field
from typing import Any

from runsc_py.errors import UserError
from runsc_py.hooks import validate_hooks
from sentry.config import Mount, SandboxConfig

CONFIG_NAME = "config.json"
MAX_CONFIG_BYTES = 16 << 20

# What `runc spec` writes (runc 1.1), with our hostname.
DEFAULT_SPEC: dict[str, Any] = {
    "ociVersion": "1.0.2",
    "process": {
        "terminal": True,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                         for k in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "runsc-py",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
}

RLIMIT_NAMES = frozenset(n for n in dir(resource) if n.startswith("RLIMIT_"))
# The file system types the Sentry mounts (sentry/vfs/mounts.py); anything else is refused here,
# where runc would fail mount(2) with ENODEV, instead of being skipped with a warning.
MOUNT_TYPES = frozenset({"bind", "proc", "sysfs", "tmpfs", "devtmpfs", "devpts", "mqueue", "cgroup",
                         "cgroup2", "securityfs", "debugfs"})
# The namespace types of the OCI runtime spec (config-linux.md).
NAMESPACE_TYPES = frozenset({"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"})
_U32 = 1 << 32
_U64 = 1 << 64


def default_spec(args: list[str] | None = None) -> dict[str, Any]:
    """A fresh copy of the default spec, with `args` (and terminal off) when given."""
    spec = copy.deepcopy(DEFAULT_SPEC)
    if args:
        spec["process"]["args"] = list(args)
        spec["process"]["terminal"] = False
    return spec


def write_default_spec(bundle: str, args: list[str] | None = None) -> str:
    """Write the default config.json into `bundle`; refuse to overwrite one, like runc."""
    if not os.path.isdir(bundle):
        raise UserError(f"bundle {bundle}: no such directory")
    path = os.path.join(bundle, CONFIG_NAME)
    data = json.dumps(default_spec(args), indent="\t").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except FileExistsError:
        raise UserError(f"File {CONFIG_NAME} exists. Remove it first") from None
    except OSError as e:
        raise UserError(f"{path}: {e.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


@dataclass
class Bundle:
    """A validated bundle: the SandboxConfig plus what only the front end uses."""
    path: str                       # absolute bundle directory
    spec: dict[str, Any]
    config: SandboxConfig
    annotations: dict[str, str] = field(default_factory=dict)
    terminal: bool = False
    hooks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    netns_path: str = ""            # linux.namespaces: a network namespace to join
    memory_limit: int | None = None  # linux.resources.memory.limit, bytes
    pids_limit: int | None = None    # linux.resources.pids.limit


def _bad(field_name: str, what: str) -> UserError:
    return UserError(f"{CONFIG_NAME}: {field_name} {what}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _obj(parent: dict[str, Any], key: str, name: str, required: bool) -> dict[str, Any] | None:
    if key not in parent:
        if required:
            raise _bad(name, "is required")
        return None
    v = parent[key]
    if not isinstance(v, dict):
        raise _bad(name, "must be an object")
    return v


def _string(parent: dict[str, Any], key: str, name: str, required: bool, default: str = "") -> str:
    if key not in parent:
        if required:
            raise _bad(name, "is required")
        return default
    v = parent[key]
    if not isinstance(v, str):
        raise _bad(name, "must be a string")
    return v


def _uint(parent: dict[str, Any], key: str, name: str, limit: int, default: int | None = None) -> int:
    if key not in parent:
        if default is None:
            raise _bad(name, "is required")
        return default
    v = parent[key]
    if not _is_int(v) or not 0 <= v < limit:
        raise _bad(name, f"must be an integer between 0 and {limit - 1}")
    return int(v)


def _str_list(v: Any, name: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise _bad(name, "must be a list of strings")
    return v


def read_spec(bundle: str) -> tuple[str, dict[str, Any]]:
    """Return (absolute bundle dir, parsed config.json), or raise one clear UserError."""
    bundle_abs = os.path.abspath(bundle)
    if not os.path.isdir(bundle_abs):
        raise UserError(f"bundle {bundle_abs}: no such directory")
    path = os.path.join(bundle_abs, CONFIG_NAME)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{CONFIG_NAME}: open {path}: no such file or directory") from None
    except OSError as e:
        raise UserError(f"{CONFIG_NAME}: open {path}: {e.strerror.lower() if e.strerror else e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UserError(f"{CONFIG_NAME}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        spec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{CONFIG_NAME}: not valid UTF-8") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{CONFIG_NAME}: invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise UserError(f"{CONFIG_NAME}: invalid JSON: nested too deeply") from None
    if not isinstance(spec, dict):
        raise UserError(f"{CONFIG_NAME}: must hold a JSON object")
    return bundle_abs, spec


def _env(proc: dict[str, Any]) -> list[str]:
    env = _str_list(proc.get("env", []), "process.env")
    for entry in env:
        if "=" not in entry or entry.startswith("="):
            raise _bad("process.env", f'entries must be "KEY=VALUE" (got {entry[:80]!r})')
        if "\0" in entry:
            raise _bad("process.env", "entries must not contain NUL bytes")
    return env


def _rlimits(proc: dict[str, Any]) -> dict[str, tuple[int, int]]:
    raw = proc.get("rlimits", [])
    if not isinstance(raw, list):
        raise _bad("process.rlimits", "must be a list")
    out: dict[str, tuple[int, int]] = {}
    for i, rl in enumerate(raw):
        name = f"process.rlimits[{i}]"
        if not isinstance(rl, dict):
            raise _bad(name, "must be an object")
        kind = _string(rl, "type", f"{name}.type", required=True)
        if kind not in RLIMIT_NAMES:
            raise _bad(f"{name}.type", f"is not a known rlimit: {kind!r}")
        soft = _uint(rl, "soft", f"{name}.soft", _U64)
        hard = _uint(rl, "hard", f"{name}.hard", _U64)
        if soft > hard:
            raise _bad(name, "has soft > hard")
        if kind in out:
            raise _bad(f"{name}.type", f"{kind} is given twice")
        out[kind] = (soft, hard)
    return out


def _mounts(spec: dict[str, Any], bundle: str) -> list[Mount]:
    raw = spec.get("mounts", [])
    if not isinstance(raw, list):
        raise _bad("mounts", "must be a list")
    out: list[Mount] = []
    for i, m in enumerate(raw):
        name = f"mounts[{i}]"
        if not isinstance(m, dict):
            raise _bad(name, "must be an object")
        dest = _string(m, "destination", f"{name}.destination", required=True)
        if not dest.startswith("/"):
            raise _bad(f"{name}.destination", f"must be an absolute path (got {dest[:80]!r})")
        if "\0" in dest:
            raise _bad(f"{name}.destination", "must not contain NUL bytes")
        if ".." in dest.split("/"):
            raise _bad(f"{name}.destination", f"must not contain '..' (got {dest[:80]!r})")
        options = _str_list(m.get("options", []), f"{name}.options")
        if any("\0" in o for o in options):
            raise _bad(f"{name}.options", "must not contain NUL bytes")
        is_bind = "bind" in options or "rbind" in options
        kind = _string(m, "type", f"{name}.type", required=False, default="bind" if is_bind else "")
        if not is_bind and kind not in MOUNT_TYPES:
            shown = repr(kind[:32]) if kind else "(none)"
            raise _bad(f"{name}.type", f"{shown} is not a supported mount type "
                                       f"(supported: bind, {', '.join(sorted(MOUNT_TYPES - {'bind'}))})")
        source = _string(m, "source", f"{name}.source", required=False)
        if "\0" in source:
            raise _bad(f"{name}.source", "must not contain NUL bytes")
        if kind == "bind" or is_bind:
            if not source:
                raise _bad(f"{name}.source", "is required for a bind mount")
            if not os.path.isabs(source):
                source = os.path.join(bundle, source)   # OCI: relative to the bundle
            if not os.path.exists(source):
                # runc: error mounting ...: stat SOURCE: no such file or directory
                raise _bad(f"{name}.source", f"stat {source}: no such file or directory")
        out.append(Mount(destination=os.path.normpath(dest), type=kind, source=source,
                         options=list(options)))
    return out


def _annotations(spec: dict[str, Any]) -> dict[str, str]:
    raw = spec.get("annotations", {})
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise _bad("annotations", "must be an object of strings")
    return dict(raw)


def _netns_path(spec: dict[str, Any]) -> str:
    linux = _obj(spec, "linux", "linux", required=False) or {}
    namespaces = linux.get("namespaces", [])
    if not isinstance(namespaces, list):
        raise _bad("linux.namespaces", "must be a list")
    path = ""
    seen: set[str] = set()
    for i, ns in enumerate(namespaces):
        if not isinstance(ns, dict):
            raise _bad(f"linux.namespaces[{i}]", "must be an object")
        kind = _string(ns, "type", f"linux.namespaces[{i}].type", required=True)
        if kind not in NAMESPACE_TYPES:
            raise _bad(f"linux.namespaces[{i}].type", f"{kind[:32]!r} is not a namespace type")
        if kind in seen:
            raise _bad(f"linux.namespaces[{i}].type", f"{kind!r} is given twice")
        seen.add(kind)
        ns_path = _string(ns, "path", f"linux.namespaces[{i}].path", required=False)
        if ns_path and not ns_path.startswith("/"):
            raise _bad(f"linux.namespaces[{i}].path", "must be an absolute path")
        if kind == "network" and ns_path:
            path = ns_path
    return path


def _limit(parent: dict[str, Any], key: str, name: str) -> int | None:
    """A resource limit: a positive integer, or None for absent / 0 / -1 (unlimited)."""
    v = parent.get(key)
    if v is None:
        return None
    if not _is_int(v) or v < -1:
        raise _bad(name, "must be an integer (-1 for unlimited)")
    return v if v > 0 else None


def _resources(spec: dict[str, Any]) -> tuple[int | None, int | None]:
    linux = _obj(spec, "linux", "linux", required=False) or {}
    res = _obj(linux, "resources", "linux.resources", required=False) or {}
    memory = _obj(res, "memory", "linux.resources.memory", required=False) or {}
    pids = _obj(res, "pids", "linux.resources.pids", required=False) or {}
    return (_limit(memory, "limit", "linux.resources.memory.limit"),
            _limit(pids, "limit", "linux.resources.pids.limit"))


def load_bundle(bundle: str, container_id: str = "") -> Bundle:
    """Read and validate `bundle/config.json`; return the Bundle or raise one UserError."""
    bundle_abs, spec = read_spec(bundle)
    version = _string(spec, "ociVersion", "ociVersion", required=True)
    if not version:
        raise _bad("ociVersion", "must not be empty")

    proc = _obj(spec, "process", "process", required=True)
    assert proc is not None
    args = proc.get("args")
    if (not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args)
            or not args[0]):
        raise _bad("process.args", "must be a non-empty list of strings")
    if any("\0" in a for a in args):
        raise _bad("process.args", "must not contain NUL bytes")
    env = _env(proc)
    cwd = _string(proc, "cwd", "process.cwd", required=True)
    if not cwd.startswith("/"):
        raise _bad("process.cwd", f"must be an absolute path (got {cwd!r})")
    terminal = proc.get("terminal", False)
    if not isinstance(terminal, bool):
        raise _bad("process.terminal", "must be a boolean")

    user = _obj(proc, "user", "process.user", required=False) or {}
    uid = _uint(user, "uid", "process.user.uid", _U32, default=0)
    gid = _uint(user, "gid", "process.user.gid", _U32, default=0)
    extra = user.get("additionalGids", [])
    if not isinstance(extra, list) or not all(_is_int(g) and 0 <= g < _U32 for g in extra):
        raise _bad("process.user.additionalGids", "must be a list of integers")

    hostname = _string(spec, "hostname", "hostname", required=False, default="runsc-py") or "runsc-py"
    if len(hostname) > 64:
        raise _bad("hostname", "must be at most 64 characters")

    root = _obj(spec, "root", "root", required=True)
    assert root is not None
    root_path = _string(root, "path", "root.path", required=True)
    if not root_path:
        raise _bad("root.path", "must not be empty")
    readonly = root.get("readonly", False)
    if not isinstance(readonly, bool):
        raise _bad("root.readonly", "must be a boolean")
    rootfs = os.path.normpath(os.path.join(bundle_abs, root_path))
    if not os.path.isdir(rootfs):
        raise UserError(f"{CONFIG_NAME}: root.path: rootfs {rootfs} is not a directory")

    cfg = SandboxConfig(
        rootfs=rootfs, args=list(args), env=list(env), cwd=cwd, uid=uid, gid=gid,
        additional_gids=list(extra), hostname=hostname, root_readonly=readonly,
        mounts=_mounts(spec, bundle_abs), rlimits=_rlimits(proc), container_id=container_id,
        no_new_privs=proc.get("noNewPrivileges") is True)
    memory_limit, pids_limit = _resources(spec)
    # Not yet in sentry.config.SandboxConfig: passed on as soon as the Sentry declares them.
    for name, value in (("memory_limit", memory_limit), ("pids_limit", pids_limit)):
        if value is not None and hasattr(cfg, name):
            setattr(cfg, name, value)
    return Bundle(path=bundle_abs, spec=spec, config=cfg, annotations=_annotations(spec),
                  terminal=terminal, hooks=validate_hooks(spec.get("hooks")),
                  netns_path=_netns_path(spec), memory_limit=memory_limit, pids_limit=pids_limit)
