/* The KVM platform's vCPU run loop (compiled into platforms.kvm._kvm_ext by _build_kvm.py,
   with pagetables.c and hostsig.c): see _build_kvm.py for why this is C. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <time.h>
#include <unistd.h>

struct rk_pool;
struct rk_layout {
    unsigned long entry_exit_rip, gate_base, kstack_gva;
    unsigned char *kstack_host;
    struct rk_pool *pool;
};
struct rk_space;
struct rk_vcpu {
    int fd; void *run; int in_kernel; unsigned long long cpu_ns;
    unsigned int exit_reason, port, vector; unsigned long errcode, cr2;
    struct rk_space *space;
};
struct rk_pool {
    unsigned char *base; unsigned long gpa;
    unsigned long npages, next, free_head, used, retired_head, retired;
    unsigned char *fresh; int any_fresh;
};
struct rk_space { unsigned long root; };
void rk_pool_commit(struct rk_pool *p);

struct rk_setup {
    unsigned long cr3, gdt_base, gdt_limit, idt_base, idt_limit, tss_base, lstar, xcr0;
};
static const struct kvm_segment CS3 = {.limit = 0xffffffff, .selector = 0x33, .type = 11,
    .present = 1, .dpl = 3, .s = 1, .l = 1, .g = 1};
static const struct kvm_segment DS3 = {.limit = 0xffffffff, .selector = 0x2b, .type = 3,
    .present = 1, .dpl = 3, .s = 1, .db = 1, .g = 1};

static struct kvm_cpuid2 *supported_cpuid(int kvm_fd) {
    static struct kvm_cpuid2 *c;
    if (c)
        return c;
    struct kvm_cpuid2 *t = calloc(1, sizeof *t + 256 * sizeof(struct kvm_cpuid_entry2));
    if (!t)
        return NULL;
    t->nent = 256;
    if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, t) != 0) {
        free(t);
        return NULL;
    }
    return c = t;
}

/* The guest's CPUID entry (function, index) as the platform sets it (zeros when absent). */
int rk_cpuid_entry(int kvm_fd, unsigned int function, unsigned int index, unsigned int *out) {
    struct kvm_cpuid2 *c = supported_cpuid(kvm_fd);
    out[0] = out[1] = out[2] = out[3] = 0;
    if (!c)
        return -errno;
    for (unsigned i = 0; i < c->nent; i++)
        if (c->entries[i].function == function && c->entries[i].index == index) {
            out[0] = c->entries[i].eax; out[1] = c->entries[i].ebx;
            out[2] = c->entries[i].ecx; out[3] = c->entries[i].edx;
            return 1;
        }
    return 0;
}

int rk_cpuid_phys_bits(int kvm_fd) {
    struct kvm_cpuid2 *c = supported_cpuid(kvm_fd);
    if (!c)
        return -errno;
    for (unsigned i = 0; i < c->nent; i++)
        if (c->entries[i].function == 0x80000008)
            return c->entries[i].eax & 0xff;
    return 36;
}

unsigned long rk_supported_xcr0(int kvm_fd) {
    struct kvm_cpuid2 *c = supported_cpuid(kvm_fd);
    if (!c)
        return 3;
    for (unsigned i = 0; i < c->nent; i++)
        if (c->entries[i].function == 0xd && c->entries[i].index == 0)
            return c->entries[i].eax | (unsigned long)c->entries[i].edx << 32;
    return 3;
}

/* A vCPU in 64-bit user mode: CPUID as KVM supports it, long mode with our tables, the
   syscall MSRs (STAR: kernel CS 0x10, user CS 0x33 / SS 0x2b as Linux; LSTAR: the entry
   page; SFMASK: TF DF IF IOPL AC NT as Linux), XCR0. */
