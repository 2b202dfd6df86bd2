/* frep-server: the mirror daemon. Accepts authenticated masters and keeps their mirror volumes. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin-mirror.h"
#include "authz.h"
#include "events.h"
#include "export.h"
#include "fsm.h"
#include "log.h"
#include "metrics.h"
#include "service.h"
#include "session.h"
#include "store.h"
#include "tls.h"
#include "util.h"
#include "wire.h"

#define PROG "frep-server"

enum {
	HANDSHAKE_TIMEOUT_MS = 10000,
	SHUTDOWN_WAIT_MS = 10000,
	MAX_CONNECTIONS = 256, /* beyond this, new connections are refused at once */
};

static const char usage[] =
	"Usage: " PROG " --listen HOST[:PORT] --data-dir DIR --cert FILE --key FILE --ca FILE\n"
	"                   [--allow FILE] [--keylog FILE] [--heartbeat-timeout SECS]\n"
	"                   [--trace-tx FILE] [--log-level error|warn|info|debug]\n"
	"                   [--admin unix:PATH|none] [--admin-listen HOST:PORT --admin-cert FILE\n"
	"                    --admin-key FILE --admin-ca FILE --admin-allow FILE]\n"
	"                   [--metrics HOST:PORT] [--preallocate full|sparse]\n"
	"\n"
	"Accepts masters (frep-client) that present a certificate signed by --ca, and\n"
	"keeps their mirror volumes under DIR.\n"
	"\n"
	"  --listen HOST[:PORT]    address to listen on (default port 7460; port 0 = any)\n"
	"  --data-dir DIR          mirror volumes live in DIR/NAME/ (created if missing)\n"
	"  --cert FILE, --key FILE this mirror's certificate and key (PEM)\n"
	"  --ca FILE               CA that signs master certificates\n"
	"  --allow FILE            lines \"VOLUME-GLOB IDENTITY\": which masters (certificate\n"
	"                          CN) may create or own which volumes; without it any\n"
	"                          master from the CA may create a volume, and the volume\n"
	"                          is pinned to that master\n"
	"  --keylog FILE           append TLS key-log lines for Wireshark (debug only)\n"
	"  --heartbeat-timeout SECS  a master silent this long is gone (default 30)\n"
	"  --trace-tx FILE         append a line per applied transaction (tests)\n"
	"  --log-level LEVEL       error, warn, info (default) or debug\n"
	"  --admin unix:PATH|none  the admin API's socket, mode 0600 (frepctl; default\n"
	"                          /run/frep/server.sock, or $FREP_RUN_DIR/server.sock)\n"
	"  --admin-listen HOST:PORT  also serve the admin API over TLS to the identities\n"
	"                          (certificate CN) listed in --admin-allow FILE, with\n"
	"                          --admin-cert, --admin-key, --admin-ca (PEM) of its own;\n"
	"                          admin identities never replicate, and masters never admin\n"
	"  --metrics HOST:PORT     serve Prometheus metrics on http://HOST:PORT/metrics\n"
	"                          (port 0 = any)\n"
	"  --preallocate MODE      for volumes created from now on: full (default)\n"
	"                          reserves a volume's whole size at creation; sparse\n"
	"                          keeps holes as holes (thin mirrors), needs room only\n"
	"                          for what the master has allocated, and allocates each\n"
	"                          write before acknowledging it; a volume keeps its mode\n"
	"  --help, --version\n";

#define bad_arg(...) usage_error(PROG, __VA_ARGS__)

struct args {
	char host[256], port[8];
	const char *data_dir, *cert, *key, *ca, *allow, *keylog, *trace, *metrics;
	struct admin_opts admin;
	char admin_path[4096];
	int log_level;
	uint64_t heartbeat_timeout_ms;
	bool sparse;
};

