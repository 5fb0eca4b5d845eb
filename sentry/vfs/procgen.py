"""The contents of the sandbox's /proc files (sentry/vfs/procfs.py builds the tree).

Each `gen_*` function makes one file's bytes from the Sentry's own kernel objects (thread
groups, memory managers, fd tables, the mount table) when the file is opened: a snapshot, as
seq_file gives a reader of a small /proc file.  Nothing here reads the host's /proc.
"""
from __future__ import annotations

import os
import time

CLK_TCK = 100

def _kb(n: int) -> int:
    return n // 1024


def _vm_size(tg) -> int:
    mm = tg.mm
    return sum(v.end - v.start for v in mm.vmas) if mm is not None else 0


def _ppid(tg) -> int:
    p = tg.parent
    return p.tgid if p is not None else 0


def _state(fs, tg) -> tuple[bytes, bytes]:
    if tg.exiting or tg.exit_status is not None:
        return b"Z", b"zombie"
    cur = fs.current
    if cur is not None and cur.tg is tg:
        return b"R", b"running"
    return b"S", b"sleeping"


def _ticks(ns_or_s: float) -> int:
    return int(ns_or_s * CLK_TCK)


def _cpu_ticks(ns: int) -> int:
    return ns * CLK_TCK // 1_000_000_000