int rk_vcpu_setup(int kvm_fd, int vcpu_fd, const struct rk_setup *s) {
    struct kvm_cpuid2 *sup = supported_cpuid(kvm_fd);
    if (!sup)
        return -errno;
    if (ioctl(vcpu_fd, KVM_SET_CPUID2, sup) != 0)
        return -errno;
    struct kvm_sregs sr;
    if (ioctl(vcpu_fd, KVM_GET_SREGS, &sr) != 0)
        return -errno;
    sr.cs = CS3; sr.ss = DS3;
    sr.ds = DS3; sr.es = DS3; sr.fs = DS3; sr.gs = DS3;
    sr.fs.selector = sr.gs.selector = sr.ds.selector = sr.es.selector = 0;
    sr.tr = (struct kvm_segment){.base = s->tss_base, .limit = 0x67, .selector = 0x40, .type = 11, .present = 1};
    sr.ldt = (struct kvm_segment){.unusable = 1};
    sr.gdt.base = s->gdt_base; sr.gdt.limit = s->gdt_limit;
    sr.idt.base = s->idt_base; sr.idt.limit = s->idt_limit;
    sr.cr0 = 0x80050033;                                 /* PG AM WP NE ET MP PE */
    sr.cr4 = 0x20 | 0x200 | 0x400 | 0x10000 | 0x40000;   /* PAE OSFXSR OSXMMEXCPT FSGSBASE OSXSAVE */
    sr.cr3 = s->cr3;
    sr.efer = 0xd01;                                     /* SCE LME LMA NXE */
    if (ioctl(vcpu_fd, KVM_SET_SREGS, &sr) != 0)
        return -errno;
    struct { struct kvm_msrs h; struct kvm_msr_entry e[5]; } m;
    memset(&m, 0, sizeof m);
    m.h.nmsrs = 5;
    m.e[0].index = 0xC0000081; m.e[0].data = 0x20ULL << 48 | 0x10ULL << 32;   /* STAR */
    m.e[1].index = 0xC0000082; m.e[1].data = s->lstar;                         /* LSTAR */
    m.e[2].index = 0xC0000084; m.e[2].data = 0x47700;                          /* SFMASK */
    m.e[3].index = 0xC0000083; m.e[3].data = s->lstar;                         /* CSTAR */
    m.e[4].index = 0xC0000102; m.e[4].data = 0;                                /* KERNEL_GS_BASE */
    if (ioctl(vcpu_fd, KVM_SET_MSRS, &m) != 5)
        return -EINVAL;
    struct kvm_xcrs x;
    memset(&x, 0, sizeof x);
    x.nr_xcrs = 1; x.xcrs[0].xcr = 0; x.xcrs[0].value = s->xcr0;
    if (ioctl(vcpu_fd, KVM_SET_XCRS, &x) != 0)
        return -errno;
    return 0;
}

int rk_set_memslot(int vm_fd, unsigned int slot, unsigned long gpa, unsigned long size, void *host) {
    struct kvm_userspace_memory_region m = {.slot = slot, .guest_phys_addr = gpa,
                                            .memory_size = size, .userspace_addr = (unsigned long)host};
    return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &m) ? -errno : 0;
}

long rk_xsave(int vcpu_fd, void *buf, int set) {
#ifndef KVM_GET_XSAVE2
#define KVM_GET_XSAVE2 _IOR(KVMIO, 0xcf, struct kvm_xsave)
#endif
    return ioctl(vcpu_fd, set ? KVM_SET_XSAVE : KVM_GET_XSAVE2, buf) ? -errno : 0;
}

enum { RK_SYSCALL = 0, RK_FAULT = 1, RK_INTR = 2, RK_OTHER = 3 };
#define PORT_SYSCALL 0x10
#define PORT_GATE    0x20
#define USER_FLAGS   0x254DD5UL        /* CF PF AF ZF SF TF DF OF NT RF AC ID */


static timer_t rk_timer;
static int rk_timer_ok;

static unsigned long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (unsigned long long)t.tv_sec * 1000000000ULL + t.tv_nsec;
}

void *rk_ptr(unsigned long addr) { return (void *)addr; }

long rk_ioctl(int fd, unsigned long req, void *arg) {
    long r = ioctl(fd, req, arg);
    return r < 0 ? -errno : r;
}

long rk_ioctl_int(int fd, unsigned long req, unsigned long arg) {
    long r = ioctl(fd, req, arg);
    return r < 0 ? -errno : r;
}

int rk_vcpu_init(struct rk_vcpu *v, int vcpu_fd, long mmap_size) {
    void *run = mmap(0, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd, 0);
    if (run == MAP_FAILED)
        return -errno;
    memset(v, 0, sizeof *v);
    v->fd = vcpu_fd;
    v->run = run;
    struct kvm_run *r = run;
    r->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
    /* The sync-regs area is filled by KVM only at an exit: seed it with the current state. */
    if (ioctl(vcpu_fd, KVM_GET_REGS, &r->s.regs.regs) || ioctl(vcpu_fd, KVM_GET_SREGS, &r->s.regs.sregs))
        return -errno;
    v->in_kernel = 1;
    return 0;
}

/* After a reset of the vCPU's state (rk_vcpu_setup): the sync area from the vCPU again. */
int rk_vcpu_reseed(struct rk_vcpu *v) {
    struct kvm_run *r = v->run;
    if (ioctl(v->fd, KVM_GET_REGS, &r->s.regs.regs) || ioctl(v->fd, KVM_GET_SREGS, &r->s.regs.sregs))
        return -errno;
    r->kvm_dirty_regs = 0;
    v->in_kernel = 1;
    return 0;
}

