/*
 * mem: brk, mmap, munmap, mprotect, madvise (raw syscalls; no access ever
 * faults, since signal delivery is not part of what this checks).
 *
 * Success paths: brk(0) reports the break, growing it gives zeroed writable
 * memory, shrinking and regrowing gives zeroes again, a failed brk returns
 * the old break; anonymous private and shared mappings are page aligned,
 * zero filled and keep what is written; MAP_FIXED places a mapping exactly,
 * replaces what was there and can refill a hole punched by munmap without
 * disturbing the neighbours; mprotect to PROT_READ and back keeps the data;
 * a PROT_NONE mapping made writable; MADV_DONTNEED zeroes private anonymous
 * memory; a 64 MiB mapping.  Unmapped ranges are detected without touching
 * them: mprotect and madvise on them fail with ENOMEM.
 * Errno paths: EINVAL (zero length, no MAP_PRIVATE/MAP_SHARED, unaligned
 * MAP_FIXED address, unaligned munmap/mprotect/madvise, bad prot bits, bad
 * advice), ENOMEM (impossible length, unmapped ranges), EBADF (file mapping
 * of a bad fd), EEXIST (MAP_FIXED_NOREPLACE over a mapping).
 */
#include "tap.h"
#include <sys/mman.h>

#define PG 4096L

static long sys_brk(unsigned long addr) { return syscall(SYS_brk, addr); }
static char *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, long off)
{
	return (char *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}
static long sys_munmap(void *addr, size_t len) { return syscall(SYS_munmap, addr, len); }
static long sys_mprotect(void *addr, size_t len, int prot) { return syscall(SYS_mprotect, addr, len, prot); }
static long sys_madvise(void *addr, size_t len, int advice) { return syscall(SYS_madvise, addr, len, advice); }

/* Is [p, p+len) all `byte`? */
static int all_bytes(const char *p, size_t len, int byte)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (char)byte)
			return 0;
	return 1;
}

/* Is the page at p mapped?  Asked without touching it. */
static int mapped(void *p) { return sys_madvise(p, PG, MADV_NORMAL) == 0; }

#define RW (PROT_READ | PROT_WRITE)
#define ANON_PRIV (MAP_ANONYMOUS | MAP_PRIVATE)

