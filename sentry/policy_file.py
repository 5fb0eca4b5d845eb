"""A declarative policy (`runsc-py --policy FILE`): the file's rules as a policy object.

The front end reads the file (JSON, or TOML by its .toml suffix) and builds a `FilePolicy`
before the sandbox starts; the object crosses into the Sentry like a library policy and is
called through the same hooks (sentry/policy.py), only for the syscalls its rules need:

    errno = "EACCES"                          # what a denial returns (default EACCES)
    audit_log = "audit.jsonl"                 # JSON lines: audited and denied calls (or --policy-log)
    [syscalls]
    deny = ["ptrace", "mount"]                # or {"ptrace": "EPERM"}: per-syscall errno
    audit = ["execve", "connect"]             # allowed, and logged
    [paths]                                   # prefixes of resolved paths, on component boundaries
    write = { deny = ["/etc"], allow = ["/etc/tmp"] }   # opens for writing, create, rename, unlink...
    read  = { deny = ["/root"] }              # opens for reading
    exec  = { deny = ["/usr/bin/curl"] }      # execve, execveat
    [network]                                 # destinations of connect, sendto, sendmsg (inet only)
    deny = ["127.0.0.2/32", "10.0.0.0/8 port 22", "::1/128 port 8000-8100"]
    allow = []
    default = "allow"

Paths are judged resolved (symlinks followed), so a link cannot dodge a rule -- and busybox's
applets all exec as /bin/busybox (a Python policy sees argv too).
Each kind of rule (a path kind, the network) may say `default = "deny"`.  The most specific
matching rule decides (the longest path prefix; the longest network prefix, a port-specific
rule before a port-less one); on a tie, deny wins.
"""
from __future__ import annotations

import errno as _errno
import ipaddress
from typing import Any

from sentry.policy import AUDIT, OPENS, WRITES, SockAddr, deny

O_ACCMODE, O_CREAT, O_TRUNC, O_PATH = 0o3, 0o100, 0o1000, 0o10000000
PATH_KINDS = ("read", "write", "exec")
EXECS = ("execve", "execveat")
# A hard link or a rename gives a file (or a whole tree) another name: judged against every kind of
# path rule, or a read or exec rule is dodged by `ln /secret/f /tmp/f` or `mv /secret /tmp/s`.
RENAMES = {"rename": ("old", "new"), "renameat": ("old", "new"), "renameat2": ("old", "new"),
           "link": ("old",), "linkat": ("old",)}
DESTINATIONS = ("connect", "sendto", "sendmsg")     # network rules judge where traffic goes


class PolicyFileError(ValueError):
    """The policy file is malformed: one line saying where."""


def _errno_of(value: Any, where: str) -> int:
    if isinstance(value, int) and 0 < value < 4096:
        return value
    if isinstance(value, str) and isinstance(getattr(_errno, value, None), int):
        return getattr(_errno, value)
    raise PolicyFileError(f"{where}: {value!r} is not an errno name (like \"EACCES\")")


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyFileError(f"{where}: must be a list of strings")
    return value


def _default(section: dict, where: str) -> bool:
    d = section.get("default", "allow")
    if d not in ("allow", "deny"):
        raise PolicyFileError(f"{where}.default: must be \"allow\" or \"deny\"")
    return d == "allow"


def _net_rule(text: str, where: str):
    net_s, _, port_s = text.partition(" port ")
    try:
        net = ipaddress.ip_network(net_s.strip(), strict=False)
    except ValueError:
        raise PolicyFileError(f"{where}: {text!r} is not CIDR [port N[-M]]") from None
    if not port_s:
        return net, 0, 65535, False
    lo_s, _, hi_s = port_s.strip().partition("-")
    try:
        lo, hi = int(lo_s), int(hi_s or lo_s)
    except ValueError:
        raise PolicyFileError(f"{where}: {text!r}: bad port") from None
    if not 0 <= lo <= hi <= 65535:
        raise PolicyFileError(f"{where}: {text!r}: ports must be 0-65535")
    return net, lo, hi, True