static void regs_in(struct kvm_run *r, const struct user_regs_struct *u, struct rk_vcpu *v) {
    struct kvm_regs *R = &r->s.regs.regs;
    struct kvm_sregs *S = &r->s.regs.sregs;
    R->rax = u->rax; R->rbx = u->rbx; R->rcx = u->rcx; R->rdx = u->rdx;
    R->rsi = u->rsi; R->rdi = u->rdi; R->rsp = u->rsp; R->rbp = u->rbp;
    R->r8 = u->r8; R->r9 = u->r9; R->r10 = u->r10; R->r11 = u->r11;
    R->r12 = u->r12; R->r13 = u->r13; R->r14 = u->r14; R->r15 = u->r15;
    R->rip = u->rip;
    R->rflags = (u->eflags & USER_FLAGS) | 0x202;
    r->kvm_dirty_regs = KVM_SYNC_X86_REGS;
    if (v->in_kernel || S->fs.base != u->fs_base || S->gs.base != u->gs_base ||
            (v->space && S->cr3 != v->space->root)) {
        if (v->space)
            S->cr3 = v->space->root;
        S->cs = CS3; S->ss = DS3;
        S->fs.base = u->fs_base; S->gs.base = u->gs_base;
        r->kvm_dirty_regs |= KVM_SYNC_X86_SREGS;
        v->in_kernel = 0;
    }
}

static void regs_out(struct kvm_run *r, struct user_regs_struct *u) {
    struct kvm_regs *R = &r->s.regs.regs;
    struct kvm_sregs *S = &r->s.regs.sregs;
    u->rax = R->rax; u->rbx = R->rbx; u->rcx = R->rcx; u->rdx = R->rdx;
    u->rsi = R->rsi; u->rdi = R->rdi; u->rsp = R->rsp; u->rbp = R->rbp;
    u->r8 = R->r8; u->r9 = R->r9; u->r10 = R->r10; u->r11 = R->r11;
    u->r12 = R->r12; u->r13 = R->r13; u->r14 = R->r14; u->r15 = R->r15;
    u->rip = R->rip; u->eflags = R->rflags;
    u->fs_base = S->fs.base; u->gs_base = S->gs.base;
    u->cs = 0x33; u->ss = 0x2b;
}

static int has_errcode(unsigned v) {
    return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30;
}

/* Run the vCPU once (up to timeslice_ns if > 0) and say what stopped it. */
int rk_run(struct rk_vcpu *v, struct user_regs_struct *u, const struct rk_layout *l, long timeslice_ns) {
    struct kvm_run *r = v->run;
    regs_in(r, u, v);
    rk_pool_commit(l->pool);
    if (timeslice_ns > 0 && rk_timer_ok) {
        struct itimerspec its = {.it_value = {timeslice_ns / 1000000000L, timeslice_ns % 1000000000L}};
        timer_settime(rk_timer, 0, &its, NULL);
    }
    unsigned long long t0 = now_ns();
    int rc = ioctl(v->fd, KVM_RUN, 0);
    int err = errno;
    v->cpu_ns += now_ns() - t0;
    if (timeslice_ns > 0 && rk_timer_ok) {
        struct itimerspec zero = {{0, 0}, {0, 0}};
        timer_settime(rk_timer, 0, &zero, NULL);
    }
    struct kvm_regs *R = &r->s.regs.regs;
    struct kvm_sregs *S = &r->s.regs.sregs;
    if (rc < 0) {
        if (err != EINTR && err != EAGAIN)
            return -err;
        /* Interrupted (a host signal, the time slice): the state is in the sync area. */
        if (S->cs.dpl != 0)
            regs_out(r, u);
        return RK_INTR;
    }
    int cpl = S->cs.dpl;
    if (r->exit_reason == KVM_EXIT_IO) {
        unsigned port = r->io.port;
        if (cpl == 3 && port == PORT_SYSCALL && R->rip == l->entry_exit_rip) {
            regs_out(r, u);
            u->orig_rax = R->rax;
            u->rip = R->rcx;             /* `syscall` left the return address and flags here */
            u->eflags = R->r11;
            return RK_SYSCALL;
        }
        if (cpl == 0 && port >= PORT_GATE && port < PORT_GATE + 32 &&
                R->rip == l->gate_base + (port - PORT_GATE) * 4 + 2 &&
                R->rsp >= l->kstack_gva && R->rsp <= l->kstack_gva + 4096 - 40) {
            unsigned vec = port - PORT_GATE;
            uint64_t *f = (uint64_t *)(l->kstack_host + (R->rsp - l->kstack_gva));
            v->vector = vec;
            v->errcode = has_errcode(vec) ? *f++ : 0;
            v->cr2 = S->cr2;
            v->in_kernel = 1;
            regs_out(r, u);
            u->rip = f[0]; u->eflags = f[2]; u->rsp = f[3];
            u->orig_rax = ~0UL;
            return RK_FAULT;
        }
        if (cpl == 3) {
            /* The application's own in/out: a #GP, as without ioperm on Linux. */
            regs_out(r, u);
            u->orig_rax = ~0UL;
            v->vector = 13; v->errcode = 0; v->cr2 = 0;
            return RK_FAULT;
        }
    }
    v->exit_reason = r->exit_reason;
    v->port = r->exit_reason == KVM_EXIT_IO ? r->io.port : 0;
    if (cpl == 3)
        regs_out(r, u);
    return RK_OTHER;
}

