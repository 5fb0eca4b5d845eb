#!/usr/bin/env bash
# Builds sentry/vdso/vdso.so (install.sh runs this; without it the sandbox simply has no vDSO).
set -euo pipefail
cd "$(dirname "$0")"
gcc -O2 -fPIC -shared -nostdlib -fno-stack-protector -fno-asynchronous-unwind-tables -mno-red-zone \
    -Wl,--hash-style=both -Wl,-soname=linux-vdso.so.1 -Wl,--version-script=vdso.lds \
    -Wl,-z,max-page-size=4096 -Wl,-T,layout.lds -Wl,--no-undefined -o vdso.so.tmp vdso.c
# One PT_LOAD at vaddr 0, as a kernel vDSO: glibc derives the load bias from the first non-zero p_vaddr.
if [ "$(readelf -lW vdso.so.tmp | grep -c " LOAD ")" != 1 ]; then
    echo "vdso: expected a single PT_LOAD" >&2; rm -f vdso.so.tmp; exit 1
fi
if readelf -r vdso.so.tmp | grep -q "R_X86_64"; then
    echo "vdso: the image needs relocations; refusing it" >&2
    rm -f vdso.so.tmp
    exit 1
fi
mv vdso.so.tmp vdso.so
