/*
 * ids_set: the setuid family -- setuid setgid setreuid setregid setresuid
 * setresgid setfsuid setfsgid setgroups -- and what each leaves in
 * getresuid/getresgid/getgroups, run in children so the parent stays root.
 *
 * Root may set any id; an unprivileged process may only move among its real,
 * effective and saved ids (EPERM otherwise); setgroups needs CAP_SETGID;
 * setfsuid returns the previous fsuid and refuses silently.
 */
#include "tap.h"
#include <grp.h>
#include <sys/fsuid.h>
#include <sys/wait.h>

static int in_child(int (*fn)(void))
{
	int st;
	pid_t pid = fork();
	if (pid == 0)
		_exit(fn());
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

static int resuid_is(uid_t r, uid_t e, uid_t s)
{
	uid_t a, b, c;
	getresuid(&a, &b, &c);
	return a == r && b == e && c == s;
}

static int root_setresuid(void)
{
	if (setresuid(1000, 2000, 3000))
		return 1;
	return resuid_is(1000, 2000, 3000) ? 0 : 2;
}

static int unpriv_moves(void)
{
	if (setresuid(1000, 2000, 3000))
		return 1;
	if (setresuid(-1, 3000, -1) || !resuid_is(1000, 3000, 3000 ))
		return 2;                       /* effective := saved: allowed */
	if (setuid(4000) != -1 || errno != EPERM)
		return 3;                       /* not one of r/e/s: EPERM */
	if (setreuid(3000, 1000) || !resuid_is(3000, 1000, 1000))
		return 4;                       /* ruid := e, euid := r; the saved id follows the new euid */
	if (setresuid(5, -1, -1) != -1 || errno != EPERM)
		return 5;
	return 0;
}

static int setuid_root_drops_all(void)
{
	if (setuid(1234))
		return 1;
	if (!resuid_is(1234, 1234, 1234))
		return 2;
	if (setuid(0) != -1 || errno != EPERM)
		return 3;
	return 0;
}

static int groups(void)
{
	gid_t g[3] = {10, 20, 30}, got[8];
	gid_t r, e, s;
	if (setgroups(3, g))
		return 1;
	if (getgroups(8, got) != 3 || got[1] != 20)
		return 2;
	if (getgroups(1, got) != -1 || errno != EINVAL)
		return 3;
	if (setresgid(7, 8, 9))
		return 4;
	getresgid(&r, &e, &s);
	if (r != 7 || e != 8 || s != 9)
		return 5;
	if (setregid(9, -1))
		return 6;
	if (setgid(42))
		return 7;
	getresgid(&r, &e, &s);
	if (r != 42 || e != 42 || s != 42)
		return 8;
	if (setuid(1000) || setgroups(0, NULL) != -1 || errno != EPERM)
		return 9;                       /* no CAP_SETGID any more */
	if (setgid(43) != -1 || errno != EPERM)
		return 10;
	return 0;
}

static int fsuid(void)
{
	if (setfsuid(77) != 0)
		return 1;                       /* returns the previous fsuid (root's 0) */
	if (setfsuid(-1) != 77)
		return 2;                       /* -1 only queries */
	if (setfsgid(88) != 0 || setfsgid(-1) != 88)
		return 3;
	if (setresuid(1000, 1000, 1000))
		return 4;
	if (setfsuid(5) != 1000 || setfsuid(-1) != 1000)
		return 5;                       /* unprivileged: refused, silently */
	return 0;
}

int main(void)
{
	tap_plan(6);
	check_eq(getuid(), 0, "the program runs as root");
	check_eq(in_child(root_setresuid), 0, "root: setresuid to three different ids");
	check_eq(in_child(unpriv_moves), 0, "unprivileged: moves among r/e/s only, EPERM otherwise");
	check_eq(in_child(setuid_root_drops_all), 0, "root's setuid sets all three ids and cannot come back");
	check_eq(in_child(groups), 0, "setgroups/getgroups, setresgid/setregid/setgid, EPERM without CAP_SETGID");
	check_eq(in_child(fsuid), 0, "setfsuid/setfsgid return the old id; unprivileged changes refused");
	return tap_done();
}
