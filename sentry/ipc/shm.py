"""System V shared memory segments of the Sentry, in the shape of Linux's ipc/shm.c.

* A segment is a MemoryFile range (a `Backing`, like MAP_SHARED anonymous memory) that every
  attachment maps shared: two attachments in one process, other processes, and children after
  fork (which share shared VMAs) all see the same pages, with no copying.
* The segment holds its pages while it has an id; IPC_RMID with attachments left marks it
  SHM_DEST and makes its key IPC_PRIVATE (the id stays, as on Linux, for IPC_STAT and shmat);
  the pages go when the last attachment does (the backing's `on_release`, run by the
  MemoryManager when no VMA of any address space maps them: shmdt, munmap, exec, exit).
* nattch counts the VMAs that map the segment in the sandbox's address spaces, as Linux counts
  shm_open calls (a VMA split by mprotect counts twice there too).  shm_lpid/shm_atime/shm_dtime
  follow shmat and shmdt; fork, munmap, exit and exec leave them as they were (Linux's shm_open and
  shm_close also set them then).
* Segments belong to the caller's IPC namespace (sentry/ipc/__init__.py `ids_of`).
"""
from __future__ import annotations

import errno
import struct

from sentry.errors import SyscallError
from sentry.ipc import IPC_INFO, IPC_PRIVATE, IPC_STAT, S_IRUGO, S_IWUGO, IpcPerm, ctl_check, ids_of, \
    ipcperms, now, pid_seen
from sentry.mm.manager import PAGE, PROT_EXEC, PROT_READ, PROT_WRITE, Backing, page_up

SHMMIN = 1
SHMMAX = SHMALL = 0xFFFFFFFFFFFFFFFF - (1 << 24)
SHMMNI = 4096
MAX_LFS_FILESIZE = (1 << 63) - 1
SHMLBA = PAGE
SHM_RDONLY, SHM_RND, SHM_REMAP, SHM_EXEC = 0o10000, 0o20000, 0o40000, 0o100000
SHM_HUGETLB, SHM_NORESERVE = 0o4000, 0o10000
SHM_DEST, SHM_LOCKED = 0o1000, 0o2000
SHM_LOCK, SHM_UNLOCK, SHM_STAT, SHM_INFO, SHM_STAT_ANY = 11, 12, 13, 14, 15
S_IXUGO = 0o111
# struct shmid64_ds (x86-64): ipc64_perm, segsz, atime dtime ctime, cpid lpid, nattch, 2 unused.
SHMID_DS = struct.Struct("<48s Q qqq ii Q QQ")
SHMINFO = struct.Struct("<QQQQQ 4Q")           # struct shminfo64
SHM_INFO_S = struct.Struct("<i 4x QQQQQ")      # struct shm_info
SHMID_SIZE = SHMID_DS.size


class ShmBacking(Backing):
    """A segment's pages: a Backing that knows its segment (shmdt finds attachments by it)."""
    __slots__ = ("seg",)


class Segment:
    """struct shmid_kernel."""
    __slots__ = ("perm", "segsz", "backing", "atime", "dtime", "ctime", "cpid", "lpid", "ids", "memfile", "kernel")

    def __init__(self, perm: IpcPerm, segsz: int, backing: Backing, cpid: int, ids, memfile, kernel) -> None:
        self.perm = perm
        self.segsz = segsz
        self.backing = backing
        self.atime = self.dtime = 0
        self.ctime = now()
        self.cpid = cpid
        self.lpid = 0
        self.ids = ids
        self.memfile = memfile
        self.kernel = kernel

    @property
    def psize(self) -> int:
        return page_up(self.segsz)

    def nattch(self) -> int:
        """shm_nattch: the VMAs mapping the segment in every address space of the sandbox (Linux
        counts shm_open calls: one per attach, per VMA a fork copies and per piece a split makes)."""
        b = self.backing
        if b is None or b.live <= 0:
            return 0
        seen, n = set(), 0
        for tg in list(self.kernel.thread_groups.values()):
            mm = tg.mm
            if mm is None or id(mm) in seen:
                continue
            seen.add(id(mm))
            n += sum(1 for v in mm.vmas if v.backing is b)
        return n

    def destroy(self) -> None:
        """shm_destroy: the id goes, then the pages."""
        ids = self.ids
        ids.extra -= self.psize // PAGE
        self.perm.key = IPC_PRIVATE
        ids.remove(self)
        if self.backing is not None:
            self.memfile.free(self.backing.offset, self.backing.length)
            self.backing = None


