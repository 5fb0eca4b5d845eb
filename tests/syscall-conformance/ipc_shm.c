/*
 * ipc_shm.c - System V shared memory: shmget shmat shmdt shmctl, /proc/sysvipc/shm,
 * /proc/self/maps, and their IPC namespace.
 *
 * The program first enters a new IPC namespace (unshare(CLONE_NEWIPC), as root), so natively
 * and in the sandbox it starts from an empty set with Linux's default limits.  Sharing is
 * checked between two attachments of one process and across fork (an attachment made before
 * the fork, and one made by the child); SHM_RDONLY is checked by a child that writes and dies
 * of SIGSEGV.
 */
#include "tap.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>

#ifndef SHM_STAT_ANY
#define SHM_STAT_ANY 15
#endif
#ifndef SHM_EXEC
#define SHM_EXEC 0100000
#endif

static const key_t KEY = 0x5a5b0001;

static long sget(key_t key, size_t size, int flags) { return syscall(SYS_shmget, key, size, flags); }
static void *sat(int id, const void *addr, int flags) { return (void *)syscall(SYS_shmat, id, addr, flags); }
static long sdt(const void *addr) { return syscall(SYS_shmdt, addr); }
static long sctl(int id, int cmd, void *buf) { return syscall(SYS_shmctl, id, cmd, buf); }

static unsigned long nattch(int id)
{
	struct shmid_ds ds;
	if (sctl(id, IPC_STAT, &ds) != 0)
		return (unsigned long)-1;
	return ds.shm_nattch;
}

static int wait_status(pid_t pid)
{
	int st = 0;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return st;
}

static void read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	ssize_t r = fd < 0 ? -1 : read(fd, buf, size - 1);
	buf[r > 0 ? r : 0] = 0;
	if (fd >= 0)
		close(fd);
}

