/* elfrun: for each path, fork and execve it; print "NAME errno=E", "NAME signal=S" or "NAME exit=C"
 * (tests/test_elf_loader.py runs it over malformed ELF files, natively and in the sandbox). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		int p[2], st, err = 0;
		if (pipe2(p, 02000000) != 0)
			return 1;
		pid_t pid = fork();
		if (pid == 0) {
			char *av[] = {argv[i], NULL}, *ev[] = {NULL};
			execve(argv[i], av, ev);
			err = errno;
			write(p[1], &err, sizeof(err));
			_exit(127);
		}
		close(p[1]);
		if (read(p[0], &err, sizeof(err)) != sizeof(err))
			err = 0;
		close(p[0]);
		waitpid(pid, &st, 0);
		const char *name = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
		if (err)
			printf("%s errno=%s\n", name, strerrorname_np(err));
		else if (WIFSIGNALED(st))
			printf("%s signal=%d\n", name, WTERMSIG(st));
		else
			printf("%s exit=%d\n", name, WEXITSTATUS(st));
		fflush(stdout);
	}
	return 0;
}
