#!/usr/bin/env bash
# Installs everything runsc-py needs on a fresh Debian 12 machine (as root), then runs an
# example sandbox: busybox in a bundle built here, under `runsc-py run`.
#   ./install.sh            install + example
#   ./install.sh --no-example
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(busybox-static gcc libc6-dev libseccomp2 libseccomp-dev strace proot runc fuse3 libfuse3-dev pkg-config)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
fi

# The package itself (builds the cffi extension of the ptrace platform and the vDSO), with the test
# extra and the fuse extra (pyfuse3, for `runsc-py fs`).
python3 -m pip install -q -e '.[test,fuse]' 2>&1 | grep -v "Running pip as the 'root' user" || true
# Byte-compile our modules once: with PYTHONDONTWRITEBYTECODE set (common in CI images) every
# runsc-py start would otherwise recompile the Sentry from source (~0.1 s).
python3 tools/snapshot_syscall_tables.py
sentry/vdso/build.sh          # the sandbox's own vDSO (time without a trap)
python3 -m compileall -q sentry gofer platforms runsc_py
# The `runsc-py` command: an isolated, site-less start (~25 ms less per command than pip's script).
python3 -m runsc_py.launcher >/dev/null

[ "${1:-}" = "--no-example" ] && exit 0

# An example sandbox: a busybox-static rootfs in .build/example/bundle.
python3 - <<'PY'
import os, sys
sys.path.insert(0, os.getcwd())
from tests.rootfs import make_bundle
b = ".build/example/bundle"
if not os.path.exists(os.path.join(b, "config.json")):
    make_bundle(b, ["sh", "-c", "echo hello from the sandbox; uname -n; id; ls / | head -5; cat /etc/hostname"],
                hostname="example")
PY
echo "install.sh: running the example sandbox (.build/example/bundle):"
runsc-py --root .build/example/state run --bundle .build/example/bundle example-$$
