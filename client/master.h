/* The master volume at runtime: extents, mirror buffer, transaction path, replication bookkeeping. */
#ifndef FREP_MASTER_H
#define FREP_MASTER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "fsm.h"
#include "epoch.h"
#include "journal.h"
#include "status.h"
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
	uint64_t max_rate;	  /* --max-rate; a rate the operator set (SetRate) overrides it */
	int lock_fd;		  /* >= 0: the journal lock, already taken (frep-client takes it
				   * before exec'ing nbdkit); master_open adopts it. -1: take it. */
	const char *adopt;	  /* --adopt DIR: a promoted mirror copy (adopt.h), or NULL */
	bool fenced_serve;	  /* --on-fenced=serve */
};

/*
 * FREP_FUZZ_SIZES (tests/fuzz only): buffers scaled to the fuzz harness's
 * 1 MiB volume and journal. ASan poisons the shadow of a whole allocation
 * when it is made and freed, which for the full sizes costs more than the
 * rest of a run; at these sizes the harness also reaches the paths the full
 * ones keep for big volumes (a full send cache or send window, a copy in
 * several chunks, too many dirty runs). session-internal.h scales the rest.
 */
#ifdef FREP_FUZZ_SIZES
#define FREP_SEND_CACHE_BYTES (256 << 10)
#else
#define FREP_SEND_CACHE_BYTES (4 << 20)
#endif

enum {
	/* Transactions between TXID reservation and their apply: the pipeline's window. */
	MASTER_INFLIGHT = 1024,
	/*
	 * Bytes of freshly committed data the sender may take from memory instead
	 * of reading the journal back: about the pipeline's window of 4 KiB
	 * writes, and small next to the journal, so memory stays flat.
	 */
	SEND_CACHE_BYTES = FREP_SEND_CACHE_BYTES,
	FULL_WARN_MS = 10000, /* "writers wait for the mirror" at most this often */
	/*
	 * Group commits remembered for lag_seconds (the age of the oldest
	 * unacknowledged commit). When more are unacknowledged, the newest entry
	 * absorbs the rest: the age of the oldest stays exact, later ones read
	 * older than they are, never younger.
	 */
	COMMIT_TIMES = 4096,
};

/*
 * One transaction in the pipeline, in slot txid % MASTER_INFLIGHT; the slot
 * also serves the send cache until TXID txid + MASTER_INFLIGHT takes it.
 */
struct inflight {
	struct journal_rec r;
	bool written;	      /* its journal_write returned */
	bool applied;	      /* on the master volume, or given up (the journal failed) */
	bool cached;	      /* its data is in the send cache, at cache_pos */
	uint64_t cache_start; /* the cache's head when it was reserved */
	uint64_t cache_pos;
};

/*
 * The send cache: a ring of write data in TXID order. A writer copies its data
 * in when there is room (never waiting for it); the session sends from it and
 * then releases what it sent. Positions only grow; ring offset = pos %
 * SEND_CACHE_BYTES, and an entry never wraps. Bytes in [tail, head) are not
 * overwritten. Protected by master.lock, except the bytes of an entry, which
 * its writer fills before its commit and the session reads after it; so
 * only committed TXIDs are ever released (tail never passes a pending copy).
 */
struct send_cache {
	unsigned char *buf;
	uint64_t head, tail;
	uint64_t released_txid; /* entries up to this TXID are released */
	/* Each TXID's entry is its struct inflight slot (cached, cache_start, cache_pos). */
};

/*
 * Shared between NBD threads (writers) and the replication session thread.
 *
 * Locking: `lock` protects the journal's index and every field below it. It is
 * held only for bookkeeping, never across volume, journal-data or network I/O:
 * a writer reserves its TXID and ring space under it, writes the record and
 * fdatasyncs and applies without it (master_submit explains the pipeline).
 * The one exception is a crack (a full buffer), which marks and syncs the
 * dirty bitmap under it.
 *
 * Fields above `lock` are immutable after master_open.
 */
struct master {
	char *name;
	struct volume vol;
	char *journal_path;
	char *meta_path;
	uint8_t uuid[FREP_UUID_SIZE];
	uint64_t generation;
	uint32_t max_payload;	/* largest transaction; larger requests are split */
	int lock_fd;		/* flock on JOURNAL.lock: one daemon per journal */
	int notify_fd;		/* eventfd: written after each group commit, read by the session */
	int trace_fd;		/* --trace-tx, or -1 */
	enum buffer_full_policy on_full;
	bool sync_mode, sync_fail;
	uint64_t degrade_after_ms;
	struct epoch_history epochs; /* this master's epoch (EPO-1), from its .meta */
	bool fenced_serve;	/* --on-fenced=serve */

	pthread_mutex_t lock;
	pthread_cond_t cond;	  /* broadcast on mirror progress, free, crack and stop */
	/*
	 * The pipeline's waits, apart so that an event wakes only whom it
	 * concerns: with sixteen writers, one broadcast per step of each write
	 * cost more context switches than the writes themselves.
	 */
	pthread_cond_t commit_cond; /* a group commit ended, or the written prefix grew */
	pthread_cond_t apply_cond;  /* applied_txid grew, or a crack ended */
	unsigned prefix_waiters;    /* writers waiting for the written prefix to reach them */
	unsigned apply_waiters;	    /* threads waiting on apply_cond */
	struct journal *j;	  /* journal_last_txid(j) is the last TXID reserved */

