"""The compatibility report: `runsc-py compat -- CMD` and `Sandbox(compat=True).compat_report()`.

The Sentry records what a workload used (sentry/compat.py) and marks each item from the one
syscall table, so the report and `runsc-py syscalls` never disagree.  This module only adds
the verdict and renders the record as a table, JSON or Markdown.
"""
from __future__ import annotations

import json

SECTIONS = (("syscalls", "Syscalls", lambda r: r["name"]),
            ("ioctls", "ioctls", lambda r: f"{r['name'] or 'ioctl'} ({r['request']})"),
            ("files", "/proc and /sys files", lambda r: r["path"]),
            ("sockets", "Socket families", lambda r: " ".join(x for x in (r["family"], r["type"], r["flags"]) if x)))


def finish(report: dict, exit_status: int | None = None) -> dict:
    """The record plus its summary and verdict."""
    counts = {"supported": 0, "partial": 0, "unsupported": 0}
    for key, _title, _label in SECTIONS:
        for row in report.get(key, []):
            counts[row["status"]] = counts.get(row["status"], 0) + 1
    if counts["unsupported"]:
        verdict = (f"may not work: {counts['unsupported']} unsupported item(s) used "
                   "(the program may have coped; check them)")
    elif counts["partial"]:
        verdict = f"should work: {counts['partial']} partially supported item(s) used (see their notes)"
    else:
        verdict = "supported: everything the workload used is supported"
    out = dict(report)
    out["summary"] = counts
    out["verdict"] = verdict
    if exit_status is not None:
        out["exit_status"] = exit_status
    return out


def render(report: dict, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    md = fmt == "markdown"
    lines: list[str] = ["# runsc-py compatibility report", ""] if md else []
    if "exit_status" in report:
        lines.append(f"Workload exit status: {report['exit_status']}")
    lines.append(f"Verdict: {report['verdict']}")
    s = report["summary"]
    lines.append(f"Items: {s['supported']} supported, {s['partial']} partial, {s['unsupported']} unsupported")
    for key, title, label in SECTIONS:
        rows = report.get(key, [])
        if not rows:
            continue
        order = {"unsupported": 0, "partial": 1, "supported": 2}
        rows = sorted(rows, key=lambda r: (order.get(r["status"], 3), label(r)))
        lines.append("")
        if md:
            lines += [f"## {title}", "", "| Item | Status | Count | Errors | First call | Note |",
                      "|------|--------|------:|--------|------------|------|"]
            for r in rows:
                errs = ", ".join(f"{e}\u00d7{n}" for e, n in r["errors"].items())
                cells = [label(r), r["status"], str(r["count"]), errs, f"`{r['first']}`", r["note"]]
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        else:
            lines.append(f"{title}:")
            w = max(len(label(r)) for r in rows)
            for r in rows:
                errs = " ".join(f"{e}x{n}" for e, n in r["errors"].items())
                line = f"  {label(r):<{w}}  {r['status']:<11}  {r['count']:>6}  {errs}"
                lines.append(line.rstrip())
                lines.append(f"      first: {r['first']}")
                if r["note"]:
                    lines.append(f"      note: {r['note']}")
    return "\n".join(lines) + "\n"