int main(int argc, char **argv)
{
	static char buf[16384];
	struct shmid_ds ds;
	struct shminfo si;
	struct shm_info sinfo;
	long page = sysconf(_SC_PAGESIZE);
	int id, priv, st;
	pid_t pid;

	if (argc == 3 && strcmp(argv[1], "after-exec") == 0)      /* re-executed by the exec check */
		_exit(nattch(atoi(argv[2])) == 1 ? 0 : 1);
	tap_plan(93);

	check_ok(unshare(CLONE_NEWIPC), "unshare(CLONE_NEWIPC) as root");

	/* An empty namespace with Linux's default limits. */
	check_eq(sctl(0, SHM_INFO, &sinfo), 0, "SHM_INFO in a new namespace returns 0");
	check(sinfo.used_ids == 0 && sinfo.shm_tot == 0, "SHM_INFO: no segments, no pages");
	check_eq(sctl(0, IPC_INFO, &si), 0, "IPC_INFO returns 0");
	check(si.shmmin == 1 && si.shmmni == 4096 && si.shmseg == 4096 && si.shmmax == 0xfffffffffeffffffUL &&
	      si.shmall == 0xfffffffffeffffffUL, "IPC_INFO: shmmin 1, shmmni/shmseg 4096, shmmax/shmall ULONG_MAX-2^24");
	read_file("/proc/sysvipc/shm", buf, sizeof(buf));
	check_str(buf, "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid"
		  "      atime      dtime      ctime                   rss                  swap\n",
		  "/proc/sysvipc/shm: only its header");

	/* shmget */
	check_errno(sget(IPC_PRIVATE, 0, 0600), EINVAL, "size 0 is EINVAL (below SHMMIN)");
	check_errno(sget(IPC_PRIVATE, (size_t)-1, 0600), EINVAL, "size ULONG_MAX is EINVAL (above SHMMAX)");
	check_errno(sget(IPC_PRIVATE, (size_t)1 << 62, 0600), ENOMEM, "2^62 bytes (accounted) is ENOMEM");
	priv = check_ok(sget(IPC_PRIVATE, 10000, 0600), "shmget IPC_PRIVATE 10000 bytes");
	check(sget(IPC_PRIVATE, 100, 0600) != priv, "a second IPC_PRIVATE segment is another one");
	check_errno(sget(KEY, 4096, 0600), ENOENT, "a missing key without IPC_CREAT is ENOENT");
	id = check_ok(sget(KEY, 8192, IPC_CREAT | 0640), "shmget IPC_CREAT of a key, 8192 bytes");
	check_eq(sget(KEY, 8192, IPC_CREAT | 0600), id, "IPC_CREAT of an existing key returns it");
	check_eq(sget(KEY, 100, 0), id, "a smaller size for an existing key returns it");
	check_eq(sget(KEY, 0, 0), id, "size 0 for an existing key returns it");
	check_errno(sget(KEY, 8193, 0), EINVAL, "a larger size than the existing segment is EINVAL");
	check_errno(sget(KEY, 4096, IPC_CREAT | IPC_EXCL | 0600), EEXIST, "IPC_CREAT|IPC_EXCL of an existing key");

	/* IPC_STAT of a new segment */
	time_t before = time(NULL);
	check_ok(sctl(id, IPC_STAT, &ds), "IPC_STAT");
	check(ds.shm_perm.__key == KEY && ds.shm_perm.uid == 0 && ds.shm_perm.cuid == 0 && ds.shm_perm.gid == 0 &&
	      ds.shm_perm.cgid == 0 && ds.shm_perm.mode == 0640, "shm_perm: key, ids 0, mode 0640");
	check(ds.shm_segsz == 8192 && ds.shm_nattch == 0 && ds.shm_cpid == getpid() && ds.shm_lpid == 0 &&
	      ds.shm_atime == 0 && ds.shm_dtime == 0, "shm_segsz 8192, nattch 0, cpid ours, lpid/atime/dtime 0");
	check(ds.shm_ctime >= before - 5 && ds.shm_ctime <= before + 5, "shm_ctime is now");
	check_errno(sctl(id + 1, IPC_STAT, &ds), EINVAL, "IPC_STAT of an id not in use is EINVAL");
	check_errno(sctl(-1, IPC_STAT, &ds), EINVAL, "a negative id is EINVAL");
	check_errno(sctl(id, -1, &ds), EINVAL, "a negative command is EINVAL");
	check_errno(sctl(id, 99, &ds), EINVAL, "an unknown command is EINVAL");
	check_errno(sctl(id, IPC_STAT, (void *)1), EFAULT, "IPC_STAT into a bad pointer is EFAULT");
	check_errno(sctl(id, IPC_SET, (void *)1), EFAULT, "IPC_SET from a bad pointer is EFAULT");

	/* shmat: two attachments of one process share the pages */
	char *a = sat(id, NULL, 0);
	check(a != (void *)-1 && ((uintptr_t)a % page) == 0, "shmat at an address the kernel chooses");
	char *b = sat(id, NULL, 0);
	check(b != (void *)-1 && b != a, "a second attachment elsewhere");
	check_eq(nattch(id), 2, "shm_nattch 2");
	check(a[0] == 0 && a[8191] == 0, "a new segment reads zero");
	strcpy(a, "through a");
	b[5000] = 'B';
	check(strcmp(b, "through a") == 0 && a[5000] == 'B', "a write through one attachment is seen by the other");
	sctl(id, IPC_STAT, &ds);
	check(ds.shm_lpid == getpid() && ds.shm_atime >= before - 5, "shm_lpid ours, shm_atime set");

	/* /proc/sysvipc/shm and /proc/self/maps */
	read_file("/proc/sysvipc/shm", buf, sizeof(buf));
	{
		char want[200];
		snprintf(want, sizeof(want), "%10d %10d  %4o %21lu %5u %5u  %5lu %5u %5u %5u %5u ", KEY, id, 0640,
			 8192UL, (unsigned)getpid(), (unsigned)getpid(), 2UL, 0U, 0U, 0U, 0U);
		check(strstr(buf, want) != NULL, "/proc/sysvipc/shm: key id perms size cpid lpid nattch ids");
	}
	read_file("/proc/self/maps", buf, sizeof(buf));
	{
		char want[200];
		snprintf(want, sizeof(want), "%lx-%lx rw-s 00000000 00:01 %d", (unsigned long)a,
			 (unsigned long)a + 8192, id);
		char *line = strstr(buf, want);
		check(line != NULL, "/proc/self/maps: the attachment rw-s, offset 0, dev 00:01, inode the shmid");
		char name[40];
		snprintf(name, sizeof(name), "/SYSV%08x (deleted)\n", KEY);
		check(line != NULL && strstr(line, name) == strchr(line, '/'), "... named /SYSV%%08x (deleted)");
	}

	/* shmdt */
	check_errno(sdt(a + 1), EINVAL, "shmdt of an unaligned address is EINVAL");
	check_errno(sdt(a + page), EINVAL, "shmdt inside an attachment is EINVAL");
	check_errno(sdt((void *)page), EINVAL, "shmdt where nothing is attached is EINVAL");
	check_ok(mprotect(b, page, PROT_READ), "mprotect of the first page of the second attachment");
	check_eq(nattch(id), 3, "a split attachment counts twice: shm_nattch 3");
	check_ok(sdt(b), "shmdt of the second attachment (both pieces)");
	check_eq(nattch(id), 1, "shm_nattch 1");
	sctl(id, IPC_STAT, &ds);
	check(ds.shm_dtime >= before - 5, "shm_dtime set");
	check_errno(sdt(b), EINVAL, "shmdt again is EINVAL");

	/* fork: the child inherits the attachment; both see each other's writes */
	pid = fork();
	if (pid == 0) {
		int ok = nattch(id) == 2 && strcmp(a, "through a") == 0;
		strcpy(a + 100, "from the child");
		char *c = sat(id, NULL, 0);
		ok &= c != (void *)-1 && c[5000] == 'B';
		if (c != (void *)-1)
			c[6000] = 'C';
		_exit(ok ? 0 : 1);
	}
	st = wait_status(pid);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child sees the inherited attachment, nattch 2");
	check(strcmp(a + 100, "from the child") == 0 && a[6000] == 'C', "the parent sees the child's writes");
	check_eq(nattch(id), 1, "the child's attachments went with it: nattch 1");

	/* exec detaches: the child (inherited attachment and one of its own: nattch 3) execs, and the
	 * new image sees only the parent's attachment */
	pid = fork();
	if (pid == 0) {
		char ids[16];
		snprintf(ids, sizeof(ids), "%d", id);
		char *av[] = {argv[0], "after-exec", ids, NULL};
		if (sat(id, NULL, 0) == (void *)-1 || nattch(id) != 3)
			_exit(2);
		execv("/proc/self/exe", av);
		_exit(3);
	}
	st = wait_status(pid);
	check_eq(WIFEXITED(st) ? WEXITSTATUS(st) : 100 + st, 0, "exec detaches the attachments: nattch 1 after it");

	/* SHM_RDONLY: reads work, a write faults */
	char *r = sat(id, NULL, SHM_RDONLY);
	check(r != (void *)-1 && strcmp(r, "through a") == 0, "SHM_RDONLY attachment reads the pages");
	check_errno(mprotect(r, page, PROT_READ | PROT_WRITE), EACCES, "mprotect of it to writable is EACCES");
	pid = fork();
	if (pid == 0) {
		r[0] = 'X';
		_exit(0);
	}
	st = wait_status(pid);
	check(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "a write through SHM_RDONLY is SIGSEGV");
	check(a[0] == 't', "... and changed nothing");
	check_ok(sdt(r), "shmdt of the SHM_RDONLY attachment");

	/* Given addresses, SHM_RND, SHM_REMAP */
	char *area = mmap(NULL, 8 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check_errno((long)sat(id, area + 3 * page, 0), EINVAL, "an address over a mapping without SHM_REMAP is EINVAL");
	check_errno((long)sat(id, area + 10, 0), EINVAL, "an unaligned address without SHM_RND is EINVAL");
	check_errno((long)sat(id, NULL, SHM_REMAP), EINVAL, "SHM_REMAP without an address is EINVAL");
	char *p = sat(id, area + 2 * page + 10, SHM_RND | SHM_REMAP);
	check(p == area + 2 * page && strcmp(p, "through a") == 0, "SHM_RND|SHM_REMAP rounds down and replaces");
	check_ok(sdt(p), "shmdt of it");
	munmap(area, 8 * page);
	p = sat(id, area, 0);
	check(p == area, "an address where nothing is mapped is used as given");
	check_ok(sdt(p), "shmdt of it");
	p = sat(id, NULL, SHM_EXEC);
	check(p != (void *)-1, "SHM_EXEC attaches (as root)");
	sdt(p);

	/* shmat errors */
	check_errno((long)sat(-1, NULL, 0), EINVAL, "shmat of a negative id is EINVAL");
	check_errno((long)sat(id + 1, NULL, 0), EINVAL, "shmat of an id not in use is EINVAL");

	/* SHM_STAT, SHM_STAT_ANY, SHM_INFO */
	int idx_stat = sctl(id & 0x7fff, SHM_STAT, &ds);
	check_eq(idx_stat, id, "SHM_STAT by index returns the id");
	check_eq(sctl(id & 0x7fff, SHM_STAT_ANY, &ds), id, "SHM_STAT_ANY by index returns the id");
	check_errno(sctl(1000, SHM_STAT, &ds), EINVAL, "SHM_STAT of an unused index is EINVAL");
	long maxidx = sctl(0, SHM_INFO, &sinfo);
	check(maxidx == 2 && sinfo.used_ids == 3 && sinfo.shm_tot == 3 + 1 + 2, "SHM_INFO: highest index 2, 3 segments, 6 pages");

	/* SHM_LOCK, SHM_UNLOCK, IPC_SET */
	check_ok(sctl(id, SHM_LOCK, NULL), "SHM_LOCK as root");
	sctl(id, IPC_STAT, &ds);
	check(ds.shm_perm.mode == (0640 | SHM_LOCKED), "mode has SHM_LOCKED");
	check_ok(sctl(id, SHM_UNLOCK, NULL), "SHM_UNLOCK");
	sctl(id, IPC_STAT, &ds);
	ds.shm_perm.uid = 65534;
	ds.shm_perm.mode = 0600;
	check_ok(sctl(id, IPC_SET, &ds), "IPC_SET uid 65534 mode 0600");
	sctl(id, IPC_STAT, &ds);
	check(ds.shm_perm.uid == 65534 && ds.shm_perm.cuid == 0 && ds.shm_perm.mode == 0600, "IPC_SET took effect");

	/* Another user: EACCES by mode, EPERM for IPC_SET/IPC_RMID */
	pid = fork();
	if (pid == 0) {
		if (setgid(65533) || setuid(65533))
			_exit(3);
		if (!(sget(KEY, 0, 0400) == -1 && errno == EACCES))
			_exit(10);
		if (!(sat(id, NULL, SHM_RDONLY) == (void *)-1 && errno == EACCES))
			_exit(11);
		if (!(sctl(id, IPC_STAT, &ds) == -1 && errno == EACCES))
			_exit(12);
		if (sctl(id & 0x7fff, SHM_STAT_ANY, &ds) != id)
			_exit(13);
		if (!(sctl(id, IPC_RMID, NULL) == -1 && errno == EPERM))
			_exit(14);
		if (!(sctl(id, SHM_LOCK, NULL) == -1 && errno == EPERM))
			_exit(15);
		_exit(0);
	}
	st = wait_status(pid);
	check_eq(WIFEXITED(st) ? WEXITSTATUS(st) : 100 + st, 0,
	      "as uid 65533: EACCES for shmget/shmat/IPC_STAT, SHM_STAT_ANY works, EPERM for IPC_RMID/SHM_LOCK");

	/* IPC_RMID with an attachment left */
	check_ok(sctl(id, IPC_RMID, NULL), "IPC_RMID with one attachment");
	sctl(id, IPC_STAT, &ds);
	check(ds.shm_perm.__key == IPC_PRIVATE && (ds.shm_perm.mode & SHM_DEST) && ds.shm_nattch == 1,
	      "still there: key IPC_PRIVATE, mode SHM_DEST, nattch 1");
	check_errno(sget(KEY, 0, 0), ENOENT, "its key no longer finds it");
	check(strcmp(a, "through a") == 0, "the attachment still works");
	p = sat(id, NULL, 0);
	check(p != (void *)-1 && strcmp(p, "through a") == 0, "shmat of a SHM_DEST segment works (Linux)");
	sdt(p);
	check_ok(sdt(a), "shmdt of the last attachment");
	check_errno(sctl(id, IPC_STAT, &ds), EINVAL, "then the segment is gone: EINVAL");
	check_ok(sctl(priv, IPC_RMID, NULL), "IPC_RMID of an unattached segment");
	check_errno(sctl(priv, IPC_STAT, &ds), EINVAL, "it is gone at once");
	check_errno(sctl(priv, IPC_RMID, NULL), EINVAL, "IPC_RMID again is EINVAL");

	/* Hostile input */
	check_errno((long)sat(sget(IPC_PRIVATE, 4096, 0600), (void *)-4096L, 0), EINVAL,
		    "shmat at the top of the address space is EINVAL");
	int h = sget(IPC_PRIVATE, 4096, 0600);
	check_errno((long)sat(h, (void *)(1UL << 47), 0), ENOMEM, "shmat above the user address space is ENOMEM");
	check_errno((long)sat(h, (void *)100, SHM_RND | SHM_REMAP), EINVAL, "SHM_RND to address 0 with SHM_REMAP");
	check_errno(sdt(NULL), EINVAL, "shmdt(NULL) is EINVAL");
	check_errno(sget(IPC_PRIVATE, (size_t)1 << 63, 0600), EINVAL, "2^63 bytes (a negative loff_t) is EINVAL");
	check_errno(sctl(0, SHM_INFO, (void *)-4096L), EFAULT, "SHM_INFO into a kernel address is EFAULT");
	read_file("/proc/sys/vm/nr_hugepages", buf, sizeof(buf));
	if (atoi(buf) > 0)               /* a host with huge pages reserved: Linux would succeed */
		tap_printf("ok %d - # SKIP the host has huge pages reserved\n", ++tap_count);
	else
		check_errno(sget(IPC_PRIVATE, 4096, 0600 | SHM_HUGETLB), ENOMEM,
			    "SHM_HUGETLB without huge pages reserved is ENOMEM");
	struct rlimit rl = {1UL << 30, 1UL << 30};
	pid = fork();
	if (pid == 0) {
		int big = sget(IPC_PRIVATE, 2UL << 30, 0600 | SHM_NORESERVE);
		if (big < 0 || setrlimit(RLIMIT_AS, &rl))
			_exit(2);
		_exit(sat(big, NULL, 0) == (void *)-1 && errno == ENOMEM ? 0 : 1);
	}
	st = wait_status(pid);
	check_eq(WIFEXITED(st) ? WEXITSTATUS(st) : 100 + st, 0, "shmat past RLIMIT_AS is ENOMEM");

	return tap_done();
}