static void parse_args(struct args *a, int argc, char **argv)
{
	enum { OPT_KEYLOG = 256, OPT_LOG_LEVEL, OPT_HEARTBEAT_TIMEOUT, OPT_TRACE_TX, OPT_ADMIN,
	       OPT_ADMIN_LISTEN, OPT_ADMIN_CERT, OPT_ADMIN_KEY, OPT_ADMIN_CA, OPT_ADMIN_ALLOW,
	       OPT_METRICS, OPT_PREALLOCATE };
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "data-dir", required_argument, NULL, 'd' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "ca", required_argument, NULL, 'a' },
		{ "allow", required_argument, NULL, 'A' },
		{ "keylog", required_argument, NULL, OPT_KEYLOG },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "heartbeat-timeout", required_argument, NULL, OPT_HEARTBEAT_TIMEOUT },
		{ "trace-tx", required_argument, NULL, OPT_TRACE_TX },
		{ "admin", required_argument, NULL, OPT_ADMIN },
		{ "admin-listen", required_argument, NULL, OPT_ADMIN_LISTEN },
		{ "admin-cert", required_argument, NULL, OPT_ADMIN_CERT },
		{ "admin-key", required_argument, NULL, OPT_ADMIN_KEY },
		{ "admin-ca", required_argument, NULL, OPT_ADMIN_CA },
		{ "admin-allow", required_argument, NULL, OPT_ADMIN_ALLOW },
		{ "metrics", required_argument, NULL, OPT_METRICS },
		{ "preallocate", required_argument, NULL, OPT_PREALLOCATE },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *listen_spec = NULL, *admin = NULL;
	char dport[8];

	memset(a, 0, sizeof(*a));
	a->log_level = LOG_INFO;
	a->heartbeat_timeout_ms = 30000;
	opterr = 0;
	for (;;) {
		/* The leading ':' tells a missing value (':') from an unknown option ('?'). */
		int o = getopt_long(argc, argv, ":", opts, NULL);
		if (o == -1)
			break;
		switch (o) {
		case 'l': listen_spec = optarg; break;
		case 'd': a->data_dir = optarg; break;
		case 'c': a->cert = optarg; break;
		case 'k': a->key = optarg; break;
		case 'a': a->ca = optarg; break;
		case 'A': a->allow = optarg; break;
		case OPT_KEYLOG: a->keylog = optarg; break;
		case OPT_TRACE_TX: a->trace = optarg; break;
		case OPT_ADMIN: admin = optarg; break;
		case OPT_ADMIN_LISTEN: a->admin.listen = optarg; break;
		case OPT_ADMIN_CERT: a->admin.cert = optarg; break;
		case OPT_ADMIN_KEY: a->admin.key = optarg; break;
		case OPT_ADMIN_CA: a->admin.ca = optarg; break;
		case OPT_ADMIN_ALLOW: a->admin.allow = optarg; break;
		case OPT_METRICS:
			if (!metrics_listen_valid(optarg))
				bad_arg("--metrics: expected HOST:PORT, got '%s'", optarg);
			a->metrics = optarg;
			break;
		case OPT_PREALLOCATE:
			if (strcmp(optarg, "full") != 0 && strcmp(optarg, "sparse") != 0)
				bad_arg("--preallocate: expected full (reserve each volume's space) or "
					"sparse (thin: keep holes), got '%s'", optarg);
			a->sparse = strcmp(optarg, "sparse") == 0;
			break;
		case OPT_HEARTBEAT_TIMEOUT:
			if (parse_seconds(optarg, 300, &a->heartbeat_timeout_ms) < 0)
				bad_arg("--heartbeat-timeout: expected seconds (at least 0.3), got '%s'", optarg);
			break;
		case OPT_LOG_LEVEL:
			if ((a->log_level = log_level_parse(optarg)) < 0)
				bad_arg("--log-level: expected error, warn, info or debug, got '%s'", optarg);
			break;
		case 'h': fputs(usage, stdout); exit(0);
		case 'V': printf(PROG " %s\n", FREP_VERSION); exit(0);
		case ':': bad_arg("%s needs a value", argv[optind - 1]);
		default: bad_arg("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		bad_arg("unexpected argument '%s'", argv[optind]);
	if (!listen_spec)
		bad_arg("--listen is required (HOST[:PORT] to accept masters on)");
	if (!a->data_dir)
		bad_arg("--data-dir is required (directory of the mirror volumes)");
	if (!a->cert || !a->key || !a->ca)
		bad_arg("--cert, --key and --ca are required (PEM files)");
	if (!admin)
		snprintf(a->admin_path, sizeof(a->admin_path), "%s/server.sock", admin_run_dir());
	else if (strncmp(admin, "unix:", 5) == 0 && admin[5])
		snprintf(a->admin_path, sizeof(a->admin_path), "%s", admin + 5);
	else if (strcmp(admin, "none") != 0)
		bad_arg("--admin: expected unix:PATH or none, got '%s'", admin);
	a->admin.unix_path = a->admin_path[0] ? a->admin_path : NULL;
	a->admin.daemon = PROG;
	snprintf(dport, sizeof(dport), "%d", FREP_DEFAULT_PORT);
	if (split_host_port(listen_spec, a->host, sizeof(a->host), a->port, sizeof(a->port),
			    dport) < 0)
		bad_arg("--listen: expected HOST[:PORT], got '%s'", listen_spec);
}

static int listen_on(const char *host, const char *port, char *bound, size_t bound_len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL;
	int fd = -1, one = 1;

	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		log_error(NULL, "--listen %s:%s: %s", host, port, gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
			break;
		log_error(NULL, "--listen %s:%s: %s", host, port, strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return -1;

	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char h[NI_MAXHOST], p[NI_MAXSERV];
	getsockname(fd, (struct sockaddr *)&ss, &len);
	getnameinfo((struct sockaddr *)&ss, len, h, sizeof(h), p, sizeof(p),
		    NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(bound, bound_len, "%s:%s", h, p);
	return fd;
}

/*
 * Connection threads. `conns` counts them, so shutdown can wait for all;
 * `conn_fds` holds their sockets (-1 when free), so shutdown can cut those
 * whose peer stopped reading or sends a frame slowly.
 */
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t conns_done = PTHREAD_COND_INITIALIZER;
static unsigned conns;
static int conn_fds[MAX_CONNECTIONS];

/* Under conns_lock. */
static void conn_fd_set(int old, int new)
{
	for (unsigned i = 0; i < MAX_CONNECTIONS; i++)
		if (conn_fds[i] == old) {
			conn_fds[i] = new;
			return;
		}
}

struct conn_job {
	struct mirror_server *srv;
	struct tls_config *tls;
	int fd;
	char peer[NI_MAXHOST + NI_MAXSERV + 2];
};

static void *conn_main(void *arg)
{
	struct conn_job *job = arg;
	char err[256];

	struct tls_conn *c = tls_server_handshake(job->tls, job->fd, job->peer, HANDSHAKE_TIMEOUT_MS,
						  err, sizeof(err));
	if (!c)
		log_warn(NULL, "rejected peer=%s: %s", job->peer, err);
	else
		mirror_session_run(job->srv, c);

	pthread_mutex_lock(&conns_lock);
	conn_fd_set(job->fd, -1);
	free(job);
	conns--;
	pthread_cond_broadcast(&conns_done);
	pthread_mutex_unlock(&conns_lock);
	return NULL;
}

static void accept_one(struct mirror_server *srv, struct tls_config *tls, int lfd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char h[NI_MAXHOST], p[NI_MAXSERV];
	int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn(NULL, "accept: %s", strerror(errno));
		return;
	}
	getnameinfo((struct sockaddr *)&ss, len, h, sizeof(h), p, sizeof(p),
		    NI_NUMERICHOST | NI_NUMERICSERV);

	pthread_mutex_lock(&conns_lock);
	bool full = conns >= MAX_CONNECTIONS;
	if (!full) {
		conns++;
		conn_fd_set(-1, fd);
	}
	pthread_mutex_unlock(&conns_lock);
	if (full) {
		log_warn(NULL, "rejected peer=%s:%s: %d connections already open", h, p,
			 MAX_CONNECTIONS);
		close(fd);
		return;
	}

	struct conn_job *job = calloc(1, sizeof(*job));
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (job) {
		job->srv = srv;
		job->tls = tls;
		job->fd = fd;
		snprintf(job->peer, sizeof(job->peer), "%s:%s", h, p);
	}
	if (!job || pthread_create(&t, &attr, conn_main, job) != 0) {
		log_error(NULL, "peer %s:%s: cannot start a connection thread", h, p);
		pthread_mutex_lock(&conns_lock);
		conn_fd_set(fd, -1);
		conns--;
		pthread_mutex_unlock(&conns_lock);
		close(fd);
		free(job);
	}
	pthread_attr_destroy(&attr);
}

int main(int argc, char **argv)
{
	struct args a;
	struct mirror_server srv = { 0 };
	struct authz *allow = NULL;
	struct tls_config *tls = NULL;
	char err[512], path[4096], bound[NI_MAXHOST + NI_MAXSERV + 2];
	int lfd = -1, sfd = -1, lock_fd = -1, rc = 1;
	sigset_t sigs;

	parse_args(&a, argc, argv);
	log_init(PROG, (enum log_level)a.log_level);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	if (mkdir(a.data_dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, PROG ": --data-dir %s: %s\n", a.data_dir, strerror(errno));
		return 2;
	}
	snprintf(path, sizeof(path), "%s/.lock", a.data_dir);
	if ((lock_fd = lock_file(path)) < 0) {
		fprintf(stderr, PROG ": --data-dir %s is in use by another frep-server (%s: %s)\n",
			a.data_dir, path, strerror(errno));
		return 2;
	}
	if (a.allow && !(allow = authz_load(a.allow, err, sizeof(err)))) {
		fprintf(stderr, PROG ": %s\n", err);
		close(lock_fd);
		return 2;
	}
	if ((a.admin.unix_path && admin_make_run_dir(a.admin.unix_path, err, sizeof(err)) < 0) ||
	    admin_check(&a.admin, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		authz_free(allow);
		close(lock_fd);
		return 2;
	}
	tls = tls_config_new(TLS_ROLE_SERVER, a.cert, a.key, a.ca, a.keylog, err, sizeof(err));
	if (!tls) {
		fprintf(stderr, PROG ": %s\n", err);
		authz_free(allow);
		close(lock_fd);
		return 2;
	}
	if ((lfd = listen_on(a.host, a.port, bound, sizeof(bound))) < 0) {
		authz_free(allow);
		tls_config_free(tls);
		close(lock_fd);
		return 2;
	}
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	srv.trace_fd = -1;
	if (a.trace && (srv.trace_fd = open(a.trace, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0) {
		fprintf(stderr, PROG ": --trace-tx %s: %s\n", a.trace, strerror(errno));
		rc = 2;
		goto out;
	}
	srv.heartbeat_timeout_ms = a.heartbeat_timeout_ms;
	srv.sparse = a.sparse;
	store_set_trace_fd(srv.trace_fd);
	/* A mirror that crashed replays its journals before anyone can see it. */
	service_status("replaying the mirror journals in %s", a.data_dir);
	if (store_recover_all(a.data_dir) > 0)
		log_error(NULL, "some volumes could not be recovered; their masters will get an error");
	srv.data_dir = a.data_dir;
	srv.allow = allow;
	if (export_init(a.data_dir, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		rc = 2;
		goto out;
	}
	/*
	 * Exports survive a restart: served again from this thread, which lives
	 * as long as they do (nbdkit --exit-with-parent follows the spawning thread).
	 */
	export_restore();
	atomic_init(&srv.stopping, false);
	for (unsigned i = 0; i < MAX_CONNECTIONS; i++)
		conn_fds[i] = -1;
	/* The admin API once the journals are replayed, so Status is true from its first answer. */
	fsm_observer = events_fsm_observer;
	a.admin.ops = &admin_mirror_ops;
	a.admin.ctx = &srv;
	if (admin_start(&a.admin, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		rc = 2;
		goto out;
	}
	if (a.metrics && metrics_start(a.metrics, &admin_mirror_ops, &srv, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		rc = 2;
		goto out;
	}
	log_info(NULL, "listening on %s, data dir %s%s", bound, a.data_dir,
		 allow ? ", --allow rules in force" : "");
	service_ready("listening on %s, no master connected yet", bound);

	for (;;) {
		struct pollfd p[2] = { { .fd = lfd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error(NULL, "poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == sizeof(si))
				log_info(NULL, "%s: shutting down", strsignal((int)si.ssi_signo));
			service_stopping("shutting down: sessions say GOODBYE");
			break;
		}
		if (p[0].revents & POLLIN)
			accept_one(&srv, tls, lfd);
	}

	/*
	 * Exports first (their records stay, for the next start): nbdkits the
	 * admin thread spawned would get SIGTERM when it ends, and be forgotten.
	 */
	export_shutdown();
	/* The admin API next: watchers get UNAVAILABLE, and nothing new starts. */
	metrics_stop();
	admin_stop();
	/* Sessions notice within their poll interval, say Goodbye and save state. */
	close(lfd);
	lfd = -1;
	atomic_store(&srv.stopping, true);
	/*
	 * Half the wait for sessions to end by themselves; then the sockets of
	 * those still blocked (a peer that stopped reading, a frame trickling in)
	 * are shut down, so that their send or read fails and they end too.
	 */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += SHUTDOWN_WAIT_MS / 2000;
	pthread_mutex_lock(&conns_lock);
	while (conns > 0 && pthread_cond_timedwait(&conns_done, &conns_lock, &until) == 0)
		;
	if (conns > 0) {
		log_warn(NULL, "shutting down: cutting %u session(s) still blocked on their peer", conns);
		for (unsigned i = 0; i < MAX_CONNECTIONS; i++)
			if (conn_fds[i] >= 0)
				shutdown(conn_fds[i], SHUT_RDWR);
		until.tv_sec += SHUTDOWN_WAIT_MS / 2000;
		while (conns > 0 && pthread_cond_timedwait(&conns_done, &conns_lock, &until) == 0)
			;
	}
	unsigned left = conns;
	pthread_mutex_unlock(&conns_lock);
	if (left) {
		log_error(NULL, "%u session(s) did not end within %d ms", left, SHUTDOWN_WAIT_MS);
		rc = 1;
		goto out;
	}
	rc = 0;
out:
	export_shutdown();
	metrics_stop();
	admin_stop();
	if (lfd >= 0)
		close(lfd);
	if (sfd >= 0)
		close(sfd);
	pthread_mutex_lock(&conns_lock);
	unsigned running = conns;
	pthread_mutex_unlock(&conns_lock);
	if (running == 0) {
		/* Only once no connection thread can still be using them. */
		authz_free(allow);
		tls_config_free(tls);
	}
	if (srv.trace_fd > 0)
		close(srv.trace_fd);
	close(lock_fd);
	/* State is saved; gRPC's exit handlers would wait for the abandoned calls. */
	if (admin_abandoned())
		_exit(rc);
	return rc;
}
