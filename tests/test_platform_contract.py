"""Every platform implements platforms/contract.py, and the Sentry uses nothing else.

* Each platform class has every member of the Platform, AddressSpace and Context Protocols,
  with the contract's method signatures (parameter names and kinds); a live ptrace platform,
  address space and context pass `isinstance` against the runtime-checkable Protocols.
  KVM is checked the same way; it is skipped only when `platforms.kvm` cannot be imported,
  and its live objects only when this host cannot run it.
* What a context gives: the named registers, the full XSAVE area of `fpstate_size` bytes
  (CPUID leaf 0xD's size for XCR0) that goes back in unchanged, CPU-time clocks.
* `syscall_filters()` is in the allowlist format sentry/confine.py merges.
* No module under sentry/ imports a platform's own package.
"""
from __future__ import annotations

import importlib
import inspect
import os
import re
import struct

import pytest

from platforms import contract, hostarch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLES = {"Platform": contract.Platform, "AddressSpace": contract.AddressSpace, "Context": contract.Context}


def _platform_classes(name: str) -> dict[str, type]:
    """The classes implementing the three roles for platform `name` (skip if it cannot import)."""
    if name == "ptrace":
        from platforms.ptrace import tracer
        return {"Platform": tracer.PtracePlatform, "AddressSpace": tracer.PtraceAddressSpace,
                "Context": tracer.PtraceContext}
    if name == "seccomp_notify":
        from platforms import seccomp_notify as sn
        return {"Platform": sn.SeccompNotifyPlatform, "AddressSpace": sn.NotifyAddressSpace,
                "Context": sn.NotifyContext}
    try:
        mod = importlib.import_module("platforms.kvm")
    except Exception as e:      # noqa: BLE001 -- any import failure means "not available here"
        pytest.skip(f"platforms.kvm does not import: {type(e).__name__}: {e}")
    if not hasattr(mod, "KvmContext"):
        # The package stands in with a KvmPlatform that only explains why (no built extension).
        pytest.skip("platforms.kvm's implementation does not import here")
    return {role: getattr(mod, f"Kvm{role}") for role in ROLES}


def _protocol_members(proto) -> tuple[dict[str, inspect.Signature], set[str]]:
    """(methods with their signatures, data members) the Protocol declares."""
    methods, data = {}, set()
    for klass in proto.__mro__:
        if klass in (object,) or klass.__name__ in ("Protocol", "Generic"):
            continue
        data |= set(getattr(klass, "__annotations__", {}))
        for name, v in vars(klass).items():
            if not name.startswith("_") and inspect.isfunction(v):
                methods[name] = inspect.signature(v)
    return methods, data - set(methods)


def _params(sig: inspect.Signature, drop_self: bool) -> list[tuple[str, object]]:
    ps = list(sig.parameters.values())
    if drop_self and ps and ps[0].name in ("self", "cls"):
        ps = ps[1:]
    return [(p.name, p.kind) for p in ps]


@pytest.mark.parametrize("platform_name", ["ptrace", "kvm", "seccomp_notify"])
@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_platform_class_has_the_contract_members_and_signatures(platform_name: str, role: str) -> None:
    cls = _platform_classes(platform_name)[role]
    methods, data = _protocol_members(ROLES[role])
    assert methods, role
    for name, sig in methods.items():
        impl = inspect.getattr_static(cls, name, None)
        assert impl is not None, f"{cls.__name__} lacks {name}()"
        if isinstance(impl, (staticmethod, classmethod)):
            func, drop = impl.__func__, isinstance(impl, classmethod)
        else:
            func, drop = impl, True
        assert callable(func), f"{cls.__name__}.{name} is not callable"
        try:
            got = inspect.signature(func)
        except (TypeError, ValueError):
            continue                 # a C function: no signature to compare
        assert _params(got, drop) == _params(sig, True), \
            f"{cls.__name__}.{name}{got} does not match the contract's {name}{sig}"
    # Data members: class attributes, or set on every instance (declared in __init__ / __slots__).
    src = inspect.getsource(cls)
    for name in data:
        assert hasattr(cls, name) or re.search(rf"self\.{name}\s*[:=]", src) \
            or name in getattr(cls, "__slots__", ()), f"{cls.__name__} has no {name}"


