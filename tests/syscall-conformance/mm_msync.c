/*
 * mm_msync: msync argument checks, and MS_SYNC writing a shared file
 * mapping's pages to the file.
 *
 * Success: MS_SYNC, MS_ASYNC, MS_INVALIDATE on anonymous and file mappings,
 * a zero length, a sub-range.  Errno paths: EINVAL (unaligned address,
 * MS_SYNC|MS_ASYNC together, unknown flag bits), ENOMEM (an unmapped range,
 * a range running past the end of a mapping).
 */
#include "mm.h"

int main(void)
{
	char *p, *f, *hole, buf[8];
	int fd;

	tap_plan(14);
	/* 4 pages followed by 2 unmapped ones. */
	p = sys_mmap(NULL, 6 * PG, RW, ANON_PRIV, -1, 0);
	check(p != MAP_FAILED && sys_munmap(p + 4 * PG, 2 * PG) == 0, "a 4-page anonymous mapping with a hole after it");
	p[0] = 1;
	check_eq(sys_msync(p, 4 * PG, MS_SYNC), 0, "MS_SYNC on it");
	check_eq(sys_msync(p, 4 * PG, MS_ASYNC), 0, "MS_ASYNC on it");
	check_eq(sys_msync(p, PG, MS_INVALIDATE), 0, "MS_INVALIDATE on a page");
	check_eq(sys_msync(p + PG, 2 * PG, MS_SYNC | MS_INVALIDATE), 0, "MS_SYNC|MS_INVALIDATE on a sub-range");
	check_eq(sys_msync(p, 0, MS_SYNC), 0, "a zero length succeeds");
	check_eq(sys_msync(p, 100, MS_SYNC), 0, "a length that is not a page multiple is rounded up");

	check_errno(sys_msync(p + 1, PG, MS_SYNC), EINVAL, "an unaligned address is EINVAL");
	check_errno(sys_msync(p, PG, MS_SYNC | MS_ASYNC), EINVAL, "MS_SYNC|MS_ASYNC together is EINVAL");
	check_errno(sys_msync(p, PG, 0x100), EINVAL, "unknown flag bits are EINVAL");
	hole = free_range(2);
	check_errno(sys_msync(hole, PG, MS_SYNC), ENOMEM, "an unmapped range is ENOMEM");
	check_errno(sys_msync(p, 6 * PG, MS_SYNC), ENOMEM, "a range running past the mapping is ENOMEM");

	fd = scratch_file("mm_msync.tmp", PG);
	f = sys_mmap(NULL, PG, RW, MAP_SHARED, fd, 0);
	check(f != MAP_FAILED, "a shared mapping of a scratch file");
	if (f != MAP_FAILED) {
		memcpy(f, "synced", 6);
		sys_msync(f, PG, MS_SYNC);
	}
	check(pread(fd, buf, 6, 0) == 6 && memcmp(buf, "synced", 6) == 0,
	      "after MS_SYNC the file holds what was written through the mapping");
	close(fd);
	scratch_remove("mm_msync.tmp");
	return tap_done();
}
