/*
 * thread_futex: futex(2) between threads (and one shared futex between
 * processes).
 *
 * Success paths: FUTEX_WAIT blocks until FUTEX_WAKE (wake returns how many
 * woke); WAKE with no waiter returns 0; WAIT with a relative timeout
 * returns ETIMEDOUT after about that long; WAIT_BITSET with an absolute
 * CLOCK_MONOTONIC deadline times out too; WAKE_BITSET only wakes waiters
 * whose bitset intersects; REQUEUE and CMP_REQUEUE move waiters to a
 * second futex (woken later from there); WAKE_OP does the operation and
 * wakes on both; a shared (non-private) futex in a MAP_SHARED page works
 * between a parent and a forked child; CLONE_CHILD_CLEARTID zeroes the tid
 * word and wakes it at thread exit (pthread_join).
 * Errno paths: EAGAIN (WAIT when the word differs, CMP_REQUEUE when it
 * differs), ETIMEDOUT, EINVAL (bitset 0, unaligned address, bad op,
 * negative timeout nanoseconds), EFAULT (unmapped address), ENOSYS for an
 * unknown command.
 */
#include "tap.h"
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

static long futex(void *addr, int op, uint32_t val, const void *ts, void *addr2, uint32_t val3)
{
	return syscall(SYS_futex, addr, op, val, ts, addr2, val3);
}

static uint32_t f1, f2;
static volatile int woke_count;

struct waiter { uint32_t *addr; uint32_t bitset; long ret; int err; volatile int started; };

