/*
 * sig_xstate: the extended FPU state (XSAVE) in signal frames, as Linux keeps it.
 *
 * - ymm0-15 (AVX) and, where CPUID and XCR0 say AVX-512 is usable, zmm0-31 survive a handler
 *   that clobbers them (the frame carries the full XSAVE area, rt_sigreturn restores it);
 * - a handler starts with the initial FPU state (ymm zero, MXCSR 0x1f80);
 * - the frame: uc_flags has UC_FP_XSTATE, fpregs is 64-byte aligned right above the ucontext
 *   (uc = round_down(fpregs - sizeof(rt_sigframe), 16) + 8 - 8), its _fpx_sw_bytes carry
 *   FP_XSTATE_MAGIC1, extended_size, xfeatures, xstate_size as Linux computes them from CPUID
 *   leaf 0xD and XCR0 (AMX tile data, permission-gated, left out), FP_XSTATE_MAGIC2 follows;
 * - a handler that edits the registers in the frame's XSAVE area sees its edit after
 *   rt_sigreturn; one that clears magic1 gets only the legacy (FXSAVE) part back, the rest
 *   initial; an XSAVE header XRSTOR refuses is a bad frame (SIGSEGV); the handler may point
 *   fpregs elsewhere: an XSAVE area there must be 64-byte aligned, a legacy-only one 16-byte
 *   aligned (XRSTOR/FXRSTOR fault otherwise: SIGSEGV);
 * - AT_MINSIGSTKSZ is Linux's worst-case frame size computed from the same CPUID data, and an
 *   alternate stack of the old MINSIGSTKSZ (2048) bytes is too small for such a frame: SIGSEGV, as
 *   Linux's get_sigframe decides, while one of AT_MINSIGSTKSZ bytes is enough.
 *
 * The registers are loaded, the signal raised (raw tgkill) and the registers stored in ONE asm
 * block, so no compiler-generated code touches them between.
 */
#include "tap.h"

#include <signal.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/wait.h>
#include <ucontext.h>

#ifndef AT_MINSIGSTKSZ
#define AT_MINSIGSTKSZ 51
#endif
#ifndef FP_XSTATE_MAGIC1
#define FP_XSTATE_MAGIC1 0x46505853u
#endif
#ifndef FP_XSTATE_MAGIC2
#define FP_XSTATE_MAGIC2 0x46505845u
#endif
#ifndef UC_FP_XSTATE
#define UC_FP_XSTATE 0x1
#endif
#define XFEATURE_MASK_XTILE_DATA (1ull << 18)
#define RT_SIGFRAME_SIZE 440        /* pretcode + struct ucontext + siginfo, x86-64 */
#define LEGACY_MINSIGSTKSZ 2048     /* the constant (glibc's MINSIGSTKSZ is sysconf() under _GNU_SOURCE) */

