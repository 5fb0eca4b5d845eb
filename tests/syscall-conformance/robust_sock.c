/*
 * robust_sock: socket flags and lengths at their limits.
 *
 * The flags of sendto/recvfrom are an unsigned int: bit 31 (MSG_CMSG_COMPAT, the 32-bit ABI's)
 * is ignored there, and is EINVAL from a 64-bit sendmsg/recvmsg.  A control buffer larger than
 * net.core.optmem_max is ENOBUFS.  getsockopt with a huge length writes what the option has.
 * Checked on a loopback UDP socket (a host socket in the sandbox: the flags reach the host's
 * C int) and on a unix datagram pair.  (The fuzzer found bit 31 ending in a Python OverflowError.)
 */
#include "tap.h"

#include <netinet/in.h>
#include <sys/socket.h>

int main(void)
{
	struct sockaddr_in a;
	struct msghdr m;
	struct iovec iov;
	char buf[16] = "hi", ctl[64];
	socklen_t len;
	int s, v, sv[2];

	tap_plan(9);
	s = socket(AF_INET, SOCK_DGRAM, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(0x7f000001);
	bind(s, (struct sockaddr *)&a, sizeof(a));
	len = sizeof(a);
	getsockname(s, (struct sockaddr *)&a, &len);
	check_eq(syscall(SYS_sendto, s, buf, 2, 0xC0000040UL, &a, sizeof(a)), 2,
		 "UDP sendto with bits 30 and 31 set in the flags sends");
	check_eq(syscall(SYS_recvfrom, s, buf, sizeof(buf), 0x80000040UL, NULL, NULL), 2,
		 "UDP recvfrom with bit 31 set receives");
	memset(&m, 0, sizeof(m));
	iov.iov_base = buf;
	iov.iov_len = 2;
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_name = &a;
	m.msg_namelen = sizeof(a);
	check_errno(syscall(SYS_sendmsg, s, &m, 0x80000000UL), EINVAL, "sendmsg with MSG_CMSG_COMPAT: EINVAL");
	check_errno(syscall(SYS_recvmsg, s, &m, 0x80000040UL), EINVAL, "recvmsg with MSG_CMSG_COMPAT: EINVAL");
	m.msg_control = ctl;
	m.msg_controllen = 1 << 24;
	check_errno(sendmsg(s, &m, 0), ENOBUFS, "sendmsg with a 16 MiB control length: ENOBUFS");
	len = 1 << 30;
	check_ok(getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &len), "getsockopt with a 1 GiB length");
	check(len == sizeof(int) && v == SOCK_DGRAM, "it writes the int and says so (len %u)", (unsigned)len);
	close(s);

	socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
	check_eq(syscall(SYS_sendto, sv[0], buf, 2, 0x80000000UL, NULL, 0), 2, "unix sendto with bit 31 sends");
	check_eq(syscall(SYS_recvfrom, sv[1], buf, sizeof(buf), 0x80000000UL, NULL, NULL), 2,
		 "unix recvfrom with bit 31 receives");
	return tap_done();
}
