"""Seccomp filters of sandbox tasks: classic BPF checked as Linux checks it, and run by the Sentry.

An application's `seccomp(2)` / `prctl(PR_SET_SECCOMP)` filter never reaches the host: the
Sentry answers every syscall anyway, so it runs the task's filters itself, before dispatch
(Kernel.syscall), on the task's `struct seccomp_data`.  A task without filters has
`seccomp = None` and pays nothing: the run loop sends only filtered tasks to the check and
keeps them off the `_serve` fast path.

`Task.seccomp` is None, STRICT, or a tuple of `Filter`s, newest first; the tuple is shared
with the children that inherit it (fork, clone, and across execve, as Linux), and a new
filter makes a new tuple (Linux's list of filters pointing at their parents).

Validation is kernel/bpf/core + net/core/filter.c's bpf_check_classic followed by
kernel/seccomp.c's seccomp_check_filter: every failure is EINVAL.  Evaluation is the classic
BPF machine (32-bit A and X, 16 scratch words; a division by X = 0 returns 0, as the
classic-to-eBPF conversion makes it).  Across stacked filters the action with the lowest
precedence value wins (ACTION_ONLY as a signed int), as seccomp_run_filters.
"""
from __future__ import annotations

import errno
import struct

from sentry.errors import SyscallError

AUDIT_ARCH_X86_64 = 0xC000003E
BPF_MAXINSNS = 4096
MAX_INSNS_PER_PATH = 32768            # a filter chain's total (each filter + 4), else ENOMEM
SECCOMP_DATA_SIZE = 64
BPF_MEMWORDS = 16

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
ACTIONS = (RET_KILL_PROCESS, RET_KILL_THREAD, RET_TRAP, RET_ERRNO, RET_USER_NOTIF, RET_TRACE,
           RET_LOG, RET_ALLOW)
SYS_SECCOMP = 1                       # si_code of a seccomp SIGSYS
SIGSYS = 31
MAX_ERRNO = 4095

# The opcodes seccomp_check_filter lets through (all a subset of bpf_check_classic's).
LD_W_ABS, LD_W_LEN, LDX_W_LEN = 0x20, 0x80, 0x81
RET_K, RET_A = 0x06, 0x16
LD_IMM, LDX_IMM, TAX, TXA, LD_MEM, LDX_MEM, ST, STX = 0x00, 0x01, 0x07, 0x87, 0x60, 0x61, 0x02, 0x03
JA = 0x05
JCOND = {0x15, 0x1D, 0x25, 0x2D, 0x35, 0x3D, 0x45, 0x4D}        # JEQ JGT JGE JSET, K and X
ALU = {0x04, 0x0C, 0x14, 0x1C, 0x24, 0x2C, 0x34, 0x3C, 0x44, 0x4C, 0x54, 0x5C,
       0x64, 0x6C, 0x74, 0x7C, 0x84, 0xA4, 0xAC}                 # ADD SUB MUL DIV OR AND LSH RSH NEG XOR
ALLOWED = {LD_W_ABS, LD_W_LEN, LDX_W_LEN, RET_K, RET_A, LD_IMM, LDX_IMM, TAX, TXA, LD_MEM, LDX_MEM,
           ST, STX, JA} | JCOND | ALU
M32 = 0xFFFFFFFF

STRICT = "strict"                     # SECCOMP_MODE_STRICT: read, write, exit, rt_sigreturn only
STRICT_ALLOWED = frozenset((0, 1, 60, 15))


class Filter:
    """One installed filter: its instructions (code, jt, jf, k) after seccomp's rewrites, and
    the Python function they compile to (`compile_filter`)."""
    __slots__ = ("insns", "log", "run")

    def __init__(self, insns: tuple, log: bool) -> None:
        self.insns = insns
        self.log = log
        run = _COMPILED.get(insns)
        if run is None:
            # Compiling costs ~0.1 ms per instruction (0.35 s for 4096): the same program
            # installed again (each child of a sandboxing launcher...) reuses it.
            run = compile_filter(insns)
            if len(_COMPILED) >= 64:
                _COMPILED.pop(next(iter(_COMPILED)))
            _COMPILED[insns] = run
        self.run = run


