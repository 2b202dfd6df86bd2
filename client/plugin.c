/*
 * The master as an nbdkit plugin: nbdkit speaks NBD, frep keeps the volume.
 *
 * frep-client checks its command line, takes the journal lock and execs
 * "nbdkit -f frep-plugin.so lockfd=N KEY=VALUE..." (client/main.c), where each
 * KEY=VALUE is one of its own options. The lifecycle maps onto nbdkit's:
 *   .config_complete  parses the options with frep-client's own parser;
 *   .get_ready        opens the master (journal redo) before nbdkit listens;
 *   .after_fork       starts the replication and admin threads (threads do
 *                     not survive a fork, and nbdkit may fork before this);
 *   .cleanup          stops them and closes the master.
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "admin-master.h"
#include "events.h"
#include "fsm.h"
#include "log.h"
#include "master.h"
#include "metrics.h"
#include "options.h"
#include "plugin-quit.h"
#include "service.h"
#include "session.h"
#include "tls.h"
#include "util.h"

/*
 * Every connection's callbacks run in parallel: master_submit does its own
 * ordering (TXIDs), and reads go straight to the volume.
 */
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/*
 * Plugin state. Written by the configuration callbacks, .get_ready and
 * .after_fork (one thread, before any connection); afterwards only m is
 * written, under its own locks.
 */
static struct {
	char *argv[CLIENT_MAX_PARAMS + 2]; /* "frep-client", "--KEY=VALUE"..., NULL */
	int argc;
	int lock_fd;   /* the journal lock frep-client took, adopted by master_open */
	char *tls_dir; /* frep-client's temporary --tls-certificates directory */
	struct client_options o;
	struct master m;
	bool opened;
	struct tls_config *tls;
	struct session *s;
} frep = { .lock_fd = -1 };

static void frep_unload(void)
{
	for (int i = 0; i < frep.argc; i++)
		free(frep.argv[i]);
	free(frep.tls_dir);
	client_options_free(&frep.o);
}

static int frep_config(const char *key, const char *value)
{
	if (strcmp(key, "lockfd") == 0)
		return nbdkit_parse_int("lockfd", value, &frep.lock_fd);
	if (strcmp(key, "tlsdir") == 0) {
		free(frep.tls_dir);
		return (frep.tls_dir = strdup(value)) ? 0 : -1;
	}
	if (frep.argc == 0 && !(frep.argv[frep.argc++] = strdup(FREP_CLIENT_PROG)))
		return -1;
	if (frep.argc > CLIENT_MAX_PARAMS) {
		nbdkit_error("more than %d parameters", CLIENT_MAX_PARAMS);
		return -1;
	}
	if (asprintf(&frep.argv[frep.argc], "--%s=%s", key, value) < 0) {
		nbdkit_error("out of memory");
		return -1;
	}
	frep.argc++;
	return 0;
}

static int frep_config_complete(void)
{
	if (frep.argc == 0) {
		nbdkit_error("no parameters: this plugin is started by frep-client, not by hand");
		return -1;
	}
	/* A bad option exits 2 with frep-client's one-line message, as before the exec. */
	client_options_parse(&frep.o, frep.argc, frep.argv);
	log_init(FREP_CLIENT_PROG, (enum log_level)frep.o.log_level);
	return 0;
}

#define frep_config_help \
	"Started by frep-client (see frep-client --help), which passes its options as KEY=VALUE."

/*
 * nbdkit loaded the NBD TLS certificates before .get_ready: frep-client's
 * directory of links to them has served its purpose.
 */
static void remove_tls_dir(void)
{
	static const char *const names[] = { "ca-cert.pem", "server-cert.pem", "server-key.pem" };
	char path[4096];

	if (!frep.tls_dir)
		return;
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", frep.tls_dir, names[i]);
		unlink(path);
	}
	if (rmdir(frep.tls_dir) < 0)
		log_warn(frep.o.volume_name, "removing %s: %s", frep.tls_dir, strerror(errno));
}

