/* Online verify on the master (spec "Online verify", VFY-*): compare master and mirror by region hashes, repair what differs. */
#ifndef FREP_CLIENT_VERIFY_H
#define FREP_CLIENT_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "admin.h"
#include "frep/v1/frep.pb-c.h"
#include "fsm.h"
#include "status.h"
#include "wire.h"

struct master;

enum verify_limits {
	/*
	 * Bytes one VERIFY covers: the unit a mismatch names and a repair
	 * rewrites. 1 MiB keeps the per-frame cost (a range lock, a frame each
	 * way, the mirror's batch commit) well under the hashing itself, while
	 * a repair rewrites little more than the damage.
	 */
	VERIFY_REGION = 1 << 20,
	VERIFY_WINDOW = 16,	    /* VERIFYs hashed or sent and not yet answered */
	VERIFY_PROGRESS_MS = 10000, /* progress log line and event */
};

/*
 * The admin API's calls (client/admin-master.c). Each takes m->lock only
 * for bookkeeping.
 *
 * master_verify_start starts a verify of the whole volume in its own thread:
 * 0 and *verify_id, or -1 with r filled: FAILED_PRECONDITION unless the
 * mirror is INSYNC and says it verifies (Welcome.verify), or while a verify
 * runs.
 */
int master_verify_start(struct master *m, bool repair, uint64_t *verify_id, struct admin_reply *r);
/* The running or last verify; verify_id 0 if none since the daemon started. */
void master_verify_status(struct master *m, struct status_verify *out);
/*
 * The last verify and its mismatching regions (*regions malloc'd, the caller
 * frees; NULL when *n is 0). *region_size is VERIFY_REGION. 0, or -1 when
 * out of memory.
 */
int master_verify_result(struct master *m, struct status_verify *st, uint64_t *region_size,
			 struct status_region **regions, size_t *n);

/*
 * The session's side, every one called with m->lock held.
 *
 * verify_due_locked, before the session sends TX next: 1 and *out filled
 * (hash: 16 bytes of the caller's) when a VERIFY is to go now, because the
 * TXID it was hashed at is below next (VFY-3); 0 when none is due; -1 when
 * one is due but still being hashed: send no TX until it is ready (the
 * verify thread then writes m->notify_fd).
 */
int verify_due_locked(struct master *m, uint64_t next, Frep__V1__Verify *out,
		      uint8_t hash[FREP_VERIFY_HASH_SIZE]);
/* A VERIFY_RESULT: 0, or -1 with why when it answers no VERIFY in flight (VFY-5). */
int verify_result_locked(struct master *m, const Frep__V1__VerifyResult *r, char *why,
			 size_t why_len);
/* The session's state: a verify outside INSYNC ends with an outcome naming why (VFY-7). */
void verify_state_locked(struct master *m, enum master_state state);
/* A new connection: nothing is in flight; whether the mirror verifies (Welcome.verify). */
void verify_link_reset_locked(struct master *m, bool mirror_verifies);

/*
 * tests/fuzz, which steps the session in its own thread: true when no verify
 * runs or its thread waits (for results, window room or the rate), so that
 * what it had to hash is queued and ready. Takes m->lock.
 */
bool verify_settled(struct master *m);

/* Ends a running verify with outcome why (a static string); m->lock held. */
void verify_abort_locked(struct master *m, const char *why);
/* Ends a running verify, joins its thread and frees it (master_close); without m->lock. */
void verify_free(struct master *m);

#endif
