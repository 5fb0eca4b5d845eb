/*
 * thread_futex_waitv: futex_waitv(2) (Linux 5.16), through syscall(2).
 *
 * Success paths: a thread waiting on three words is woken by a plain
 * FUTEX_WAKE on the second and gets index 1 (and on the third: 2), and a
 * word moved by FUTEX_CMP_REQUEUE keeps its index; a word
 * in a MAP_SHARED page (no FUTEX2_PRIVATE) wakes a waiter in a forked child;
 * absolute timeouts on CLOCK_MONOTONIC and CLOCK_REALTIME end in ETIMEDOUT;
 * a signal with a handler (no SA_RESTART) ends the wait with EINTR.
 * Errno paths: EAGAIN when a value differs (checked in order, so a later
 * bad word is not reached), EINVAL for nr_futexes 0 or 129, flags != 0, a
 * NULL vector, a word's flags other than FUTEX2_SIZE_U32[|FUTEX2_PRIVATE],
 * a reserved field, a value above 32 bits, an unaligned address, a clockid
 * other than REALTIME/MONOTONIC, tv_nsec out of range; EFAULT for an
 * unreadable vector, timeout, or futex word.
 */
#include "tap.h"
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#define SIZE_U32 0x02
#define PRIV 0x80

struct waitv { uint64_t val; uint64_t uaddr; uint32_t flags; uint32_t reserved; };

static long waitv(struct waitv *w, unsigned n, unsigned flags, struct timespec *ts, int clk)
{
	return syscall(SYS_futex_waitv, w, n, flags, ts, clk);
}

static uint32_t words[3];
static volatile long tret;
static volatile int terr, tstarted;

static void set(struct waitv *w, uint32_t *addr, uint32_t val, uint32_t flags)
{
	w->val = val;
	w->uaddr = (uintptr_t)addr;
	w->flags = flags;
	w->reserved = 0;
}

static void *waiter(void *p)
{
	struct waitv w[3];
	(void)p;
	for (int i = 0; i < 3; i++)
		set(&w[i], &words[i], 0, SIZE_U32 | PRIV);
	tstarted = 1;
	tret = waitv(w, 3, 0, NULL, 0);
	terr = errno;
	return NULL;
}

