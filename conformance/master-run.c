/* frep-conform as a mirror: the master under test, one process group per case. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conform.h"
#include "util.h"

static char scratch_buf[256], port_buf[32];

/* Expands {host} {port} {ca} {cert} {key} {dir} {pid} of tmpl into out. */
int master_expand(const struct conform *cf, const char *tmpl, const char *dir, char *out,
		  size_t out_len)
{
	char pid[24];
	snprintf(pid, sizeof(pid), "%d", cf->master_pid);
	const char *keys[][2] = {
		{ "{host}", cf->host }, { "{port}", cf->port }, { "{ca}", cf->ca },
		{ "{cert}", cf->cert }, { "{key}", cf->key },	{ "{dir}", dir ? dir : "" },
		{ "{pid}", pid },
	};
	size_t o = 0;
	for (const char *s = tmpl; *s;) {
		bool hit = false;
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			size_t kl = strlen(keys[i][0]);
			if (strncmp(s, keys[i][0], kl) == 0) {
				size_t vl = strlen(keys[i][1]);
				if (o + vl >= out_len)
					return -1;
				memcpy(out + o, keys[i][1], vl);
				o += vl;
				s += kl;
				hit = true;
				break;
			}
		}
		if (!hit) {
			if (o + 1 >= out_len)
				return -1;
			out[o++] = *s++;
		}
	}
	out[o] = '\0';
	return 0;
}

int master_setup(struct conform *cf)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE }, *ai;
	int rc = getaddrinfo(cf->host, cf->port, &hints, &ai);
	if (rc) {
		fprintf(stderr, "frep-conform: --listen %s:%s: %s\n", cf->host, cf->port, gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0) {
		fprintf(stderr, "frep-conform: --listen %s:%s: %s\n", cf->host, cf->port, strerror(errno));
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	/* Port 0 picks a free one; the master's command gets the real one. */
	struct sockaddr_storage sa;
	socklen_t sl = sizeof(sa);
	char h[64];
	if (getsockname(fd, (struct sockaddr *)&sa, &sl) == 0 &&
	    getnameinfo((struct sockaddr *)&sa, sl, h, sizeof(h), port_buf, sizeof(port_buf),
			NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		cf->port = port_buf;
	cf->listen_fd = fd;
	if (!cf->scratch) {
		snprintf(scratch_buf, sizeof(scratch_buf), "/tmp/frep-conform.XXXXXX");
		if (!mkdtemp(scratch_buf)) {
			fprintf(stderr, "frep-conform: mkdtemp: %s\n", strerror(errno));
			return -1;
		}
		cf->scratch = scratch_buf;
	}
	return 0;
}

void master_teardown(struct conform *cf)
{
	if (cf->listen_fd >= 0)
		close(cf->listen_fd);
	cf->listen_fd = -1;
}

/* The case's scratch directory: {dir} of its command. */
const char *master_dir(const struct conform *cf, char *buf, size_t len)
{
	snprintf(buf, len, "%s/case-%u", cf->scratch, cf->case_no);
	return buf;
}

int master_start(struct cctx *x)
{
	struct conform *cf = x->cf;
	char dir[300], cmd[4096], log[320];
	master_dir(cf, dir, sizeof(dir));
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return cx_fail(x, "mkdir %s: %s", dir, strerror(errno));
	if (master_expand(cf, cf->run_cmd, dir, cmd, sizeof(cmd)) < 0)
		return cx_fail(x, "--run: the command is too long once expanded");
	snprintf(log, sizeof(log), "%s/master.log", dir);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return cx_fail(x, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* Its own process group: stopping it stops whatever it started. */
		setpgid(0, 0);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	setpgid(pid, pid);
	cf->master_pid = pid;
	return 0;
}

void master_stop(struct conform *cf)
{
	if (cf->master_pid <= 0)
		return;
	kill(-cf->master_pid, SIGKILL);
	kill(cf->master_pid, SIGKILL);
	while (waitpid(cf->master_pid, NULL, 0) < 0 && errno == EINTR)
		;
	cf->master_pid = 0;
}