	/* The pipeline. TXIDs <= applied_txid <= committed_txid <= written_txid <= last reserved. */
	struct inflight *slots;	 /* MASTER_INFLIGHT of them */
	uint64_t written_txid;	 /* every TXID up to here is written (not yet durable) */
	uint64_t committed_txid; /* every TXID up to here is durable in the journal */
	uint64_t applied_txid;	 /* every TXID up to here is on the master volume */
	bool syncing;		 /* a writer runs the group's fdatasync */
	bool cracking;		 /* a crack waits for in-flight applies: no reservations */
	bool freeing;		 /* a free of acknowledged records syncs the volume */
	int journal_failed;	 /* errno of a failed journal write or fdatasync; every write
				  * fails with EIO from then on (the page cache cannot be trusted) */

	uint64_t acked_txid;	 /* records the mirror no longer needs from the buffer */
	uint64_t synced_txid;	 /* TXIDs durable on the mirror (TX_ACK, CONSISTENT): sync mode
				  * waits for this, never for a copy base */
	struct send_cache cache;
	bool stopping;
	uint64_t journal_appends; /* records appended since start (status) */
	uint64_t journal_syncs;	  /* journal fdatasyncs since start (status: group commit) */

	/* Replication status, written by the session thread, read by writers and the admin API. */
	enum master_state state; /* the FSM's, set as it changes (fsm_observer) */
	char journal_damage[1024]; /* set at open when a committed record was damaged:
				    * the session starts in ERROR with it */
	bool insync;		 /* INSYNC or IDLE: the mirror is reachable and consistent */
	uint64_t unreachable_since_ms; /* when INSYNC was last left, 0 while INSYNC */
	bool degraded;		 /* sync/block policies suspended after degrade_after */

	/*
	 * Dirty-region bitmap beside the journal: regions whose writes the mirror
	 * may lack and the journal no longer holds (after a crack). Protected by lock.
	 */
	struct bitmap *bm;
	/*
	 * An adopted primary (--adopt) until its fail-back is done (FBK-5):
	 * every region written since the promotion's TXID whose record left the
	 * journal (freed once acknowledged, or cracked), beside the journal as
	 * PATH.since. A mirror that is a fresh copy clears the dirty bitmap as
	 * it acknowledges; this one stays, so the old master's copy, demoted
	 * later, still gets exactly what changed. NULL once fail-back is done.
	 */
	struct bitmap *since;
	uint64_t since_txid;
	bool failback;		 /* PATH.meta: a fail-back is still to be done (failback=1) */
	uint64_t cracks;	 /* cracks so far; the session compares to notice new ones */
	uint64_t cracked_bytes;	 /* buffer bytes cracks dropped unacknowledged (rates) */
	uint64_t full_waits;	 /* times a writer waited for room (block policy) */
	uint64_t full_warned_ms; /* when that was last logged */

	/* Published by the session each second (status): bytes/s, and whether writes outrun the link. */
	uint64_t dirty_rate, drain_rate;
	bool outrun;

	/*
	 * Online verify (client/verify.c), NULL until the first connection. Its
	 * range lock: while range_locked, no new transaction overlapping
	 * [range_off, range_off + range_len) is reserved, except the holder's own
	 * (master_submit_in_range).
	 */
	struct verify *verify;
	bool range_locked;
	uint64_t range_off, range_len;

	/*
	 * Operator settings (admin API), taken by the session thread. paused and
	 * an operator's max_rate persist in the .meta beside the journal
	 * (master_save_settings): a pause holds across reconnects and restarts
	 * until resumed, IDLE whenever the mirror is in sync.
	 */
	bool paused, resync_full_req;
	bool rate_set_by_operator;

	/*
	 * Fenced (EPO-3): a promotion elsewhere began epoch fenced.epoch after
	 * TXID fenced.txid. Persisted in the .meta (master_fence); local writes
	 * get EROFS from then on unless fenced_serve.
	 */
	struct status_fenced fenced;
	bool demoted;		 /* frepctl demote handed the copy over: no write, ever (demote.c) */
	/*
	 * A planned switchover (frepctl switchover, SWO-1): writes stop, and once
	 * the mirror acknowledged switch_txid the session sends SWITCHOVER; its
	 * SWITCHOVER_DONE sets switch_epoch (the primary's new epoch).
	 */
	enum { SWITCH_NONE, SWITCH_ASKED, SWITCH_SENT, SWITCH_DONE, SWITCH_FAILED } switch_state;
	bool switching, switch_sent;
	uint64_t switch_txid, switch_epoch;

	/* Published by the session for the admin API's Status. */
	int64_t state_since_unix_ms;
	struct status_error last_error;
	struct status_peer peer;
	struct status_progress copy;
	bool copy_full;
	struct {
		uint64_t txid;	 /* every TXID up to this one was committed by then */
		int64_t unix_ms;
	} commit_times[COMMIT_TIMES];
	unsigned commit_times_first, commit_times_n;

