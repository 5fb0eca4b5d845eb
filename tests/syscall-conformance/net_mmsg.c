/*
 * net_mmsg: sendmmsg and recvmmsg on a unix datagram pair and on UDP over
 * loopback (what glibc's resolver does with its A and AAAA queries).
 *
 * Each message's msg_len is filled in; vlen bounds the count; MSG_WAITFORONE
 * returns what is there after the first; MSG_DONTWAIT on an empty socket is
 * EAGAIN; vlen 0 is 0; a non-socket is ENOTSOCK, a bad fd EBADF; a negative
 * timeout EINVAL.
 */
#include "tap.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

static struct mmsghdr m[4];
static struct iovec iv[4];
static char bufs[4][32];

static void setup(int n, const char **data)
{
	memset(m, 0, sizeof m);
	for (int i = 0; i < n; i++) {
		if (data) {
			iv[i].iov_base = (void *)data[i];
			iv[i].iov_len = strlen(data[i]);
		} else {
			iv[i].iov_base = bufs[i];
			iv[i].iov_len = sizeof bufs[i];
		}
		m[i].msg_hdr.msg_iov = &iv[i];
		m[i].msg_hdr.msg_iovlen = 1;
	}
}

int main(void)
{
	const char *msgs[3] = {"one", "three", "fifteen"};
	int s[2], u, v;
	struct sockaddr_in a = {0};
	socklen_t alen = sizeof a;
	struct timespec neg = {-1, 0};

	tap_plan(20);
	check_ok(socketpair(AF_UNIX, SOCK_DGRAM, 0, s), "socketpair dgram");
	setup(3, msgs);
	check_eq(sendmmsg(s[0], m, 3, 0), 3, "sendmmsg three datagrams");
	check_eq(m[0].msg_len, 3, "msg_len of the first");
	check_eq(m[2].msg_len, 7, "msg_len of the third");
	setup(4, NULL);
	check_eq(recvmmsg(s[1], m, 2, 0, NULL), 2, "recvmmsg vlen 2 takes two");
	check_eq(m[1].msg_len, 5, "second datagram's length");
	check_mem(bufs[1], "three", 5, "second datagram's bytes");
	setup(4, NULL);
	check_eq(recvmmsg(s[1], m, 4, MSG_WAITFORONE, NULL), 1, "MSG_WAITFORONE returns the one left");
	check_mem(bufs[0], "fifteen", 7, "its bytes");
	check_errno(recvmmsg(s[1], m, 4, MSG_DONTWAIT, NULL), EAGAIN, "MSG_DONTWAIT on an empty socket: EAGAIN");
	check_eq(sendmmsg(s[0], m, 0, 0), 0, "sendmmsg of no messages is 0");
	check_errno(sendmmsg(open("/dev/null", O_RDWR), m, 1, 0), ENOTSOCK, "sendmmsg on /dev/null: ENOTSOCK");
	check_errno(recvmmsg(999, m, 1, 0, NULL), EBADF, "recvmmsg on a bad fd: EBADF");
	check_errno(recvmmsg(s[1], m, 1, MSG_DONTWAIT, &neg), EINVAL, "recvmmsg negative timeout: EINVAL");

	u = check_ok(socket(AF_INET, SOCK_DGRAM, 0), "udp socket");
	v = socket(AF_INET, SOCK_DGRAM, 0);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	check_ok(bind(v, (struct sockaddr *)&a, sizeof a), "bind loopback");
	getsockname(v, (struct sockaddr *)&a, &alen);
	check_ok(connect(u, (struct sockaddr *)&a, sizeof a), "connect to it");
	setup(2, msgs);
	check_eq(sendmmsg(u, m, 2, 0), 2, "sendmmsg two UDP queries");
	setup(4, NULL);
	check_eq(recvmmsg(v, m, 2, MSG_WAITFORONE, NULL) >= 1, 1, "recvmmsg gets them");
	check_mem(bufs[0], "one", 3, "first UDP datagram");
	return tap_done();
}
