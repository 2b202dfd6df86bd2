/* Mirror volume store: the data-dir layout, per-volume metadata, extents and journal. */
#ifndef FREP_STORE_H
#define FREP_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "epoch.h"
#include "journal.h"
#include "meta.h"
#include "snapshot.h"
#include "volume.h"
#include "wire.h"

/*
 * Data-dir layout (README "Data directory"):
 *
 *   DIR/.lock               flock: one frep-server per data dir
 *   DIR/NAME/lock           flock: one session per volume
 *   DIR/NAME/meta           owner, uuid, phase, consistent flag and TXID, extent count,
 *                           preallocation mode
 *   DIR/NAME/journal        the mirror's own journal of received transactions
 *   DIR/NAME/extent.0 ...   the extents, same count and sizes as the master's
 *   DIR/NAME/snapshots/     copy-before-write snapshots (snapshot.h)
 *   DIR/NAME/promoted.dirty a forced promotion's restored ranges (epoch.h)
 *   DIR/NAME/diverged       a demoted master's copy: where it changed after the
 *                           shared history (bitmap.h format)
 *   DIR/NAME/extent.N       may be a symlink to a demoted master's own extent
 */
#define STORE_DIVERGED "diverged"
struct mirror_volume {
	char *name;
	char *dir;
	int lock_fd;
	bool exists;		/* metadata present: the volume was created before */
	char owner[256];	/* master identity (certificate CN) pinned at creation */
	uint8_t uuid[FREP_UUID_SIZE];
	uint32_t phase;		/* frep.v1.Phase */
	bool consistent;
	uint64_t consistent_txid;
	/* A full copy pass in progress: bytes below copy_cursor are durable, base TXID. */
	uint64_t copy_cursor;
	uint64_t copy_base;
	bool copy_full;
	unsigned n_extents;
	/*
	 * --preallocate=sparse when the volume was created (persisted; the volume
	 * keeps it): extents start as holes, and each write or zero TX is
	 * allocated before it is acknowledged (store_reserve). Otherwise their
	 * space is reserved at creation and kept (vol.keep_space).
	 */
	bool sparse;

	struct volume vol;	/* open once extents exist */
	bool vol_open;
	struct journal *j;
	uint64_t applied_txid;	/* last TXID applied to the extents */
	struct snapset *snaps;	/* this volume's snapshots, once it exists */
	struct epoch_history epochs; /* this copy's epoch (EPO-1) */
	/*
	 * Promoted (EPO-4): the copy became a primary at epochs.epoch, after
	 * TXID promoted_txid; frep-client (--adopt) owns its extents now, and
	 * frep-server fences every master (FENCED) and never writes them again.
	 */
	bool promoted;
	uint64_t promoted_txid;
	int64_t promoted_ms;
	char promoted_source[64]; /* "journal", or "snapshot pre-resync" */
	bool promoted_forced;
	/* The recovery point a promotion reports: the master's last acknowledged TX and when. */
	uint64_t last_ack_txid;
	int64_t last_ack_ms;
	bool master_sync;	/* the master said --mode sync (Hello.sync_mode) */
	/*
	 * A demoted master's copy (FBK-1, adopt.c): its history left the new
	 * primary's after diverged_txid (unless !diverged_shared: no shared
	 * history known), and DIR/NAME/diverged (a bitmap.h file) says where it
	 * changed since. Cleared once a master of the later epoch starts its pass.
	 */
	bool diverged, diverged_shared;
	uint64_t diverged_txid;
	/*
	 * A forced promotion writing the pre-resync snapshot back (promote.c):
	 * the base is neither the old content nor yet the promoted one, so no
	 * session may attach it (BUSY) until the promotion is run again and ends.
	 * allow_promoting: the promotion's own attach (not persisted).
	 */
	bool promoting, allow_promoting;
	uint64_t promoting_txid;
	/* Snapshot pre-demote is still to be taken, at attach, before any write. */
	bool pre_demote_pending;
	uint64_t pre_demote_txid;
	uint8_t *cmp_buf;	/* a copy pass compares with it while snapshots are alive */
};

/*
 * Reads what is known of volume NAME of data_dir (owner, uuid, phase), without
 * locking it, so a name clash is reported even while the owner is connected.
 * 0 (release with store_close), or -1 with *wire_err and err and nothing held.
 */
