/* Master replication session: drives the master state machine over one TLS link to the mirror. */
#ifndef FREP_CLIENT_SESSION_H
#define FREP_CLIENT_SESSION_H

#include "master.h"

struct tls_config;

struct session_options {
	const char *host;	 /* mirror host, borrowed */
	const char *port;
	const char *server_name; /* name the mirror's certificate must carry */
	struct tls_config *tls;	 /* borrowed */
	bool resync_full;	 /* --resync=full: OUTOFSYNC copies every allocated block */
	uint64_t backoff_min_ms, backoff_max_ms;
	uint64_t heartbeat_timeout_ms; /* mirror silent this long: LINKDOWN */
	unsigned compression;	 /* --compress: enum frep_compression offered in version 2 */
	unsigned lanes;		 /* --lanes: lanes asked for in version 2 (1..FREP_MAX_LANES) */
};

struct session;

/* Starts the session thread for m. Returns NULL on failure. o and m are borrowed. */
struct session *session_start(struct master *m, const struct session_options *o);
/* Stops the thread (master_stop(m) must have been called), says Goodbye, frees. */
void session_join(struct session *s);

#endif
