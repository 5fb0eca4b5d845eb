"""Escape tests: every way out of the rootfs that issue 4 names, each against canaries outside it.

A canary is a host file or directory outside the rootfs (next to it, beside a bind
mount's source, beside a file bind mount) that the sandbox must leave unread and
unchanged: its content, inode, link count, mode, mtime, ctime and atime are compared
before and after (reads show as atime: every canary's atime is set an hour before its
mtime, so relatime updates it on any read; the test's own reads use O_NOATIME), no
new name appears next to it, and its content never appears in the sandbox's output.

The worlds come from tests/test_security.py's `World` (W/canary, W/twin and W/only-on-host
on the host, W/rootfs the sandbox's root, a decoy at the canary's host path inside);
each test here gets a fresh one, plus W/canary-dir/secret.  The probes are static C
programs (one "name: result" line per check) that try, from inside:

1. `race`: one thread swaps `d/link` between a directory inside the rootfs and symlinks
   aimed at the host's W (absolute, and `..` chains of exactly the depth that reaches W on
   the host), by RENAME_EXCHANGE, rename-over and unlink+symlink, while the main thread
   opens, O_CREAT|O_TRUNCs, stats, chmods, utimes, readlinks, renames and links through it
   for thousands of iterations.  It must never read the host's content or see its inodes.
2. `links`: link()/linkat() from old paths that would be the canary on the host (`..`
   chains, absolute host paths, symlinks with and without AT_SYMLINK_FOLLOW,
   /proc/self/root/.., /proc/self/fd/N, AT_EMPTY_PATH) and to new paths meant to land
   outside.  The host canary's link count stays 1; every new link is inside the rootfs.
3. `renames`: rename()/renameat2() (plain, RENAME_NOREPLACE, RENAME_EXCHANGE) out of a rw
   bind mount, into it, across two mounts of one source and into a nested bind mount:
   EXDEV, as Linux; then a directory of the bind mount is moved and climbed from.
4. `procpaths`: read, write, truncate and create through /proc/self/root/..,
   /proc/self/cwd/.., /proc/thread-self, /proc/self/task/TID, /proc/<another process>/root
   and cwd, and /dev/fd/N/.. chains: all of it lands in the rootfs.
5. `dotdot`: openat() on directory fds (O_RDONLY and O_PATH, in the rootfs and in a bind
   mount) with 50-deep `..` chains, openat2's RESOLVE_* modes, after the tree was moved,
   while another thread moves it, and the classic chroot escape.

Linux is the reference: every probe but `race` also runs natively, in a chroot of
the same layout inside fresh mount and pid namespaces (`native`), and must give the
same answers.  The sandboxes run on the ptrace platform with `--overlay=none` (writes
reach the rootfs on the host, where they are checked for) and `--overlay=memory` (the
host's rootfs must not change at all).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.rootfs import make_bundle
from tests.test_security import RUNSC, TIMEOUT, World, _kill_tree, _tree, probe_lines, repo_env

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes run as root")

DEPTH = 50                  # the `..` chains of the dotdot probe
RACE_ITERATIONS = 3000      # main-thread rounds of the race probe (5-15 s on the ptrace platform)
DOTDOT_RACE_ITERATIONS = 400
MODES = ["native", "none", "memory"]    # Linux in a chroot; the sandbox with each --overlay
SANDBOX_MODES = ["none", "memory"]

# ---------------------------------------------------------------------------
# The probes: static C, in the rootfs at /probe/NAME.  COMMON is prepended to each.
# ---------------------------------------------------------------------------
COMMON = r"""#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE 2
#endif

__attribute__((unused)) static const char *errname(int e)
{
	switch (e) {
	case ENOENT: return "ENOENT"; case ENOTDIR: return "ENOTDIR"; case ELOOP: return "ELOOP";
	case EACCES: return "EACCES"; case EPERM: return "EPERM"; case EISDIR: return "EISDIR";
	case EXDEV: return "EXDEV"; case EBUSY: return "EBUSY"; case EEXIST: return "EEXIST";
	case ENOTEMPTY: return "ENOTEMPTY"; case EINVAL: return "EINVAL"; case EBADF: return "EBADF";
	case EROFS: return "EROFS"; case ESTALE: return "ESTALE"; case ENOSYS: return "ENOSYS";
	case EFAULT: return "EFAULT"; case ENAMETOOLONG: return "ENAMETOOLONG"; case EMLINK: return "EMLINK";
	}
	static char buf[32];
	snprintf(buf, sizeof buf, "errno%d", e);
	return buf;
}

/* A path built printf-style (one static buffer per call site is not needed: callers copy). */
__attribute__((unused)) static const char *fmt(char *buf, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	vsnprintf(buf, PATH_MAX, f, ap);
	va_end(ap);
	return buf;
}

/* "name: OK" or "name: ERR ENAME" for a call's return value (errno read at once). */
__attribute__((unused)) static void res(const char *name, long r)
{
	if (r < 0)
		printf("%s: ERR %s\n", name, errname(errno));
	else
		printf("%s: OK\n", name);
}

/* "name: OK <first line>" or "name: ERR ENAME" for an fd to read (closed here). */
__attribute__((unused)) static void rd(const char *name, int fd)
{
	char buf[256];
	ssize_t n;

	if (fd < 0) {
		printf("%s: ERR %s\n", name, errname(errno));
		return;
	}
	n = read(fd, buf, sizeof buf - 1);
	if (n < 0) {
		printf("%s: ERR read %s\n", name, errname(errno));
		close(fd);
		return;
	}
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	printf("%s: OK %s\n", name, buf);
	close(fd);
}

/* "name: same" when fd (closed here) is the directory `ref`, else "different" or the error. */
__attribute__((unused)) static void same(const char *name, int fd, const char *ref)
{
	struct stat a, b;

	if (fd < 0) {
		printf("%s: ERR %s\n", name, errname(errno));
		return;
	}
	if (fstat(fd, &a) || stat(ref, &b))
		printf("%s: ERR stat %s\n", name, errname(errno));
	else
		printf("%s: %s\n", name, a.st_dev == b.st_dev && a.st_ino == b.st_ino ? "same" : "different");
	close(fd);
}

__attribute__((unused)) static void put(const char *path, const char *content)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, content, strlen(content)) < 0) {
		printf("setup %s: ERR %s\n", path, errname(errno));
		exit(1);
	}
	close(fd);
}

/* n times "../", then `tail`. */
__attribute__((unused)) static const char *up(char *buf, int n, const char *tail)
{
	buf[0] = 0;
	for (int i = 0; i < n; i++)
		strcat(buf, "../");
	strcat(buf, tail);
	return buf;
}
"""

PROBES = {
    "race": r"""/* race W TAG ITERS INO...: one thread keeps swapping d/link between a directory inside the
 * rootfs and symlinks aimed at the host's W (absolute and climbing `..` chains), while the
 * main thread opens, creates, stats, readlinks, renames and links through d/link. */
static atomic_int stop;
static long swaps, exchanges, recreated;
static char targets[12][PATH_MAX];
static int ntargets;

static int kind(const char *p)
{
	struct stat s;

	if (lstat(p, &s))
		return 0;
	return S_ISLNK(s.st_mode) ? 'l' : S_ISDIR(s.st_mode) ? 'd' : 'f';
}

static void *swapper(void *arg)
{
	int exchange = 1;

	(void)arg;
	for (unsigned k = 0; !atomic_load(&stop); k++) {
		const char *t = targets[k % ntargets];
		int l = kind("d/link"), r = kind("d/real");

		if (exchange && l && r && k % 3 == 0) {
			/* dir <-> symlink in one step */
			if (syscall(SYS_renameat2, AT_FDCWD, "d/real", AT_FDCWD, "d/link", RENAME_EXCHANGE) == 0)
				exchanges++;
			else if (errno == EXDEV || errno == EINVAL || errno == ENOSYS)
				exchange = 0;     /* the overlay refuses RENAME_EXCHANGE: swap by hand only */
		} else if (l == 'l' && r == 'd') {
			if (k % 3 == 1) {             /* another symlink, renamed over this one */
				unlink("d/tmp");
				if (symlink(t, "d/tmp") == 0 && rename("d/tmp", "d/link") == 0)
					recreated++;
			} else {                      /* the directory takes the name */
				unlink("d/link");
				rename("d/real", "d/link");
			}
		} else if (l == 'f') {                /* O_CREAT made a file at a missing d/link */
			unlink("d/link");
		} else if (l == 'd' && (r == 'l' || r == 'f')) {
			unlink("d/real");
		} else if (l == 'd' && r == 0) {      /* the directory goes back, a new symlink comes */
			rename("d/link", "d/real");
			if (symlink(t, "d/link") == 0)
				recreated++;
		} else if (l == 0 && r == 'd') {
			symlink(t, "d/link");
		}
		swaps++;
		/* Leave the Sentry to the main thread for a moment (no syscall: a spin). */
		for (volatile int spin = 0; spin < 20000; spin++)
			;
	}
	return 0;
}

static const struct timespec epoch[2] = {{0, 0}, {0, 0}};
static long truncated, chmodded, touched, n_inside, n_decoy, n_host, n_other, n_err[6], hostino, created, moved, linked, readlinks;
static const int errs[6] = {ENOENT, EISDIR, ENOTDIR, ELOOP, EEXIST, 0};
static unsigned long inos[8];
static int ninos;

static void count_err(int e)
{
	int i;

	for (i = 0; i < 5 && errs[i] != e; i++)
		;
	n_err[i]++;
}

static void classify(const char *what, int fd)
{
	char buf[128];
	ssize_t n;

	if (fd < 0) {
		count_err(errno);
		return;
	}
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n < 0) {
		count_err(errno);
		return;
	}
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	if (!strncmp(buf, "INSIDE", 6)) {
		n_inside++;
	} else if (!strncmp(buf, "ROOTFS-", 7)) {
		n_decoy++;
	} else if (!strncmp(buf, "HOST-", 5)) {
		n_host++;
		printf("LEAK %s: %s\n", what, buf);
	} else {
		n_other++;
		printf("OTHER %s: %.60s\n", what, buf);
	}
}

static void check_ino(const char *p)
{
	struct stat s;

	if (stat(p, &s) != 0)
		return;
	for (int i = 0; i < ninos; i++)
		if (s.st_ino == inos[i]) {
			hostino++;
			printf("HOST INODE %s: %lu\n", p, (unsigned long)s.st_ino);
		}
}

