/*
 * fuzz: random system calls against the sandbox, in the spirit of trinity and syzkaller.
 *
 *   fuzz SECONDS SEED PROCS THREADS      (only ever inside the sandbox: RUNSC_PY_FUZZ=1 must be set)
 *
 * PID 1 (the driver) keeps PROCS worker processes running for SECONDS; each worker runs THREADS
 * threads that make random syscalls for about a second, then the driver starts the next worker
 * with the next seed (seed = SEED * 1000003 + worker number, printed, so a run can be replayed).
 * Every number of the x86-64 table is called (0..511, implemented or not) and a few past it
 * (512, 547, the x32 bit, eax = -1, a number with the upper half of rax set).
 *
 * Arguments are drawn per position from classes of boundary values (the class of each is
 * recorded); half the calls take plausible classes (valid fds, the scratch buffer, structures,
 * paths, small numbers) in all positions but at most one, so they reach the handlers' real work: 0, small, -1, 2^31, 2^31-1, 2^32-1, 2^63-1, 2^63, page sizes, huge counts, valid
 * and random fds, addresses (a scratch buffer, its last bytes before an unmapped guard page,
 * unmapped, the ptrace stub's page, non-canonical, the kernel half, the vsyscall page), paths,
 * valid-looking structures (timespecs valid, huge and invalid; iovecs; sigsets; sockaddrs;
 * pollfds; msghdrs; sigactions; itimerspecs; rlimits...), flag sets, signal numbers, random.
 *
 * What a worker does to itself is its business: it may crash (a signal), hang (the driver
 * SIGKILLs it after its time), exec something.  The calls left out or tamed are few:
 *   exit, exit_group  end the worker: they exercise nothing but the path every worker ends by;
 *   reboot, kexec_load, kexec_file_load  never worth risking, should this ever run outside;
 *   kill/tgkill/tkill/rt_sigqueueinfo/rt_tgsigqueueinfo/pidfd_send_signal with pid -1: sent
 *                     to the worker's own process group instead (-1 would kill every worker);
 *   prlimit64/process_vm_writev of pid 1: aimed at the worker itself (an RLIMIT_CPU of 0 on the
 *                     driver, which Linux would allow a root worker, would end the run);
 *   fork/vfork/clone/clone3: the child exits at once, before touching any memory (it may share
 *                     the worker's stack), so the random flags are exercised, not a fork bomb.
 * Workers put /dev/null on 0, 1 and 2: random writes never reach the driver's report.
 *
 * The report (stdout of PID 1): "FUZZ ..." lines, ending with
 *   FUZZ done calls=N pairs=P triples=T workers=W crashed=C hung=H
 * where pairs counts distinct (syscall number, argument class) and triples distinct
 * (number, argument position, class).  A worker that SIGKILL cannot end within 10 s is a
 * Sentry bug: "FUZZ unkillable" and exit status 3.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NR_TABLE 512
#define NR_EXTRA 6
#define NR_ALL (NR_TABLE + NR_EXTRA)
#define NCLASS 24
#define SCRATCH 65536
#define WORKER_MS 1000
#define MAX_PROCS 16

static const uint64_t extra_nrs[NR_EXTRA] = {512, 547, 0x40000000UL | 39, 0xffffffffUL, 0x100000000UL | 39, 1000};

enum {
	C_ZERO, C_SMALL, C_MINUS1, C_2P31, C_INTMAX, C_U32MAX, C_S64MAX, C_S64MIN, C_PAGE, C_HUGE,
	C_FD, C_FDRAND, C_SCRATCH, C_PAGEEND, C_UNMAPPED, C_STUB, C_NONCANON, C_KERNEL, C_PATH,
	C_STRUCT, C_FLAGS, C_SIGNO, C_RANDOM, C_VSYSCALL,
};

struct stats {
	uint64_t calls;
	uint8_t seen[NR_ALL][6][NCLASS];
};

static struct stats *stats;
static char *scratch;                /* SCRATCH bytes, then an unmapped guard page */
static int fds[16];
static int nfds;