int main(void)
{
	long cur, grown;
	char *p, *q, *big;

	tap_plan(65);

	/* brk */
	cur = sys_brk(0);
	check(cur > 0, "brk(0) reports the current break");
	check_eq(sys_brk(0), cur, "brk(0) again reports the same break");
	grown = sys_brk(cur + 4 * PG);
	check_eq(grown, cur + 4 * PG, "brk grows by 4 pages");
	check(all_bytes((char *)cur, 4 * PG, 0), "the grown break is zero filled");
	memset((char *)cur, 0x5a, 4 * PG);
	check(all_bytes((char *)cur, 4 * PG, 0x5a), "the grown break is writable");
	check_eq(sys_brk(cur), cur, "brk shrinks back");
	check(!mapped((void *)((cur + PG - 1) & ~(PG - 1)) + PG), "shrinking the break unmaps its pages");
	check_eq(sys_brk(cur + 4 * PG), cur + 4 * PG, "brk grows again");
	check(all_bytes((char *)((cur + PG - 1) & ~(PG - 1)), 3 * PG, 0), "regrown pages are zero again");
	check_eq(sys_brk(PG), cur + 4 * PG, "brk below the data segment fails: returns the old break");
	check_eq(sys_brk(cur), cur, "brk back to the start");

	/* anonymous private mappings */
	p = sys_mmap(NULL, 3 * PG, RW, ANON_PRIV, -1, 0);
	check(p != MAP_FAILED, "mmap 3 anonymous private pages");
	check_eq((long)p % PG, 0, "the mapping is page aligned");
	check(all_bytes(p, 3 * PG, 0), "anonymous memory is zero filled");
	memset(p, 'a', 3 * PG);
	check(all_bytes(p, 3 * PG, 'a'), "anonymous memory keeps what is written");
	check_eq(sys_madvise(p + PG, PG, MADV_DONTNEED), 0, "madvise MADV_DONTNEED the middle page");
	check(all_bytes(p + PG, PG, 0) && all_bytes(p, PG, 'a') && all_bytes(p + 2 * PG, PG, 'a'),
	      "MADV_DONTNEED zeroes exactly that private page");

	/* munmap a hole, refill it with MAP_FIXED */
	memset(p, 'b', 3 * PG);
	check_eq(sys_munmap(p + PG, PG), 0, "munmap the middle page");
	check(!mapped(p + PG) && mapped(p) && mapped(p + 2 * PG), "only the middle page is unmapped");
	check_errno(sys_mprotect(p + PG, PG, PROT_READ), ENOMEM, "mprotect an unmapped page is ENOMEM");
	check_errno(sys_mprotect(p, 3 * PG, PROT_READ | PROT_WRITE), ENOMEM, "mprotect across a hole is ENOMEM");
	check_errno(sys_madvise(p + PG, PG, MADV_NORMAL), ENOMEM, "madvise an unmapped page is ENOMEM");
	check_eq(sys_munmap(p + PG, PG), 0, "munmap an already unmapped range succeeds");
	q = sys_mmap(p + PG, PG, RW, ANON_PRIV | MAP_FIXED, -1, 0);
	check(q == p + PG, "MAP_FIXED maps exactly at the hole");
	check(all_bytes(q, PG, 0), "the MAP_FIXED page is zero filled");
	check(all_bytes(p, PG, 'b') && all_bytes(p + 2 * PG, PG, 'b'), "the neighbours keep their data");
	memset(p, 'c', 3 * PG);
	q = sys_mmap(p, 2 * PG, RW, ANON_PRIV | MAP_FIXED, -1, 0);
	check(q == p, "MAP_FIXED over an existing mapping");
	check(all_bytes(p, 2 * PG, 0) && all_bytes(p + 2 * PG, PG, 'c'), "MAP_FIXED replaced exactly its range");
	check_errno(sys_mmap(p, PG, RW, ANON_PRIV | MAP_FIXED_NOREPLACE, -1, 0), EEXIST,
		    "MAP_FIXED_NOREPLACE over a mapping is EEXIST");
	check(all_bytes(p, 2 * PG, 0), "the failed MAP_FIXED_NOREPLACE left the mapping alone");

	/* mprotect */
	memset(p, 'd', 3 * PG);
	check_eq(sys_mprotect(p, 3 * PG, PROT_READ), 0, "mprotect PROT_READ");
	check(all_bytes(p, 3 * PG, 'd'), "a PROT_READ mapping is still readable");
	check_eq(sys_mprotect(p, 3 * PG, RW), 0, "mprotect back to read-write");
	memset(p, 'e', 3 * PG);
	check(all_bytes(p, 3 * PG, 'e'), "writable again after mprotect");
	check_eq(sys_mprotect(p, 0, PROT_READ), 0, "mprotect of length 0 succeeds");
	check_errno(sys_mprotect(p + 1, PG, PROT_READ), EINVAL, "mprotect an unaligned address is EINVAL");
	check_errno(sys_mprotect(p, PG, 0x100), EINVAL, "mprotect with unknown prot bits is EINVAL");
	check_eq(sys_munmap(p, 3 * PG), 0, "munmap the whole mapping");
	check(!mapped(p) && !mapped(p + PG) && !mapped(p + 2 * PG), "all three pages are gone");
	q = sys_mmap(p, 3 * PG, RW, ANON_PRIV, -1, 0);
	check(q == p, "a free hint address is used as is (without MAP_FIXED)");
	sys_munmap(q, 3 * PG);

	/* PROT_NONE */
	p = sys_mmap(NULL, 2 * PG, PROT_NONE, ANON_PRIV, -1, 0);
	check(p != MAP_FAILED, "mmap PROT_NONE");
	check(mapped(p), "a PROT_NONE mapping is mapped");
	check_eq(sys_mprotect(p, 2 * PG, RW), 0, "mprotect PROT_NONE to read-write");
	memset(p, 'f', 2 * PG);
	check(all_bytes(p, 2 * PG, 'f'), "the former PROT_NONE mapping is usable");
	sys_munmap(p, 2 * PG);

	/* shared anonymous mappings */
	p = sys_mmap(NULL, 2 * PG, RW, MAP_ANONYMOUS | MAP_SHARED, -1, 0);
	check(p != MAP_FAILED, "mmap 2 anonymous shared pages");
	check(all_bytes(p, 2 * PG, 0), "shared anonymous memory is zero filled");
	memset(p, 'g', 2 * PG);
	check(all_bytes(p, 2 * PG, 'g'), "shared anonymous memory keeps what is written");
	check_eq(sys_munmap(p, 2 * PG), 0, "munmap the shared mapping");

	/* a big mapping */
	big = sys_mmap(NULL, 64L << 20, RW, ANON_PRIV, -1, 0);
	check(big != MAP_FAILED, "mmap 64 MiB");
	big[0] = 1;
	big[(64L << 20) - 1] = 2;
	check(big[0] == 1 && big[(64L << 20) - 1] == 2 && big[32L << 20] == 0, "first, middle and last bytes of 64 MiB");
	check_eq(sys_munmap(big, 64L << 20), 0, "munmap 64 MiB");

	/* madvise */
	p = sys_mmap(NULL, 2 * PG, RW, ANON_PRIV, -1, 0);
	check_eq(sys_madvise(p, 2 * PG, MADV_NORMAL), 0, "madvise MADV_NORMAL");
	check_eq(sys_madvise(p, 2 * PG, MADV_WILLNEED), 0, "madvise MADV_WILLNEED");
	check_eq(sys_madvise(p, 2 * PG, MADV_SEQUENTIAL), 0, "madvise MADV_SEQUENTIAL");
	check_eq(sys_madvise(p, 0, MADV_NORMAL), 0, "madvise of length 0 succeeds");
	check_errno(sys_madvise(p + 1, PG, MADV_NORMAL), EINVAL, "madvise an unaligned address is EINVAL");
	check_errno(sys_madvise(p, PG, 12345), EINVAL, "madvise with an unknown advice is EINVAL");

	/* mmap and munmap errors */
	check_errno(sys_mmap(NULL, 0, RW, ANON_PRIV, -1, 0), EINVAL, "mmap of length 0 is EINVAL");
	check_errno(sys_mmap(NULL, PG, RW, MAP_ANONYMOUS, -1, 0), EINVAL, "mmap without MAP_PRIVATE or MAP_SHARED is EINVAL");
	check_errno(sys_mmap(p + 1, PG, RW, ANON_PRIV | MAP_FIXED, -1, 0), EINVAL, "MAP_FIXED at an unaligned address is EINVAL");
	check_errno(sys_mmap(NULL, -PG, RW, ANON_PRIV, -1, 0), ENOMEM, "mmap of an impossible length is ENOMEM");
	check_errno(sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, -1, 0), EBADF, "a file mapping of fd -1 is EBADF");
	check_errno(sys_munmap(p + 1, PG), EINVAL, "munmap an unaligned address is EINVAL");
	check_errno(sys_munmap(p, 0), EINVAL, "munmap of length 0 is EINVAL");
	check(mapped(p) && mapped(p + PG), "failed munmaps leave the mapping alone");
	sys_munmap(p, 2 * PG);

	return tap_done();
}