_COMPILED: dict = {}                       # instructions -> compiled function (at most 64)


def check(raw: bytes) -> tuple:
    """The program in `raw` (struct sock_filter[]) validated; EINVAL as Linux for a bad one."""
    n = len(raw) // 8
    if n == 0 or n > BPF_MAXINSNS:
        raise SyscallError(errno.EINVAL)
    insns = list(struct.iter_unpack("<HBBI", raw[:n * 8]))
    for pc, (code, jt, jf, k) in enumerate(insns):
        if code not in ALLOWED:
            raise SyscallError(errno.EINVAL)
        if (code == 0x34 and k == 0) or (code in (0x64, 0x74) and k >= 32) \
                or (code in (LD_MEM, LDX_MEM, ST, STX) and k >= BPF_MEMWORDS) \
                or (code == JA and k >= n - pc - 1) \
                or (code in JCOND and (pc + jt + 1 >= n or pc + jf + 1 >= n)):
            raise SyscallError(errno.EINVAL)
        if code == LD_W_ABS and (k >= SECCOMP_DATA_SIZE or k & 3):
            raise SyscallError(errno.EINVAL)
        if code == LD_W_LEN:
            insns[pc] = (LD_IMM, jt, jf, SECCOMP_DATA_SIZE)
        elif code == LDX_W_LEN:
            insns[pc] = (LDX_IMM, jt, jf, SECCOMP_DATA_SIZE)
    if insns[-1][0] not in (RET_K, RET_A):
        raise SyscallError(errno.EINVAL)
    _check_load_and_stores(insns)
    return tuple(insns)


def _check_load_and_stores(insns: list) -> None:
    """A scratch word read before every path to it stored it: EINVAL (check_load_and_stores)."""
    masks = [0xFFFF] * len(insns)
    valid = 0
    for pc, (code, jt, jf, k) in enumerate(insns):
        valid &= masks[pc]
        if code in (ST, STX):
            valid |= 1 << k
        elif code in (LD_MEM, LDX_MEM):
            if not valid & (1 << k):
                raise SyscallError(errno.EINVAL)
        elif code == JA:
            masks[pc + 1 + k] &= valid
            valid = 0xFFFF
        elif code in JCOND:
            masks[pc + 1 + jt] &= valid
            masks[pc + 1 + jf] &= valid
            valid = 0xFFFF


def run(insns: tuple, words: tuple) -> int:
    """Run one filter on seccomp_data's sixteen 32-bit words; its 32-bit return value."""
    a = x = 0
    mem = [0] * BPF_MEMWORDS
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == LD_W_ABS:
            a = words[k >> 2]
        elif code in JCOND:
            v = k if not code & 0x08 else x
            op = code & 0xF0
            if op == 0x10:
                c = a == v
            elif op == 0x20:
                c = a > v
            elif op == 0x30:
                c = a >= v
            else:
                c = a & v
            pc += jt if c else jf
        elif code == RET_K:
            return k
        elif code == RET_A:
            return a
        elif code == JA:
            pc += k
        elif code in ALU:
            if code == 0x84:
                a = -a & M32
                continue
            v = k if not code & 0x08 else x
            op = code & 0xF0
            if op == 0x00:
                a = (a + v) & M32
            elif op == 0x10:
                a = (a - v) & M32
            elif op == 0x20:
                a = (a * v) & M32
            elif op == 0x30:
                if v == 0:
                    return 0
                a //= v
            elif op == 0x40:
                a |= v
            elif op == 0x50:
                a &= v
            elif op == 0xA0:
                a ^= v
            elif op == 0x60:
                a = (a << (v & 31)) & M32
            else:
                a >>= v & 31
        elif code == LD_IMM:
            a = k
        elif code == LDX_IMM:
            x = k
        elif code == TAX:
            x = a
        elif code == TXA:
            a = x
        elif code == LD_MEM:
            a = mem[k]
        elif code == LDX_MEM:
            x = mem[k]
        elif code == ST:
            mem[k] = a
        else:                             # STX
            mem[k] = x


