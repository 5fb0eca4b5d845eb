/*
 * robust_nr: syscall numbers outside the table, as Linux reads them.
 *
 * x86-64 Linux takes the syscall number from eax alone (do_syscall_64's `int nr`): the upper
 * half of rax is ignored, so 2^32 + 39 is getpid.  Numbers past the table, the x32 range
 * (__X32_SYSCALL_BIT) and a negative int are ENOSYS.  The raw `syscall` instruction is used:
 * libc's wrapper would not pass a 64-bit number through.
 */
#include "tap.h"

static long raw(unsigned long nr)
{
	long r;

	__asm__ volatile("syscall" : "=a"(r) : "a"(nr) : "rcx", "r11", "memory");
	return r;
}

int main(void)
{
	long pid = getpid();

	tap_plan(7);
	check_eq(raw(39), pid, "syscall 39 is getpid");
	check_eq(raw(0x100000027UL), pid, "2^32 + 39 is getpid too (eax only)");
	check_eq(raw(0xffffffff00000027UL), pid, "0xffffffff00000027 is getpid too");
	check_eq(raw(512), -ENOSYS, "512, past the table: ENOSYS");
	check_eq(raw(0x40000027UL), -ENOSYS, "the x32 bit (0x40000000 | 39): ENOSYS");
	check_eq(raw(0xffffffffUL), -ENOSYS, "eax = -1: ENOSYS");
	check_eq(raw(0x80000027UL), -ENOSYS, "eax = 0x80000027 (a negative int): ENOSYS");
	return tap_done();
}
