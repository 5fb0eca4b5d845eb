/* RLIMIT_CPU: SIGXCPU at the soft limit (si_code SI_KERNEL), the soft limit raised by one
 * second each time, SIGKILL at the hard limit.  A child burns CPU; the parent checks. */
#include "tap.h"
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile int xcpu, code;
static volatile rlim_t soft_seen;

static void on_xcpu(int sig, siginfo_t *si, void *uc)
{
    (void)sig; (void)uc;
    xcpu++;
    code = si->si_code;
    struct rlimit rl;
    getrlimit(RLIMIT_CPU, &rl);
    soft_seen = rl.rlim_cur;
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
    tap_plan(6);
    int p[2];
    if (pipe(p) != 0) return 1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        struct sigaction sa = {0};
        sa.sa_sigaction = on_xcpu;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGXCPU, &sa, 0);
        struct rlimit rl = {1, 3};
        if (setrlimit(RLIMIT_CPU, &rl) != 0) _exit(90);
        int reported = 0;
        volatile unsigned long spin = 0;
        for (;;) {                        /* burn CPU until SIGKILL ends us */
            for (int i = 0; i < 1000000; i++) spin++;
            if (xcpu >= 1 && !reported) {
                int msg[3] = {xcpu, code, (int)soft_seen};
                if (write(p[1], msg, sizeof msg) != sizeof msg) _exit(91);
                reported = 1;
            }
            if (cpu_seconds() > 20) _exit(92);  /* the hard limit never came */
        }
    }
    close(p[1]);
    int msg[3] = {0, 0, 0};
    ssize_t n = read(p[0], msg, sizeof msg);
    check(n == (ssize_t)sizeof msg, "a SIGXCPU arrived at the soft limit");
    check(msg[1] == SI_KERNEL, "its si_code is SI_KERNEL (got %d)", msg[1]);
    check(msg[2] == 2, "the soft limit was raised by one second (got %d)", msg[2]);
    int st = 0;
    check(waitpid(pid, &st, 0) == pid, "waitpid");
    check(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "SIGKILL at the hard limit (status %#x)", st);
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    double used = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    /* Linux samples process CPU time coarsely (a loaded machine has seen 2.5 s for a 3 s hard
     * limit): the child must at least have passed its soft limit before it died. */
    check(used >= 0.99, "the child used its CPU seconds first (%.2f s)", used);
    return tap_done();
}
