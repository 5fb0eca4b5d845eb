/*
 * mm_private_file: file-backed MAP_PRIVATE mappings (copy-on-write).
 *
 * A private mapping of /fixtures/file.txt shows the file's bytes and zeroes
 * after EOF up to the page end; it may be written (even from an O_RDONLY fd)
 * and the writes are never visible in the file, nor to a second mapping, nor
 * to the parent after a fork; a mapping at a page offset shows that page;
 * mprotect to writable works; a fork child's writes stay in the child.
 * Errno paths: EACCES (MAP_SHARED+PROT_WRITE on an O_RDONLY fd, any mapping
 * of an O_WRONLY fd), EINVAL (unaligned offset), ENODEV (a directory), EBADF.
 */
#include "mm.h"
#include "fixtures.h"

static char *child_map;

static int child_writes(void *arg)
{
	(void)arg;
	memcpy(child_map, "CHILD", 5);
	return memcmp(child_map, "CHILD", 5) == 0 ? 0 : 1;
}

int main(void)
{
	char buf[64], *p, *q, zero[PG - FILE_LEN];
	int fd, wfd, dfd, sfd;

	tap_plan(23);
	memset(zero, 0, sizeof(zero));

	fd = check_ok(open("/fixtures/file.txt", O_RDONLY), "open file.txt read-only");
	p = sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0);
	check(p != MAP_FAILED, "MAP_PRIVATE PROT_READ of file.txt");
	check_mem(p, FILE_TXT, FILE_LEN, "the mapping shows the file's bytes");
	check_mem(p + FILE_LEN, zero, sizeof(zero), "bytes after EOF up to the page end are zero");
	check_eq(sys_munmap(p, PG), 0, "munmap it");

	p = sys_mmap(NULL, PG, RW, MAP_PRIVATE, fd, 0);
	check(p != MAP_FAILED, "MAP_PRIVATE PROT_READ|PROT_WRITE of an O_RDONLY fd is allowed");
	memcpy(p, "XYZ", 3);
	p[FILE_LEN + 10] = 'Q';
	check_mem(p, "XYZ3456789", 10, "the private copy keeps what is written");
	check_eq(pread(fd, buf, FILE_LEN, 0), FILE_LEN, "pread the file");
	check_mem(buf, FILE_TXT, FILE_LEN, "the write is not visible in the file");
	q = sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0);
	check(q != MAP_FAILED && memcmp(q, FILE_TXT, FILE_LEN) == 0,
	      "a second private mapping shows the file, not the first mapping's writes");
	sys_munmap(q, PG);

	child_map = p;
	check_eq(in_child(child_writes, NULL), 0, "a fork child writes to the private mapping");
	check_mem(p, "XYZ3456789", 10, "the child's write is not visible to the parent");
	sys_munmap(p, PG);

	p = sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0);
	check_eq(sys_mprotect(p, PG, RW), 0, "mprotect a read-only private file mapping to writable");
	p[0] = '!';
	check(p[0] == '!' && pread(fd, buf, 1, 0) == 1 && buf[0] == '0', "writable after mprotect; file unchanged");
	sys_munmap(p, PG);

	/* A three-page scratch file: page k is all 'a'+k. */
	sfd = scratch_file("mm_private_file.tmp", 3 * PG);
	check(sfd >= 0, "a three-page scratch file in /tmp");
	p = sys_mmap(NULL, 2 * PG, RW, MAP_PRIVATE, sfd, PG);
	check(p != MAP_FAILED && all_bytes(p, PG, 'b') && all_bytes(p + PG, PG, 'c'),
	      "a mapping at offset one page shows pages 1 and 2");
	if (p != MAP_FAILED) {
		memset(p, 'z', 2 * PG);
		check(pread(sfd, buf, 1, PG) == 1 && buf[0] == 'b' && pread(sfd, buf, 1, 2 * PG) == 1 && buf[0] == 'c',
		      "writing the whole private mapping leaves the file alone");
		sys_munmap(p, 2 * PG);
	} else {
		check(0, "writing the whole private mapping leaves the file alone");
	}
	close(sfd);
	wfd = open("/tmp/mm_private_file.tmp", O_WRONLY);
	check_errno(sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, wfd, 0), EACCES,
		    "mapping an O_WRONLY fd of a regular file is EACCES");
	close(wfd);
	scratch_remove("mm_private_file.tmp");

	/* Errno paths. */
	check_errno(sys_mmap(NULL, PG, RW, MAP_SHARED, fd, 0), EACCES,
		    "MAP_SHARED PROT_WRITE of an O_RDONLY fd is EACCES");
	check_errno(sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 100), EINVAL,
		    "an unaligned file offset is EINVAL");
	dfd = open("/fixtures/dir", O_RDONLY | O_DIRECTORY);
	check_errno(sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, dfd, 0), ENODEV,
		    "mapping a directory is ENODEV");
	close(dfd);
	check_errno(sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, 999, 0), EBADF, "mapping a closed fd is EBADF");
	check_eq(close(fd), 0, "close file.txt");
	return tap_done();
}