static void cpuid(unsigned leaf, unsigned sub, unsigned r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static uint64_t xgetbv0(void)
{
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

static uint64_t xcr0;
static int has_avx, has_avx512;
static unsigned off_ymm, off_zmm_hi256, off_hi16_zmm;

/* The end of the last component of `features` in the standard format (xstate_calculate_size). */
static unsigned xstate_size(uint64_t features)
{
	unsigned end = 512 + 64, r[4];
	for (int i = 2; i < 64; i++) {
		if (!(features >> i & 1))
			continue;
		cpuid(0xD, i, r);
		if (r[1] + r[0] > end)
			end = r[1] + r[0];
	}
	return end;
}

/* ---- ymm ---------------------------------------------------------------- */

#define LDY(n) "vmovdqu " #n "*32(%[in]), %%ymm" #n "\n\t"
#define STY(n) "vmovdqu %%ymm" #n ", " #n "*32(%[out])\n\t"
#define ALLY(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)

/* Load ymm0-15 from in[], MXCSR := mxcsr, raise `sig` at ourselves, store ymm0-15 to out[] and
 * MXCSR to *mxcsr_out, then put the caller's MXCSR back. */
static void ymm_roundtrip(const uint8_t *in, uint8_t *out, int sig, uint32_t mxcsr, uint32_t *mxcsr_out)
{
	long nr = SYS_tgkill, pid = getpid(), tid = syscall(SYS_gettid);
	uint32_t saved;
	__asm__ volatile(
		"stmxcsr %[saved]\n\t"
		"ldmxcsr %[mx]\n\t"
		ALLY(LDY)
		"syscall\n\t"
		ALLY(STY)
		"stmxcsr %[mxo]\n\t"
		"ldmxcsr %[saved]\n\t"
		: "+a"(nr), [saved] "=m"(saved), [mxo] "=m"(*mxcsr_out)
		: "D"(pid), "S"(tid), "d"((long)sig), [in] "r"(in), [out] "r"(out), [mx] "m"(mxcsr)
		: "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
		  "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

/* ---- zmm ---------------------------------------------------------------- */

#define LDZ(n) "vmovdqu64 " #n "*64(%[in]), %%zmm" #n "\n\t"
#define STZ(n) "vmovdqu64 %%zmm" #n ", " #n "*64(%[out])\n\t"
#define ALLZ(M) ALLY(M) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24) M(25) M(26) M(27) M(28) \
	M(29) M(30) M(31)
#define CLZ(n) "vpternlogd $0xff, %%zmm" #n ", %%zmm" #n ", %%zmm" #n "\n\t"

__attribute__((target("avx512f"))) static void zmm_roundtrip(const uint8_t *in, uint8_t *out, int sig)
{
	long nr = SYS_tgkill, pid = getpid(), tid = syscall(SYS_gettid);
	__asm__ volatile(
		ALLZ(LDZ)
		"syscall\n\t"
		ALLZ(STZ)
		: "+a"(nr)
		: "D"(pid), "S"(tid), "d"((long)sig), [in] "r"(in), [out] "r"(out)
		: "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
		  "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19",
		  "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30",
		  "xmm31");
}

/* ---- handlers ------------------------------------------------------------ */

static uint8_t entry_ymm0[32];
static uint32_t entry_mxcsr;
static volatile int handled;

/* Records the state it starts with, then clobbers every ymm register. */
static void clobber_ymm(int sig)
{
	(void)sig;
	__asm__ volatile("vmovdqu %%ymm0, %0\n\tstmxcsr %1" : "=m"(entry_ymm0), "=m"(entry_mxcsr));
#define CLY(n) "vpcmpeqd %%ymm" #n ", %%ymm" #n ", %%ymm" #n "\n\t"
	__asm__ volatile(ALLY(CLY) "ldmxcsr %0" : : "m"((uint32_t){0x1f80 | 0x6000})
			 : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
			   "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
	handled++;
}

__attribute__((target("avx512f"))) static void clobber_zmm(int sig)
{
	(void)sig;
	__asm__ volatile(ALLZ(CLZ)
			 : : : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
			   "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20",
			   "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30",
			   "xmm31");
	handled++;
}

enum { EDIT, LEGACY, BAD, MOVE, MOVE_LEGACY };
static int mode, move_by;
static uint8_t moved[1 << 16] __attribute__((aligned(64)));
static unsigned long seen_uc_flags;
static uint8_t *seen_fp;
static void *seen_uc;
static uint32_t seen_magic1, seen_ext, seen_xsize, seen_magic2;
static uint64_t seen_xfeatures;
static uint8_t new_xmm0[16], new_ymm0_hi[16], new_zmm1_hi[32], new_zmm17[64];

static void edit_frame(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	uint8_t *fp = (uint8_t *)uc->uc_mcontext.fpregs;
	(void)sig;
	(void)si;
	seen_uc = uc;
	seen_fp = fp;
	seen_uc_flags = uc->uc_flags;
	memcpy(&seen_magic1, fp + 464, 4);
	memcpy(&seen_ext, fp + 468, 4);
	memcpy(&seen_xfeatures, fp + 472, 8);
	memcpy(&seen_xsize, fp + 480, 4);
	if (seen_magic1 == FP_XSTATE_MAGIC1 && seen_xsize >= 576 && seen_xsize < (1 << 20))
		memcpy(&seen_magic2, fp + seen_xsize, 4);
	uint64_t bv;
	memcpy(&bv, fp + 512, 8);
	memcpy(fp + 160, new_xmm0, 16);                 /* xmm0 in the FXSAVE part */
	if (mode == EDIT || mode == LEGACY)
		memcpy(fp + off_ymm, new_ymm0_hi, 16);  /* ymm0's upper half (YMM_Hi128) */
	if (mode == EDIT && has_avx512) {
		memcpy(fp + off_zmm_hi256 + 32, new_zmm1_hi, 32);   /* zmm1 bits 511:256 */
		memcpy(fp + off_hi16_zmm + 64, new_zmm17, 64);      /* zmm17 */
		bv |= 0xE0;
	}
	bv |= 0x7;
	if (mode == LEGACY)
		memset(fp + 464, 0, 4);                 /* no magic1: a legacy-only frame */
	if (mode == BAD)
		bv |= 1ull << 63;                       /* not in XCR0: XRSTOR faults */
	memcpy(fp + 512, &bv, 8);
	if ((mode == MOVE || mode == MOVE_LEGACY) && seen_xsize + 4 + 64 <= sizeof moved) {
		/* The frame's state, elsewhere: sigreturn restores from where fpregs points. */
		memcpy(moved + move_by, fp, seen_xsize + 4);
		if (mode == MOVE_LEGACY)
			memset(moved + move_by + 464, 0, 4);
		uc->uc_mcontext.fpregs = (void *)(moved + move_by);
	}
	handled++;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 5) * 13 + 1);
}

static void on_altstack(int sig)
{
	(void)sig;
	handled++;
}

/* A child delivers SIGUSR1 on an alternate stack of `size` bytes; its wait status. */
static int altstack_status(size_t size)
{
	pid_t child = fork();
	if (child == 0) {
		stack_t ss = {.ss_sp = aligned_alloc(64, (size + 63) & ~(size_t)63), .ss_size = size, .ss_flags = 0};
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_altstack;
		sa.sa_flags = SA_ONSTACK;
		if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0 || sigaction(SIGUSR1, &sa, NULL) != 0)
			_exit(3);
		syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR1);
		_exit(handled == 1 ? 0 : 4);
	}
	int status = -1;
	waitpid(child, &status, 0);
	return status;
}

/* get_sigframe on an alternate stack [base, base+size), base 64-aligned: does the frame fit? */
static int frame_fits(size_t size, unsigned fp_size)
{
	uintptr_t base = 1ul << 20, top = base + size;
	uintptr_t fp = (top - fp_size) & ~(uintptr_t)63;
	uintptr_t frame = ((fp - RT_SIGFRAME_SIZE) & ~(uintptr_t)15) - 8;
	return frame > base && frame - base <= size;
}

static void set_handler(int sig, void *fn, int siginfo)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	if (siginfo) {
		sa.sa_sigaction = fn;
		sa.sa_flags = SA_SIGINFO;
	} else {
		sa.sa_handler = fn;
	}
	sigaction(sig, &sa, NULL);
}

