/* Mirror session: one authenticated master connection, driven by the mirror state machine. */
#ifndef FREP_SERVER_SESSION_H
#define FREP_SERVER_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct authz;
struct tls_conn;

/* Process-wide settings every session reads; immutable while sessions run. */
struct mirror_server {
	const char *data_dir;
	const struct authz *allow; /* NULL: any master from the CA may create a volume */
	atomic_bool stopping;	   /* set on SIGTERM/SIGINT: sessions say Goodbye and end */
	int trace_fd;		   /* --trace-tx: a line per applied transaction, or -1 */
	uint64_t heartbeat_timeout_ms; /* a master silent this long is gone */
	bool sparse;		   /* --preallocate=sparse: for volumes created from now on */
};

/*
 * Serves one connection until it ends, then closes c. Runs in the
 * connection's own thread; never takes the process down on peer input.
 */
void mirror_session_run(struct mirror_server *srv, struct tls_conn *c);

#endif
