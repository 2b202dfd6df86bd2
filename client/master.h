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

struct master_options {
	const char *name;	  /* volume name */
	char **paths;		  /* extent paths, n_paths of them */
	unsigned n_paths;
	const char *journal_path;
	uint64_t journal_size;	  /* 0 = default: max(100 MiB, 10% of the volume) */
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

	pthread_mutex_t write_lock;

	pthread_mutex_t lock;
	pthread_cond_t cond;	/* broadcast on commit, free and stop */
	struct journal *j;
	uint64_t committed_txid; /* last durable TXID; == journal_last_txid(j) */
	uint64_t applied_txid;	 /* last TXID applied to the master volume */
	uint64_t acked_txid;	 /* mirror's cumulative acknowledgement */
	uint64_t committed_bytes; /* data bytes committed, for lag figures */
	uint64_t acked_bytes;
	bool stopping;
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

/* Wakes every waiter (writers blocked on a full buffer, the session). */
void master_stop(struct master *m);

#endif
