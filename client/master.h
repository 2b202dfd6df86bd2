/* The master volume at runtime: extents, mirror buffer, transaction path, replication bookkeeping. */
#ifndef FREP_MASTER_H
#define FREP_MASTER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "fsm.h"
#include "journal.h"
#include "volume.h"
#include "wire.h"

/* What a full mirror buffer does (--on-buffer-full). */
enum buffer_full_policy {
	ON_FULL_CRACK, /* drop unacknowledged records into the dirty bitmap: OUTOFSYNC */
	ON_FULL_BLOCK, /* writers wait for space while the mirror is reachable */
};

struct master_options {
	const char *name;	  /* volume name */
	char **paths;		  /* extent paths, n_paths of them */
	unsigned n_paths;
	const char *journal_path;
	uint64_t journal_size;	  /* 0 = default: max(100 MiB, 10% of the volume) */
	enum buffer_full_policy on_full;
	bool sync_mode;		  /* --mode sync: a write returns once the mirror has it */
	bool sync_fail;		  /* --sync-fallback=fail: EIO instead of degrading */
	unsigned degrade_after_s; /* unreachable this long: sync -> async, block -> crack */
	const char *trace_path;	  /* --trace-tx, or NULL */
	int lock_fd;		  /* >= 0: the journal lock, already taken (frep-client takes it
				   * before exec'ing nbdkit); master_open adopts it. -1: take it. */
};

/*
 * Shared between NBD connection threads (writers) and the replication session
 * thread. Locking:
 *   - write_lock orders transactions: a writer holds it from TXID assignment
 *     until its data is applied to the volume, so the volume sees writes in
 *     TXID order (the copy-then-replay argument in spec/protocol.md needs it).
 *   - lock protects the journal and every counter below it; it is never held
 *     across volume I/O, only across journal I/O.
 * Fields above write_lock are immutable after master_open.
 */
struct master {
	char *name;
	struct volume vol;
	char *journal_path;
	char *meta_path;
	uint8_t uuid[FREP_UUID_SIZE];
	uint64_t generation;
	uint32_t max_payload;	/* largest NBD request = largest transaction */
	int lock_fd;		/* flock on JOURNAL.lock: one daemon per journal */
	int notify_fd;		/* eventfd: written after each commit, read by the session */
	int trace_fd;		/* --trace-tx, or -1 */
	enum buffer_full_policy on_full;
	bool sync_mode, sync_fail;
	uint64_t degrade_after_ms;

	pthread_mutex_t write_lock;

	pthread_mutex_t lock;
	pthread_cond_t cond;	/* broadcast on commit, free and stop */
	struct journal *j;
	uint64_t committed_txid; /* last durable TXID; == journal_last_txid(j) */
	uint64_t applied_txid;	 /* last TXID applied to the master volume */
	uint64_t acked_txid;	 /* records the mirror no longer needs from the buffer */
	uint64_t synced_txid;	 /* TXIDs durable on the mirror (TX_ACK, CONSISTENT): sync mode
				  * waits for this, never for a copy base */
	bool stopping;
	uint64_t journal_appends; /* records appended since start (status) */
	uint64_t journal_syncs;	  /* journal fdatasyncs since start (status: group commit) */

	/* Replication status, written by the session thread, read by writers and control. */
	enum master_state state;
	char error[512];	 /* "CODE: message" while in ERROR */
	bool insync;		 /* INSYNC or IDLE: the mirror is reachable and consistent */
	uint64_t unreachable_since_ms; /* when INSYNC was last left, 0 while INSYNC */
	bool degraded;		 /* sync/block policies suspended after degrade_after */

	/*
	 * Dirty-region bitmap beside the journal: regions whose writes the mirror
	 * may lack and the journal no longer holds (after a crack). Protected by lock.
	 */
	struct bitmap *bm;
	uint64_t cracks;	 /* cracks so far; the session compares to notice new ones */

	/* Operator requests (control socket), taken by the session thread. */
	bool pause_req, resume_req, resync_full_req;
};

/*
 * NEW: opens the extents, takes the journal lock, creates or opens the mirror
 * buffer and its metadata (UUID, generation bumped at every start), then redoes
 * every unfreed record onto the volume. Returns 0, or -1 with err filled;
 * *exit_code is 2 for operator errors (bad size, lock held) and 1 otherwise.
 */
int master_open(struct master *m, const struct master_options *o, char *err, size_t err_len,
		int *exit_code);
void master_close(struct master *m);

/*
 * One transaction: assigns the next TXID, commits the record to the journal
 * (durable), applies it to the volume. op is enum journal_op; data is the
 * payload of JOP_WRITE (len bytes). Returns 0 or an errno value for NBD.
 */
int master_submit(struct master *m, unsigned op, uint64_t off, uint32_t len, const void *data);

/*
 * Frees journal records the mirror acknowledged, once the master's own extents
 * holding them are durable (fdatasync of the volume first). Called by the session.
 */
int master_free_acked(struct master *m);

/*
 * Cracks the mirror: durably marks in the bitmap every record the mirror has
 * not acknowledged, then frees every record. Called with lock (and write_lock,
 * so nothing is being applied) held. 0 or -1.
 */
int master_crack_locked(struct master *m);

/*
 * Marks the regions of TXIDs in (after, upto] dirty and makes the bitmap
 * durable: they must be copied because the mirror will not get them as TXs.
 * Called with lock held. 0 or -1.
 */
int master_mark_dirty_locked(struct master *m, uint64_t after, uint64_t upto);

/* Wakes every waiter (writers blocked on a full buffer, the session). */
void master_stop(struct master *m);

#endif