int main(int argc, char **argv)
{
	const char *W = argv[1], *tag = argv[2];
	long iters = atol(argv[3]);
	char p[PATH_MAX], q[PATH_MAX], *base;
	pthread_t th;
	int dfd;

	for (int i = 4; i < argc && ninos < 8; i++)
		inos[ninos++] = strtoul(argv[i], 0, 0);
	base = strrchr(W, '/') + 1;
	/* d is /tmp/race/d: four `..` from d are W on the host, `/` inside. */
	strcpy(targets[ntargets++], W);                                        /* absolute, host W */
	strcpy(targets[ntargets++], "../../../..");                             /* exactly host W */
	fmt(targets[ntargets++], "../../../../../%s", base);                   /* host W via W/.. */
	strcpy(targets[ntargets++], "/..");
	fmt(targets[ntargets++], "%s/canary", W);                              /* file, absolute */
	strcpy(targets[ntargets++], "../../../../canary");                      /* file, exactly host */
	strcpy(targets[ntargets++], "/proc/self/root/..");
	strcpy(targets[ntargets++], "../../../../canary-dir");                  /* host directory */
	fmt(targets[ntargets++], "%s/canary-dir", W);
	strcpy(targets[ntargets++], "real");                                    /* harmless, inside */

	if (mkdir("/tmp/race", 0755) || chdir("/tmp/race") || mkdir("d", 0755) || mkdir("d/real", 0755)) {
		printf("setup: ERR %s\n", errname(errno));
		return 1;
	}
	put("d/real/canary", "INSIDE canary\n");
	put("d/real/secret", "INSIDE secret\n");
	put("d/hsrc", "HSRC\n");
	if (symlink(targets[1], "d/link")) {
		printf("setup: ERR %s\n", errname(errno));
		return 1;
	}
	dfd = open("d", O_RDONLY | O_DIRECTORY);
	pthread_create(&th, 0, swapper, 0);
	for (long i = 0; i < iters; i++) {
		int fd, n = (int)(i % 4);

		classify("d/link/canary", open("d/link/canary", O_RDONLY));
		classify("openat(d, link/canary)", openat(dfd, "link/canary", O_RDONLY));
		classify("d/link", open("d/link", O_RDONLY));
		classify("d/link/secret", open("d/link/secret", O_RDONLY));
		fd = openat(dfd, fmt(p, "link/new-%s-%d", tag, n), O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			created++;
			if (write(fd, "NEW\n", 4) < 0)
				printf("write: ERR %s\n", errname(errno));
			close(fd);
		}
		/* O_CREAT|O_TRUNC of the link itself: a dangling target is created (inside, it must be) */
		fd = open("d/link", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			truncated++;
			if (write(fd, "INSIDE written\n", 15) < 0)
				printf("write: ERR %s\n", errname(errno));
			close(fd);
		}
		/* metadata changes through the link: the host canary's mode and times must not move */
		if (chmod("d/link/canary", 0640) == 0)
			chmodded++;
		if (utimensat(AT_FDCWD, "d/link/canary", epoch, 0) == 0)
			touched++;
		check_ino("d/link/canary");
		check_ino("d/link");
		check_ino("d/link/secret");
		if (readlink("d/link", q, sizeof q) >= 0)
			readlinks++;
		fd = open("d/src", O_WRONLY | O_CREAT, 0644);
		if (fd >= 0)
			close(fd);
		if (rename("d/src", fmt(p, "d/link/moved-%s-%d", tag, n)) == 0)
			moved++;
		else
			unlink("d/src");
		if (link("d/hsrc", fmt(p, "d/link/hl-%s-%d", tag, n)) == 0)
			linked++;
		if (mkdir(fmt(p, "d/link/mk-%s", tag), 0755) == 0)
			rmdir(p);
	}
	atomic_store(&stop, 1);
	pthread_join(th, 0);
	printf("iterations: %ld\n", iters);
	printf("swaps: %ld\nexchanges: %ld\nrecreated: %ld\n", swaps, exchanges, recreated);
	printf("read inside: %ld\nread decoy: %ld\nread host: %ld\nread other: %ld\n", n_inside, n_decoy, n_host, n_other);
	printf("ENOENT: %ld\nEISDIR: %ld\nENOTDIR: %ld\nELOOP: %ld\nEEXIST: %ld\nother errors: %ld\n",
	       n_err[0], n_err[1], n_err[2], n_err[3], n_err[4], n_err[5]);
	printf("host inode seen: %ld\n", hostino);
	printf("created: %ld\nmoved: %ld\nlinked: %ld\nreadlinks: %ld\n", created, moved, linked, readlinks);
	printf("truncated: %ld\nchmodded: %ld\ntouched: %ld\n", truncated, chmodded, touched);
	printf("done: yes\n");
	return 0;
}
""",
    "links": r"""/* links W TAG: hard links whose old path points outside the rootfs (.. chains, absolute host
 * paths, symlinks, /proc/self/root/.., AT_EMPTY_PATH), and whose new path is meant to land
 * outside.  One "name: OK" / "name: ERR ENAME" line each. */
int main(int argc, char **argv)
{
	const char *W = argv[1], *tag = argv[2];
	char p[PATH_MAX], q[PATH_MAX];
	int rootfd, decoyfd, symfd, tmpfd;
	struct stat s;

	if (mkdir("/tmp/L", 0755) || chdir("/tmp/L")) {
		printf("setup: ERR %s\n", errname(errno));
		return 1;
	}
	put("src", "SRC\n");
	rootfd = open("/", O_RDONLY | O_DIRECTORY);
	decoyfd = open("/links/abs-canary", O_RDONLY);
	symfd = open("/links/up-canary", O_PATH | O_NOFOLLOW);
	tmpfd = open("/tmp", O_PATH | O_DIRECTORY);

	/* old path: the canary, named from inside */
	res("link ../../../canary", link("../../../canary", "hl1"));
	res("link /../../canary", link("/../../canary", "hl2"));
	res("link W/canary", link(fmt(p, "%s/canary", W), "hl3"));
	rd("read hl3", open("hl3", O_RDONLY));
	res("link W/../canary", link(fmt(p, "%s/../canary", W), "hl4"));
	res("link W/canary-dir/secret", link(fmt(p, "%s/canary-dir/secret", W), "hl4b"));
	res("link /links/up-canary", link("/links/up-canary", "hl5"));   /* the symlink itself */
	rd("read hl5", open("hl5", O_RDONLY));
	res("linkat /links/up-canary FOLLOW", linkat(AT_FDCWD, "/links/up-canary", AT_FDCWD, "hl6", AT_SYMLINK_FOLLOW));
	res("linkat /links/abs-canary FOLLOW", linkat(AT_FDCWD, "/links/abs-canary", AT_FDCWD, "hl7", AT_SYMLINK_FOLLOW));
	rd("read hl7", open("hl7", O_RDONLY));
	res("linkat /links/chain1 FOLLOW", linkat(AT_FDCWD, "/links/chain1", AT_FDCWD, "hl8", AT_SYMLINK_FOLLOW));
	res("linkat /links/updir/canary FOLLOW", linkat(AT_FDCWD, "/links/updir/canary", AT_FDCWD, "hl8b", AT_SYMLINK_FOLLOW));
	symlink("../../../../../canary", "myup");
	res("linkat own ../ symlink FOLLOW", linkat(AT_FDCWD, "myup", AT_FDCWD, "hl9", AT_SYMLINK_FOLLOW));
	symlink(fmt(p, "%s/canary", W), "myabs");
	res("linkat own absolute symlink FOLLOW", linkat(AT_FDCWD, "myabs", AT_FDCWD, "hl10", AT_SYMLINK_FOLLOW));
	res("link /proc/self/root/../canary", link("/proc/self/root/../canary", "hl11"));
	res("link /proc/self/cwd/../../../../canary", link("/proc/self/cwd/../../../../canary", "hl12"));
	res("linkat(/, ../canary)", linkat(rootfd, "../canary", AT_FDCWD, "hl13", 0));
	res("linkat(/, ../../canary-dir/secret)", linkat(rootfd, "../../canary-dir/secret", AT_FDCWD, "hl14", 0));
	res("link /links/abs-dir/../canary", link("/links/abs-dir/../canary", "hl15"));
	res("linkat AT_EMPTY_PATH decoy fd", linkat(decoyfd, "", AT_FDCWD, "hl16", AT_EMPTY_PATH));
	rd("read hl16", open("hl16", O_RDONLY));
	res("linkat AT_EMPTY_PATH O_PATH symlink fd", linkat(symfd, "", AT_FDCWD, "hl17", AT_EMPTY_PATH));
	rd("read hl17", open("hl17", O_RDONLY));
	res("linkat AT_EMPTY_PATH root dir fd", linkat(rootfd, "", AT_FDCWD, "hl18", AT_EMPTY_PATH));
	res("linkat AT_EMPTY_PATH O_PATH dir fd", linkat(tmpfd, "", AT_FDCWD, "hl19", AT_EMPTY_PATH));
	res("linkat /proc/self/fd/DECOY FOLLOW",
	    linkat(AT_FDCWD, fmt(p, "/proc/self/fd/%d", decoyfd), AT_FDCWD, "hl20", AT_SYMLINK_FOLLOW));
	rd("read hl20", open("hl20", O_RDONLY));
	res("linkat /proc/self/fd/ROOT FOLLOW",
	    linkat(AT_FDCWD, fmt(p, "/proc/self/fd/%d", rootfd), AT_FDCWD, "hl21", AT_SYMLINK_FOLLOW));
	res("link /proc/self/fd/ROOT/../canary", link(fmt(p, "/proc/self/fd/%d/../canary", rootfd), "hl22"));
	res("link /dev/fd/ROOT/../canary", link(fmt(p, "/dev/fd/%d/../canary", rootfd), "hl23"));

	/* new path: meant to land outside */
	res("link to /../../escaped", link("src", fmt(q, "/../../escaped-%s-1", tag)));
	res("link to ../../../../escaped", link("src", fmt(q, "../../../../escaped-%s-2", tag)));
	res("link to W/escaped", link("src", fmt(q, "%s/escaped-%s-3", W, tag)));
	res("link to W/../escaped", link("src", fmt(q, "%s/../escaped-%s-4", W, tag)));
	res("link to /links/updir/escaped", link("src", fmt(q, "/links/updir/escaped-%s-5", tag)));
	res("link to /links/abs-dir/escaped", link("src", fmt(q, "/links/abs-dir/escaped-%s-6", tag)));
	res("link to /proc/self/root/../escaped", link("src", fmt(q, "/proc/self/root/../escaped-%s-7", tag)));
	res("linkat(/, src, /, ../escaped)", linkat(AT_FDCWD, "src", rootfd, fmt(q, "../escaped-%s-8", tag), 0));
	res("link to /links/up-canary (exists)", link("src", "/links/up-canary"));
	symlink(fmt(q, "../../../../escaped-%s-9", tag), "dangling");
	res("link to a dangling symlink pointing up", link("src", "dangling"));

	if (stat("/links/abs-canary", &s) == 0)
		printf("decoy nlink: %ld\n", (long)s.st_nlink);
	if (stat("src", &s) == 0)
		printf("src nlink: %ld\n", (long)s.st_nlink);
	return 0;
}
""",
    "renames": r"""/* renames W TAG HP: /data is a rw bind mount of the host directory HP/inner, /etc/bound-file a
 * file bind mount.  Renames (and exchanges) out of the bind mount, to targets meant to be
 * outside; then a directory of the bind mount is moved and climbed from. */
