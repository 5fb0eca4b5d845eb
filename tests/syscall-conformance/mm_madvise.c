/*
 * mm_madvise: MADV_DONTNEED really zeroes private anonymous pages (only the
 * advised ones), drops a private file mapping's copies back to the file's
 * bytes, and leaves shared anonymous memory alone (in this process and a
 * fork child); the hints (NORMAL RANDOM SEQUENTIAL WILLNEED DONTFORK DOFORK)
 * succeed.  Errno paths: EINVAL (unaligned address, unknown advice),
 * ENOMEM (an unmapped range).
 */
#include "mm.h"
#include "fixtures.h"

static char *shared;

static int child_reads(void *arg)
{
	(void)arg;
	return shared[0] == 's' ? 0 : 1;
}

int main(void)
{
	char *p, *f, *hole;
	int fd;

	tap_plan(16);
	p = sys_mmap(NULL, 8 * PG, RW, ANON_PRIV, -1, 0);
	check(p != MAP_FAILED, "an 8-page private anonymous mapping");
	memset(p, 'x', 8 * PG);
	check_eq(sys_madvise(p + 2 * PG, 3 * PG, MADV_DONTNEED), 0, "MADV_DONTNEED pages 2-4");
	check(all_bytes(p + 2 * PG, 3 * PG, 0), "those pages read back as zero");
	check(all_bytes(p, 2 * PG, 'x') && all_bytes(p + 5 * PG, 3 * PG, 'x'), "the other pages keep their contents");
	p[3 * PG] = 'y';
	check(p[3 * PG] == 'y', "a zeroed page is writable again");
	check_eq(sys_madvise(p, 8 * PG, MADV_DONTNEED), 0, "MADV_DONTNEED the whole mapping");
	check(all_bytes(p, 8 * PG, 0), "all of it is zero");

	fd = open("/fixtures/file.txt", O_RDONLY);
	f = sys_mmap(NULL, PG, RW, MAP_PRIVATE, fd, 0);
	memcpy(f, "private copy", 12);
	check_eq(sys_madvise(f, PG, MADV_DONTNEED), 0, "MADV_DONTNEED a written private file page");
	check_mem(f, FILE_TXT, FILE_LEN, "it shows the file's bytes again");
	close(fd);

	shared = sys_mmap(NULL, PG, RW, ANON_SHARED, -1, 0);
	shared[0] = 's';
	check_eq(sys_madvise(shared, PG, MADV_DONTNEED), 0, "MADV_DONTNEED a shared anonymous page");
	check(shared[0] == 's' && in_child(child_reads, NULL) == 0, "the shared page keeps its data (here and in a child)");

	check(sys_madvise(p, PG, MADV_NORMAL) == 0 && sys_madvise(p, PG, MADV_RANDOM) == 0 &&
	      sys_madvise(p, PG, MADV_SEQUENTIAL) == 0 && sys_madvise(p, PG, MADV_WILLNEED) == 0,
	      "MADV_NORMAL RANDOM SEQUENTIAL WILLNEED succeed");
	check(sys_madvise(p, PG, MADV_DONTFORK) == 0 && sys_madvise(p, PG, MADV_DOFORK) == 0,
	      "MADV_DONTFORK and MADV_DOFORK succeed");
	check_errno(sys_madvise(p + 1, PG, MADV_DONTNEED), EINVAL, "an unaligned address is EINVAL");
	check_errno(sys_madvise(p, PG, 12345), EINVAL, "unknown advice is EINVAL");
	hole = free_range(2);
	check_errno(sys_madvise(hole, PG, MADV_DONTNEED), ENOMEM, "an unmapped range is ENOMEM");
	return tap_done();
}
