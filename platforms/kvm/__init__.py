"""The KVM platform (DESIGN.md): application code in guest ring 3 of a VM whose
guest-physical memory is the MemoryFile, syscalls and faults exiting to the Sentry.

Not implemented yet.  Selecting it fails at start-up with one clear line; the
ptrace platform is the default and the only one available.
"""
from __future__ import annotations


class PlatformUnavailable(Exception):
    pass


class KvmPlatform:
    def __init__(self, memfile) -> None:
        raise PlatformUnavailable("the kvm platform is not implemented yet; use --platform=ptrace (the default)")
