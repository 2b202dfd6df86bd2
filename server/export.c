/*
 * The export manager (export.h): one nbdkit per exported snapshot, spawned
 * with posix_spawn (frep-server is multi-threaded: gRPC), watched by one
 * thread that relays each nbdkit's stderr into frep-server's log and reaps
 * it when it ends.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "export.h"
#include "log.h"
#include "meta.h"
#include "nbdkit-run.h"
#include "snapshot.h"
#include "util.h"

#define EXPORT_RECORD "export" /* snapshots/S/export: nbd=ADDRESS */
#define READY_FD 3	       /* the plugin's readyfd in nbdkit */

enum export_state { EX_FREE, EX_STARTING, EX_RUNNING };

struct export {
	enum export_state state;
	uint64_t gen; /* tells a reused slot from the one a stopper waits for */
	char volume[STATUS_NAME_MAX], snapshot[SNAP_NAME_MAX + 1];
	char nbd[STATUS_TEXT_MAX];
	pid_t pid;
	int err_fd; /* nbdkit's stderr and stdout; the manager reads it while RUNNING */
	int64_t since_unix_ms;
	char why[STATUS_TEXT_MAX]; /* set by a stopper: why it ends */
	char line[512];		   /* a partial stderr line */
	size_t line_len;
};

/*
 * lock protects ex[], shutting_down and the slots' fields; done is signalled
 * when a slot is freed. Lock order: a snapshot set's mutex, then this one
 * (the gone hook runs under the set's): never call into a snapset with it held.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t done;
	struct export ex[EXPORT_MAX];
	uint64_t next_gen;
	bool shutting_down, started;
	char data_dir[PATH_MAX / 2]; /* so DATA_DIR/VOLUME/snapshots/S/export fits in PATH_MAX */
	int wake[2]; /* the manager's poll: a new RUNNING export, or shutdown */
	pthread_t manager;
} em = { .lock = PTHREAD_MUTEX_INITIALIZER, .done = PTHREAD_COND_INITIALIZER,
	 .wake = { -1, -1 } };

/* --- addresses ------------------------------------------------------------------ */

int export_parse_nbd(const char *nbd, struct export_addr *a, char *err, size_t err_len)
{
	memset(a, 0, sizeof(*a));
	if (!nbd || !*nbd) {
		snprintf(err, err_len, "--nbd is required: " EXPORT_NBD_FORMS);
		return -1;
	}
	if (strncmp(nbd, "unix:", 5) == 0) {
		const char *p = nbd + 5;
		if (p[0] != '/') {
			snprintf(err, err_len,
				 "--nbd %s: the socket path must be absolute (frep-server's working "
				 "directory is not yours); expected " EXPORT_NBD_FORMS, nbd);
			return -1;
		}
		if (strlen(p) >= sizeof(a->path)) {
			snprintf(err, err_len, "--nbd %s: socket path longer than %zu bytes", nbd,
				 sizeof(a->path) - 1);
			return -1;
		}
		a->is_unix = true;
		snprintf(a->path, sizeof(a->path), "%s", p);
		return 0;
	}
	char *end;
	unsigned long port;
	if (split_host_port(nbd, a->host, sizeof(a->host), a->port, sizeof(a->port), NULL) < 0 ||
	    !a->host[0] || !a->port[0] || (port = strtoul(a->port, &end, 10)) < 1 || port > 65535 ||
	    *end) {
		snprintf(err, err_len, "--nbd: expected " EXPORT_NBD_FORMS ", got '%s'", nbd);
		return -1;
	}
	return 0;
}

/* --- records ---------------------------------------------------------------------- */

static void record_path(const char *volume, const char *snapshot, char *out, size_t len)
{
	snprintf(out, len, "%s/%s/snapshots/%s/" EXPORT_RECORD, em.data_dir, volume, snapshot);
}

static void record_save(const char *volume, const char *snapshot, const char *nbd)
{
	char path[PATH_MAX];
	struct meta m;
	meta_init(&m);
	record_path(volume, snapshot, path, sizeof(path));
	if (meta_set(&m, "nbd", nbd) < 0 || meta_save(path, &m) < 0)
		log_warn(volume, "export %s@%s: recording it in %s: %s; a restarted frep-server will "
			 "not serve it again", volume, snapshot, path, strerror(errno));
}

