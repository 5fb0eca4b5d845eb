"""The KVM platform (DESIGN.md): application code in guest ring 3 of a VM whose guest-physical
memory is the MemoryFile; syscalls and faults exit to the Sentry.  See machine.py for the
machine (and what this host's kvm_pvm allows), kvm_platform.py for the contract's three roles.

Importing this package never fails for want of /dev/kvm: `KvmPlatform(memfile)` raises
`PlatformUnavailable` with one line for the user when /dev/kvm is missing or unusable.
"""
from __future__ import annotations

from platforms.contract import PlatformUnavailable

try:
    from platforms.kvm.kvm_platform import KvmAddressSpace, KvmContext, KvmPlatform
except ImportError as _e:          # the cffi extension was not built
    _why = str(_e)

    class KvmPlatform:            # type: ignore[no-redef]
        name = "kvm"

        def __init__(self, memfile) -> None:
            raise PlatformUnavailable(f"the kvm platform's extension is not built ({_why}); "
                                      "run `python3 platforms/kvm/_build_kvm.py`")

__all__ = ["KvmPlatform", "KvmAddressSpace", "KvmContext", "PlatformUnavailable"]
