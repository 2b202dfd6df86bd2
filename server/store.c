/* Mirror volume store: the data-dir layout, per-volume metadata, extents and journal. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "frep/v1/frep.pb-c.h"
#include "log.h"
#include "handoff.h"
#include "store.h"
#include "util.h"

enum {
	/* Twice the largest TX (FREP_MAX_TRAILER), so that any legal TX fits beside another. */
	MIRROR_JOURNAL_MIN = 64 << 20,
	MIRROR_JOURNAL_MAX = 1u << 30,
};

static int trace_fd = -1;

void store_set_trace_fd(int fd)
{
	trace_fd = fd;
}

static int path_in(char *out, size_t len, const struct mirror_volume *mv, const char *leaf)
{
	if (snprintf(out, len, "%s/%s", mv->dir, leaf) >= (int)len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int open_extents(struct mirror_volume *mv, char *err, size_t err_len)
{
	char *paths[FREP_MAX_EXTENTS] = { 0 };
	int rc = -1;
	unsigned i;

	for (i = 0; i < mv->n_extents; i++) {
		char leaf[32];
		snprintf(leaf, sizeof(leaf), "extent.%u", i);
		paths[i] = malloc(4096);
		if (!paths[i] || path_in(paths[i], 4096, mv, leaf) < 0) {
			i++;
			goto out;
		}
	}
	if (volume_open(&mv->vol, mv->name, paths, mv->n_extents, err, err_len) < 0)
		goto out;
	mv->vol.keep_space = !mv->sparse;
	mv->vol_open = true;
	rc = 0;
out:
	while (i-- > 0)
		free(paths[i]);
	return rc;
}

struct base_write {
	const struct volume *vol;
	uint32_t op;
	uint64_t off, len;
	const void *data;
};

static int do_base_write(void *arg)
{
	const struct base_write *w = arg;
	return w->op == JOP_WRITE ? volume_pwrite(w->vol, w->data, w->len, w->off) :
	       w->op == JOP_TRIM  ? volume_punch(w->vol, w->off, w->len) :
				    volume_zero(w->vol, w->off, w->len);
}

/* The one way the base changes: through the snapshots' copy-before-write when there are any. */
static int base_write(struct mirror_volume *mv, uint32_t op, uint64_t off, uint64_t len,
		      const void *data, uint64_t txid)
{
	struct base_write w = { &mv->vol, op, off, len, data };
	if (!mv->snaps)
		return do_base_write(&w);
	struct snap_range r = { off, len, txid };
	return snapset_modify(mv->snaps, &mv->vol, &r, do_base_write, &w);
}

enum { COPY_CMP_BUF = 1 << 20 };

/*
 * A copy pass rewrites regions the mirror mostly holds already (a full resync:
 * all of them). With snapshots alive, only chunks that differ are written, so
 * that a snapshot saves what changed rather than the whole pass: otherwise the
 * pre-resync snapshot of a full resync would need the volume's size again.
 */
static int copy_changed(struct mirror_volume *mv, uint64_t off, uint64_t len, const uint8_t *data)
{
	if (!mv->cmp_buf && !(mv->cmp_buf = malloc(COPY_CMP_BUF)))
		return base_write(mv, JOP_WRITE, off, len, data, 0);
	for (uint64_t done = 0; done < len;) {
		uint64_t n = len - done < COPY_CMP_BUF ? len - done : COPY_CMP_BUF;
		if (volume_pread(&mv->vol, mv->cmp_buf, n, off + done) < 0)
			return -1;
		/* Runs of differing chunks, each written once. */
		for (uint64_t k = 0; k < n;) {
			uint64_t piece = n - k < SNAP_CHUNK ? n - k : SNAP_CHUNK;
			if (memcmp(mv->cmp_buf + k, data + done + k, piece) == 0) {
				k += piece;
				continue;
			}
			uint64_t end = k + piece;
			while (end < n) {
				uint64_t p = n - end < SNAP_CHUNK ? n - end : SNAP_CHUNK;
				if (memcmp(mv->cmp_buf + end, data + done + end, p) == 0)
					break;
				end += p;
			}
			if (base_write(mv, JOP_WRITE, off + done + k, end - k, data + done + k, 0) < 0)
				return -1;
			k = end;
		}
		done += n;
	}
	return 0;
}

int store_copy_write(struct mirror_volume *mv, uint32_t op, uint64_t off, uint64_t len,
		     const void *data)
{
	if (mv->snaps && snapset_active(mv->snaps)) {
		if (op == JOP_WRITE)
			return copy_changed(mv, off, len, data);
		/* A hole where the mirror holds no data already changes nothing. */
		uint64_t d, de;
		int found = volume_next_data(&mv->vol, off, &d, &de);
		if (found == 0 || (found == 1 && d >= off + len))
			return 0;
	}
	return base_write(mv, op, off, len, data, 0); /* newer than every snapshot */
}

void store_prepare_batch(struct mirror_volume *mv, const struct journal_rec *const *recs,
			 unsigned n)
{
	struct snap_range ranges[256];
	if (!mv->snaps || !snapset_active(mv->snaps))
		return;
	for (unsigned done = 0; done < n;) {
		unsigned k = 0;
		for (; k < 256 && done + k < n; k++)
			ranges[k] = (struct snap_range){ recs[done + k]->offset, recs[done + k]->length,
							 recs[done + k]->txid };
		snapset_cow(mv->snaps, &mv->vol, ranges, k);
		done += k;
	}
}

void store_publish_consistency(struct mirror_volume *mv)
{
	if (mv->snaps)
		snapset_set_holder(mv->snaps, true,
				   mv->consistent && mv->phase == FREP__V1__PHASE__PHASE_INSYNC,
				   mv->applied_txid);
}

/* Attaches the volume's snapshots: from then on every base write saves what they need. */
static int open_snapshots(struct mirror_volume *mv, char *err, size_t err_len)
{
	char *slash = strrchr(mv->dir, '/');
	char data_dir[4096];
	snprintf(data_dir, sizeof(data_dir), "%.*s", slash ? (int)(slash - mv->dir) : 1,
		 slash ? mv->dir : ".");
	mv->snaps = snapset_get(data_dir, mv->name, err, err_len);
	return mv->snaps ? 0 : -1;
}

int store_apply(struct mirror_volume *mv, const struct journal_rec *r, const void *data)
{
	if (base_write(mv, r->op, r->offset, r->length, data, r->txid) < 0)
		return -1;
	mv->applied_txid = r->txid;
	if (trace_fd >= 0) {
		/* One write per line: a crash right after an apply leaves its line whole. */
		char line[256];
		int n = snprintf(line, sizeof(line), "volume=%s ", mv->name);
		n += journal_rec_format(r, line + n, sizeof(line) - (size_t)n);
		if (write(trace_fd, line, (size_t)n) != n)
			log_warn(mv->name, "--trace-tx: %s", strerror(errno));
	}
	return 0;
}

/*
 * Gives space back before the mirror answers NO_SPACE: true if some was
 * freed, and allocating again may succeed.
 */
static bool store_reclaim_space(struct mirror_volume *mv)
{
	/* Replication before snapshots: the oldest one goes first. */
	return mv->snaps && snapset_reclaim(mv->snaps, "no space left for the mirror's own writes: "
					    "snapshots give way to replication");
}

int store_reserve(struct mirror_volume *mv, const struct journal_rec *r)
{
	if (!mv->sparse || r->op == JOP_TRIM)
		return 0;
	for (;;) {
		if (volume_allocate(&mv->vol, r->offset, r->length) == 0)
			return 0;
		int e = errno;
		if ((e != ENOSPC && e != EDQUOT) || !store_reclaim_space(mv)) {
			errno = e;
			return -1;
		}
	}
}

/*
 * Replays the journal onto the extents: after a crash they may lack its tail.
 * The only place the mirror reads its journal back; sessions apply from memory.
 */
static int replay_journal(struct mirror_volume *mv, char *err, size_t err_len)
{
	uint64_t first = journal_first_txid(mv->j), last = journal_last_txid(mv->j);
	uint64_t cap = journal_max_record_data(mv->j);
	void *buf = NULL;
	int rc = -1;

	/* Records below first were freed only once applied; store_apply advances it. */
	mv->applied_txid = first - 1;
	if (first > last)
		return 0;
	if (!(buf = malloc(cap))) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	/* Snapshot readers wait: TXs a snapshot holds are re-applied, moving chunks back and forth. */
	if (snapset_lock_all(mv->snaps) < 0) {
		snprintf(err, err_len, "journal replay: locking the snapshots' readers out: %s",
			 strerror(errno));
		free(buf);
		return -1;
	}
	for (uint64_t t = first; t <= last; t++) {
		struct journal_rec r;
		if (journal_read(mv->j, t, &r, buf, cap) < 0) {
			snprintf(err, err_len, "journal replay: TXID %" PRIu64 ": %s", t, strerror(errno));
			goto out;
		}
		if (store_apply(mv, &r, buf) < 0) {
			snprintf(err, err_len, "journal replay: applying TXID %" PRIu64 ": %s", t,
				 strerror(errno));
			goto out;
		}
	}
	log_info(mv->name, "journal replay: re-applied TXIDs %" PRIu64 "..%" PRIu64, first, last);
	rc = store_checkpoint(mv);
	if (rc < 0)
		snprintf(err, err_len, "journal replay: checkpoint: %s", strerror(errno));
out:
	snapset_unlock_all(mv->snaps);
	free(buf);
	return rc;
}

static int load_meta(struct mirror_volume *mv, char *err, size_t err_len)
{
	char path[4096];
	struct meta md;
	uint64_t v, n;

	if (path_in(path, sizeof(path), mv, "meta") < 0)
		return -1;
	if (meta_load(path, &md) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return -1;
	}
	const char *owner = meta_get(&md, "owner"), *uuid = meta_get(&md, "uuid");
	if (!owner || !uuid || hex_decode(uuid, mv->uuid, sizeof(mv->uuid)) < 0 ||
	    meta_get_u64(&md, "extents", &n) < 0 || n == 0 || n > FREP_MAX_EXTENTS ||
	    meta_get_u64(&md, "phase", &v) < 0) {
		snprintf(err, err_len, "%s: incomplete metadata", path);
		return -1;
	}
	snprintf(mv->owner, sizeof(mv->owner), "%s", owner);
	mv->phase = (uint32_t)v;
	mv->consistent = meta_get_u64(&md, "consistent", &v) == 0 && v == 1;
	if (meta_get_u64(&md, "consistent_txid", &mv->consistent_txid) < 0)
		mv->consistent_txid = 0;
	if (meta_get_u64(&md, "copy_cursor", &mv->copy_cursor) < 0)
		mv->copy_cursor = 0;
	if (meta_get_u64(&md, "copy_base", &mv->copy_base) < 0)
		mv->copy_base = 0;
	mv->copy_full = meta_get_u64(&md, "copy_full", &v) == 0 && v == 1;
	/* Volumes from before --preallocate were all created with their space reserved. */
	const char *pre = meta_get(&md, "preallocate");
	mv->sparse = pre && strcmp(pre, "sparse") == 0;
	if (epoch_load(&mv->epochs, &md) < 0) {
		snprintf(err, err_len, "%s: epoch_history is malformed", path);
		errno = EBADMSG;
		return -1;
	}
	mv->promoted = meta_get_u64(&md, "promoted", &v) == 0 && v == 1;
	mv->promoted_txid = meta_get_u64(&md, "promoted_txid", &v) == 0 ? v : 0;
	mv->promoted_ms = meta_get_u64(&md, "promoted_ms", &v) == 0 ? (int64_t)v : 0;
	snprintf(mv->promoted_source, sizeof(mv->promoted_source), "%s",
		 meta_get(&md, "promoted_source") ? meta_get(&md, "promoted_source") : "");
	mv->promoted_forced = meta_get_u64(&md, "promoted_forced", &v) == 0 && v == 1;
	mv->last_ack_txid = meta_get_u64(&md, "last_ack_txid", &v) == 0 ? v : 0;
	mv->last_ack_ms = meta_get_u64(&md, "last_ack_ms", &v) == 0 ? (int64_t)v : 0;
	mv->master_sync = meta_get_u64(&md, "master_sync", &v) == 0 && v == 1;
	mv->diverged = meta_get_u64(&md, "diverged", &v) == 0 && v == 1;
	mv->diverged_shared = meta_get_u64(&md, "diverged_shared", &v) == 0 && v == 1;
	mv->diverged_txid = meta_get_u64(&md, "diverged_txid", &v) == 0 ? v : 0;
	mv->pre_demote_pending = meta_get_u64(&md, "pre_demote_pending", &v) == 0 && v == 1;
	mv->promoting = meta_get_u64(&md, "promoting", &v) == 0 && v == 1;
	mv->promoting_txid = meta_get_u64(&md, "promoting_txid", &v) == 0 ? v : 0;
	mv->pre_demote_txid = meta_get_u64(&md, "pre_demote_txid", &v) == 0 ? v : 0;
	/* Extent sizes are the files' own; MAKEPARTS compares them with the master's. */
	mv->n_extents = (unsigned)n;
	mv->exists = true;
	return 0;
}

int store_save(struct mirror_volume *mv)
{
	char path[4096], hex[2 * FREP_UUID_SIZE + 1];
	struct meta md;

	meta_init(&md);
	meta_set(&md, "format", "frep-mirror-1");
	meta_set(&md, "volume", mv->name);
	meta_set(&md, "owner", mv->owner);
	meta_set(&md, "uuid", hex_encode(mv->uuid, sizeof(mv->uuid), hex));
	meta_set_u64(&md, "phase", mv->phase);
	meta_set_u64(&md, "consistent", mv->consistent);
	meta_set_u64(&md, "consistent_txid", mv->consistent_txid);
	meta_set_u64(&md, "applied_txid", mv->applied_txid);
	meta_set_u64(&md, "copy_cursor", mv->copy_cursor);
	meta_set_u64(&md, "copy_base", mv->copy_base);
	meta_set_u64(&md, "copy_full", mv->copy_full);
	meta_set_u64(&md, "extents", mv->n_extents);
	meta_set(&md, "preallocate", mv->sparse ? "sparse" : "full");
	meta_set_u64(&md, "last_ack_txid", mv->last_ack_txid);
	meta_set_u64(&md, "last_ack_ms", (uint64_t)mv->last_ack_ms);
	meta_set_u64(&md, "master_sync", mv->master_sync);
	if (mv->diverged) {
		meta_set_u64(&md, "diverged", 1);
		meta_set_u64(&md, "diverged_shared", mv->diverged_shared);
		meta_set_u64(&md, "diverged_txid", mv->diverged_txid);
	}
	if (mv->promoting) {
		meta_set_u64(&md, "promoting", 1);
		meta_set_u64(&md, "promoting_txid", mv->promoting_txid);
	}
	if (mv->pre_demote_pending) {
		meta_set_u64(&md, "pre_demote_pending", 1);
		meta_set_u64(&md, "pre_demote_txid", mv->pre_demote_txid);
	}
	if (epoch_save(&mv->epochs, &md) < 0) {
		errno = E2BIG;
		log_error(mv->name, "saving its epoch history: too long");
		return -1;
	}
	if (mv->promoted) {
		meta_set_u64(&md, "promoted", 1);
		meta_set_u64(&md, "promoted_txid", mv->promoted_txid);
		meta_set_u64(&md, "promoted_ms", (uint64_t)mv->promoted_ms);
		meta_set(&md, "promoted_source", mv->promoted_source);
		meta_set_u64(&md, "promoted_forced", mv->promoted_forced);
	}
	if (path_in(path, sizeof(path), mv, "meta") < 0 || meta_save(path, &md) < 0) {
		log_error(mv->name, "saving %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static uint64_t journal_bytes(uint64_t size)
{
	return size < MIRROR_JOURNAL_MIN ? MIRROR_JOURNAL_MIN :
	       size > MIRROR_JOURNAL_MAX ? MIRROR_JOURNAL_MAX : size;
}

static int open_journal(struct mirror_volume *mv, uint64_t size, char *err, size_t err_len)
{
	char path[4096];
	size = journal_bytes(size);
	if (path_in(path, sizeof(path), mv, "journal") < 0) {
		snprintf(err, err_len, "journal path too long");
		return -1;
	}
	mv->j = journal_open(path, size, mv->name, err, err_len);
	return mv->j ? 0 : -1;
}

int store_open(struct mirror_volume *mv, const char *data_dir, const char *name,
	       uint32_t *wire_err, char *err, size_t err_len)
{
	memset(mv, 0, sizeof(*mv));
	mv->lock_fd = -1;
	epoch_init(&mv->epochs);
	*wire_err = FREP_E_IO;
	mv->name = strdup(name);
	if (asprintf(&mv->dir, "%s/%s", data_dir, name) < 0 || !mv->name) {
		mv->dir = NULL;
		snprintf(err, err_len, "out of memory");
		goto fail;
	}
	/* Metadata is replaced atomically (rename), so reading it unlocked is safe. */
	if (load_meta(mv, err, err_len) < 0) {
		if (errno == EBADMSG)
			*wire_err = FREP_E_CHECKSUM; /* corruption is severe, never retried */
		goto fail;
	}
	return 0;
fail:
	/* Nothing is locked or open yet: this frees the name and directory only. */
	store_close(mv);
	return -1;
}

/*
 * A demoted master's copy as it was, before the fail-back writes anything:
 * what the demote discards stays readable (FBK-1). Idempotent across a crash
 * between the snapshot and the metadata that says it is taken.
 */
static int keep_pre_demote(struct mirror_volume *mv, char *err, size_t err_len)
{
	struct status_snapshot st;
	if (!snapset_exists(mv->snaps, SNAP_PRE_DEMOTE_NAME) &&
	    snapset_create(mv->snaps, SNAP_PRE_DEMOTE_NAME, SNAP_PRE_DEMOTE, mv->pre_demote_txid, &st,
			   err, err_len) < 0)
		return -1;
	mv->pre_demote_pending = false;
	if (store_save(mv) < 0) {
		snprintf(err, err_len, "saving metadata: %s", strerror(errno));
		return -1;
	}
	log_info(mv->name, "snapshot %s keeps the demoted copy as it was (its TXID %" PRIu64 "): "
		 "delete it once its writes are read or no longer wanted", SNAP_PRE_DEMOTE_NAME,
		 mv->pre_demote_txid);
	return 0;
}

int store_attach(struct mirror_volume *mv, uint32_t *wire_err, char *err, size_t err_len)
{
	char path[4096];

	*wire_err = FREP_E_IO;
	if (mkdir(mv->dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, err_len, "mkdir %s: %s", mv->dir, strerror(errno));
		return -1;
	}
	if (path_in(path, sizeof(path), mv, "lock") < 0 || (mv->lock_fd = lock_file(path)) < 0) {
		if (errno == EWOULDBLOCK)
			*wire_err = FREP_E_BUSY;
		snprintf(err, err_len, "volume %s is in use by another session (%s)", mv->name,
			 strerror(errno));
		return -1;
	}
	/* The previous holder may have changed it before releasing the lock. */
	mv->exists = false;
	if (load_meta(mv, err, err_len) < 0) {
		if (errno == EBADMSG)
			*wire_err = FREP_E_CHECKSUM;
		return -1;
	}
	if (!mv->exists)
		return 0;
	if (mv->promoting && !mv->allow_promoting) {
		*wire_err = FREP_E_BUSY;
		snprintf(err, err_len, "volume %s is being promoted (a frepctl promote --force was cut "
			 "short): run it again to finish", mv->name);
		return -1;
	}
	if (mv->promoted) {
		/* frep-client writes the extents now: replaying or saving here would undo its writes. */
		*wire_err = FREP_E_FENCED;
		store_describe_promotion(mv, err, err_len);
		return -1;
	}
	/* A journal exists whenever metadata does: store_create makes both. */
	if (open_extents(mv, err, err_len) < 0 || open_journal(mv, 0, err, err_len) < 0 ||
	    open_snapshots(mv, err, err_len) < 0 || replay_journal(mv, err, err_len) < 0) {
		/* A torn tail is dropped silently; a damaged committed record stops here, unapplied. */
		if (errno == EBADMSG) {
			size_t n = strlen(err);
			snprintf(err + n, err_len - n, "; to recover, remove %s on the mirror: the master "
				 "then copies the whole volume again", mv->dir);
			*wire_err = FREP_E_CHECKSUM;
		}
		return -1;
	}
	if (mv->phase == FREP__V1__PHASE__PHASE_INSYNC && mv->consistent)
		mv->consistent_txid = mv->applied_txid;
	if (mv->pre_demote_pending && keep_pre_demote(mv, err, err_len) < 0)
		return -1;
	store_publish_consistency(mv);
	return 0;
}

/*
 * MP-3: the data the volume needs now (its whole size when preallocated, what
 * the master has allocated when thin) and the journal must fit the free space.
 * Checked before creating anything: a fallocate far past the free space would
 * fill the disk on some file systems (ext4) before it fails.
 */
static int check_free_space(struct mirror_volume *mv, uint64_t data, uint64_t journal_size,
			    uint32_t *wire_err, char *err, size_t err_len)
{
	struct statvfs fs;
	if (statvfs(mv->dir, &fs) < 0) {
		*wire_err = FREP_E_IO;
		snprintf(err, err_len, "statvfs %s: %s", mv->dir, strerror(errno));
		return -1;
	}
	uint64_t free_bytes = (uint64_t)fs.f_bavail * fs.f_frsize;
	uint64_t journal = journal_bytes(journal_size);
	uint64_t needed = data > UINT64_MAX - journal ? UINT64_MAX : data + journal;
	if (needed <= free_bytes)
		return 0;
	*wire_err = FREP_E_NO_SPACE;
	snprintf(err, err_len,
		 "not enough space for volume %s: it needs %" PRIu64 " MiB (%" PRIu64 " bytes %s "
		 "and a %" PRIu64 "-byte journal) but %s has %" PRIu64 " MiB free; free space "
		 "there or put --data-dir on a bigger disk%s",
		 mv->name, needed / (1 << 20) + (needed % (1 << 20) != 0), data,
		 mv->sparse ? "the master has allocated" : "to reserve for the whole volume",
		 journal, mv->dir, free_bytes >> 20,
		 mv->sparse ? "" : " (or, for a thin volume, run frep-server --preallocate=sparse)");
	return -1;
}

int store_create(struct mirror_volume *mv, const char *owner, const uint8_t *uuid,
		 const uint64_t *sizes, unsigned n, uint64_t journal_size,
		 const uint64_t *allocated, bool *created, uint32_t *wire_err, char *err,
		 size_t err_len)
{
	bool no_space = false;

	uint64_t total = 0;
	for (unsigned i = 0; i < n; i++)
		total = sizes[i] > UINT64_MAX - total ? UINT64_MAX : total + sizes[i];
	if ((!mv->sparse || allocated) &&
	    check_free_space(mv, mv->sparse ? *allocated : total, journal_size, wire_err, err,
			     err_len) < 0)
		return -1;
	if (volume_create_or_validate(&mv->vol, mv->name, mv->dir, sizes, n, mv->sparse, created,
				      &no_space, err, err_len) < 0) {
		*wire_err = no_space ? FREP_E_NO_SPACE : FREP_E_BAD_EXTENTS;
		return -1;
	}
	mv->vol.keep_space = !mv->sparse;
	mv->vol_open = true;
	mv->n_extents = n;
	snprintf(mv->owner, sizeof(mv->owner), "%s", owner);
	memcpy(mv->uuid, uuid, FREP_UUID_SIZE);
	mv->phase = FREP__V1__PHASE__PHASE_CREATED;
	mv->consistent = false;
	mv->consistent_txid = 0;
	if (open_journal(mv, journal_size, err, err_len) < 0) {
		*wire_err = errno == ENOSPC ? FREP_E_NO_SPACE : FREP_E_IO;
		return -1;
	}
	mv->applied_txid = journal_last_txid(mv->j);
	if (store_save(mv) < 0) {
		*wire_err = FREP_E_IO;
		snprintf(err, err_len, "saving metadata: %s", strerror(errno));
		return -1;
	}
	mv->exists = true;
	if (open_snapshots(mv, err, err_len) < 0) {
		*wire_err = FREP_E_IO;
		return -1;
	}
	store_publish_consistency(mv);
	return 0;
}

int store_checkpoint(struct mirror_volume *mv)
{
	if (!mv->vol_open || !mv->j)
		return 0;
	if (volume_sync(&mv->vol) < 0) {
		log_error(mv->name, "fdatasync of mirror extents: %s", strerror(errno));
		return -1;
	}
	if (mv->applied_txid >= journal_first_txid(mv->j) &&
	    journal_free_through(mv->j, mv->applied_txid) < 0) {
		log_error(mv->name, "freeing journal through TXID %" PRIu64 ": %s", mv->applied_txid,
			  strerror(errno));
		return -1;
	}
	return 0;
}

int store_recover_all(const char *data_dir)
{
	DIR *d = opendir(data_dir);
	int failed = 0;
	struct dirent *e;

	if (!d) {
		log_error(NULL, "--data-dir %s: %s", data_dir, strerror(errno));
		return 1;
	}
	while ((e = readdir(d))) {
		struct mirror_volume mv;
		char err[512];
		uint32_t code;
		if (!volume_name_valid(e->d_name))
			continue;
		int opened = store_open(&mv, data_dir, e->d_name, &code, err, sizeof(err));
		if (opened == 0 && mv.promoted) {
			store_describe_promotion(&mv, err, sizeof(err));
			log_info(e->d_name, "left alone: %s", err);
		} else if (opened < 0 || (mv.exists && store_attach(&mv, &code, err, sizeof(err)) < 0)) {
			log_error(e->d_name, "recovery failed: %s", err);
			failed++;
		} else if (mv.exists) {
			log_info(e->d_name, "recovered: durable TXID %" PRIu64 ", phase %u, %s at TXID %" PRIu64,
				 journal_last_txid(mv.j), mv.phase,
				 mv.consistent ? "consistent" : "inconsistent, last consistent",
				 mv.consistent_txid);
		}
		store_close(&mv);
	}
	closedir(d);
	return failed;
}

void store_close(struct mirror_volume *mv)
{
	if (mv->exists && mv->vol_open && mv->j) {
		store_checkpoint(mv);
		if (mv->phase == FREP__V1__PHASE__PHASE_INSYNC && mv->consistent)
			mv->consistent_txid = mv->applied_txid;
		store_save(mv);
	}
	if (mv->snaps) {
		snapset_set_holder(mv->snaps, false, false, 0);
		snapset_put(mv->snaps);
	}
	free(mv->cmp_buf);
	if (mv->j)
		journal_close(mv->j);
	if (mv->vol_open)
		volume_close(&mv->vol);
	if (mv->lock_fd >= 0)
		close(mv->lock_fd);
	free(mv->name);
	free(mv->dir);
	memset(mv, 0, sizeof(*mv));
	mv->lock_fd = -1;
}

void store_describe_promotion(const struct mirror_volume *mv, char *out, size_t len)
{
	char when[32];
	format_utc_ms(mv->promoted_ms, when, sizeof(when));
	snprintf(out, len, "volume %s was promoted on this host at %s: epoch %" PRIu64 " began after "
		 "TXID %" PRIu64 "; frep-client (--adopt %s) serves it as the primary now, and a "
		 "master of an earlier epoch is fenced: run frepctl demote %s on it to make it a "
		 "mirror of the new primary", mv->name, when, mv->epochs.epoch, mv->promoted_txid,
		 mv->dir, mv->name);
}

/* Removes what a volume directory may hold (metadata first: then it is no volume), then it. */
static void remove_volume_dir(const char *dir)
{
	char path[4200];
	const char *leaves[] = { "meta", "meta.tmp", "journal", STORE_DIVERGED, FREP_PROMOTED_DIRTY,
				 "snapshots/.rangelock", "snapshots", "lock" };
	for (unsigned i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
		textf(path, sizeof(path), "%s/%s", dir, leaves[i]);
		if (unlink(path) < 0 && errno == EISDIR)
			rmdir(path);
		if (i == 0)
			fsync_parent_dir(path);
	}
	for (unsigned i = 0; i < FREP_MAX_EXTENTS; i++) {
		textf(path, sizeof(path), "%s/extent.%u", dir, i);
		if (unlink(path) < 0 && errno == ENOENT)
			break;
	}
	rmdir(dir);
	fsync_parent_dir(dir);
}

/* The handoff's extents are this volume's own files (a promoted copy handed back). */
static bool same_extents(const struct mirror_volume *mv, const struct handoff *h)
{
	if (h->n_extents != mv->n_extents)
		return false;
	for (unsigned i = 0; i < h->n_extents; i++) {
		char leaf[32], mine[4200], a[PATH_MAX], b[PATH_MAX];
		snprintf(leaf, sizeof(leaf), "extent.%u", i);
		if (path_in(mine, sizeof(mine), mv, leaf) < 0 || !realpath(mine, a) ||
		    !realpath(h->paths[i], b) || strcmp(a, b) != 0)
			return false;
	}
	return true;
}

/*
 * The data dir may already hold the volume: a copy the new primary's master
 * made here before the demote (the same UUID, a later epoch, not promoted).
 * It holds nothing the new primary lacks, so the demoted copy takes its
 * place; anything else is refused. Its own promoted copy, handed back by the
 * master that adopted it, is taken back in place. Either way the volume's
 * lock is taken first (*lock_fd; the directory is made if missing), so no
 * session attaches it meanwhile: one the caller told to go (BUSY) lets go of
 * it, and its master waits out a backoff before it comes back, so polling
 * wins. 0 (an empty volume directory, or a copy to swap out), 1 (in place),
 * or -1 with err.
 */
static int clear_the_way(const char *data_dir, const struct handoff *h, const char *final,
			 int *lock_fd, char *err, size_t err_len)
{
	struct mirror_volume mv;
	uint32_t code;
	char path[4200];
	*lock_fd = -1;
	if (mkdir(final, 0700) < 0 && errno != EEXIST) {
		textf(err, err_len, "mkdir %s: %s", final, strerror(errno));
		return -1;
	}
	textf(path, sizeof(path), "%s/lock", final);
	for (uint64_t end = now_ms() + 10000; *lock_fd < 0 && now_ms() < end;)
		if ((*lock_fd = lock_file(path)) < 0)
			usleep(10000);
	if (*lock_fd < 0) {
		textf(err, err_len, "volume %s is in use by a session: try again", h->volume);
		errno = EBUSY;
		return -1;
	}
	if (store_open(&mv, data_dir, h->volume, &code, err, err_len) < 0)
		return -1;
	bool same = mv.exists && memcmp(mv.uuid, h->uuid, FREP_UUID_SIZE) == 0;
	bool replaceable = same && !mv.promoted && mv.epochs.epoch > h->epochs.epoch;
	bool own = same && mv.promoted && same_extents(&mv, h) &&
		   h->epochs.epoch >= mv.epochs.epoch && h->txid >= mv.promoted_txid;
	uint64_t epoch = mv.epochs.epoch;
	bool exists = mv.exists;
	store_close(&mv);
	if (own)
		return 1;
	if (exists && !replaceable) {
		textf(err, err_len, "%s already holds volume %s, which is not a copy of the new "
		      "primary's later history: remove it first (frep-server never drops a copy that "
		      "may hold data) or demote into another data dir", data_dir, h->volume);
		errno = EEXIST;
		return -1;
	}
	textf(path, sizeof(path), "%s/snapshots", final);
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (snapshot_name_valid(e->d_name)) {
			closedir(d);
			textf(err, err_len, "%s holds a copy of %s with snapshot %s: delete its snapshots "
			      "first (the demoted copy replaces it)", data_dir, h->volume, e->d_name);
			errno = EEXIST;
			return -1;
		}
	if (d)
		closedir(d);
	if (exists)
		log_warn(h->volume, "replacing the copy of epoch %" PRIu64 " in %s (the new primary's, "
			 "made before the demote) with the demoted copy", epoch, final);
	return 0;
}

/*
 * What a handoff makes of a copy: a switchover's, consistent at its TXID in
 * the new epoch; a demoted master's, diverged after it, pre-demote to take.
 */
static void take_handoff(struct mirror_volume *mv, const struct handoff *h)
{
	mv->promoted = false;
	mv->applied_txid = h->txid;
	mv->epochs = h->epochs;
	mv->copy_cursor = mv->copy_base = 0;
	mv->copy_full = false;
	mv->consistent = h->consistent;
	mv->consistent_txid = h->consistent ? h->txid : 0;
	mv->phase = h->consistent ? FREP__V1__PHASE__PHASE_INSYNC : FREP__V1__PHASE__PHASE_OUTOFSYNC;
	mv->diverged = !h->consistent;
	mv->diverged_shared = h->shared;
	mv->diverged_txid = h->txid;
	mv->pre_demote_pending = !h->consistent;
	mv->pre_demote_txid = h->committed;
}

/*
 * The data dir's own promoted copy back as a mirror (see clear_the_way, whose
 * lock the caller holds). 0, or -1 with err.
 */
static int adopt_in_place(const char *data_dir, const struct handoff *h, char *err, size_t err_len)
{
	struct mirror_volume mv;
	uint32_t code;
	char path[4200];
	if (store_open(&mv, data_dir, h->volume, &code, err, err_len) < 0)
		return -1;
	int rc = -1;
	if (!h->consistent) {
		textf(path, sizeof(path), "%s/" STORE_DIVERGED, mv.dir);
		if (copy_file_durably(h->bitmap, path) < 0) {
			textf(err, err_len, "copying the dirty bitmap %s: %s", h->bitmap, strerror(errno));
			goto out;
		}
	}
	if (open_extents(&mv, err, err_len) < 0 || open_journal(&mv, 0, err, err_len) < 0)
		goto out;
	if (volume_sync(&mv.vol) < 0 || journal_reset(mv.j, h->txid) < 0) {
		textf(err, err_len, "journal: %s", strerror(errno));
		goto out;
	}
	take_handoff(&mv, h);
	if (store_save(&mv) < 0) {
		textf(err, err_len, "saving %s/meta: %s", mv.dir, strerror(errno));
		goto out;
	}
	textf(path, sizeof(path), "%s/" FREP_PROMOTED_DIRTY, mv.dir);
	unlink(path);
	log_warn(h->volume, "the promoted copy in %s is a mirror again (epoch %" PRIu64 ", %s at "
		 "TXID %" PRIu64 ")", mv.dir, mv.epochs.epoch, h->consistent ? "consistent" :
		 "diverged", h->txid);
	rc = 0;
out:
	mv.exists = false;
	store_close(&mv);
	return rc;
}

int store_adopt(const char *data_dir, const struct handoff *h, char *err, size_t err_len)
{
	struct mirror_volume mv;
	char tmp[4096], final[4096], path[4200];
	textf(tmp, sizeof(tmp), "%s/.adopt-%s", data_dir, h->volume);
	textf(final, sizeof(final), "%s/%s", data_dir, h->volume);
	int lock_fd;
	int way = clear_the_way(data_dir, h, final, &lock_fd, err, err_len);
	if (way != 0) {
		int rc = way == 1 ? adopt_in_place(data_dir, h, err, err_len) : -1, e = errno;
		if (lock_fd >= 0)
			close(lock_fd);
		errno = e;
		return rc;
	}
	/* Leftovers of an adoption a crash cut short: nothing there was ever a volume. */
	remove_volume_dir(tmp);
	if (mkdir(tmp, 0700) < 0) {
		textf(err, err_len, "mkdir %s: %s", tmp, strerror(errno));
		close(lock_fd);
		return -1;
	}
	/* The extents stay the old master's own files or devices: linked, not copied. */
	for (unsigned i = 0; i < h->n_extents; i++) {
		textf(path, sizeof(path), "%s/extent.%u", tmp, i);
		if (symlink(h->paths[i], path) < 0) {
			textf(err, err_len, "linking %s to %s: %s", path, h->paths[i], strerror(errno));
			close(lock_fd);
			return -1;
		}
	}
	textf(path, sizeof(path), "%s/" STORE_DIVERGED, tmp);
	if (!h->consistent && copy_file_durably(h->bitmap, path) < 0) {
		textf(err, err_len, "copying the dirty bitmap %s: %s", h->bitmap, strerror(errno));
		close(lock_fd);
		return -1;
	}
	memset(&mv, 0, sizeof(mv));
	mv.lock_fd = -1;
	mv.name = strdup(h->volume);
	mv.dir = strdup(tmp);
	int rc = -1;
	if (!mv.name || !mv.dir) {
		textf(err, err_len, "out of memory");
		goto out;
	}
	mv.n_extents = h->n_extents;
	if (open_extents(&mv, err, err_len) < 0 || open_journal(&mv, 0, err, err_len) < 0 ||
	    journal_reset(mv.j, h->txid) < 0) {
		if (!*err)
			textf(err, err_len, "journal: %s", strerror(errno));
		goto out;
	}
	memcpy(mv.uuid, h->uuid, FREP_UUID_SIZE);
	mv.owner[0] = '\0'; /* the first master of the later epoch pins it (HS-5) */
	take_handoff(&mv, h);
	if (store_save(&mv) < 0 || fsync_parent_dir(path) < 0) {
		textf(err, err_len, "saving %s/meta: %s", tmp, strerror(errno));
		goto out;
	}
	/*
	 * One atomic swap: the volume directory (locked by us, holding the copy
	 * being replaced or nothing) and the whole new one trade places; what
	 * was there goes after. A session that comes meanwhile finds it locked.
	 */
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) < 0 ||
	    fsync_parent_dir(final) < 0) {
		textf(err, err_len, "swapping %s into %s: %s", tmp, final, strerror(errno));
		goto out;
	}
	remove_volume_dir(tmp);
	rc = 0;
out:
	mv.exists = false; /* nothing to checkpoint or save again */
	store_close(&mv);
	close(lock_fd);
	return rc;
}
