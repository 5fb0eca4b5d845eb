"""System V shared memory: shmget(2) shmat(2) shmdt(2) shmctl(2).

Thin handlers: decode the registers with the C types Linux declares, check arguments in
Linux's order (ksys_shmctl copies an IPC_SET buffer before anything else), and call
sentry/ipc/shm.py, which keeps the segments (per IPC namespace) as shared MemoryFile pages.
"""
from __future__ import annotations

import errno

from sentry.errors import SyscallError
from sentry.ipc import IPC_INFO, IPC_RMID, IPC_SET, IPC_STAT
from sentry.ipc import shm
from sentry.syscalls.args import s32
from sentry.syscalls.registry import Support, syscall


@syscall("shmget", Support.FULL, "IPC_PRIVATE and keys, IPC_CREAT|IPC_EXCL, mode checks (CAP_IPC_OWNER), "
         "SHMMIN/SHMMAX/existing-size EINVAL, SHMMNI 4096 (ENOSPC), SHM_NORESERVE accepted; SHM_HUGETLB is "
         "ENOMEM (no huge pages reserved); per IPC namespace")
def shmget(t, key, size, shmflg):
    """shmget(2)."""
    return shm.shmget(t, s32(key), size, s32(shmflg))


@syscall("shmat", Support.FULL, "pages shared by every attachment (same process, other processes, children "
         "after fork); Sentry-chosen or given address, SHM_RND, SHM_REMAP, SHM_RDONLY (writes fault: SIGSEGV), "
         "SHM_EXEC; EACCES by mode; attaching a segment removed with IPC_RMID but still attached works, "
         "as on Linux")
def shmat(t, shmid, shmaddr, shmflg):
    """shmat(2)."""
    return shm.shmat(t, s32(shmid), shmaddr, s32(shmflg))


@syscall("shmdt", Support.FULL, "detaches the attachment starting at the address (EINVAL otherwise); exec and "
         "exit detach everything")
def shmdt(t, shmaddr):
    """shmdt(2)."""
    return shm.shmdt(t, shmaddr)


@syscall("shmctl", Support.PARTIAL, "IPC_STAT SHM_STAT SHM_STAT_ANY IPC_SET IPC_RMID (SHM_DEST until the last "
         "detach) IPC_INFO SHM_INFO SHM_LOCK SHM_UNLOCK (checks and the mode bit; pages are never swapped); "
         "shm_lpid/shm_atime/shm_dtime are set by shmat and shmdt but not by fork, munmap, exit or exec; "
         "writes to /proc/sys/kernel/shmmax are not applied (SHMMAX stays Linux's default)")
def shmctl(t, shmid, cmd, buf):
    """shmctl(2)."""
    shmid, cmd = s32(shmid), s32(cmd)
    if cmd < 0 or shmid < 0:
        raise SyscallError(errno.EINVAL)
    if cmd in (IPC_INFO, shm.SHM_INFO):
        r, data = shm.info(t, cmd)
    elif cmd in (IPC_STAT, shm.SHM_STAT, shm.SHM_STAT_ANY):
        r, data = shm.stat(t, shmid, cmd)
    elif cmd == IPC_SET:
        return shm.set_perm(t, shmid, t.mm.read(buf, shm.SHMID_SIZE))
    elif cmd == IPC_RMID:
        return shm.rmid(t, shmid)
    elif cmd in (shm.SHM_LOCK, shm.SHM_UNLOCK):
        return shm.lock(t, shmid, cmd)
    else:
        raise SyscallError(errno.EINVAL)
    t.mm.write(buf, data)
    return r