static void record_remove(const char *volume, const char *snapshot)
{
	char path[PATH_MAX];
	record_path(volume, snapshot, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn(volume, "export %s@%s: removing %s: %s", volume, snapshot, path,
			 strerror(errno));
}

/* --- the manager thread ------------------------------------------------------------ */

/* Under em.lock. */
static struct export *find(const char *volume, const char *snapshot)
{
	for (unsigned i = 0; i < EXPORT_MAX; i++) {
		struct export *e = &em.ex[i];
		if (e->state != EX_FREE && strcmp(e->volume, volume) == 0 &&
		    strcmp(e->snapshot, snapshot) == 0)
			return e;
	}
	return NULL;
}

static void describe_status(int status, char *out, size_t len)
{
	if (WIFEXITED(status))
		snprintf(out, len, "nbdkit exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, len, "nbdkit was killed by %s", strsignal(WTERMSIG(status)));
	else
		snprintf(out, len, "nbdkit ended (wait status %d)", status);
}

/* Logs nbdkit's complete lines from buf; keeps a partial one in e->line. */
static void relay_lines(struct export *e, const char *buf, size_t n, bool flush)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] != '\n' && e->line_len < sizeof(e->line) - 1) {
			e->line[e->line_len++] = buf[i];
			continue;
		}
		e->line[e->line_len] = '\0';
		if (e->line_len)
			log_warn(e->volume, "export %s@%s: %s", e->volume, e->snapshot, e->line);
		e->line_len = 0;
		if (buf[i] != '\n')
			e->line[e->line_len++] = buf[i];
	}
	if (flush && e->line_len) {
		e->line[e->line_len] = '\0';
		log_warn(e->volume, "export %s@%s: %s", e->volume, e->snapshot, e->line);
		e->line_len = 0;
	}
}

/*
 * nbdkit closed its stderr: it is ending. Reaps it (unlocked: it may take a
 * moment), logs why it ended, forgets the record unless frep-server is
 * shutting down, frees the slot. Under em.lock; returns with it held.
 */
static void reap(struct export *e)
{
	int status = 0;
	pid_t pid = e->pid;
	pthread_mutex_unlock(&em.lock);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&em.lock);
	char how[128];
	describe_status(status, how, sizeof(how));
	if (e->why[0])
		log_info(e->volume, "export %s@%s ended: %s (%s); its NBD clients were disconnected",
			 e->volume, e->snapshot, e->why, how);
	else
		log_error(e->volume, "export %s@%s ended: %s; its NBD clients were disconnected",
			  e->volume, e->snapshot, how);
	if (!em.shutting_down)
		record_remove(e->volume, e->snapshot);
	close(e->err_fd);
	e->err_fd = -1;
	e->state = EX_FREE;
	pthread_cond_broadcast(&em.done);
}

static void *manager_main(void *arg)
{
	struct pollfd p[EXPORT_MAX + 1];
	struct export *who[EXPORT_MAX + 1];

	pthread_mutex_lock(&em.lock);
	for (;;) {
		unsigned n = 0;
		p[n++] = (struct pollfd){ .fd = em.wake[0], .events = POLLIN };
		for (unsigned i = 0; i < EXPORT_MAX; i++)
			if (em.ex[i].state == EX_RUNNING) {
				who[n] = &em.ex[i];
				p[n++] = (struct pollfd){ .fd = em.ex[i].err_fd, .events = POLLIN };
			}
		if (em.shutting_down && n == 1)
			break;
		pthread_mutex_unlock(&em.lock);
		int r = poll(p, n, -1);
		pthread_mutex_lock(&em.lock);
		if (r < 0) {
			if (errno != EINTR)
				log_error(NULL, "export manager: poll: %s", strerror(errno));
			continue;
		}
		if (p[0].revents) {
			char b[64];
			if (read(em.wake[0], b, sizeof(b)) < 0 && errno != EAGAIN)
				log_warn(NULL, "export manager: %s", strerror(errno));
		}
		for (unsigned i = 1; i < n; i++) {
			struct export *e = who[i];
			if (!p[i].revents || e->state != EX_RUNNING)
				continue;
			char buf[4096];
			ssize_t got = read(e->err_fd, buf, sizeof(buf));
			if (got > 0) {
				relay_lines(e, buf, (size_t)got, false);
			} else if (got == 0 || errno != EINTR) {
				relay_lines(e, NULL, 0, true);
				reap(e);
			}
		}
	}
	pthread_mutex_unlock(&em.lock);
	return NULL;
}

static void wake_manager(void)
{
	if (write(em.wake[1], "x", 1) < 0 && errno != EAGAIN)
		log_warn(NULL, "export manager: waking it: %s", strerror(errno));
}