/* The master opens here, so nbdkit binds its socket only once redo is done. */
static int frep_get_ready(void)
{
	char err[512];
	int exit_code = 1;
	const struct client_options *o = &frep.o;

	remove_tls_dir();
	service_status("%s: journal redo", o->volume_name);
	/* A lost mirror is an EPIPE for the session, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	frep.tls = tls_config_new(TLS_ROLE_CLIENT, o->cert, o->key, o->ca, o->keylog, err,
				  sizeof(err));
	if (!frep.tls) {
		fprintf(stderr, FREP_CLIENT_PROG ": %s\n", err);
		plugin_exit(2);
	}
	struct master_options mo = {
		.name = o->volume_name,
		.paths = frep.o.paths,
		.n_paths = o->n_paths,
		.journal_path = o->journal,
		.journal_size = o->journal_size,
		.on_full = o->on_full,
		.sync_mode = o->sync_mode,
		.sync_fail = o->sync_fail,
		.degrade_after_s = o->degrade_after_s,
		.trace_path = o->trace,
		.max_rate = o->max_rate,
		.lock_fd = frep.lock_fd,
		.adopt = o->adopt,
		.fenced_serve = o->fenced_serve,
	};
	if (master_open(&frep.m, &mo, err, sizeof(err), &exit_code) < 0) {
		if (exit_code == 2) {
			/* An operator error (bad path, lock held): one line, like any bad argument. */
			fprintf(stderr, FREP_CLIENT_PROG ": %s\n", err);
		} else {
			/* NEW could not reserve the mirror buffer: ERROR, with the reason. */
			struct master_fsm f;
			master_fsm_init(&f, o->volume_name);
			master_fsm_feed(&f, ME_JOURNAL_FAIL, err);
		}
		master_close(&frep.m);
		tls_config_free(frep.tls);
		/* nbdkit's own status for a failed .get_ready would be 1. */
		plugin_exit(exit_code);
	}
	frep.opened = true;
	return 0;
}

