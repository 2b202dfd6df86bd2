/*
 * The admin API server (proto/frep/admin/v1/admin.proto) on the gRPC core C
 * API: a 0600 unix socket and optionally TLS with an allow list of admin
 * identities. Everything gRPC lives in common/admin.c; a daemon supplies its
 * volumes through struct admin_ops, whose calls run on the admin thread and
 * must never wait on I/O or hold a replication lock longer than a copy of
 * numbers takes.
 */
#ifndef FREP_ADMIN_H
#define FREP_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "status.h"

/* gRPC status codes the handlers answer with (grpc/status.h values). */
enum admin_code {
	ADMIN_OK = 0,
	ADMIN_INVALID_ARGUMENT = 3,
	ADMIN_NOT_FOUND = 5,
	ADMIN_ALREADY_EXISTS = 6,
	ADMIN_PERMISSION_DENIED = 7,
	ADMIN_RESOURCE_EXHAUSTED = 8,
	ADMIN_FAILED_PRECONDITION = 9,
	ADMIN_UNIMPLEMENTED = 12,
	ADMIN_INTERNAL = 13,
	ADMIN_UNAVAILABLE = 14,
};

/* A command's outcome: code, and a message that names the volume and the reason. */
struct admin_reply {
	enum admin_code code;
	char message[1024];
};

/* Fills r with code and a formatted message; returns -1 (for "return admin_refuse(...)"). */
int admin_refuse(struct admin_reply *r, enum admin_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

struct status_region {
	uint64_t offset, length;
};

/*
 * A daemon's side of the API. ctx is admin_opts.ctx. Every op names a volume;
 * an unknown one is NOT_FOUND. An op left NULL answers FAILED_PRECONDITION
 * (for example the master-only commands on frep-server).
 */
struct admin_ops {
	/*
	 * volume NULL: every volume. Fills *out (malloc'd, freed by the caller)
	 * and *n; returns 0, or -1 with r filled (NOT_FOUND).
	 */
	int (*status)(void *ctx, const char *volume, struct vol_status **out, size_t *n,
		      struct admin_reply *r);
	void (*pause)(void *ctx, const char *volume, struct admin_reply *r);
	void (*resume)(void *ctx, const char *volume, struct admin_reply *r);
	void (*resync)(void *ctx, const char *volume, bool full, struct admin_reply *r);
	void (*set_rate)(void *ctx, const char *volume, uint64_t bytes_per_second,
			 struct admin_reply *r);
	void (*verify)(void *ctx, const char *volume, bool repair, uint64_t *verify_id,
		       struct admin_reply *r);
	/* The last verify: *regions malloc'd (freed by the caller). */
	void (*verify_result)(void *ctx, const char *volume, struct status_verify *st,
			      uint64_t *region_size, struct status_region **regions, size_t *n,
			      struct admin_reply *r);

	/*
	 * Mirror only (frep-client leaves them NULL: FAILED_PRECONDITION naming
	 * frep-server). These may do a little I/O (a snapshot's files, an fsync,
	 * starting or stopping nbdkit): bounded, never waiting on a peer.
	 * name "" in snapshot_create picks a name. Each fills *out with the
	 * snapshot as it is now, or returns -1 with r filled.
	 */
	int (*snapshot_create)(void *ctx, const char *volume, const char *name,
			       struct status_snapshot *out, struct admin_reply *r);
	/* volume NULL: every volume's. *out malloc'd, freed by the caller. */
	int (*snapshot_list)(void *ctx, const char *volume, struct status_snapshot **out, size_t *n,
			     struct admin_reply *r);
	void (*snapshot_delete)(void *ctx, const char *volume, const char *name,
				struct admin_reply *r);
	/* snapshot "": the implicit snapshot of the latest consistent state. */
	int (*export_snapshot)(void *ctx, const char *volume, const char *snapshot, const char *nbd,
			       struct status_snapshot *out, struct admin_reply *r);
	void (*unexport)(void *ctx, const char *volume, const char *snapshot, struct admin_reply *r);
	/*
	 * Fail-over (mirror only): may take seconds (the journal applied, a
	 * connected master fenced and gone, a snapshot restored), never a peer's.
	 */
	void (*promote)(void *ctx, const char *volume, bool force, struct admin_reply *r);
	/*
	 * Fail-back. demote (master): the copy handed over through a handoff file
	 * (its path into handoff), the process ends soon after. adopt (mirror):
	 * the copy taken from a handoff file.
	 */
	void (*demote)(void *ctx, const char *volume, bool force, char *handoff, size_t handoff_len,
		       uint64_t *discard_tx, uint64_t *discard_bytes, struct admin_reply *r);
	void (*adopt)(void *ctx, const char *volume, const char *handoff, struct admin_reply *r);
	/* Switchover (master): as demote, once the mirror's copy took over. */
	void (*switchover)(void *ctx, const char *volume, char *handoff, size_t handoff_len,
			   struct admin_reply *r);
};

struct admin_opts {
	const char *daemon;	  /* "frep-server" or "frep-client": logs and StatusResponse */
	const char *unix_path;	  /* the 0600 socket, or NULL for none */
	const char *listen;	  /* --admin-listen HOST:PORT, or NULL */
	const char *cert, *key, *ca; /* --admin-cert, --admin-key, --admin-ca (with listen) */
	const char *allow;	  /* --admin-allow: one CN per line (with listen) */
	const struct admin_ops *ops;
	void *ctx;
};

/*
 * Checks the options without starting anything (paths, PEM files readable,
 * allow file parses, socket path free): for the daemons' argument checks,
 * which exit 2 on an operator error. 0, or -1 with err.
 */
int admin_check(const struct admin_opts *o, char *err, size_t err_len);

enum { ADMIN_MAX_ALLOW = 256 };

/* The parts of admin_check, for admin.c. */
int admin_check_unix_path(const char *path, char *err, size_t err_len);
/* One CN per line, '#' starts a comment; at least one. 0, or -1 with err. */
int admin_allow_load(const char *path, char (*allow)[STATUS_TEXT_MAX], unsigned max,
		     unsigned *n_allow, char *err, size_t err_len);
/* The whole file, NUL-terminated (gRPC wants PEM strings), or NULL with err. */
char *admin_slurp(const char *what, const char *path, char *err, size_t err_len);

/*
 * Creates admin_run_dir() (0755) if unix_path is directly in it and it is
 * missing: the default sockets' directory. 0, or -1 with err.
 */
int admin_make_run_dir(const char *unix_path, char *err, size_t err_len);

/*
 * Starts the admin thread and its listeners. Call with the quit signals
 * blocked (gRPC's threads inherit the mask) and never fork afterwards.
 * 0, or -1 with err. The bound TCP address is logged.
 */
int admin_start(const struct admin_opts *o, char *err, size_t err_len);

/*
 * Ends every call (watchers get UNAVAILABLE), stops the thread, shuts gRPC
 * down. Bounded: calls stuck on peers that never read are abandoned after a
 * few seconds, and then admin_abandoned() is true and the daemon should
 * leave with _exit once its own state is saved (gRPC's exit handlers would
 * wait for those calls).
 */
void admin_stop(void);
bool admin_abandoned(void);

/*
 * Where the default admin sockets live: /run/frep/server.sock and
 * /run/frep/client-VOLUME.sock (frepctl asks these), or $FREP_RUN_DIR
 * instead of /run/frep (tests, unprivileged runs).
 */
static inline const char *admin_run_dir(void)
{
	const char *d = getenv("FREP_RUN_DIR");
	return d && *d ? d : "/run/frep";
}

#endif