int main(void)
{
	unsigned r[4];
	static uint8_t in[32 * 64], out[32 * 64], expect[32 * 64], zero[64];

	cpuid(1, 0, r);
	int osxsave = r[2] >> 27 & 1;
	xcr0 = osxsave ? xgetbv0() : 3;
	has_avx = osxsave && (r[2] >> 28 & 1) && (xcr0 & 6) == 6;
	cpuid(7, 0, r);
	has_avx512 = has_avx && (r[1] >> 16 & 1) && (xcr0 & 0xE0) == 0xE0;
	if (has_avx) {
		cpuid(0xD, 2, r);
		off_ymm = r[1];
	}
	if (has_avx512) {
		cpuid(0xD, 6, r);
		off_zmm_hi256 = r[1];
		cpuid(0xD, 7, r);
		off_hi16_zmm = r[1];
	}
	tap_plan(23);
	tap_printf("# xcr0 %#llx avx %d avx512 %d\n", (unsigned long long)xcr0, has_avx, has_avx512);

	/* AT_MINSIGSTKSZ: init_sigframe_size() -- sizeof(struct sigframe_ia32) (736, the largest
	 * frame head with IA32 emulation) + 15 + the fpstate size (user XSAVE max size + magic2 +
	 * struct fregs_state) + 63, rounded up to 16. */
	unsigned long expect_min = osxsave ? (736 + 15 + xstate_size(xcr0) + 4 + 112 + 63 + 15) & ~15ul
					   : (736 + 15 + 512 + 112 + 63 + 15) & ~15ul;
	check_eq((long)getauxval(AT_MINSIGSTKSZ), (long)expect_min, "AT_MINSIGSTKSZ is Linux's max signal frame size");

	/* The frame on an alternate stack: 2048 bytes may be too small for the XSAVE area. */
	unsigned fp_size = osxsave ? xstate_size(xcr0 & ~XFEATURE_MASK_XTILE_DATA) + 4 : 512;
	int st = altstack_status(LEGACY_MINSIGSTKSZ);
	if (frame_fits(LEGACY_MINSIGSTKSZ, fp_size))
		check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a frame of %u fpstate bytes fits a 2048-byte alternate stack (status %#x)", fp_size, st);
	else
		check(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
		      "a frame of %u fpstate bytes overflows a 2048-byte alternate stack: SIGSEGV (status %#x)", fp_size, st);
	st = altstack_status(getauxval(AT_MINSIGSTKSZ));
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "an alternate stack of AT_MINSIGSTKSZ bytes holds the frame (status %#x)", st);

	if (!has_avx) {
		for (int i = 0; i < 20; i++)
			tap_printf("ok %d - # SKIP no AVX\n", ++tap_count);
		return tap_done();
	}

	/* ymm0-15 survive a handler that clobbers them; it starts with the initial state. */
	set_handler(SIGUSR1, clobber_ymm, 0);
	fill(in, 16 * 32, 1);
	uint32_t mx = 0;
	ymm_roundtrip(in, out, SIGUSR1, 0x1f80 | 0x6000, &mx);
	check_eq(handled, 1, "the handler ran");
	check_mem(out, in, 16 * 32, "ymm0-15 survive a handler that clobbers them");
	check_eq(mx, 0x1f80 | 0x6000, "MXCSR survives the handler");
	check_mem(entry_ymm0, zero, 32, "the handler starts with ymm0 zero (initial FPU state)");
	check_eq(entry_mxcsr, 0x1f80, "the handler starts with MXCSR 0x1f80");

	/* The frame as Linux lays it out; an edit of the frame's XSAVE area is what comes back. */
	set_handler(SIGUSR2, edit_frame, 1);
	fill(new_xmm0, 16, 7);
	fill(new_ymm0_hi, 16, 8);
	fill(new_zmm1_hi, 32, 9);
	fill(new_zmm17, 64, 10);
	fill(in, 16 * 32, 2);
	mode = EDIT;
	handled = 0;
	ymm_roundtrip(in, out, SIGUSR2, 0x1f80, &mx);
	uint64_t user_features = xcr0 & ~XFEATURE_MASK_XTILE_DATA;
	unsigned user_size = xstate_size(user_features);
	check(handled == 1 && (seen_uc_flags & UC_FP_XSTATE), "uc_flags has UC_FP_XSTATE (uc_flags %#lx)", seen_uc_flags);
	check(((uintptr_t)seen_fp & 63) == 0 && (uintptr_t)seen_uc == (((uintptr_t)seen_fp - RT_SIGFRAME_SIZE) & ~15ul),
	      "fpstate 64-byte aligned, the frame right below it, 16-aligned as Linux (uc %p fp %p)", seen_uc, (void *)seen_fp);
	check(seen_magic1 == FP_XSTATE_MAGIC1 && seen_magic2 == FP_XSTATE_MAGIC2,
	      "FP_XSTATE_MAGIC1 in sw_reserved and FP_XSTATE_MAGIC2 after the area (%#x %#x)", seen_magic1, seen_magic2);
	check(seen_xsize == user_size && seen_ext == user_size + 4 && seen_xfeatures == user_features,
	      "xstate_size %u extended_size %u xfeatures %#llx as Linux computes them (%u %u %#llx)", seen_xsize, seen_ext,
	      (unsigned long long)seen_xfeatures, user_size, user_size + 4, (unsigned long long)user_features);
	memcpy(expect, in, 16 * 32);
	memcpy(expect, new_xmm0, 16);
	memcpy(expect + 16, new_ymm0_hi, 16);
	check_mem(out, expect, 16 * 32, "ymm0 edited in the frame's XSAVE area comes back, the others unchanged");

	/* Without magic1 only the legacy area is restored: xmm from the frame, upper halves zero. */
	mode = LEGACY;
	ymm_roundtrip(in, out, SIGUSR2, 0x1f80, &mx);
	memset(expect, 0, 16 * 32);
	for (int i = 0; i < 16; i++)
		memcpy(expect + 32 * i, in + 32 * i, 16);
	memcpy(expect, new_xmm0, 16);
	check_mem(out, expect, 16 * 32, "a frame without FP_XSTATE_MAGIC1 restores the FXSAVE part only, the rest initial");

	/* An XSAVE header XRSTOR refuses (XSTATE_BV bit 63): the process dies of SIGSEGV. */
	pid_t child = fork();
	if (child == 0) {
		mode = BAD;
		ymm_roundtrip(in, out, SIGUSR2, 0x1f80, &mx);
		_exit(0);
	}
	int status = 0;
	waitpid(child, &status, 0);
	check(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "an XSTATE_BV outside XCR0 is a bad frame: SIGSEGV (status %#x)", status);

	/* fpregs pointed at a copy of the area elsewhere: restored from there if aligned as the
	 * instruction needs (XRSTOR 64, FXRSTOR 16), else SIGSEGV. */
	static const struct { int mode, by, ok; const char *what; } moves[] = {
		{MOVE, 64, 1, "an XSAVE area moved to another 64-byte boundary is restored from there"},
		{MOVE, 16, 0, "an XSAVE area 16 bytes off 64-byte alignment: SIGSEGV"},
		{MOVE_LEGACY, 16, 1, "a legacy-only area 16-byte aligned is restored from there"},
		{MOVE_LEGACY, 8, 0, "a legacy-only area 8 bytes off 16-byte alignment: SIGSEGV"},
	};
	for (int i = 0; i < 4; i++) {
		child = fork();
		if (child == 0) {
			mode = moves[i].mode;
			move_by = moves[i].by;
			ymm_roundtrip(in, out, SIGUSR2, 0x1f80, &mx);
			if (memcmp(out, new_xmm0, 16) != 0)
				_exit(1);                       /* xmm0 is the handler's edit: read from the copy */
			for (int r = 1; r < 16; r++)
				if (memcmp(out + 32 * r, in + 32 * r, 16) != 0)
					_exit(2);
			_exit(0);
		}
		status = 0;
		waitpid(child, &status, 0);
		if (moves[i].ok)
			check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s (status %#x)", moves[i].what, status);
		else
			check(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "%s (status %#x)", moves[i].what, status);
	}

	if (!has_avx512) {
		for (int i = 0; i < 4; i++)
			tap_printf("ok %d - # SKIP no usable AVX-512\n", ++tap_count);
		return tap_done();
	}

	/* zmm0-31 survive a handler that clobbers them. */
	set_handler(SIGUSR1, clobber_zmm, 0);
	fill(in, 32 * 64, 3);
	handled = 0;
	zmm_roundtrip(in, out, SIGUSR1);
	check_eq(handled, 1, "the zmm handler ran");
	check_mem(out, in, 32 * 64, "zmm0-31 survive a handler that clobbers them");

	/* zmm1's upper half and zmm17 edited in the frame come back. */
	mode = EDIT;
	fill(in, 32 * 64, 4);
	zmm_roundtrip(in, out, SIGUSR2);
	memcpy(expect, in, 32 * 64);
	memcpy(expect, new_xmm0, 16);
	memcpy(expect + 16, new_ymm0_hi, 16);
	memcpy(expect + 64 + 32, new_zmm1_hi, 32);
	memcpy(expect + 17 * 64, new_zmm17, 64);
	check_mem(out, expect, 16 * 64, "zmm0-15 edited in the frame (YMM_Hi128, ZMM_Hi256) come back");
	check_mem(out + 16 * 64, expect + 16 * 64, 16 * 64, "zmm16-31 edited in the frame (Hi16_ZMM) come back");
	return tap_done();
}
