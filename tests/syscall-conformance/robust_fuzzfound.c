/*
 * robust_fuzzfound: what tests/syscall-fuzz found in the Sentry, kept as Linux-behaviour checks.
 *
 * 1. munmap of the first page of the brk heap, then exit: the Sentry freed that page twice (at
 *    the munmap, and with the whole heap reserve at exit), corrupting its MemoryFile free list so
 *    that later mmaps and forks of any process failed (SIGSYS).  Checked: twenty exec'd children
 *    do it, then the parent still maps memory and forks.
 * 3. clone with CLONE_SETTLS and a TLS base outside the user address space: Linux refuses it
 *    (EPERM); the Sentry set it, and the host refused the child's registers at its first run.
 * 4. Two threads opening one FIFO for writing with no reader: each wait woke the other waiters,
 *    which woke it again -- the Sentry spun forever (the fuzzer's "hang", seed 1).  Checked: both
 *    opens complete once a reader comes.
 * 2. fstatfs and fchown of a memfd (a file on no mount the application can see) were Python
 *    AttributeErrors in the Sentry.
 */
#include "tap.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

/* In a freshly exec'd process: unmap the first page of the [heap] mapping, then exit. */
static int heap_child(void)
{
	char line[256];
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long lo = 0, hi = 0;

	if (sbrk(1 << 20) == (void *)-1)
		return 2;
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "[heap]") && sscanf(line, "%lx-%lx", &lo, &hi) == 2)
			break;
	if (!lo)
		return 3;
	/* The first heap page holds glibc's thread control block: after the munmap only raw
	 * syscalls, no TLS (errno) and no return through libc. */
	__asm__ volatile("syscall" : : "a"(SYS_munmap), "D"(lo), "S"(4096UL) : "rcx", "r11", "memory");
	__asm__ volatile("syscall" : : "a"(SYS_exit_group), "D"(0) : "rcx", "r11", "memory");
	return 6;
}

static void *fifo_writer(void *arg)
{
	(void)arg;
	return (void *)(long)open("/tmp/robust_fuzzfound.fifo", O_WRONLY);
}

int main(int argc, char **argv)
{
	int bad = 0, st;

	if (argc > 1 && strcmp(argv[1], "heapchild") == 0)
		return heap_child();
	tap_plan(7);
	for (int i = 0; i < 20; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			char *av[] = {argv[0], "heapchild", NULL};

			execv("/proc/self/exe", av);
			_exit(5);
		}
		waitpid(pid, &st, 0);
		bad += st != 0;
		{
			void *m = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			if (m != MAP_FAILED)
				munmap(m, 1 << 16);
		}
	}
	check_eq(bad, 0, "20 exec'd children unmap the first page of their heap and exit");
	{
		char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		check(p != MAP_FAILED && (p[0] = 1), "the parent still maps memory");
	}
	{
		pid_t pid = fork();

		if (pid == 0)
			_exit(7);
		waitpid(pid, &st, 0);
		check_eq(st, 7 << 8, "and forks");
	}
	{
		struct statfs sf;
		int fd = memfd_create("robust", 0);

		check_ok(fstatfs(fd, &sf), "fstatfs of a memfd");
		check_ok(fchown(fd, getuid(), getgid()), "fchown of a memfd");
		close(fd);
	}
	{
		/* The child (rax 0) exits at once with a raw exit: it has no usable TLS. */
		long r;
		register long r10 __asm__("r10") = 0;
		register long r8 __asm__("r8") = 0x800000000000L;

		__asm__ volatile("syscall\n\ttest %%rax, %%rax\n\tjnz 1f\n\tmov $60, %%eax\n\txor %%edi, %%edi\n\tsyscall\n1:"
				 : "=a"(r) : "a"(SYS_clone), "D"(CLONE_SETTLS | SIGCHLD), "S"(0), "d"(0), "r"(r10), "r"(r8)
				 : "rcx", "r11", "memory");
		if (r > 0)
			waitpid(r, NULL, 0);
		check_eq(r, -EPERM, "clone with CLONE_SETTLS at a non-canonical address: EPERM");
	}
	{
		pthread_t a, b;
		void *fa, *fb;
		struct timespec ts = {0, 100000000};
		int r;

		struct stat tmp_st;
		struct timespec keep[2];

		stat("/tmp", &tmp_st);
		unlink("/tmp/robust_fuzzfound.fifo");
		mkfifo("/tmp/robust_fuzzfound.fifo", 0600);
		pthread_create(&a, NULL, fifo_writer, NULL);
		pthread_create(&b, NULL, fifo_writer, NULL);
		nanosleep(&ts, NULL);
		r = open("/tmp/robust_fuzzfound.fifo", O_RDONLY);
		pthread_join(a, &fa);
		pthread_join(b, &fb);
		check(r >= 0 && (long)fa >= 0 && (long)fb >= 0, "two threads waiting to write a FIFO both open once a reader comes");
		unlink("/tmp/robust_fuzzfound.fifo");
		keep[0] = tmp_st.st_atim;          /* the rootfs is left as it was */
		keep[1] = tmp_st.st_mtim;
		utimensat(AT_FDCWD, "/tmp", keep, 0);
	}
	return tap_done();
}
