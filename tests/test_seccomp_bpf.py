"""sentry/seccomp_bpf.py: the compiled form of a filter answers as the interpreter does.

Random programs (valid ones only: `check` rejects the rest, as Linux) run on random
seccomp_data words through both `run` (one instruction at a time) and `compile_filter`.
The behaviour of filters in the sandbox is tests/syscall-conformance/seccomp_filter.c.
"""
from __future__ import annotations

import errno
import random
import struct

import pytest

from sentry import seccomp_bpf as bpf
from sentry.errors import SyscallError

CODES = sorted(bpf.ALLOWED)


def _random_program(rng: random.Random) -> bytes:
    n = rng.randint(1, 40)
    prog = []
    for pc in range(n - 1):
        c = rng.choice(CODES)
        k = rng.choice([0, 1, 3, 7, 31, 59, 0xFFFFFFFF, rng.getrandbits(32)])
        jt = jf = 0
        if c == bpf.LD_W_ABS:
            k = rng.randrange(16) * 4
        elif c in (bpf.LD_MEM, bpf.LDX_MEM, bpf.ST, bpf.STX):
            k = rng.randrange(16)
        elif c in (0x64, 0x74):
            k = rng.randrange(32)
        elif c == 0x34 and k == 0:
            k = 3
        elif c == bpf.JA:
            k = rng.randrange(n - pc - 1)
        elif c in bpf.JCOND:
            jt, jf = rng.randrange(min(256, n - pc - 1)), rng.randrange(min(256, n - pc - 1))
        prog.append((c, jt, jf, k))
    prog.append((rng.choice([bpf.RET_K, bpf.RET_A]), 0, 0, rng.getrandbits(32)))
    return b"".join(struct.pack("<HBBI", *i) for i in prog)


def test_compiled_filters_answer_as_the_interpreter():
    rng = random.Random(12)
    checked = 0
    for _ in range(2000):
        try:
            insns = bpf.check(_random_program(rng))
        except SyscallError as e:
            assert e.errno == errno.EINVAL
            continue
        f = bpf.compile_filter(insns)
        for _ in range(4):
            words = tuple(rng.choice([0, 1, 59, 0xFFFFFFFF, rng.getrandbits(32)]) for _ in range(16))
            assert f(words) == bpf.run(insns, words), insns
        checked += 1
    assert checked > 500


@pytest.mark.parametrize("prog", [
    [(bpf.LD_W_ABS, 0, 0, 2), (bpf.RET_K, 0, 0, 0)],          # unaligned
    [(bpf.LD_MEM, 0, 0, 1), (bpf.RET_A, 0, 0, 0)],            # scratch read before written
    [(0x15, 0, 3, 1), (bpf.RET_K, 0, 0, 0)],                  # jump past the end
    [(bpf.LD_IMM, 0, 0, 1)],                                   # no RET at the end
    [(0x30, 0, 0, 0), (bpf.RET_K, 0, 0, 0)],                  # LD_B_ABS: not for seccomp
])
def test_bad_programs_are_einval(prog):
    with pytest.raises(SyscallError) as e:
        bpf.check(b"".join(struct.pack("<HBBI", *i) for i in prog))
    assert e.value.errno == errno.EINVAL
