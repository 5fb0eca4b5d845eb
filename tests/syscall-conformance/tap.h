/*
 * tap.h - tiny TAP (Test Anything Protocol) helpers shared by the syscall
 * conformance programs.
 *
 * Every program declares its plan with tap_plan(N), runs N checks and ends
 * with `return tap_done();`, which exits 0 only if all N checks ran and
 * passed.  Output goes straight to fd 1 with write(2) (no stdio buffering),
 * so the lines printed before a crash are never lost.
 *
 * The checks are macros so that errno is sampled right after the expression:
 *   check(cond, name...)                    cond is true
 *   check_ok(expr, name...)                 expr != -1 (syscall succeeded)
 *   check_errno(expr, ERRNO, name...)       expr == -1 and errno == ERRNO
 *   check_eq(got, expected, name...)        two integers are equal (a got of -1
 *                                           is reported with its errno)
 *   check_mem(got, expected, len, name...)  two byte ranges are equal
 *   check_str(got, expected, name...)       two C strings are equal (NULL got fails)
 * `name...` is a printf format and its arguments.
 *
 * Raw syscall(SYS_x, ...) is used wherever libc might emulate a call or
 * hide its errno; it returns -1 and sets errno like any other call.
 */
#ifndef CONFORMANCE_TAP_H
#define CONFORMANCE_TAP_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((unused)) static int tap_planned = -1;
__attribute__((unused)) static int tap_count;
__attribute__((unused)) static int tap_failures;

/* Write the whole buffer to fd 1, retrying on short writes. */
__attribute__((unused)) static void tap_write(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = syscall(SYS_write, 1, buf, len);
		if (n <= 0)
			_exit(2);
		buf += n;
		len -= (size_t)n;
	}
}

__attribute__((unused)) static __attribute__((format(printf, 1, 2))) void tap_printf(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		_exit(2);
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	tap_write(buf, (size_t)n);
}

__attribute__((unused)) static void tap_plan(int n)
{
	tap_planned = n;
	tap_printf("1..%d\n", n);
}

/* A symbolic errno name ("ENOENT"), or the number if glibc has no name. */
__attribute__((unused)) static const char *errno_name(int e)
{
	static char buf[16];
	const char *s;

	if (e == 0)
		return "0";
	s = strerrorname_np(e);
	if (s)
		return s;
	snprintf(buf, sizeof(buf), "errno%d", e);
	return buf;
}

/* Report one result: `ok N - name` or `not ok N - name # detail`. */
__attribute__((unused)) static void tap_result(int pass, const char *detail, const char *fmt, va_list ap)
{
	char name[512];

	vsnprintf(name, sizeof(name), fmt, ap);
	tap_count++;
	if (pass) {
		tap_printf("ok %d - %s\n", tap_count, name);
	} else {
		tap_failures++;
		tap_printf("not ok %d - %s # %s\n", tap_count, name, detail);
	}
}

__attribute__((unused)) static __attribute__((format(printf, 3, 4))) int
tap_check(int pass, const char *detail, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_result(pass, detail, fmt, ap);
	va_end(ap);
	return pass;
}

__attribute__((unused)) static __attribute__((format(printf, 3, 4))) int
tap_ok(long ret, int err, const char *fmt, ...)
{
	char detail[128];
	va_list ap;
	int pass = ret != -1;

	snprintf(detail, sizeof(detail), "got -1 %s, expected success", errno_name(err));
	va_start(ap, fmt);
	tap_result(pass, detail, fmt, ap);
	va_end(ap);
	return pass;
}

__attribute__((unused)) static __attribute__((format(printf, 4, 5))) int
tap_errno(long ret, int err, int want, const char *fmt, ...)
{
	char detail[128];
	va_list ap;
	int pass = ret == -1 && err == want;

	if (ret == -1)
		snprintf(detail, sizeof(detail), "got -1 %s, expected -1 %s",
			 errno_name(err), errno_name(want));
	else
		snprintf(detail, sizeof(detail), "got %ld (success), expected -1 %s",
			 ret, errno_name(want));
	va_start(ap, fmt);
	tap_result(pass, detail, fmt, ap);
	va_end(ap);
	return pass;
}