class FilePolicy:
    def __init__(self, spec: dict) -> None:
        if not isinstance(spec, dict):
            raise PolicyFileError("the policy must be a table/object")
        known = {"errno", "audit_log", "syscalls", "paths", "network"}
        extra = set(spec) - known
        if extra:
            raise PolicyFileError(f"unknown key(s) {sorted(extra)} (known: {sorted(known)})")
        self.errno = _errno_of(spec.get("errno", "EACCES"), "errno")
        self.audit_log = spec.get("audit_log")
        if self.audit_log is not None and not isinstance(self.audit_log, str):
            raise PolicyFileError("audit_log: must be a path")
        from sentry.syscalls.registry import NR_BY_NAME
        sc = spec.get("syscalls", {})
        if not isinstance(sc, dict):
            raise PolicyFileError("syscalls: must be a table")
        denied = sc.get("deny", [])
        if isinstance(denied, dict):
            self.denied = {n: _errno_of(e, f"syscalls.deny.{n}") for n, e in denied.items()}
        else:
            self.denied = {n: self.errno for n in _strings(denied, "syscalls.deny")}
        self.audited = set(_strings(sc.get("audit", []), "syscalls.audit"))
        for name in list(self.denied) + list(self.audited):
            if name not in NR_BY_NAME:
                raise PolicyFileError(f"syscalls: no x86-64 syscall is called {name!r}")
        paths = spec.get("paths", {})
        if not isinstance(paths, dict) or set(paths) - set(PATH_KINDS):
            raise PolicyFileError(f"paths: must be a table of {', '.join(PATH_KINDS)}")
        self.paths: dict[str, tuple[list, bool]] = {}
        for kind, section in paths.items():
            if not isinstance(section, dict):
                raise PolicyFileError(f"paths.{kind}: must be a table with allow/deny/default")
            rules = [(p.rstrip("/") or "/", True) for p in _strings(section.get("allow", []), f"paths.{kind}.allow")]
            rules += [(p.rstrip("/") or "/", False) for p in _strings(section.get("deny", []), f"paths.{kind}.deny")]
            if any(not p.startswith("/") for p, _ in rules):
                raise PolicyFileError(f"paths.{kind}: prefixes must be absolute paths")
            self.paths[kind] = (rules, _default(section, f"paths.{kind}"))
        net = spec.get("network")
        self.net = None
        if net is not None:
            if not isinstance(net, dict):
                raise PolicyFileError("network: must be a table with allow/deny/default")
            rules = [(*_net_rule(r, "network.allow"), True) for r in _strings(net.get("allow", []), "network.allow")]
            rules += [(*_net_rule(r, "network.deny"), False) for r in _strings(net.get("deny", []), "network.deny")]
            self.net = (rules, _default(net, "network"))
        # The syscalls the hooks must see (every other one is untouched).
        names = set(self.denied) | self.audited
        if "read" in self.paths or "write" in self.paths:
            names |= set(OPENS)
        if "write" in self.paths:
            names |= set(WRITES) | {"bind"}           # a unix socket's bind creates a file
        if "exec" in self.paths:
            names |= set(EXECS)
        if self.paths:
            names |= set(RENAMES)
        if self.net is not None:
            names |= {"connect", "sendto", "sendmsg"}
        self.syscalls = frozenset(names)

    # -- decisions --------------------------------------------------------------------------

    @staticmethod
    def _path_allowed(rules_default: tuple[list, bool], path: str) -> bool:
        rules, default = rules_default
        best, allowed = -1, default
        for prefix, allow in rules:
            if path == prefix or prefix == "/" or path.startswith(prefix + "/"):
                n = len(prefix)
                if n > best or (n == best and not allow):
                    best, allowed = n, allow
        return allowed

    def _renamable(self, path: str) -> bool:
        """Whether `path` may get another name: every kind of rule allows it, and no deny rule
        lies inside it (moving a directory would carry a protected name out from under its rule)."""
        for rules, default in self.paths.values():
            if not self._path_allowed((rules, default), path):
                return False
            inside = path.rstrip("/") + "/"
            if any(not allow and prefix.startswith(inside) for prefix, allow in rules):
                return False
        return True

    def _net_allowed(self, addr: SockAddr) -> bool:
        rules, default = self.net  # type: ignore[misc]
        if addr.family not in ("inet", "inet6"):
            return True
        ip = ipaddress.ip_address(addr.host)
        best, allowed = (-1, False), default
        for net, lo, hi, has_port, allow in rules:
            if ip.version == net.version and ip in net and lo <= (addr.port or 0) <= hi:
                key = (net.prefixlen, has_port)
                if key > best or (key == best and not allow):
                    best, allowed = key, allow
        return allowed

    def prefilter(self, name: str, a) -> bool:
        """Whether a call needs deciding at all, from its raw arguments (before any decoding)."""
        if name in self.denied or name in self.audited or name not in OPENS or "read" in self.paths:
            return True
        if name == "open":
            flags = a[1]
        elif name == "openat":
            flags = a[2]
        else:
            return True                     # creat writes; openat2's flags are in memory
        return bool(flags & (O_ACCMODE | O_CREAT | O_TRUNC)) and not flags & O_PATH

    def on_syscall(self, task, name: str, args):
        if name in self.denied:
            return deny(self.denied[name])
        if isinstance(args, dict):
            checks: list[tuple[str, str]] = []
            if name in OPENS:
                flags = args["flags"]
                if not flags & O_PATH:
                    acc = flags & O_ACCMODE
                    if acc in (0, 2):
                        checks.append(("read", args["path"]))
                    if acc in (1, 2) or flags & (O_CREAT | O_TRUNC):
                        checks.append(("write", args["path"]))
            elif name in WRITES:
                checks += [("write", args[k]) for k in WRITES[name]]
            elif name in EXECS:
                checks.append(("exec", args["path"]))
            elif name == "bind" and args["addr"].family == "unix" and args["addr"].host[:1] == "/":
                checks.append(("write", args["addr"].host))
            for kind, path in checks:
                if kind in self.paths and not self._path_allowed(self.paths[kind], path):
                    return deny(self.errno)
            if name in RENAMES and not all(self._renamable(args[k]) for k in RENAMES[name]):
                return deny(self.errno)
            if name in DESTINATIONS and self.net is not None and "addr" in args and not self._net_allowed(args["addr"]):
                return deny(self.errno)
        if name in self.audited:
            return AUDIT
        return None


def load(path: str) -> FilePolicy:
    """Read and check a policy file (JSON, or TOML for *.toml); PolicyFileError or OSError."""
    import json
    with open(path, "rb") as f:
        data = f.read()
    try:
        if path.endswith(".toml"):
            import tomllib
            spec = tomllib.loads(data.decode())
        else:
            spec = json.loads(data)
    except ValueError as e:
        raise PolicyFileError(f"not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {e}") from None
    return FilePolicy(spec)
