/*
 * Snapshots of a mirror volume: copy-before-write overlays (README "Reading
 * the mirror", spec Appendix D).
 *
 * A snapshot holds the volume as of TXID t. Before the mirror overwrites a
 * 4 KiB chunk that a snapshot has not saved yet, it copies the chunk's
 * current content (the content at t) into that snapshot's overlay, makes the
 * copy durable, then marks the chunk saved in the snapshot's map, makes the
 * map durable, and only then writes the base. A crash anywhere therefore
 * leaves every chunk either unsaved and untouched in the base, or saved.
 * A reader takes a chunk from the overlay when the map says saved, else from
 * the base.
 *
 * Layout, in the volume's directory (store.h):
 *
 *   snapshots/.rangelock    OFD byte-range locks at volume offsets: readers
 *                           (nbdkit, another process) shared, the writer
 *                           exclusive around each base write, so a reader
 *                           never sees a chunk half-way between base and overlay
 *   snapshots/S/meta        name, kind, TXID, creation time, valid, reason (meta.c)
 *   snapshots/S/map         4 KiB header (magic, valid word), then 1 bit per chunk
 *   snapshots/S/overlay     sparse, the volume's size: a saved chunk sits at its
 *                           own offset; an all-zero chunk is saved as a hole
 *
 * Space: when an overlay cannot grow (ENOSPC, EDQUOT, or any write error),
 * the oldest valid snapshot is invalidated (its readers get EIO from then on,
 * its overlay is freed, it stays listed with the reason until deleted) and
 * the copy is retried. Replication never stops because of a snapshot.
 */
#ifndef FREP_SNAPSHOT_H
#define FREP_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "volume.h"

enum snapshot_limits {
	SNAP_CHUNK = 4096,    /* copy-before-write granularity */
	SNAP_MAX = 16,	      /* snapshots per volume */
	SNAP_NAME_MAX = 64,
};

/* admin.proto Snapshot.Kind */
enum snap_kind {
	SNAP_USER = 1,
	SNAP_PRE_RESYNC = 2, /* taken before an OUTOFSYNC pass, deleted at CONSISTENT */
	SNAP_EXPORT = 3,     /* the implicit snapshot of an export without @SNAPSHOT */
	SNAP_PRE_DEMOTE = 4, /* a demoted master's copy as it was (fail-back), kept until deleted */
};

#define SNAP_PRE_RESYNC_NAME "pre-resync"
#define SNAP_PRE_DEMOTE_NAME "pre-demote"

/* 1-64 of [A-Za-z0-9._-], not starting with '.': the volume-name rule. */
bool snapshot_name_valid(const char *name);

/* --- one volume's snapshots, as frep-server holds them ------------------------ */

/*
 * Shared by the thread of the session that holds the volume and the admin
 * thread: every call below takes the set's mutex (lock order: the set's, then
 * the event ring's). Reference-counted per volume: snapset_get loads it from
 * disk once (creating snapshots/ and its rangelock when missing).
 */
struct snapset;

struct snapset *snapset_get(const char *data_dir, const char *volume, char *err, size_t err_len);
void snapset_put(struct snapset *ss);

/* Any snapshot, valid or not: the writer must copy and lock. */
bool snapset_active(struct snapset *ss);

/*
 * The writer. Before [off, off + len) of base is overwritten by the change of
 * TXID txid (0 for a copy pass, which is newer than every snapshot): saves,
 * durably, every chunk of the range that a valid snapshot older than txid has
 * not saved yet. ranges/n: several at once, one pair of fdatasyncs per
 * snapshot for the lot (a batch of TXs). Never fails: a snapshot that cannot
 * save is invalidated (log, event).
 */
struct snap_range {
	uint64_t off, len, txid;
};
void snapset_cow(struct snapset *ss, const struct volume *base, const struct snap_range *ranges,
		 unsigned n);

/*
 * Every base write goes through here: with the set's mutex held (so no
 * snapshot is created half-way), saves what snapshots need (snapset_cow),
 * takes the exclusive range lock (readers wait), runs io(arg), releases,
 * and records r->txid (if not 0) as the holder's applied TXID. io's result,
 * errno kept.
 */
int snapset_modify(struct snapset *ss, const struct volume *base, const struct snap_range *r,
		   int (*io)(void *arg), void *arg);
/*
 * A journal replay re-applies TXs the snapshots already hold, which moves a
 * chunk back and forth: readers wait for the whole replay. 0, or -1.
 */
int snapset_lock_all(struct snapset *ss);
void snapset_unlock_all(struct snapset *ss);

