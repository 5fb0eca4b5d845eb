/*
 * kvm_floor [MODE] [N]: the floor of a KVM platform's exit on this machine.
 *
 * A minimal VM set up the way platforms/kvm sets it up (long mode, 4-level
 * page tables, GDT/IDT/TSS, STAR/LSTAR/SFMASK; guest-physical memory is one
 * anonymous mapping; registers travel through the kvm_run page with
 * KVM_CAP_SYNC_REGS), running N round trips of one kind, timed inside:
 *
 *   syscall  guest ring 3 loops on `mov $39,%eax; syscall`.  LSTAR points at
 *            the platform's entry page, a single `out %al,$0x10`: the I/O
 *            exit reaches this host loop, which answers (rax = 1) and resumes
 *            the guest at rcx with rflags = r11, as platforms/kvm does for
 *            every application syscall.  The cost of one trapped syscall.
 *   trap     guest ring 3 loops on `int3`: the IDT gate (ring 0) runs
 *            `out %al,$0x13`; the host reads the exception frame from the
 *            ring-0 stack and returns to ring 3 by writing rip/rsp/rflags and
 *            the user CS/SS into the sync-regs area.  The cost of one fault.
 *   trapiret the same, but the gate returns itself with `iretq`.
 *   bare     ring 0 (entered once through int3) loops on `out %al,$0x11;
 *            jmp`: a bare KVM_RUN -> I/O exit -> KVM_RUN round trip.
 *   all      each of the above, one line each (default).
 *
 * Prints "<mode>: ns_per_call=<float>" per mode and, for one mode, a last line
 * "ns_per_call=<float>" (the metric bench/harness.py reads).
 *
 * What the kvm_pvm module of this machine does, found with this program:
 * under PVM the guest's `syscall` enters LSTAR without gaining ring-0
 * privilege (the entry page must be a user page: a supervisor-only entry
 * page faults on fetch), while exceptions and `int3` are delivered through
 * the IDT to real ring 0.  `out` exits from either.
 *
 * Build: gcc -O2 -static -o kvm_floor kvm_floor.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEMSZ   (1 << 20)
/* guest-physical layout */
#define PML4    0x1000
#define PT_LO   0x2000          /* 0x2000..0x4fff: PDPT, PD, PT for the user pages */
#define PT_HI   0x5000          /* 0x5000..0x7fff: PDPT, PD, PT for the platform pages */
#define GDT     0x8000
#define TSS     0x9000
#define IDT     0xa000
#define ENTRY   0xb000          /* syscall entry page: user-executable */
#define KCODE   0xc000          /* IDT gates: supervisor only */
#define KSTACK  0xd000
#define UCODE   0x10000
#define USTACK  0x11000
/* guest-virtual layout */
#define UBASE   0x400000ULL
#define KBASE   0x7F8000000000ULL   /* + 0x0000 ENTRY, 0x1000 KCODE, 0x2000 KSTACK, 0x3000 GDT, 0x4000 TSS, 0x5000 IDT */

static uint8_t *mem;
static int kvm, vm, vcpu;
static struct kvm_run *run;

static uint64_t seg(int type, int dpl, int l, int db) {
    return 0xffffULL | (uint64_t)type << 40 | 1ULL << 44 | (uint64_t)dpl << 45 | 1ULL << 47 |
           0xfULL << 48 | (uint64_t)l << 53 | (uint64_t)db << 54 | 1ULL << 55;
}

