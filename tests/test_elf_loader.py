"""The ELF loader on malformed executables: errnos before execve's point of no return, SIGSEGV
after it, never a Python exception in the Sentry (issue 11).

Each image below is a tiny static x86-64 program (`exit(7)`) with one thing wrong in its ELF or
program headers: sizes and counts, offsets up to 2^64-1, addresses at 0, non-canonical or in the
kernel half, segments that wrap past 2^64, p_filesz > p_memsz, misaligned offsets, bad or missing
PT_INTERP interpreters, a segment over the ptrace stub's page.  tests/elf/elfrun.c execs each in a
child and prints how it ended; that is compared with Linux's answer, checked natively too
(`chroot`), and the Sentry's debug log must show no internal error.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTERNAL_ERROR = "internal error"          # sentry/kernel.py's marker of a Sentry bug in the log

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
CODE = bytes.fromhex("b83c000000bf07000000" "0f05")   # mov $60,%eax; mov $7,%edi; syscall
M = (1 << 64) - 1

def elf(etype=2, phentsize=56, phnum=None, phoff=64, phdrs=None, entry=None, extra=b"", code_at=0x1000):
    base = 0x400000
    if phdrs is None:
        phdrs = [(1, 5, 0, base, base, code_at + len(CODE), code_at + len(CODE), 0x1000)]
    body = b"".join(PHDR.pack(*p) for p in phdrs)
    n = len(phdrs) if phnum is None else phnum
    ent = base + code_at if entry is None else entry
    hdr = EHDR.pack(b"\x7fELF\x02\x01\x01" + bytes(9), etype, 62, 1, ent, phoff, 0, 0, 64, phentsize, n, 64, 0, 0)
    img = bytearray(hdr + body + extra)
    img += bytes(max(0, code_at - len(img)))
    img[code_at:code_at] = CODE
    return bytes(img)

def load(off=0, vaddr=0x400000, filesz=None, memsz=None, flags=5, ptype=1):
    fs = 0x1000 + len(CODE) if filesz is None else filesz
    ms = fs if memsz is None else memsz
    return (ptype, flags, off, vaddr, vaddr, fs, ms, 0x1000)

CASES = {
    # name: (image, how execve ends on Linux: the same in the sandbox)
    "valid": (elf(), "exit=7"),
    "bad_phentsize": (elf(phentsize=32), "errno=ENOEXEC"),
    "zero_phnum": (elf(phnum=0), "errno=ENOEXEC"),
    "phnum_74": (elf(phnum=74, extra=bytes(74 * 56)), "exit=7"),
    "phnum_over_64k": (elf(phnum=1171), "errno=ENOEXEC"),
    "phoff_2p64m1": (elf(phoff=M), "errno=ENOEXEC"),
    "phoff_past_eof": (elf(phoff=1 << 20), "errno=ENOEXEC"),
    "interp_past_eof": (elf(phdrs=[load(), (3, 4, 1 << 20, 0, 0, 12, 12, 1)]), "errno=EIO"),
    "interp_too_short": (elf(phdrs=[load(), (3, 4, 0x800, 0, 0, 1, 1, 1)]), "errno=ENOEXEC"),
    "interp_too_long": (elf(phdrs=[load(), (3, 4, 0x800, 0, 0, 5000, 5000, 1)]), "errno=ENOEXEC"),
    "interp_offset_2p64m1": (elf(phdrs=[load(), (3, 4, M, 0, 0, 10, 10, 1)]), "errno=EINVAL"),
    "interp_missing": (elf(phdrs=[load(), (3, 4, 0x200, 0, 0, 12, 12, 1)], extra=bytes(0x200 - 64 - 112) + b"/nonexisten\0"), "errno=ENOENT"),
    "interp_not_nul": (elf(phdrs=[load(), (3, 4, 0x200, 0, 0, 12, 12, 1)], extra=bytes(0x200 - 64 - 112) + b"/nonexistent"), "errno=ENOEXEC"),
    "no_load": (elf(phdrs=[(4, 4, 0, 0, 0, 0, 0, 4)]), "signal=11"),
    "vaddr_noncanonical": (elf(phdrs=[load(vaddr=0x800000000000)]), "signal=11"),
    "vaddr_kernel_half": (elf(phdrs=[load(vaddr=0xffff800000400000)]), "signal=11"),
    "memsz_2p64m1": (elf(phdrs=[load(memsz=M)]), "signal=11"),
    "vaddr_plus_memsz_wraps": (elf(phdrs=[load(), load(vaddr=0x7ffffffff000 & ~0xfff, off=0, memsz=M - 0x7ffffffff000 + 0x2000, flags=6)]), "signal=11"),
    "filesz_over_memsz": (elf(phdrs=[load(filesz=0x2000, memsz=0x1000)]), "signal=11"),
    "offset_2p64m1": (elf(phdrs=[load(), load(off=M, vaddr=0x600fff, filesz=1, memsz=1, flags=6)]), "signal=11"),
    "offset_page_2p64": (elf(phdrs=[load(), load(off=M & ~0xfff, vaddr=0x600000, filesz=1, memsz=1, flags=6)]), "signal=11"),
    "offset_misaligned": (elf(phdrs=[load(), load(off=0x10, vaddr=0x600000, filesz=0x10, memsz=0x10, flags=6)]), "signal=11"),
    "entry_2p64m1": (elf(entry=M), "signal=11"),
    "memsz_2p46": (elf(phdrs=[load(), load(off=0, vaddr=0x10000000, filesz=0, memsz=1 << 46, flags=6)]), "signal=11"),
    "filesz_past_eof": (elf(phdrs=[load(filesz=0x100000, memsz=0x100000)]), "exit=7"),
    "interp_not_elf": (elf(phdrs=[load(), (3, 4, 0x200, 0, 0, 8, 8, 1)], extra=bytes(0x200 - 64 - 112) + b"/notelf\0"), "errno=ELIBBAD"),
    "interp_shorter_than_ehdr": (elf(phdrs=[load(), (3, 4, 0x200, 0, 0, 7, 7, 1)], extra=bytes(0x200 - 64 - 112) + b"/short\0"),
                                 "errno=EIO"),
    "interp_bad_phentsize": (elf(phdrs=[load(), (3, 4, 0x200, 0, 0, 17, 17, 1)], extra=bytes(0x200 - 64 - 112) + b"/e/bad_phentsize\0"), "errno=ELIBBAD"),
    "interp_is_dir": (elf(phdrs=[load(), (3, 4, 0x200, 0, 0, 5, 5, 1)], extra=bytes(0x200 - 64 - 112) + b"/tmp\0"), "errno=EACCES"),
    }
# Where the sandbox differs from Linux, on purpose: (image, natively, in the sandbox).
SANDBOX_DIFFERS = {
    # The sandbox's user address space is [min_user_address, max_user_address): it ends below the
    # platform's stub page (Linux's at 2^47 - 4096), and the Sentry maps nothing under 64 KiB even
    # for root (Linux lets CAP_SYS_RAWIO map page 0).
    "vaddr_zero": (elf(phdrs=[load(vaddr=0)], entry=0x1000), "exit=7", "signal=11"),
    "over_stub_page": (elf(phdrs=[load(), load(off=0, vaddr=0x7F8000000000, flags=5)]), "exit=7", "signal=11"),
    "below_stub_to_top": (elf(phdrs=[load(), load(off=0, vaddr=0x7F7FFFFFF000, memsz=0x3000, filesz=0x1000, flags=7)]),
                          "exit=7", "signal=11"),
    # Address space is backed by the MemoryFile even when PROT_NONE: a 2^46-byte PIE span is ENOMEM.
    "dyn_span_2p46": (elf(etype=3, phdrs=[load(vaddr=0), load(off=0, vaddr=1 << 46, filesz=0, memsz=0x1000, flags=6)],
                          entry=0x1000), "exit=7", "signal=11"),
}


def _rootfs(tmp_path) -> tuple[str, list[str]]:
    root = tmp_path / "root"
    (root / "e").mkdir(parents=True)
    (root / "tmp").mkdir()
    subprocess.run(["gcc", "-O1", "-static", "-Wall", "-Werror", "-o", str(root / "elfrun"),
                    os.path.join(REPO, "tests", "elf", "elfrun.c")], check=True)
    (root / "notelf").write_text("not an ELF file, but longer than an ELF header: " * 4)
    (root / "short").write_text("too short\n")
    os.chmod(root / "notelf", 0o755)
    os.chmod(root / "short", 0o755)
    names = []
    for name, (img, *_rest) in {**CASES, **SANDBOX_DIFFERS}.items():
        (root / "e" / name).write_bytes(img)
        os.chmod(root / "e" / name, 0o755)
        names.append(name)
    return str(root), names


def _results(out: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _rootfs(tmp_path_factory.mktemp("elf"))


def test_native_linux_answers_as_expected(images):
    """The expectations are Linux's: checked against the host kernel."""
    root, names = images
    out = subprocess.run(["chroot", root, "/elfrun", *[f"/e/{n}" for n in names]], capture_output=True,
                         text=True, timeout=60).stdout
    got = _results(out)
    want = {n: c[1] for n, c in CASES.items()} | {n: c[1] for n, c in SANDBOX_DIFFERS.items()}
    assert got == want


def test_sandbox_loader_rejects_malformed_elf_as_linux(images, tmp_path):
    root, names = images
    log = tmp_path / "sentry.log"
    env = dict(os.environ, PYTHONPATH=REPO)
    p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "--debug-log", str(log), "do", "--root", root,
                        "--cwd", "/", "--", "/elfrun", *[f"/e/{n}" for n in names]],
                       capture_output=True, text=True, env=env, timeout=180, cwd="/")
    assert p.returncode == 0, p.stderr
    got = _results(p.stdout)
    want = {n: c[1] for n, c in CASES.items()} | {n: c[2] for n, c in SANDBOX_DIFFERS.items()}
    assert got == want
    text = log.read_text() if log.exists() else ""
    assert INTERNAL_ERROR not in text, text[-3000:]
