/* Local control socket of frep-client: pause, resume, resync-full, status (one line each). */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "bitmap.h"
#include "control.h"
#include "log.h"
#include "util.h"

enum { CONTROL_LINE_MAX = 256, CONTROL_POLL_MS = 200 };

struct control {
	struct master *m;
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	pthread_t thread;
	atomic_bool stop; /* set by control_stop; read by the thread between polls */
};

static void status_line(struct master *m, char *out, size_t len)
{
	char a[16], b[16], c[16];
	pthread_mutex_lock(&m->lock);
	uint64_t cap = journal_capacity(m->j), used = journal_used(m->j);
	snprintf(out, len,
		 "ok state=%s committed_txid=%" PRIu64 " acked_txid=%" PRIu64 " lag_tx=%" PRIu64
		 " lag_bytes=%s buffer_free=%" PRIu64 "%% dirty_regions=%" PRIu64
		 " dirtying=%s/s draining=%s/s outrun=%s full_waits=%" PRIu64
		 " journal_appends=%" PRIu64 " journal_syncs=%" PRIu64
		 " mode=%s%s on_buffer_full=%s error=%s",
		 master_state_name(m->state), m->committed_txid, m->acked_txid,
		 m->committed_txid - m->acked_txid,
		 format_size(journal_bytes_after(m->j, m->acked_txid), a, sizeof(a)),
		 cap ? (cap - used) * 100 / cap : 0, bitmap_dirty_regions(m->bm),
		 format_size(m->dirty_rate, b, sizeof(b)), format_size(m->drain_rate, c, sizeof(c)),
		 m->outrun ? "yes" : "no", m->full_waits,
		 m->journal_appends, m->journal_syncs, m->sync_mode ? "sync" : "async", m->degraded ? "(degraded)" : "",
		 m->on_full == ON_FULL_BLOCK ? "block" : "crack", m->error[0] ? m->error : "-");
	pthread_mutex_unlock(&m->lock);
	for (char *p = out; *p; p++)
		if (*p == '\n')
			*p = ' ';
}

/* One command; the answer starts with "ok" or "error". */
static void command(struct control *c, char *line, char *out, size_t len)
{
	struct master *m = c->m;
	line[strcspn(line, "\r\n")] = '\0';
	char *cmd = line + strspn(line, " \t");

	if (strcmp(cmd, "status") == 0) {
		status_line(m, out, len);
		return;
	}
	pthread_mutex_lock(&m->lock);
	enum master_state st = m->state;
	if (strcmp(cmd, "pause") == 0) {
		if (st == MS_INSYNC) {
			m->pause_req = true;
			snprintf(out, len, "ok pausing: sequencing stops, local writes go on into the buffer");
		} else {
			snprintf(out, len, "error pause is allowed only in INSYNC (state %s)",
				 master_state_name(st));
		}
	} else if (strcmp(cmd, "resume") == 0) {
		if (st == MS_IDLE) {
			m->resume_req = true;
			snprintf(out, len, "ok resuming");
		} else {
			snprintf(out, len, "error resume is allowed only in IDLE (state %s)",
				 master_state_name(st));
		}
	} else if (strcmp(cmd, "resync-full") == 0) {
		m->resync_full_req = true;
		snprintf(out, len, "ok a full resync of every allocated block starts %s",
			 st == MS_INSYNC || st == MS_IDLE ? "now" : "once the mirror is next in sync");
	} else {
		snprintf(out, len, "error unknown command '%.64s': use status, pause, resume or resync-full",
			 cmd);
	}
	pthread_mutex_unlock(&m->lock);
	uint64_t one = 1;
	ssize_t w = write(m->notify_fd, &one, sizeof(one)); /* wake the session */
	(void)w;
}

/* Serves one client until it closes; commands are short, so one at a time is enough. */
static void serve(struct control *c, int fd)
{
	char buf[CONTROL_LINE_MAX];
	size_t have = 0;
	while (!c->stop) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, CONTROL_POLL_MS);
		if (r == 0)
			continue;
		if (r < 0 && errno == EINTR)
			continue;
		ssize_t n = r < 0 ? -1 : read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0)
			return;
		have += (size_t)n;
		buf[have] = '\0';
		char *nl;
		while ((nl = strchr(buf, '\n'))) {
			char out[2048];
			*nl = '\0';
			command(c, buf, out, sizeof(out));
			size_t ol = strlen(out);
			out[ol++] = '\n';
			if (write(fd, out, ol) != (ssize_t)ol)
				return;
			have -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have + 1);
		}
		if (have == sizeof(buf) - 1) {
			const char *e = "error line too long\n";
			ssize_t w = write(fd, e, strlen(e));
			(void)w;
			return;
		}
	}
}

static void *control_main(void *arg)
{
	struct control *c = arg;
	while (!c->stop) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		if (poll(&p, 1, CONTROL_POLL_MS) <= 0)
			continue;
		int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve(c, fd);
		close(fd);
	}
	return NULL;
}

struct control *control_start(const char *spec, struct master *m, char *err, size_t err_len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;

	if (strncmp(spec, "unix:", 5) != 0 || strlen(spec + 5) == 0 ||
	    strlen(spec + 5) >= sizeof(sa.sun_path)) {
		snprintf(err, err_len, "--control: expected unix:PATH (at most %zu bytes), got '%s'",
			 sizeof(sa.sun_path) - 1, spec);
		return NULL;
	}
	struct control *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	c->m = m;
	snprintf(c->path, sizeof(c->path), "%s", spec + 5);
	strcpy(sa.sun_path, c->path);
	if (lstat(c->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, err_len, "--control %s exists and is not a socket", c->path);
			free(c);
			return NULL;
		}
		unlink(c->path);
	}
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	mode_t old = umask(0177);
	int rc = c->fd < 0 ? -1 : bind(c->fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || listen(c->fd, 8) < 0 || pthread_create(&c->thread, NULL, control_main, c) != 0) {
		snprintf(err, err_len, "--control %s: %s", c->path, strerror(errno));
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		return NULL;
	}
	log_info(m->name, "control socket on unix:%s (status, pause, resume, resync-full)", c->path);
	return c;
}

void control_stop(struct control *c)
{
	if (!c)
		return;
	c->stop = 1;
	pthread_join(c->thread, NULL);
	close(c->fd);
	unlink(c->path);
	free(c);
}
