/*
 * frep-client's side of the admin API (common/admin.h): one master volume.
 * Runs on the admin thread: it copies numbers under m->lock and sets requests
 * for the session thread, which it wakes through notify_fd; it never waits on
 * the session or on I/O while holding the lock. Settings are persisted
 * (master_save_settings) before they take effect, so what the operator was
 * told holds after a crash.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin-master.h"
#include "bitmap.h"
#include "events.h"
#include "frep/admin/v1/admin.pb-c.h"
#include "demote.h"
#include "util.h"
#include "verify.h"

static void wake_session(struct master *m)
{
	uint64_t one = 1;
	ssize_t w = write(m->notify_fd, &one, sizeof(one));
	(void)w;
}

void master_status(struct master *m, struct vol_status *v)
{
	memset(v, 0, sizeof(*v));
	snprintf(v->name, sizeof(v->name), "%s", m->name);
	v->role = FREP__ADMIN__V1__ROLE__MASTER;
	struct status_master *s = &v->master;

	pthread_mutex_lock(&m->lock);
	v->state = events_master_state(m->state);
	v->state_since_unix_ms = m->state_since_unix_ms;
	v->last_error = m->last_error;
	s->committed_txid = m->committed_txid;
	s->acked_txid = m->acked_txid;
	s->applied_txid = m->applied_txid;
	s->lag_tx = m->committed_txid - m->acked_txid;
	s->lag_bytes = journal_bytes_after(m->j, m->acked_txid);
	s->lag_seconds = master_lag_seconds_locked(m);
	s->buffer_used_bytes = journal_used(m->j);
	s->buffer_free_bytes = journal_capacity(m->j) - s->buffer_used_bytes;
	s->write_rate_bps = m->dirty_rate;
	s->send_rate_bps = m->drain_rate;
	s->copy = m->copy;
	s->resync_full = m->resync_full_req || (m->copy.active && m->copy_full &&
						m->state == MS_OUTOFSYNC);
	s->dirty_bytes = bitmap_dirty_regions(m->bm) * bitmap_region_size(m->bm);
	s->mode = m->sync_mode ? FREP__ADMIN__V1__MODE__SYNC : FREP__ADMIN__V1__MODE__ASYNC;
	s->on_buffer_full = m->on_full == ON_FULL_BLOCK ? FREP__ADMIN__V1__ON_BUFFER_FULL__BLOCK
							: FREP__ADMIN__V1__ON_BUFFER_FULL__CRACK;
	s->degraded = m->degraded;
	s->peer = m->peer;
	s->paused = m->paused;
	s->full_waits = m->full_waits;
	s->journal_appends = m->journal_appends;
	s->journal_syncs = m->journal_syncs;
	s->cracks = m->cracks;
	s->outrun = m->outrun;
	s->epoch = m->epochs.epoch;
	s->fenced = m->fenced;
	if (s->fenced.set) {
		/* What a demote discards: every TX committed here after the promotion's TXID. */
		s->fenced.discard_tx = m->committed_txid > s->fenced.txid ?
					       m->committed_txid - s->fenced.txid : 0;
		s->fenced.discard_bytes = journal_bytes_after(m->j, s->fenced.txid);
		s->fenced.serving = m->fenced_serve;
	}
	pthread_mutex_unlock(&m->lock);
	s->max_rate_bps = atomic_load(&m->max_rate);
	s->volume_size_bytes = m->vol.size;
	master_verify_status(m, &v->verify);
}

static bool ours(struct master *m, const char *volume, struct admin_reply *r)
{
	if (!volume || strcmp(volume, m->name) == 0)
		return true;
	r->code = ADMIN_NOT_FOUND;
	snprintf(r->message, sizeof(r->message),
		 "no volume '%s' here: this frep-client serves '%s' (each volume has its own "
		 "frep-client and admin socket)",
		 volume, m->name);
	return false;
}

static int op_status(void *ctx, const char *volume, struct vol_status **out, size_t *n,
		     struct admin_reply *r)
{
	struct master *m = ctx;
	*out = NULL;
	*n = 0;
	if (!ours(m, volume, r))
		return -1;
	if (!(*out = calloc(1, sizeof(**out)))) {
		r->code = ADMIN_INTERNAL;
		snprintf(r->message, sizeof(r->message), "out of memory");
		return -1;
	}
	master_status(m, *out);
	*n = 1;
	return 0;
}

/* Persists the pause flag; on failure nothing changes and r says why. */
static bool save_paused(struct master *m, bool paused, struct admin_reply *r)
{
	char err[512];
	if (master_save_settings(m, paused, m->rate_set_by_operator, atomic_load(&m->max_rate), err,
				 sizeof(err)) == 0)
		return true;
	r->code = ADMIN_INTERNAL;
	snprintf(r->message, sizeof(r->message), "%s: %s (nothing changed)", m->name, err);
	return false;
}

static void op_pause(void *ctx, const char *volume, struct admin_reply *r)
{
	struct master *m = ctx;
	if (!ours(m, volume, r))
		return;
	pthread_mutex_lock(&m->lock);
	enum master_state st = m->state;
	bool paused = m->paused;
	pthread_mutex_unlock(&m->lock);
	if (st != MS_INSYNC || paused) {
		r->code = ADMIN_FAILED_PRECONDITION;
		snprintf(r->message, sizeof(r->message),
			 paused ? "%s is already paused (state %s)"
				: "%s: pause is allowed only in INSYNC (state %s)",
			 m->name, master_state_name(st));
		return;
	}
	if (!save_paused(m, true, r))
		return;
	pthread_mutex_lock(&m->lock);
	m->paused = true;
	pthread_mutex_unlock(&m->lock);
	wake_session(m);
	events_publish(EVENT_SETTINGS, m->name, 0, 0, "paused");
	snprintf(r->message, sizeof(r->message),
		 "pausing %s: sequencing stops, local writes go on into the buffer; the pause holds "
		 "across reconnects and restarts until resumed",
		 m->name);
}

