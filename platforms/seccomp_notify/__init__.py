"""The seccomp_notify platform (`--platform=seccomp_notify`): ptrace stubs whose
return-value-only syscalls reach the Sentry as seccomp user notifications (see platform.py)."""
from platforms.seccomp_notify.notify_platform import (LazyRegs, NotifyAddressSpace, NotifyContext, NotifyRegs,
                                               SeccompNotifyPlatform)

__all__ = ["SeccompNotifyPlatform", "NotifyAddressSpace", "NotifyContext", "NotifyRegs", "LazyRegs"]
