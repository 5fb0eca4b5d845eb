"""sysfs: a minimal, read-only /sys describing the sandbox's CPUs.

Only what runtimes and libcs size themselves by: /sys/devices/system/cpu/
{online,possible,present} and one cpuN directory per CPU (glibc's
get_nprocs_conf counts those).  Built from procfs's generated-file
classes; the CPU count is sampled once at boot, like procfs's.
"""
from __future__ import annotations

from sentry.vfs.procfs import ProcDir, ProcFile, ProcFS

SYSFS_MAGIC = 0x62656572


class SysFS(ProcFS):
    def statfs(self) -> dict[str, int]:
        d = super().statfs()
        d["f_type"] = SYSFS_MAGIC
        return d


def make_sysfs(kernel, dev: int) -> tuple[SysFS, ProcDir]:
    fs = SysFS(kernel, dev)
    n = fs.ncpu
    cpus = (f"0-{n - 1}\n" if n > 1 else "0\n").encode()

    def f(key, data: bytes):
        return lambda: ProcFile(fs, key, lambda: data)

    def d(key, tree):
        return lambda: ProcDir(fs, key, lambda: tree)

    cpu = {b"online": f(("online",), cpus), b"possible": f(("possible",), cpus),
           b"present": f(("present",), cpus), b"kernel_max": f(("kernel_max",), b"8191\n")}
    for i in range(n):
        cpu[f"cpu{i}".encode()] = d(("cpu", i), {b"online": f(("cpu", i, "online"), b"1\n")})
    tree = {
        b"devices": d(("devices",), {b"system": d(("system",), {b"cpu": d(("cpu",), cpu)})}),
        b"fs": d(("fs",), {b"cgroup": d(("cgroup",), {})}),
        b"kernel": d(("kernel",), {}),
        b"class": d(("class",), {}),
        b"bus": d(("bus",), {}),
        b"block": d(("block",), {}),
        b"module": d(("module",), {}),
        b"firmware": d(("firmware",), {}),
        b"dev": d(("dev",), {}),
    }
    root = ProcDir(fs, ("root",), lambda: tree)
    return fs, root