	/*
	 * Bytes/s for bulk copies and verify, 0 = unlimited: --max-rate, or the
	 * operator's SetRate. Atomic: the session reads it between chunks.
	 */
	_Atomic uint64_t max_rate;
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
 * (durable; concurrent callers share fdatasyncs), applies it to the volume
 * (after every overlapping transaction with a lower TXID), and in sync mode
 * waits for the mirror. op is enum journal_op; data is the payload of
 * JOP_WRITE (len <= max_payload bytes). Thread-safe. Returns 0 or an errno
 * value for NBD.
 */
int master_submit(struct master *m, unsigned op, uint64_t off, uint32_t len, const void *data);

/*
 * Error FENCED from the mirror (EPO-3): records the promotion that fenced
 * this master, durably in its .meta, so that it stays fenced across
 * restarts; from then on local writes get EROFS unless --on-fenced=serve.
 */
void master_fence(struct master *m, uint64_t epoch, uint64_t txid, int64_t unix_ms,
		  const char *message);
/*
 * Fail-back (FBK-5): marks in the dirty bitmap, durably, what this copy
 * changed since TXID t: its journal's records and, for an adopted primary,
 * the regions of records it no longer holds. Every region when it cannot
 * tell (returns 1 then, 0 otherwise, -1 on error). Called with m->lock held.
 */
int master_mark_since_locked(struct master *m, uint64_t t);
/* The fail-back pass reached CONSISTENT: PATH.since is no longer needed. */
void master_failback_done(struct master *m);
/* Records in the .meta that the copy was handed over: a restart refuses to serve it. 0 or -1. */
int master_save_demoted(struct master *m, char *err, size_t err_len);

/*
 * master_submit for the holder of the range lock, inside its range: passes
 * the lock it holds. Called without m->lock.
 */
int master_submit_in_range(struct master *m, unsigned op, uint64_t off, uint32_t len,
			   const void *data);

/*
 * The range lock of online verify (spec VFY-3): holds off every new
 * transaction overlapping [off, off + len) and waits until those already
 * reserved are applied. The range on the volume is then its value after
 * every TXID up to the one returned (the committed TXID: every overlapping
 * transaction is applied, hence committed), and stays so until
 * master_range_unlock_locked; writers elsewhere go on. One range at a time;
 * both called with lock held.
 */
uint64_t master_range_lock_locked(struct master *m, uint64_t off, uint64_t len);
void master_range_unlock_locked(struct master *m);

/*
 * Frees journal records the mirror acknowledged, once the master's own extents
 * holding them are durable (fdatasync of the volume first, without the lock).
 * The session calls it regularly; a writer that finds the journal full calls
 * it too, before it would crack or wait.
 */
int master_free_acked(struct master *m);

/*
 * Waits until every committed TXID is applied to the volume and returns that
 * TXID: a copy pass's base (a block read after this holds every write up to
 * it). Called with lock held; returns with it held.
 */
/*
 * Waits until every TX reserved so far (not only the committed ones) is
 * applied; callers first stop new reservations (demote, switchover).
 * Returns the last TXID. Called with m->lock held.
 */
uint64_t master_quiesce_all_locked(struct master *m);
uint64_t master_quiesce_locked(struct master *m);

/*
 * Marks the regions of TXIDs in (after, upto] dirty and makes the bitmap
 * durable: they must be copied because the mirror will not get them as TXs.
 * Reads only the journal's in-memory index. Called with lock held. 0 or -1.
 */
int master_mark_dirty_locked(struct master *m, uint64_t after, uint64_t upto);

/*
 * The session's use of the send cache, under lock. master_cached_locked
 * returns the record of txid and points *data at its bytes (NULL for TRIM and
 * ZERO), or false when it is not cached (read the journal). The bytes stay
 * valid until master_release_cached_locked(upto >= txid).
 * master_release_cached_locked releases every TXID up to upto, which must be
 * committed: the session calls it for what it sent, and with a copy pass's
 * base (those TXIDs are never sent).
 */
bool master_cached_locked(struct master *m, uint64_t txid, struct journal_rec *r,
			  const void **data);
void master_release_cached_locked(struct master *m, uint64_t upto);

/* Wakes the session thread (it polls notify_fd): a commit, or a VERIFY ready to send. */
void master_notify_session(struct master *m);

/*
 * Persists the operator's settings (paused, and max_rate if the operator set
 * it) in the .meta, atomically. Called by the admin thread without the lock.
 * 0, or -1 with err.
 */
int master_save_settings(struct master *m, bool paused, bool rate_set, uint64_t max_rate,
			 char *err, size_t err_len);

/*
 * Age in seconds of the oldest committed transaction the mirror has not
 * acknowledged (0 if none): what an asynchronous failover would lose now.
 * Called with lock held.
 */
double master_lag_seconds_locked(struct master *m);

/* Wakes every waiter (writers blocked on a full buffer, the session). */
void master_stop(struct master *m);

#endif