int main(int argc, char **argv)
{
	const char *W = argv[1], *tag = argv[2], *HP = argv[3];
	char p[PATH_MAX], q[PATH_MAX], r[PATH_MAX], cwd[PATH_MAX];
	int rootfd, datafd, subfd, bfd, boundfd, nestedfd;

	rootfd = open("/", O_RDONLY | O_DIRECTORY);
	datafd = open("/data", O_RDONLY | O_DIRECTORY);
	subfd = open("/data/dir/sub", O_RDONLY | O_DIRECTORY);
	nestedfd = open("/data/dir/sub/nested", O_RDONLY | O_DIRECTORY);
	if (rootfd < 0 || datafd < 0 || subfd < 0) {
		printf("setup: ERR %s\n", errname(errno));
		return 1;
	}
	put("/tmp/exch", "ROOTFS-EXCH\n");
	put("/tmp/in", "ROOTFS-IN\n");
	mkdir("/tmp/xdir", 0755);

	/* out of the bind mount: EXDEV, wherever the target is */
	res("rename /data/f1 to /tmp", rename("/data/f1", fmt(q, "/tmp/escaped-%s-1", tag)));
	res("rename /data/f2 to /", rename("/data/f2", fmt(q, "/escaped-%s-2", tag)));
	res("rename /data/f3 to /data/..", rename("/data/f3", fmt(q, "/data/../escaped-%s-3", tag)));
	res("rename /data/f4 to /data/../../../..", rename("/data/f4", fmt(q, "/data/../../../../escaped-%s-4", tag)));
	res("rename /data/f5 to W", rename("/data/f5", fmt(q, "%s/escaped-%s-5", W, tag)));
	res("rename /data/f5 to HP (host parent of the bind source)", rename("/data/f5", fmt(q, "%s/escaped-%s-6", HP, tag)));
	res("rename /data/f6 to /data/rel-out", rename("/data/f6", fmt(q, "/data/rel-out/escaped-%s-7", tag)));
	res("rename /data/f6 to /data/abs-out", rename("/data/f6", fmt(q, "/data/abs-out/escaped-%s-8", tag)));
	res("rename /data/f7 to /links/updir", rename("/data/f7", fmt(q, "/links/updir/escaped-%s-9", tag)));
	res("rename /data/f7 to /proc/self/root/..", rename("/data/f7", fmt(q, "/proc/self/root/../escaped-%s-10", tag)));
	res("renameat(data, f7, data, ../escaped)", renameat(datafd, "f7", datafd, fmt(q, "../escaped-%s-11", tag)));
	res("renameat(sub, ../../f7, /, ../escaped)", renameat(subfd, "../../f7", rootfd, fmt(q, "../escaped-%s-12", tag)));
	res("renameat(data, f7, sub, ../../../escaped)", renameat(datafd, "f7", subfd, fmt(q, "../../../escaped-%s-13", tag)));
	res("renameat2 NOREPLACE /data/f8 to /tmp",
	    syscall(SYS_renameat2, AT_FDCWD, "/data/f8", AT_FDCWD, fmt(q, "/tmp/escaped-%s-14", tag), RENAME_NOREPLACE));
	res("renameat2 NOREPLACE /data/f8 to /data/../..",
	    syscall(SYS_renameat2, AT_FDCWD, "/data/f8", AT_FDCWD, fmt(q, "/data/../../escaped-%s-15", tag), RENAME_NOREPLACE));
	res("renameat2 EXCHANGE /data/f8 with /tmp/exch",
	    syscall(SYS_renameat2, AT_FDCWD, "/data/f8", AT_FDCWD, "/tmp/exch", RENAME_EXCHANGE));
	res("renameat2 EXCHANGE /data/f8 with /data/../twin",
	    syscall(SYS_renameat2, AT_FDCWD, "/data/f8", AT_FDCWD, "/data/../twin", RENAME_EXCHANGE));
	res("renameat2 EXCHANGE /data/dir with /tmp/xdir",
	    syscall(SYS_renameat2, AT_FDCWD, "/data/dir", AT_FDCWD, "/tmp/xdir", RENAME_EXCHANGE));
	res("renameat2 EXCHANGE (sub, ../../f8) with (/, ../../tmp/exch)",
	    syscall(SYS_renameat2, subfd, "../../f8", rootfd, "../../tmp/exch", RENAME_EXCHANGE));
	res("rename /tmp/in into /data", rename("/tmp/in", fmt(q, "/data/in-%s", tag)));
	res("rename /data to /data2", rename("/data", fmt(q, "/data2-%s", tag)));
	res("rename /data/dir to /data/..", rename("/data/dir", "/data/.."));
	res("link /data/f1 to /tmp", link("/data/f1", fmt(q, "/tmp/escaped-%s-16", tag)));
	res("link /data/f1 to /data/..", link("/data/f1", fmt(q, "/data/../escaped-%s-17", tag)));
	res("linkat AT_EMPTY_PATH bind fd to /tmp", linkat(open("/data/f1", O_RDONLY), "", AT_FDCWD,
	    fmt(q, "/tmp/escaped-%s-18", tag), AT_EMPTY_PATH));
	res("rename /data/f1 to /data-again (the same source, mounted twice)", rename("/data/f1", "/data-again/f1-again"));
	res("link /data/f1 to /data-again", link("/data/f1", "/data-again/f1-link"));
	res("rename /data/f1 to /data2 (a sibling of the source)", rename("/data/f1", "/data2/f1"));
	res("renameat2 EXCHANGE /data/f1 with /data2/o1", syscall(SYS_renameat2, AT_FDCWD, "/data/f1", AT_FDCWD, "/data2/o1", RENAME_EXCHANGE));
	res("rename /data/dir/sub/nested/n1 out of the nested mount", rename("/data/dir/sub/nested/n1", "/data/dir/sub/n1"));
	res("rename /data/dir/sub/nested (a mount point)", rename("/data/dir/sub/nested", "/data/dir/nested2"));
	res("rename /data/f9 to /data/dir/f9 (inside)", rename("/data/f9", "/data/dir/f9"));
	res("renameat2 EXCHANGE /data/f1 with /data/f2 (inside)",
	    syscall(SYS_renameat2, AT_FDCWD, "/data/f1", AT_FDCWD, "/data/f2", RENAME_EXCHANGE));

	/* a directory of the bind mount moved: climbing from it afterwards stays in the sandbox */
	if (chdir("/data/dir/sub"))
		printf("chdir: ERR %s\n", errname(errno));
	res("rename /data/dir to /data/moved", rename("/data/dir", fmt(q, "/data/moved-%s", tag)));
	printf("getcwd after the move: %s\n", getcwd(cwd, sizeof cwd) ? cwd : errname(errno));
	same("openat(sub, ..) is the moved dir", openat(subfd, "..", O_RDONLY | O_DIRECTORY), q);
	same("openat(sub, ../..) is /data", openat(subfd, "../..", O_RDONLY | O_DIRECTORY), "/data");
	same("openat(sub, ../../..) is /", openat(subfd, "../../..", O_RDONLY | O_DIRECTORY), "/");
	same("openat(sub, ../../../../../..) is /", openat(subfd, "../../../../../..", O_RDONLY | O_DIRECTORY), "/");
	rd("openat(sub, ../../../sibling)", openat(subfd, "../../../sibling", O_RDONLY));
	rd("openat(sub, ../../../twin)", openat(subfd, "../../../twin", O_RDONLY));
	rd("openat(sub, ../../../../../canary)", openat(subfd, "../../../../../canary", O_RDONLY));
	rd("open ../../../sibling from the cwd", open("../../../sibling", O_RDONLY));
	rd("open /proc/self/fd/SUB/../../../sibling", open(fmt(p, "/proc/self/fd/%d/../../../sibling", subfd), O_RDONLY));
	rd("open /proc/self/cwd/../../../sibling", open("/proc/self/cwd/../../../sibling", O_RDONLY));
	same("openat(nested, ..) is the moved sub", openat(nestedfd, "..", O_RDONLY | O_DIRECTORY), fmt(p, "%s/sub", q));
	same("openat(nested, ../../../..) is /", openat(nestedfd, "../../../..", O_RDONLY | O_DIRECTORY), "/");
	rd("openat(nested, ../nq-sibling)", openat(nestedfd, "../nq-sibling", O_RDONLY));
	rd("openat(nested, ../../../../nq-sibling)", openat(nestedfd, "../../../../nq-sibling", O_RDONLY));
	rd("openat(nested, n1)", openat(nestedfd, "n1", O_RDONLY));
	res("rename the nested mount's n1 to the moved sub", rename(fmt(p, "%s/sub/nested/n1", q), fmt(r, "%s/sub/n1", q)));
	res("mkdir /data/a/b", mkdir("/data/a", 0755) | mkdir("/data/a/b", 0755));
	bfd = open("/data/a/b", O_PATH | O_DIRECTORY);
	res("rename /data/a under the moved dir", rename("/data/a", fmt(p, "%s/sub/a", q)));
	same("openat(b, ../../..) is the moved dir", openat(bfd, "../../..", O_RDONLY | O_DIRECTORY), q);
	same("openat(b, ../../../../..) is /", openat(bfd, "../../../../..", O_RDONLY | O_DIRECTORY), "/");
	rd("openat(b, ../../../../../sibling)", openat(bfd, "../../../../../sibling", O_RDONLY));
	res("rename the moved dir out to /tmp", rename(q, fmt(p, "/tmp/escaped-%s-19", tag)));
	if (chdir("../../../../.."))
		printf("chdir up: ERR %s\n", errname(errno));
	printf("getcwd after climbing: %s\n", getcwd(cwd, sizeof cwd) ? cwd : errname(errno));

	/* the file bind mount: its siblings on the host are not reachable */
	boundfd = open("/etc/bound-file", O_RDONLY);
	rd("read /etc/bound-file", open("/etc/bound-file", O_RDONLY));
	rd("open /etc/bound-file/../neighbour", open("/etc/bound-file/../neighbour", O_RDONLY));
	rd("open /proc/self/fd/BOUND/../neighbour", open(fmt(p, "/proc/self/fd/%d/../neighbour", boundfd), O_RDONLY));
	rd("openat(BOUND, ../neighbour)", openat(boundfd, "../neighbour", O_RDONLY));
	res("rename /etc/bound-file", rename("/etc/bound-file", fmt(q, "/etc/escaped-%s-20", tag)));
	res("rename over /etc/bound-file", rename("/tmp/exch", "/etc/bound-file"));
	res("renameat2 EXCHANGE /etc/bound-file with /etc/passwd",
	    syscall(SYS_renameat2, AT_FDCWD, "/etc/bound-file", AT_FDCWD, "/etc/passwd", RENAME_EXCHANGE));
	res("link /etc/bound-file", link("/etc/bound-file", fmt(q, "/etc/escaped-%s-21", tag)));
	res("linkat AT_EMPTY_PATH bound fd", linkat(boundfd, "", AT_FDCWD, fmt(q, "/etc/escaped-%s-22", tag), AT_EMPTY_PATH));
	res("unlink /etc/bound-file", unlink("/etc/bound-file"));
	return 0;
}
""",
    "procpaths": r"""/* procpaths W TAG: read, write and create through /proc/self/root/.., /proc/self/cwd/..,
 * /proc/<another process>/root and cwd, /proc/thread-self, /proc/self/task/TID and
 * /dev/fd/N/.. chains.  The cwd is /tmp/P/a/b: four `..` from it reach `/`. */