/*
 * What the holder of the volume says it is: consistent (INSYNC and
 * consistent) at applied_txid, or not. A detached volume has no holder;
 * snapset_create then needs the caller to have attached it.
 */
void snapset_set_holder(struct snapset *ss, bool held, bool consistent, uint64_t applied_txid);
/* 1 and *txid if the holder is consistent, 0 if it is not, -1 if none holds it. */
int snapset_holder_consistent(struct snapset *ss, uint64_t *txid);

/*
 * Creates snapshot name of kind at txid, durably (fsynced files and
 * directories) before returning; the caller guarantees that nothing after
 * txid has reached the base and that nothing will before this returns (it
 * holds the volume, or calls between two applies of its own thread).
 * 0 with *out filled, or -1 with err (EEXIST: the name is taken; ENOSPC, EMFILE:
 * SNAP_MAX reached).
 */
int snapset_create(struct snapset *ss, const char *name, enum snap_kind kind, uint64_t txid,
		   struct status_snapshot *out, char *err, size_t err_len);
/*
 * The same at the holder's TXID, atomically with its applies: -1 with errno
 * ENXIO if no session holds the volume (attach it and retry), EAGAIN with
 * err if it is inconsistent, or as snapset_create.
 */
int snapset_create_now(struct snapset *ss, const char *name, enum snap_kind kind,
		       struct status_snapshot *out, char *err, size_t err_len);
/* Removes it (its exports are told first: snapset_set_gone_hook). 0, or -1 (ENOENT). */
int snapset_delete(struct snapset *ss, const char *name, char *err, size_t err_len);
bool snapset_exists(struct snapset *ss, const char *name);
/* Every snapshot, oldest first: *out malloc'd. 0, or -1 with errno. */
int snapset_list(struct snapset *ss, struct status_snapshot **out, size_t *n);
/* Adds the set's count, space and invalid count to a mirror status. */
void snapset_status(struct snapset *ss, struct status_mirror *m);
/* Invalidates every snapshot but except (NULL: all), with the reason why. */
void snapset_invalidate_all(struct snapset *ss, const char *why, const char *except);
/*
 * Writes the chunks snapshot name saved back into base, durably, so base
 * holds the volume as of the snapshot's TXID (*txid); restored(ctx, off, len)
 * hears of each (may be NULL). Other snapshots are not told: invalidate them
 * first. 0, or -1 with err.
 */
int snapset_restore(struct snapset *ss, const char *name, const struct volume *base,
		    uint64_t *txid, int (*restored)(void *ctx, uint64_t off, uint64_t len),
		    void *ctx, char *err, size_t err_len);
/* The name of the snapshot of kind (the first), into name; false if none. */
bool snapset_find_kind(struct snapset *ss, enum snap_kind kind, char *name, size_t len);

/*
 * Frees space for the mirror itself (a thin volume's allocation before an
 * acknowledgement): invalidates the oldest valid snapshot. false if there
 * was none.
 */
bool snapset_reclaim(struct snapset *ss, const char *why);

/*
 * Called (with the set's mutex held, so it must not call back into the set)
 * when a snapshot is deleted or invalidated, before its files go: the export
 * manager stops the snapshot's nbdkit there. One hook per process.
 */
void snapset_set_gone_hook(void (*gone)(const char *volume, const char *snapshot,
					const char *why));

/* --- a reader of one snapshot (the export's nbdkit plugin) -------------------- */

struct snap_reader;

/*
 * Opens snapshot name of the volume in voldir (DATA_DIR/VOLUME) read-only:
 * the base extents, the overlay, the map. NULL with err if it does not exist
 * or is invalid.
 */
struct snap_reader *snap_reader_open(const char *voldir, const char *name, char *err,
				     size_t err_len);
uint64_t snap_reader_size(const struct snap_reader *r);
uint64_t snap_reader_txid(const struct snap_reader *r);
/*
 * Reads [off, off + len) as of the snapshot's TXID, under a shared range
 * lock. Safe from several threads at once. 0, or -1 with errno (EIO once the
 * snapshot has been invalidated, EINVAL out of range).
 */
int snap_reader_pread(struct snap_reader *r, void *buf, uint64_t len, uint64_t off);
/*
 * Reports [off, off + len) as runs of data and holes, in order, through add
 * (which returns 0 to go on, -1 to stop with an error). 0, or -1 with errno.
 */
int snap_reader_extents(struct snap_reader *r, uint64_t off, uint64_t len,
			int (*add)(void *ctx, uint64_t off, uint64_t len, bool hole), void *ctx);
void snap_reader_close(struct snap_reader *r);

#endif
