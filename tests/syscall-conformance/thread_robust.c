/*
 * thread_robust: robust futex lists are walked at thread and process exit.
 *
 * A thread locks a PTHREAD_MUTEX_ROBUST mutex and exits holding it: the
 * kernel marks the futex word FUTEX_OWNER_DIED (from the list registered
 * with set_robust_list), so the next pthread_mutex_lock returns
 * EOWNERDEAD, pthread_mutex_consistent makes it usable again, and a later
 * lock succeeds normally.  The same for a process-shared robust mutex in a
 * MAP_SHARED page held by a forked child that exits.  Also: get_robust_list
 * returns the head glibc registered; CLONE_CHILD_CLEARTID zeroes the
 * thread's tid word at exit (pthread_join returns), and a waiter blocked
 * in pthread_mutex_lock on the dead owner's mutex is woken.
 */
#include "tap.h"
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

static pthread_mutex_t m;

static void *lock_and_die(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&m);
	return NULL;          /* exits holding the mutex */
}

static void *lock_hold_then_die(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&m);
	struct timespec ts = {0, 100000000};
	nanosleep(&ts, NULL);
	return NULL;
}

int main(void)
{
	pthread_mutexattr_t a;
	pthread_t t;
	int r;

	tap_plan(11);
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&m, &a);

	{
		struct robust_list_head *head = NULL;
		size_t len = 0;
		check_eq(syscall(SYS_get_robust_list, 0, &head, &len), 0, "get_robust_list(0)");
		check(head != NULL && len == sizeof(struct robust_list_head), "glibc registered a robust list head");
	}

	check_eq(pthread_create(&t, NULL, lock_and_die, NULL), 0, "a thread locks the robust mutex");
	check_eq(pthread_join(t, NULL), 0, "and exits holding it (join returns: CLONE_CHILD_CLEARTID)");
	r = pthread_mutex_lock(&m);
	check_eq(r, EOWNERDEAD, "the next lock returns EOWNERDEAD");
	check_eq(pthread_mutex_consistent(&m), 0, "pthread_mutex_consistent");
	pthread_mutex_unlock(&m);
	check_eq(pthread_mutex_lock(&m), 0, "then the mutex locks normally");
	pthread_mutex_unlock(&m);

	/* a waiter blocked on the mutex when its owner dies is woken */
	pthread_create(&t, NULL, lock_hold_then_die, NULL);
	{
		struct timespec ts = {0, 30000000};
		nanosleep(&ts, NULL);
	}
	r = pthread_mutex_lock(&m);
	check_eq(r, EOWNERDEAD, "a lock blocked while the owner dies gets EOWNERDEAD");
	pthread_mutex_consistent(&m);
	pthread_mutex_unlock(&m);
	pthread_join(t, NULL);

	/* process-shared robust mutex */
	{
		pthread_mutex_t *sm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
		pthread_mutex_init(sm, &a);
		pid_t pid = fork();
		if (pid == 0) {
			pthread_mutex_lock(sm);
			_exit(0);
		}
		int st;
		waitpid(pid, &st, 0);
		check_eq(st, 0, "a child locked a shared robust mutex and exited");
		check_eq(pthread_mutex_lock(sm), EOWNERDEAD, "the parent's lock returns EOWNERDEAD");
		check_eq(pthread_mutex_consistent(sm), 0, "and can make it consistent");
		pthread_mutex_unlock(sm);
	}
	return tap_done();
}