static void rdwr(const char *what, const char *path)
{
	char name[PATH_MAX + 32];

	rd(fmt(name, "read %s", what), open(path, O_RDONLY));
	res(fmt(name, "write %s", what), open(path, O_WRONLY | O_APPEND));
	res(fmt(name, "truncate %s", what), truncate(path, 0));
}

int main(int argc, char **argv)
{
	const char *tag = argv[2];
	char p[PATH_MAX], q[PATH_MAX];
	int rootfd, deepfd, opathfd, go[2], done[2], has_twin = 0, has_rootfs = 0, n;
	pid_t child;
	struct dirent *de;
	DIR *dir;

	if (mkdir("/tmp/P", 0755) || mkdir("/tmp/P/a", 0755) || mkdir("/tmp/P/a/b", 0755) || chdir("/tmp/P/a/b")) {
		printf("setup: ERR %s\n", errname(errno));
		return 1;
	}
	rootfd = open("/", O_RDONLY | O_DIRECTORY);
	deepfd = open("/tmp/P/a/b", O_RDONLY | O_DIRECTORY);
	opathfd = open("/tmp/P", O_PATH | O_DIRECTORY);
	if (pipe(go) || pipe(done))
		return 1;
	child = fork();
	if (child == 0) {                   /* another process of the sandbox: cwd /tmp/P/a */
		char c;
		if (chdir("/tmp/P/a") || write(go[1], "x", 1) != 1)
			_exit(1);
		close(done[1]);
		while (read(done[0], &c, 1) > 0)
			;
		_exit(0);
	}
	close(done[0]);
	if (read(go[0], p, 1) != 1)
		return 1;

	rdwr("/proc/self/root/../canary", "/proc/self/root/../canary");
	rdwr("/proc/self/root/../../../canary-dir/secret", "/proc/self/root/../../../canary-dir/secret");
	rd("read /proc/self/root/../twin", open("/proc/self/root/../twin", O_RDONLY));
	rdwr("/proc/self/cwd/../../../../canary", "/proc/self/cwd/../../../../canary");
	rd("read /proc/self/cwd/../../../../twin", open("/proc/self/cwd/../../../../twin", O_RDONLY));
	rdwr("/proc/thread-self/root/../canary", "/proc/thread-self/root/../canary");
	rdwr("/proc/self/task/TID/root/../canary", fmt(q, "/proc/self/task/%ld/root/../canary", syscall(SYS_gettid)));
	rdwr("/proc/CHILD/root/../canary", fmt(q, "/proc/%d/root/../canary", child));
	rdwr("/proc/CHILD/cwd/../../../canary", fmt(q, "/proc/%d/cwd/../../../canary", child));
	rd("read /proc/CHILD/cwd/../../../twin", open(fmt(q, "/proc/%d/cwd/../../../twin", child), O_RDONLY));
	rdwr("/proc/CHILD/fd/ROOT/../canary", fmt(q, "/proc/%d/fd/%d/../canary", child, rootfd));
	rdwr("/proc/1/root/../canary", "/proc/1/root/../canary");
	rdwr("/dev/fd/ROOT/../canary", fmt(q, "/dev/fd/%d/../canary", rootfd));
	rdwr("/dev/fd/DEEP/../../../../canary", fmt(q, "/dev/fd/%d/../../../../canary", deepfd));
	rd("read /dev/fd/DEEP/../../../../twin", open(fmt(q, "/dev/fd/%d/../../../../twin", deepfd), O_RDONLY));
	rdwr("/proc/self/fd/OPATH/../../canary", fmt(q, "/proc/self/fd/%d/../../canary", opathfd));
	rdwr("/dev/fd/DEEP/../../../../../../canary-dir/secret", fmt(q, "/dev/fd/%d/../../../../../../canary-dir/secret", deepfd));

	same("/proc/self/root/.. is /", open("/proc/self/root/..", O_RDONLY | O_DIRECTORY), "/");
	same("/proc/CHILD/root/../.. is /", open(fmt(q, "/proc/%d/root/../..", child), O_RDONLY | O_DIRECTORY), "/");
	same("/dev/fd/ROOT/.. is /", open(fmt(q, "/dev/fd/%d/..", rootfd), O_RDONLY | O_DIRECTORY), "/");
	dir = opendir("/proc/self/root/../..");
	while (dir && (de = readdir(dir))) {
		has_twin |= !strcmp(de->d_name, "twin");
		has_rootfs |= !strcmp(de->d_name, "rootfs");
	}
	printf("listing /proc/self/root/../..: %s twin, %s rootfs\n", has_twin ? "has" : "no", has_rootfs ? "has" : "no");
	n = readlink("/proc/self/root", p, sizeof p - 1);
	printf("readlink /proc/self/root: %s\n", n < 0 ? errname(errno) : (p[n] = 0, p));
	n = readlink(fmt(q, "/proc/%d/cwd", child), p, sizeof p - 1);
	printf("readlink /proc/CHILD/cwd: %s\n", n < 0 ? errname(errno) : (p[n] = 0, p));

	/* creating through them lands in the rootfs */
	res("create /proc/self/root/../created-1", open(fmt(q, "/proc/self/root/../created-%s-1", tag), O_WRONLY | O_CREAT | O_EXCL, 0644));
	res("create /proc/self/cwd/../../../../created-2", open(fmt(q, "/proc/self/cwd/../../../../created-%s-2", tag), O_WRONLY | O_CREAT | O_EXCL, 0644));
	res("create /proc/CHILD/root/../../created-3", open(fmt(q, "/proc/%d/root/../../created-%s-3", child, tag), O_WRONLY | O_CREAT | O_EXCL, 0644));
	res("create /proc/CHILD/cwd/../../../created-4", open(fmt(q, "/proc/%d/cwd/../../../created-%s-4", child, tag), O_WRONLY | O_CREAT | O_EXCL, 0644));
	res("create /dev/fd/DEEP/../../../../created-5", open(fmt(q, "/dev/fd/%d/../../../../created-%s-5", deepfd, tag), O_WRONLY | O_CREAT | O_EXCL, 0644));
	res("mkdir /proc/self/root/../mkdir-6", mkdir(fmt(q, "/proc/self/root/../mkdir-%s-6", tag), 0755));
	res("symlink /proc/self/root/../symlink-7", symlink("x", fmt(q, "/proc/self/root/../symlink-%s-7", tag)));
	put("/tmp/P/r", "R\n");
	res("rename to /proc/self/root/../../renamed-8", rename("/tmp/P/r", fmt(q, "/proc/self/root/../../renamed-%s-8", tag)));
	res("mknod fifo /proc/thread-self/root/../fifo-9", mknod(fmt(q, "/proc/thread-self/root/../fifo-%s-9", tag), S_IFIFO | 0644, 0));
	/* the canary's own name: created inside, the host's stays as it was */
	n = open("/proc/self/root/../canary", O_WRONLY | O_CREAT | O_EXCL, 0644);
	res("create /proc/self/root/../canary", n);
	if (n >= 0 && write(n, "CREATED INSIDE\n", 15) != 15)
		printf("write: ERR %s\n", errname(errno));
	rd("read /proc/self/root/../canary after creating it", open("/proc/self/root/../canary", O_RDONLY));
	res("mkdir /dev/fd/ROOT/../canary-dir", mkdir(fmt(q, "/dev/fd/%d/../canary-dir", rootfd), 0755));
	res("create /proc/CHILD/cwd/../../../canary-dir/secret",
	    open(fmt(q, "/proc/%d/cwd/../../../canary-dir/secret", child), O_WRONLY | O_CREAT | O_EXCL, 0644));
	res("unlink /proc/self/root/../only-on-host", unlink("/proc/self/root/../only-on-host"));

	close(done[1]);
	waitpid(child, 0, 0);
	return 0;
}
""",
    "dotdot": r"""/* dotdot W TAG DEPTH ITERS [native]: openat on directory fds with long `..` chains: a DEPTH-deep
 * tree in the rootfs (/tmp/D/d1/.../dDEPTH) and in the bind mount /data (b1/.../bDEPTH), fds
 * opened O_RDONLY and O_PATH, then the same after the tree was moved, and while another
 * thread keeps moving it.  Last (not natively: it escapes a chroot), the classic chroot escape. */
static atomic_int stop;
static long moves;

static void *mover(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		/* d1 between depth 3 (/tmp/D/d1) and depth 1 (/mv); b1 between /data/b1 and /data/bm/b1 */
		if (rename("/tmp/D/d1", "/mv") == 0)
			moves++;
		if (rename("/data/b1", "/data/bm/b1") == 0)
			moves++;
		for (volatile int spin = 0; spin < 20000; spin++)
			;
		if (rename("/mv", "/tmp/D/d1") == 0)
			moves++;
		if (rename("/data/bm/b1", "/data/b1") == 0)
			moves++;
		for (volatile int spin = 0; spin < 20000; spin++)
			;
	}
	return 0;
}

