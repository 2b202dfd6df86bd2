/* frep-client's command line: one parser for frep-client and for the nbdkit plugin it execs. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "compress.h"
#include "adopt.h"
#include "log.h"
#include "metrics.h"
#include "options.h"
#include "util.h"
#include "wire.h"

#define PROG FREP_CLIENT_PROG

static const char usage[] =
	"Usage: " PROG " --volume NAME=PATH[,PATH...] --mirror HOST[:PORT] --journal PATH\n"
	"                   [--journal-size SIZE] --cert FILE --key FILE --ca FILE\n"
	"                   [--server-name NAME] --nbd unix:PATH|HOST:PORT [--keylog FILE]\n"
	"                   [--on-buffer-full=crack|block] [--resync=dirty|full]\n"
	"                   [--mode async|sync] [--degrade-after SECS] [--sync-fallback=degrade|fail]\n"
	"                   [--max-rate RATE] [--backoff MIN:MAX] [--heartbeat-timeout SECS]\n"
	"                   [--compress none|zstd|lz4] [--lanes N]\n"
	"                   [--nbd-tls-cert FILE --nbd-tls-key FILE --nbd-tls-ca FILE]\n"
	"                   [--admin unix:PATH|none] [--admin-listen HOST:PORT --admin-cert FILE\n"
	"                    --admin-key FILE --admin-ca FILE --admin-allow FILE]\n"
	"                   [--metrics HOST:PORT]\n"
	"                   [--adopt DIR] [--on-fenced=refuse|serve]\n"
	"                   [--trace-tx FILE] [--log-level error|warn|info|debug]\n"
	"\n"
	"Owns the master volume NAME (its extents PATH,... concatenated), serves it over\n"
	"NBD (export name NAME; the process becomes nbdkit, with frep as its plugin),\n"
	"and replicates every write to the frep-server at --mirror over mutually\n"
	"authenticated TLS.\n"
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
	"  --nbd unix:PATH|HOST:PORT     where NBD clients connect (without --nbd-tls-*, no\n"
	"                                authentication: keep it on a unix socket or loopback)\n"
	"  --nbd-tls-cert FILE, --nbd-tls-key FILE, --nbd-tls-ca FILE\n"
	"                                NBD over TLS (PEM; all three or none): this NBD\n"
	"                                server's certificate and key, and the CA that must\n"
	"                                have signed every NBD client's certificate\n"
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
	"  --max-rate RATE               bandwidth of bulk copies, e.g. 50M (per second),\n"
	"                                counted as bytes on the wire (after --compress)\n"
	"  --compress none|zstd|lz4      compress copied and written data on the wire\n"
	"                                (protocol 2; default none): zstd for WAN links,\n"
	"                                lz4 where the link is fast and CPU is short. Lengths\n"
	"                                then leak through the encryption: see the README\n"
	"  --lanes N                     TLS connections per session (protocol 2; 1-16,\n"
	"                                default 1): with N > 1 the bulk copy goes over the\n"
	"                                N-1 extra ones, each compressing and encrypting on a\n"
	"                                core of its own; the first keeps control and writes\n"
	"  --backoff MIN:MAX             retry delay bounds in seconds (default 1:30)\n"
	"  --heartbeat-timeout SECS      mirror silent this long: link down (default 30)\n"
	"  --admin unix:PATH|none        the admin API's socket, mode 0600 (frepctl; default\n"
	"                                /run/frep/client-NAME.sock, or $FREP_RUN_DIR/...)\n"
	"  --admin-listen HOST:PORT      also serve the admin API over TLS, to the identities\n"
	"                                (certificate CN) listed in --admin-allow FILE, with\n"
	"                                --admin-cert, --admin-key and --admin-ca (PEM) of its own\n"
	"  --metrics HOST:PORT           serve Prometheus metrics on http://HOST:PORT/metrics\n"
	"                                (port 0 = any)\n"
	"  --adopt DIR                   take up the master role on a mirror copy that\n"
	"                                frepctl promote promoted (DIR: DATA_DIR/NAME of its\n"
	"                                frep-server): its extents are the volume (--volume\n"
	"                                NAME needs no paths), and a new --journal goes on\n"
	"                                from the promotion's TXID and epoch\n"
	"  --on-fenced=refuse|serve      once a promotion elsewhere fenced this master\n"
	"                                (Error FENCED): refuse local writes with EROFS\n"
	"                                (default), or go on taking them (a demote discards\n"
	"                                them)\n"
	"  --trace-tx FILE               append a line per committed transaction (tests)\n"
	"  --log-level LEVEL             error, warn, info (default) or debug\n"
	"  --help, --version\n";

#define bad_arg(...) usage_error(PROG, __VA_ARGS__)

/* path made absolute against the current directory (which need not exist below it). */
static char *absolute(const char *opt, const char *path)
{
	char cwd[4096], *abs;
	if (path[0] == '/')
		abs = strdup(path);
	else if (!getcwd(cwd, sizeof(cwd)) || asprintf(&abs, "%s/%s", cwd, path) < 0)
		abs = NULL;
	if (!abs)
		bad_arg("%s: cannot make '%s' an absolute path", opt, path);
	return abs;
}

