"""cffi build script for `platforms._hostarch_ext`: the few CPU instructions the Sentry needs
(cpuid, xgetbv, rdtsc) and libc's getauxval.

Python has no way to execute an instruction, and these belong to no platform: the vDSO's
clock reads the TSC, the XSAVE layout comes from CPUID leaf 0xD and XCR0, the auxv passes on
the host's hardware capabilities.  `platforms.hostarch` is the Python face of this module.
"""
from cffi import FFI

CDEF = r"""
void ha_cpuid(unsigned int leaf, unsigned int subleaf, unsigned int out[4]);
unsigned long long ha_xgetbv(unsigned int index);
unsigned long long ha_rdtsc(void);
unsigned long getauxval(unsigned long type);
"""

SOURCE = r"""
#include <cpuid.h>
#include <sys/auxv.h>

void ha_cpuid(unsigned int leaf, unsigned int subleaf, unsigned int out[4]) {
    __cpuid_count(leaf, subleaf, out[0], out[1], out[2], out[3]);
}

/* Only called when CPUID says OSXSAVE (else xgetbv is #UD). */
unsigned long long ha_xgetbv(unsigned int index) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(index));
    return ((unsigned long long)hi << 32) | lo;
}

unsigned long long ha_rdtsc(void) {
    unsigned int lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((unsigned long long)hi << 32) | lo;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("platforms._hostarch_ext", SOURCE)

if __name__ == "__main__":
    import os
    ffibuilder.compile(tmpdir=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), verbose=False)