/* xorshift64*: one state per thread. */
static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static long raw6(uint64_t nr, uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e, uint64_t f)
{
	long r;
	register uint64_t r10 __asm__("r10") = d;
	register uint64_t r8 __asm__("r8") = e;
	register uint64_t r9 __asm__("r9") = f;

	__asm__ volatile("syscall" : "=a"(r) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return r;
}

/* fork/vfork/clone/clone3: the child (rax == 0) exits at once, touching no memory. */
static long raw_forklike(uint64_t nr, uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e)
{
	long r;
	register uint64_t r10 __asm__("r10") = d;
	register uint64_t r8 __asm__("r8") = e;

	__asm__ volatile("syscall\n\t"
			 "test %%rax, %%rax\n\t"
			 "jnz 1f\n\t"
			 "mov $60, %%eax\n\t"
			 "xor %%edi, %%edi\n\t"
			 "syscall\n\t"
			 "ud2\n"
			 "1:"
			 : "=a"(r) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
	return r;
}

static const char *paths[] = {
	"/", "/tmp", "/tmp/fuzz-a", "/tmp/fuzz-b/c", "/proc/self/mem", "/proc/self/maps", "/proc/1/stat",
	"/dev/null", "/dev/zero", "/dev/urandom", "/fuzz", "..", ".", "", "/proc/self/fd/0", "/etc/passwd",
	"/tmp/fuzz-link", "/sys", "/proc/self/exe", "/dev/ptmx",
};

static uint64_t flags_value(uint64_t *s)
{
	uint64_t v = 0;
	int n = rnd(s) % 4;

	for (int i = 0; i < n; i++)
		v |= 1ULL << (rnd(s) % 32);
	if (rnd(s) % 8 == 0)
		v |= 1ULL << (rnd(s) % 64);
	return v;
}

/* A valid-looking structure in the scratch buffer; returns its address. */
static uint64_t make_struct(uint64_t *s)
{
	uint64_t off = (rnd(s) % (SCRATCH / 256)) * 64;
	uint64_t *w = (uint64_t *)(scratch + off);

	if (off + 512 > SCRATCH)
		off = SCRATCH - 512, w = (uint64_t *)(scratch + off);
	switch (rnd(s) % 12) {
	case 0:                                   /* timespec: small, huge, invalid */
		w[0] = (uint64_t[]){0, 0x7fffffffffffffffULL, 1, (uint64_t)-1}[rnd(s) % 4];
		w[1] = (uint64_t[]){1000, 999999999, 1000000000, (uint64_t)-1}[rnd(s) % 4];
		break;
	case 1:                                   /* iovec array into scratch (and a bad one) */
		for (int i = 0; i < 4; i++) {
			w[2 * i] = (uint64_t)(scratch + (rnd(s) % SCRATCH));
			w[2 * i + 1] = (uint64_t[]){0, 16, 4096, 0x7fffffffffffffffULL}[rnd(s) % 4];
		}
		break;
	case 2:                                   /* sigset: empty, full, one */
		w[0] = (uint64_t[]){0, (uint64_t)-1, 1ULL << (rnd(s) % 64)}[rnd(s) % 3];
		break;
	case 3: {                                 /* sockaddr_un */
		struct sockaddr_un *a = (void *)w;

		memset(a, 0, sizeof(*a));
		a->sun_family = AF_UNIX;
		snprintf(a->sun_path, sizeof(a->sun_path), "%s/tmp/fuzz-sock-%d", rnd(s) % 2 ? "" : "\1", (int)(rnd(s) % 4));
		if (a->sun_path[0] == 1)
			a->sun_path[0] = 0;           /* abstract */
		break;
	}
	case 4:                                   /* pollfd array */
		for (int i = 0; i < 4; i++) {
			struct pollfd *p = (struct pollfd *)w + i;

			p->fd = nfds ? fds[rnd(s) % nfds] : -1;
			p->events = rnd(s) & 0xffff;
			p->revents = 0;
		}
		break;
	case 5: {                                 /* msghdr with an iovec and maybe SCM_RIGHTS */
		struct msghdr *m = (void *)w;
		struct iovec *iov = (void *)(w + 16);
		char *ctl = (char *)(w + 24);
		struct cmsghdr *c = (void *)ctl;

		memset(m, 0, sizeof(*m));
		iov->iov_base = scratch + (rnd(s) % (SCRATCH / 2));
		iov->iov_len = rnd(s) % 8192;
		m->msg_iov = iov;
		m->msg_iovlen = rnd(s) % 3;
		if (rnd(s) % 2) {
			c->cmsg_len = CMSG_LEN(sizeof(int) * 2);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = rnd(s) % 2 ? SCM_RIGHTS : SCM_CREDENTIALS;
			((int *)CMSG_DATA(c))[0] = nfds ? fds[rnd(s) % nfds] : 0;
			((int *)CMSG_DATA(c))[1] = (int)rnd(s);
			m->msg_control = ctl;
			m->msg_controllen = rnd(s) % 2 ? CMSG_SPACE(sizeof(int) * 2) : rnd(s) % 4096;
		}
		break;
	}
	case 6:                                   /* sigaction: SIG_DFL, SIG_IGN, or a junk handler */
		w[0] = (uint64_t[]){0, 1, 0x1000, (uint64_t)-1}[rnd(s) % 4];
		w[1] = flags_value(s);
		w[2] = 0;
		w[3] = rnd(s);
		break;
	case 7:                                   /* itimerspec / itimerval */
		for (int i = 0; i < 4; i++)
			w[i] = (uint64_t[]){0, 1, 1000, 999999, 1000000000, 0x7fffffffffffffffULL, (uint64_t)-1}[rnd(s) % 7];
		break;
	case 8:                                   /* rlimit */
		w[0] = (uint64_t[]){0, 1, 1024, (uint64_t)-1}[rnd(s) % 4];
		w[1] = (uint64_t[]){0, 1, 1024, (uint64_t)-1}[rnd(s) % 4];
		break;
	case 9:                                   /* epoll_event, sigevent, clone_args...: random words */
		for (int i = 0; i < 16; i++)
			w[i] = rnd(s) % 3 ? rnd(s) % 64 : rnd(s);
		break;
	case 10:                                  /* a path */
		strcpy((char *)w, paths[rnd(s) % (sizeof(paths) / sizeof(paths[0]))]);
		break;
	default:                                  /* zeroes */
		memset(w, 0, 256);
		break;
	}
	return (uint64_t)w;
}

/* Classes that make a plausible argument of most types: a call made of these gets past the
 * first checks into the handler's real work. */
static const int friendly[] = {C_ZERO, C_SMALL, C_FD, C_FD, C_SCRATCH, C_STRUCT, C_STRUCT, C_PATH, C_PAGE, C_FLAGS};

static uint64_t arg_of(uint64_t *s, int c);

/* An argument of a random class, or (friendly) of a plausible one. */
static uint64_t arg(uint64_t *s, int *cls, int friendly_mode)
{
	int c = friendly_mode ? friendly[rnd(s) % (sizeof(friendly) / sizeof(friendly[0]))] : (int)(rnd(s) % NCLASS);

	*cls = c;
	return arg_of(s, c);
}

static uint64_t arg_of(uint64_t *s, int c)
{

	switch (c) {
	case C_ZERO: return 0;
	case C_SMALL: return rnd(s) % 64;
	case C_MINUS1: return (uint64_t)-1;
	case C_2P31: return 0x80000000ULL;
	case C_INTMAX: return 0x7fffffffULL;
	case C_U32MAX: return 0xffffffffULL;
	case C_S64MAX: return 0x7fffffffffffffffULL;
	case C_S64MIN: return 0x8000000000000000ULL;
	case C_PAGE: return (uint64_t[]){4095, 4096, 4097, 8192, 65536}[rnd(s) % 5];
	case C_HUGE: return (uint64_t[]){0x7ffff000ULL + 1, 1ULL << 32, 1ULL << 40, 1ULL << 46, 1ULL << 47}[rnd(s) % 5];
	case C_FD: return nfds ? (uint64_t)fds[rnd(s) % nfds] : 0;
	case C_FDRAND: return (uint64_t[]){0, 1, 2, 3, 20, 1023, 1024, 65535, (uint64_t)-100}[rnd(s) % 9];
	case C_SCRATCH: return (uint64_t)(scratch + rnd(s) % SCRATCH);
	case C_PAGEEND: return (uint64_t)(scratch + SCRATCH - 1 - rnd(s) % 16);
	case C_UNMAPPED: return (uint64_t[]){1, 4096, 0x10000, (uint64_t)(scratch + SCRATCH)}[rnd(s) % 4];
	case C_STUB: return 0x7F8000000000ULL + (rnd(s) % 2) * 0x100;
	case C_NONCANON: return (uint64_t[]){0x800000000000ULL, 0x7ffffffff000ULL, 0x0000ffffffffffffULL, 0xffff800000000000ULL}[rnd(s) % 4];
	case C_KERNEL: return 0xffffffff81000000ULL;
	case C_PATH: return (uint64_t)paths[rnd(s) % (sizeof(paths) / sizeof(paths[0]))];
	case C_STRUCT: return make_struct(s);
	case C_FLAGS: return flags_value(s);
	case C_SIGNO: return rnd(s) % 66;
	case C_VSYSCALL: return 0xffffffffff600000ULL;
	default: return rnd(s);
	}
}

static int skipped(uint64_t nr)
{
	switch (nr) {
	case SYS_exit: case SYS_exit_group: case SYS_reboot: case SYS_kexec_load: case 320 /* kexec_file_load */:
		return 1;
	}
	return 0;
}

static int is_forklike(uint64_t nr)
{
	return nr == SYS_fork || nr == SYS_vfork || nr == SYS_clone || nr == 435 /* clone3 */;
}

static int is_kill(uint64_t nr)
{
	return nr == SYS_kill || nr == SYS_tkill || nr == SYS_tgkill || nr == SYS_rt_sigqueueinfo
	       || nr == SYS_rt_tgsigqueueinfo || nr == 424 /* pidfd_send_signal */;
}

struct thread_arg {
	uint64_t seed;
	struct timespec deadline;
};

static int past(const struct timespec *d)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > d->tv_sec || (now.tv_sec == d->tv_sec && now.tv_nsec >= d->tv_nsec);
}

static void *fuzz_loop(void *p)
{
	struct thread_arg *ta = p;
	uint64_t s = ta->seed | 1;
	uint64_t n = 0;

	while ((n & 15) || !past(&ta->deadline)) {
		uint64_t pick = rnd(&s) % (NR_ALL + 8);
		unsigned idx = pick < NR_ALL ? pick : rnd(&s) % NR_TABLE;
		uint64_t nr = idx < NR_TABLE ? idx : extra_nrs[idx - NR_TABLE];
		uint64_t a[6];
		int cls[6];

		if (skipped(nr))
			continue;
		/* Half the calls plausible in every argument but (maybe) one boundary value. */
		int mode = rnd(&s) % 2, odd = mode ? (int)(rnd(&s) % 8) : -1;

		for (int i = 0; i < 6; i++) {
			a[i] = arg(&s, &cls[i], mode && i != odd);
			stats->seen[idx][i][cls[i]] = 1;
		}
		if (is_kill(nr) && (int)a[0] == -1)
			a[0] = 0;                 /* the worker's own process group, never everyone */
		if ((nr == SYS_prlimit64 || nr == SYS_process_vm_writev) && (int)a[0] == 1)
			a[0] = 0;                 /* not the driver's limits or memory: the worker's own */
		__atomic_fetch_add(&stats->calls, 1, __ATOMIC_RELAXED);
		n++;
		if (is_forklike(nr))
			raw_forklike(nr, a[0], a[1], a[2], a[3], a[4]);
		else
			raw6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	}
	return NULL;
}

static void setup_fds(void)
{
	int p[2], sv[2];

	nfds = 0;
	if (pipe(p) == 0)
		fds[nfds++] = p[0], fds[nfds++] = p[1];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0)
		fds[nfds++] = sv[0], fds[nfds++] = sv[1];
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0)
		fds[nfds++] = sv[0];
	fds[nfds++] = open("/", O_RDONLY | O_DIRECTORY);
	fds[nfds++] = open("/tmp/fuzz-file", O_RDWR | O_CREAT, 0644);
	fds[nfds++] = open("/proc/self/status", O_RDONLY);
	fds[nfds++] = eventfd(0, 0);
	fds[nfds++] = epoll_create1(0);
	fds[nfds++] = socket(AF_INET, SOCK_DGRAM, 0);
	fds[nfds++] = open("/fuzz", O_RDONLY);
}