def _unmapped(seg: Segment) -> None:
    """The last VMA mapping `seg` went: a segment marked for removal goes now (shm_close)."""
    if seg.perm.mode & SHM_DEST and seg.backing is not None:
        seg.destroy()


def ids(t):
    return ids_of(t, "shm", SHMMNI)


def shmget(t, key: int, size: int, flags: int) -> int:
    """ksys_shmget: ipcget with newseg to create and shm_more_checks (size) for an existing key."""
    space = ids(t)

    def create():
        if size < SHMMIN or size > SHMMAX:
            raise SyscallError(errno.EINVAL)
        npages = page_up(size) // PAGE
        if space.extra + npages > SHMALL:
            raise SyscallError(errno.ENOSPC)
        if flags & SHM_HUGETLB:
            raise SyscallError(errno.ENOMEM)      # no hugetlbfs pages in the sandbox (none reserved)
        if size > MAX_LFS_FILESIZE:
            raise SyscallError(errno.EINVAL)      # __shmem_file_setup: a negative loff_t
        k = t.kernel
        k.charge_memory(npages * PAGE)
        memfile = t.mm.memfile
        b = ShmBacking(memfile.allocate(npages * PAGE), npages * PAGE)
        b.live = 0
        seg = Segment(IpcPerm(key, flags, t.tg.creds), size, b, t.tg.tgid, space, memfile, k)
        b.seg = seg
        b.on_release = lambda: _unmapped(seg)     # a closure: msync looks for a FileMapping's method
        space.extra += npages
        return seg

    def more_checks(seg):
        if seg.segsz < size:
            raise SyscallError(errno.EINVAL)

    return space.get(t, key, flags, create, more_checks)


def shmat(t, shmid: int, addr: int, flags: int) -> int:
    """do_shmat, in Linux's order of checks."""
    from sentry.mm.manager import MAP_FIXED, MAP_SHARED
    if shmid < 0:
        raise SyscallError(errno.EINVAL)
    mflags = MAP_SHARED
    if addr:
        if addr & (SHMLBA - 1):
            if flags & SHM_RND:
                addr &= ~(SHMLBA - 1)
                if not addr and flags & SHM_REMAP:
                    raise SyscallError(errno.EINVAL)
            else:
                raise SyscallError(errno.EINVAL)
        mflags |= MAP_FIXED
    elif flags & SHM_REMAP:
        raise SyscallError(errno.EINVAL)
    if flags & SHM_RDONLY:
        prot, acc, maxprot = PROT_READ, S_IRUGO, PROT_READ | PROT_EXEC
    else:
        prot, acc, maxprot = PROT_READ | PROT_WRITE, S_IRUGO | S_IWUGO, 7
    if flags & SHM_EXEC:
        prot |= PROT_EXEC
        acc |= S_IXUGO
    space = ids(t)
    seg = space.check(shmid)
    if not ipcperms(t, space, seg.perm, acc):
        raise SyscallError(errno.EACCES)
    if seg.perm.deleted or seg.backing is None:
        raise SyscallError(errno.EIDRM)
    mm = t.mm
    psize = seg.psize
    if addr and not flags & SHM_REMAP:
        if addr + seg.segsz > (1 << 64) - 1 or mm._overlapping(addr, addr + psize):
            raise SyscallError(errno.EINVAL)
    if addr and (addr + psize > mm.top):
        raise SyscallError(errno.EINVAL if addr + psize > (1 << 64) - 1 else errno.ENOMEM)
    as_limit = t.tg.rlimits[9][0]
    if as_limit != 0xFFFFFFFFFFFFFFFF and mm.total_mapped() + psize > as_limit:
        raise SyscallError(errno.ENOMEM)          # RLIMIT_AS (may_expand_vm)
    name = "/SYSV%08x (deleted)" % (seg.perm.key & 0xFFFFFFFF)
    start = mm.mmap_backing(addr, psize, prot, mflags, seg.backing, 0, name, maxprot)
    seg.atime = now()
    seg.lpid = t.tg.tgid
    return start


def shmdt(t, addr: int) -> int:
    """ksys_shmdt: from `addr` up, the first VMA of a segment whose offset in the segment is its
    distance from `addr` goes, then the segment's later pieces that lie within its size."""
    if addr & (PAGE - 1):
        raise SyscallError(errno.EINVAL)
    mm = t.mm
    found = None
    for v in list(mm.vmas):
        if v.end <= addr:
            continue
        b = v.backing
        match = isinstance(b, ShmBacking) and v.offset - b.offset == v.start - addr
        if found is None:
            if match:
                found = b
                mm.munmap(v.start, v.end - v.start)
            continue
        if v.end - addr > found.length:
            break
        if match and b is found:
            mm.munmap(v.start, v.end - v.start)
    if found is None:
        raise SyscallError(errno.EINVAL)
    seg = found.seg
    seg.dtime = now()
    seg.lpid = t.tg.tgid
    return 0


