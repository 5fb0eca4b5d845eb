/*
 * scm_rights_refs: who holds a file passed with SCM_RIGHTS.
 *
 * A descriptor in flight keeps its file open until it is received, or until
 * the message is dropped.  The file under test is the write end of a pipe, so
 * "is it still open" is visible from the read end: POLLHUP / EOF once the
 * last reference is gone.  Checked: recvmsg(MSG_PEEK) hands out a new
 * reference (closing the peeked fd leaves the message's own, which a later
 * recvmsg still delivers); read(2), which has no room for descriptors,
 * closes them (the pipe's writer goes away and the reader sees EOF); closing
 * the sockets with the message unreceived closes them too; for stream,
 * datagram and seqpacket sockets.
 */
#include "tap.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

static int send_fd(int sock, int fd, char byte)
{
	char ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {&byte, 1};
	struct msghdr mh = {0};
	struct cmsghdr *c;

	memset(ctl, 0, sizeof(ctl));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl;
	mh.msg_controllen = sizeof(ctl);
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &mh, 0) == 1 ? 0 : -1;
}

/* recvmsg one byte; the descriptor received, or -1 if none. */
static int recv_fd(int sock, int flags)
{
	char ctl[CMSG_SPACE(sizeof(int))];
	char byte;
	struct iovec iov = {&byte, 1};
	struct msghdr mh = {0};
	struct cmsghdr *c;
	int fd = -1;

	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl;
	mh.msg_controllen = sizeof(ctl);
	if (recvmsg(sock, &mh, flags) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

/* The pipe's read end: does it see the writer gone (POLLHUP) within `ms`? */
static int writer_gone(int rfd, int ms)
{
	struct pollfd p = {rfd, POLLIN, 0};
	if (poll(&p, 1, ms) < 0)
		return -1;
	return (p.revents & POLLHUP) != 0;
}

static const char *kind_name(int type)
{
	return type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "dgram" : "seqpacket";
}

static void peek_then_close(int type)
{
	int sv[2], p[2], a, b;
	char c = 0;
	const char *k = kind_name(type);

	socketpair(AF_UNIX, type, 0, sv);
	pipe(p);
	send_fd(sv[0], p[1], 'm');
	close(p[1]);
	a = recv_fd(sv[1], MSG_PEEK);
	check(a >= 0, "%s: MSG_PEEK delivers a descriptor", k);
	close(a);
	check_eq(writer_gone(p[0], 0), 0, "%s: closing the peeked fd leaves the writer open (the message holds it)", k);
	b = recv_fd(sv[1], 0);
	check(b >= 0, "%s: the real recvmsg still delivers the descriptor", k);
	check_eq(write(b, "y", 1), 1, "%s: the received writer works", k);
	check(read(p[0], &c, 1) == 1 && c == 'y', "%s: and the reader gets its byte", k);
	close(b);
	check_eq(writer_gone(p[0], 2000), 1, "%s: closing the received fd closes the writer", k);
	close(p[0]);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	int sv[2], p[2], st;
	char c;
	pid_t pid;

	tap_plan(28);

	peek_then_close(SOCK_STREAM);
	peek_then_close(SOCK_DGRAM);
	peek_then_close(SOCK_SEQPACKET);

	/* --- read(2) discards the descriptors: the writer closes --- */
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	pipe(p);
	send_fd(sv[0], p[1], 'r');
	close(p[1]);
	check_eq(read(sv[1], &c, 1), 1, "read(2) of a message that carries a descriptor reads its byte");
	check_eq(writer_gone(p[0], 2000), 1, "read(2) closed the descriptor it had no room for: the reader sees POLLHUP");
	check_eq(read(p[0], &c, 1), 0, "and read on the pipe is EOF");
	close(p[0]);
	close(sv[0]);
	close(sv[1]);

	/* --- the same in a pipeline: a child reads the socket with read(2) --- */
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	pipe(p);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		close(p[0]);
		close(p[1]);
		_exit(read(sv[1], &c, 1) == 1 ? 0 : 1);
	}
	close(sv[1]);
	send_fd(sv[0], p[1], 'p');
	close(p[1]);
	waitpid(pid, &st, 0);
	check_eq(st, 0, "a child read(2) the message");
	check_eq(writer_gone(p[0], 2000), 1, "the pipe's writer is closed: the pipeline ends");
	close(p[0]);
	close(sv[0]);

	/* --- sockets closed with the message unreceived --- */
	socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
	pipe(p);
	send_fd(sv[0], p[1], 'u');
	close(p[1]);
	check_eq(writer_gone(p[0], 0), 0, "a descriptor in flight keeps the writer open");
	close(sv[0]);
	close(sv[1]);
	check_eq(writer_gone(p[0], 2000), 1, "closing the sockets with the message unreceived closes it");
	close(p[0]);

	/* --- MSG_PEEK twice, then the message with no room for it (MSG_CTRUNC) --- */
	socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv);
	pipe(p);
	send_fd(sv[0], p[1], 't');
	close(p[1]);
	{
		int a = recv_fd(sv[1], MSG_PEEK), b = recv_fd(sv[1], MSG_PEEK);
		struct msghdr mh = {0};
		struct iovec iov = {&c, 1};
		close(a);
		close(b);
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		check_eq(recvmsg(sv[1], &mh, 0), 1, "recvmsg with no control buffer takes the message");
		check(mh.msg_flags & MSG_CTRUNC, "MSG_CTRUNC: its descriptor was dropped");
		check_eq(writer_gone(p[0], 2000), 1, "and closed: the two peeks held no extra reference");
	}
	close(p[0]);
	close(sv[0]);
	close(sv[1]);
	return tap_done();
}
