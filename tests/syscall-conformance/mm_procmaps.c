/*
 * mm_procmaps: /proc/self/maps lines for known mappings, in the format
 * glibc, CPython and JVM-style readers parse:
 *   start-end perms offset major:minor inode [path]
 * (hex addresses, %08lx offset, %02x:%02x device, then the path column
 * starting at the 74th character for 64-bit addresses... readers split on
 * spaces, so this checks fields, not padding).
 *
 * An anonymous private RW mapping is "rw-p 00000000 00:00 0" with no path;
 * PROT_NONE is "---p"; a shared anonymous one is "rw-s" named
 * "/dev/zero (deleted)"; a private file mapping at offset one page of a
 * scratch file is "r--p 00001000", with the file's device and inode (as
 * fstat says) and its path; an executable mapping is "r-xp"; mprotect of the
 * middle page splits one line into three; munmap removes the line; the
 * lines are sorted and do not overlap; [heap] and [stack] are there.
 */
#include "mm.h"
#include <sys/sysmacros.h>

struct line {
	unsigned long start, end, off, inode;
	unsigned maj, min;
	char perms[8], path[256];
};

static struct line lines[512];
static int nlines;

static void read_maps(void)
{
	static char text[1 << 17];
	int fd = open("/proc/self/maps", O_RDONLY);
	size_t len = 0;
	ssize_t n;
	char *s;

	nlines = 0;
	if (fd < 0)
		return;
	while ((n = read(fd, text + len, sizeof(text) - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	text[len] = 0;
	for (s = text; *s && nlines < 512; ) {
		struct line *l = &lines[nlines];
		char *nl = strchr(s, '\n');
		int used = 0;
		if (nl)
			*nl = 0;
		l->path[0] = 0;
		if (sscanf(s, "%lx-%lx %7s %lx %x:%x %lu %n", &l->start, &l->end, l->perms, &l->off,
			   &l->maj, &l->min, &l->inode, &used) >= 7) {
			snprintf(l->path, sizeof(l->path), "%s", s + used);
			nlines++;
		}
		if (!nl)
			break;
		s = nl + 1;
	}
}

static struct line *find(void *addr)
{
	for (int i = 0; i < nlines; i++)
		if (lines[i].start <= (unsigned long)addr && (unsigned long)addr < lines[i].end)
			return &lines[i];
	return NULL;
}

static int is(struct line *l, void *start, long len, const char *perms, unsigned long off)
{
	return l && l->start == (unsigned long)start && l->end == (unsigned long)start + (unsigned long)len &&
	       strcmp(l->perms, perms) == 0 && l->off == off;
}

/* The page at addr is in a line with these perms (it may have merged with a neighbour). */
static int within(struct line *l, void *addr, const char *perms)
{
	return l && l->start <= (unsigned long)addr && (unsigned long)addr + PG <= l->end && strcmp(l->perms, perms) == 0;
}

static int named(const char *path)
{
	for (int i = 0; i < nlines; i++)
		if (strcmp(lines[i].path, path) == 0)
			return 1;
	return 0;
}

int main(void)
{
	char *anon, *none, *shared, *filemap, *exec, *hole;
	struct line *l;
	struct stat st;
	int fd, sorted;

	tap_plan(16);
	/* Guard pages (PROT_NONE) on both sides, so the kernel cannot merge it with a neighbour. */
	hole = sys_mmap(NULL, 5 * PG, PROT_NONE, ANON_PRIV, -1, 0);
	anon = sys_mmap(hole + PG, 3 * PG, RW, ANON_PRIV | MAP_FIXED, -1, 0);
	none = sys_mmap(NULL, PG, PROT_NONE, ANON_PRIV, -1, 0);
	shared = sys_mmap(NULL, 2 * PG, RW, ANON_SHARED, -1, 0);
	exec = sys_mmap(NULL, PG, PROT_READ | PROT_EXEC, ANON_PRIV, -1, 0);
	fd = scratch_file("mm_procmaps.tmp", 3 * PG);
	fstat(fd, &st);
	filemap = sys_mmap(NULL, 2 * PG, PROT_READ, MAP_PRIVATE, fd, PG);
	read_maps();
	check(nlines > 5, "/proc/self/maps parses into lines (%d)", nlines);

	sorted = 1;
	for (int i = 1; i < nlines; i++)
		if (lines[i].start < lines[i - 1].end || lines[i].start >= lines[i].end)
			sorted = 0;
	check(sorted, "the lines are sorted, non-empty and do not overlap");

	l = find(anon);
	check(is(l, anon, 3 * PG, "rw-p", 0), "anonymous private: start-end rw-p 00000000");
	check(l && l->maj == 0 && l->min == 0 && l->inode == 0 && l->path[0] == 0, "anonymous: 00:00 0 and no path");
	check(within(find(none), none, "---p"), "PROT_NONE: ---p");
	l = find(shared);
	check(is(l, shared, 2 * PG, "rw-s", 0), "shared anonymous: rw-s");
	check_str(l ? l->path : NULL, "/dev/zero (deleted)", "shared anonymous is named /dev/zero (deleted)");
	check(within(find(exec), exec, "r-xp"), "PROT_READ|PROT_EXEC: r-xp");
	l = find(filemap);
	check(is(l, filemap, 2 * PG, "r--p", PG), "file mapping at offset one page: r--p 00001000");
	check(l && l->inode == st.st_ino, "its inode is the file's (%lu)", l ? l->inode : 0);
	check(l && makedev(l->maj, l->min) == st.st_dev, "its device is the file's (%x:%x)", l ? l->maj : 0, l ? l->min : 0);
	check_str(l ? l->path : NULL, "/tmp/mm_procmaps.tmp", "its path is the file's");

	sys_mprotect(anon + PG, PG, PROT_READ);
	read_maps();
	check(is(find(anon), anon, PG, "rw-p", 0) && is(find(anon + PG), anon + PG, PG, "r--p", 0) &&
	      is(find(anon + 2 * PG), anon + 2 * PG, PG, "rw-p", 0),
	      "mprotect of the middle page splits the line into three");
	sys_munmap(anon, 3 * PG);
	read_maps();
	check(find(anon) == NULL && find(anon + 2 * PG) == NULL, "munmap removes the lines");
	check(named("[stack]"), "[stack] is listed");
	sbrk(PG);  /* make sure the heap exists */
	read_maps();
	check(named("[heap]"), "[heap] is listed");
	close(fd);
	scratch_remove("mm_procmaps.tmp");
	return tap_done();
}
