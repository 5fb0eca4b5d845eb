"""The layers, as import contracts checked on every run (the architecture issue).

    runsc_py  (front end)  ->  sentry  ->  platforms (the contract only)
                                  |----->  gofer (its client and protocol only)
    gofer and platforms import no other project package.

docs/ARCHITECTURE.md explains the rule; these tests keep it true.  Imports are read with `ast`
from the source (top-level and function-level alike), so a lazy import cannot hide a breach.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("runsc_py", "sentry", "platforms", "gofer")


def _modules(package: str):
    for dirpath, _, files in os.walk(REPO / package):
        for f in sorted(files):
            if f.endswith(".py") and not f.startswith("_build_"):
                path = Path(dirpath) / f
                rel = path.relative_to(REPO).with_suffix("")
                name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
                yield name, path


def _imports(path: Path):
    """(imported module, at top level?) for every absolute import of a project module in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            if n.split(".")[0] in PACKAGES:
                yield n, id(node) not in in_function


ALL = {name: path for pkg in PACKAGES for name, path in _modules(pkg)}

# What each package may import from the others (prefixes); anything else is a breach.
ALLOWED = {
    "gofer": ("gofer",),
    "platforms": ("platforms",),
    # gofer.confine.seccomp_args: the one seccomp argument builder both allowlists are made with.
    "sentry": ("sentry", "gofer.client", "gofer.protocol", "gofer.confine.seccomp_args", "gofer.confine",
               "platforms.contract", "platforms.events",
               "platforms.hostarch", "platforms.get_platform", "platforms.preload", "platforms"),
    "runsc_py": ("runsc_py", "sentry", "gofer", "platforms"),
}
# `platforms` alone (the package) is allowed to the Sentry for get_platform/preload and the
# contract re-exports; its implementation packages never are:
FORBIDDEN_TO_SENTRY = ("platforms.ptrace", "platforms.kvm")


def _allowed(importer_pkg: str, imported: str) -> bool:
    if importer_pkg == "sentry" and imported.startswith(FORBIDDEN_TO_SENTRY):
        return False
    return any(imported == a or imported.startswith(a + ".") for a in ALLOWED[importer_pkg])


def test_every_import_respects_the_layers() -> None:
    breaches = []
    for name, path in ALL.items():
        pkg = name.split(".")[0]
        for imported, _ in _imports(path):
            if not _allowed(pkg, imported):
                breaches.append(f"{name} imports {imported}")
    assert breaches == []


def test_the_sentry_never_names_a_platform_implementation() -> None:
    """Issue 10's grep, as a test: the Sentry knows the contract, not ptrace or kvm."""
    hits = []
    for name, path in ALL.items():
        if name.startswith("sentry"):
            text = path.read_text()
            for needle in ("platforms.ptrace", "platforms.kvm", "_ptrace_ext"):
                if needle in text:
                    hits.append(f"{name}: {needle}")
    assert hits == []


def _top_level_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in ALL}
    for name, path in ALL.items():
        for imported, top in _imports(path):
            if top:
                # `from a.b import c` names module a.b.c when that is a module, else a.b
                target = imported if imported in ALL else imported.rpartition(".")[0]
                # A module's own parent packages are initialised before it in any case (an edge to
                # one is `from pkg import submodule`), so they are not a cycle of ours.
                if target in ALL and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def test_no_import_cycle_at_module_level() -> None:
    """Import-time cycles make start-up order fragile; the ones that exist are broken by imports
    inside functions (each such import is a place a cycle was cut: fewer is better)."""
    graph = _top_level_graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])
    assert cycles == []


def test_preimport_loads_every_sentry_module() -> None:
    """After confinement no import can open a file: boot imports the whole Sentry first, from a
    list computed from the package (not a hand-kept one), and an ImportError fails start-up."""
    expected = {n for n in ALL if n.startswith("sentry.") and n != "sentry.boot"}
    code = ("import sys; from sentry.boot import _preimport, sentry_modules; _preimport(); "
            "print('\\n'.join(sorted(sentry_modules()))); "
            "missing = [m for m in sentry_modules() if m not in sys.modules]; assert not missing, missing")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    assert set(p.stdout.split()) == expected
