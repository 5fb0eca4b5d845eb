/* Host signals and polling for the KVM platform's vCPU thread (part of platforms.kvm._kvm_ext,
   built by _build_kvm.py after vcpu.c and pagetables.c). */
/* -- host signals -------------------------------------------------------------------- */

static volatile unsigned long forwarded;

static void on_forwarded(int sig) { __atomic_or_fetch(&forwarded, 1UL << sig, __ATOMIC_SEQ_CST); }
static void on_tick(int sig) { (void)sig; }

int rk_forward_signals(int *sigs, int n) {
    for (int i = 0; i < n; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_forwarded;       /* no SA_RESTART: KVM_RUN and ppoll return EINTR */
        sigfillset(&sa.sa_mask);
        if (sigaction(sigs[i], &sa, NULL) != 0)
            return -errno;
    }
    return 0;
}

unsigned long rk_take_forwarded(void) {
    if (!forwarded)
        return 0;
    return __atomic_exchange_n(&forwarded, 0, __ATOMIC_SEQ_CST);
}

/* The time-slice timer: a signal to this thread that only interrupts KVM_RUN. */
int rk_timer_init(int signo) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_tick;
    if (sigaction(signo, &sa, NULL) != 0)
        return -errno;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = signo;
    sev._sigev_un._tid = syscall(SYS_gettid);
    if (timer_create(CLOCK_MONOTONIC, &sev, &rk_timer) != 0)
        return -errno;
    rk_timer_ok = 1;
    return 0;
}

int rk_poll(int *fds, short *events, short *revents, int nfds, long timeout_ns) {
    struct pollfd p[64];
    if (nfds > 64)
        nfds = 64;
    for (int i = 0; i < nfds; i++) {
        p[i].fd = fds[i]; p[i].events = events[i]; p[i].revents = 0;
    }
    struct timespec ts = {timeout_ns / 1000000000L, timeout_ns % 1000000000L};
    int r = ppoll(p, nfds, timeout_ns < 0 ? NULL : &ts, NULL);
    if (r < 0)
        return -errno;
    for (int i = 0; i < nfds; i++)
        revents[i] = p[i].revents;
    return r;
}
