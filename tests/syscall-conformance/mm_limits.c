/*
 * mm_limits - the edges of the address space: requests too big, offsets too
 * far, and the top of user space.
 *
 * Linux is the reference, but a sandbox may hold less than Linux: a huge
 * MAP_NORESERVE mapping either works (natively) or is ENOMEM (the sandbox's
 * memory file holds 2^44 bytes), never a crash.  A sandbox may also keep the
 * top of the address space for itself (the ptrace stub lives there, above the
 * TASK_SIZE it reports), so MAP_FIXED, mremap and munmap near the top either
 * work or fail as Linux does above TASK_SIZE (ENOMEM, EINVAL) -- and the
 * process keeps running afterwards.  File offsets past the largest file
 * offset are EOVERFLOW; a private file mapping far past the end of the file
 * maps, and touching it is SIGBUS BUS_ADRERR; a fixed mapping that fails
 * leaves what was there.
 */
#include "mm.h"
#include <setjmp.h>
#include <signal.h>

static sigjmp_buf env;
static volatile int got_sig, got_code;

static void handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	got_sig = sig;
	got_code = si->si_code;
	siglongjmp(env, 1);
}

/* Touch *p: 0 if it worked, else the signal number. */
static int touch(volatile char *p, int write)
{
	got_sig = 0;
	if (!sigsetjmp(env, 1)) {
		if (write)
			*p = 1;
		else
			(void)*p;
		return 0;
	}
	return got_sig;
}

static int ok_or(long r, int err) { return r != -1 || errno == err; }

int main(void)
{
	struct sigaction sa = {0};
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	tap_plan(17);

	/* huge anonymous mappings */
	int sizes[] = {46, 45, 44};
	for (int i = 0; i < 3; i++) {
		size_t len = 1UL << sizes[i];
		errno = 0;
		char *p = sys_mmap(NULL, len, RW, ANON_PRIV | MAP_NORESERVE, -1, 0);
		int good = p != MAP_FAILED ? touch(p, 1) == 0 && touch(p + len - 1, 1) == 0 && sys_munmap(p, len) == 0
					   : errno == ENOMEM;
		check(good, "mmap 2^%d MAP_NORESERVE: usable, or ENOMEM (errno %d)", sizes[i], errno);
	}
	check_errno((long)sys_mmap(NULL, 1UL << 47, RW, ANON_PRIV | MAP_NORESERVE, -1, 0), ENOMEM,
		    "mmap 2^47: more than user space is ENOMEM");
	check_errno((long)sys_mmap(NULL, -4096UL, RW, ANON_PRIV, -1, 0), ENOMEM, "mmap of 2^64-4096 bytes is ENOMEM");

	/* file offsets */
	int fd = scratch_file("mm_limits", PG);
	check_errno((long)sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0x7ffffffffffff000L), EOVERFLOW,
		    "file mmap at offset 2^63-4096 is EOVERFLOW");
	check_errno((long)sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, (long)0xfffffffffffff000UL), EOVERFLOW,
		    "file mmap at offset 2^64-4096 is EOVERFLOW");
	check_errno((long)sys_mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd, (long)0xffffffffffffe000UL), EOVERFLOW,
		    "shared file mmap ending at 2^64 is EOVERFLOW");
	char *far = sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 1L << 40);
	check(far != MAP_FAILED, "private file mmap at offset 2^40 (past EOF) maps");
	int s = far != MAP_FAILED ? touch(far, 0) : -1;
	check(s == SIGBUS && got_code == BUS_ADRERR, "touching it is SIGBUS BUS_ADRERR (got %d, code %d)", s, got_code);
	char *three = sys_mmap(NULL, 3 * PG, PROT_READ, MAP_PRIVATE, fd, 0);
	s = three != MAP_FAILED ? touch(three + 2 * PG + 5, 0) : -1;
	check(three != MAP_FAILED && three[0] == 'a' && three[PG - 1] == 'a' && s == SIGBUS,
	      "3 pages over a 1-page file: page 0 has the file, page 2 is SIGBUS");

	/* the top of the address space: whatever is there is not the application's to replace */
	char *keep = sys_mmap(NULL, PG, RW, ANON_PRIV, -1, 0);
	keep[0] = 'k';
	unsigned long tops[] = {0x7f8000000000UL, 0x7ffffffff000UL, 0x7fffffffe000UL};
	int all = 1;
	for (int i = 0; i < 3; i++) {
		char *p = sys_mmap((void *)tops[i], PG, RW, ANON_PRIV | MAP_FIXED_NOREPLACE, -1, 0);
		if (p == MAP_FAILED) {
			all &= errno == ENOMEM || errno == EEXIST;
			continue;
		}
		all &= touch(p, 1) == 0 && sys_munmap(p, PG) == 0;
	}
	check(all, "MAP_FIXED_NOREPLACE near the top: maps, or ENOMEM/EEXIST");
	check(ok_or(sys_munmap((void *)0x7f8000000000UL, PG), EINVAL), "munmap at 0x7f8000000000: 0 or EINVAL");
	long r = (long)sys_mremap(keep, PG, PG, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)0x7f8000000000UL);
	if (r != -1) {
		keep = (char *)r;
		check(keep[0] == 'k', "mremap to the top: moved with its bytes");
	} else {
		check(errno == EINVAL || errno == ENOMEM, "mremap to the top: or EINVAL (%d)", errno);
	}
	long brk0 = syscall(SYS_brk, 0);
	long b = syscall(SYS_brk, 0x7f8000001000UL);
	check(b == brk0 || b == 0x7f8000001000L, "brk into the top: refused (old break) or granted");
	if (b != brk0)
		syscall(SYS_brk, brk0);
	check(keep[0] == 'k' && syscall(SYS_getpid) > 0 && write(1, "", 0) == 0,
	      "the process and its memory are intact afterwards");

	/* a MAP_FIXED that fails leaves the old mapping */
	char *a = sys_mmap(NULL, 2 * PG, RW, ANON_PRIV, -1, 0);
	a[0] = 'x';
	errno = 0;
	char *b2 = sys_mmap(a, 1UL << 47, RW, ANON_PRIV | MAP_FIXED | MAP_NORESERVE, -1, 0);
	check(b2 == MAP_FAILED && errno == ENOMEM && a[0] == 'x', "a failed MAP_FIXED leaves what was there");
	close(fd);
	scratch_remove("mm_limits");
	return tap_done();
}
