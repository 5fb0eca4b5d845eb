"""The syscall table against the kernel's own lists, read here independently of sentry/syscalls/names.py.

`runsc-py syscalls --format json` must list every x86-64 number the kernel headers know, under
the kernel's name: the headers are read here through the C preprocessor (`gcc -dM -E` of
<asm/unistd.h>, which is what a C program sees), not by the regex that builds the table; the
`system-calls` package through its public lookup API; libseccomp through its own command-line
resolver when installed.  The release the table implements is the one `uname -r` reports in a
sandbox and the one the table's output names.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from tests.test_cli import REPO, repo_env

RUNSC = [sys.executable, "-m", "runsc_py.front"]


def listing() -> list[dict]:
    p = subprocess.run([*RUNSC, "syscalls", "--format", "json"], capture_output=True, text=True,
                       env=repo_env(), cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return listing()


def header_syscalls() -> dict[int, str]:
    """{nr: name} from the host's <asm/unistd.h> as the C preprocessor expands it for x86-64."""
    p = subprocess.run(["gcc", "-m64", "-dM", "-E", "-x", "c", "-"], input="#include <asm/unistd.h>\n",
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = {}
    for name, value in re.findall(r"^#define __NR_(\w+) (\S+)$", p.stdout, re.M):
        if value.isdigit():
            out[int(value)] = name
    assert out, "gcc -dM found no __NR_ macro"
    return out


def test_every_number_the_kernel_headers_know_is_listed_under_its_name(rows) -> None:
    by_nr = {r["nr"]: r["name"] for r in rows}
    header = header_syscalls()
    missing = {nr: name for nr, name in header.items() if by_nr.get(nr) != name}
    assert not missing, f"listed differently from <asm/unistd.h>: {missing}"


def test_every_number_of_the_system_calls_package_is_listed_under_its_name(rows) -> None:
    system_calls = pytest.importorskip("system_calls")
    table = system_calls.syscalls()
    by_nr = {r["nr"]: r["name"] for r in rows}
    want = {}
    for name in table.names():
        try:
            want[table.get(name, "x86_64")] = name
        except system_calls.NotSupportedSystemCall:
            pass
    wrong = {nr: name for nr, name in want.items() if by_nr.get(nr) != name}
    assert not wrong, f"listed differently from system-calls (Linux {table.linux_version}): {wrong}"


def test_libseccomp_resolver_agrees(rows) -> None:
    resolver = shutil.which("scmp_sys_resolver")
    if resolver is None:
        pytest.skip("scmp_sys_resolver (package seccomp) is not installed")
    for r in rows[::7]:
        p = subprocess.run([resolver, "-a", "x86_64", str(r["nr"])], capture_output=True, text=True, timeout=30)
        if p.returncode == 0 and p.stdout.strip() not in ("", "UNKNOWN"):
            assert p.stdout.strip() == r["name"], r


def test_listing_is_every_known_number_once_in_order_up_to_at_least_462(rows) -> None:
    nrs = [r["nr"] for r in rows]
    assert nrs == sorted(set(nrs))
    assert nrs[-1] >= 462
    # x86-64 numbers are dense from 0 to 334 and from 424 up; the hole between is unassigned.
    assert set(range(0, 335)) <= set(nrs)
    assert set(range(424, nrs[-1] + 1)) <= set(nrs)
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names))
    assert "timerfd" not in names and {"timerfd_create", "fchmodat2", "epoll_pwait2", "mseal"} <= set(names)


def test_every_row_that_is_not_full_says_why(rows) -> None:
    silent = [r["name"] for r in rows if r["support"] != "full" and not r["note"].strip()]
    assert not silent, f"partial/error/unimplemented without a note: {silent}"
    unimpl = [r for r in rows if r["support"] == "unimplemented"]
    assert all("ENOSYS" in r["note"] for r in unimpl)


def test_stale_notes_are_gone(rows) -> None:
    mmap = next(r for r in rows if r["name"] == "mmap")
    assert "not yet coherent" not in mmap["note"] and "coherent" in mmap["note"]


def test_table_output_names_the_release_uname_reports() -> None:
    p = subprocess.run([*RUNSC, "syscalls"], capture_output=True, text=True, env=repo_env(), cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    m = re.search(r"the ABI of Linux (\d+\.\d+\.\d+)", p.stdout.splitlines()[0])
    assert m, p.stdout[:300]
    release = m.group(1)
    assert tuple(map(int, release.split("."))) >= (6, 6, 0), "fchmodat2 (Linux 6.6) is implemented"
    u = subprocess.run([*RUNSC, "do", "--", "/bin/uname", "-r"], capture_output=True, text=True,
                       env=repo_env(), cwd=REPO, timeout=120)
    assert u.returncode == 0, u.stderr
    assert u.stdout.strip() == release
    c = subprocess.run([*RUNSC, "do", "--", "/bin/cat", "/proc/sys/kernel/osrelease"], capture_output=True,
                       text=True, env=repo_env(), cwd=REPO, timeout=120)
    assert c.stdout.strip() == release, c.stderr


def test_numbers_newer_than_the_release_say_so(rows) -> None:
    m = re.search(r"Linux (\d+\.\d+)", next(r["note"] for r in rows if r["name"] == "listns")) \
        if any(r["name"] == "listns" for r in rows) else None
    if m is None:
        pytest.skip("the sources know no number newer than the release")
    newer = [r for r in rows if r["nr"] > 462]
    assert all(r["support"] == "unimplemented" and "added after Linux" in r["note"] for r in newer)
