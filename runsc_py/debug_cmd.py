"""`runsc-py debug --seccomp`: the host syscalls the Sentry and the Gofer may make.

Nothing here is hand-written: both descriptions come from the allowlists the
confinement code loads (`sentry.confine.allowlist()` with the default platform's
`syscall_filters()` merged in, `gofer.confine.ALLOWLIST`),
so what this prints is what the kernel enforces.  For comparison: gVisor's
Sentry allows about 70 host syscalls.
"""
from __future__ import annotations

import json
import textwrap

from runsc_py.errors import UserError


def _number(name: str | int) -> int | None:
    """The syscall's number on this architecture; None if neither we nor libseccomp know it."""
    import pyseccomp
    from gofer.confine import SYSCALL_NUMBERS
    if isinstance(name, int):
        return name
    if name in SYSCALL_NUMBERS:
        return SYSCALL_NUMBERS[name]
    try:
        return int(pyseccomp.resolve_syscall(0, name))      # 0: the native architecture
    except (RuntimeError, ValueError, OSError):             # what pyseccomp raises for an unknown name
        return None


def _check_text(check: tuple) -> str:
    _, arg, op, _, value_name = check
    return f"{arg} {op} {value_name}"


def condition(alternatives: tuple) -> str:
    """One line for a syscall's alternatives ("" when its arguments are not checked)."""
    if any(not checks for checks in alternatives):
        return ""
    singles = [checks[0] for checks in alternatives if len(checks) == 1]
    if len(alternatives) > 1 and len(singles) == len(alternatives) \
            and len({(c[0], c[2]) for c in singles}) == 1 and singles[0][2] == "==":
        return f"{singles[0][1]} in {{{', '.join(c[4] for c in singles)}}}"
    return " or ".join(" and ".join(_check_text(c) for c in checks) for checks in alternatives)


def _describe(name: str, allowlist: dict, default: str, refused: dict) -> dict:
    allowed = sorted(({"nr": _number(call), "name": call, "condition": condition(alts)}
                      for call, alts in allowlist.items()), key=lambda e: (e["nr"] is None, e["nr"] or 0, e["name"]))
    return {"name": name, "default": default, "allowed": allowed, "size": len(allowed), "refused": refused}


def filters() -> list[dict]:
    """Both filters, from the data the confinement code loads: the Sentry's, then the Gofer's."""
    try:
        import errno

        from gofer import confine as gofer_confine
        from sentry import confine as sentry_confine
    except Exception as e:      # an ImportError (no pyseccomp...): one line, not a traceback
        raise UserError(f"cannot load the seccomp allowlists: {type(e).__name__}: {e}") from None
    s = sentry_confine
    # The default platform's own calls are part of the Sentry's filter (its descriptors by name).
    from platforms.ptrace.filters import syscall_filters
    sentry = _describe("sentry", s.allowlist(syscall_filters("stub_fd")), s.DEFAULT_ACTION, {
        f"errno {errno.errorcode[s.REFUSED_ERRNO]} (they name a host path)": list(s.PATH_CALLS)
        + ["newfstatat without AT_EMPTY_PATH", "execveat without AT_EMPTY_PATH"],
        "kill, never allowed (they reshape the host)": list(s.FATAL_CALLS),
    })
    gofer = _describe("gofer", gofer_confine.ALLOWLIST, gofer_confine.DEFAULT_ACTION, {})
    return [sentry, gofer]


def render_seccomp(fmt: str = "text") -> str:
    """Both filters as "text" or "json", newline-terminated."""
    fs = filters()
    if fmt == "json":
        return json.dumps(fs, indent=2) + "\n"
    out = []
    for f in fs:
        out.append(f"{f['name']}: {f['size']} syscalls allowed (default: {f['default']})")
        width = max(len(e["name"]) for e in f["allowed"])
        for e in f["allowed"]:
            nr = "?" if e["nr"] is None else e["nr"]
            line = f"  {nr:>3} {e['name']:<{width}}  {e['condition']}".rstrip()
            out.append(line)
        for what, names in f["refused"].items():
            out += textwrap.wrap(f"{what}: {', '.join(names)}", 100, initial_indent="  ",
                                 subsequent_indent="      ", break_on_hyphens=False)
        out.append("")
    return "\n".join(out)


# -- a running sandbox, from outside (--ps, --stacks, --mounts): asked over its control channel

def sandbox_report(store, container_id: str, wanted: list[str]) -> dict:
    """{"ps": [...], "stacks": {...}, "mounts": [...]} for the parts asked for."""
    from sentry.control import ControlError, ps, request
    with store.locked(container_id, exclusive=False) as state:
        if state.live_status() == "stopped":
            raise UserError("container is not running")
    path = store.path(container_id, "control.sock")
    out: dict = {}
    try:
        if "ps" in wanted:
            out["ps"] = ps(path, container_id)
        if "stacks" in wanted:
            out["stacks"] = request(path, "debug_stacks")
            out["stacks"].pop("op", None)
        if "mounts" in wanted:
            out["mounts"] = request(path, "debug_mounts")["mounts"]
    except ControlError as e:
        raise UserError(str(e)) from None
    return out


def render_sandbox(store, container_id: str, wanted: list[str], fmt: str = "text") -> str:
    rep = sandbox_report(store, container_id, wanted)
    if fmt == "json":
        return json.dumps(rep, indent=2) + "\n"
    out = []
    if "ps" in rep:
        out.append(f"{'UID':>5} {'PID':>6} {'PPID':>6}  CMD")
        for p in rep["ps"]:
            cmd = " ".join(p.get("args") or []) or f"[{p.get('comm', '')}]"
            out.append(f"{p['uid']:>5} {p['pid']:>6} {p['ppid']:>6}  {cmd}")
        out.append("")
    if "stacks" in rep:
        for t in rep["stacks"]["tasks"]:
            out.append(f"task {t['tid']} (pid {t['pid']}, {t['comm']}): {t['state']}  "
                       f"rip={t['rip']:#x} rsp={t['rsp']:#x} sigmask={t['sigmask']:#x}")
        out.append("sentry (Python stack while answering):")
        out += ["  " + line for line in rep["stacks"]["sentry"].rstrip().splitlines()]
        out.append("")
    if "mounts" in rep:
        for m in rep["mounts"]:
            out.append(f"{m['id']:>3} {m['path']} {m['fstype']} {m['source']} {m['options']}")
        out.append("")
    return "\n".join(out)
