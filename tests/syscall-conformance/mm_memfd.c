/*
 * mm_memfd: memfd_create, file seals, and shared mappings of a memfd.
 *
 * A memfd is an empty regular file named "memfd:NAME" (/proc/self/fd shows
 * "/memfd:NAME (deleted)"), readable and writable, growable with ftruncate;
 * MFD_CLOEXEC sets FD_CLOEXEC; a MAP_SHARED mapping is coherent with
 * write/pread both ways and with a fork child.  Seals: without
 * MFD_ALLOW_SEALING F_GET_SEALS is F_SEAL_SEAL and F_ADD_SEALS is EPERM;
 * with it the seals start empty; F_SEAL_WRITE is EBUSY while a writable
 * shared mapping exists, then makes write and writable shared mmap EPERM;
 * F_SEAL_SHRINK / F_SEAL_GROW make shrinking / growing ftruncate and
 * writes past the end EPERM; F_SEAL_SEAL forbids further seals.
 * Errno paths: EINVAL (unknown flags, a name longer than 249 bytes),
 * EFAULT (a bad name pointer), EINVAL for F_ADD_SEALS on a non-memfd.
 */
#include "mm.h"
#include <linux/memfd.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

static long sys_memfd_create(const char *name, unsigned int flags) { return syscall(SYS_memfd_create, name, flags); }

static char *shared;

static int child_writes(void *arg)
{
	(void)arg;
	memcpy(shared + 10, "child", 5);
	return 0;
}

int main(void)
{
	char buf[300], link[128], path[64];
	struct stat st;
	int fd, sfd, tfd;
	char *m;
	long n;

	tap_plan(34);
	fd = check_ok(sys_memfd_create("conformance", 0), "memfd_create");
	check(fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0, "it is an empty regular file");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	check_str(link, "/memfd:conformance (deleted)", "/proc/self/fd shows /memfd:NAME (deleted)");
	check_eq(fcntl(fd, F_GETFD), 0, "no FD_CLOEXEC without MFD_CLOEXEC");
	check_eq(write(fd, "hello memfd", 11), 11, "write to it");
	check(pread(fd, buf, 11, 0) == 11 && memcmp(buf, "hello memfd", 11) == 0, "pread it back");
	check_eq(ftruncate(fd, 3 * PG), 0, "ftruncate it to 3 pages");
	check(fstat(fd, &st) == 0 && st.st_size == 3 * PG, "fstat shows the new size");

	shared = sys_mmap(NULL, 3 * PG, RW, MAP_SHARED, fd, 0);
	check(shared != MAP_FAILED, "MAP_SHARED mapping of the memfd");
	if (shared == MAP_FAILED)
		shared = malloc(3 * PG);
	check_mem(shared, "hello memfd", 11, "the mapping shows what was written");
	memcpy(shared + PG, "via map", 7);
	check(pread(fd, buf, 7, PG) == 7 && memcmp(buf, "via map", 7) == 0, "pread sees a write through the mapping");
	pwrite(fd, "via write", 9, 2 * PG);
	check_mem(shared + 2 * PG, "via write", 9, "the mapping sees a pwrite");
	check_eq(in_child(child_writes, NULL), 0, "a fork child writes through the mapping");
	check(pread(fd, buf, 5, 10) == 5 && memcmp(buf, "child", 5) == 0, "the parent reads the child's write with pread");

	/* Seals. */
	check_eq(fcntl(fd, F_GET_SEALS), F_SEAL_SEAL, "without MFD_ALLOW_SEALING the seals are F_SEAL_SEAL");
	check_errno(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), EPERM, "and F_ADD_SEALS is EPERM");
	close(fd);

	sfd = check_ok(sys_memfd_create("sealed", MFD_ALLOW_SEALING | MFD_CLOEXEC), "memfd_create MFD_ALLOW_SEALING|MFD_CLOEXEC");
	check_eq(fcntl(sfd, F_GETFD), FD_CLOEXEC, "MFD_CLOEXEC sets FD_CLOEXEC");
	check_eq(fcntl(sfd, F_GET_SEALS), 0, "the seals start empty");
	ftruncate(sfd, 2 * PG);
	m = sys_mmap(NULL, PG, RW, MAP_SHARED, sfd, 0);
	check_errno(fcntl(sfd, F_ADD_SEALS, F_SEAL_WRITE), EBUSY, "F_SEAL_WRITE with a writable shared mapping is EBUSY");
	sys_munmap(m, PG);
	check_eq(fcntl(sfd, F_ADD_SEALS, F_SEAL_WRITE), 0, "F_SEAL_WRITE after munmap");
	check_errno(write(sfd, "x", 1), EPERM, "write to a write-sealed memfd is EPERM");
	check_errno(sys_mmap(NULL, PG, RW, MAP_SHARED, sfd, 0), EPERM, "a writable shared mapping of it is EPERM");
	m = sys_mmap(NULL, PG, PROT_READ, MAP_SHARED, sfd, 0);
	check(m != MAP_FAILED, "a read-only shared mapping is allowed");
	check_eq(fcntl(sfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0, "add F_SEAL_SHRINK|F_SEAL_GROW");
	check_eq(fcntl(sfd, F_GET_SEALS), F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW, "F_GET_SEALS lists all three");
	check_errno(ftruncate(sfd, PG), EPERM, "shrinking is EPERM");
	check_errno(ftruncate(sfd, 4 * PG), EPERM, "growing is EPERM");
	check_eq(fcntl(sfd, F_ADD_SEALS, F_SEAL_SEAL), 0, "add F_SEAL_SEAL");
	check_errno(fcntl(sfd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), EPERM, "no seal can be added after F_SEAL_SEAL");
	close(sfd);

	check_errno(sys_memfd_create("x", 0x1000), EINVAL, "unknown flags are EINVAL");
	memset(buf, 'n', sizeof(buf));
	buf[250] = 0;  /* 250 bytes: one more than the limit */
	check_errno(sys_memfd_create(buf, 0), EINVAL, "a 250-byte name is EINVAL");
	check_errno(sys_memfd_create(BAD_PTR, 0), EFAULT, "a bad name pointer is EFAULT");
	tfd = open("/dev/null", O_RDWR);
	check_errno(fcntl(tfd, F_ADD_SEALS, F_SEAL_WRITE), EINVAL, "F_ADD_SEALS on a non-memfd is EINVAL");
	close(tfd);
	return tap_done();
}