def stat(t, shmid: int, cmd: int):
    """shm_stat: IPC_STAT by id (0), SHM_STAT/SHM_STAT_ANY by index (the full id)."""
    space = ids(t)
    seg = space.check(shmid) if cmd == IPC_STAT else space.at_index(shmid)
    if cmd != SHM_STAT_ANY and not ipcperms(t, space, seg.perm, S_IRUGO):
        raise SyscallError(errno.EACCES)
    p = seg.perm
    data = SHMID_DS.pack(p.pack(t), seg.segsz, seg.atime, seg.dtime, seg.ctime, pid_seen(t, seg.cpid),
                         pid_seen(t, seg.lpid), seg.nattch(), 0, 0)
    return (0 if cmd == IPC_STAT else p.id), data


def info(t, cmd: int):
    """IPC_INFO (struct shminfo64) and SHM_INFO (struct shm_info); both return the highest index."""
    space = ids(t)
    if cmd == IPC_INFO:
        data = SHMINFO.pack(SHMMAX, SHMMIN, SHMMNI, SHMMNI, SHMALL, 0, 0, 0, 0)
    else:
        rss = sum(s.memfile.committed(s.backing.offset, s.backing.length) // PAGE
                  for s in space.ordered() if s.backing is not None)
        data = SHM_INFO_S.pack(len(space.by_idx), space.extra, rss, 0, 0, 0)
    return space.max_idx(), data


def set_perm(t, shmid: int, raw: bytes) -> int:
    """IPC_SET: owner, group and mode bits (ipc_update_perm); EPERM unless owner/creator/CAP_SYS_ADMIN."""
    space = ids(t)
    seg = ctl_check(t, space, shmid)
    seg.perm.update(t, raw)
    seg.ctime = now()
    return 0


def rmid(t, shmid: int) -> int:
    """do_shm_rmid: destroy now if unattached, else SHM_DEST with the key made private."""
    space = ids(t)
    seg = ctl_check(t, space, shmid)
    p = seg.perm
    if p.key != IPC_PRIVATE and space.by_key.get(p.key) is seg:
        del space.by_key[p.key]
    p.key = IPC_PRIVATE
    p.mode |= SHM_DEST
    if seg.nattch() == 0:
        seg.destroy()
    return 0


def lock(t, shmid: int, cmd: int) -> int:
    """SHM_LOCK/SHM_UNLOCK (shmctl_do_lock): the pages are never swapped here, so only the
    checks and the SHM_LOCKED mode bit: without CAP_IPC_LOCK, the owner or creator only, and
    SHM_LOCK needs a non-zero RLIMIT_MEMLOCK."""
    from sentry.userns import capable
    space = ids(t)
    seg = space.check(shmid)
    if not capable(t, space.userns):
        if t.tg.creds.euid not in (seg.perm.uid, seg.perm.cuid):
            raise SyscallError(errno.EPERM)
        if cmd == SHM_LOCK and t.tg.rlimits[8][0] == 0:
            raise SyscallError(errno.EPERM)
    if cmd == SHM_LOCK:
        seg.perm.mode |= SHM_LOCKED
    else:
        seg.perm.mode &= ~SHM_LOCKED
    return 0


def proc_lines(t) -> bytes:
    """/proc/sysvipc/shm (sysvipc_shm_proc_show), the reader's namespace."""
    from sentry.userns import gid_seen, uid_seen
    out = [b"       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid"
           b"      atime      dtime      ctime                   rss                  swap\n"]
    for s in ids(t).ordered():
        p = s.perm
        rss = s.memfile.committed(s.backing.offset, s.backing.length) if s.backing is not None else 0
        out.append(b"%10d %10d  %4o %21u %5u %5u  %5u %5u %5u %5u %5u %10u %10u %10u %21u %21u\n" % (
            p.key, p.id, p.mode, s.segsz, pid_seen(t, s.cpid), pid_seen(t, s.lpid), s.nattch(),
            uid_seen(t, p.uid), gid_seen(t, p.gid), uid_seen(t, p.cuid), gid_seen(t, p.cgid),
            s.atime, s.dtime, s.ctime, rss, 0))
    return b"".join(out)