@pytest.fixture(params=["ptrace", "kvm", "seccomp_notify"])
def live(request):
    """(platform, address space, context) of a real platform on this host."""
    if os.geteuid() != 0:
        pytest.skip("platforms are tested as root")
    from platforms import get_platform
    from sentry.mm.memfile import MemoryFile
    memfile = MemoryFile(size=1 << 28)
    try:
        plat = get_platform(request.param, memfile)
    except contract.PlatformUnavailable as e:
        os.close(memfile.fd)
        pytest.skip(f"{request.param} cannot run here: {e}")
    space = plat.new_address_space()
    ctx = space.new_context()
    yield plat, space, ctx
    space.release()
    plat.release_pool()
    if hasattr(plat, "stub_fd"):
        os.close(plat.stub_fd)



def test_live_objects_are_instances_of_the_protocols(live) -> None:
    plat, space, ctx = live
    assert isinstance(plat, contract.Platform)
    assert isinstance(space, contract.AddressSpace)
    assert isinstance(ctx, contract.Context)
    assert isinstance(ctx.regs, contract.Regs)
    assert plat.name in ("ptrace", "kvm", "seccomp_notify")
    assert 0 < plat.min_user_address < plat.max_user_address <= 1 << 47
    for start, end in plat.reserved:
        assert start < end and start >= plat.max_user_address      # off-limits to the application


def test_a_context_moves_registers_and_the_full_xsave_area(live) -> None:
    plat, space, ctx = live
    saved = contract.RegisterFile()
    contract.copy_regs(saved, ctx.regs)
    saved.r12 = 0x1234_5678_9ABC_DEF0
    other = space.new_context()
    other.set_regs(saved)
    assert other.regs.r12 == saved.r12 and other.regs.rip == ctx.regs.rip
    other.set_regs(ctx.regs)                       # from another context's own register file
    assert other.regs.r12 == ctx.regs.r12

    state = ctx.get_fpstate()
    x = hostarch.XSTATE
    assert len(state) == plat.fpstate_size == (x.max_size if x else 512)
    if x is not None:
        # The XSAVE standard format: its header follows the legacy area.
        assert struct.unpack_from("<Q", state, 520)[0] == 0                  # XCOMP_BV: not compacted
        assert struct.unpack_from("<Q", state, 512)[0] & ~x.features == 0    # XSTATE_BV within XCR0
        if x.features & 0x4:
            # ymm0's upper half in, and back out of, the thread.
            off, size = x.offsets[2]
            edited = bytearray(state)
            edited[off:off + 16] = bytes(range(1, 17))
            struct.pack_into("<Q", edited, 512, struct.unpack_from("<Q", edited, 512)[0] | 0x7)
            ctx.set_fpstate(bytes(edited))
            back = ctx.get_fpstate()
            assert back[off:off + 16] == bytes(range(1, 17))
    with pytest.raises(contract.PlatformError):
        bad = bytearray(state)
        struct.pack_into("<I", bad, 24, 0xFFFF_0000)                          # reserved MXCSR bits
        struct.pack_into("<Q", bad, 512, 0x3)
        ctx.set_fpstate(bytes(bad))
    assert ctx.cpu_time_ns() >= 0 and space.cpu_time_ns() >= 0


def test_syscall_filters_are_in_the_allowlist_format(live) -> None:
    import pyseccomp
    from sentry import confine
    plat, _, _ = live
    rules = plat.syscall_filters()
    assert rules and ("ptrace" in rules or plat.name != "ptrace")
    for name, alternatives in rules.items():
        pyseccomp.resolve_syscall(0, name)                                   # a real syscall name
        assert isinstance(alternatives, tuple) and alternatives
        for checks in alternatives:
            for index, arg, op, value, value_name in checks:
                assert 0 <= index < 6 and op in ("==", "has", "lacks") and isinstance(value, int)
                assert isinstance(arg, str) and isinstance(value_name, str)
    if plat.name == "ptrace":
        assert rules["execveat"][0][0][3] == plat.stub_fd
    merged = confine.allowlist(rules)
    assert set(merged) == set(confine.ALLOWLIST) | set(rules)
    confine.build_filter(rules)                                              # libseccomp takes it


def test_no_sentry_module_imports_a_platform_implementation() -> None:
    pattern = re.compile(r"platforms\.ptrace|platforms\.kvm|_ptrace_ext")
    offenders = []
    for root, _, files in os.walk(os.path.join(REPO, "sentry")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                with open(path) as fh:
                    for n, line in enumerate(fh, 1):
                        if pattern.search(line):
                            offenders.append(f"{os.path.relpath(path, REPO)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