static void worker(uint64_t seed, int threads)
{
	pthread_t tid[8];
	struct thread_arg ta[8];
	int null = open("/dev/null", O_RDWR);
	struct timespec d;

	setpgid(0, 0);
	dup2(null, 0);
	dup2(null, 1);
	dup2(null, 2);
	scratch = mmap(NULL, SCRATCH + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(scratch + SCRATCH, 4096);          /* the guard page: unmapped */
	for (int i = 0; i < SCRATCH; i++)
		scratch[i] = (char)(seed >> (i % 56));
	setup_fds();
	clock_gettime(CLOCK_MONOTONIC, &d);
	d.tv_nsec += (WORKER_MS % 1000) * 1000000L;
	d.tv_sec += WORKER_MS / 1000 + d.tv_nsec / 1000000000L;
	d.tv_nsec %= 1000000000L;
	if (threads > 8)
		threads = 8;
	for (int i = 0; i < threads; i++) {
		ta[i].seed = seed * 31 + i;
		ta[i].deadline = d;
	}
	for (int i = 1; i < threads; i++)
		pthread_create(&tid[i], NULL, fuzz_loop, &ta[i]);
	fuzz_loop(&ta[0]);
	raw6(SYS_exit_group, 0, 0, 0, 0, 0, 0);
}

struct slot {
	pid_t pid;
	uint64_t seed;
	struct timespec started;
	int killed;
};

static double since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t->tv_sec) + (now.tv_nsec - t->tv_nsec) / 1e9;
}