__attribute__((unused)) static __attribute__((format(printf, 4, 5))) int
tap_eq(long got, long want, int err, const char *fmt, ...)
{
	char detail[128];
	va_list ap;
	int pass = got == want;

	if (got == -1 && err)
		snprintf(detail, sizeof(detail), "got -1 %s, expected %ld (%#lx)",
			 errno_name(err), want, (unsigned long)want);
	else
		snprintf(detail, sizeof(detail), "got %ld (%#lx), expected %ld (%#lx)",
			 got, (unsigned long)got, want, (unsigned long)want);
	va_start(ap, fmt);
	tap_result(pass, detail, fmt, ap);
	va_end(ap);
	return pass;
}

__attribute__((unused)) static __attribute__((format(printf, 4, 5))) int
tap_mem(const void *got, const void *want, size_t len, const char *fmt, ...)
{
	char detail[128];
	va_list ap;
	size_t i = 0;
	int pass = memcmp(got, want, len) == 0;

	if (!pass) {
		while (((const unsigned char *)got)[i] == ((const unsigned char *)want)[i])
			i++;
		snprintf(detail, sizeof(detail), "bytes differ at offset %zu: got %#x, expected %#x",
			 i, ((const unsigned char *)got)[i], ((const unsigned char *)want)[i]);
	}
	va_start(ap, fmt);
	tap_result(pass, detail, fmt, ap);
	va_end(ap);
	return pass;
}

__attribute__((unused)) static __attribute__((format(printf, 3, 4))) int
tap_str(const char *got, const char *want, const char *fmt, ...)
{
	char detail[512];
	va_list ap;
	int pass = got && strcmp(got, want) == 0;

	snprintf(detail, sizeof(detail), "got \"%s\", expected \"%s\"", got ? got : "(null)", want);
	va_start(ap, fmt);
	tap_result(pass, detail, fmt, ap);
	va_end(ap);
	return pass;
}

#define check(cond, ...) tap_check(!!(cond), "condition false: " #cond, __VA_ARGS__)

#define check_ok(expr, ...) __extension__({				\
	errno = 0;							\
	long tap_r_ = (long)(expr);					\
	int tap_e_ = errno;						\
	tap_ok(tap_r_, tap_e_, __VA_ARGS__);				\
	tap_r_;								\
})

#define check_errno(expr, want, ...) __extension__({			\
	errno = 0;							\
	long tap_r_ = (long)(expr);					\
	int tap_e_ = errno;						\
	tap_errno(tap_r_, tap_e_, (want), __VA_ARGS__);			\
})

#define check_eq(got, want, ...) __extension__({			\
	errno = 0;							\
	long tap_g_ = (long)(got);					\
	int tap_e_ = errno;						\
	tap_eq(tap_g_, (long)(want), tap_e_, __VA_ARGS__);		\
})

#define check_mem(got, want, len, ...) tap_mem((got), (want), (len), __VA_ARGS__)

#define check_str(got, want, ...) tap_str((got), (want), __VA_ARGS__)

/* A line of commentary; it does not count as a test. */
#define tap_note(...) (tap_write("# ", 2), tap_printf(__VA_ARGS__), tap_write("\n", 1))

/* End of the program: exit status 0 only if every planned check ran and passed. */
__attribute__((unused)) static int tap_done(void)
{
	if (tap_planned != tap_count) {
		tap_printf("# planned %d checks but ran %d\n", tap_planned, tap_count);
		return 1;
	}
	return tap_failures ? 1 : 0;
}

/*
 * A pointer that is never mapped (in the first page of the address space).
 * Read through a volatile so the compiler cannot see it and warn.
 */
__attribute__((unused)) static void *volatile tap_bad_ptr_ = (void *)1;
#define BAD_PTR ((void *)tap_bad_ptr_)

#endif