/* "unix:PATH" with PATH made absolute; any other value unchanged. */
static char *absolute_unix(const char *opt, const char *spec)
{
	if (strncmp(spec, "unix:", 5) != 0 || !spec[5])
		return strdup(spec);
	char *path = absolute(opt, spec + 5), *out;
	if (asprintf(&out, "unix:%s", path) < 0)
		bad_arg("%s: out of memory", opt);
	free(path);
	return out;
}

/* Sets an option's string, freeing the one an earlier occurrence set. Returns it. */
static char *set(const char **field, char *value)
{
	free((char *)*field);
	*field = value;
	return value;
}

/* Records one option as the plugin parameter "name=value". */
static void keep_param(struct client_options *a, const char *name, const char *value)
{
	if (a->n_params == CLIENT_MAX_PARAMS)
		bad_arg("more than %d options", CLIENT_MAX_PARAMS);
	if (asprintf(&a->params[a->n_params], "%s=%s", name, value) < 0)
		bad_arg("out of memory");
	a->n_params++;
}


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

static void parse_volume(struct client_options *a, char *spec)
{
	char *eq = strchr(spec, '=');
	if (!eq && volume_name_valid(spec)) {
		a->volume_name = spec; /* the extents come from --adopt */
		return;
	}
	if (!eq || eq == spec || eq[1] == '\0')
		bad_arg("--volume: expected NAME=PATH[,PATH...] (or NAME with --adopt), got '%s'",
			spec);
	*eq = '\0';
	if (!volume_name_valid(spec))
		bad_arg("--volume: name '%s' is invalid: use 1-64 characters of [A-Za-z0-9._-], not starting with '.'", spec);
	a->volume_name = spec;
	for (char *save, *p = strtok_r(eq + 1, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		if (a->n_paths == CLIENT_MAX_EXTENTS)
			bad_arg("--volume: more than %d extents", CLIENT_MAX_EXTENTS);
		a->paths[a->n_paths++] = absolute("--volume", p);
	}
	if (a->n_paths == 0)
		bad_arg("--volume: no extent path after '%s='", spec);
}

/* The plugin's "volume" parameter: NAME=PATH,... with the paths made absolute. */
static void keep_volume_param(struct client_options *a)
{
	char *spec = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&spec, &len);
	if (!f)
		bad_arg("--volume: out of memory");
	fprintf(f, "%s=", a->volume_name);
	for (unsigned i = 0; i < a->n_paths; i++)
		fprintf(f, "%s%s", i ? "," : "", a->paths[i]);
	fclose(f);
	keep_param(a, "volume", spec);
	free(spec);
}

/* --adopt DIR: the promoted copy's extents are the volume, unless --volume named them. */
static void adopt_extents(struct client_options *a)
{
	struct adopt_info ai;
	char err[1024];
	if (adopt_load(a->adopt, &ai, err, sizeof(err)) < 0)
		bad_arg("%s", err);
	if (strcmp(ai.volume, a->volume_name) != 0)
		bad_arg("--adopt %s holds volume %s, not %s", a->adopt, ai.volume, a->volume_name);
	if (a->n_paths)
		return;
	for (unsigned i = 0; i < ai.n_extents; i++)
		if (asprintf(&a->paths[a->n_paths++], "%s/extent.%u", a->adopt, i) < 0)
			bad_arg("--adopt: out of memory");
	keep_volume_param(a);
}

