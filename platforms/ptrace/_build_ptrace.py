"""cffi build script for the ptrace platform's hot path (`platforms.ptrace._ptrace_ext`).

Why C at all: one ptrace stop costs ~15-23 us on the target machine, and
every application syscall is two ptrace calls plus a waitpid plus register
copies.  Doing SETREGS + PTRACE_SYSEMU + waitpid + GETREGS in one C call
adds ~1-3 us over a pure C tracer; ctypes would add ~10 us.  Everything
that is not on the per-syscall path stays in Python.
"""
from cffi import FFI

CDEF = r"""
struct user_regs_struct {
    unsigned long r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi,
                  orig_rax, rip, cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs;
};

int rp_spawn_stub(int stub_fd, int memfile_fd, int stub_memfd_number);
long rp_ptrace(long request, int pid, unsigned long addr, unsigned long data);
int rp_resume(int pid, struct user_regs_struct *regs, int request, int sig);
int rp_run(int pid, struct user_regs_struct *regs, int request, int sig,
           int *status, struct user_regs_struct *other);
int rp_resume_lean(int pid, struct user_regs_struct *regs, struct user_regs_struct *shadow,
                   int request, int sig);
int rp_run_lean(int pid, struct user_regs_struct *regs, struct user_regs_struct *shadow,
                int request, int sig, int *status, struct user_regs_struct *other);
int rp_wait_event(long timeout_ns, int *fds, short *events, short *revents, int nfds,
                  int *status, struct user_regs_struct *regs);
long rp_inject(int pid, struct user_regs_struct *scratch, unsigned long site, long nr,
               unsigned long a0, unsigned long a1, unsigned long a2,
               unsigned long a3, unsigned long a4, unsigned long a5);
int rp_sigchld_fd(void);
int rp_getsiginfo(int pid, int *signo, int *code, unsigned long *addr, int *errno_out);
unsigned long getauxval(unsigned long type);
int rp_tgkill(int tgid, int tid, int sig);
unsigned long long rp_rdtsc(void);
int rp_forward_signals(int *sigs, int n);
unsigned long rp_take_forwarded(void);
"""

