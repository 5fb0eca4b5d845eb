"""cffi build script for the KVM platform's hot path (`platforms.kvm._kvm_ext`).

Why C: every application syscall under KVM is one KVM_RUN, and the registers travel through the
kvm_run page (KVM_CAP_SYNC_REGS) rather than through KVM_GET/SET_REGS ioctls (~3 us each on this
machine's kvm_pvm).  `rk_run` copies the Sentry's `struct user_regs_struct` into the sync-regs
area, runs the vCPU, copies the registers back and classifies the exit (syscall, exception
gate, interrupted, anything else) without a Python frame in between.  The page-table editor
(`rk_pt_*`, in pagetables.c beside this file) is C too, and so are the
run loop (vcpu.c) and the host-signal helpers (hostsig.c): mmap-heavy programs change thousands of
PTEs.

Everything that is not on a per-exit or per-page path stays in Python (platforms/kvm/machine.py).
"""
import os

from cffi import FFI

_HERE = os.path.dirname(os.path.abspath(__file__))

CDEF = r"""
struct user_regs_struct {
    unsigned long r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi,
                  orig_rax, rip, cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs;
};

struct rk_layout {
    unsigned long entry_exit_rip;    /* the syscall entry page's `out` + 2 */
    unsigned long gate_base;         /* the IDT gates: vector v's `out` at gate_base + 4v */
    unsigned long kstack_gva;        /* the ring-0 stack page (guest-virtual) */
    unsigned char *kstack_host;      /* the same page in the Sentry */
    struct rk_pool *pool;            /* committed (no page fresh) before every run */
};

struct rk_vcpu {
    int fd;
    void *run;                       /* the mmapped struct kvm_run */
    int in_kernel;                   /* stopped in an exception gate: return needs user CS/SS */
    unsigned long long cpu_ns;       /* time spent in KVM_RUN for this context */
    unsigned int exit_reason, port;  /* of an RK_OTHER exit */
    unsigned int vector;             /* of an RK_FAULT exit */
    unsigned long errcode, cr2;
    struct rk_space *space;          /* its address space: CR3 follows space->root */
};

struct rk_pool {
    unsigned char *base;             /* the platform memory in the Sentry */
    unsigned long gpa;               /* ... and in the guest */
    unsigned long npages, next, free_head, used, retired_head, retired;
    unsigned char *fresh;            /* per page: allocated since the guest last ran */
    int any_fresh;
};

struct rk_space {
    unsigned long root;              /* the PML4: CR3 of the address space's contexts */
};

struct rk_setup {
    unsigned long cr3, gdt_base, gdt_limit, idt_base, idt_limit, tss_base, lstar, xcr0;
};
int rk_vcpu_setup(int kvm_fd, int vcpu_fd, const struct rk_setup *s);
int rk_set_memslot(int vm_fd, unsigned int slot, unsigned long gpa, unsigned long size, void *host);
long rk_xsave(int vcpu_fd, void *buf, int set);
int rk_cpuid_phys_bits(int kvm_fd);
int rk_cpuid_entry(int kvm_fd, unsigned int function, unsigned int index, unsigned int *out);
unsigned long rk_supported_xcr0(int kvm_fd);

int rk_run(struct rk_vcpu *v, struct user_regs_struct *u, const struct rk_layout *l,
           long timeslice_ns);
int rk_vcpu_init(struct rk_vcpu *v, int vcpu_fd, long mmap_size);
int rk_vcpu_reseed(struct rk_vcpu *v);
long rk_ioctl(int fd, unsigned long req, void *arg);
long rk_ioctl_int(int fd, unsigned long req, unsigned long arg);
void *rk_ptr(unsigned long addr);

long rk_pt_alloc(struct rk_pool *p);
void rk_pool_recycle(struct rk_pool *p);
void rk_pool_commit(struct rk_pool *p);
int rk_pt_map(struct rk_pool *p, struct rk_space *sp, unsigned long va, unsigned long len,
              unsigned long gpa, unsigned long flags);
int rk_pt_protect(struct rk_pool *p, struct rk_space *sp, unsigned long va, unsigned long len,
                  unsigned long flags);
void rk_pt_free_tree(struct rk_pool *p, struct rk_space *sp, int top_entries);
unsigned long rk_pt_lookup(struct rk_pool *p, struct rk_space *sp, unsigned long va);

int rk_forward_signals(int *sigs, int n);
unsigned long rk_take_forwarded(void);
int rk_timer_init(int signo);
int rk_poll(int *fds, short *events, short *revents, int nfds, long timeout_ns);
"""

def _source(name: str) -> str:
    with open(os.path.join(_HERE, name)) as f:
        return f.read()


# One translation unit: the run loop, the page-table editor, host signals (in that order:
# the later files use the earlier ones' statics).
SOURCE = _source("vcpu.c") + _source("pagetables.c") + _source("hostsig.c")

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("platforms.kvm._kvm_ext", SOURCE, libraries=["rt"])

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.dirname(os.path.dirname(_HERE)), verbose=False)