void client_options_parse(struct client_options *a, int argc, char **argv)
{
	enum {
		OPT_JOURNAL_SIZE = 256, OPT_SERVER_NAME, OPT_KEYLOG, OPT_LOG_LEVEL, OPT_ON_FULL,
		OPT_RESYNC, OPT_MODE, OPT_DEGRADE_AFTER, OPT_SYNC_FALLBACK, OPT_MAX_RATE,
		OPT_BACKOFF, OPT_HEARTBEAT_TIMEOUT, OPT_ADMIN, OPT_ADMIN_LISTEN, OPT_ADMIN_CERT,
		OPT_ADMIN_KEY, OPT_ADMIN_CA, OPT_ADMIN_ALLOW, OPT_METRICS, OPT_TRACE_TX,
		OPT_NBD_TLS_CERT, OPT_NBD_TLS_KEY, OPT_NBD_TLS_CA, OPT_ADOPT, OPT_ON_FENCED,
		OPT_COMPRESS, OPT_LANES,
	};
	static const char *const fenced_words[] = { "refuse", "serve" };
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
		{ "admin", required_argument, NULL, OPT_ADMIN },
		{ "admin-listen", required_argument, NULL, OPT_ADMIN_LISTEN },
		{ "admin-cert", required_argument, NULL, OPT_ADMIN_CERT },
		{ "admin-key", required_argument, NULL, OPT_ADMIN_KEY },
		{ "admin-ca", required_argument, NULL, OPT_ADMIN_CA },
		{ "admin-allow", required_argument, NULL, OPT_ADMIN_ALLOW },
		{ "metrics", required_argument, NULL, OPT_METRICS },
		{ "trace-tx", required_argument, NULL, OPT_TRACE_TX },
		{ "nbd-tls-cert", required_argument, NULL, OPT_NBD_TLS_CERT },
		{ "nbd-tls-key", required_argument, NULL, OPT_NBD_TLS_KEY },
		{ "nbd-tls-ca", required_argument, NULL, OPT_NBD_TLS_CA },
		{ "adopt", required_argument, NULL, OPT_ADOPT },
		{ "on-fenced", required_argument, NULL, OPT_ON_FENCED },
		{ "compress", required_argument, NULL, OPT_COMPRESS },
		{ "lanes", required_argument, NULL, OPT_LANES },
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
	a->lanes = 1;
	opterr = 0;
	optind = 1;
	for (;;) {
		int idx = -1;
		int o = getopt_long(argc, argv, "", opts, &idx);
		if (o == -1)
			break;
		/* What the plugin gets for this option: the value, with paths absolute. */
		const char *param = optarg;
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
		case OPT_COMPRESS: {
			int alg = compress_parse(optarg);
			if (alg < 0)
				bad_arg("--compress: expected none, zstd or lz4, got '%s'", optarg);
			a->compression = (unsigned)alg;
			break;
		}
		case OPT_LANES: {
			char *end;
			unsigned long n = strtoul(optarg, &end, 10);
			if (!*optarg || *end || n < 1 || n > FREP_MAX_LANES)
				bad_arg("--lanes: expected a number of TLS connections, 1-%u, got '%s'",
					(unsigned)FREP_MAX_LANES, optarg);
			a->lanes = (unsigned)n;
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
		case OPT_ADMIN:
			if (strcmp(optarg, "none") != 0 && (strncmp(optarg, "unix:", 5) != 0 || !optarg[5]))
				bad_arg("--admin: expected unix:PATH or none, got '%s'", optarg);
			param = set(&a->admin, absolute_unix("--admin", optarg));
			break;
		case OPT_ADMIN_LISTEN: a->admin_listen = optarg; break;
		case OPT_ADMIN_CERT: param = set(&a->admin_cert, absolute("--admin-cert", optarg)); break;
		case OPT_ADMIN_KEY: param = set(&a->admin_key, absolute("--admin-key", optarg)); break;
		case OPT_ADMIN_CA: param = set(&a->admin_ca, absolute("--admin-ca", optarg)); break;
		case OPT_ADMIN_ALLOW: param = set(&a->admin_allow, absolute("--admin-allow", optarg)); break;
		case OPT_METRICS:
			if (!metrics_listen_valid(optarg))
				bad_arg("--metrics: expected HOST:PORT, got '%s'", optarg);
			a->metrics = optarg;
			break;
		case OPT_TRACE_TX: param = set(&a->trace, absolute("--trace-tx", optarg)); break;
		case OPT_ADOPT: param = set(&a->adopt, absolute("--adopt", optarg)); break;
		case OPT_ON_FENCED:
			a->fenced_serve = parse_choice("--on-fenced", optarg, fenced_words, 2);
			break;
		case 'v': {
			char *copy = strdup(optarg);
			if (!copy)
				bad_arg("--volume: out of memory");
			/* Only the last --volume counts, as for every other option. */
			while (a->n_paths > 0)
				free(a->paths[--a->n_paths]);
			free(a->volume_name);
			parse_volume(a, copy);
			param = NULL;
			if (a->n_paths)
				keep_volume_param(a); /* else once --adopt gives the extents */
			break;
		}
		case 'm': mirror = optarg; break;
		case 'j': param = set(&a->journal, absolute("--journal", optarg)); break;
		case 'c': param = set(&a->cert, absolute("--cert", optarg)); break;
		case 'k': param = set(&a->key, absolute("--key", optarg)); break;
		case 'a': param = set(&a->ca, absolute("--ca", optarg)); break;
		case 'n': param = set(&a->nbd, absolute_unix("--nbd", optarg)); break;
		case OPT_NBD_TLS_CERT: param = set(&a->nbd_tls_cert, absolute("--nbd-tls-cert", optarg)); break;
		case OPT_NBD_TLS_KEY: param = set(&a->nbd_tls_key, absolute("--nbd-tls-key", optarg)); break;
		case OPT_NBD_TLS_CA: param = set(&a->nbd_tls_ca, absolute("--nbd-tls-ca", optarg)); break;
		case OPT_SERVER_NAME: a->server_name = optarg; break;
		case OPT_KEYLOG: param = set(&a->keylog, absolute("--keylog", optarg)); break;
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
		if (idx >= 0 && param)
			keep_param(a, opts[idx].name, param);
	}
	if (optind < argc)
		bad_arg("unexpected argument '%s'", argv[optind]);
	if (!a->volume_name)
		bad_arg("--volume is required (NAME=PATH[,PATH...])");
	if (a->adopt)
		adopt_extents(a);
	else if (a->n_paths == 0)
		bad_arg("--volume: expected NAME=PATH[,PATH...] (NAME alone only with --adopt), got '%s'",
			a->volume_name);
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
	int n_tls = !!a->nbd_tls_cert + !!a->nbd_tls_key + !!a->nbd_tls_ca;
	if (n_tls != 0 && n_tls != 3)
		bad_arg("--nbd-tls-cert, --nbd-tls-key and --nbd-tls-ca go together (NBD over TLS "
			"with client certificates): give all three or none");
	if (!a->admin) {
		char *def;
		if (asprintf(&def, "unix:%s/client-%s.sock", admin_run_dir(), a->volume_name) < 0)
			bad_arg("out of memory");
		set(&a->admin, def);
		a->admin_default = true;
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


void client_options_free(struct client_options *a)
{
	const char **strings[] = { &a->journal, &a->cert, &a->key, &a->ca, &a->nbd, &a->keylog,
				   &a->admin, &a->admin_cert, &a->admin_key, &a->admin_ca,
				   &a->admin_allow, &a->trace, &a->nbd_tls_cert, &a->nbd_tls_key,
				   &a->nbd_tls_ca, &a->adopt };
	for (unsigned i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		set(strings[i], NULL);
	while (a->n_paths > 0)
		free(a->paths[--a->n_paths]);
	free(a->volume_name);
	while (a->n_params > 0)
		free(a->params[--a->n_params]);
	memset(a, 0, sizeof(*a));
}
