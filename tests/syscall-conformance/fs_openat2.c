/*
 * fs_openat2: openat2(2)'s open_how checks and RESOLVE_* path restrictions,
 * on the read-only /fixtures tree (raw syscall; glibc may not wrap it).
 *
 * RESOLVE_BENEATH: names under the dirfd open, anything reaching outside it
 * (.., absolute paths, absolute or climbing symlinks) is EXDEV.
 * RESOLVE_IN_ROOT: the dirfd is "/" for the walk (.. stops there, absolute
 * paths and symlinks start there).  RESOLVE_NO_SYMLINKS: any symlink on the
 * way is ELOOP, a trailing one is returned with O_PATH|O_NOFOLLOW.
 * RESOLVE_NO_XDEV on a path without mount crossings.
 * Errno paths: EINVAL (small size, unknown flags or resolve bits,
 * BENEATH|IN_ROOT, a mode without O_CREAT, O_PATH with other flags),
 * E2BIG (non-zero bytes past the struct, size past a page).
 */
#include "tap.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>

struct how {
	uint64_t flags, mode, resolve;
	uint64_t extra[2];
};

#define R_NO_XDEV 0x01
#define R_NO_SYMLINKS 0x04
#define R_BENEATH 0x08
#define R_IN_ROOT 0x10

static long o2(int dfd, const char *p, uint64_t flags, uint64_t resolve)
{
	struct how h = {.flags = flags, .resolve = resolve};
	long fd = syscall(SYS_openat2, dfd, p, &h, 24);
	if (fd >= 0)
		close((int)fd);
	return fd >= 0 ? 0 : -1;
}

static long o2raw(int dfd, const char *p, struct how *h, size_t size)
{
	long fd = syscall(SYS_openat2, dfd, p, h, size);
	if (fd >= 0)
		close((int)fd);
	return fd >= 0 ? 0 : -1;
}

int main(void)
{
	struct how h;
	int d = open("/fixtures", O_RDONLY | O_DIRECTORY);

	tap_plan(27);
	check_ok(d, "open /fixtures");
	check_ok(o2(d, "file.txt", O_RDONLY, 0), "no restrictions");
	check_ok(o2(d, "file.txt", O_RDONLY, R_BENEATH), "BENEATH: a name under the dirfd");
	check_ok(o2(d, "dir/../file.txt", O_RDONLY, R_BENEATH), "BENEATH: .. that stays inside");
	check_ok(o2(d, "link-rel", O_RDONLY, R_BENEATH), "BENEATH: a relative symlink inside");
	check_errno(o2(d, "../fixtures/file.txt", O_RDONLY, R_BENEATH), EXDEV, "BENEATH: .. out of the dirfd: EXDEV");
	check_errno(o2(d, "/fixtures/file.txt", O_RDONLY, R_BENEATH), EXDEV, "BENEATH: an absolute path: EXDEV");
	check_errno(o2(d, "link-abs", O_RDONLY, R_BENEATH), EXDEV, "BENEATH: an absolute symlink: EXDEV");
	check_errno(o2(d, "link-up", O_RDONLY, R_BENEATH), EXDEV, "BENEATH: a symlink climbing out: EXDEV");
	check_ok(o2(d, "/file.txt", O_RDONLY, R_IN_ROOT), "IN_ROOT: / is the dirfd");
	check_ok(o2(d, "../../file.txt", O_RDONLY, R_IN_ROOT), "IN_ROOT: .. stops at the dirfd");
	check_errno(o2(d, "link-abs", O_RDONLY, R_IN_ROOT), ENOENT, "IN_ROOT: an absolute symlink starts at the dirfd");
	check_errno(o2(d, "link-up", O_RDONLY, R_IN_ROOT), ENOENT, "IN_ROOT: a climbing symlink stops at the dirfd");
	check_errno(o2(d, "link-rel", O_RDONLY, R_NO_SYMLINKS), ELOOP, "NO_SYMLINKS: a trailing symlink: ELOOP");
	check_errno(o2(d, "link-dir/alpha", O_RDONLY, R_NO_SYMLINKS), ELOOP, "NO_SYMLINKS: a symlink on the way: ELOOP");
	check_ok(o2(d, "link-rel", O_PATH | O_NOFOLLOW, R_NO_SYMLINKS), "NO_SYMLINKS: O_PATH|O_NOFOLLOW gets the link itself");
	check_ok(o2(d, "dir/alpha", O_RDONLY, R_NO_SYMLINKS | R_NO_XDEV), "NO_SYMLINKS|NO_XDEV: a plain path");

	memset(&h, 0, sizeof h);
	check_errno(o2raw(d, "file.txt", &h, 16), EINVAL, "size 16: EINVAL");
	h.extra[0] = 1;
	check_errno(o2raw(d, "file.txt", &h, 32), E2BIG, "non-zero bytes past the struct: E2BIG");
	h.extra[0] = 0;
	check_ok(o2raw(d, "file.txt", &h, 32), "zero bytes past the struct are fine");
	check_errno(o2raw(d, "file.txt", &h, 8192), E2BIG, "size past a page: E2BIG");
	check_errno(o2(d, "file.txt", O_RDONLY, 0x80), EINVAL, "unknown resolve bit: EINVAL");
	check_errno(o2(d, "file.txt", O_RDONLY, R_BENEATH | R_IN_ROOT), EINVAL, "BENEATH|IN_ROOT: EINVAL");
	check_errno(o2(d, "file.txt", 1UL << 40, 0), EINVAL, "flags past 32 bits: EINVAL");
	h.flags = O_RDONLY;
	h.mode = 0644;
	check_errno(o2raw(d, "file.txt", &h, 24), EINVAL, "a mode without O_CREAT: EINVAL");
	check_errno(o2(d, "file.txt", O_PATH | O_RDWR, 0), EINVAL, "O_PATH with O_RDWR: EINVAL");
	check_errno(o2(d, "nope", O_RDONLY, R_BENEATH), ENOENT, "BENEATH: a missing name: ENOENT");
	close(d);
	return tap_done();
}
