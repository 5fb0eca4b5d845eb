/*
 * mm_mincore: residency of mapped pages.
 *
 * A touched anonymous page, a MAP_POPULATE mapping and a file mapping whose
 * pages have been read are resident (bit 0 set); one vector byte per page,
 * only bit 0 meaningful; a length that is not a page multiple is rounded up.
 * Errno paths: EINVAL (unaligned address), ENOMEM (an unmapped range, a
 * range running past the mapping), EFAULT (a bad vector pointer).
 */
#include "mm.h"
#include "fixtures.h"

int main(void)
{
	unsigned char vec[8];
	char *p, *f, *hole;
	int fd, ones;

	tap_plan(10);
	p = sys_mmap(NULL, 4 * PG, RW, ANON_PRIV, -1, 0);
	check(p != MAP_FAILED, "a 4-page anonymous mapping");
	memset(p, 1, 4 * PG);
	memset(vec, 0xee, sizeof(vec));
	check_eq(sys_mincore(p, 4 * PG, vec), 0, "mincore on it");
	ones = 0;
	for (int i = 0; i < 4; i++)
		ones += (vec[i] & 1);
	check_eq(ones, 4, "every touched page is resident");
	check(vec[4] == 0xee, "exactly one vector byte per page is written");
	check_eq(sys_mincore(p, PG + 1, vec), 0, "a length of a page plus one byte is accepted (two pages)");

	p = sys_mmap(NULL, 2 * PG, RW, ANON_PRIV | MAP_POPULATE, -1, 0);
	check(sys_mincore(p, 2 * PG, vec) == 0 && (vec[0] & 1) && (vec[1] & 1), "MAP_POPULATE pages are resident");

	fd = open("/fixtures/file.txt", O_RDONLY);
	f = sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0);
	check(f != MAP_FAILED && f[0] == '0' && sys_mincore(f, PG, vec) == 0 && (vec[0] & 1),
	      "a file page that has been read is resident");
	close(fd);

	check_errno(sys_mincore(p + 1, PG, vec), EINVAL, "an unaligned address is EINVAL");
	hole = free_range(2);
	check_errno(sys_mincore(hole, PG, vec), ENOMEM, "an unmapped range is ENOMEM");
	check_errno(sys_mincore(p, PG, BAD_PTR), EFAULT, "a bad vector pointer is EFAULT");
	return tap_done();
}
