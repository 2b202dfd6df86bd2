/*
 * Promotion: see promote.h. The order of the steps is what makes it safe:
 *
 *   1. a connected master is told FENCED and let go (--force only), after
 *      its session made everything it received durable;
 *   2. the volume is attached, which replays its journal: everything durable
 *      is applied, so t, the TXID the copy is promoted at, is at least every
 *      TX_ACK the mirror ever sent;
 *   3. an inconsistent copy (--force only) gets its pre-resync snapshot's
 *      chunks written back (idempotent: a crash leaves the snapshot whole);
 *   4. snapshots are invalidated (frep-client writes the base without
 *      copy-before-write), the journal is emptied at t (a restart must never
 *      replay old TXs over the new primary's writes);
 *   5. the metadata says promoted, epoch + 1 after t, durably: from here on
 *      every master of an earlier epoch is fenced.
 *
 * A crash before 5 leaves the copy a mirror, as it was; after, a primary.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crashpoint.h"
#include "events.h"
#include "frep/admin/v1/admin.pb-c.h"
#include "frep/v1/frep.pb-c.h"
#include "log.h"
#include "promote.h"
#include "registry.h"
#include "snapshot.h"
#include "util.h"

enum { PROMOTE_WAIT_MS = 10000 };

/* The words a promotion's report and status give for what may be left behind. */
static void loss_words(const struct mirror_volume *mv, uint64_t t, char *out, size_t len)
{
	if (mv->master_sync)
		snprintf(out, len, "the master ran in sync mode: every write it acknowledged to a "
			 "writer is on this copy (a sync write completes only once the mirror has it), "
			 "unless it had degraded to async after --degrade-after");
	else
		snprintf(out, len, "the master ran in async mode: writes it committed after TXID "
			 "%" PRIu64 " are not on this copy; the old master keeps them until frepctl "
			 "demote discards them", t);
}

void promotion_status(const struct mirror_volume *mv, struct status_promotion *out)
{
	memset(out, 0, sizeof(*out));
	if (!mv->promoted)
		return;
	out->set = true;
	out->epoch = mv->epochs.epoch;
	out->txid = mv->promoted_txid;
	out->unix_ms = mv->promoted_ms;
	snprintf(out->source, sizeof(out->source), "%s", mv->promoted_source);
	out->forced = mv->promoted_forced;
	out->recovery_txid = mv->last_ack_txid;
	out->recovery_unix_ms = mv->last_ack_ms;
	snprintf(out->master_mode, sizeof(out->master_mode), "%s", mv->master_sync ? "sync" : "async");
	loss_words(mv, mv->promoted_txid, out->loss, sizeof(out->loss));
}

/* A forced promotion's restored chunks, for the new primary's dirty bitmap (store.h). */
static int note_restored(void *ctx, uint64_t off, uint64_t len)
{
	uint64_t v[2] = { htole64(off), htole64(len) };
	return fwrite(v, sizeof(v), 1, ctx) == 1 ? 0 : -1;
}

static int restore_pre_resync(struct mirror_volume *mv, const char *snap, uint64_t *t, char *err,
			      size_t err_len)
{
	char tmp[4096], path[4096];
	textf(path, sizeof(path), "%s/" FREP_PROMOTED_DIRTY, mv->dir);
	textf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		textf(err, err_len, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	int rc = snapset_restore(mv->snaps, snap, &mv->vol, t, note_restored, f, err, err_len);
	if (fflush(f) != 0 || fdatasync(fileno(f)) < 0) {
		if (rc == 0)
			textf(err, err_len, "%s: %s", tmp, strerror(errno));
		rc = -1;
	}
	fclose(f);
	if (rc == 0 && (rename(tmp, path) < 0 || fsync_parent_dir(path) < 0)) {
		textf(err, err_len, "%s: %s", path, strerror(errno));
		rc = -1;
	}
	return rc;
}

/* The pre-resync snapshot's name and TXID if it is there and valid. */
static bool pre_resync(struct snapset *ss, char *name, size_t len, uint64_t *txid)
{
	struct status_snapshot *list;
	size_t n;
	bool found = false;
	if (!ss || !snapset_find_kind(ss, SNAP_PRE_RESYNC, name, len) || snapset_list(ss, &list, &n) < 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].name, name) == 0 && list[i].valid) {
			*txid = list[i].txid;
			found = true;
		}
	free(list);
	return found;
}

