"""The syscall compatibility list (`runsc-py syscalls`), generated from the Sentry's table.

Nothing here is hand-written: every row comes from `sentry.syscalls.all_syscalls()`,
the same table the Sentry dispatches through, as gVisor generates its
compatibility pages from linux64.go.
"""
from __future__ import annotations

import json

from runsc_py.errors import UserError


def _rows() -> tuple[list[tuple[int, str, str, str]], str]:
    """The table's rows and the Linux release it implements."""
    try:
        from sentry.syscalls import all_syscalls, registry
    except Exception as e:      # an ImportError inside the Sentry: one line, not a traceback
        raise UserError(f"cannot load the Sentry's syscall table: {type(e).__name__}: {e}") from None
    return [(s.nr, s.name, s.support.value, s.note or "") for s in all_syscalls()], registry.LINUX_RELEASE


def _summary(rows: list[tuple[int, str, str, str]], release: str) -> str:
    counts: dict[str, int] = {}
    for _, _, sup, _ in rows:
        counts[sup] = counts.get(sup, 0) + 1
    order = ("full", "partial", "error", "unimplemented")
    summary = ", ".join(f"{counts.get(sup, 0)} {sup}" for sup in order)
    return (f"{len(rows)} x86-64 syscalls (0-{rows[-1][0]}): {summary}; the ABI of Linux {release} "
            f"(what uname -r reports in the sandbox)")


def render(fmt: str) -> str:
    """The list as "table", "json" or "markdown" text, newline-terminated.

    json is a list of {nr, name, support, note}, one per number; the table and markdown forms
    open with a summary line naming the Linux release the table implements.
    """
    rows, release = _rows()
    if fmt == "json":
        return json.dumps([{"nr": nr, "name": name, "support": sup, "note": note}
                           for nr, name, sup, note in rows], indent=2) + "\n"
    if fmt == "markdown":
        out = ["# runsc-py syscall compatibility (x86-64)", "",
               _summary(rows, release) + ".", "",
               "| NR | Name | Support | Note |", "|---:|------|---------|------|"]
        out += [f"| {nr} | {name} | {sup} | {note.replace('|', chr(92) + '|')} |"
                for nr, name, sup, note in rows]
        return "\n".join(out) + "\n"
    name_w = max(len("NAME"), *(len(r[1]) for r in rows))
    sup_w = max(len("SUPPORT"), *(len(r[2]) for r in rows))
    out = ["# " + _summary(rows, release), f"{'NR':>3}  {'NAME':<{name_w}}  {'SUPPORT':<{sup_w}}  NOTE"]
    out += [f"{nr:>3}  {name:<{name_w}}  {sup:<{sup_w}}  {note}".rstrip() for nr, name, sup, note in rows]
    return "\n".join(out) + "\n"
