/*
 * notif_floor [--pin[=CPU]] MODE N  -- the floors of the seccomp_notify platform's two trap paths.
 *
 * A child installs a seccomp filter that sends getpid to a supervisor (this process) and
 * allows everything else, then makes N raw getpid calls and prints ns_per_call measured inside
 * itself (as bench/c/getpid_loop.c does).  The supervisor answers each getpid with 1; the host
 * never runs it.  MODE:
 *
 *   notif       SECCOMP_RET_USER_NOTIF: blocking SECCOMP_IOCTL_NOTIF_RECV, then NOTIF_SEND
 *               (val 1, no SECCOMP_USER_NOTIF_FLAG_CONTINUE).  The platform's fast path.
 *   notif-poll  the same with a ppoll() on the listener (and a second fd, as the Sentry also
 *               waits for ptrace stops through a SIGCHLD signalfd) before each RECV.
 *   notif-traced the child is also ptraced (PTRACE_CONT, never stopped): the platform's case.
 *   trace       SECCOMP_RET_TRACE under PTRACE_CONT: a PTRACE_EVENT_SECCOMP stop, GETREGS,
 *               orig_rax = -1 (skip the host call) and rax = 1 by SETREGS, PTRACE_CONT.  The
 *               platform's slow path (every call that changes registers or the address space).
 *   trace-poke  the same writing only orig_rax and rax with two POKEUSERs.
 *
 * (PTRACE_SYSEMU cannot be combined with a notif filter: under SYSEMU the kernel reports the
 * stop and skips the call in syscall_trace_enter BEFORE seccomp runs, so the filter never sees
 * it.  Hence PTRACE_CONT + RET_TRACE for the slow path.  bench/c/sysemu_floor.c is SYSEMU.)
 *
 * --pin puts supervisor and child on one CPU.  Build: gcc -O2 -static -o notif_floor notif_floor.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(1); }

static int install(unsigned action, unsigned flags) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {4, f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("no_new_privs");
    int r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
    if (r < 0) die("seccomp");
    return r;
}

static void loop(long n, int out) {
    long warm = n / 100 < 1000 ? n / 100 : 1000, last = 0;
    struct timespec t0, t1;
    for (long i = 0; i < warm; i++) syscall(SYS_getpid);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) last = syscall(SYS_getpid);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    char buf[128];
    int len = snprintf(buf, sizeof buf, "ns_per_call=%.2f\ngetpid=%ld\n", ns / (double)n, last);
    (void)!write(out, buf, len);
}

static void send_fd(int sock, int fd) {
    char c = 0, cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&c, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    if (sendmsg(sock, &m, 0) < 0) die("sendmsg");
}

static int recv_fd(int sock) {
    char c, cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&c, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    if (recvmsg(sock, &m, 0) <= 0) die("recvmsg");
    int fd;
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
    return fd;
}

static int notif_mode(long n, int poll_first, int traced) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) die("socketpair");
    pid_t pid = fork();
    if (pid == 0) {
        if (traced) { if (ptrace(PTRACE_TRACEME, 0, 0, 0)) die("traceme"); raise(SIGSTOP); }
        int fd = install(SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER);
        send_fd(sv[1], fd);
        close(fd);
        loop(n, 1);
        _exit(0);
    }
    if (traced) {
        int st;
        waitpid(pid, &st, 0);
        ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_EXITKILL);
        ptrace(PTRACE_CONT, pid, 0, 0);
    }
    int lfd = recv_fd(sv[0]);
    struct seccomp_notif_sizes sz;
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sz)) die("sizes");
    struct seccomp_notif *req = calloc(1, sz.seccomp_notif > sizeof *req ? sz.seccomp_notif : sizeof *req);
    struct seccomp_notif_resp *resp = calloc(1, sz.seccomp_notif_resp > sizeof *resp ? sz.seccomp_notif_resp : sizeof *resp);
    int other[2];
    if (pipe(other)) die("pipe");
    for (;;) {
        if (poll_first) {
            struct pollfd p[2] = {{lfd, POLLIN, 0}, {other[0], POLLIN, 0}};
            if (poll(p, 2, -1) < 0) { if (errno == EINTR) continue; die("poll"); }
            if (p[0].revents & (POLLHUP | POLLERR)) break;
        }
        memset(req, 0, sz.seccomp_notif);
        if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_RECV, req) < 0) {
            if (errno == EINTR) continue;
            break;                       /* ENOENT/EBADF...: the child is gone */
        }
        resp->id = req->id; resp->val = 1; resp->error = 0; resp->flags = 0;
        if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_SEND, resp) < 0 && errno != ENOENT) die("send");
    }
    int st;
    waitpid(pid, &st, 0);
    return 0;
}

static int trace_mode(long n, int poke) {
    pid_t pid = fork();
    if (pid == 0) {
        if (ptrace(PTRACE_TRACEME, 0, 0, 0)) die("traceme");
        raise(SIGSTOP);
        install(SECCOMP_RET_TRACE, 0);
        loop(n, 1);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL);
    ptrace(PTRACE_CONT, pid, 0, 0);
    struct user_regs_struct r;
    for (;;) {
        if (waitpid(pid, &st, 0) < 0) die("waitpid");
        if (WIFEXITED(st) || WIFSIGNALED(st)) break;
        int sig = 0;
        if (st >> 8 == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8))) {
            if (poke) {
                ptrace(PTRACE_POKEUSER, pid, offsetof(struct user_regs_struct, orig_rax), -1L);
                ptrace(PTRACE_POKEUSER, pid, offsetof(struct user_regs_struct, rax), 1L);
            } else {
                ptrace(PTRACE_GETREGS, pid, 0, &r);
                r.orig_rax = -1; r.rax = 1;
                ptrace(PTRACE_SETREGS, pid, 0, &r);
            }
        } else if (WIFSTOPPED(st) && WSTOPSIG(st) != SIGTRAP) {
            sig = WSTOPSIG(st);
        }
        ptrace(PTRACE_CONT, pid, 0, (void *)(long)sig);
    }
    return 0;
}

int main(int argc, char **argv) {
    int i = 1, cpu = -1, pin = 0;
    if (i < argc && !strncmp(argv[i], "--pin", 5)) {
        pin = 1;
        if (argv[i][5] == '=') cpu = atoi(argv[i] + 6);
        i++;
    }
    if (argc - i != 2) {
        fprintf(stderr, "usage: %s [--pin[=CPU]] notif|notif-poll|notif-traced|trace|trace-poke N\n", argv[0]);
        return 2;
    }
    const char *mode = argv[i];
    long n = atol(argv[i + 1]);
    if (pin) {
        cpu_set_t set;
        if (cpu < 0) {
            if (sched_getaffinity(0, sizeof set, &set)) die("sched_getaffinity");
            for (cpu = 0; !CPU_ISSET(cpu, &set); cpu++) {}
        }
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set)) die("sched_setaffinity");
    }
    if (!strcmp(mode, "notif")) return notif_mode(n, 0, 0);
    if (!strcmp(mode, "notif-poll")) return notif_mode(n, 1, 0);
    if (!strcmp(mode, "notif-traced")) return notif_mode(n, 0, 1);
    if (!strcmp(mode, "trace")) return trace_mode(n, 0);
    if (!strcmp(mode, "trace-poke")) return trace_mode(n, 1);
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