_ALU_OPS = {0x00: "a = (a + {v}) & 0xFFFFFFFF", 0x10: "a = (a - {v}) & 0xFFFFFFFF",
            0x20: "a = (a * {v}) & 0xFFFFFFFF", 0x30: "a //= {v}", 0x40: "a |= {v}", 0x50: "a &= {v}",
            0xA0: "a ^= {v}", 0x60: "a = (a << {s}) & 0xFFFFFFFF", 0x70: "a >>= {s}"}
_JMP_OPS = {0x10: "==", 0x20: ">", 0x30: ">="}
_SIMPLE = {LD_IMM: "a = {k}", LDX_IMM: "x = {k}", TAX: "x = a", TXA: "a = x", LD_MEM: "a = m[{k}]",
           LDX_MEM: "x = m[{k}]", ST: "m[{k}] = a", STX: "m[{k}] = x", RET_K: "return {k}",
           RET_A: "return a", 0x84: "a = -a & 0xFFFFFFFF"}


def compile_filter(insns: tuple):
    """A validated program as one Python function of seccomp_data's words: `run`'s semantics
    at a fraction of the cost per instruction.  Classic BPF jumps only forward, so the
    basic blocks run in order, each guarded by `pc == its start`: no loop, no dispatch."""
    n = len(insns)
    leaders = {0}
    for pc, (code, jt, jf, k) in enumerate(insns):
        if code == JA:
            leaders.update((pc + 1 + k, pc + 1))
        elif code in JCOND:
            leaders.update((pc + 1 + jt, pc + 1 + jf, pc + 1))
        elif code in (RET_K, RET_A):
            leaders.add(pc + 1)
    lines = ["def f(w):", " a = x = pc = 0", " m = [0] * 16"]
    for pc, (code, jt, jf, k) in enumerate(insns):
        if pc in leaders:
            lines.append(f" if pc == {pc}:")
        if code == LD_W_ABS:
            s = f"a = w[{k >> 2}]"
        elif code in _SIMPLE:
            s = _SIMPLE[code].format(k=k)
        elif code == JA:
            s = f"pc = {pc + 1 + k}"
        elif code in JCOND:
            v = "x" if code & 0x08 else str(k)
            op = code & 0xF0
            cond = f"a & {v}" if op == 0x40 else f"a {_JMP_OPS[op]} {v}"
            s = f"pc = {pc + 1 + jt} if {cond} else {pc + 1 + jf}"
        else:                             # ALU, K or X
            op = code & 0xF0
            if code & 0x08:
                s = _ALU_OPS[op].format(v="x", s="(x & 31)")
                if op == 0x30:
                    s = "if x == 0: return 0\n  " + s
            else:
                s = _ALU_OPS[op].format(v=k, s=k)
        lines.append("  " + s)
        if pc + 1 in leaders and pc + 1 < n and code not in (JA, RET_K, RET_A) and code not in JCOND:
            lines.append(f"  pc = {pc + 1}")
    lines.append(" return 0")               # unreachable: the last instruction is a RET
    ns: dict = {}
    exec(compile("\n".join(lines), "<seccomp filter>", "exec"), ns)
    return ns["f"]


def _signed(action: int) -> int:
    """ACTION_ONLY: the action bits as the signed int seccomp compares."""
    action &= 0xFFFF0000
    return action - (1 << 32) if action & 0x80000000 else action


