/*
 * thread_signals: pthread_kill to a thread that blocks in sigwait,
 * thread-local storage (__thread, set per thread via ARCH_SET_FS by
 * clone(CLONE_SETTLS)), gettid distinct per thread, pthread_join, a
 * handler running on the targeted thread (tgkill), and a signal blocked in
 * every thread but one lands on that one.
 */
#include "tap.h"
#include <pthread.h>
#include <signal.h>
#include <stdint.h>

static __thread int tls_value = 7;
static __thread char tls_buf[64];

static volatile pid_t handler_tid;
static void on_usr2(int sig) { (void)sig; handler_tid = (pid_t)syscall(SYS_gettid); }

struct arg {
	int id;
	int got_sig;
	int tls_start;
	int tls_end;
	pid_t tid;
	void *tls_addr;
};

static pthread_barrier_t barrier;

static void *sigwaiter(void *p)
{
	struct arg *a = p;
	sigset_t set;
	int sig = 0;

	a->tls_start = tls_value;          /* a fresh thread sees the initial value */
	tls_value = 100 + a->id;
	snprintf(tls_buf, sizeof(tls_buf), "thread %d", a->id);
	a->tid = (pid_t)syscall(SYS_gettid);
	a->tls_addr = &tls_value;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_barrier_wait(&barrier);
	if (sigwait(&set, &sig) == 0)
		a->got_sig = sig;
	a->tls_end = tls_value;
	return (void *)(intptr_t)(strcmp(tls_buf, "thread 1") == 0 || strcmp(tls_buf, "thread 2") == 0);
}

static void *unblocked(void *p)
{
	pid_t *tid = p;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	*tid = (pid_t)syscall(SYS_gettid);
	while (!handler_tid)
		usleep(1000);
	return NULL;
}

int main(void)
{
	pthread_t t1, t2, t3;
	struct arg a1 = {.id = 1}, a2 = {.id = 2};
	sigset_t set;
	void *r1 = NULL, *r2 = NULL;
	pid_t t3tid = 0;
	struct sigaction sa;

	tap_plan(15);
	/* SIGUSR1 blocked in every thread (inherited), so only sigwait takes it. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	check_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0, "block SIGUSR1 and SIGUSR2 in main");
	pthread_barrier_init(&barrier, NULL, 3);
	tls_value = 42;
	check_eq(pthread_create(&t1, NULL, sigwaiter, &a1) | pthread_create(&t2, NULL, sigwaiter, &a2), 0,
		 "pthread_create two sigwait threads");
	pthread_barrier_wait(&barrier);
	check(a1.tls_start == 7 && a2.tls_start == 7, "__thread starts at its initial value in each new thread");
	check(a1.tls_addr != a2.tls_addr && a1.tls_addr != (void *)&tls_value,
	      "each thread's __thread variable has its own address");
	check(a1.tid != a2.tid && a1.tid != getpid() && a2.tid != getpid(), "each thread has its own tid");
	check_eq(pthread_kill(t2, SIGUSR1), 0, "pthread_kill(t2, SIGUSR1)");
	check_eq(pthread_join(t2, &r2), 0, "pthread_join t2");
	check(a2.got_sig == SIGUSR1 && a1.got_sig == 0, "only t2's sigwait returned, with SIGUSR1");
	check_eq(pthread_kill(t1, SIGUSR1), 0, "pthread_kill(t1, SIGUSR1)");
	check_eq(pthread_join(t1, &r1), 0, "pthread_join t1");
	check(a1.got_sig == SIGUSR1 && a1.tls_end == 101 && a2.tls_end == 102,
	      "t1 got SIGUSR1; each thread kept its own __thread value");
	check(r1 == (void *)1 && r2 == (void *)1, "__thread buffers were private (returned through join)");
	check_eq(tls_value, 42, "main thread's __thread value is untouched");

	/* A process-directed signal blocked everywhere but in t3 runs its handler on t3. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	pthread_create(&t3, NULL, unblocked, &t3tid);
	while (!__atomic_load_n(&t3tid, __ATOMIC_SEQ_CST))
		usleep(1000);
	check_eq(kill(getpid(), SIGUSR2), 0, "kill(getpid(), SIGUSR2)");
	pthread_join(t3, NULL);
	check_eq(handler_tid, t3tid, "the handler ran on the only thread that does not block SIGUSR2");
	return tap_done();
}
