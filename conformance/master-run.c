/* frep-conform as a mirror: the master under test, one process group per case, and its restarts. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "master.h"
#include "util.h"

static char scratch_buf[256], scratch_abs[PATH_MAX], port_buf[32];

/* Expands {host} {port} {ca} {cert} {key} {dir} {pid} {nbd} of tmpl into out. */
static int expand(const struct conform *cf, const char *tmpl, const char *dir, const char *nbd,
		  char *out, size_t out_len)
{
	char pid[24];
	snprintf(pid, sizeof(pid), "%d", cf->master_pid);
	const char *keys[][2] = {
		{ "{host}", cf->host }, { "{port}", cf->port }, { "{ca}", cf->ca },
		{ "{cert}", cf->cert }, { "{key}", cf->key },	{ "{dir}", dir ? dir : "" },
		{ "{pid}", pid },	{ "{nbd}", nbd },
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

/* The default export of frep-client --nbd unix:{dir}/nbd.sock. */
#define DEFAULT_NBD_URI "nbd+unix:///?socket={dir}/nbd.sock"

int master_nbd_uri(const struct conform *cf, char *out, size_t out_len)
{
	char dir[300];
	master_dir(cf, dir, sizeof(dir));
	return expand(cf, cf->nbd_uri ? cf->nbd_uri : DEFAULT_NBD_URI, dir, "", out, out_len);
}

int master_expand(const struct conform *cf, const char *tmpl, const char *dir, char *out,
		  size_t out_len)
{
	char nbd[1024];
	if (master_nbd_uri(cf, nbd, sizeof(nbd)) < 0)
		return -1;
	return expand(cf, tmpl, dir, nbd, out, out_len);
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
	} else if (mkdir(cf->scratch, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "frep-conform: --dir %s: %s\n", cf->scratch, strerror(errno));
		return -1;
	}
	/* Absolute: the master runs in {dir}, and its command may name files relative to ours. */
	if (!realpath(cf->scratch, scratch_abs)) {
		fprintf(stderr, "frep-conform: --dir %s: %s\n", cf->scratch, strerror(errno));
		return -1;
	}
	cf->scratch = scratch_abs;
	return 0;
}

void master_teardown(struct conform *cf)
{
	if (cf->listen_fd >= 0)
		close(cf->listen_fd);
	cf->listen_fd = -1;
	/* Ours, and empty once every case passed; a failed case's directory keeps it. */
	if (scratch_buf[0])
		rmdir(scratch_buf);
}

/* The case's scratch directory: {dir} of its command. */
const char *master_dir(const struct conform *cf, char *buf, size_t len)
{
	snprintf(buf, len, "%s/case-%u", cf->scratch, cf->case_no);
	return buf;
}

/*
 * Connections a stopped master left in the listen queue: the next case's
 * accept must get its own master, never a dead one's.
 */
static void drain_backlog(struct conform *cf)
{
	struct pollfd p = { .fd = cf->listen_fd, .events = POLLIN };
	while (poll(&p, 1, 0) == 1) {
		int fd = accept4(cf->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			break;
		close(fd);
	}
}

/* Runs --run in the case's directory, in a process group of its own. */
static int spawn(struct cctx *x)
{
	struct conform *cf = x->cf;
	char dir[300], cmd[4096], log[320];
	master_dir(cf, dir, sizeof(dir));
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return cx_fail(x, "mkdir %s: %s", dir, strerror(errno));
	if (master_expand(cf, cf->run_cmd, dir, cmd, sizeof(cmd)) < 0)
		return cx_fail(x, "--run: the command is too long once expanded");
	snprintf(log, sizeof(log), "%s/master.log", dir);
	drain_backlog(cf);
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
		if (chdir(dir) < 0)
			_exit(126);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	setpgid(pid, pid);
	cf->master_pid = pid;
	return 0;
}

int master_start(struct cctx *x)
{
	STEP(ms_init(x));
	return spawn(x);
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

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void master_end(struct cctx *x, bool passed)
{
	char dir[300];
	ms_free(x);
	master_stop(x->cf);
	/* A failed case keeps its directory: master.log says what the master saw. */
	if (passed)
		nftw(master_dir(x->cf, dir, sizeof(dir)), rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int ms_restart(struct mside *s)
{
	struct cctx *x = s->x;
	ms_nbd_close(s);
	if (x->p.c)
		cx_abort(x);
	master_stop(x->cf);
	s->restarted = true;
	return spawn(x);
}

int ms_power_cycle(struct mside *s)
{
	struct cctx *x = s->x;
	struct conform *cf = x->cf;
	char dir[300], cmd[4096];
	int status;
	if (!cf->crash_cmd || !cf->restart_cmd)
		return cx_skip(x, "needs --crash-cmd and --restart-cmd");
	ms_nbd_close(s);
	master_dir(cf, dir, sizeof(dir));
	if (master_expand(cf, cf->crash_cmd, dir, cmd, sizeof(cmd)) < 0)
		return cx_fail(x, "--crash-cmd: the command is too long once expanded");
	STEP(cx_run(x, "--crash-cmd", cmd));
	uint64_t end = now_ms() + (uint64_t)cf->timeout_ms;
	for (;;) {
		pid_t r = waitpid(cf->master_pid, &status, WNOHANG);
		if (r == cf->master_pid)
			break;
		if (r < 0 && errno != EINTR)
			return cx_fail(x, "waitpid %d: %s", cf->master_pid, strerror(errno));
		if (now_ms() >= end)
			return cx_fail(x, "the master (pid %d) still runs %d ms after --crash-cmd",
				       cf->master_pid, cf->timeout_ms);
		usleep(20 * 1000);
	}
	/* Whatever else the group held goes down with it. */
	kill(-cf->master_pid, SIGKILL);
	cf->master_pid = 0;
	if (x->p.c)
		cx_abort(x);
	if (master_expand(cf, cf->restart_cmd, dir, cmd, sizeof(cmd)) < 0)
		return cx_fail(x, "--restart-cmd: the command is too long once expanded");
	STEP(cx_run(x, "--restart-cmd", cmd));
	s->restarted = true;
	return spawn(x);
}

/* Runs an operator's command (--pause-cmd, --resume-cmd) for the current case. */
static int operator_cmd(struct mside *s, const char *opt, const char *tmpl, const char *needs)
{
	struct cctx *x = s->x;
	char dir[300], cmd[4096];
	if (!tmpl)
		return cx_skip(x, "needs %s", needs);
	if (master_expand(x->cf, tmpl, master_dir(x->cf, dir, sizeof(dir)), cmd, sizeof(cmd)) < 0)
		return cx_fail(x, "%s: the command is too long once expanded", opt);
	return cx_run(x, opt, cmd);
}

int ms_pause(struct mside *s)
{
	return operator_cmd(s, "--pause-cmd", s->x->cf->pause_cmd,
			    "--pause-cmd and --resume-cmd (an operator's pause and resume)");
}

int ms_resume(struct mside *s)
{
	return operator_cmd(s, "--resume-cmd", s->x->cf->resume_cmd,
			    "--pause-cmd and --resume-cmd (an operator's pause and resume)");
}

int ms_verify(struct mside *s, bool repair)
{
	const char *opt = repair ? "--verify-repair-cmd" : "--verify-cmd";
	const char *tmpl = repair ? s->x->cf->verify_repair_cmd : s->x->cf->verify_cmd;
	if (!tmpl)
		return cx_skip(s->x, "needs %s (an operator's online verify)", opt);
	/*
	 * A master refuses a verify outside INSYNC (VFY-7), and it may not have
	 * taken in the CONSISTENT that ends its pass yet: the operator tries again.
	 */
	uint64_t end = now_ms() + (uint64_t)s->x->p.timeout_ms;
	for (;;) {
		int rc = operator_cmd(s, opt, tmpl, opt);
		if (rc == 0 || now_ms() >= end)
			return rc;
		usleep(100 * 1000);
	}
}

int master_alive(struct cctx *x)
{
	struct conform *cf = x->cf;
	int status;
	if (cf->master_pid <= 0)
		return cx_fail(x, "the master is not running after this case");
	pid_t r = waitpid(cf->master_pid, &status, WNOHANG);
	if (r == cf->master_pid) {
		cf->master_pid = 0;
		if (WIFSIGNALED(status))
			return cx_fail(x, "the master died by signal %d during this case (MSG-5)",
				       WTERMSIG(status));
		return cx_fail(x, "the master exited with status %d during this case (MSG-5)",
			       WEXITSTATUS(status));
	}
	/* Its local users are served whatever the mirror did (FSM-6). */
	struct mside *s = x->ms;
	if (ms_nbd(s) < 0 || ms_read_check(s, 0, s->size < 65536 ? s->size : 65536, "after the case") < 0) {
		char why[sizeof(x->why)];
		snprintf(why, sizeof(why), "%s", x->why);
		return cx_fail(x, "after this case the master's NBD export no longer serves (FSM-6): %s",
			       why);
	}
	return 0;
}