static void op_resume(void *ctx, const char *volume, struct admin_reply *r)
{
	struct master *m = ctx;
	if (!ours(m, volume, r))
		return;
	pthread_mutex_lock(&m->lock);
	enum master_state st = m->state;
	bool paused = m->paused;
	pthread_mutex_unlock(&m->lock);
	if (!paused) {
		r->code = ADMIN_FAILED_PRECONDITION;
		snprintf(r->message, sizeof(r->message), "%s is not paused (state %s)", m->name,
			 master_state_name(st));
		return;
	}
	if (!save_paused(m, false, r))
		return;
	pthread_mutex_lock(&m->lock);
	m->paused = false;
	pthread_mutex_unlock(&m->lock);
	wake_session(m);
	events_publish(EVENT_SETTINGS, m->name, 0, 0, "resumed");
	if (st == MS_IDLE)
		snprintf(r->message, sizeof(r->message), "resuming %s", m->name);
	else
		snprintf(r->message, sizeof(r->message),
			 "%s: pause lifted; sequencing goes on once the mirror is in sync (state %s)",
			 m->name, master_state_name(st));
}

static void op_resync(void *ctx, const char *volume, bool full, struct admin_reply *r)
{
	struct master *m = ctx;
	if (!ours(m, volume, r))
		return;
	if (!full) {
		r->code = ADMIN_INVALID_ARGUMENT;
		snprintf(r->message, sizeof(r->message),
			 "%s: only a full resync can be requested (full=true); incremental resyncs "
			 "of the dirty regions run by themselves",
			 m->name);
		return;
	}
	pthread_mutex_lock(&m->lock);
	m->resync_full_req = true;
	enum master_state st = m->state;
	pthread_mutex_unlock(&m->lock);
	wake_session(m);
	events_publish(EVENT_SETTINGS, m->name, 0, 0, "full resync requested");
	snprintf(r->message, sizeof(r->message),
		 "%s: a full resync of every allocated block starts %s", m->name,
		 st == MS_INSYNC || st == MS_IDLE ? "now" : "once the mirror is next in sync");
}

static void op_demote(void *ctx, const char *volume, bool force, char *handoff, size_t len,
		      uint64_t *discard_tx, uint64_t *discard_bytes, struct admin_reply *r)
{
	struct master *m = ctx;
	if (ours(m, volume, r))
		master_demote(m, force, handoff, len, discard_tx, discard_bytes, r);
}

static void op_switchover(void *ctx, const char *volume, char *handoff, size_t len,
			  struct admin_reply *r)
{
	struct master *m = ctx;
	if (ours(m, volume, r))
		master_switchover(m, handoff, len, r);
}

static void op_set_rate(void *ctx, const char *volume, uint64_t rate, struct admin_reply *r)
{
	struct master *m = ctx;
	char err[512], a[16];
	if (!ours(m, volume, r))
		return;
	if (rate && rate < 4096) {
		r->code = ADMIN_INVALID_ARGUMENT;
		snprintf(r->message, sizeof(r->message),
			 "%s: rate %" PRIu64 " bytes/s is below 4096; give 0 for unlimited or at least "
			 "4K",
			 m->name, rate);
		return;
	}
	pthread_mutex_lock(&m->lock);
	bool paused = m->paused;
	pthread_mutex_unlock(&m->lock);
	if (master_save_settings(m, paused, true, rate, err, sizeof(err)) < 0) {
		r->code = ADMIN_INTERNAL;
		snprintf(r->message, sizeof(r->message), "%s: %s (rate unchanged)", m->name, err);
		return;
	}
	m->rate_set_by_operator = true;
	atomic_store(&m->max_rate, rate);
	wake_session(m);
	if (rate)
		format_size(rate, a, sizeof(a));
	events_publish(EVENT_SETTINGS, m->name, 0, 0, "rate %s%s", rate ? a : "unlimited",
		       rate ? "/s" : "");
	snprintf(r->message, sizeof(r->message), "%s: copy and verify rate %s%s (persisted)",
		 m->name, rate ? a : "unlimited", rate ? "/s" : "");
}

static void op_verify(void *ctx, const char *volume, bool repair, uint64_t *verify_id,
		      struct admin_reply *r)
{
	struct master *m = ctx;
	if (ours(m, volume, r) && master_verify_start(m, repair, verify_id, r) == 0)
		snprintf(r->message, sizeof(r->message), "%s: verify %" PRIu64 " started%s", m->name,
			 *verify_id, repair ? ", repairing what differs" : "");
}

static void op_verify_result(void *ctx, const char *volume, struct status_verify *st,
			     uint64_t *region_size, struct status_region **regions, size_t *n,
			     struct admin_reply *r)
{
	struct master *m = ctx;
	if (ours(m, volume, r) && master_verify_result(m, st, region_size, regions, n) < 0) {
		r->code = ADMIN_INTERNAL;
		snprintf(r->message, sizeof(r->message), "%s: out of memory for the verify result",
			 m->name);
	}
}

const struct admin_ops admin_master_ops = {
	.status = op_status,
	.pause = op_pause,
	.resume = op_resume,
	.resync = op_resync,
	.set_rate = op_set_rate,
	.demote = op_demote,
	.switchover = op_switchover,
	.verify = op_verify,
	.verify_result = op_verify_result,
};