static long wake(uint32_t *addr, int shared)
{
	return syscall(SYS_futex, addr, shared ? FUTEX_WAKE : FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static int wake_until(uint32_t *addr, int shared)
{
	/* The waiter may not be parked yet: wake until one is woken (bounded). */
	for (int i = 0; i < 20000; i++) {
		if (wake(addr, shared) == 1)
			return 1;
		usleep(1000);
	}
	return 0;
}

static void deadline(struct timespec *ts, int clk, long ms)
{
	clock_gettime(clk, ts);
	ts->tv_nsec += ms * 1000000L;
	ts->tv_sec += ts->tv_nsec / 1000000000L;
	ts->tv_nsec %= 1000000000L;
}

static void on_usr1(int s) { (void)s; }

int main(void)
{
	struct waitv w[130];
	struct timespec ts;
	pthread_t th;

	tap_plan(32);

	for (int which = 1; which <= 2; which++) {
		tstarted = 0;
		pthread_create(&th, NULL, waiter, NULL);
		while (!tstarted)
			usleep(100);
		check_eq(wake_until(&words[which], 0), 1, "FUTEX_WAKE on word %d wakes the waitv waiter", which);
		pthread_join(th, NULL);
		check_eq(tret, which, "futex_waitv returns the index of the woken word (%d)", which);
	}

	/* FUTEX_CMP_REQUEUE moves the waiter's second word to another; a wake there gives index 1. */
	static uint32_t other;
	tstarted = 0;
	pthread_create(&th, NULL, waiter, NULL);
	while (!tstarted)
		usleep(100);
	long moved = 0;
	for (int i = 0; i < 20000 && moved == 0; i++) {
		moved = syscall(SYS_futex, &words[1], FUTEX_CMP_REQUEUE_PRIVATE, 0, (void *)1L, &other, 0);
		if (moved == 0)
			usleep(1000);
	}
	check_eq(moved, 1, "FUTEX_CMP_REQUEUE moves the waitv waiter");
	check_eq(wake(&other, 0), 1, "a wake on the new word wakes it");
	pthread_join(th, NULL);
	check_eq(tret, 1, "and futex_waitv returns the moved word's index");

	/* A shared word between processes. */
	uint32_t *shm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	*shm = 7;
	pid_t pid = fork();
	if (pid == 0) {
		struct waitv cw[2];
		set(&cw[0], &shm[1], 0, SIZE_U32 | PRIV);
		set(&cw[1], &shm[0], 7, SIZE_U32);
		long r = waitv(cw, 2, 0, NULL, 0);
		_exit(r == 1 ? 0 : 10 + (r < 0 ? errno : 50));
	}
	check_eq(wake_until(shm, 1), 1, "a shared FUTEX_WAKE from the parent wakes the child's waitv");
	int status = 0;
	waitpid(pid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's futex_waitv returned 1 (status %#x)", status);

	/* Timeouts. */
	set(&w[0], &words[0], 0, SIZE_U32 | PRIV);
	deadline(&ts, CLOCK_MONOTONIC, 30);
	check_errno(waitv(w, 1, 0, &ts, CLOCK_MONOTONIC), ETIMEDOUT, "absolute CLOCK_MONOTONIC timeout");
	deadline(&ts, CLOCK_REALTIME, 30);
	check_errno(waitv(w, 1, 0, &ts, CLOCK_REALTIME), ETIMEDOUT, "absolute CLOCK_REALTIME timeout");
	ts.tv_sec = 0; ts.tv_nsec = 0;
	check_errno(waitv(w, 1, 0, &ts, CLOCK_MONOTONIC), ETIMEDOUT, "a deadline in the past");

	/* EINTR from a handler without SA_RESTART. */
	struct sigaction sa = {0};
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	pid = fork();
	if (pid == 0) {
		usleep(50000);
		kill(getppid(), SIGUSR1);
		_exit(0);
	}
	deadline(&ts, CLOCK_MONOTONIC, 20000);
	check_errno(waitv(w, 1, 0, &ts, CLOCK_MONOTONIC), EINTR, "a caught signal ends the wait: EINTR");
	waitpid(pid, NULL, 0);

	/* EAGAIN, in order. */
	words[0] = 0; words[1] = 5;
	set(&w[0], &words[0], 0, SIZE_U32 | PRIV);
	set(&w[1], &words[1], 4, SIZE_U32 | PRIV);
	set(&w[2], (uint32_t *)8, 0, SIZE_U32 | PRIV);
	check_errno(waitv(w, 3, 0, NULL, 0), EAGAIN, "a differing value: EAGAIN before a later bad private word");
	words[1] = 0;

	/* EINVAL. */
	set(&w[0], &words[0], 0, SIZE_U32 | PRIV);
	check_errno(waitv(w, 0, 0, NULL, 0), EINVAL, "nr_futexes 0");
	for (int i = 0; i < 130; i++)
		set(&w[i], &words[0], 0, SIZE_U32 | PRIV);
	check_errno(waitv(w, 129, 0, NULL, 0), EINVAL, "nr_futexes 129");
	check_errno(waitv(w, 1, 1, NULL, 0), EINVAL, "flags != 0");
	check_errno(waitv(NULL, 1, 0, NULL, 0), EINVAL, "NULL waiters");
	set(&w[0], &words[0], 0, 0x03 | PRIV);
	check_errno(waitv(w, 1, 0, NULL, 0), EINVAL, "FUTEX2_SIZE_U64");
	set(&w[0], &words[0], 0, 0x01);
	check_errno(waitv(w, 1, 0, NULL, 0), EINVAL, "FUTEX2_SIZE_U16");
	set(&w[0], &words[0], 0, SIZE_U32 | 0x100);
	check_errno(waitv(w, 1, 0, NULL, 0), EINVAL, "an unknown flag");
	set(&w[0], &words[0], 0, SIZE_U32);
	w[0].reserved = 1;
	check_errno(waitv(w, 1, 0, NULL, 0), EINVAL, "__reserved != 0");
	set(&w[0], &words[0], 0, SIZE_U32);
	w[0].val = 1ULL << 32;
	check_errno(waitv(w, 1, 0, NULL, 0), EINVAL, "a value wider than 32 bits");
	set(&w[0], (uint32_t *)((char *)&words[0] + 1), 0, SIZE_U32 | PRIV);
	check_errno(waitv(w, 1, 0, NULL, 0), EINVAL, "an unaligned word");
	set(&w[0], &words[0], 0, SIZE_U32 | PRIV);
	deadline(&ts, CLOCK_MONOTONIC, 10);
	check_errno(waitv(w, 1, 0, &ts, CLOCK_BOOTTIME), EINVAL, "clockid CLOCK_BOOTTIME");
	check_errno(waitv(w, 1, 0, &ts, -1), EINVAL, "clockid -1");
	ts.tv_nsec = 1000000000L;
	check_errno(waitv(w, 1, 0, &ts, CLOCK_MONOTONIC), EINVAL, "tv_nsec 1e9");
	ts.tv_nsec = -1;
	check_errno(waitv(w, 1, 0, &ts, CLOCK_MONOTONIC), EINVAL, "tv_nsec -1");

	/* EFAULT. */
	check_errno(waitv((struct waitv *)8, 1, 0, NULL, 0), EFAULT, "an unreadable vector");
	check_errno(waitv(w, 1, 0, (struct timespec *)8, CLOCK_MONOTONIC), EFAULT, "an unreadable timeout");
	set(&w[0], (uint32_t *)8, 0, SIZE_U32 | PRIV);
	check_errno(waitv(w, 1, 0, NULL, 0), EFAULT, "an unmapped private word");
	set(&w[0], (uint32_t *)8, 0, SIZE_U32);
	check_errno(waitv(w, 1, 0, NULL, 0), EFAULT, "an unmapped shared word");
	return tap_done();
}