/* Logs each socket nbdkit listens on: with port 0 only the socket knows the port. */
static void note_listener(const struct sockaddr_storage *ss, socklen_t sl)
{
	char host[256], serv[16];
	const char *tls = frep.tls_dir ? " (TLS)" : "";

	if (ss->ss_family == AF_UNIX)
		log_info(frep.m.name, "NBD listening on unix:%s%s", ((struct sockaddr_un *)ss)->sun_path,
			 tls);
	else if (getnameinfo((const struct sockaddr *)ss, sl, host, sizeof(host), serv, sizeof(serv),
			     NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		log_info(frep.m.name, ss->ss_family == AF_INET6 ? "NBD listening on [%s]:%s%s"
							      : "NBD listening on %s:%s%s",
			 host, serv, tls);
}

static void note_listeners(void)
{
	if (strncmp(frep.o.nbd, "unix:", 5) != 0 && !frep.tls_dir) {
		char host[256], port[16];
		split_host_port(frep.o.nbd, host, sizeof(host), port, sizeof(port), NULL);
		if (!is_loopback_host(host))
			log_warn(frep.m.name, "NBD on a non-loopback address %s: NBD has no "
				 "authentication; anyone who can reach it can read and write the volume "
				 "(give --nbd-tls-cert, --nbd-tls-key and --nbd-tls-ca to require client "
				 "certificates)", host);
	}
	plugin_note_listeners(note_listener);
}

/* --- shutdown ---------------------------------------------------------------- */

/*
 * A quit signal (plugin-quit.h): a writer may be waiting inside master_submit
 * for room in a full buffer or for the mirror; stopping the master makes it
 * return, so nbdkit can finish the request while the clients are cut.
 */
static void on_quit(int sig, bool first)
{
	if (first) {
		log_info(frep.m.name, "%s: shutting down", strsignal(sig));
		service_stopping("shutting down: disconnecting NBD clients");
	}
	master_stop(&frep.m);
}

/*
 * Every state change, as it happens: the master's published state (which the
 * admin API's commands check) and an event for Watch.
 */
static void on_state_change(const char *volume, bool mirror, int from, int to, const char *event,
			    const char *reason)
{
	pthread_mutex_lock(&frep.m.lock);
	frep.m.state = (enum master_state)to;
	frep.m.state_since_unix_ms = wall_ms();
	pthread_mutex_unlock(&frep.m.lock);
	events_fsm_observer(volume, mirror, from, to, event, reason);
}

static int start_threads(void)
{
	char err[512];
	const struct client_options *o = &frep.o;

	/* Every state change from NEW on is an admin API event. */
	fsm_observer = on_state_change;
	/* The admin API before replication: Status answers from the first moment. */
	struct admin_opts ao = {
		.daemon = FREP_CLIENT_PROG,
		.unix_path = strcmp(o->admin, "none") == 0 ? NULL : o->admin + 5,
		.listen = o->admin_listen,
		.cert = o->admin_cert,
		.key = o->admin_key,
		.ca = o->admin_ca,
		.allow = o->admin_allow,
		.ops = &admin_master_ops,
		.ctx = &frep.m,
	};
	if (admin_start(&ao, err, sizeof(err)) < 0) {
		nbdkit_error("%s", err);
		return -1;
	}
	if (o->metrics && metrics_start(o->metrics, &admin_master_ops, &frep.m, err, sizeof(err)) < 0) {
		nbdkit_error("%s", err);
		return -1;
	}
	if (plugin_quit_start(on_quit, err, sizeof(err)) < 0) {
		nbdkit_error("%s", err);
		return -1;
	}
	struct session_options so = {
		.host = o->host,
		.port = o->port,
		.server_name = o->server_name,
		.tls = frep.tls,
		.resync_full = o->resync_full,
		.backoff_min_ms = o->backoff_min_ms,
		.backoff_max_ms = o->backoff_max_ms,
		.heartbeat_timeout_ms = o->heartbeat_timeout_ms,
		.compression = o->compression,
		.lanes = o->lanes,
	};
	if (!(frep.s = session_start(&frep.m, &so))) {
		nbdkit_error("cannot start the replication thread");
		return -1;
	}
	return 0;
}

static int frep_after_fork(void)
{
	sigset_t old;

	note_listeners();
	/*
	 * Our threads never take a quit signal (their system calls are not all
	 * ready for EINTR): nbdkit's own threads do, and the handler relays it.
	 */
	plugin_block_quit_signals(&old);
	int rc = start_threads();
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	/* nbdkit listens already (note_listeners found its sockets) and accepts next. */
	if (rc == 0)
		service_ready("%s: serving NBD on %s", frep.m.name, frep.o.nbd);
	return rc;
}

static void frep_cleanup(void)
{
	plugin_quit_end();
	/* Metrics and the admin API first: their handlers read the master, which goes next. */
	metrics_stop();
	admin_stop();
	/* Writers blocked on a full buffer wake before the session is joined. */
	if (frep.opened) {
		master_stop(&frep.m);
		if (frep.s)
			session_join(frep.s);
		master_close(&frep.m);
	}
	tls_config_free(frep.tls);
	/* nbdkit leaves its unix socket behind; frep-client would remove it next time. */
	if (frep.o.nbd && strncmp(frep.o.nbd, "unix:", 5) == 0)
		unlink(frep.o.nbd + 5);
	/* The volume is saved; gRPC's exit handlers would wait for the abandoned calls. */
	if (admin_abandoned())
		_exit(0);
	/* frep is stopped and closed; leave with the status nbdkit gives a quit signal. */
	plugin_cleanup_done();
}

/* --- exports ----------------------------------------------------------------- */

static int frep_list_exports(int readonly, int is_tls, struct nbdkit_exports *exports)
{
	return nbdkit_add_export(exports, frep.m.name, NULL);
}

/* The default export "" is the volume, as for a client that names it. */
static const char *frep_default_export(int readonly, int is_tls)
{
	return frep.m.name;
}

static void *frep_open(int readonly)
{
	const char *name = nbdkit_export_name();

	if (!name || strcmp(name, frep.m.name) != 0) {
		nbdkit_error("unknown export '%s': this server exports '%s'", name ? name : "",
			     frep.m.name);
		return NULL;
	}
	return NBDKIT_HANDLE_NOT_NEEDED;
}

static int64_t frep_get_size(void *h)
{
	return (int64_t)frep.m.vol.size;
}

/*
 * Preferred block size: 4096, or the largest power of two within max_payload
 * when that is smaller, since NBD wants preferred <= maximum. The maximum is
 * the largest journal record; larger requests still work (frep_pwrite), but a
 * client that keeps within it gets one transaction per request.
 */
static int frep_block_size(void *h, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
	uint32_t p = 4096;
	while (p > frep.m.max_payload)
		p >>= 1;
	*minimum = 1;
	*preferred = p;
	*maximum = frep.m.max_payload;
	return 0;
}

static int frep_can_write(void *h) { return 1; }
static int frep_can_flush(void *h) { return 1; }
static int frep_can_trim(void *h) { return 1; }
static int frep_can_zero(void *h) { return 1; }
static int frep_can_extents(void *h) { return 1; }

/* Every write is durable in the journal before its reply (master_submit): FUA holds. */
static int frep_can_fua(void *h)
{
	return NBDKIT_FUA_NATIVE;
}

/*
 * Safe: nothing is cached per connection. Every connection reads and writes
 * the one volume, and a write is in the journal (durable) and applied to the
 * volume before its reply, so what one connection was told is done is what
 * every other connection reads, and a FLUSH has nothing left to publish.
 */
static int frep_can_multi_conn(void *h)
{
	return 1;
}

/* --- data ---------------------------------------------------------------------- */

/* Reports err (an errno value from the transaction path) to the NBD client. */
static int fail(int err)
{
	nbdkit_set_error(err);
	return -1;
}

static int frep_pread(void *h, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	return volume_pread(&frep.m.vol, buf, count, offset) < 0 ? fail(errno) : 0;
}

/*
 * nbdkit passes on requests up to 64 MiB whatever .block_size says, and a
 * journal record holds at most max_payload bytes: a larger write becomes
 * consecutive transactions (consecutive TXIDs). NBD promises no atomicity for
 * one write either, so a crash between them leaves a prefix of the request,
 * which is what a disk may do too; the reply waits for all of them.
 */
static int frep_pwrite(void *h, const void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	const uint8_t *p = buf;

	while (count > 0) {
		uint32_t n = count < frep.m.max_payload ? count : frep.m.max_payload;
		int e = master_submit(&frep.m, JOP_WRITE, offset, n, p);
		if (e)
			return fail(e);
		p += n;
		offset += n;
		count -= n;
	}
	return 0;
}

/* Replied writes are already committed to the journal; redo covers the volume. */
static int frep_flush(void *h, uint32_t flags)
{
	return 0;
}

/* A trim or zero record carries no data: any length is one transaction. */
static int frep_trim(void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
	int e = master_submit(&frep.m, JOP_TRIM, offset, count, NULL);
	return e ? fail(e) : 0;
}

static int frep_zero(void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
	int e = master_submit(&frep.m, JOP_ZERO, offset, count, NULL);
	return e ? fail(e) : 0;
}

/*
 * base:allocation from SEEK_DATA/SEEK_HOLE over the extents, so clients
 * (nbdcopy, qemu-img convert, nbdinfo --map) skip the holes. Extents may run
 * past offset + count; nbdkit trims them.
 */
static int frep_extents(void *h, uint32_t count, uint64_t offset, uint32_t flags,
			struct nbdkit_extents *extents)
{
	uint64_t off = offset, end = offset + count;

	while (off < end) {
		uint64_t data_off, data_end;
		int r = volume_next_data(&frep.m.vol, off, &data_off, &data_end);
		if (r < 0)
			return fail(errno);
		if (r == 0)
			data_off = data_end = frep.m.vol.size;
		if (data_off > off) {
			if (nbdkit_add_extent(extents, off, data_off - off,
					      NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO) < 0)
				return -1;
			if (r == 0 || (flags & NBDKIT_FLAG_REQ_ONE))
				break;
		}
		if (nbdkit_add_extent(extents, data_off, data_end - data_off, 0) < 0)
			return -1;
		if (flags & NBDKIT_FLAG_REQ_ONE)
			break;
		off = data_end;
	}
	return 0;
}

static struct nbdkit_plugin plugin = {
	.name = "frep",
	.longname = "frep master volume",
	.version = FREP_VERSION,
	.description = "Serves a frep master volume: every write goes through its journal to the mirror.",
	.unload = frep_unload,
	.config = frep_config,
	.config_complete = frep_config_complete,
	.config_help = frep_config_help,
	.get_ready = frep_get_ready,
	.after_fork = frep_after_fork,
	.cleanup = frep_cleanup,
	.list_exports = frep_list_exports,
	.default_export = frep_default_export,
	.open = frep_open,
	.get_size = frep_get_size,
	.block_size = frep_block_size,
	.can_write = frep_can_write,
	.can_flush = frep_can_flush,
	.can_trim = frep_can_trim,
	.can_zero = frep_can_zero,
	.can_extents = frep_can_extents,
	.can_fua = frep_can_fua,
	.can_multi_conn = frep_can_multi_conn,
	.pread = frep_pread,
	.pwrite = frep_pwrite,
	.flush = frep_flush,
	.trim = frep_trim,
	.zero = frep_zero,
	.extents = frep_extents,
};

NBDKIT_REGISTER_PLUGIN(plugin)
