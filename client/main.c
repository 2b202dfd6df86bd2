/* frep-client: the master daemon. Serves the volume over NBD and replicates it to the mirror. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "log.h"
#include "master.h"
#include "nbd.h"
#include "session.h"
#include "tls.h"
#include "util.h"

#define PROG "frep-client"

static const char usage[] =
	"Usage: " PROG " --volume NAME=PATH[,PATH...] --mirror HOST[:PORT] --journal PATH\n"
	"                   [--journal-size SIZE] --cert FILE --key FILE --ca FILE\n"
	"                   [--server-name NAME] --nbd unix:PATH|HOST:PORT [--keylog FILE]\n"
	"                   [--on-buffer-full=crack|block] [--resync=dirty|full]\n"
	"                   [--mode async|sync] [--degrade-after SECS] [--sync-fallback=degrade|fail]\n"
	"                   [--max-rate RATE] [--backoff MIN:MAX] [--heartbeat-timeout SECS]\n"
	"                   [--control unix:PATH] [--trace-tx FILE] [--log-level error|warn|info|debug]\n"
	"\n"
	"Owns the master volume NAME (its extents PATH,... concatenated), serves it to\n"
	"local users over NBD (export name NAME), and replicates every write to the\n"
	"frep-server at --mirror over mutually authenticated TLS.\n"
	"\n"
	"  --volume NAME=PATH[,PATH...]  volume name ([A-Za-z0-9._-], 1-64) and its extents\n"
	"                                (files or block devices), in address order\n"
	"  --mirror HOST[:PORT]          the frep-server (default port 7460)\n"
	"  --journal PATH                the mirror buffer: persistent journal of writes\n"
	"  --journal-size SIZE           its size when created (K, M, G suffixes; at least 1M;\n"
	"                                default max(100M, 10% of the volume))\n"
	"  --cert FILE, --key FILE       this master's certificate and key (PEM); the\n"
	"                                certificate's CN is the master's identity\n"
	"  --ca FILE                     CA that signed the mirror's certificate\n"
	"  --server-name NAME            name the mirror's certificate must carry (default:\n"
	"                                HOST of --mirror; required if HOST is an IP address)\n"
	"  --nbd unix:PATH|HOST:PORT     where local NBD clients connect (no authentication:\n"
	"                                keep it on a unix socket or loopback)\n"
	"  --keylog FILE                 append TLS key-log lines for Wireshark (debug only)\n"
	"  --on-buffer-full=crack|block  a full mirror buffer cracks the mirror (default: the\n"
	"                                dirty bitmap records what to resync) or makes writers\n"
	"                                wait while the mirror is reachable\n"
	"  --resync=dirty|full           after a crack, copy the dirty regions (default) or\n"
	"                                every allocated block\n"
	"  --mode async|sync             sync: a write completes once the mirror has it\n"
	"  --degrade-after SECS          mirror unreachable this long: sync runs async and\n"
	"                                block cracks, until the next INSYNC (default 10)\n"
	"  --sync-fallback=degrade|fail  fail: sync writes get EIO instead of degrading\n"
	"  --max-rate RATE               bandwidth of bulk copies, e.g. 50M (per second)\n"
	"  --backoff MIN:MAX             retry delay bounds in seconds (default 1:30)\n"
	"  --heartbeat-timeout SECS      mirror silent this long: link down (default 30)\n"
	"  --control unix:PATH           control socket: status, pause, resume, resync-full\n"
	"  --trace-tx FILE               append a line per committed transaction (tests)\n"
	"  --log-level LEVEL             error, warn, info (default) or debug\n"
	"  --help, --version\n";

#define bad_arg(...) usage_error(PROG, __VA_ARGS__)

struct args {
	char *volume_name;
	char *paths[1024];
	unsigned n_paths;
	char host[256], port[8];
	const char *journal, *cert, *key, *ca, *server_name, *nbd, *keylog, *control, *trace;
	uint64_t journal_size, max_rate;
	int log_level;
	enum buffer_full_policy on_full;
	bool resync_full, sync_mode, sync_fail;
	unsigned degrade_after_s;
	uint64_t backoff_min_ms, backoff_max_ms, heartbeat_timeout_ms;
};

/* One of the words of choices ("crack|block"), as an index. Exits 2 otherwise. */
static int parse_choice(const char *opt, const char *val, const char *const *choices, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (strcmp(val, choices[i]) == 0)
			return (int)i;
	char want[64] = "";
	for (unsigned i = 0; i < n; i++)
		snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%s", i ? " or " : "",
			 choices[i]);
	bad_arg("%s: expected %s, got '%s'", opt, want, val);
}