static void *wait_thread(void *p)
{
	struct waiter *w = p;
	w->started = 1;
	w->ret = futex(w->addr, FUTEX_WAIT_BITSET_PRIVATE, *w->addr, NULL, NULL, w->bitset);
	w->err = errno;
	__atomic_add_fetch(&woke_count, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void nap_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Wake until `n` waiters were woken (threads may not be asleep yet). */
static long wake_all(uint32_t *addr, int n)
{
	long total = 0;
	for (int i = 0; i < 400 && total < n; i++) {
		long r = futex(addr, FUTEX_WAKE_PRIVATE, n - total, NULL, NULL, 0);
		if (r > 0)
			total += r;
		else
			nap_ms(5);
	}
	return total;
}

static void start(pthread_t *t, struct waiter *w, uint32_t *addr, uint32_t bitset)
{
	memset(w, 0, sizeof(*w));
	w->addr = addr;
	w->bitset = bitset;
	pthread_create(t, NULL, wait_thread, w);
	while (!w->started)
		nap_ms(1);
	nap_ms(30);  /* let it reach FUTEX_WAIT */
}

int main(void)
{
	pthread_t t1, t2;
	struct waiter w1, w2;
	struct timespec ts;
	double t0;

	tap_plan(27);

	/* --- WAIT / WAKE --- */
	f1 = 0;
	check_eq(futex(&f1, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0), 0, "WAKE with no waiter returns 0");
	check_errno(futex(&f1, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0), EAGAIN, "WAIT when the word differs is EAGAIN");
	start(&t1, &w1, &f1, FUTEX_BITSET_MATCH_ANY);
	start(&t2, &w2, &f1, FUTEX_BITSET_MATCH_ANY);
	check_eq(wake_all(&f1, 2), 2, "WAKE wakes both waiters");
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	check(w1.ret == 0 && w2.ret == 0, "both WAITs returned 0");

	/* --- timeouts --- */
	ts = (struct timespec){0, 50000000};
	t0 = time(NULL);
	{
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		check_errno(futex(&f1, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0), ETIMEDOUT, "WAIT 50 ms times out: ETIMEDOUT");
		clock_gettime(CLOCK_MONOTONIC, &b);
		double dt = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
		check(dt >= 0.045 && dt < 5, "after about 50 ms");
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 30000000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		check_errno(futex(&f1, FUTEX_WAIT_BITSET_PRIVATE, 0, &ts, NULL, FUTEX_BITSET_MATCH_ANY), ETIMEDOUT,
			    "WAIT_BITSET with an absolute CLOCK_MONOTONIC deadline times out");
		clock_gettime(CLOCK_MONOTONIC, &a);
		check(a.tv_sec > ts.tv_sec || (a.tv_sec == ts.tv_sec && a.tv_nsec >= ts.tv_nsec), "not before the deadline");
	}
	(void)t0;
	ts = (struct timespec){0, -1};
	check_errno(futex(&f1, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0), EINVAL, "WAIT with tv_nsec -1 is EINVAL");

	/* --- bitsets --- */
	start(&t1, &w1, &f1, 0x1);
	start(&t2, &w2, &f1, 0x2);
	check_eq(futex(&f1, FUTEX_WAKE_BITSET_PRIVATE, 2, NULL, NULL, 0x2), 1, "WAKE_BITSET 0x2 wakes only the 0x2 waiter");
	pthread_join(t2, NULL);
	check(woke_count == 3 || woke_count == 4, "the 0x2 waiter returned");
	check_eq(futex(&f1, FUTEX_WAKE_BITSET_PRIVATE, 2, NULL, NULL, 0x1), 1, "WAKE_BITSET 0x1 wakes the other");
	pthread_join(t1, NULL);
	check_errno(futex(&f1, FUTEX_WAIT_BITSET_PRIVATE, 0, NULL, NULL, 0), EINVAL, "WAIT_BITSET with bitset 0 is EINVAL");
	check_errno(futex(&f1, FUTEX_WAKE_BITSET_PRIVATE, 1, NULL, NULL, 0), EINVAL, "WAKE_BITSET with bitset 0 is EINVAL");

	/* --- REQUEUE / CMP_REQUEUE --- */
	f1 = 0;
	f2 = 0;
	start(&t1, &w1, &f1, FUTEX_BITSET_MATCH_ANY);
	start(&t2, &w2, &f1, FUTEX_BITSET_MATCH_ANY);
	check_errno(futex(&f1, FUTEX_CMP_REQUEUE_PRIVATE, 0, (void *)1L, &f2, 5), EAGAIN,
		    "CMP_REQUEUE when the word differs from val3 is EAGAIN");
	check_eq(futex(&f1, FUTEX_CMP_REQUEUE_PRIVATE, 0, (void *)2L, &f2, 0), 2,
		 "CMP_REQUEUE wake 0, requeue 2: returns 2");
	check_eq(futex(&f1, FUTEX_WAKE_PRIVATE, 2, NULL, NULL, 0), 0, "nobody waits on the first futex any more");
	check_eq(wake_all(&f2, 2), 2, "both are woken from the second futex");
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	start(&t1, &w1, &f1, FUTEX_BITSET_MATCH_ANY);
	start(&t2, &w2, &f1, FUTEX_BITSET_MATCH_ANY);
	check_eq(futex(&f1, FUTEX_REQUEUE_PRIVATE, 1, (void *)1L, &f2, 0), 2, "REQUEUE wake 1, requeue 1: returns 2");
	check_eq(wake_all(&f2, 1), 1, "the requeued one is woken from the second futex");
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);

	/* --- WAKE_OP --- */
	f1 = 0;
	f2 = 5;
	start(&t1, &w1, &f1, FUTEX_BITSET_MATCH_ANY);
	/* *f2 = 7 (SET); wake 1 on f1; wake 1 on f2 if old value (5) > 4 */
	check_eq(futex(&f1, FUTEX_WAKE_OP_PRIVATE, 1, (void *)1L, &f2,
		       FUTEX_OP(FUTEX_OP_SET, 7, FUTEX_OP_CMP_GT, 4)), 1, "WAKE_OP wakes the waiter on the first futex");
	check_eq(f2, 7, "and did the operation (SET 7) on the second word");
	pthread_join(t1, NULL);

	/* --- errno paths --- */
	check_errno(futex((char *)&f1 + 1, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0), EINVAL, "unaligned address is EINVAL");
	check_errno(futex(BAD_PTR, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0), EINVAL, "address 1 (unaligned) is EINVAL");
	check_errno(futex((void *)4096, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0), EFAULT, "unmapped address is EFAULT");
	check_errno(futex(&f1, 99, 0, NULL, NULL, 0), ENOSYS, "unknown command 99 is ENOSYS");

	/* --- shared futex between processes --- */
	{
		uint32_t *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		int st;
		*sh = 0;
		pid_t pid = fork();
		if (pid == 0) {
			long r = futex(sh, FUTEX_WAIT, 0, NULL, NULL, 0);
			_exit(r == 0 ? 0 : 1);
		}
		long total = 0;
		for (int i = 0; i < 400 && total < 1; i++) {  /* until the child sleeps in FUTEX_WAIT */
			total += futex(sh, FUTEX_WAKE, 1, NULL, NULL, 0);
			if (!total)
				nap_ms(5);
		}
		waitpid(pid, &st, 0);
		check(total == 1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "a shared futex in a MAP_SHARED page wakes a forked child");
	}
	return tap_done();
}
