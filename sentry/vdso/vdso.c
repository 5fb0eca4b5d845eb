/*
 * The Sentry's vDSO: clock_gettime, gettimeofday and time answered in the
 * application, without a trap, from the TSC and a data page (the "vvar"
 * page, mapped read-only one page below this image) that the Sentry keeps
 * current.  The host's own vDSO is never mapped into a sandbox.
 *
 * The Sentry writes the page under a sequence count (odd while writing):
 *   ns(clock) = base_ns[clock] + ((rdtsc() - tsc_base) * mult) >> 32
 * Any clock it does not publish, or a page it has not enabled yet, falls
 * back to the real syscall, which the Sentry answers as before.
 *
 * Built position-independent with no relocations (hidden symbols only), as
 * a kernel vDSO is: nothing relocates it after it is mapped.
 */
#include <stdint.h>
#include <time.h>
#include <sys/time.h>

struct vvar {
	volatile uint32_t seq;
	volatile uint32_t enabled;
	volatile uint64_t tsc_base;
	volatile uint64_t mult;             /* ns per tick, 32.32 fixed point */
	volatile int64_t base_ns[12];       /* indexed by clockid; 0 = not published */
};

extern const char __ehdr_start[] __attribute__((visibility("hidden")));

static inline const struct vvar *vvar(void)
{
	return (const struct vvar *)(__ehdr_start - 4096);
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static long sys2(long nr, long a, long b)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
	return r;
}

static int read_ns(clockid_t clk, int64_t *out)
{
	const struct vvar *v = vvar();
	if ((unsigned)clk >= 12)
		return 0;
	uint32_t seq;
	int64_t ns;
	do {
		seq = v->seq;
		__asm__ volatile("" ::: "memory");
		if (!v->enabled || (seq & 1))
			return 0;
		int64_t base = v->base_ns[clk];
		if (!base)
			return 0;
		uint64_t d = rdtsc() - v->tsc_base;
		ns = base + (int64_t)(((unsigned __int128)d * v->mult) >> 32);
		__asm__ volatile("" ::: "memory");
	} while (seq != v->seq);
	*out = ns;
	return 1;
}

int __vdso_clock_gettime(clockid_t clk, struct timespec *ts)
{
	int64_t ns;
	if (!read_ns(clk, &ns))
		return (int)sys2(228, clk, (long)ts);
	ts->tv_sec = ns / 1000000000;
	ts->tv_nsec = ns % 1000000000;
	return 0;
}

int __vdso_gettimeofday(struct timeval *tv, void *tz)
{
	int64_t ns;
	if (tz || !read_ns(CLOCK_REALTIME, &ns))
		return (int)sys2(96, (long)tv, (long)tz);
	if (tv) {
		tv->tv_sec = ns / 1000000000;
		tv->tv_usec = (ns % 1000000000) / 1000;
	}
	return 0;
}

time_t __vdso_time(time_t *t)
{
	int64_t ns;
	if (!read_ns(CLOCK_REALTIME, &ns))
		return (time_t)sys2(201, (long)t, 0);
	time_t s = ns / 1000000000;
	if (t)
		*t = s;
	return s;
}

int __vdso_getcpu(unsigned *cpu, unsigned *node, void *cache)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "a"(309), "D"(cpu), "S"(node), "d"(cache) : "rcx", "r11", "memory");
	return (int)r;
}

int __vdso_clock_getres(clockid_t clk, struct timespec *res)
{
	return (int)sys2(229, clk, (long)res);
}

int clock_gettime(clockid_t, struct timespec *) __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct timeval *, void *) __attribute__((weak, alias("__vdso_gettimeofday")));
time_t time(time_t *) __attribute__((weak, alias("__vdso_time")));
int getcpu(unsigned *, unsigned *, void *) __attribute__((weak, alias("__vdso_getcpu")));
int clock_getres(clockid_t, struct timespec *) __attribute__((weak, alias("__vdso_clock_getres")));
