/*
 * mm_mremap: mremap grows, shrinks, moves (MREMAP_MAYMOVE) and places
 * (MREMAP_FIXED) mappings, keeping their contents.
 *
 * Grow in place when the pages after are free; shrink unmaps the tail;
 * growing into an occupied range without MREMAP_MAYMOVE is ENOMEM, with it
 * the mapping moves (contents kept, old range unmapped, the neighbour
 * untouched); MREMAP_FIXED puts it exactly at new_address and replaces what
 * was there; a shared anonymous mapping stays shared with a fork child after
 * a move; a private file mapping moves with its bytes.
 * Errno paths: EINVAL (unaligned old address, new_size 0, MREMAP_FIXED
 * without MREMAP_MAYMOVE, unknown flags, overlapping MREMAP_FIXED ranges),
 * EFAULT (an unmapped old range).
 */
#include "mm.h"
#include "fixtures.h"

static char *shared_moved;

static int child_writes_moved(void *arg)
{
	(void)arg;
	memcpy(shared_moved, "moved+shared", 12);
	return 0;
}

int main(void)
{
	char *p, *q, *r, *blocker, *fixed, *s;
	int fd;

	tap_plan(30);

	/* Grow in place: reserve 4 pages, keep the first 2. */
	p = free_range(4);
	q = sys_mmap(p, 2 * PG, RW, ANON_PRIV | MAP_FIXED, -1, 0);
	check(q == p, "a 2-page mapping with 2 free pages after it");
	memset(p, 'g', 2 * PG);
	r = sys_mremap(p, 2 * PG, 4 * PG, 0, NULL);
	check(r == p, "mremap grows it in place to 4 pages");
	check(all_bytes(p, 2 * PG, 'g'), "the old pages keep their contents");
	check(all_bytes(p + 2 * PG, 2 * PG, 0), "the new pages are zero");
	p[4 * PG - 1] = 'e';
	check(p[4 * PG - 1] == 'e', "the new pages are writable");

	/* Shrink. */
	r = sys_mremap(p, 4 * PG, PG, 0, NULL);
	check(r == p, "mremap shrinks it to 1 page at the same address");
	check(all_bytes(p, PG, 'g'), "the first page keeps its contents");
	check(!mapped(p + PG) && !mapped(p + 3 * PG), "the tail pages are unmapped");

	/* Blocked growth. */
	blocker = sys_mmap(p + PG, PG, PROT_READ, ANON_PRIV | MAP_FIXED, -1, 0);
	check(blocker == p + PG, "a neighbour mapping right after it");
	check_errno(sys_mremap(p, PG, 3 * PG, 0, NULL), ENOMEM, "growing into the neighbour without MAYMOVE is ENOMEM");
	check(all_bytes(p, PG, 'g'), "the failed mremap left the mapping alone");
	r = sys_mremap(p, PG, 3 * PG, MREMAP_MAYMOVE, NULL);
	check(r != MAP_FAILED && r != p, "MREMAP_MAYMOVE moves it elsewhere");
	check(r != MAP_FAILED && all_bytes(r, PG, 'g') && all_bytes(r + PG, 2 * PG, 0),
	      "the moved mapping has the old contents and zeroed growth");
	check(!mapped(p), "the old address is unmapped");
	check(mapped(blocker), "the neighbour is untouched");

	/* MREMAP_FIXED. */
	fixed = sys_mmap(NULL, 2 * PG, RW, ANON_PRIV, -1, 0);
	memset(fixed, 'o', 2 * PG);
	q = sys_mremap(r, 3 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, fixed);
	check(q == fixed, "MREMAP_FIXED moves it exactly to new_address");
	check(all_bytes(q, PG, 'g') && all_bytes(q + PG, PG, 0), "replacing what was there, contents kept");
	check(!mapped(r), "the source range is unmapped");
	check_errno(sys_mremap(q, 2 * PG, 2 * PG, MREMAP_FIXED, free_range(2)), EINVAL,
		    "MREMAP_FIXED without MREMAP_MAYMOVE is EINVAL");
	check_errno(sys_mremap(q, 2 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, q + PG), EINVAL,
		    "MREMAP_FIXED onto an overlapping range is EINVAL");

	/* A shared anonymous mapping stays shared after a move. */
	s = sys_mmap(NULL, PG, RW, ANON_SHARED, -1, 0);
	shared_moved = sys_mremap(s, PG, 8 * PG, MREMAP_MAYMOVE, NULL);
	check(shared_moved != MAP_FAILED, "grow a shared anonymous mapping to 8 pages");
	check(shared_moved != MAP_FAILED && in_child(child_writes_moved, NULL) == 0 &&
	      memcmp(shared_moved, "moved+shared", 12) == 0, "it is still shared with a fork child");

	/* A private file mapping moves with its bytes. */
	fd = open("/fixtures/file.txt", O_RDONLY);
	p = sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0);
	r = sys_mremap(p, PG, PG, MREMAP_MAYMOVE | MREMAP_FIXED, free_range(1));
	check(r != MAP_FAILED && memcmp(r, FILE_TXT, FILE_LEN) == 0, "a private file mapping moves with the file's bytes");
	close(fd);

	/* Errno paths. */
	check_errno(sys_mremap(q + 1, PG, PG, 0, NULL), EINVAL, "an unaligned old address is EINVAL");
	check_errno(sys_mremap(q, PG, 0, 0, NULL), EINVAL, "new_size 0 is EINVAL");
	check_errno(sys_mremap(q, PG, PG, 0x80, NULL), EINVAL, "unknown flags are EINVAL");
	p = free_range(2);
	check_errno(sys_mremap(p, PG, 2 * PG, MREMAP_MAYMOVE, NULL), EFAULT, "an unmapped old range is EFAULT");
	check_eq(sys_mremap(q, 2 * PG, 2 * PG, 0, NULL), (long)q, "same size is a no-op returning the address");
	check_eq(sys_munmap(q, 2 * PG), 0, "munmap the result");
	check(!mapped(q), "it is gone");
	return tap_done();
}
