/* frep-client's command line: parsed once by frep-client, and again by the nbdkit plugin. */
#ifndef FREP_CLIENT_OPTIONS_H
#define FREP_CLIENT_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "master.h"

#define FREP_CLIENT_PROG "frep-client"

enum client_options_limits {
	CLIENT_MAX_EXTENTS = 1024,
	/* Every option at most once per kind, --volume once: room to spare. */
	CLIENT_MAX_PARAMS = 64,
};

/*
 * Every string is absolute where it names a file (frep-client execs nbdkit,
 * which must not depend on the directory it was started in) and lives as long
 * as the process.
 */
struct client_options {
	char *volume_name;
	char *paths[CLIENT_MAX_EXTENTS];
	unsigned n_paths;
	char host[256], port[8];
	const char *journal, *cert, *key, *ca, *server_name, *nbd, *keylog, *trace;
	/* --admin: "unix:PATH" or "none"; admin_default: the default path, not given */
	const char *admin, *admin_listen, *admin_cert, *admin_key, *admin_ca, *admin_allow;
	bool admin_default;
	const char *metrics; /* --metrics HOST:PORT */
	const char *nbd_tls_cert, *nbd_tls_key, *nbd_tls_ca;
	uint64_t journal_size, max_rate;
	int log_level;
	enum buffer_full_policy on_full;
	bool resync_full, sync_mode, sync_fail;
	unsigned degrade_after_s;
	const char *adopt;	/* --adopt DIR: a promoted mirror copy (adopt.h) */
	bool fenced_serve;	/* --on-fenced=serve: a fenced master still takes writes */
	uint64_t backoff_min_ms, backoff_max_ms, heartbeat_timeout_ms;
	unsigned compression;	/* --compress: enum frep_compression */
	unsigned lanes;		/* --lanes */
	/*
	 * The options again as nbdkit plugin parameters ("journal=/abs/path"):
	 * frep-client passes them to the plugin, whose .config turns each back
	 * into "--journal=/abs/path" for client_options_parse.
	 */
	char *params[CLIENT_MAX_PARAMS];
	unsigned n_params;
};

/*
 * Parses argv (getopt_long, from optind 1) into o. Prints --help or --version
 * and exits 0; a bad argument prints one line and exits 2.
 */
void client_options_parse(struct client_options *o, int argc, char **argv);
/* Frees what client_options_parse allocated. */
void client_options_free(struct client_options *o);

#endif
