/*
 * wait_edges: blocking calls that must wake (or fail) where Linux does
 * instead of waiting forever.
 *
 * waitid(P_ALL, WSTOPPED) without WEXITED: reports a child's stop; a child
 * that exits instead does not count (Linux's wait_task_zombie), so with only
 * exited children left the wait ends with ECHILD.  futex: FUTEX_WAKE with a
 * count of 0 still wakes one waiter (futex_wake's `++ret >= nr_wake`), a
 * wake with no waiter returns 0 and a later timed wait times out.
 * Edge-triggered epoll on a pipe: every write is a new edge even while
 * unread data remains, a wait blocked on the edge wakes, and the event
 * carries the full ready mask (EPOLLIN|EPOLLOUT on a socket), not just the
 * bit that changed.
 */
#include "tap.h"
#include <linux/futex.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

static void nap_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static long futex(uint32_t *w, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, w, op, val, ts, NULL, 0);
}

int main(void)
{
	siginfo_t si;
	pid_t pid, pid2;
	int st, p[2], ep, sv[2];
	struct epoll_event ev, out[4];

	tap_plan(21);

	/* --- waitid(P_ALL, WSTOPPED) without WEXITED --- */
	pid = fork();
	if (pid == 0) {
		raise(SIGSTOP);
		_exit(3);
	}
	memset(&si, 0, sizeof(si));
	check_ok(waitid(P_ALL, 0, &si, WSTOPPED), "waitid(P_ALL, WSTOPPED) returns for a stopping child");
	check(si.si_pid == pid && si.si_code == CLD_STOPPED && si.si_status == SIGSTOP,
	      "it reports CLD_STOPPED with SIGSTOP");
	kill(pid, SIGCONT);
	check_eq(waitpid(pid, &st, 0), pid, "the child, continued, is reaped");
	check(WIFEXITED(st) && WEXITSTATUS(st) == 3, "with its exit status");

	pid = fork();
	if (pid == 0) {
		nap_ms(100);
		_exit(4);
	}
	check_errno(waitid(P_ALL, 0, &si, WSTOPPED), ECHILD,
		    "waitid(P_ALL, WSTOPPED): a child that exits instead ends the wait with ECHILD");
	check_eq(waitpid(pid, &st, 0), pid, "and is still there for a WEXITED wait");

	pid = fork();
	if (pid == 0)
		_exit(5);
	nap_ms(50);
	memset(&si, 0, sizeof(si));
	check_errno(waitid(P_ALL, 0, &si, WSTOPPED | WNOHANG), ECHILD,
		    "waitid(WSTOPPED|WNOHANG) with only a zombie child is ECHILD");
	waitpid(pid, &st, 0);

	/* --- futex: wake 0, wake with no waiter --- */
	{
		uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		struct timespec ts = {0, 50 * 1000000L};
		long woke = 0;
		*w = 0;
		check_eq(futex(w, FUTEX_WAKE, 1, NULL), 0, "FUTEX_WAKE with no waiter returns 0");
		check_errno(futex(w, FUTEX_WAIT, 0, &ts), ETIMEDOUT, "and a timed FUTEX_WAIT after it times out");
		pid = fork();
		if (pid == 0) {
			struct timespec limit = {5, 0};
			_exit(futex(w, FUTEX_WAIT, 0, &limit) == 0 ? 0 : 1);
		}
		for (int i = 0; i < 100 && woke == 0; i++) {
			nap_ms(20);
			woke = futex(w, FUTEX_WAKE, 0, NULL);
		}
		check_eq(woke, 1, "FUTEX_WAKE with a count of 0 wakes one waiter");
		waitpid(pid, &st, 0);
		check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the waiter's FUTEX_WAIT returned 0");
		munmap(w, 4096);
	}

	/* --- edge-triggered epoll on a pipe --- */
	pipe(p);
	ep = epoll_create1(0);
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = 7;
	check_ok(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev), "EPOLLET on a pipe's read end");
	check_eq(epoll_wait(ep, out, 4, 0), 0, "an empty pipe: no event");
	write(p[1], "a", 1);
	check_eq(epoll_wait(ep, out, 4, 0), 1, "a write: one event");
	check_eq(epoll_wait(ep, out, 4, 0), 0, "the edge was taken: none again while nothing new");
	write(p[1], "b", 1);
	check(epoll_wait(ep, out, 4, 0) == 1 && out[0].data.u64 == 7 && out[0].events == EPOLLIN,
	      "a second write, the first byte still unread: a new edge");
	pid = fork();
	if (pid == 0) {
		nap_ms(100);
		_exit(write(p[1], "c", 1) == 1 ? 0 : 1);
	}
	check_eq(epoll_wait(ep, out, 4, 5000), 1, "a wait blocked on the edge wakes on the next write");
	waitpid(pid, &st, 0);
	close(p[0]);
	close(p[1]);
	close(ep);

	/* --- edge-triggered: the full ready mask --- */
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	ep = epoll_create1(0);
	ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
	ev.data.u64 = 9;
	epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev);
	check(epoll_wait(ep, out, 4, 0) == 1 && out[0].events == EPOLLOUT, "EPOLLET on a socket: writable at first");
	check_eq(epoll_wait(ep, out, 4, 0), 0, "then nothing new");
	write(sv[1], "x", 1);
	check_eq(epoll_wait(ep, out, 4, 0), 1, "the peer writes: an event");
	check_eq(out[0].events, EPOLLIN | EPOLLOUT, "with the full mask, EPOLLIN|EPOLLOUT");
	close(ep);
	close(sv[0]);
	close(sv[1]);
	(void)pid2;
	return tap_done();
}