int main(int argc, char **argv)
{
	struct slot slots[MAX_PROCS];
	struct timespec start;
	uint64_t base, next = 0, workers = 0, crashed = 0, hung = 0, signals[65] = {0};
	double seconds;
	int procs, threads, unkillable = 0;

	if (argc != 5 || !getenv("RUNSC_PY_FUZZ")) {
		fprintf(stderr, "usage: RUNSC_PY_FUZZ=1 fuzz SECONDS SEED PROCS THREADS (inside the sandbox only)\n");
		return 0;
	}
	seconds = atof(argv[1]);
	base = strtoull(argv[2], NULL, 0);
	procs = atoi(argv[3]);
	threads = atoi(argv[4]);
	if (procs < 1 || procs > MAX_PROCS)
		procs = 1;
	stats = mmap(NULL, sizeof(*stats), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (stats == MAP_FAILED)
		return 2;
	memset(slots, 0, sizeof(slots));
	clock_gettime(CLOCK_MONOTONIC, &start);
	printf("FUZZ start seconds=%g seed=%llu procs=%d threads=%d\n", seconds, (unsigned long long)base, procs,
	       threads);
	fflush(stdout);
	for (;;) {
		int running = 0, st;
		pid_t pid;
		int stop = since(&start) >= seconds;

		for (int i = 0; i < procs; i++) {
			struct slot *sl = &slots[i];

			if (!sl->pid && !stop) {
				sl->seed = base * 1000003ULL + next++;
				clock_gettime(CLOCK_MONOTONIC, &sl->started);
				sl->killed = 0;
				sl->pid = fork();
				if (sl->pid == 0)
					worker(sl->seed, threads);
				if (sl->pid < 0)
					sl->pid = 0;
				else
					workers++;
			}
			if (sl->pid) {
				double age = since(&sl->started);

				running++;
				if ((age > WORKER_MS / 1000.0 + 0.5 || stop) && !sl->killed) {
					kill(-sl->pid, SIGKILL);
					kill(sl->pid, SIGKILL);
					sl->killed = 1;
					if (!stop)
						hung++;
				} else if (sl->killed && age > WORKER_MS / 1000.0 + 12) {
					printf("FUZZ unkillable worker pid=%d seed=%llu\n", sl->pid, (unsigned long long)sl->seed);
					unkillable = 1;
					sl->pid = 0;
				}
			}
		}
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			for (int i = 0; i < procs; i++) {
				if (slots[i].pid != pid)
					continue;
				if (WIFSIGNALED(st) && !slots[i].killed) {
					crashed++;
					signals[WTERMSIG(st) & 63]++;
				}
				slots[i].pid = 0;
			}
		}
		if (stop && !running)
			break;
		usleep(20000);
	}
	{
		uint64_t pairs = 0, triples = 0;

		for (int nr = 0; nr < NR_ALL; nr++) {
			uint8_t any[NCLASS] = {0};

			for (int i = 0; i < 6; i++)
				for (int c = 0; c < NCLASS; c++)
					if (stats->seen[nr][i][c])
						triples++, any[c] = 1;
			for (int c = 0; c < NCLASS; c++)
				pairs += any[c];
		}
		printf("FUZZ seeds %llu..%llu\n", (unsigned long long)(base * 1000003ULL),
		       (unsigned long long)(base * 1000003ULL + next - 1));
		for (int sig = 1; sig < 65; sig++)
			if (signals[sig])
				printf("FUZZ workers ended by signal %d: %llu\n", sig, (unsigned long long)signals[sig]);
		printf("FUZZ done calls=%llu pairs=%llu triples=%llu workers=%llu crashed=%llu hung=%llu\n",
		       (unsigned long long)stats->calls, (unsigned long long)pairs, (unsigned long long)triples,
		       (unsigned long long)workers, (unsigned long long)crashed, (unsigned long long)hung);
	}
	return unkillable ? 3 : 0;
}
