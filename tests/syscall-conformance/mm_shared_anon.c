/*
 * mm_shared_anon: MAP_SHARED|MAP_ANONYMOUS memory is shared across fork;
 * MAP_PRIVATE anonymous memory is copied.
 *
 * The child sees what the parent wrote before the fork; the parent sees what
 * the child writes (after waitpid, and while both run, through a pipe
 * handshake); a private mapping's writes stay on their side; a shared
 * mapping made read-only in the child stays writable in the parent;
 * a shared mapping survives munmap of part of it (the rest still shared);
 * a grandchild's writes reach the grandparent.
 */
#include "mm.h"

static char *shared, *priv;
static int to_child[2], to_parent[2];

static int child_basic(void *arg)
{
	(void)arg;
	if (memcmp(shared, "before", 6) != 0 || memcmp(priv, "private", 7) != 0)
		return 1;
	memcpy(shared + 100, "from child", 10);
	memcpy(priv, "CHILDWR", 7);
	return 0;
}

static int grandchild(void *arg)
{
	(void)arg;
	memcpy(shared + 200, "grandchild", 10);
	return 0;
}

static int child_spawns(void *arg)
{
	(void)arg;
	return in_child(grandchild, NULL);
}

/* Ping-pong while both processes run: each waits for the other's write. */
static int child_pingpong(void *arg)
{
	char c;
	(void)arg;
	for (int i = 0; i < 5; i++) {
		if (read(to_child[0], &c, 1) != 1)
			return 1;
		if (shared[300] != 'A' + i)  /* the parent's write */
			return 2;
		shared[301] = (char)('a' + i);
		if (write(to_parent[1], "x", 1) != 1)
			return 3;
	}
	return 0;
}

static int child_tail(void *arg)
{
	(void)arg;
	memcpy(shared + PG + 5, "tail", 4);
	return 0;
}

static int child_protects(void *arg)
{
	(void)arg;
	return sys_mprotect(shared, PG, PROT_READ) == 0 ? 0 : 1;
}

int main(void)
{
	int ok, status;
	pid_t pid;
	char c;

	tap_plan(14);
	shared = sys_mmap(NULL, 4 * PG, RW, ANON_SHARED, -1, 0);
	check(shared != MAP_FAILED, "MAP_SHARED|MAP_ANONYMOUS of 4 pages");
	check(all_bytes(shared, 4 * PG, 0), "it is zero filled");
	priv = sys_mmap(NULL, PG, RW, ANON_PRIV, -1, 0);
	memcpy(shared, "before", 6);
	memcpy(priv, "private", 7);

	check_eq(in_child(child_basic, NULL), 0, "the child sees the parent's writes made before fork");
	check_mem(shared + 100, "from child", 10, "the parent sees the child's write to the shared mapping");
	check_mem(priv, "private", 7, "the child's write to a private mapping stays in the child");

	check_eq(in_child(child_spawns, NULL), 0, "a grandchild writes");
	check_mem(shared + 200, "grandchild", 10, "the grandparent sees the grandchild's write");

	ok = pipe(to_child) == 0 && pipe(to_parent) == 0;
	pid = fork();
	if (pid == 0)
		_exit(child_pingpong(NULL));
	for (int i = 0; ok && i < 5; i++) {
		shared[300] = (char)('A' + i);
		ok = write(to_child[1], "x", 1) == 1 && read(to_parent[0], &c, 1) == 1 && shared[301] == 'a' + i;
	}
	check(ok, "five round trips with both processes running see each other's writes");
	check(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "the ping-pong child exits 0 (status %#x)", status);

	check_eq(in_child(child_protects, NULL), 0, "the child mprotects the shared page read-only");
	shared[0] = 'W';
	check(shared[0] == 'W', "it stays writable in the parent");

	check_eq(sys_munmap(shared, PG), 0, "munmap the first shared page");
	check_eq(in_child(child_tail, NULL), 0, "a new child writes to the rest");
	check_mem(shared + PG + 5, "tail", 4, "the rest is still shared");
	return tap_done();
}