SOURCE = r"""
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/auxv.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* Fork a stub: its own process group (terminal signals never reach it),
   SIGKILL when the Sentry dies, traced from its first instruction, no fd
   but the MemoryFile, no environment, then exec the stub ELF from a memfd.
   vfork: the child only makes raw syscalls before execveat. */
int rp_spawn_stub(int stub_fd, int memfile_fd, int stub_memfd_number) {
    pid_t pid = vfork();
    if (pid != 0)
        return pid < 0 ? -errno : pid;
    static char *const argv[] = {"runsc-py-stub", NULL};
    static char *const envp[] = {NULL};
    setpgid(0, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) _exit(126);
    if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0) _exit(126);
    syscall(SYS_close_range, 0, ~0U, CLOSE_RANGE_CLOEXEC);
    if (memfile_fd == stub_memfd_number) {
        if (fcntl(memfile_fd, F_SETFD, 0) != 0) _exit(126);
    } else if (dup2(memfile_fd, stub_memfd_number) < 0) {
        _exit(126);
    }
    syscall(SYS_execveat, stub_fd, "", argv, envp, AT_EMPTY_PATH);
    _exit(127);
}

static volatile unsigned long forwarded;
static volatile int running_tid;          /* the tracee rp_run is waiting on, or 0 */
static int wake_pipe[2] = {-1, -1};       /* self-pipe: makes a pending ppoll return */

static void on_forwarded(int sig) {
    int saved = errno;
    __atomic_or_fetch(&forwarded, 1UL << sig, __ATOMIC_SEQ_CST);
    if (wake_pipe[1] >= 0) { char c = 0; (void)!write(wake_pipe[1], &c, 1); }
    /* If the signal lands between rp_run's check and its waitpid, the wait would
       last until the tracee's next stop: make that stop happen now. */
    int tid = running_tid;
    if (tid > 0) syscall(SYS_tkill, tid, SIGURG);
    errno = saved;
}

/* Host signals meant for the container (SIGTERM to `runsc-py run`...) are
   recorded here and interrupt the Sentry's waitpid (no SA_RESTART), so the
   task loop forwards them at once. */
int rp_forward_signals(int *sigs, int n) {
    if (wake_pipe[0] < 0 && pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return -errno;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_forwarded;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < n; i++)
        if (sigaction(sigs[i], &sa, NULL) != 0) return -errno;
    return 0;
}

unsigned long rp_take_forwarded(void) { return __atomic_exchange_n(&forwarded, 0, __ATOMIC_SEQ_CST); }

unsigned long long rp_rdtsc(void) {
    unsigned lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((unsigned long long)hi << 32) | lo;
}

int rp_tgkill(int tgid, int tid, int sig) {
    return syscall(SYS_tgkill, tgid, tid, sig) == 0 ? 0 : -errno;
}

long rp_ptrace(long request, int pid, unsigned long addr, unsigned long data) {
    errno = 0;
    long r = ptrace(request, pid, (void *)addr, (void *)data);
    if (r == -1 && errno) return -errno;
    return r;
}

int rp_resume(int pid, struct user_regs_struct *regs, int request, int sig) {
    if (regs && ptrace(PTRACE_SETREGS, pid, 0, regs) != 0) return -errno;
    if (ptrace(request, pid, 0, (void *)(long)sig) != 0) return -errno;
    return 0;
}

/* The lean trap: `shadow` is what the tracee's registers are (as last fetched or set).  Write
   back only what the Sentry changed: nothing, rax alone with one POKEUSER (a syscall's result,
   the common case), or the whole set with SETREGS. */
static int set_lean(int pid, struct user_regs_struct *regs, struct user_regs_struct *shadow) {
    const size_t rax = offsetof(struct user_regs_struct, rax), after = rax + sizeof(regs->rax);
    if (memcmp(regs, shadow, rax) == 0 &&
        memcmp((char *)regs + after, (char *)shadow + after, sizeof *regs - after) == 0) {
        if (regs->rax == shadow->rax) return 0;
        if (ptrace(PTRACE_POKEUSER, pid, (void *)rax, (void *)regs->rax) != 0) return -errno;
        shadow->rax = regs->rax;
        return 0;
    }
    if (ptrace(PTRACE_SETREGS, pid, 0, regs) != 0) return -errno;
    *shadow = *regs;
    return 0;
}

int rp_resume_lean(int pid, struct user_regs_struct *regs, struct user_regs_struct *shadow,
                   int request, int sig) {
    int r = set_lean(pid, regs, shadow);
    if (r < 0) return r;
    if (ptrace(request, pid, 0, (void *)(long)sig) != 0) return -errno;
    return 0;
}

static int fetch(int pid, int status, struct user_regs_struct *regs) {
    if (WIFSTOPPED(status) && regs) {
        if (ptrace(PTRACE_GETREGS, pid, 0, regs) != 0) return -errno;
    }
    return pid;
}

/* The hot path: set registers, resume, wait for the next stop of ANY
   tracee, fetch its registers.  If the stopped tracee is `pid`, its
   registers land in `regs`, else in `other`.  Returns the stopped pid or
   -errno. */
int rp_run(int pid, struct user_regs_struct *regs, int request, int sig,
           int *status, struct user_regs_struct *other) {
    int r = rp_resume(pid, regs, request, sig);
    if (r < 0) return r;
    int got;
    running_tid = pid;
    if (forwarded) { running_tid = 0; return -EINTR; }
    do {
        got = waitpid(-1, status, __WALL);
        if (got < 0 && errno == EINTR && forwarded) { running_tid = 0; return -EINTR; }
    } while (got < 0 && errno == EINTR);
    running_tid = 0;
    if (got < 0) return -errno;
    struct user_regs_struct *got_regs = got == pid ? regs : other;
    int rr = fetch(got, *status, got_regs);
    if (rr < 0) return rr;
    /* `syscall` leaves rcx == rip at the stop; if not, it may be `int $0x80`: flag it. */
    if (*status == ((((SIGTRAP | 0x80) << 8)) | 0x7f) && got_regs->rcx != got_regs->rip)
        *status |= 1 << 30;
    return got;
}

/* rp_run with the lean write-back; the stopped tracee's registers are fetched whole (GETREGS:
   one call, and every handler may read any of them) and, for `pid`, become its shadow too. */
int rp_run_lean(int pid, struct user_regs_struct *regs, struct user_regs_struct *shadow,
                int request, int sig, int *status, struct user_regs_struct *other) {
    int r = rp_resume_lean(pid, regs, shadow, request, sig);
    if (r < 0) return r;
    int got;
    running_tid = pid;
    if (forwarded) { running_tid = 0; return -EINTR; }
    do {
        got = waitpid(-1, status, __WALL);
        if (got < 0 && errno == EINTR && forwarded) { running_tid = 0; return -EINTR; }
    } while (got < 0 && errno == EINTR);
    running_tid = 0;
    if (got < 0) return -errno;
    struct user_regs_struct *got_regs = got == pid ? regs : other;
    int rr = fetch(got, *status, got_regs);
    if (rr < 0) return rr;
    if (got == pid && WIFSTOPPED(*status)) *shadow = *regs;
    if (*status == ((((SIGTRAP | 0x80) << 8)) | 0x7f) && got_regs->rcx != got_regs->rip)
        *status |= 1 << 30;
    return got;
}

static int sigchld_fd = -1;

int rp_sigchld_fd(void) {
    if (sigchld_fd >= 0) return sigchld_fd;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return -errno;
    sigchld_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return sigchld_fd < 0 ? -errno : sigchld_fd;
}

static void drain_sigchld(void) {
    struct signalfd_siginfo si[8];
    while (read(sigchld_fd, si, sizeof si) > 0) {}
}

/* Wait for the next event: a tracee stop (returns its pid, registers in
   `regs`), host fd readiness (returns 0, `revents` filled), or the timeout
   (returns 0).  timeout_ns < 0 means no timeout. */
int rp_wait_event(long timeout_ns, int *fds, short *events, short *revents, int nfds,
                  int *status, struct user_regs_struct *regs) {
    if (forwarded) return 0;
    if (nfds == 0 && timeout_ns < 0 && wake_pipe[0] < 0) {
        int got;
        do {
            got = waitpid(-1, status, __WALL);
            if (got < 0 && errno == EINTR && forwarded) return 0;
        } while (got < 0 && errno == EINTR);
        return got < 0 ? -errno : fetch(got, *status, regs);
    }
    if (rp_sigchld_fd() < 0) return -errno;
    struct pollfd pfd[66];
    if (nfds > 64) nfds = 64;
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000L;
        ts.tv_nsec = timeout_ns % 1000000000L;
        tsp = &ts;
    }
    for (;;) {
        drain_sigchld();
        int got = waitpid(-1, status, __WALL | WNOHANG);
        if (got > 0) return fetch(got, *status, regs);
        if (got < 0 && errno != ECHILD) return -errno;
        pfd[0].fd = sigchld_fd; pfd[0].events = POLLIN; pfd[0].revents = 0;
        for (int i = 0; i < nfds; i++) {
            pfd[i + 1].fd = fds[i]; pfd[i + 1].events = events[i]; pfd[i + 1].revents = 0;
        }
        int extra = 0;
        if (wake_pipe[0] >= 0) {
            pfd[nfds + 1].fd = wake_pipe[0]; pfd[nfds + 1].events = POLLIN; pfd[nfds + 1].revents = 0;
            extra = 1;
        }
        if (forwarded) return 0;
        int n = ppoll(pfd, nfds + 1 + extra, tsp, NULL);
        if (extra && pfd[nfds + 1].revents) {
            char buf[64];
            while (read(wake_pipe[0], buf, sizeof buf) > 0) {}
            return 0;
        }
        if (n < 0 && errno == EINTR) {
            if (forwarded) return 0;
            continue;
        }
        if (n < 0) return -errno;
        int fd_ready = 0;
        for (int i = 0; i < nfds; i++) {
            revents[i] = pfd[i + 1].revents;
            if (revents[i]) fd_ready = 1;
        }
        if (n == 0 || fd_ready) {
            got = waitpid(-1, status, __WALL | WNOHANG);
            if (got > 0) return fetch(got, *status, regs);
            return 0;
        }
        /* Only SIGCHLD: loop to reap it. */
    }
}

/* Run one syscall inside stub thread `pid` at the stub's `syscall; int3`
   site and return its result (or -errno if the stub could not be driven,
   encoded below -4096 as -(4096 + errno)).  The thread must be in a ptrace
   stop; its registers are clobbered (the caller keeps the application's). */
long rp_inject(int pid, struct user_regs_struct *scratch, unsigned long site, long nr,
               unsigned long a0, unsigned long a1, unsigned long a2,
               unsigned long a3, unsigned long a4, unsigned long a5) {
    scratch->rip = site;
    scratch->rax = nr;
    scratch->orig_rax = (unsigned long)-1;
    scratch->rdi = a0; scratch->rsi = a1; scratch->rdx = a2;
    scratch->r10 = a3; scratch->r8 = a4; scratch->r9 = a5;
    if (ptrace(PTRACE_SETREGS, pid, 0, scratch) != 0) return -(4096 + errno);
    if (ptrace(PTRACE_CONT, pid, 0, 0) != 0) return -(4096 + errno);
    for (;;) {
        int status;
        int got = waitpid(pid, &status, __WALL);
        if (got < 0) {
            if (errno == EINTR) continue;
            return -(4096 + errno);
        }
        if (!WIFSTOPPED(status)) return -(4096 + ESRCH);
        if (WSTOPSIG(status) == SIGTRAP && (status >> 16) == 0) break;
        /* A fault at the site: the stub page is not what we made it.  Fail, never spin. */
        int sig = WSTOPSIG(status);
        if ((status >> 16) == 0 && (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE))
            return -(4096 + EFAULT);
        /* Any other stop (a stray host signal, our SIGURG kick): suppress it and go on. */
        if (ptrace(PTRACE_CONT, pid, 0, 0) != 0) return -(4096 + errno);
    }
    if (ptrace(PTRACE_GETREGS, pid, 0, scratch) != 0) return -(4096 + errno);
    return (long)scratch->rax;
}

int rp_getsiginfo(int pid, int *signo, int *code, unsigned long *addr, int *errno_out) {
    siginfo_t si;
    if (ptrace(PTRACE_GETSIGINFO, pid, 0, &si) != 0) return -errno;
    *signo = si.si_signo;
    *code = si.si_code;
    *addr = (unsigned long)si.si_addr;
    *errno_out = si.si_errno;
    return 0;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("platforms.ptrace._ptrace_ext", SOURCE)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