static int mkchain(const char *top, const char *prefix, int depth, char *deepest)
{
	strcpy(deepest, top);
	for (int i = 1; i <= depth; i++) {
		sprintf(deepest + strlen(deepest), "/%s%d", prefix, i);
		if (mkdir(deepest, 0755))
			return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *tag = argv[2];
	int depth = atoi(argv[3]);
	long iters = atol(argv[4]), canary_ok = 0, canary_enoent = 0, canary_other = 0, twin_ok = 0,
	     twin_enoent = 0, not_root = 0, bind_sibling = 0;
	int native = argc > 5 && !strcmp(argv[5], "native");
	char deep[PATH_MAX], bdeep[PATH_MAX], p[PATH_MAX * 2], q[PATH_MAX];
	int dfd, dpath, bfd, bpath, datapath, rootfd, fd;
	struct stat rst, s;
	pthread_t th;

	if (mkdir("/tmp/D", 0755) || mkchain("/tmp/D", "d", depth, deep) || mkdir("/data/bm", 0755) ||
	    mkchain("/data", "b", depth, bdeep)) {
		printf("setup: ERR %s\n", errname(errno));
		return 1;
	}
	stat("/", &rst);
	rootfd = open("/", O_RDONLY | O_DIRECTORY);
	dfd = open(deep, O_RDONLY | O_DIRECTORY);
	dpath = open(deep, O_PATH | O_DIRECTORY);
	bfd = open(bdeep, O_RDONLY | O_DIRECTORY);
	bpath = open(bdeep, O_PATH | O_DIRECTORY);
	datapath = open("/data", O_PATH | O_DIRECTORY);

	/* /tmp/D/dDEPTH: DEPTH `..` reach /tmp/D, DEPTH+2 reach / */
	same("openat(deep, ..*DEPTH) is /tmp/D", openat(dfd, up(p, depth, ""), O_RDONLY | O_DIRECTORY), "/tmp/D");
	same("openat(deep, ..*(DEPTH+2)) is /", openat(dfd, up(p, depth + 2, ""), O_RDONLY | O_DIRECTORY), "/");
	same("openat(deep, ..*(DEPTH+10)) is /", openat(dfd, up(p, depth + 10, ""), O_RDONLY | O_DIRECTORY), "/");
	rd("openat(deep, ..*(DEPTH+3)/canary)", openat(dfd, up(p, depth + 3, "canary"), O_RDONLY));
	rd("openat(deep, ..*(DEPTH+3)/twin)", openat(dfd, up(p, depth + 3, "twin"), O_RDONLY));
	rd("openat(deep, ..*(DEPTH+10)/canary-dir/secret)", openat(dfd, up(p, depth + 10, "canary-dir/secret"), O_RDONLY));
	p[0] = 0;
	for (int i = 0; i < depth + 10; i++)
		strcat(p, "./.././");
	strcat(p, "canary");
	rd("openat(deep, (./.././)*(DEPTH+10)canary)", openat(dfd, p, O_RDONLY));
	res("faccessat(deep, ..*(DEPTH+3)/canary)", faccessat(dfd, up(p, depth + 3, "canary"), F_OK, 0));
	res("fstatat(deep, ..*(DEPTH+3)/canary)", fstatat(dfd, up(p, depth + 3, "canary"), &s, 0));
	res("create openat(deep, ..*(DEPTH+3)/escaped)",
	    openat(dfd, up(p, depth + 3, fmt(q, "escaped-%s-1", tag)), O_WRONLY | O_CREAT | O_EXCL, 0644));
	res("mkdirat(deep, ..*(DEPTH+3)/escaped)", mkdirat(dfd, up(p, depth + 3, fmt(q, "escaped-%s-2", tag)), 0755));
	same("openat(O_PATH deep, ..*(DEPTH+10)) is /", openat(dpath, up(p, depth + 10, ""), O_RDONLY | O_DIRECTORY), "/");
	rd("openat(O_PATH deep, ..*(DEPTH+10)/canary)", openat(dpath, up(p, depth + 10, "canary"), O_RDONLY));
	rd("openat(O_PATH deep, ..*(DEPTH+10)/twin)", openat(dpath, up(p, depth + 10, "twin"), O_RDONLY));

	/* the bind mount: /data/b1/.../bDEPTH; DEPTH `..` reach /data, one more the rootfs's / */
	same("openat(bind deep, ..*DEPTH) is /data", openat(bfd, up(p, depth, ""), O_RDONLY | O_DIRECTORY), "/data");
	same("openat(bind deep, ..*(DEPTH+1)) is /", openat(bfd, up(p, depth + 1, ""), O_RDONLY | O_DIRECTORY), "/");
	rd("openat(bind deep, ..*(DEPTH+1)/sibling)", openat(bfd, up(p, depth + 1, "sibling"), O_RDONLY));
	rd("openat(bind deep, ..*(DEPTH+1)/twin)", openat(bfd, up(p, depth + 1, "twin"), O_RDONLY));
	rd("openat(bind deep, ..*(DEPTH+10)/canary)", openat(bfd, up(p, depth + 10, "canary"), O_RDONLY));
	rd("openat(O_PATH bind deep, ..*(DEPTH+1)/sibling)", openat(bpath, up(p, depth + 1, "sibling"), O_RDONLY));
	rd("openat(O_PATH bind deep, ..*(DEPTH+2)/inner/f1)", openat(bpath, up(p, depth + 2, "inner/f1"), O_RDONLY));
	same("openat(O_PATH bind deep, ..*(DEPTH+10)) is /", openat(bpath, up(p, depth + 10, ""), O_RDONLY | O_DIRECTORY), "/");
	rd("openat(O_PATH /data, ../sibling)", openat(datapath, "../sibling", O_RDONLY));
	rd("openat(O_PATH /data, ../twin)", openat(datapath, "../twin", O_RDONLY));
	res("create openat(O_PATH bind deep, ..*(DEPTH+1)/escaped)",
	    openat(bpath, up(p, depth + 1, fmt(q, "escaped-%s-3", tag)), O_WRONLY | O_CREAT | O_EXCL, 0644));

	{
		struct { unsigned long long flags, mode, resolve; } how = {O_RDONLY, 0, 0x08 /* RESOLVE_BENEATH */};
		res("openat2(deep, ..*(DEPTH+10)/twin, RESOLVE_BENEATH)", syscall(SYS_openat2, dfd, up(p, depth + 10, "twin"), &how, sizeof how));
		how.resolve = 0x10;  /* RESOLVE_IN_ROOT: dfd is the root of the walk */
		res("openat2(deep, ..*(DEPTH+10)/canary, RESOLVE_IN_ROOT)", syscall(SYS_openat2, dfd, up(p, depth + 10, "canary"), &how, sizeof how));
		res("openat2(deep, ..*(DEPTH+10)/twin, RESOLVE_IN_ROOT)", syscall(SYS_openat2, dfd, up(p, depth + 10, "twin"), &how, sizeof how));
		how.resolve = 0;
		rd("openat2(bind deep, ..*(DEPTH+1)/sibling)", syscall(SYS_openat2, bfd, up(p, depth + 1, "sibling"), &how, sizeof how));
		how.resolve = 0x01;  /* RESOLVE_NO_XDEV */
		res("openat2(bind deep, ..*(DEPTH+1)/twin, RESOLVE_NO_XDEV)", syscall(SYS_openat2, bfd, up(p, depth + 1, "twin"), &how, sizeof how));
	}

	/* moved: d1 to /mv (depth 1), so DEPTH `..` from the deepest reach / */
	res("rename /tmp/D/d1 to /mv", rename("/tmp/D/d1", "/mv"));
	same("after the move, openat(deep, ..*(DEPTH-1)) is /mv", openat(dfd, up(p, depth - 1, ""), O_RDONLY | O_DIRECTORY), "/mv");
	same("after the move, openat(deep, ..*DEPTH) is /", openat(dfd, up(p, depth, ""), O_RDONLY | O_DIRECTORY), "/");
	rd("after the move, openat(deep, ..*(DEPTH+1)/canary)", openat(dfd, up(p, depth + 1, "canary"), O_RDONLY));
	rd("after the move, openat(O_PATH deep, ..*DEPTH/twin)", openat(dpath, up(p, depth, "twin"), O_RDONLY));
	res("after the move, chdir(the old path)", chdir(deep));
	if (fchdir(dfd) == 0 && chdir(up(p, depth + 1, "")) == 0)
		printf("after the move, fchdir(deep) then ..*(DEPTH+1): %s\n", getcwd(q, sizeof q) ? q : errname(errno));
	res("rename /mv back", rename("/mv", "/tmp/D/d1"));
	res("rename /data/b1 to /data/bm/b1", rename("/data/b1", "/data/bm/b1"));
	same("after the move, openat(bind deep, ..*(DEPTH+1)) is /data", openat(bfd, up(p, depth + 1, ""), O_RDONLY | O_DIRECTORY), "/data");
	same("after the move, openat(bind deep, ..*(DEPTH+2)) is /", openat(bfd, up(p, depth + 2, ""), O_RDONLY | O_DIRECTORY), "/");
	res("rename /data/bm/b1 back", rename("/data/bm/b1", "/data/b1"));

	/* moved by another thread while this one climbs */
	if (chdir(deep))
		printf("chdir deep: ERR %s\n", errname(errno));
	pthread_create(&th, 0, mover, 0);
	for (long i = 0; i < iters; i++) {
		fd = openat(dfd, up(p, depth + 1, "canary"), O_RDONLY);
		if (fd >= 0) {
			canary_ok++;
			rd("RACE canary", fd);
		} else if (errno == ENOENT) {
			canary_enoent++;
		} else {
			canary_other++;
		}
		fd = openat(dpath, up(p, depth, "twin"), O_RDONLY);     /* / when d1 is at /mv, else /tmp/D */
		if (fd >= 0) {
			twin_ok++;
			close(fd);
		} else if (errno == ENOENT) {
			twin_enoent++;
		}
		fd = openat(dfd, up(p, depth + 10, ""), O_RDONLY | O_DIRECTORY);
		if (fd < 0 || fstat(fd, &s) || s.st_dev != rst.st_dev || s.st_ino != rst.st_ino)
			not_root++;
		if (fd >= 0)
			close(fd);
		fd = openat(bpath, up(p, depth + 2, "sibling"), O_RDONLY);
		if (fd >= 0) {
			bind_sibling++;
			rd("RACE sibling", fd);
		}
		fd = open(up(p, depth + 10, "canary"), O_RDONLY);          /* from the moving cwd */
		if (fd >= 0) {
			canary_ok++;
			rd("RACE cwd canary", fd);
		}
	}
	atomic_store(&stop, 1);
	pthread_join(th, 0);
	printf("race moves: %s\n", moves > 10 ? "many" : "few");
	printf("race canary opened: %ld\n", canary_ok);
	printf("race canary other errors: %ld\n", canary_other);
	printf("race bind sibling opened: %ld\n", bind_sibling);
	printf("race ..*(DEPTH+10) not /: %ld\n", not_root);
	printf("race saw both places: %s\n", twin_ok && twin_enoent ? "yes" : "no");
	if (chdir(up(p, depth + 10, "")) == 0)
		printf("after the race, chdir ..*(DEPTH+10): %s\n", getcwd(q, sizeof q) ? q : errname(errno));

	/* the classic chroot escape: inside a container it ends at the container's root */
	if (!native) {
		mkdir("/tmp/jail", 0755);
		res("chroot /tmp/jail", chroot("/tmp/jail"));
		res("fchdir(old root)", fchdir(rootfd));
		res("chdir ..*60", chdir(up(p, 60, "")));
		res("chroot .", chroot("."));
		fd = open("/", O_RDONLY | O_DIRECTORY);
		same("after the chroot escape, / is the sandbox's /", fd, ".");
		if (fstat(rootfd, &s) == 0)
			printf("after the chroot escape, / is the old root: %s\n",
			       stat("/", &rst) == 0 && s.st_ino == rst.st_ino && s.st_dev == rst.st_dev ? "yes" : "no");
		rd("after the chroot escape, canary", open("/canary", O_RDONLY));
		rd("after the chroot escape, ../canary", open("../canary", O_RDONLY));
		rd("after the chroot escape, twin", open("/twin", O_RDONLY));
	}
	return 0;
}
""",
}


@pytest.fixture(scope="session")
def escape_probes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("escape-probes")
    built = {}
    for name, src in PROBES.items():
        c = out / f"{name}.c"
        c.write_text(COMMON + src)
        p = subprocess.run(["gcc", "-O1", "-static", "-Wall", "-Werror", "-pthread", "-o", str(out / name), str(c)],
                           capture_output=True, text=True)
        assert p.returncode == 0, f"probe {name} does not build:\n{p.stderr}"
        built[name] = out / name
    return built


# ---------------------------------------------------------------------------
# Canaries: host files and directories the sandbox must not read, change or add to.
# ---------------------------------------------------------------------------
HOUR_NS = 3600 * 10**9


class Canaries:
    def __init__(self) -> None:
        self.files: list[Path] = []
        self.dirs: list[Path] = []
        self.tokens: list[str] = []
        self.before: dict[str, tuple] = {}

    def file(self, path: Path, content: str) -> Path:
        """A canary file whose content (a token) must never be seen inside."""
        path.write_text(content + "\n")
        self.files.append(path)
        self.tokens.append(content)
        return path

    def existing(self, path: Path, token: str | None = None) -> None:
        (self.dirs if path.is_dir() else self.files).append(path)
        if token:
            self.tokens.append(token)

    def arm(self) -> None:
        """Age every atime (so a read moves it) and take the `before` snapshot."""
        for p in self.files + self.dirs:
            st = os.lstat(p)
            os.utime(p, ns=(st.st_mtime_ns - HOUR_NS, st.st_mtime_ns), follow_symlinks=False)
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, tuple]:
        snap = {}
        for p in self.files + self.dirs:        # stat everything first: listing reads nothing (O_NOATIME)
            st = os.lstat(p)
            snap[str(p)] = (st.st_ino, st.st_dev, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
                            st.st_mtime_ns, st.st_ctime_ns, st.st_atime_ns)
        for p in self.files:
            fd = os.open(p, os.O_RDONLY | os.O_NOATIME)
            try:
                snap[f"{p} content"] = (os.read(fd, 1 << 20),)
            finally:
                os.close(fd)
        for p in self.dirs:
            fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOATIME)
            try:
                snap[f"{p} entries"] = tuple(sorted(os.listdir(fd)))
            finally:
                os.close(fd)
        return snap

    def check(self, output: str) -> None:
        for token in self.tokens:
            assert token not in output, f"host canary content seen inside the sandbox:\n{output}"
        after = self.snapshot()
        changed = {k: (self.before.get(k), after.get(k)) for k in set(self.before) | set(after)
                   if self.before.get(k) != after.get(k)}
        assert changed == {}, "canaries outside the rootfs were read, changed or added to " \
            "(ino, dev, mode, nlink, uid, gid, size, mtime, ctime, atime): " + json.dumps(
                {k: [repr(v) for v in vs] for k, vs in changed.items()}, indent=1)


def strays(tag: str, roots: list[Path], skip: list[Path]) -> list[str]:
    """Names holding `tag` under `roots` (not below `skip`), and right in a few shared places."""
    found = []
    skip_s = {str(s) for s in skip}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip_s]
            found += [os.path.join(dirpath, n) for n in dirnames + filenames if tag in n]
    for shared in {roots[0].parent, roots[0].parent.parent, Path("/"), Path("/tmp")}:
        found += [str(shared / n) for n in os.listdir(shared) if tag in n]
    return sorted(set(found))


# ---------------------------------------------------------------------------
# One test's world: the rootfs, the canaries, optional bind mounts, and a runner.
# ---------------------------------------------------------------------------
class Env:
    def __init__(self, base: Path, escape_probes: dict[str, Path]) -> None:
        self.world = w = World(base / "W", {})     # test_security's probes are not needed here
        self.tag = f"esc{w.token[:10]}"
        self.canaries = c = Canaries()
        for path, token in ((w.base / "canary", w.host_canary), (w.base / "twin", w.host_twin),
                            (w.base / "only-on-host", w.host_only), (w.base, None)):
            c.existing(path, token)
        (w.base / "canary-dir").mkdir()
        c.file(w.base / "canary-dir" / "secret", f"HOST-SECRET-{w.token}")
        c.existing(w.base / "canary-dir")
        for name, binary in escape_probes.items():
            shutil.copy2(binary, w.rootfs / "probe" / name)
        self.binds: list[tuple[Path, str]] = []       # (host source, destination inside)
        self.outside = [w.base]                       # trees searched for stray names
        self.inside = [w.rootfs]                      # ... except these
        self.rootfs_before: dict = {}

    @property
    def rootfs(self) -> Path:
        return self.world.rootfs

    def add_bind_host(self, base: Path) -> None:
        """HP/inner (bound rw at /data and /data-again), HP/other (at /data2), NQP/nq (at
        /data/dir/sub/nested) and FP/bound-file (at /etc/bound-file), each with canaries beside."""
        token, c = self.world.token, self.canaries
        self.hp = hp = base / "bindhost"
        self.h = h = hp / "inner"
        (h / "dir" / "sub" / "nested").mkdir(parents=True)
        for i in range(1, 10):
            (h / f"f{i}").write_text(f"F{i}\n")
        os.symlink("../../../..", h / "rel-out")
        os.symlink(str(hp), h / "abs-out")
        (hp / "other").mkdir()
        (hp / "other" / "o1").write_text("O1\n")
        c.file(hp / "sibling", f"HOST-SIBLING-{token}")
        (hp / "sibling-dir").mkdir()
        c.existing(hp / "sibling-dir")
        c.existing(hp)
        self.nqp = nqp = base / "nestedhost"
        (nqp / "nq").mkdir(parents=True)
        (nqp / "nq" / "n1").write_text("N1\n")
        c.file(nqp / "nq-sibling", f"HOST-NQ-SIBLING-{token}")
        c.existing(nqp)
        self.fp = fp = base / "filehost"
        fp.mkdir()
        (fp / "bound-file").write_text("BOUND\n")
        c.file(fp / "neighbour", f"HOST-NEIGHBOUR-{token}")
        c.existing(fp)
        self.outside += [hp, nqp, fp]
        self.inside += [h, nqp / "nq", hp / "other"]

    def bind(self, source: Path, dest: str) -> None:
        self.binds.append((source, dest))
        # Mount points exist beforehand, the same for the native run and the sandbox.
        target = self.rootfs / dest.lstrip("/")
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.touch()

    def run(self, tmp_path: Path, mode: str, args: list[str],
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run ARGS natively (Linux, for reference) or in a sandbox with --overlay=MODE."""
        rootfs = self.rootfs
        if mode == "native":
            if shutil.which("unshare") is None:
                pytest.skip("unshare(1) is needed for the native reference run")
            if not (rootfs / "dev" / "fd").exists():
                os.symlink("/proc/self/fd", rootfs / "dev" / "fd")   # the sandbox's devfs has it
            r = shlex.quote(str(rootfs))
            script = f"set -e; mount -t proc proc {r}/proc; "
            for source, dest in self.binds:
                script += f"mount --bind {shlex.quote(str(source))} {r}{shlex.quote(dest)}; "
            script += f"exec chroot {r} " + " ".join(shlex.quote(a) for a in args)
            cmd = ["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "sh", "-c", script]
            cwd = tmp_path
        else:
            bundle = tmp_path / f"bundle-{uuid.uuid4().hex[:8]}"
            mounts = [{"destination": "/proc", "type": "proc", "source": "proc"}]
            mounts += [{"destination": dest, "type": "bind", "source": str(source), "options": ["rbind", "rw"]}
                       for source, dest in self.binds]
            make_bundle(str(bundle), args, rootfs=str(rootfs), mounts=mounts)
            cmd = [*RUNSC, "--root", str(tmp_path / "state"), "--platform", "ptrace", "--overlay", mode,
                   "run", "--bundle", str(bundle), f"esc-{uuid.uuid4().hex[:12]}"]
            cwd = bundle
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", env=repo_env(), cwd=cwd, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"{mode}: did not finish within {timeout}s (killed):\nstdout:\n{out}\nstderr:\n{err}")
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    def start(self) -> None:
        """After all setup: age the canaries' atimes, snapshot them, and the rootfs (for --overlay=memory)."""
        self.canaries.arm()
        self.rootfs_before = _tree(self.rootfs)

    def check(self, p: subprocess.CompletedProcess[str], mode: str) -> dict[str, str]:
        """The canaries and the host around them are as they were; the probe's lines, as a dict."""
        self.canaries.check(p.stdout + p.stderr)
        assert strays(self.tag, self.outside, self.inside) == [], "the sandbox made names outside its rootfs"
        if mode == "memory":
            assert _tree(self.rootfs) == self.rootfs_before, "--overlay=memory changed the rootfs on the host"
        assert p.returncode == 0, f"{mode}: exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        assert "Traceback" not in p.stderr, p.stderr
        return probe_lines(p)

    def expect(self, table: dict[str, str]) -> dict[str, str]:
        """`table` with <twin>/<decoy> standing for the rootfs's twin and decoy content."""
        w = self.world
        return {k: v.replace("<twin>", w.rootfs_twin).replace("<decoy>", w.rootfs_decoy) for k, v in table.items()}


@pytest.fixture
def env(tmp_path: Path, escape_probes: dict[str, Path]) -> Env:
    return Env(tmp_path, escape_probes)


# ===========================================================================
# 1. A symlink swapped during the walk by a racing thread
# ===========================================================================

@pytest.mark.slow
@pytest.mark.parametrize("overlay", SANDBOX_MODES)
def test_a_symlink_swapped_by_a_racing_thread_never_leads_out(env: Env, tmp_path: Path, overlay: str) -> None:
    """d/link flips between a directory inside and symlinks whose targets are the host's W, its
    canary and canary-dir (absolute, or `..` chains exactly as deep as the walk to W on the host)
    while the main thread works through it: no read returns host content, no stat a host inode,
    and every name it made (through `/..`-clamped links: at the rootfs's root) is inside."""
    w = env.world
    host = [os.stat(p).st_ino for p in (w.base / "canary", w.base / "canary-dir", w.base,
                                        w.base / "canary-dir" / "secret")]
    env.start()
    p = env.run(tmp_path, overlay, ["/probe/race", str(w.base), env.tag, str(RACE_ITERATIONS), *map(str, host)],
                timeout=240)
    got = env.check(p, overlay)
    assert got.get("done") == "yes", p.stdout + p.stderr
    leaks = [ln for ln in p.stdout.splitlines() if ln.startswith(("LEAK", "HOST INODE", "OTHER"))]
    assert leaks == [], "\n".join(leaks)
    assert got["read host"] == "0" and got["host inode seen"] == "0", p.stdout
    # The race really ran: the swapper kept going, and the main thread saw both kinds of d/link.
    assert int(got["swaps"]) >= 200, p.stdout
    assert int(got["read inside"]) > 0 and int(got["ENOENT"]) > 0, p.stdout
    for op in ("created", "moved", "truncated", "chmodded", "touched", "readlinks"):
        assert int(got[op]) > 0, f"no {op} through d/link: {p.stdout}"
    if overlay == "none":
        # `../../../..` from d is W on the host and `/` inside: O_CREAT through it made /new-*,
        # O_CREAT|O_TRUNC of the dangling link to `../../../../canary` made /canary, both in the rootfs.
        assert sorted(n.name for n in env.rootfs.glob(f"new-{env.tag}-*")), sorted(os.listdir(env.rootfs))
        assert (env.rootfs / "canary").read_text() == "INSIDE written\n"


# ===========================================================================
# 2. Hard links to paths outside
# ===========================================================================

LINKS = {
    "link ../../../canary": "ERR ENOENT",                  # cwd /tmp/L: three `..` are `/`
    "link /../../canary": "ERR ENOENT",
    "link W/canary": "OK",                                 # the host path names the decoy inside
    "read hl3": "OK <decoy>",
    "link W/../canary": "ERR ENOENT",
    "link W/canary-dir/secret": "ERR ENOENT",
    "link /links/up-canary": "OK",                         # link(2) links the symlink itself
    "read hl5": "ERR ENOENT",
    "linkat /links/up-canary FOLLOW": "ERR ENOENT",
    "linkat /links/abs-canary FOLLOW": "OK",
    "read hl7": "OK <decoy>",
    "linkat /links/chain1 FOLLOW": "ERR ENOENT",
    "linkat /links/updir/canary FOLLOW": "ERR ENOENT",
    "linkat own ../ symlink FOLLOW": "ERR ENOENT",
    "linkat own absolute symlink FOLLOW": "OK",
    "link /proc/self/root/../canary": "ERR ENOENT",
    "link /proc/self/cwd/../../../../canary": "ERR ENOENT",
    "linkat(/, ../canary)": "ERR ENOENT",
    "linkat(/, ../../canary-dir/secret)": "ERR ENOENT",
    "link /links/abs-dir/../canary": "ERR ENOENT",
    "linkat AT_EMPTY_PATH decoy fd": "OK",
    "read hl16": "OK <decoy>",
    "linkat AT_EMPTY_PATH O_PATH symlink fd": "OK",
    "read hl17": "ERR ENOENT",
    "linkat AT_EMPTY_PATH root dir fd": "ERR EPERM",
    "linkat AT_EMPTY_PATH O_PATH dir fd": "ERR EPERM",
    "linkat /proc/self/fd/DECOY FOLLOW": "OK",
    "read hl20": "OK <decoy>",
    "linkat /proc/self/fd/ROOT FOLLOW": "ERR EPERM",
    "link /proc/self/fd/ROOT/../canary": "ERR ENOENT",
    "link /dev/fd/ROOT/../canary": "ERR ENOENT",
    "link to /../../escaped": "OK",
    "link to ../../../../escaped": "OK",
    "link to W/escaped": "OK",
    "link to W/../escaped": "OK",
    "link to /links/updir/escaped": "OK",
    "link to /links/abs-dir/escaped": "OK",
    "link to /proc/self/root/../escaped": "OK",
    "linkat(/, src, /, ../escaped)": "OK",
    "link to /links/up-canary (exists)": "ERR EEXIST",
    "link to a dangling symlink pointing up": "ERR EEXIST",
    "decoy nlink": "6",                                    # hl3 hl7 hl10 hl16 hl20
    "src nlink": "9",                                      # the eight escaped-* names
}


@pytest.mark.parametrize("mode", MODES)
def test_hard_links_to_paths_outside_stay_inside(env: Env, tmp_path: Path, mode: str) -> None:
    w = env.world
    env.start()
    p = env.run(tmp_path, mode, ["/probe/links", str(w.base), env.tag])
    got = env.check(p, mode)
    assert got == env.expect(LINKS), p.stdout + p.stderr
    assert os.stat(w.base / "canary").st_nlink == 1
    decoy = env.rootfs / str(w.base).lstrip("/") / "canary"
    if mode == "memory":
        assert os.stat(decoy).st_nlink == 1
        return
    # Every link was made inside the rootfs: at its root, in the decoy W and in the decoy W's parent.
    assert os.stat(decoy).st_nlink == 6
    inside = [env.rootfs / f"escaped-{env.tag}-{i}" for i in (1, 2, 5, 7, 8)]
    inside += [decoy.parent / f"escaped-{env.tag}-{i}" for i in (3, 6)]
    inside += [decoy.parent.parent / f"escaped-{env.tag}-4"]
    assert [x.read_text() for x in inside] == ["SRC\n"] * 8
    assert os.stat(inside[0]).st_nlink == 9


# ===========================================================================
# 3. Renames out of a bind mount
# ===========================================================================

RENAMES = {
    **{f"rename /data/{f} to {to}": "ERR EXDEV" for f, to in [
        ("f1", "/tmp"), ("f2", "/"), ("f3", "/data/.."), ("f4", "/data/../../../.."), ("f5", "W"),
        ("f6", "/data/rel-out"), ("f7", "/links/updir"), ("f7", "/proc/self/root/..")]},
    "rename /data/f5 to HP (host parent of the bind source)": "ERR ENOENT",   # not a directory inside
    "rename /data/f6 to /data/abs-out": "ERR ENOENT",
    "renameat(data, f7, data, ../escaped)": "ERR EXDEV",
    "renameat(sub, ../../f7, /, ../escaped)": "ERR EXDEV",
    "renameat(data, f7, sub, ../../../escaped)": "ERR EXDEV",
    "renameat2 NOREPLACE /data/f8 to /tmp": "ERR EXDEV",
    "renameat2 NOREPLACE /data/f8 to /data/../..": "ERR EXDEV",
    "renameat2 EXCHANGE /data/f8 with /tmp/exch": "ERR EXDEV",
    "renameat2 EXCHANGE /data/f8 with /data/../twin": "ERR EXDEV",
    "renameat2 EXCHANGE /data/dir with /tmp/xdir": "ERR EXDEV",
    "renameat2 EXCHANGE (sub, ../../f8) with (/, ../../tmp/exch)": "ERR EXDEV",
    "rename /tmp/in into /data": "ERR EXDEV",
    "rename /data to /data2": "ERR EBUSY",
    "rename /data/dir to /data/..": "ERR EBUSY",
    "link /data/f1 to /tmp": "ERR EXDEV",
    "link /data/f1 to /data/..": "ERR EXDEV",
    "linkat AT_EMPTY_PATH bind fd to /tmp": "ERR EXDEV",
    "rename /data/f1 to /data-again (the same source, mounted twice)": "ERR EXDEV",
    "link /data/f1 to /data-again": "ERR EXDEV",
    "rename /data/f1 to /data2 (a sibling of the source)": "ERR EXDEV",
    "renameat2 EXCHANGE /data/f1 with /data2/o1": "ERR EXDEV",
    "rename /data/dir/sub/nested/n1 out of the nested mount": "ERR EXDEV",
    "rename /data/dir/sub/nested (a mount point)": "ERR EBUSY",
    "rename /data/f9 to /data/dir/f9 (inside)": "OK",
    "renameat2 EXCHANGE /data/f1 with /data/f2 (inside)": "OK",
    # The bind mount's /data/dir (holding the cwd, an fd and the nested mount) moves.
    "rename /data/dir to /data/moved": "OK",
    "getcwd after the move": "<moved>/sub",
    "openat(sub, ..) is the moved dir": "same",
    "openat(sub, ../..) is /data": "same",
    "openat(sub, ../../..) is /": "same",
    "openat(sub, ../../../../../..) is /": "same",
    "openat(sub, ../../../sibling)": "ERR ENOENT",        # the bind source's sibling on the host
    "openat(sub, ../../../twin)": "OK <twin>",
    "openat(sub, ../../../../../canary)": "ERR ENOENT",
    "open ../../../sibling from the cwd": "ERR ENOENT",
    "open /proc/self/fd/SUB/../../../sibling": "ERR ENOENT",
    "open /proc/self/cwd/../../../sibling": "ERR ENOENT",
    "openat(nested, ..) is the moved sub": "same",
    "openat(nested, ../../../..) is /": "same",
    "openat(nested, ../nq-sibling)": "ERR ENOENT",
    "openat(nested, ../../../../nq-sibling)": "ERR ENOENT",
    "openat(nested, n1)": "OK N1",
    "rename the nested mount's n1 to the moved sub": "ERR EXDEV",
    "mkdir /data/a/b": "OK",
    "rename /data/a under the moved dir": "OK",
    "openat(b, ../../..) is the moved dir": "same",
    "openat(b, ../../../../..) is /": "same",
    "openat(b, ../../../../../sibling)": "ERR ENOENT",
    "rename the moved dir out to /tmp": "ERR EXDEV",
    "getcwd after climbing": "/",
    # The file bind mount: a file, no way to its host directory.
    "read /etc/bound-file": "OK BOUND",
    "open /etc/bound-file/../neighbour": "ERR ENOTDIR",
    "open /proc/self/fd/BOUND/../neighbour": "ERR ENOTDIR",
    "openat(BOUND, ../neighbour)": "ERR ENOTDIR",
    "rename /etc/bound-file": "ERR EBUSY",
    "rename over /etc/bound-file": "ERR EBUSY",
    "renameat2 EXCHANGE /etc/bound-file with /etc/passwd": "ERR EBUSY",
    "link /etc/bound-file": "ERR EXDEV",
    "linkat AT_EMPTY_PATH bound fd": "ERR EXDEV",
    "unlink /etc/bound-file": "ERR EBUSY",
}


def _listing(root: Path) -> dict[str, str]:
    """relative path -> 'd', 'l -> target' or the file's content, for every entry below root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            path = os.path.join(dirpath, n)
            rel = os.path.relpath(path, root)
            out[rel] = (f"l -> {os.readlink(path)}" if os.path.islink(path) else
                        "d" if os.path.isdir(path) else Path(path).read_text())
    return out


@pytest.mark.parametrize("mode", MODES)
def test_renames_out_of_a_bind_mount_are_exdev(env: Env, tmp_path: Path, mode: str) -> None:
    """A rw bind mount of HP/inner at /data (and again at /data-again), HP/other at /data2, a
    nested one at /data/dir/sub/nested, a file bind mount at /etc/bound-file: nothing leaves or
    enters a mount by rename or link, and after /data's directory moved, `..` from inside it
    climbs the sandbox's tree, never the host's (HP/sibling, NQP/nq-sibling, FP/neighbour)."""
    w = env.world
    env.add_bind_host(tmp_path)
    env.bind(env.h, "/data")
    env.bind(env.h, "/data-again")
    env.bind(env.hp / "other", "/data2")
    env.bind(env.nqp / "nq", "/data/dir/sub/nested")
    env.bind(env.fp / "bound-file", "/etc/bound-file")
    env.start()
    p = env.run(tmp_path, mode, ["/probe/renames", str(w.base), env.tag, str(env.hp)])
    got = env.check(p, mode)
    moved = f"/data/moved-{env.tag}"
    assert got == {k: v.replace("<moved>", moved) for k, v in env.expect(RENAMES).items()}, p.stdout + p.stderr
    # On the host: the bind source changed only inside itself, the other sources not at all.
    m = f"moved-{env.tag}"
    assert _listing(env.h) == {
        "abs-out": f"l -> {env.hp}", "rel-out": "l -> ../../../..",
        "f1": "F2\n", "f2": "F1\n", **{f"f{i}": f"F{i}\n" for i in range(3, 9)},
        m: "d", f"{m}/f9": "F9\n", f"{m}/sub": "d", f"{m}/sub/nested": "d", f"{m}/sub/a": "d", f"{m}/sub/a/b": "d",
    }
    assert _listing(env.hp / "other") == {"o1": "O1\n"}
    assert _listing(env.nqp / "nq") == {"n1": "N1\n"}
    assert (env.fp / "bound-file").read_text() == "BOUND\n"


# ===========================================================================
# 4. /proc/self/root/.., /proc/self/cwd/.., /proc/<pid>/root, /dev/fd/N/..
# ===========================================================================

def _rdwr(path: str) -> dict[str, str]:
    return {f"read {path}": "ERR ENOENT", f"write {path}": "ERR ENOENT", f"truncate {path}": "ERR ENOENT"}


PROCPATHS = {
    **_rdwr("/proc/self/root/../canary"),
    **_rdwr("/proc/self/root/../../../canary-dir/secret"),
    "read /proc/self/root/../twin": "OK <twin>",
    **_rdwr("/proc/self/cwd/../../../../canary"),
    "read /proc/self/cwd/../../../../twin": "OK <twin>",
    **_rdwr("/proc/thread-self/root/../canary"),
    **_rdwr("/proc/self/task/TID/root/../canary"),
    **_rdwr("/proc/CHILD/root/../canary"),
    **_rdwr("/proc/CHILD/cwd/../../../canary"),
    "read /proc/CHILD/cwd/../../../twin": "OK <twin>",
    **_rdwr("/proc/CHILD/fd/ROOT/../canary"),
    **_rdwr("/proc/1/root/../canary"),
    **_rdwr("/dev/fd/ROOT/../canary"),
    **_rdwr("/dev/fd/DEEP/../../../../canary"),
    "read /dev/fd/DEEP/../../../../twin": "OK <twin>",
    **_rdwr("/proc/self/fd/OPATH/../../canary"),
    **_rdwr("/dev/fd/DEEP/../../../../../../canary-dir/secret"),
    "/proc/self/root/.. is /": "same",
    "/proc/CHILD/root/../.. is /": "same",
    "/dev/fd/ROOT/.. is /": "same",
    "listing /proc/self/root/../..": "has twin, no rootfs",
    "readlink /proc/self/root": "/",
    "readlink /proc/CHILD/cwd": "/tmp/P/a",
    "create /proc/self/root/../created-1": "OK",
    "create /proc/self/cwd/../../../../created-2": "OK",
    "create /proc/CHILD/root/../../created-3": "OK",
    "create /proc/CHILD/cwd/../../../created-4": "OK",
    "create /dev/fd/DEEP/../../../../created-5": "OK",
    "mkdir /proc/self/root/../mkdir-6": "OK",
    "symlink /proc/self/root/../symlink-7": "OK",
    "rename to /proc/self/root/../../renamed-8": "OK",
    "mknod fifo /proc/thread-self/root/../fifo-9": "OK",
    "create /proc/self/root/../canary": "OK",            # the host has a canary there; the rootfs not
    "read /proc/self/root/../canary after creating it": "OK CREATED INSIDE",
    "mkdir /dev/fd/ROOT/../canary-dir": "OK",
    "create /proc/CHILD/cwd/../../../canary-dir/secret": "OK",
    "unlink /proc/self/root/../only-on-host": "ERR ENOENT",
}


@pytest.mark.parametrize("mode", MODES)
def test_proc_and_dev_fd_paths_stay_in_the_rootfs(env: Env, tmp_path: Path, mode: str) -> None:
    """Reading, writing, truncating and creating through /proc magic links and /dev/fd/N with
    `..` after them: `..` of the root is the root, however it is reached."""
    env.start()
    p = env.run(tmp_path, mode, ["/probe/procpaths", str(env.world.base), env.tag])
    got = env.check(p, mode)
    assert got == env.expect(PROCPATHS), p.stdout + p.stderr
    if mode == "memory":
        return
    r, t = env.rootfs, env.tag
    made = [f"created-{t}-{i}" for i in range(1, 6)] + [f"mkdir-{t}-6", f"symlink-{t}-7", f"renamed-{t}-8",
                                                         f"fifo-{t}-9", "canary", "canary-dir"]
    assert [n for n in made if not os.path.lexists(r / n)] == [], sorted(os.listdir(r))
    assert (r / "canary").read_text() == "CREATED INSIDE\n"
    assert (r / "canary-dir" / "secret").exists()


# ===========================================================================
# 5. openat on directory fds with `..` chains
# ===========================================================================

DOTDOT = {
    "openat(deep, ..*DEPTH) is /tmp/D": "same",
    "openat(deep, ..*(DEPTH+2)) is /": "same",
    "openat(deep, ..*(DEPTH+10)) is /": "same",
    "openat(deep, ..*(DEPTH+3)/canary)": "ERR ENOENT",
    "openat(deep, ..*(DEPTH+3)/twin)": "OK <twin>",
    "openat(deep, ..*(DEPTH+10)/canary-dir/secret)": "ERR ENOENT",
    "openat(deep, (./.././)*(DEPTH+10)canary)": "ERR ENOENT",
    "faccessat(deep, ..*(DEPTH+3)/canary)": "ERR ENOENT",
    "fstatat(deep, ..*(DEPTH+3)/canary)": "ERR ENOENT",
    "create openat(deep, ..*(DEPTH+3)/escaped)": "OK",
    "mkdirat(deep, ..*(DEPTH+3)/escaped)": "OK",
    "openat(O_PATH deep, ..*(DEPTH+10)) is /": "same",
    "openat(O_PATH deep, ..*(DEPTH+10)/canary)": "ERR ENOENT",
    "openat(O_PATH deep, ..*(DEPTH+10)/twin)": "OK <twin>",
    "openat(bind deep, ..*DEPTH) is /data": "same",
    "openat(bind deep, ..*(DEPTH+1)) is /": "same",
    "openat(bind deep, ..*(DEPTH+1)/sibling)": "ERR ENOENT",
    "openat(bind deep, ..*(DEPTH+1)/twin)": "OK <twin>",
    "openat(bind deep, ..*(DEPTH+10)/canary)": "ERR ENOENT",
    "openat(O_PATH bind deep, ..*(DEPTH+1)/sibling)": "ERR ENOENT",
    "openat(O_PATH bind deep, ..*(DEPTH+2)/inner/f1)": "ERR ENOENT",
    "openat(O_PATH bind deep, ..*(DEPTH+10)) is /": "same",
    "openat(O_PATH /data, ../sibling)": "ERR ENOENT",
    "openat(O_PATH /data, ../twin)": "OK <twin>",
    "create openat(O_PATH bind deep, ..*(DEPTH+1)/escaped)": "OK",
    "openat2(deep, ..*(DEPTH+10)/twin, RESOLVE_BENEATH)": "ERR EXDEV",
    "openat2(deep, ..*(DEPTH+10)/canary, RESOLVE_IN_ROOT)": "ERR ENOENT",
    "openat2(deep, ..*(DEPTH+10)/twin, RESOLVE_IN_ROOT)": "ERR ENOENT",
    "openat2(bind deep, ..*(DEPTH+1)/sibling)": "ERR ENOENT",
    "openat2(bind deep, ..*(DEPTH+1)/twin, RESOLVE_NO_XDEV)": "ERR EXDEV",
    "rename /tmp/D/d1 to /mv": "OK",
    "after the move, openat(deep, ..*(DEPTH-1)) is /mv": "same",
    "after the move, openat(deep, ..*DEPTH) is /": "same",
    "after the move, openat(deep, ..*(DEPTH+1)/canary)": "ERR ENOENT",
    "after the move, openat(O_PATH deep, ..*DEPTH/twin)": "OK <twin>",
    "after the move, chdir(the old path)": "ERR ENOENT",
    "after the move, fchdir(deep) then ..*(DEPTH+1)": "/",
    "rename /mv back": "OK",
    "rename /data/b1 to /data/bm/b1": "OK",
    "after the move, openat(bind deep, ..*(DEPTH+1)) is /data": "same",
    "after the move, openat(bind deep, ..*(DEPTH+2)) is /": "same",
    "rename /data/bm/b1 back": "OK",
    "race moves": "many",
    "race canary opened": "0",
    "race canary other errors": "0",
    "race bind sibling opened": "0",
    "race ..*(DEPTH+10) not /": "0",
    "race saw both places": "yes",
    "after the race, chdir ..*(DEPTH+10)": "/",
}

# The classic chroot escape (chroot a subdirectory, fchdir to a directory fd above it, climb,
# chroot "."): it leaves a chroot on Linux, so it is not run natively; in a container it
# ends at the container's root.
CHROOT_ESCAPE = {
    "chroot /tmp/jail": "OK",
    "fchdir(old root)": "OK",
    "chdir ..*60": "OK",
    "chroot .": "OK",
    "after the chroot escape, / is the sandbox's /": "same",
    "after the chroot escape, / is the old root": "yes",
    "after the chroot escape, canary": "ERR ENOENT",
    "after the chroot escape, ../canary": "ERR ENOENT",
    "after the chroot escape, twin": "OK <twin>",
}


@pytest.mark.parametrize("mode", MODES)
def test_dot_dot_chains_from_directory_fds_stay_in_the_sandbox(env: Env, tmp_path: Path, mode: str) -> None:
    """A 50-deep tree in the rootfs and in a bind mount; `..` chains longer than the tree from
    fds (O_RDONLY, O_PATH) at its bottom, before and after the tree moved, and while another
    thread moves it (between depth 3 and depth 1, so a wrong count of `..` would show)."""
    w = env.world
    env.add_bind_host(tmp_path)
    env.bind(env.h, "/data")
    env.start()
    p = env.run(tmp_path, mode, ["/probe/dotdot", str(w.base), env.tag, str(DEPTH), str(DOTDOT_RACE_ITERATIONS),
                                 mode])
    got = env.check(p, mode)
    want = env.expect(DOTDOT)
    if mode == "native":
        # Natively the mover may not get a turn before the main thread is done.
        got.pop("race saw both places", None)
        want.pop("race saw both places")
    else:
        want.update(env.expect(CHROOT_ESCAPE))
    assert got == want, p.stdout + p.stderr
    assert [n for n in os.listdir(env.h) if "escaped" in n] == []
    if mode != "memory":
        r, t = env.rootfs, env.tag
        assert (r / f"escaped-{t}-1").is_file() and (r / f"escaped-{t}-2").is_dir() and (r / f"escaped-{t}-3").is_file()