/* --- the gone hook ------------------------------------------------------------------- */

/* Under the snapshot set's mutex: export_stop takes only em.lock and waits for nbdkit. */
static void snapshot_gone(const char *volume, const char *snapshot, const char *why)
{
	char text[STATUS_TEXT_MAX];
	/* why: "the snapshot was deleted", or the reason it was invalidated. */
	if (strncmp(why, "the snapshot", 12) == 0)
		snprintf(text, sizeof(text), "%s", why);
	else
		snprintf(text, sizeof(text), "the snapshot was invalidated (%s)", why);
	export_stop(volume, snapshot, text);
}

int export_init(const char *data_dir, char *err, size_t err_len)
{
	if (strlen(data_dir) >= sizeof(em.data_dir)) {
		snprintf(err, err_len, "--data-dir %s: longer than %zu bytes", data_dir,
			 sizeof(em.data_dir) - 1);
		return -1;
	}
	snprintf(em.data_dir, sizeof(em.data_dir), "%s", data_dir);
	for (unsigned i = 0; i < EXPORT_MAX; i++)
		em.ex[i].err_fd = -1;
	if (pipe2(em.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		snprintf(err, err_len, "export manager: pipe: %s", strerror(errno));
		return -1;
	}
	if (pthread_create(&em.manager, NULL, manager_main, NULL) != 0) {
		snprintf(err, err_len, "cannot start the export manager thread");
		return -1;
	}
	em.started = true;
	snapset_set_gone_hook(snapshot_gone);
	return 0;
}

/* --- starting ------------------------------------------------------------------------- */

/* A unix socket path's directory, created (0755) if missing: /run/frep/nbd. */
static int make_socket_dir(const char *path, char *err, size_t err_len)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, err_len, "--nbd unix:%s: creating %s: %s", path, dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* Something accepts connections on the unix socket path. */
static bool socket_live(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return live;
}

static pid_t spawn_nbdkit(const struct export_addr *a, const char *volume, const char *snapshot,
			  int ready_w, int err_w, char *err, size_t err_len)
{
	char plugin[PATH_MAX], voldir[PATH_MAX + 16], snap[SNAP_NAME_MAX + 16], readyfd[32];
	nbdkit_find_plugin("frep-snapshot-plugin.so", FREP_SNAPSHOT_PLUGIN_INSTALLED, plugin,
			   sizeof(plugin));
	snprintf(voldir, sizeof(voldir), "voldir=%s/%s", em.data_dir, volume);
	snprintf(snap, sizeof(snap), "snapshot=%s", snapshot);
	snprintf(readyfd, sizeof(readyfd), "readyfd=%d", READY_FD);
	char *argv[20];
	int n = 0;
	argv[n++] = "nbdkit";
	argv[n++] = "--foreground";
	argv[n++] = "--exit-with-parent";
	argv[n++] = "--readonly";
	if (a->is_unix) {
		argv[n++] = "--unix";
		argv[n++] = (char *)a->path;
	} else {
		argv[n++] = "--ipaddr";
		argv[n++] = (char *)a->host;
		argv[n++] = "--port";
		argv[n++] = (char *)a->port;
	}
	argv[n++] = plugin;
	argv[n++] = voldir;
	argv[n++] = snap;
	argv[n++] = readyfd;
	argv[n] = NULL;

	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	pid_t pid = -1;
	char **env = nbdkit_environ();
	if (!env) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, err_w, 1);
	posix_spawn_file_actions_adddup2(&fa, err_w, 2);
	posix_spawn_file_actions_adddup2(&fa, ready_w, READY_FD);
	/* nbdkit's own signals: frep-server blocks SIGTERM and SIGINT (signalfd) and ignores SIGPIPE. */
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	int rc = posix_spawn(&pid, nbdkit_program, &fa, &attr, argv, env);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	nbdkit_environ_free(env);
	if (rc != 0) {
		snprintf(err, err_len, "cannot run %s: %s", nbdkit_program, strerror(rc));
		return -1;
	}
	return pid;
}

/*
 * Until nbdkit says ready down ready_r, or ends (EOF) or the time is up:
 * its stderr meanwhile goes to the log, and the last of it into tail.
 * 1 ready, 0 ended, -1 timed out.
 */
