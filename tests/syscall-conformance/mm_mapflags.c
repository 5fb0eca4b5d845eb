/*
 * mm_mapflags: MAP_FIXED_NOREPLACE, MAP_NORESERVE and MAP_POPULATE.
 *
 * MAP_FIXED_NOREPLACE at a free address maps exactly there; over an existing
 * mapping (whole or partial overlap) it is EEXIST and leaves it alone.
 * MAP_NORESERVE gives a 1 GiB mapping whose scattered pages can be written.
 * MAP_POPULATE gives zeroed anonymous memory and, for a file, the file's
 * bytes; it is accepted on a shared anonymous mapping too.
 */
#include "mm.h"
#include "fixtures.h"

int main(void)
{
	char *p, *q, *big, *f;
	long gib = 1L << 30;
	int fd, ok;

	tap_plan(12);
	p = free_range(4);
	q = sys_mmap(p + PG, 2 * PG, RW, ANON_PRIV | MAP_FIXED_NOREPLACE, -1, 0);
	check(q == p + PG, "MAP_FIXED_NOREPLACE at a free address maps exactly there");
	memset(q, 'n', 2 * PG);
	check_errno(sys_mmap(p + PG, 2 * PG, RW, ANON_PRIV | MAP_FIXED_NOREPLACE, -1, 0), EEXIST,
		    "MAP_FIXED_NOREPLACE over the same range is EEXIST");
	check_errno(sys_mmap(p, 2 * PG, RW, ANON_PRIV | MAP_FIXED_NOREPLACE, -1, 0), EEXIST,
		    "MAP_FIXED_NOREPLACE overlapping its start is EEXIST");
	check_errno(sys_mmap(p + 2 * PG, 2 * PG, RW, ANON_PRIV | MAP_FIXED_NOREPLACE, -1, 0), EEXIST,
		    "MAP_FIXED_NOREPLACE overlapping its end is EEXIST");
	check(all_bytes(q, 2 * PG, 'n') && !mapped(p) && !mapped(p + 3 * PG),
	      "the failed attempts left everything alone");

	big = sys_mmap(NULL, gib, RW, ANON_PRIV | MAP_NORESERVE, -1, 0);
	check(big != MAP_FAILED, "a 1 GiB MAP_NORESERVE mapping");
	ok = big != MAP_FAILED;
	for (long off = 0; ok && off < gib; off += gib / 8) {
		big[off] = (char)(off >> 27);
		ok = big[off] == (char)(off >> 27) && big[off + 1] == 0;
	}
	check(ok, "eight scattered pages of it can be written and read");
	check(big != MAP_FAILED && sys_munmap(big, gib) == 0, "munmap it");

	p = sys_mmap(NULL, 16 * PG, RW, ANON_PRIV | MAP_POPULATE, -1, 0);
	check(p != MAP_FAILED && all_bytes(p, 16 * PG, 0), "MAP_POPULATE anonymous memory is zeroed");
	memset(p, 'p', 16 * PG);
	check(all_bytes(p, 16 * PG, 'p'), "and writable");
	q = sys_mmap(NULL, 2 * PG, RW, ANON_SHARED | MAP_POPULATE, -1, 0);
	check(q != MAP_FAILED && all_bytes(q, 2 * PG, 0), "MAP_SHARED|MAP_ANONYMOUS|MAP_POPULATE");

	fd = open("/fixtures/file.txt", O_RDONLY);
	f = sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	check(f != MAP_FAILED && memcmp(f, FILE_TXT, FILE_LEN) == 0, "MAP_POPULATE of a file shows its bytes");
	close(fd);
	return tap_done();
}
