/*
 * Exports of mirror snapshots over NBD (frepctl export): one nbdkit per
 * export, serving VOLUME@SNAPSHOT read-only through frep-snapshot-plugin.so
 * (server/snapshot-plugin.c). frep-server spawns, watches and ends them; an
 * export is recorded in its snapshot's directory (snapshots/S/export) so that
 * a restarted frep-server serves it again (export_restore).
 */
#ifndef FREP_EXPORT_H
#define FREP_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "admin.h"
#include "status.h"

enum export_limits {
	EXPORT_MAX = 64,	   /* exports per frep-server */
	EXPORT_START_MS = 20000,   /* nbdkit listening, or the export fails (ASan is slow) */
	EXPORT_TERM_MS = 5000,	   /* after SIGTERM, before SIGKILL */
};

/* Where an export listens: --nbd unix:PATH or HOST:PORT. */
struct export_addr {
	bool is_unix;
	char path[108]; /* sun_path */
	char host[256], port[8];
};

#define EXPORT_NBD_FORMS \
	"unix:/ABSOLUTE/PATH (a unix socket) or HOST:PORT (TCP, port 1-65535; [V6]:PORT)"

/* Parses an --nbd address. 0, or -1 with err naming the accepted forms. */
int export_parse_nbd(const char *nbd, struct export_addr *a, char *err, size_t err_len);

/*
 * Starts the manager (its thread reaps the nbdkits and logs their stderr)
 * and hooks snapshot deletion and invalidation (snapset_set_gone_hook), which
 * end the snapshot's export. Before any other call. 0, or -1 with err.
 */
int export_init(const char *data_dir, char *err, size_t err_len);

/*
 * Serves volume@snapshot at nbd and returns once nbdkit listens (at most
 * EXPORT_START_MS), with the export recorded. The caller has checked that
 * the snapshot exists and is valid. Spawns from the calling thread, which
 * must outlive the export (nbdkit --exit-with-parent follows the spawning
 * thread): frep-server's main thread, or the admin thread, which ends only
 * after export_shutdown. 0, or -1 with r (ALREADY_EXISTS: exported already,
 * or the address is another export's; INVALID_ARGUMENT: a bad address;
 * FAILED_PRECONDITION: nbdkit exited first, with its words; UNAVAILABLE:
 * shutting down, or nbdkit did not listen in time).
 */
int export_start(const char *volume, const char *snapshot, const char *nbd,
		 struct admin_reply *r);

/*
 * Ends the export of volume@snapshot: SIGTERM (the plugin cuts its clients),
 * SIGKILL after EXPORT_TERM_MS; returns once nbdkit is reaped, its end logged
 * with why ("export db@s ended: WHY; its NBD clients were disconnected") and
 * its record removed. 0, or -1 if it is not exported.
 */
int export_stop(const char *volume, const char *snapshot, const char *why);

/* Fills the export fields of s if volume@snapshot is exported; false if not. */
bool export_describe(const char *volume, const char *snapshot, struct status_snapshot *s);
/* The exports of volume being served (MirrorStatus.exports). */
uint32_t export_count(const char *volume);

/*
 * At startup, after recovery: serves again every export recorded in the data
 * dir (from the main thread). One that cannot start is logged and forgotten.
 */
void export_restore(void);

/*
 * frep-server stops: ends every export (records kept, so export_restore
 * brings them back), refuses new ones, stops the manager. Call before
 * admin_stop, since nbdkits the admin thread spawned get SIGTERM when it ends.
 */
void export_shutdown(void);

#endif