def gen_pid_stat(fs, tg, task=None) -> bytes:
    """/proc/PID/stat (proc(5)): times in clock ticks; field 22, starttime, counts from the
    sandbox's boot (the zero of /proc/uptime), when the process was forked."""
    k = fs.kernel
    state, _ = _state(fs, tg)
    vsize = _vm_size(tg)
    cpu = tg.utime + (tg.mm.space.cpu_time_ns() if tg.mm is not None and not tg.zombie else 0)
    utime, stime = _cpu_ticks(cpu), _cpu_ticks(tg.stime)
    cutime, cstime = _cpu_ticks(tg.cutime), _cpu_ticks(tg.cstime)
    start = _ticks(max(0.0, tg.start_monotonic - k.boot_monotonic))
    pid = task.tid if task is not None else tg.tgid
    fields = [pid, b"(" + tg.comm + b")", state, _ppid(tg), tg.pgid, tg.sid, 0, -1, 0x400000,
              0, 0, 0, 0, utime, stime, cutime, cstime, 20 + tg.nice, tg.nice, len(tg.tasks), 0, start, vsize, vsize // 4096,
              (1 << 64) - 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    return b" ".join(f if isinstance(f, bytes) else str(f).encode() for f in fields) + b"\n"


def gen_pid_statm(fs, tg) -> bytes:
    pages = _vm_size(tg) // 4096
    return f"{pages} {pages} 0 0 0 {pages} 0\n".encode()


def _sigset(tg, which: str) -> int:
    out = 0
    acts = tg.sigactions
    for i, a in enumerate(acts):
        if i == 0:
            continue
        if which == "ign" and a.handler == 1:
            out |= 1 << (i - 1)
        elif which == "cgt" and a.handler > 1:
            out |= 1 << (i - 1)
    return out


def _seccomp_mode(t) -> int:
    """0, 1 (strict) or 2 (filters) for the Seccomp: line (sentry/seccomp_bpf.py)."""
    s = getattr(t, "seccomp", None)
    return 0 if s is None else 1 if isinstance(s, str) else 2


def _seccomp_filters(t) -> int:
    s = getattr(t, "seccomp", None)
    return len(s) if isinstance(s, tuple) else 0


def gen_pid_status(fs, tg, task=None) -> bytes:
    c = tg.creds
    _, state_name = _state(fs, tg)
    state, _ = _state(fs, tg)
    vm = _kb(_vm_size(tg))
    pid = task.tid if task is not None else tg.tgid
    blocked = task.sigmask if task is not None else (tg.leader.sigmask if tg.leader is not None else 0)
    lines = [
        f"Name:\t{tg.comm.decode('utf-8', 'replace')}",
        f"Umask:\t{tg.fs.umask:04o}",
        f"State:\t{state.decode()} ({state_name.decode()})",
        f"Tgid:\t{tg.tgid}",
        "Ngid:\t0",
        f"Pid:\t{pid}",
        f"PPid:\t{_ppid(tg)}",
        "TracerPid:\t0",
        f"Uid:\t{c.ruid}\t{c.euid}\t{c.suid}\t{c.fsuid}",
        f"Gid:\t{c.rgid}\t{c.egid}\t{c.sgid}\t{c.fsgid}",
        f"FDSize:\t{max(64, len(tg.fds.files))}",
        "Groups:\t" + " ".join(str(g) for g in c.groups),
        f"VmPeak:\t{vm:8d} kB",
        f"VmSize:\t{vm:8d} kB",
        "VmLck:\t       0 kB",
        "VmPin:\t       0 kB",
        f"VmHWM:\t{vm:8d} kB",
        f"VmRSS:\t{vm:8d} kB",
        "VmData:\t       0 kB",
        "VmStk:\t       0 kB",
        "VmExe:\t       0 kB",
        "VmLib:\t       0 kB",
        "VmPTE:\t       0 kB",
        "VmSwap:\t       0 kB",
        f"Threads:\t{len(tg.tasks)}",
        "SigQ:\t0/63439",
        "SigPnd:\t0000000000000000",
        "ShdPnd:\t0000000000000000",
        f"SigBlk:\t{blocked:016x}",
        f"SigIgn:\t{_sigset(tg, 'ign'):016x}",
        f"SigCgt:\t{_sigset(tg, 'cgt'):016x}",
        "CapInh:\t0000000000000000",
        f"CapPrm:\t{'000001ffffffffff' if c.euid == 0 else '0000000000000000'}",
        f"CapEff:\t{'000001ffffffffff' if c.euid == 0 else '0000000000000000'}",
        "CapBnd:\t000001ffffffffff",
        "CapAmb:\t0000000000000000",
        f"NoNewPrivs:\t{1 if tg.no_new_privs else 0}",
        f"Seccomp:\t{_seccomp_mode(task or tg.leader)}",
        f"Seccomp_filters:\t{_seccomp_filters(task or tg.leader)}",
        "Speculation_Store_Bypass:\tthread vulnerable",
        f"Cpus_allowed:\t{(1 << fs.ncpu) - 1:x}",
        f"Cpus_allowed_list:\t0-{fs.ncpu - 1}" if fs.ncpu > 1 else "Cpus_allowed_list:\t0",
        "Mems_allowed:\t1",
        "Mems_allowed_list:\t0",
        "voluntary_ctxt_switches:\t0",
        "nonvoluntary_ctxt_switches:\t0",
    ]
    return ("\n".join(lines) + "\n").encode()


def gen_maps(fs, tg) -> bytes:
    out = []
    mm = tg.mm
    if mm is None:
        return b""
    for v in mm.vmas:
        prot = v.prot
        perms = ("r" if prot & 1 else "-") + ("w" if prot & 2 else "-") + ("x" if prot & 4 else "-") + \
                ("s" if v.shared else "p")
        name = v.name
        src = getattr(v, "source", None)
        if src is not None:                   # a file mapping: its offset, device and inode
            _f, foff, dev, ino = src
            major, minor = (dev >> 8) & 0xFFF, (dev & 0xFF) | ((dev >> 12) & 0xFFF00)
            line = f"{v.start:08x}-{v.end:08x} {perms} {foff:08x} {major:02x}:{minor:02x} {ino}"
        elif getattr(v.backing, "seg", None) is not None:      # a SysV segment (sentry/ipc/shm.py)
            line = f"{v.start:08x}-{v.end:08x} {perms} {v.offset - v.backing.offset:08x} 00:01 {v.backing.seg.perm.id}"
        else:
            if v.shared and not name:
                name = "/dev/zero (deleted)"  # shared anonymous memory is a shmem file on Linux
            line = f"{v.start:08x}-{v.end:08x} {perms} 00000000 00:00 0"
        out.append(line + (" " * (73 - len(line)) + name if name else " "))
    return ("\n".join(out) + "\n").encode() if out else b""


def _fd_target(f) -> bytes:
    d = f.dentry
    if d is not None:
        parent = d.parent
        if parent is not None and not getattr(parent.children, "uncached", False) and \
                parent.children.get(d.name) is not d:
            return d.path() + b" (deleted)"        # unlinked (or renamed over) since it was opened
        return d.path()
    kind = getattr(f, "proc_name", None)
    if kind is not None:
        return kind() if callable(kind) else kind
    pipe = getattr(f, "pipe", None)
    if pipe is not None:
        return f"pipe:[{pipe.ino}]".encode()
    if hasattr(f, "host_fd"):
        try:
            import stat as st
            s = os.fstat(f.host_fd)
            # Host inode numbers are not the sandbox's business: renumber them.
            if st.S_ISFIFO(s.st_mode):
                return f"pipe:[{_sandbox_ino(s)}]".encode()
            if st.S_ISSOCK(s.st_mode):
                return f"socket:[{_sandbox_ino(s)}]".encode()
            if st.S_ISCHR(s.st_mode):
                return b"/dev/pts/0" if getattr(f, "is_tty", False) else b"/dev/null"
            return f"host:[{_sandbox_ino(s)}]".encode()     # a host file given as stdio: no host path
        except OSError:
            pass
    return f"anon_inode:[{type(f).__name__.lower()}]".encode()


_HOST_INOS: dict[tuple[int, int], int] = {}


def _sandbox_ino(s) -> int:
    key = (s.st_dev, s.st_ino)
    n = _HOST_INOS.get(key)
    if n is None:
        n = _HOST_INOS[key] = 4026531840 + len(_HOST_INOS) + 1
    return n


def gen_fdinfo(fs, tg, fd: int) -> bytes:
    f = tg.fds.files.get(fd)
    if f is None:
        return b""
    extra = getattr(f, "fdinfo", None)       # a file type's own lines (signalfd's sigmask)
    return (f"pos:\t{f.offset}\nflags:\t0{f.flags:o}\nmnt_id:\t{f.mount.mount_id if f.mount else 0}\n"
            + (extra() if extra is not None else "")).encode()


def mount_lines(k, root_dentry) -> list:
    """(mount, mountpoint path as seen from `root_dentry`) for every mount reachable from it, in
    mount order.  Linux lists only the mounts of the reader's namespace under its root: a pod
    member sees its own tree, not the other members' (sentry/pod.py)."""
    out = []
    top = root_dentry.mount if root_dentry is not None else None
    for m in k.vfs.mounts:
        up = m
        while top is not None and up is not top and up is not None:
            up = up.parent
        if up is None:
            continue                        # another tree of the pod: not in this namespace
        if m.mountpoint is None:
            path = b"/"
        else:
            path = m.mountpoint.path(root_dentry)
        out.append((m, path))
    return out


FLAG_ORDER = ("ro", "rw", "nosuid", "nodev", "noexec", "sync", "dirsync", "noatime", "nodiratime",
              "relatime", "strictatime")


def _mount_flags(m) -> str:
    flags = [f for f in FLAG_ORDER if f in m.flags]
    if "ro" not in m.flags and "rw" not in m.flags:
        flags.insert(0, "rw")
    return ",".join(flags)


def _opts(m) -> str:
    return _mount_flags(m) + ("," + m.options if m.options else "")


def gen_mounts(fs, tg) -> bytes:
    out = []
    for m, path in mount_lines(fs.kernel, tg.fs.root):
        out.append(f"{m.source} {path.decode('utf-8', 'replace')} {m.fstype} {_opts(m)} 0 0")
    return ("\n".join(out) + "\n").encode()


def gen_mountinfo(fs, tg) -> bytes:
    out = []
    for m, path in mount_lines(fs.kernel, tg.fs.root):
        parent = m.parent.mount_id if m.parent is not None else 1
        dev = getattr(m.fs, "dev", 0)
        mflags = _mount_flags(m)
        sopts = "ro" if m.readonly else "rw"
        if m.options:
            sopts += "," + m.options
        out.append(f"{m.mount_id} {parent} {(dev >> 8) & 0xFFF}:{dev & 0xFF} / {path.decode('utf-8', 'replace')} "
                   f"{mflags} - {m.fstype} {m.source} {sopts}")
    return ("\n".join(out) + "\n").encode()


def gen_meminfo(fs) -> bytes:
    k = fs.kernel
    total = _kb(fs.mem_total)
    used = _kb(getattr(k.memfile, "allocated", 0))
    free = max(0, total - used)
    rows = [("MemTotal", total), ("MemFree", free), ("MemAvailable", free), ("Buffers", 0), ("Cached", 0),
            ("SwapCached", 0), ("Active", used), ("Inactive", 0), ("Active(anon)", used), ("Inactive(anon)", 0),
            ("Active(file)", 0), ("Inactive(file)", 0), ("Unevictable", 0), ("Mlocked", 0),
            ("SwapTotal", 0), ("SwapFree", 0), ("Dirty", 0), ("Writeback", 0), ("AnonPages", used),
            ("Mapped", 0), ("Shmem", 0), ("KReclaimable", 0), ("Slab", 0), ("SReclaimable", 0),
            ("SUnreclaim", 0), ("KernelStack", 0), ("PageTables", 0), ("CommitLimit", total),
            ("Committed_AS", used), ("VmallocTotal", 34359738367), ("VmallocUsed", 0), ("VmallocChunk", 0),
            ("HugePages_Total", None), ("HugePages_Free", None), ("HugePages_Rsvd", None),
            ("HugePages_Surp", None), ("Hugepagesize", 2048)]
    out = []
    for name, v in rows:
        if v is None:
            out.append(f"{name + ':':<16}{0:>8}")
        else:
            out.append(f"{name + ':':<16}{v:>8} kB")
    return ("\n".join(out) + "\n").encode()


def gen_cpuinfo(fs) -> bytes:
    out = []
    for i in range(fs.ncpu):
        out.append(f"processor\t: {i}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
                   f"model name\t: runsc-py virtual CPU\nstepping\t: 4\ncpu MHz\t\t: 2000.000\n"
                   f"cache size\t: 8192 KB\nphysical id\t: 0\nsiblings\t: {fs.ncpu}\ncore id\t\t: {i}\n"
                   f"cpu cores\t: {fs.ncpu}\napicid\t\t: {i}\ninitial apicid\t: {i}\nfpu\t\t: yes\n"
                   f"fpu_exception\t: yes\ncpuid level\t: 13\nwp\t\t: yes\n"
                   f"flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush "
                   f"mmx fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology "
                   f"nonstop_tsc cpuid pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes "
                   f"xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch fsgsbase bmi1 avx2 smep bmi2 "
                   f"erms invpcid xsaveopt\nbogomips\t: 4000.00\nclflush size\t: 64\ncache_alignment\t: 64\n"
                   f"address sizes\t: 46 bits physical, 48 bits virtual\npower management:\n")
    return "\n".join(out).encode()


def _uptime(fs) -> float:
    return time.monotonic() - fs.kernel.boot_monotonic


def gen_stat(fs) -> bytes:
    k = fs.kernel
    up = _ticks(_uptime(fs))
    lines = [f"cpu  {up} 0 0 {up * (fs.ncpu - 1)} 0 0 0 0 0 0"]
    for i in range(fs.ncpu):
        lines.append(f"cpu{i} {up // fs.ncpu} 0 0 0 0 0 0 0 0 0")
    boot = int(time.time() - _uptime(fs))
    lines += ["intr 0", "ctxt 0", f"btime {boot}", f"processes {len(k.thread_groups)}",
              f"procs_running {max(1, len(k.runq))}", "procs_blocked 0", "softirq 0 0 0 0 0 0 0 0 0 0 0"]
    return ("\n".join(lines) + "\n").encode()


def gen_uptime(fs) -> bytes:
    up = _uptime(fs)
    return f"{up:.2f} {up * fs.ncpu:.2f}\n".encode()


def gen_loadavg(fs) -> bytes:
    k = fs.kernel
    last = max(k.tasks) if k.tasks else 0
    return f"0.00 0.00 0.00 {max(1, len(k.runq))}/{len(k.tasks)} {last}\n".encode()


FILESYSTEMS = b"nodev\tsysfs\nnodev\ttmpfs\nnodev\tbdev\nnodev\tproc\nnodev\tdevtmpfs\nnodev\tdevpts\n" \
              b"nodev\tpipefs\nnodev\tsockfs\nnodev\tmqueue\nnodev\t9p\n"


