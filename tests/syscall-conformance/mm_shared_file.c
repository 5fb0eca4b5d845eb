/*
 * mm_shared_file: MAP_SHARED mappings of a regular file are coherent with
 * read/write, with each other and across fork, and their writes reach the
 * file.
 *
 * On a three-page scratch file in /tmp (page k is all 'a'+k): a write
 * through the mapping is seen by pread at once; a pwrite is seen through the
 * mapping; two mappings of the file (one at an offset) see each other's
 * writes; a fork child's write through an inherited mapping is seen by the
 * parent's pread; after munmap and close, a fresh open reads what was
 * written; a file grown with ftruncate shows zeroes through a new mapping;
 * a read-only shared mapping sees later writes; MAP_SHARED of an O_RDONLY
 * fd with PROT_READ works.
 */
#include "mm.h"

#define NAME "mm_shared_file.tmp"

static char *map1;

static int child_writes(void *arg)
{
	(void)arg;
	memcpy(map1 + 2 * PG + 7, "from child", 10);
	return 0;
}

int main(void)
{
	char buf[32], *map2, *ro;
	int fd, fd2, rfd;

	tap_plan(14);
	fd = scratch_file(NAME, 3 * PG);
	check(fd >= 0, "a three-page scratch file");
	map1 = sys_mmap(NULL, 3 * PG, RW, MAP_SHARED, fd, 0);
	check(map1 != MAP_FAILED, "MAP_SHARED PROT_READ|PROT_WRITE of it");
	if (map1 == MAP_FAILED) {
		scratch_remove(NAME);
		return tap_done();
	}
	check(all_bytes(map1, PG, 'a') && all_bytes(map1 + 2 * PG, PG, 'c'), "the mapping shows the file");
	memcpy(map1 + 5, "mapped", 6);
	check(pread(fd, buf, 6, 5) == 6 && memcmp(buf, "mapped", 6) == 0, "pread sees a write through the mapping");
	pwrite(fd, "written", 7, PG + 3);
	check_mem(map1 + PG + 3, "written", 7, "the mapping sees a pwrite at once");

	map2 = sys_mmap(NULL, 2 * PG, RW, MAP_SHARED, fd, PG);
	check(map2 != MAP_FAILED && memcmp(map2 + 3, "written", 7) == 0, "a second mapping at offset one page");
	if (map2 != MAP_FAILED) {
		memcpy(map2 + PG, "second", 6);
		check_mem(map1 + 2 * PG, "second", 6, "the first mapping sees the second one's write");
	} else {
		check(0, "the first mapping sees the second one's write");
	}

	check_eq(in_child(child_writes, NULL), 0, "a fork child writes through the inherited mapping");
	check(pread(fd, buf, 10, 2 * PG + 7) == 10 && memcmp(buf, "from child", 10) == 0,
	      "the parent's pread sees the child's write");

	rfd = open("/tmp/" NAME, O_RDONLY);
	ro = sys_mmap(NULL, PG, PROT_READ, MAP_SHARED, rfd, 0);
	check(ro != MAP_FAILED, "MAP_SHARED PROT_READ of an O_RDONLY fd");
	pwrite(fd, "later", 5, 100);
	check(ro != MAP_FAILED && memcmp(ro + 100, "later", 5) == 0, "a read-only shared mapping sees later writes");

	sys_munmap(map1, 3 * PG);
	if (map2 != MAP_FAILED)
		sys_munmap(map2, 2 * PG);
	close(fd);
	fd2 = open("/tmp/" NAME, O_RDWR);
	check(pread(fd2, buf, 6, 5) == 6 && memcmp(buf, "mapped", 6) == 0,
	      "after munmap and close a fresh open reads what was written through the mapping");
	ftruncate(fd2, 4 * PG);
	map1 = sys_mmap(NULL, 4 * PG, RW, MAP_SHARED, fd2, 0);
	check(map1 != MAP_FAILED && all_bytes(map1 + 3 * PG, PG, 0), "a page added by ftruncate is zero through the mapping");
	check(map1 != MAP_FAILED && memcmp(map1 + 2 * PG, "second", 6) == 0, "and the old pages kept their data");
	close(fd2);
	close(rfd);
	scratch_remove(NAME);
	return tap_done();
}
