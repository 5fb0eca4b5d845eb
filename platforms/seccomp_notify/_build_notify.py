"""cffi build script for the seccomp_notify platform's hot path (`platforms.seccomp_notify._notify_ext`).

One C call waits for the next event of any context, whichever way it comes: a seccomp user
notification on one of the stubs' listeners (the fast path: SECCOMP_IOCTL_NOTIF_RECV fills a
`struct seccomp_notif`), a ptrace stop (the slow path: a SECCOMP_RET_TRACE stop or a signal,
registers fetched with GETREGS), host fd readiness, a forwarded host signal or the timeout.
`sn_reply` answers a notification with a return value (NOTIF_SEND, never
SECCOMP_USER_NOTIF_FLAG_CONTINUE: the host does not run the call).  Host signals meant for the
container are caught here as in the ptrace platform's extension (a self-pipe wakes the wait).
"""
from cffi import FFI

CDEF = r"""
struct sn_notif {
    unsigned long id; unsigned int pid; unsigned int flags;
    int nr; unsigned int arch; unsigned long ip; unsigned long args[6];
};
int sn_notif_size(void);
int sn_getfd(int pid, int targetfd);
int sn_reply(int fd, unsigned long id, unsigned long val);
int sn_id_valid(int fd, unsigned long id);
int sn_wait(long timeout_ns, int *lfds, int nl, int *fds, short *events, short *revents, int nfds,
            int *status, void *regs, struct sn_notif *notif, int *which);
int sn_reply_wait(int fd, unsigned long id, unsigned long val, int *lfds, int nl, int *status, void *regs,
                  struct sn_notif *notif, int *which);
int sn_forward_signals(int *sigs, int n);
unsigned long sn_take_forwarded(void);
"""