int store_open(struct mirror_volume *mv, const char *data_dir, const char *name,
	       uint32_t *wire_err, char *err, size_t err_len);

/*
 * Takes the volume for this session: locks it (FREP_E_BUSY if another session
 * holds it), reloads the metadata and, if the volume exists, opens its extents
 * and journal and replays the journal onto the extents, so applied == durable.
 * 0, or -1 with *wire_err and err.
 */
int store_attach(struct mirror_volume *mv, uint32_t *wire_err, char *err, size_t err_len);

/*
 * MAKEPARTS for a new volume: creates the extents (or validates leftovers from an
 * interrupted creation; *created says which) and the journal, pins owner and uuid.
 * The caller sets mv->sparse first. The journal and the volume's size, or when
 * sparse *allocated (NULL: the master did not say, nothing is checked), must fit
 * the data dir's free space, or FREP_E_NO_SPACE with err saying so.
 */
int store_create(struct mirror_volume *mv, const char *owner, const uint8_t *uuid,
		 const uint64_t *sizes, unsigned n, uint64_t journal_size,
		 const uint64_t *allocated, bool *created, uint32_t *wire_err, char *err,
		 size_t err_len);

/*
 * Sparse volumes: allocates what TX r will write (write and zero; a trim
 * needs nothing) before it is acknowledged (spec DUR-15), so that applying it
 * cannot fail for lack of space. Nothing to do for a preallocated volume.
 * 0, or -1 with errno (ENOSPC, EDQUOT: the disk is full).
 */
int store_reserve(struct mirror_volume *mv, const struct journal_rec *r);

/*
 * Applies one durable journaled transaction to the extents (data: its
 * r->length bytes for JOP_WRITE, unused otherwise), advances applied_txid and
 * traces it (--trace-tx). 0, or -1 with errno.
 */
int store_apply(struct mirror_volume *mv, const struct journal_rec *r, const void *data);

/*
 * A copy pass's write (JOP_WRITE with data) or hole (JOP_TRIM) on the base,
 * saving what snapshots need first. 0, or -1 with errno.
 */
int store_copy_write(struct mirror_volume *mv, uint32_t op, uint64_t off, uint64_t len,
		     const void *data);

/*
 * Saves, for every snapshot, what the batch's TXs will overwrite: one pair of
 * fdatasyncs per snapshot for the batch rather than per TX.
 */
void store_prepare_batch(struct mirror_volume *mv, const struct journal_rec *const *recs,
			 unsigned n);

/* Tells the snapshots (snapshot creation) whether the volume is consistent now. */
void store_publish_consistency(struct mirror_volume *mv);

/* --trace-tx: records replayed from journals are traced there too (fd, or -1). */
void store_set_trace_fd(int fd);

/* Persists owner, uuid, phase, consistent flag and TXID atomically. 0 or -1. */
int store_save(struct mirror_volume *mv);

/* Makes the extents durable and frees journal records already applied. 0 or -1. */
int store_checkpoint(struct mirror_volume *mv);

/*
 * At startup: replays the journal of every volume in data_dir onto its extents
 * and saves its metadata, so a mirror that crashed is consistent on disk
 * before any master connects. Logs each volume. Returns the number that
 * failed (each logged), 0 if all recovered.
 */
int store_recover_all(const char *data_dir);

/*
 * Fail-back: creates volume h->volume of data_dir from a demoted master's
 * handoff (its extents linked, not copied), an OUTOFSYNC copy of epoch
 * h->epochs diverged after h->txid, whose snapshot pre-demote the first
 * attach takes. Built under DIR/.adopt-NAME and renamed into place, so a
 * crash leaves either nothing or the whole volume. 0, or -1 with err.
 */
struct handoff;
int store_adopt(const char *data_dir, const struct handoff *h, char *err, size_t err_len);
/* A promoted volume in words: when, epoch and TXID, who serves it, what a fenced master does. */
void store_describe_promotion(const struct mirror_volume *mv, char *out, size_t len);
/* Checkpoints, saves and releases everything, including the lock. */
void store_close(struct mirror_volume *mv);

#endif
