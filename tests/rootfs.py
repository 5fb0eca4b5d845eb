"""Build small root filesystems and OCI bundles for the tests, the README example and bench/.

A busybox-static rootfs is the project's first userland: one static binary
plus its applet links.  Built from the host's `busybox-static` package.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

BUSYBOX = "/bin/busybox"


def make_busybox_rootfs(dest: str) -> str:
    """Populate `dest` with busybox, its applet links, /etc/passwd and friends; return dest."""
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "root", "proc", "dev", "sys", "home"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(dest, "bin/busybox"))
    applets = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True, check=True).stdout.split()
    for path in applets:
        link = os.path.join(dest, path)
        if path == "bin/busybox" or os.path.lexists(link):
            continue
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink("/bin/busybox", link)
    with open(os.path.join(dest, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n"
                "sandboxuser:x:1000:1000:Sandbox User:/home:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(dest, "etc/group"), "w") as f:
        f.write("root:x:0:\nsandboxgroup:x:1000:\nnogroup:x:65534:\n")
    with open(os.path.join(dest, "etc/hostname"), "w") as f:
        f.write("rootfs-hostname\n")
    return dest


def default_config(args: list[str], **over) -> dict:
    """A config.json in the shape `runc spec` writes, with `args` and overrides applied."""
    cfg = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "runsc-py",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]},
    }
    proc = cfg["process"]
    for key, value in over.items():
        if key in ("user", "env", "cwd", "terminal"):
            proc[key] = value
        else:
            cfg[key] = value
    return cfg


def make_bundle(bundle: str, args: list[str], rootfs: str | None = None, **over) -> str:
    """Write `bundle/config.json`; the rootfs is `rootfs` (symlinked/absolute) or a fresh busybox one."""
    os.makedirs(bundle, exist_ok=True)
    cfg = default_config(args, **over)
    if rootfs is None:
        make_busybox_rootfs(os.path.join(bundle, "rootfs"))
    else:
        cfg["root"]["path"] = os.path.abspath(rootfs)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return bundle