SOURCE = r"""
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct sn_notif {
    unsigned long id; unsigned int pid; unsigned int flags;
    int nr; unsigned int arch; unsigned long ip; unsigned long args[6];
};
_Static_assert(sizeof(struct sn_notif) == sizeof(struct seccomp_notif), "seccomp_notif layout");

/* The kernel's struct seccomp_notif may be larger than ours (SECCOMP_GET_NOTIF_SIZES): RECV
   writes that many bytes, so receive into a buffer of its size. */
static int notif_size;
static char *notif_buf;

int sn_notif_size(void) {
    if (notif_size) return notif_size;
    struct seccomp_notif_sizes sz;
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sz) != 0) return -errno;
    int n = sz.seccomp_notif > sizeof(struct seccomp_notif) ? sz.seccomp_notif : sizeof(struct seccomp_notif);
    notif_buf = calloc(1, n);
    if (!notif_buf) return -ENOMEM;
    notif_size = n;
    return n;
}

/* A copy of stub `pid`'s descriptor `targetfd` (its listener) in the Sentry. */
int sn_getfd(int pid, int targetfd) {
    int pfd = syscall(SYS_pidfd_open, pid, 0);
    if (pfd < 0) return -errno;
    int fd = syscall(SYS_pidfd_getfd, pfd, targetfd, 0);
    int err = errno;
    close(pfd);
    if (fd < 0) return -err;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

/* Answer notification `id` with `val` as the call's result (a negative errno is a value too);
   no SECCOMP_USER_NOTIF_FLAG_CONTINUE, ever.  -ENOENT: the thread no longer waits (a signal
   interrupted it, or it died). */
int sn_reply(int fd, unsigned long id, unsigned long val) {
    struct seccomp_notif_resp resp = {.id = id, .val = (long)val, .error = 0, .flags = 0};
    for (;;) {
        if (ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0) return 0;
        if (errno != EINTR) return -errno;
    }
}

int sn_id_valid(int fd, unsigned long id) {
    return ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 ? 0 : -errno;
}

static volatile unsigned long forwarded;
static int wake_pipe[2] = {-1, -1};
static int sigchld_fd = -1;
static int maybe_stops = 1;      /* a ptrace stop may be waiting (see sn_wait) */

static void on_forwarded(int sig) {
    int saved = errno;
    __atomic_or_fetch(&forwarded, 1UL << sig, __ATOMIC_SEQ_CST);
    if (wake_pipe[1] >= 0) { char c = 0; (void)!write(wake_pipe[1], &c, 1); }
    errno = saved;
}

int sn_forward_signals(int *sigs, int n) {
    if (wake_pipe[0] < 0 && pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return -errno;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_forwarded;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < n; i++)
        if (sigaction(sigs[i], &sa, NULL) != 0) return -errno;
    return 0;
}

unsigned long sn_take_forwarded(void) { return __atomic_exchange_n(&forwarded, 0, __ATOMIC_SEQ_CST); }

static int get_sigchld_fd(void) {
    if (sigchld_fd >= 0) return sigchld_fd;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return -errno;
    sigchld_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return sigchld_fd < 0 ? -errno : sigchld_fd;
}

#define MAXL 64
#define MAXF 64

/* Wait for the next event.  Returns 1: a notification (in `notif`, *which = the index of its
   listener in `lfds`); 2: a ptrace stop or exit (*which = the tid, *status, registers in `regs`
   if stopped); 0: a host fd ready (`revents`), the timeout, or a forwarded signal; -errno. */
int sn_wait(long timeout_ns, int *lfds, int nl, int *fds, short *events, short *revents, int nfds,
            int *status, void *regs, struct sn_notif *notif, int *which) {
    if (forwarded) return 0;
    if (get_sigchld_fd() < 0 || sn_notif_size() < 0) return -errno;
    if (nl > MAXL) nl = MAXL;
    if (nfds > MAXF) nfds = MAXF;
    struct pollfd pfd[2 + MAXL + MAXF];
    int hung[MAXL] = {0};
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000L;
        ts.tv_nsec = timeout_ns % 1000000000L;
        tsp = &ts;
    }
    for (;;) {
        /* A stop is looked for only when SIGCHLD said one may be there (or the last look found
           one: SIGCHLDs coalesce): the fast path is then ppoll + RECV, two host calls. */
        if (maybe_stops) {
            int got = waitpid(-1, status, __WALL | WNOHANG);
            if (got > 0) {
                if (WIFSTOPPED(*status) && ptrace(PTRACE_GETREGS, got, 0, regs) != 0) continue;
                *which = got;
                return 2;
            }
            maybe_stops = 0;
        }
        int k = 0;
        pfd[k].fd = sigchld_fd; pfd[k].events = POLLIN; k++;
        for (int i = 0; i < nl; i++, k++) { pfd[k].fd = hung[i] ? -1 : lfds[i]; pfd[k].events = POLLIN; }
        for (int i = 0; i < nfds; i++, k++) { pfd[k].fd = fds[i]; pfd[k].events = events[i]; }
        int wk = -1;
        if (wake_pipe[0] >= 0) { wk = k; pfd[k].fd = wake_pipe[0]; pfd[k].events = POLLIN; k++; }
        for (int i = 0; i < k; i++) pfd[i].revents = 0;
        if (forwarded) return 0;
        int n = ppoll(pfd, k, tsp, NULL);
        if (n < 0 && errno == EINTR) { if (forwarded) return 0; continue; }
        if (n < 0) return -errno;
        if (pfd[0].revents) {
            struct signalfd_siginfo si[8];
            while (read(sigchld_fd, si, sizeof si) > 0) {}
            maybe_stops = 1;
            continue;
        }
        if (wk >= 0 && pfd[wk].revents) {
            char buf[64];
            while (read(wake_pipe[0], buf, sizeof buf) > 0) {}
            return 0;
        }
        for (int i = 0; i < nl; i++) {
            short re = pfd[1 + i].revents;
            if (re & POLLIN) {
                memset(notif_buf, 0, notif_size);
                if (ioctl(lfds[i], SECCOMP_IOCTL_NOTIF_RECV, notif_buf) == 0) {
                    memcpy(notif, notif_buf, sizeof *notif);
                    *which = i;
                    return 1;
                }
                /* ENOENT: the waiting thread was interrupted or died meanwhile; look again. */
            } else if (re & (POLLHUP | POLLERR | POLLNVAL)) {
                hung[i] = 1;        /* every thread of that stub is gone: its exit comes by waitpid */
            }
        }
        int fd_ready = 0;
        for (int i = 0; i < nfds; i++) {
            revents[i] = pfd[1 + nl + i].revents;
            if (revents[i]) fd_ready = 1;
        }
        if (fd_ready || n == 0) return 0;
    }
}

/* The fast path in one call: answer notification `id` with `val`, then wait (no host fds, no
   timeout) for the next event.  A failed answer returns -(4096 + errno) and waits for nothing. */
int sn_reply_wait(int fd, unsigned long id, unsigned long val, int *lfds, int nl, int *status, void *regs,
                  struct sn_notif *notif, int *which) {
    int r = sn_reply(fd, id, val);
    if (r < 0) return -4096 + r;
    short none = 0;
    return sn_wait(-1, lfds, nl, NULL, &none, &none, 0, status, regs, notif, which);
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("platforms.seccomp_notify._notify_ext", SOURCE)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
