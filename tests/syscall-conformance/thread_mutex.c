/*
 * thread_mutex: 8 pthreads each do 100,000 mutex-protected increments of
 * one counter; a condition variable handshake (every worker reports ready,
 * then waits for the main thread's "go" broadcast) starts them together.
 * The total must be exact.  Exercises clone(CLONE_THREAD...), futex
 * WAIT/WAKE under contention, CLONE_CHILD_CLEARTID (pthread_join).
 */
#include "tap.h"
#include <pthread.h>

#define NTHREADS 8
#define NINCR 100000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int ready, go;
static long counter;

static void *worker(void *arg)
{
	pthread_mutex_lock(&lock);
	ready++;
	pthread_cond_broadcast(&cond);
	while (!go)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	for (int i = 0; i < NINCR; i++) {
		pthread_mutex_lock(&lock);
		counter++;
		pthread_mutex_unlock(&lock);
	}
	return (void *)((long)arg * 10);
}

int main(void)
{
	pthread_t th[NTHREADS];
	int created = 0, joined = 0, retsok = 1;

	tap_plan(5);
	for (long i = 0; i < NTHREADS; i++)
		if (pthread_create(&th[i], NULL, worker, (void *)i) == 0)
			created++;
	check_eq(created, NTHREADS, "pthread_create x%d", NTHREADS);
	pthread_mutex_lock(&lock);
	while (ready < created)
		pthread_cond_wait(&cond, &lock);
	check_eq(ready, NTHREADS, "every worker reported ready through the condition variable");
	go = 1;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	for (long i = 0; i < created; i++) {
		void *ret;
		if (pthread_join(th[i], &ret) == 0)
			joined++;
		if ((long)ret != i * 10)
			retsok = 0;
	}
	check_eq(joined, NTHREADS, "pthread_join x%d", NTHREADS);
	check(retsok, "each thread's return value arrives through pthread_join");
	check_eq(counter, (long)NTHREADS * NINCR, "total is exactly %d", NTHREADS * NINCR);
	tap_printf("# total=%ld\n", counter);
	return tap_done();
}
