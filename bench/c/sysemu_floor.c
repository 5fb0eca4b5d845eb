/*
 * sysemu_floor [--pin[=CPU]] [-v] PROGRAM [ARGS...]
 *
 * The physical floor of a ptrace sandbox on this machine: the cheapest
 * possible tracer that catches every system call of PROGRAM with
 * PTRACE_SYSEMU and answers it itself.
 *
 *   - getpid  -> answered here: rax = 1 (PTRACE_SETREGS), never reaches
 *                the host kernel.  This is the path bench/getpid.py times.
 *   - anything else (the program's libc start-up, its write(2) of the
 *     result, exit_group) really runs on the host: under PTRACE_SYSEMU the
 *     kernel has already decided to skip the call when it stops us at
 *     syscall entry (it samples the SYSEMU flag before reporting the stop,
 *     so resuming with PTRACE_SYSCALL would still skip it).  So we rewind
 *     rip over the 2-byte syscall instruction, restore rax = orig_rax, and
 *     resume with PTRACE_SYSCALL: the tracee re-issues the call, we see its
 *     entry stop and its exit stop, then go back to PTRACE_SYSEMU.
 *     exit/exit_group end with the tracee's exit instead of an exit stop.
 *
 * --pin puts tracer and tracee on one CPU (sched_setaffinity before fork,
 * inherited by the child): a ptrace stop is then a plain context switch on
 * one core instead of a cross-CPU wake-up.
 *
 * Exit status: the tracee's (128+signal if it was killed).
 * Build: gcc -O2 -static -o sysemu_floor sysemu_floor.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>

#ifndef PTRACE_SYSEMU
#define PTRACE_SYSEMU 31
#endif
#ifndef PTRACE_O_EXITKILL
#define PTRACE_O_EXITKILL (1 << 20)
#endif

#define SYSCALL_STOP (SIGTRAP | 0x80)

static int verbose;
static long n_emulated, n_passthrough, n_signals;

static void die(const char *what)
{
    fprintf(stderr, "sysemu_floor: %s: %s\n", what, strerror(errno));
    exit(125);
}

/* Wait for the tracee; returns 1 if it is stopped, 0 if it has gone
 * (status describes how). */
static int wait_stop(pid_t pid, int *status)
{
    for (;;) {
        pid_t r = waitpid(pid, status, __WALL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("waitpid");
        }
        return WIFSTOPPED(*status);
    }
}

static int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 125;
}

/* Let the syscall the tracee is stopped at (under SYSEMU, entry) really run.
 * Returns 1 if the tracee is stopped after it, 0 if it exited. */
static int passthrough(pid_t pid, struct user_regs_struct *regs, int *status)
{
    int stage = 0;          /* 0: want entry stop, 1: want exit stop */
    int sig = 0;

    n_passthrough++;
    regs->rip -= 2;         /* back onto `syscall` (0f 05) */
    regs->rax = regs->orig_rax;
    if (ptrace(PTRACE_SETREGS, pid, 0, regs) < 0)
        die("PTRACE_SETREGS");
    for (;;) {
        if (ptrace(PTRACE_SYSCALL, pid, 0, (void *)(long)sig) < 0)
            die("PTRACE_SYSCALL");
        sig = 0;
        if (!wait_stop(pid, status))
            return 0;       /* exit / exit_group */
        if (WSTOPSIG(*status) == SYSCALL_STOP) {
            if (++stage == 2)
                return 1;   /* exit stop: done */
            continue;       /* entry stop: let it run */
        }
        sig = WSTOPSIG(*status);        /* a signal arrived: deliver it */
        n_signals++;
    }
}

int main(int argc, char **argv)
{
    int pin = 0, cpu = -1, status, sig = 0;
    int i = 1;

    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--pin")) {
            pin = 1;
        } else if (!strncmp(argv[i], "--pin=", 6)) {
            pin = 1;
            cpu = atoi(argv[i] + 6);
        } else if (!strcmp(argv[i], "-v")) {
            verbose = 1;
        } else if (!strcmp(argv[i], "--")) {
            i++;
            break;
        } else {
            break;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "usage: %s [--pin[=CPU]] [-v] PROGRAM [ARGS...]\n", argv[0]);
        return 2;
    }

    if (pin) {
        cpu_set_t set;
        if (cpu < 0) {      /* first CPU we are allowed on */
            if (sched_getaffinity(0, sizeof set, &set) < 0)
                die("sched_getaffinity");
            for (cpu = 0; cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &set); cpu++)
                ;
        }
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0)
            die("sched_setaffinity");
    }

    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        if (ptrace(PTRACE_TRACEME, 0, 0, 0) < 0) {
            perror("sysemu_floor: PTRACE_TRACEME");
            _exit(125);
        }
        execv(argv[i], argv + i);
        fprintf(stderr, "sysemu_floor: exec %s: %s\n", argv[i], strerror(errno));
        _exit(127);
    }

    /* The exec's SIGTRAP stop (or the child already gone if exec failed). */
    if (!wait_stop(pid, &status))
        return exit_code(status);
    if (ptrace(PTRACE_SETOPTIONS, pid, 0,
               (void *)(long)(PTRACE_O_EXITKILL | PTRACE_O_TRACESYSGOOD)) < 0)
        die("PTRACE_SETOPTIONS");

    for (;;) {
        struct user_regs_struct regs;

        if (ptrace(PTRACE_SYSEMU, pid, 0, (void *)(long)sig) < 0)
            die("PTRACE_SYSEMU");
        sig = 0;
        if (!wait_stop(pid, &status))
            break;
        if (WSTOPSIG(status) != SYSCALL_STOP) {
            sig = WSTOPSIG(status);     /* signal-delivery stop: pass it on */
            n_signals++;
            continue;
        }
        if (ptrace(PTRACE_GETREGS, pid, 0, &regs) < 0)
            die("PTRACE_GETREGS");
        if (regs.orig_rax == SYS_getpid) {
            n_emulated++;
            regs.rax = 1;
            if (ptrace(PTRACE_SETREGS, pid, 0, &regs) < 0)
                die("PTRACE_SETREGS");
            continue;
        }
        if (!passthrough(pid, &regs, &status))
            break;
    }

    if (verbose)
        fprintf(stderr, "sysemu_floor: emulated=%ld passthrough=%ld signals=%ld pinned=%s exit=%d\n",
                n_emulated, n_passthrough, n_signals,
                pin ? "yes" : "no", exit_code(status));
    return exit_code(status);
}
