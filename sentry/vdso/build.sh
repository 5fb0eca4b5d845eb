#!/usr/bin/env bash
# Builds sentry/vdso/vdso.so, or OUT when given (install.sh runs this; the build backend, setup.py,
# runs it with OUT in the wheel's build directory). Without the image the Sentry refuses to start.
#   sentry/vdso/build.sh [OUT]
set -euo pipefail
out="$(realpath -m "${1:-$(dirname "$0")/vdso.so}")"
cd "$(dirname "$0")"
gcc -O2 -fPIC -shared -nostdlib -fno-stack-protector -fno-asynchronous-unwind-tables -mno-red-zone \
    -Wl,--hash-style=both -Wl,-soname=linux-vdso.so.1 -Wl,--version-script=vdso.lds \
    -Wl,-z,max-page-size=4096 -Wl,-T,layout.lds -Wl,--no-undefined -o "$out.tmp" vdso.c
# One PT_LOAD at vaddr 0, as a kernel vDSO: glibc derives the load bias from the first non-zero p_vaddr.
if [ "$(readelf -lW "$out.tmp" | grep -c " LOAD ")" != 1 ]; then
    echo "vdso: expected a single PT_LOAD" >&2; rm -f "$out.tmp"; exit 1
fi
if readelf -r "$out.tmp" | grep -q "R_X86_64"; then
    echo "vdso: the image needs relocations; refusing it" >&2
    rm -f "$out.tmp"
    exit 1
fi
mv "$out.tmp" "$out"
