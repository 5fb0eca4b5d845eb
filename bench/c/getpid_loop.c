/*
 * getpid_loop N — the workload of bench/getpid.py.
 *
 * Makes N raw syscall(SYS_getpid) calls and prints, on one line,
 *     ns_per_call=<float>
 * followed by getpid=<the last answer> (1 under the C floor and runsc-py,
 * whose Sentry answers getpid; the host pid natively), so a run shows who
 * answered.
 * measured inside the program with clock_gettime(CLOCK_MONOTONIC) through
 * libc (one call before, one after the loop), so process start-up and
 * tear-down are excluded.  Inside a sandbox the vDSO may be absent; libc
 * then falls back to the real clock_gettime syscall, which is fine: it is
 * made only twice.
 *
 * The same static binary is run by every contestant (native, the C
 * PTRACE_SYSEMU floor, runsc-py, proot, ...), so the numbers compare.
 * Build: gcc -O2 -static -o getpid_loop getpid_loop.c
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    long warm = n / 100 < 1000 ? n / 100 : 1000;
    volatile long sink = 0;
    long last = 0;
    struct timespec t0, t1;

    if (n <= 0) {
        fprintf(stderr, "usage: %s ITERATIONS (> 0)\n", argv[0]);
        return 2;
    }
    for (long i = 0; i < warm; i++)
        sink += syscall(SYS_getpid);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++)
        sink += syscall(SYS_getpid);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    last = syscall(SYS_getpid);

    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9
              + (double)(t1.tv_nsec - t0.tv_nsec);
    printf("ns_per_call=%.2f\ngetpid=%ld\n", ns / (double)n, last);
    fflush(stdout);
    return 0;
}