static int wait_ready(struct export *e, int ready_r, char *tail, size_t tail_len)
{
	uint64_t deadline = now_ms() + EXPORT_START_MS;
	size_t tl = 0;
	bool err_open = true;
	tail[0] = '\0';
	for (;;) {
		uint64_t now = now_ms();
		if (now >= deadline)
			return -1;
		struct pollfd p[2] = { { .fd = ready_r, .events = POLLIN },
				       { .fd = err_open ? e->err_fd : -1, .events = POLLIN } };
		if (poll(p, 2, (int)(deadline - now)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (p[1].revents) {
			char buf[1024];
			ssize_t got = read(e->err_fd, buf, sizeof(buf));
			if (got > 0) {
				relay_lines(e, buf, (size_t)got, false);
				/* The last words count: keep the end of what was said. */
				for (ssize_t i = 0; i < got; i++) {
					if (tl == tail_len - 1) {
						memmove(tail, tail + tail_len / 2, tl - tail_len / 2);
						tl -= tail_len / 2;
					}
					tail[tl++] = buf[i] == '\n' ? ' ' : buf[i];
				}
				tail[tl] = '\0';
			} else if (got == 0) {
				err_open = false;
			}
		}
		if (p[0].revents) {
			char b[16];
			ssize_t got = read(ready_r, b, sizeof(b));
			if (got > 0)
				return 1;
			if (got == 0) {
				/* Ended: the rest of its stderr says why (bounded: it is exiting). */
				while (err_open && poll(&p[1], 1, 2000) > 0) {
					char buf[1024];
					ssize_t k = read(e->err_fd, buf, sizeof(buf));
					if (k <= 0)
						break;
					relay_lines(e, buf, (size_t)k, false);
					for (ssize_t i = 0; i < k && tl < tail_len - 1; i++)
						tail[tl++] = buf[i] == '\n' ? ' ' : buf[i];
					tail[tl] = '\0';
				}
				relay_lines(e, NULL, 0, true);
				return 0;
			}
		}
	}
}

/* Kills and reaps an nbdkit that never made it to RUNNING; frees the slot. Takes em.lock. */
static void abandon(struct export *e, int *status)
{
	kill(e->pid, SIGKILL);
	while (waitpid(e->pid, status, 0) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&em.lock);
	close(e->err_fd);
	e->err_fd = -1;
	e->state = EX_FREE;
	pthread_cond_broadcast(&em.done);
	pthread_mutex_unlock(&em.lock);
}

int export_start(const char *volume, const char *snapshot, const char *nbd, struct admin_reply *r)
{
	struct export_addr a;
	char err[512];
	if (export_parse_nbd(nbd, &a, err, sizeof(err)) < 0) {
		admin_refuse(r, ADMIN_INVALID_ARGUMENT, "%s", err);
		return -1;
	}

	/* A slot, checked against the other exports: one nbdkit per snapshot and per address. */
	pthread_mutex_lock(&em.lock);
	struct export *e = NULL;
	for (unsigned i = 0; i < EXPORT_MAX; i++) {
		struct export *o = &em.ex[i];
		if (o->state == EX_FREE) {
			e = e ? e : o;
			continue;
		}
		if (strcmp(o->volume, volume) == 0 && strcmp(o->snapshot, snapshot) == 0) {
			admin_refuse(r, ADMIN_ALREADY_EXISTS, "%s@%s is already exported on %s", volume,
			      snapshot, o->nbd);
			goto refused;
		}
		if (strcmp(o->nbd, nbd) == 0) {
			admin_refuse(r, ADMIN_ALREADY_EXISTS, "--nbd %s is in use by the export of %s@%s; "
			      "choose another address", nbd, o->volume, o->snapshot);
			goto refused;
		}
	}
	if (em.shutting_down || !em.started) {
		admin_refuse(r, ADMIN_UNAVAILABLE, "frep-server is shutting down");
		goto refused;
	}
	if (!e) {
		admin_refuse(r, ADMIN_RESOURCE_EXHAUSTED, "%d exports already: unexport one first", EXPORT_MAX);
		goto refused;
	}
	*e = (struct export){ .state = EX_STARTING, .gen = ++em.next_gen, .err_fd = -1 };
	snprintf(e->volume, sizeof(e->volume), "%s", volume);
	snprintf(e->snapshot, sizeof(e->snapshot), "%s", snapshot);
	snprintf(e->nbd, sizeof(e->nbd), "%s", nbd);
	pthread_mutex_unlock(&em.lock);

	int ready[2] = { -1, -1 }, errp[2] = { -1, -1 };
	if (a.is_unix) {
		if (make_socket_dir(a.path, err, sizeof(err)) < 0)
			goto failed_arg;
		if (socket_live(a.path)) {
			snprintf(err, sizeof(err), "--nbd %s: another process listens there; stop it or "
				 "choose another path", nbd);
			goto failed_arg;
		}
		if (nbdkit_prepare_unix_socket(a.path, err, sizeof(err)) < 0)
			goto failed_arg;
	} else if (!is_loopback_host(a.host)) {
		log_warn(volume, "export %s@%s on a non-loopback address %s: NBD has no "
			 "authentication; anyone who can reach it can read the snapshot", volume,
			 snapshot, a.host);
	}
	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		admin_refuse(r, ADMIN_INTERNAL, "export %s@%s: pipe: %s", volume, snapshot, strerror(errno));
		goto failed;
	}
	e->pid = spawn_nbdkit(&a, volume, snapshot, ready[1], errp[1], err, sizeof(err));
	close(ready[1]);
	close(errp[1]);
	ready[1] = errp[1] = -1;
	if (e->pid < 0) {
		admin_refuse(r, ADMIN_INTERNAL, "export %s@%s: %s", volume, snapshot, err);
		goto failed;
	}
	e->err_fd = errp[0];
	errp[0] = -1;

	char tail[512];
	int status = 0, ok = wait_ready(e, ready[0], tail, sizeof(tail));
	close(ready[0]);
	if (ok <= 0) {
		abandon(e, &status);
		char how[128];
		describe_status(status, how, sizeof(how));
		if (ok < 0)
			admin_refuse(r, ADMIN_UNAVAILABLE, "export %s@%s: nbdkit did not listen on %s within %d s; "
			      "it was killed", volume, snapshot, nbd, EXPORT_START_MS / 1000);
		else
			admin_refuse(r, ADMIN_FAILED_PRECONDITION, "export %s@%s on %s: %s before serving: %s",
			      volume, snapshot, nbd, how, tail[0] ? tail : "(it said nothing)");
		log_error(volume, "%s", r->message);
		return -1;
	}

	pthread_mutex_lock(&em.lock);
	if (em.shutting_down || e->why[0]) {
		/* The snapshot went (the gone hook), or frep-server stops: it never serves. */
		char why[STATUS_TEXT_MAX];
		snprintf(why, sizeof(why), "%s", e->why[0] ? e->why : "frep-server is shutting down");
		pthread_mutex_unlock(&em.lock);
		abandon(e, &status);
		admin_refuse(r, ADMIN_FAILED_PRECONDITION, "export %s@%s: %s while nbdkit started", volume,
		      snapshot, why);
		return -1;
	}
	e->state = EX_RUNNING;
	e->since_unix_ms = wall_ms();
	record_save(volume, snapshot, nbd);
	log_info(volume, "export %s@%s: serving read-only on %s (nbdkit pid %d)", volume, snapshot,
		 nbd, (int)e->pid);
	pthread_mutex_unlock(&em.lock);
	wake_manager();
	r->code = ADMIN_OK;
	return 0;

failed_arg:
	admin_refuse(r, ADMIN_INVALID_ARGUMENT, "%s", err);
failed:
	for (int i = 0; i < 2; i++) {
		if (ready[i] >= 0)
			close(ready[i]);
		if (errp[i] >= 0)
			close(errp[i]);
	}
	pthread_mutex_lock(&em.lock);
	e->state = EX_FREE;
	pthread_cond_broadcast(&em.done);
refused:
	pthread_mutex_unlock(&em.lock);
	return -1;
}

/* --- stopping ---------------------------------------------------------------------- */

/* Waits until slot e of generation gen is freed, at most ms. Under em.lock. */
static bool wait_freed(struct export *e, uint64_t gen, unsigned ms)
{
	struct timespec until;
	deadline_in(CLOCK_REALTIME, ms, &until);
	while (e->state != EX_FREE && e->gen == gen)
		if (pthread_cond_timedwait(&em.done, &em.lock, &until) == ETIMEDOUT)
			break;
	return e->state == EX_FREE || e->gen != gen;
}

/* Under em.lock: SIGTERM, then SIGKILL; returns once the manager has reaped it. */
static void stop_locked(struct export *e, const char *why)
{
	uint64_t gen = e->gen;
	if (!e->why[0])
		snprintf(e->why, sizeof(e->why), "%s", why);
	if (e->state == EX_STARTING)
		return; /* its starter sees why once nbdkit is up, and kills it */
	kill(e->pid, SIGTERM);
	if (wait_freed(e, gen, EXPORT_TERM_MS))
		return;
	log_warn(e->volume, "export %s@%s: nbdkit (pid %d) ignored SIGTERM for %d ms: SIGKILL",
		 e->volume, e->snapshot, (int)e->pid, EXPORT_TERM_MS);
	kill(e->pid, SIGKILL);
	if (!wait_freed(e, gen, EXPORT_TERM_MS))
		log_error(e->volume, "export %s@%s: nbdkit (pid %d) not reaped after SIGKILL",
			  e->volume, e->snapshot, (int)e->pid);
}

int export_stop(const char *volume, const char *snapshot, const char *why)
{
	pthread_mutex_lock(&em.lock);
	struct export *e = find(volume, snapshot);
	if (e)
		stop_locked(e, why);
	pthread_mutex_unlock(&em.lock);
	return e ? 0 : -1;
}

bool export_describe(const char *volume, const char *snapshot, struct status_snapshot *s)
{
	pthread_mutex_lock(&em.lock);
	struct export *e = find(volume, snapshot);
	bool on = e && e->state == EX_RUNNING;
	if (on) {
		s->exported = true;
		snprintf(s->export_nbd, sizeof(s->export_nbd), "%s", e->nbd);
		snprintf(s->export_name, sizeof(s->export_name), "%s@%s", volume, snapshot);
		s->export_since_unix_ms = e->since_unix_ms;
		s->export_pid = (uint32_t)e->pid;
	}
	pthread_mutex_unlock(&em.lock);
	return on;
}

uint32_t export_count(const char *volume)
{
	uint32_t n = 0;
	pthread_mutex_lock(&em.lock);
	for (unsigned i = 0; i < EXPORT_MAX; i++)
		if (em.ex[i].state == EX_RUNNING && strcmp(em.ex[i].volume, volume) == 0)
			n++;
	pthread_mutex_unlock(&em.lock);
	return n;
}

/* --- restart and shutdown ------------------------------------------------------------- */

static void restore_volume(const char *volume)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/%s/snapshots", em.data_dir, volume);
	DIR *d = opendir(dir);
	struct dirent *s;
	if (!d)
		return;
	while ((s = readdir(d))) {
		char path[PATH_MAX];
		struct meta m;
		struct admin_reply r;
		if (!snapshot_name_valid(s->d_name))
			continue;
		record_path(volume, s->d_name, path, sizeof(path));
		if (meta_load(path, &m) < 0) {
			if (errno != ENOENT)
				log_warn(volume, "export %s@%s: its record %s is unreadable (%s): not served",
					 volume, s->d_name, path, strerror(errno));
			continue;
		}
		const char *nbd = meta_get(&m, "nbd");
		if (nbd && export_start(volume, s->d_name, nbd, &r) == 0)
			continue;
		log_error(volume, "export %s@%s: not served again after the restart: %s", volume,
			  s->d_name, nbd ? r.message : "its record names no address");
		record_remove(volume, s->d_name);
	}
	closedir(d);
}