/* Attaches the volume, waiting out a session that is ending. 0, or -1 with r. */
static int attach(struct mirror_server *srv, const char *volume, struct mirror_volume *mv,
		  struct admin_reply *r)
{
	char err[512];
	uint32_t code = 0;
	uint64_t end = now_ms() + PROMOTE_WAIT_MS;
	for (;;) {
		int opened = store_open(mv, srv->data_dir, volume, &code, err, sizeof(err));
		mv->allow_promoting = true;
		if (opened == 0 && store_attach(mv, &code, err, sizeof(err)) == 0)
			return 0;
		store_close(mv);
		if (code != FREP_E_BUSY || now_ms() > end)
			return admin_refuse(r, code == FREP_E_FENCED ? ADMIN_FAILED_PRECONDITION :
					    code == FREP_E_BUSY ? ADMIN_UNAVAILABLE : ADMIN_INTERNAL,
					    "promote %s: %s", volume, err);
		usleep(20000);
	}
}

bool promote_blocked(struct mirror_volume *mv, char *why, size_t len)
{
	struct status_snapshot *list;
	size_t n;
	bool blocked = false;
	if (!mv->snaps || snapset_list(mv->snaps, &list, &n) < 0)
		return false;
	for (size_t i = 0; i < n && !blocked; i++)
		if (list[i].kind == SNAP_PRE_DEMOTE && list[i].valid) {
			blocked = true;
			snprintf(why, len, "snapshot %s of %s still holds the writes a demote discarded "
				 "(TXID %" PRIu64 "); a promotion would end it: read it (frepctl export "
				 "%s@%s), then frepctl snapshot delete %s %s, and try again",
				 list[i].name, mv->name, list[i].txid, mv->name, list[i].name, mv->name,
				 list[i].name);
		}
	free(list);
	return blocked;
}