static void map(uint64_t va, uint64_t gpa, int user, int writable, int nx, uint64_t tables) {
    uint64_t *pml4 = (void *)(mem + PML4);
    uint64_t *pdpt = (void *)(mem + tables), *pd = (void *)(mem + tables + 0x1000),
             *pt = (void *)(mem + tables + 0x2000);
    pml4[(va >> 39) & 511] = tables | 7;
    pdpt[(va >> 30) & 511] = (tables + 0x1000) | 7;
    pd[(va >> 21) & 511] = (tables + 0x2000) | 7;
    pt[(va >> 12) & 511] = gpa | 1 | (writable ? 2 : 0) | (user ? 4 : 0) | (nx ? 1ULL << 63 : 0);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static void die(const char *what) { perror(what); exit(1); }

static const struct kvm_segment CS3 = {.limit = 0xffffffff, .selector = 0x33, .type = 11, .present = 1,
                                       .dpl = 3, .s = 1, .l = 1, .g = 1};
static const struct kvm_segment DS3 = {.limit = 0xffffffff, .selector = 0x2b, .type = 3, .present = 1,
                                       .dpl = 3, .s = 1, .db = 1, .g = 1};

/* A fresh vCPU in ring 0 about to `iretq` to UBASE in ring 3. */
static void setup(const uint8_t *ucode, size_t ulen) {
    memset(mem, 0, MEMSZ);
    map(UBASE, UCODE, 1, 0, 0, PT_LO);
    map(UBASE + 0x1000, USTACK, 1, 1, 1, PT_LO);
    map(KBASE, ENTRY, 1, 0, 0, PT_HI);
    map(KBASE + 0x1000, KCODE, 0, 0, 0, PT_HI);
    map(KBASE + 0x2000, KSTACK, 0, 1, 1, PT_HI);
    map(KBASE + 0x3000, GDT, 0, 0, 1, PT_HI);
    map(KBASE + 0x4000, TSS, 0, 0, 1, PT_HI);
    map(KBASE + 0x5000, IDT, 0, 0, 1, PT_HI);
    uint64_t *gdt = (void *)(mem + GDT);
    gdt[2] = seg(11, 0, 1, 0);  /* 0x10 kernel CS */
    gdt[3] = seg(3, 0, 0, 1);   /* 0x18 kernel SS */
    gdt[4] = seg(11, 3, 0, 1);  /* 0x23 user CS32 */
    gdt[5] = seg(3, 3, 0, 1);   /* 0x2b user DS */
    gdt[6] = seg(11, 3, 1, 0);  /* 0x33 user CS */
    uint64_t tss = KBASE + 0x4000;
    gdt[8] = 0x67 | (tss & 0xffffff) << 16 | 0x8bULL << 40 | ((tss >> 24) & 0xff) << 56;
    gdt[9] = tss >> 32;
    memcpy(mem + TSS + 4, &(uint64_t){KBASE + 0x3000}, 8);      /* rsp0: top of KSTACK */
    uint8_t *e = mem + ENTRY, *k = mem + KCODE;
    e[0] = 0xe6; e[1] = 0x10;                                   /* out %al,$0x10 */
    e[0x10] = 0xcc;                                             /* int3 (syscall-int3) */
    k[0] = 0x48; k[1] = 0xcf;                                   /* iretq (start-up) */
    k[0x10] = 0xe6; k[0x11] = 0x13;                             /* #BP gate (trap) */
    k[0x20] = 0xe6; k[0x21] = 0x14; k[0x22] = 0x48; k[0x23] = 0xcf;  /* #BP gate (trapiret) */
    k[0x30] = 0xe6; k[0x31] = 0x11; k[0x32] = 0xeb; k[0x33] = 0xfc;  /* #BP gate (bare) */
    for (int v = 0; v < 32; v++) {                              /* other vectors: out 0x40+v */
        k[0x100 + v * 4] = 0xe6; k[0x101 + v * 4] = 0x40 + v;
    }
    memcpy(mem + UCODE, ucode, ulen);

    struct kvm_sregs sr;
    if (ioctl(vcpu, KVM_GET_SREGS, &sr)) die("KVM_GET_SREGS");
    sr.cs = (struct kvm_segment){.limit = 0xffffffff, .selector = 0x10, .type = 11, .present = 1, .s = 1, .l = 1, .g = 1};
    sr.ss = (struct kvm_segment){.limit = 0xffffffff, .selector = 0x18, .type = 3, .present = 1, .s = 1, .db = 1, .g = 1};
    sr.ds = sr.es = sr.fs = sr.gs = DS3;
    sr.tr = (struct kvm_segment){.base = tss, .limit = 0x67, .selector = 0x40, .type = 11, .present = 1};
    sr.ldt = (struct kvm_segment){.unusable = 1};
    sr.gdt.base = KBASE + 0x3000; sr.gdt.limit = 10 * 8 - 1;
    sr.idt.base = KBASE + 0x5000; sr.idt.limit = 256 * 16 - 1;
    sr.cr0 = 0x80050033;                    /* PG AM WP NE ET MP PE */
    sr.cr4 = 0x20 | 0x200 | 0x400 | 0x10000 | 0x40000;   /* PAE OSFXSR OSXMMEXCPT FSGSBASE OSXSAVE */
    sr.cr3 = PML4;
    sr.efer = 0xd01;                        /* SCE LME LMA NXE */
    if (ioctl(vcpu, KVM_SET_SREGS, &sr)) die("KVM_SET_SREGS");
    struct kvm_regs rg = {.rip = KBASE + 0x1000, .rsp = KBASE + 0x3000 - 40, .rflags = 2};
    uint64_t *f = (void *)(mem + KSTACK + 0x1000 - 40);
    f[0] = UBASE; f[1] = 0x33; f[2] = 0x202; f[3] = UBASE + 0x2000; f[4] = 0x2b;
    if (ioctl(vcpu, KVM_SET_REGS, &rg)) die("KVM_SET_REGS");
}

static void set_bp_gate(int off) {
    uint64_t *idt = (void *)(mem + IDT);
    for (int v = 0; v < 32; v++) {
        uint64_t h = KBASE + 0x1000 + (v == 3 ? off : 0x100 + v * 4);
        idt[2 * v] = (h & 0xffff) | 0x10ULL << 16 | (v == 3 ? 0xeeULL : 0x8eULL) << 40 | ((h >> 16) & 0xffff) << 48;
        idt[2 * v + 1] = h >> 32;
    }
}

static double measure(const char *mode, long n) {
    static const uint8_t sys_loop[] = {0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7};
    static const uint8_t bp_loop[] = {0xcc, 0xeb, 0xfd};
    int sys = !strncmp(mode, "syscall", 7);
    setup(sys ? sys_loop : bp_loop, sys ? sizeof sys_loop : sizeof bp_loop);
    set_bp_gate(!strcmp(mode, "trap") || !strcmp(mode, "syscall-int3") ? 0x10 : !strcmp(mode, "trapiret") ? 0x20 : 0x30);
    struct { uint32_t n, pad; struct kvm_msr_entry e[3]; } msrs = {.n = 3, .e = {
        {.index = 0xC0000081, .data = 0x20ULL << 48 | 0x10ULL << 32},   /* STAR */
        {.index = 0xC0000082, .data = KBASE + (strcmp(mode, "syscall-int3") ? 0 : 0x10)},  /* LSTAR: the entry page */
        {.index = 0xC0000084, .data = 0x47700}}};                       /* SFMASK: TF DF IF IOPL AC NT */
    if (ioctl(vcpu, KVM_SET_MSRS, &msrs) != 3) die("KVM_SET_MSRS");
    run->kvm_valid_regs = KVM_SYNC_X86_REGS | (strcmp(mode, "trap") && strcmp(mode, "syscall-int3") ? 0 : KVM_SYNC_X86_SREGS);
    struct kvm_regs *R = &run->s.regs.regs;
    long count = -1;            /* the first exit of bare/trap modes starts the clock */
    double t0 = now();
    while (count < n) {
        if (ioctl(vcpu, KVM_RUN, 0) != 0) {
            if (errno == EINTR) continue;
            die("KVM_RUN");
        }
        if (count < 0 && !sys) { count = 0; t0 = now(); }
        if (run->exit_reason != KVM_EXIT_IO) {
            fprintf(stderr, "%s: unexpected exit %d at rip %#llx\n", mode, run->exit_reason, R->rip);
            exit(1);
        }
        switch (run->io.port) {
        case 0x10:              /* syscall: answer and return to rcx */
            R->rax = 1; R->rip = R->rcx; R->rflags = R->r11;
            run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
            break;
        case 0x13: {            /* trap: return to ring 3 from the host */
            uint64_t *fr = (void *)(mem + KSTACK + (R->rsp - (KBASE + 0x2000)));
            if (sys) { R->rax = 1; R->rip = R->rcx; R->rflags = R->r11; }
            else { R->rip = fr[0]; R->rflags = fr[2]; }
            R->rsp = fr[3];
            run->s.regs.sregs.cs = CS3; run->s.regs.sregs.ss = DS3;
            run->kvm_dirty_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
            break;
        }
        case 0x11: case 0x14:
            break;
        default:
            fprintf(stderr, "%s: exception %d in the guest\n", mode, run->io.port - 0x40);
            exit(1);
        }
        if (count < 0) count = 0;
        count++;
    }
    return (now() - t0) / n;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "all";
    long n = argc > 2 ? atol(argv[2]) : 20000;
    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("/dev/kvm");
    vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    mem = mmap(0, MEMSZ, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    struct kvm_userspace_memory_region r = {.memory_size = MEMSZ, .userspace_addr = (uint64_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r)) die("KVM_SET_USER_MEMORY_REGION");
    vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    run = mmap(0, ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    struct kvm_cpuid2 *c = calloc(1, sizeof *c + 256 * sizeof(struct kvm_cpuid_entry2));
    c->nent = 256;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) || ioctl(vcpu, KVM_SET_CPUID2, c)) die("CPUID");
    const char *modes[] = {"bare", "trap", "trapiret", "syscall-int3", "syscall"};
    double last = 0;
    for (int i = 0; i < 5; i++)
        if (!strcmp(mode, "all") || !strcmp(mode, modes[i]))
            printf("%s: ns_per_call=%.1f\n", modes[i], last = measure(modes[i], n));
    if (strcmp(mode, "all"))
        printf("ns_per_call=%.1f\n", last);     /* the harness's metric line */
    return 0;
}