void export_restore(void)
{
	DIR *d = opendir(em.data_dir);
	struct dirent *v;
	if (!d)
		return;
	while ((v = readdir(d)))
		if (volume_name_valid(v->d_name))
			restore_volume(v->d_name);
	closedir(d);
}

void export_shutdown(void)
{
	if (!em.started)
		return;
	pthread_mutex_lock(&em.lock);
	em.shutting_down = true;
	/* All at once, then each waited for: their clients are cut in parallel. */
	for (unsigned i = 0; i < EXPORT_MAX; i++)
		if (em.ex[i].state == EX_RUNNING) {
			snprintf(em.ex[i].why, sizeof(em.ex[i].why), "frep-server is shutting down");
			kill(em.ex[i].pid, SIGTERM);
		}
	for (unsigned i = 0; i < EXPORT_MAX; i++)
		if (em.ex[i].state == EX_RUNNING)
			stop_locked(&em.ex[i], em.ex[i].why);
	/* Starters in progress see shutting_down and kill theirs. */
	for (unsigned i = 0; i < EXPORT_MAX; i++)
		if (em.ex[i].state == EX_STARTING)
			wait_freed(&em.ex[i], em.ex[i].gen, EXPORT_START_MS);
	pthread_mutex_unlock(&em.lock);
	wake_manager();
	pthread_join(em.manager, NULL);
	em.started = false;
	close(em.wake[0]);
	close(em.wake[1]);
}