int promote_at(struct mirror_volume *mv, uint64_t t, const char *source, bool forced, char *err,
	       size_t err_len)
{
	char why[200];
	snprintf(why, sizeof(why), "volume promoted at TXID %" PRIu64 ": frep-client writes its base "
		 "directly, without copy-before-write", t);
	snapset_invalidate_all(mv->snaps, why, NULL);
	if (volume_sync(&mv->vol) < 0 || journal_reset(mv->j, t) < 0) {
		snprintf(err, err_len, "emptying its journal at TXID %" PRIu64 ": %s", t, strerror(errno));
		return -1;
	}
	frep_crash_point("promote-journal");
	snprintf(mv->promoted_source, sizeof(mv->promoted_source), "%s", source);
	mv->applied_txid = mv->consistent_txid = mv->promoted_txid = t;
	mv->consistent = true;
	mv->phase = FREP__V1__PHASE__PHASE_INSYNC;
	mv->copy_cursor = mv->copy_base = 0;
	mv->copy_full = false;
	mv->promoted = true;
	mv->promoting = false;
	mv->promoted_ms = wall_ms();
	mv->promoted_forced = forced;
	struct epoch_history before = mv->epochs;
	epoch_begin(&mv->epochs, t);
	if (store_save(mv) < 0) {
		mv->promoted = false;
		mv->epochs = before;
		snprintf(err, err_len, "saving its metadata: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void mirror_promote(struct mirror_server *srv, const char *volume, bool force,
		    struct admin_reply *r)
{
	struct mirror_volume mv;
	struct vol_status live;
	uint32_t code;
	char err[512], snap[SNAP_NAME_MAX + 1] = "", why[400], master[300] = "";
	uint64_t snap_txid = 0;

	if (!volume_name_valid(volume)) {
		admin_refuse(r, ADMIN_INVALID_ARGUMENT, "'%s' is not a volume name (1-64 of "
			     "[A-Za-z0-9._-], not starting with '.')", volume);
		return;
	}
	if (store_open(&mv, srv->data_dir, volume, &code, err, sizeof(err)) < 0 || !mv.exists) {
		store_close(&mv);
		admin_refuse(r, ADMIN_NOT_FOUND, "no volume '%s' on this mirror (data dir %s)", volume,
			     srv->data_dir);
		return;
	}
	if (mv.promoted) {
		store_describe_promotion(&mv, why, sizeof(why));
		store_close(&mv);
		admin_refuse(r, ADMIN_FAILED_PRECONDITION, "already promoted: %s", why);
		return;
	}
	uint64_t epoch = mv.epochs.epoch + 1;
	bool consistent = mv.consistent, resuming = mv.promoting;
	uint64_t resume_txid = mv.promoting_txid;
	store_close(&mv);

	struct snapset *ss = snapset_get(srv->data_dir, volume, err, sizeof(err));
	bool connected = registry_get(volume, &live);
	if (connected) {
		consistent = live.mirror.consistent;
		textf(master, sizeof(master), "%s (%s)", live.mirror.connected_master.identity,
			 live.mirror.connected_master.address);
	}
	bool have_snap = pre_resync(ss, snap, sizeof(snap), &snap_txid);
	if (connected && !force) {
		admin_refuse(r, ADMIN_FAILED_PRECONDITION,
			     "promote %s: master %s is connected and replicating to it; promoting now "
			     "would leave two primaries. Stop or lose that master first, or use "
			     "--force to disconnect and fence it", volume, master);
		goto out;
	}
	if (!consistent && !force) {
		if (have_snap)
			admin_refuse(r, ADMIN_FAILED_PRECONDITION,
				     "promote %s: the copy is inconsistent (a copy pass was running): its "
				     "content is no state the master ever had. Its last consistent state "
				     "is snapshot %s at TXID %" PRIu64 ": --force promotes that instead",
				     volume, snap, snap_txid);
		else
			admin_refuse(r, ADMIN_FAILED_PRECONDITION,
				     "promote %s: the copy is inconsistent (a copy pass was running) and no "
				     "pre-resync snapshot holds its last consistent state: there is nothing "
				     "consistent to promote; let the master finish the copy", volume);
		goto out;
	}
	if (resuming && !force) {
		admin_refuse(r, ADMIN_FAILED_PRECONDITION, "promote %s: a forced promotion of its "
			     "pre-resync snapshot (TXID %" PRIu64 ") was cut short: run promote --force "
			     "again to finish it", volume, resume_txid);
		goto out;
	}
	if (!consistent && !have_snap && !resuming) {
		admin_refuse(r, ADMIN_FAILED_PRECONDITION,
			     "promote %s: the copy is inconsistent and no valid pre-resync snapshot holds "
			     "its last consistent state: even --force has nothing consistent to promote",
			     volume);
		goto out;
	}
	if (connected) {
		struct fence_order o = { .code = FREP_E_FENCED, .epoch = epoch,
					 .txid = consistent ? 0 : snap_txid,
					 .unix_ms = wall_ms() };
		snprintf(o.message, sizeof(o.message),
			 "volume %s is being promoted on this mirror by an operator (frepctl promote "
			 "--force): epoch %" PRIu64 " begins there and this master is fenced; run "
			 "frepctl demote %s on it to make it a mirror of the new primary",
			 volume, epoch, volume);
		registry_fence(volume, &o);
		uint64_t end = now_ms() + PROMOTE_WAIT_MS;
		while (registry_get(volume, &live) && now_ms() < end)
			usleep(20000);
		log_warn(volume, "promote --force: master %s disconnected and fenced", master);
	}

	if (attach(srv, volume, &mv, r) < 0)
		goto out;
	if (!force && promote_blocked(&mv, why, sizeof(why))) {
		admin_refuse(r, ADMIN_FAILED_PRECONDITION, "promote %s: %s (or --force)", volume, why);
		goto close;
	}
	if (mv.promoted || mv.consistent != consistent) {
		admin_refuse(r, ADMIN_FAILED_PRECONDITION, "promote %s: the volume changed meanwhile "
			     "(a master connected); run the command again", volume);
		goto close;
	}
	uint64_t t;
	char source[80];
	if (consistent) {
		t = mv.applied_txid; /* the replay at attach applied everything durable */
		snprintf(source, sizeof(source), "journal");
	} else if (resuming && !have_snap) {
		/* Cut short after the write-back (the snapshot already ended): it is all there. */
		t = resume_txid;
		snprintf(source, sizeof(source), "snapshot %s", SNAP_PRE_RESYNC_NAME);
	} else {
		snprintf(why, sizeof(why), "volume promoted from snapshot %s: the base is the "
			 "primary's now", snap);
		snapset_invalidate_all(mv.snaps, why, snap);
		/* Durable first: from the first chunk written back no master may attach it. */
		mv.promoting = true;
		mv.promoting_txid = snap_txid;
		if (store_save(&mv) < 0) {
			admin_refuse(r, ADMIN_INTERNAL, "promote %s: saving its metadata: %s", volume,
				     strerror(errno));
			goto close;
		}
		if (restore_pre_resync(&mv, snap, &t, err, sizeof(err)) < 0) {
			admin_refuse(r, ADMIN_INTERNAL, "promote %s: %s; the copy stays a mirror, its "
				     "snapshot %s whole: run the command again", volume, err, snap);
			goto close;
		}
		snprintf(source, sizeof(source), "snapshot %s", snap);
	}
	frep_crash_point("promote-restored");
	if (promote_at(&mv, t, source, force && (connected || !consistent), err,
		       sizeof(err)) < 0) {
		admin_refuse(r, ADMIN_INTERNAL, "promote %s: %s; the copy stays a mirror: run the "
			     "command again", volume, err);
		goto close;
	}
	/* Its chunks are the base now; promote_at ended it: only its files remain. */
	if (!consistent && snapset_delete(mv.snaps, snap, err, sizeof(err)) < 0)
		log_warn(volume, "%s", err);

	char when[32], loss[STATUS_TEXT_MAX], recovery[160];
	loss_words(&mv, t, loss, sizeof(loss));
	if (mv.last_ack_ms)
		textf(recovery, sizeof(recovery), "TXID %" PRIu64 ", acknowledged to the master at "
			 "%s, %" PRId64 " s before this promotion", mv.last_ack_txid,
			 format_utc_ms(mv.last_ack_ms, when, sizeof(when)),
			 (mv.promoted_ms - mv.last_ack_ms) / 1000);
	else
		snprintf(recovery, sizeof(recovery), "not known (no acknowledgement since this mirror "
			 "started)");
	admin_refuse(r, ADMIN_OK,
		     "promoted %s at TXID %" PRIu64 ": epoch %" PRIu64 " begins; the copy holds the "
		     "master after exactly the writes up to TXID %" PRIu64 "%s%s%s. Recovery point: "
		     "%s. %s. Serve it with frep-client --adopt %s (README \"Failover and "
		     "fail-back\")",
		     volume, t, mv.epochs.epoch, t,
		     consistent ? "" : " (its pre-resync snapshot: the content was inconsistent)",
		     connected ? "; disconnected and fenced master " : "", connected ? master : "",
		     recovery, loss, mv.dir);
	log_warn(volume, "%s", r->message);
	events_publish(EVENT_STATE_CHANGE, volume, FREP__ADMIN__V1__STATE__DETACHED,
		       FREP__ADMIN__V1__STATE__PROMOTED, "promoted at TXID %" PRIu64 ", epoch %" PRIu64,
		       t, mv.epochs.epoch);
close:
	store_close(&mv);
out:
	if (ss)
		snapset_put(ss);
}