static void parse_volume(struct args *a, char *spec)
{
	char *eq = strchr(spec, '=');
	if (!eq || eq == spec || eq[1] == '\0')
		bad_arg("--volume: expected NAME=PATH[,PATH...], got '%s'", spec);
	*eq = '\0';
	if (!volume_name_valid(spec))
		bad_arg("--volume: name '%s' is invalid: use 1-64 characters of [A-Za-z0-9._-]", spec);
	a->volume_name = spec;
	for (char *save, *p = strtok_r(eq + 1, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		if (a->n_paths == sizeof(a->paths) / sizeof(a->paths[0]))
			bad_arg("--volume: more than 1024 extents");
		a->paths[a->n_paths++] = p;
	}
	if (a->n_paths == 0)
		bad_arg("--volume: no extent path after '%s='", spec);
}

static void parse_args(struct args *a, int argc, char **argv)
{
	enum {
		OPT_JOURNAL_SIZE = 256, OPT_SERVER_NAME, OPT_KEYLOG, OPT_LOG_LEVEL, OPT_ON_FULL,
		OPT_RESYNC, OPT_MODE, OPT_DEGRADE_AFTER, OPT_SYNC_FALLBACK, OPT_MAX_RATE,
		OPT_BACKOFF, OPT_HEARTBEAT_TIMEOUT, OPT_CONTROL, OPT_TRACE_TX,
	};
	static const char *const on_full_words[] = { "crack", "block" };
	static const char *const resync_words[] = { "dirty", "full" };
	static const char *const mode_words[] = { "async", "sync" };
	static const char *const fallback_words[] = { "degrade", "fail" };
	static const struct option opts[] = {
		{ "volume", required_argument, NULL, 'v' },
		{ "mirror", required_argument, NULL, 'm' },
		{ "journal", required_argument, NULL, 'j' },
		{ "journal-size", required_argument, NULL, OPT_JOURNAL_SIZE },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "ca", required_argument, NULL, 'a' },
		{ "server-name", required_argument, NULL, OPT_SERVER_NAME },
		{ "nbd", required_argument, NULL, 'n' },
		{ "keylog", required_argument, NULL, OPT_KEYLOG },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "on-buffer-full", required_argument, NULL, OPT_ON_FULL },
		{ "resync", required_argument, NULL, OPT_RESYNC },
		{ "mode", required_argument, NULL, OPT_MODE },
		{ "degrade-after", required_argument, NULL, OPT_DEGRADE_AFTER },
		{ "sync-fallback", required_argument, NULL, OPT_SYNC_FALLBACK },
		{ "max-rate", required_argument, NULL, OPT_MAX_RATE },
		{ "backoff", required_argument, NULL, OPT_BACKOFF },
		{ "heartbeat-timeout", required_argument, NULL, OPT_HEARTBEAT_TIMEOUT },
		{ "control", required_argument, NULL, OPT_CONTROL },
		{ "trace-tx", required_argument, NULL, OPT_TRACE_TX },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *mirror = NULL;
	char dport[8];

	memset(a, 0, sizeof(*a));
	a->log_level = LOG_INFO;
	a->degrade_after_s = 10;
	a->backoff_min_ms = 1000;
	a->backoff_max_ms = 30000;
	a->heartbeat_timeout_ms = 30000;
	opterr = 0;
	for (;;) {
		int o = getopt_long(argc, argv, "", opts, NULL);
		if (o == -1)
			break;
		switch (o) {
		case OPT_ON_FULL:
			a->on_full = (enum buffer_full_policy)parse_choice("--on-buffer-full", optarg, on_full_words, 2);
			break;
		case OPT_RESYNC: a->resync_full = parse_choice("--resync", optarg, resync_words, 2); break;
		case OPT_MODE: a->sync_mode = parse_choice("--mode", optarg, mode_words, 2); break;
		case OPT_SYNC_FALLBACK:
			a->sync_fail = parse_choice("--sync-fallback", optarg, fallback_words, 2);
			break;
		case OPT_DEGRADE_AFTER: {
			uint64_t ms;
			if (parse_seconds(optarg, 1000, &ms) < 0 || ms % 1000)
				bad_arg("--degrade-after: expected whole seconds (1-86400), got '%s'", optarg);
			a->degrade_after_s = (unsigned)(ms / 1000);
			break;
		}
		case OPT_MAX_RATE: {
			char v[32];
			snprintf(v, sizeof(v), "%s", optarg);
			size_t l = strlen(v);
			if (l > 2 && strcmp(v + l - 2, "/s") == 0)
				v[l - 2] = '\0';
			if (parse_size(v, &a->max_rate) < 0 || a->max_rate < 4096)
				bad_arg("--max-rate: expected bytes per second like 50M or 1G (at least 4K), got '%s'",
					optarg);
			break;
		}
		case OPT_BACKOFF: {
			char v[64], *colon;
			snprintf(v, sizeof(v), "%s", optarg);
			if (!(colon = strchr(v, ':')))
				bad_arg("--backoff: expected MIN:MAX in seconds like 1:30, got '%s'", optarg);
			*colon = '\0';
			if (parse_seconds(v, 1, &a->backoff_min_ms) < 0 ||
			    parse_seconds(colon + 1, 1, &a->backoff_max_ms) < 0 ||
			    a->backoff_min_ms > a->backoff_max_ms)
				bad_arg("--backoff: expected MIN:MAX in seconds with MIN <= MAX, like 1:30, got '%s'",
					optarg);
			break;
		}
		case OPT_HEARTBEAT_TIMEOUT:
			if (parse_seconds(optarg, 300, &a->heartbeat_timeout_ms) < 0)
				bad_arg("--heartbeat-timeout: expected seconds (at least 0.3), got '%s'", optarg);
			break;
		case OPT_CONTROL:
			if (strncmp(optarg, "unix:", 5) != 0 || !optarg[5])
				bad_arg("--control: expected unix:PATH, got '%s'", optarg);
			a->control = optarg;
			break;
		case OPT_TRACE_TX: a->trace = optarg; break;
		case 'v': parse_volume(a, optarg); break;
		case 'm': mirror = optarg; break;
		case 'j': a->journal = optarg; break;
		case 'c': a->cert = optarg; break;
		case 'k': a->key = optarg; break;
		case 'a': a->ca = optarg; break;
		case 'n': a->nbd = optarg; break;
		case OPT_SERVER_NAME: a->server_name = optarg; break;
		case OPT_KEYLOG: a->keylog = optarg; break;
		case OPT_JOURNAL_SIZE:
			if (parse_size(optarg, &a->journal_size) < 0 || a->journal_size == 0)
				bad_arg("--journal-size: expected a size like 256M or 2G, got '%s'", optarg);
			if (a->journal_size < (1u << 20))
				bad_arg("--journal-size: %s is below the 1M minimum", optarg);
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
	if (!a->volume_name)
		bad_arg("--volume is required (NAME=PATH[,PATH...])");
	if (!mirror)
		bad_arg("--mirror is required (HOST[:PORT] of the frep-server)");
	if (!a->journal)
		bad_arg("--journal is required (path of the mirror buffer)");
	if (!a->cert || !a->key || !a->ca)
		bad_arg("--cert, --key and --ca are required (PEM files)");
	if (!a->nbd)
		bad_arg("--nbd is required (unix:PATH or HOST:PORT for local NBD clients)");
	if (strncmp(a->nbd, "unix:", 5) != 0) {
		char h[256], p[8];
		if (split_host_port(a->nbd, h, sizeof(h), p, sizeof(p), NULL) < 0)
			bad_arg("--nbd: expected unix:PATH or HOST:PORT, got '%s'", a->nbd);
	} else if (a->nbd[5] == '\0') {
		bad_arg("--nbd: unix: needs a socket path");
	}
	snprintf(dport, sizeof(dport), "%d", FREP_DEFAULT_PORT);
	if (split_host_port(mirror, a->host, sizeof(a->host), a->port, sizeof(a->port), dport) < 0)
		bad_arg("--mirror: expected HOST[:PORT], got '%s'", mirror);
	if (!a->server_name) {
		/* mbedTLS 2.28 matches names against DNS SANs and the CN, never IP SANs. */
		if (is_ip_literal(a->host))
			bad_arg("--mirror %s is an IP address, which mbedTLS cannot match against the "
				"certificate; give --server-name with the DNS name in the mirror's certificate",
				a->host);
		a->server_name = a->host;
	}
}

/* NBD backend: local I/O goes through the transaction path. */
static int be_pread(void *ctx, void *buf, uint32_t len, uint64_t off)
{
	struct master *m = ctx;
	return volume_pread(&m->vol, buf, len, off) < 0 ? errno : 0;
}

static int be_pwrite(void *ctx, const void *buf, uint32_t len, uint64_t off, bool fua)
{
	/* Every transaction is durable in the journal before the reply: FUA holds. */
	return master_submit(ctx, JOP_WRITE, off, len, buf);
}

static int be_flush(void *ctx)
{
	/* Replied writes are already committed to the journal; redo covers the volume. */
	return 0;
}

static int be_trim(void *ctx, uint32_t len, uint64_t off, bool fua)
{
	return master_submit(ctx, JOP_TRIM, off, len, NULL);
}

static int be_zero(void *ctx, uint32_t len, uint64_t off, bool may_trim, bool fua)
{
	return master_submit(ctx, JOP_ZERO, off, len, NULL);
}

int main(int argc, char **argv)
{
	struct args a;
	struct master m;
	char err[512];
	int exit_code = 1;
	struct tls_config *tls = NULL;
	struct nbd_server *nbd = NULL;
	struct session *s = NULL;
	struct control *ctl = NULL;
	sigset_t sigs;

	parse_args(&a, argc, argv);
	log_init(PROG, (enum log_level)a.log_level);

	/* Signals are taken by sigwait in main only; a lost peer is an EPIPE, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	tls = tls_config_new(TLS_ROLE_CLIENT, a.cert, a.key, a.ca, a.keylog, err, sizeof(err));
	if (!tls) {
		fprintf(stderr, PROG ": %s\n", err);
		return 2;
	}

	struct master_options mo = {
		.name = a.volume_name,
		.paths = a.paths,
		.n_paths = a.n_paths,
		.journal_path = a.journal,
		.journal_size = a.journal_size,
		.on_full = a.on_full,
		.sync_mode = a.sync_mode,
		.sync_fail = a.sync_fail,
		.degrade_after_s = a.degrade_after_s,
		.trace_path = a.trace,
		.lock_fd = -1,
	};
	if (master_open(&m, &mo, err, sizeof(err), &exit_code) < 0) {
		if (exit_code == 2) {
			/* An operator error (bad path, lock held): one line, like any bad argument. */
			fprintf(stderr, PROG ": %s\n", err);
		} else {
			/* NEW could not reserve the mirror buffer: ERROR, with the reason. */
			struct master_fsm f;
			master_fsm_init(&f, a.volume_name);
			master_fsm_feed(&f, ME_JOURNAL_FAIL, err);
		}
		master_close(&m);
		tls_config_free(tls);
		return exit_code;
	}

	struct nbd_export exp = {
		.name = m.name,
		.size = m.vol.size,
		.max_payload = m.max_payload,
		.backend = {
			.ctx = &m,
			.pread = be_pread,
			.pwrite = be_pwrite,
			.flush = be_flush,
			.trim = be_trim,
			.zero = be_zero,
		},
	};
	struct session_options so = {
		.host = a.host,
		.port = a.port,
		.server_name = a.server_name,
		.tls = tls,
		.resync_full = a.resync_full,
		.max_rate = a.max_rate,
		.backoff_min_ms = a.backoff_min_ms,
		.backoff_max_ms = a.backoff_max_ms,
		.heartbeat_timeout_ms = a.heartbeat_timeout_ms,
	};
	s = session_start(&m, &so);
	if (!s) {
		log_error(m.name, "cannot start the replication thread");
		goto out;
	}
	nbd = nbd_server_start(a.nbd, &exp, err, sizeof(err));
	if (!nbd) {
		log_error(m.name, "NBD: %s", err);
		exit_code = 2;
		goto out;
	}
	if (a.control && !(ctl = control_start(a.control, &m, err, sizeof(err)))) {
		log_error(m.name, "%s", err);
		exit_code = 2;
		goto out;
	}

	int sig;
	sigwait(&sigs, &sig);
	log_info(m.name, "%s: shutting down", strsignal(sig));
	exit_code = 0;
out:
	/* Writers blocked on a full buffer must wake before NBD can join them. */
	control_stop(ctl);
	master_stop(&m);
	if (nbd)
		nbd_server_stop(nbd);
	if (s)
		session_join(s);
	master_close(&m);
	tls_config_free(tls);
	return exit_code;
}