def evaluate(filters: tuple, nr: int, regs) -> tuple[int, "Filter | None"]:
    """The winning return value of all `filters` for this syscall, and the filter that gave it."""
    words = struct.unpack("<16I", struct.pack(
        "<iIQ6Q", nr if nr < 0x80000000 else nr - (1 << 32), AUDIT_ARCH_X86_64, regs.rip,
        regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9))
    ret, match = RET_ALLOW, None
    for f in filters:
        cur = f.run(words)
        if _signed(cur) < _signed(ret):
            ret, match = cur, f
    return ret, match


def sigsys_info(nr: int, data: int, ip: int) -> bytes:
    """The siginfo of a seccomp SIGSYS: si_errno = the filter's data, si_call_addr, si_syscall, si_arch."""
    return (struct.pack("<iii4xQiI", SIGSYS, data, SYS_SECCOMP, ip, nr, AUDIT_ARCH_X86_64)).ljust(128, b"\0")


def _force_sigsys(k, t, nr: int, data: int, exit_: bool) -> None:
    """force_sig_seccomp: SIGSYS for `t`, unblocked; reset to the default action when blocked
    or ignored, and always for a kill (HANDLER_EXIT), so that it ends the process."""
    from sentry import signals as sg
    from sentry.task import SignalAction
    regs = t.ctx.regs
    regs.rax = regs.orig_rax              # syscall_rollback: the handler sees the registers of the call
    act = t.tg.sigactions[SIGSYS]
    if exit_ or t.sigmask & sg.bit(SIGSYS) or act.handler == sg.SIG_IGN:
        t.tg.sigactions[SIGSYS] = SignalAction()
        t.sigmask &= ~sg.bit(SIGSYS)
    t.pending.setdefault(SIGSYS, []).append(sigsys_info(nr, data, regs.rip))
    t.forced.add(SIGSYS)


def filtered(k, t, nr: int) -> bool:
    """Run `t`'s filters on syscall `nr` (Kernel.syscall, before dispatch).  False: go on with
    the syscall.  True: the filters answered it (an errno, a signal, a kill) and `t` is queued
    or gone; the syscall does not run."""
    from sentry import process
    regs = t.ctx.regs
    if t.seccomp is STRICT:
        if nr in STRICT_ALLOWED:
            return False
        k.debug(f"task {t.tid}: seccomp strict mode: syscall {nr} kills it")
        t.seccomp = ()                    # SECCOMP_MODE_DEAD
        process.exit_task(k, t, 9)        # do_exit(SIGKILL)
        return True
    ret, _ = evaluate(t.seccomp, nr, regs)
    action = ret & 0xFFFF0000
    data = ret & 0xFFFF
    if action == RET_ALLOW:
        return False
    if action == RET_LOG:
        # Linux writes an audit record, rate-limited; here the debug log (never the
        # application's stderr, which a filter logging every syscall would flood).
        k.debug(f"seccomp: task {t.tid} syscall {nr} logged (SECCOMP_RET_LOG)")
        return False
    if action == RET_ERRNO:
        regs.rax = -min(data, MAX_ERRNO) & 0xFFFFFFFFFFFFFFFF
    elif action in (RET_TRACE, RET_USER_NOTIF):
        # TRACE with no tracer for PTRACE_EVENT_SECCOMP, USER_NOTIF with no listener (the
        # Sentry creates none: SECCOMP_FILTER_FLAG_NEW_LISTENER is EINVAL): ENOSYS, as Linux.
        regs.rax = -errno.ENOSYS & 0xFFFFFFFFFFFFFFFF
    elif action == RET_TRAP:
        _force_sigsys(k, t, nr, data, exit_=False)
    else:                                 # KILL_THREAD, KILL_PROCESS, and any unknown action
        k.debug(f"task {t.tid}: seccomp action {ret:#x} kills it (syscall {nr})")
        live = [x for x in t.tg.tasks if not x.exited]
        if action == RET_KILL_THREAD and len(live) > 1:
            process.exit_task(k, t, SIGSYS)   # do_exit(SIGSYS): this thread only
            return True
        _force_sigsys(k, t, nr, data, exit_=True)
    k.enqueue(t, first=True)
    return True
