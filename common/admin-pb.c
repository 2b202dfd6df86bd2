/* The status model as admin API messages: see admin-pb.h. */
#include <string.h>

#include "admin-pb.h"

static Frep__Admin__V1__Progress *progress_to_pb(const struct status_progress *s,
						 Frep__Admin__V1__Progress *p)
{
	frep__admin__v1__progress__init(p);
	if (!s->active)
		return NULL;
	p->done_bytes = s->done_bytes;
	p->total_bytes = s->total_bytes;
	p->rate_bps = s->rate_bps;
	p->eta_seconds = s->eta_seconds;
	return p;
}

static Frep__Admin__V1__Peer *peer_to_pb(const struct status_peer *s, Frep__Admin__V1__Peer *p)
{
	frep__admin__v1__peer__init(p);
	if (!s->connected)
		return NULL;
	p->address = (char *)s->address;
	p->identity = (char *)s->identity;
	p->cipher = (char *)s->cipher;
	p->lanes = s->lanes;
	p->compression_ratio = s->compression_ratio;
	p->compression = (char *)s->compression;
	p->protocol = s->protocol;
	p->data_bytes = s->data_bytes;
	p->wire_bytes = s->wire_bytes;
	return p;
}

void verify_to_pb(const struct status_verify *v, Frep__Admin__V1__VerifyStatus *out,
		  Frep__Admin__V1__Progress *progress)
{
	frep__admin__v1__verify_status__init(out);
	out->verify_id = v->verify_id;
	out->running = v->running;
	out->repair = v->repair;
	out->progress = progress_to_pb(&v->progress, progress);
	out->mismatched_regions = v->mismatched_regions;
	out->repaired_regions = v->repaired_regions;
	out->started_unix_ms = v->started_unix_ms;
	out->finished_unix_ms = v->finished_unix_ms;
	out->outcome = (char *)v->outcome;
}

Frep__Admin__V1__VolumeStatus *status_to_pb(const struct vol_status *v, struct pb_vol *p)
{
	Frep__Admin__V1__VolumeStatus *vs = &p->vs;

	frep__admin__v1__volume_status__init(vs);
	vs->name = (char *)v->name;
	vs->role = (Frep__Admin__V1__Role)v->role;
	vs->state = (Frep__Admin__V1__State)v->state;
	vs->state_since_unix_ms = v->state_since_unix_ms;
	if (v->last_error.set) {
		frep__admin__v1__error__init(&p->error);
		p->error.code = (char *)v->last_error.code;
		p->error.message = (char *)v->last_error.message;
		p->error.time_unix_ms = v->last_error.time_unix_ms;
		vs->last_error = &p->error;
	}
	if (v->verify.verify_id) {
		verify_to_pb(&v->verify, &p->verify, &p->verify_progress);
		vs->verify = &p->verify;
	}
	if (v->role == FREP__ADMIN__V1__ROLE__MASTER) {
		const struct status_master *s = &v->master;
		Frep__Admin__V1__MasterStatus *m = &p->master;
		frep__admin__v1__master_status__init(m);
		m->committed_txid = s->committed_txid;
		m->acked_txid = s->acked_txid;
		m->applied_txid = s->applied_txid;
		m->lag_tx = s->lag_tx;
		m->lag_bytes = s->lag_bytes;
		m->lag_seconds = s->lag_seconds;
		m->buffer_used_bytes = s->buffer_used_bytes;
		m->buffer_free_bytes = s->buffer_free_bytes;
		m->write_rate_bps = s->write_rate_bps;
		m->send_rate_bps = s->send_rate_bps;
		m->copy = progress_to_pb(&s->copy, &p->copy);
		m->resync_full = s->resync_full;
		m->dirty_bytes = s->dirty_bytes;
		m->mode = (Frep__Admin__V1__Mode)s->mode;
		m->on_buffer_full = (Frep__Admin__V1__OnBufferFull)s->on_buffer_full;
		m->degraded = s->degraded;
		m->peer = peer_to_pb(&s->peer, &p->peer);
		m->paused = s->paused;
		m->max_rate_bps = s->max_rate_bps;
		m->full_waits = s->full_waits;
		m->journal_appends = s->journal_appends;
		m->journal_syncs = s->journal_syncs;
		m->cracks = s->cracks;
		m->volume_size_bytes = s->volume_size_bytes;
		m->outrun = s->outrun;
		m->epoch = s->epoch;
		if (s->fenced.set) {
			Frep__Admin__V1__Fenced *f = &p->fenced;
			frep__admin__v1__fenced__init(f);
			f->epoch = s->fenced.epoch;
			f->txid = s->fenced.txid;
			f->unix_ms = s->fenced.unix_ms;
			f->message = (char *)s->fenced.message;
			f->discard_tx = s->fenced.discard_tx;
			f->discard_bytes = s->fenced.discard_bytes;
			f->serving = s->fenced.serving;
			f->since_unix_ms = s->fenced.since_unix_ms;
			m->fenced = f;
		}
		vs->master = m;
	} else if (v->role == FREP__ADMIN__V1__ROLE__MIRROR) {
		const struct status_mirror *s = &v->mirror;
		Frep__Admin__V1__MirrorStatus *m = &p->mirror;
		frep__admin__v1__mirror_status__init(m);
		m->owner_identity = (char *)s->owner_identity;
		m->consistent = s->consistent;
		m->consistent_txid = s->consistent_txid;
		m->consistent_unix_ms = s->consistent_unix_ms;
		m->last_applied_txid = s->last_applied_txid;
		m->journal_used_bytes = s->journal_used_bytes;
		m->journal_size_bytes = s->journal_size_bytes;
		m->connected_master = peer_to_pb(&s->connected_master, &p->peer);
		m->volume_size_bytes = s->volume_size_bytes;
		m->copy = progress_to_pb(&s->copy, &p->copy);
		m->snapshots = s->snapshots;
		m->snapshot_bytes = s->snapshot_bytes;
		m->snapshots_invalid = s->snapshots_invalid;
		m->exports = s->exports;
		m->preallocate = (char *)s->preallocate;
		m->epoch = s->epoch;
		if (s->promotion.set) {
			const struct status_promotion *q = &s->promotion;
			Frep__Admin__V1__Promotion *o = &p->promotion;
			frep__admin__v1__promotion__init(o);
			o->epoch = q->epoch;
			o->txid = q->txid;
			o->unix_ms = q->unix_ms;
			o->source = (char *)q->source;
			o->forced = q->forced;
			o->recovery_txid = q->recovery_txid;
			o->recovery_unix_ms = q->recovery_unix_ms;
			o->master_mode = (char *)q->master_mode;
			o->loss = (char *)q->loss;
			o->disconnected_master = (char *)q->disconnected_master;
			m->promotion = o;
		}
		vs->mirror = m;
	}
	return vs;
}

Frep__Admin__V1__Snapshot *snapshot_to_pb(const struct status_snapshot *s, struct pb_snapshot *p)
{
	Frep__Admin__V1__Snapshot *o = &p->snap;
	frep__admin__v1__snapshot__init(o);
	o->volume = (char *)s->volume;
	o->name = (char *)s->name;
	o->kind = s->kind;
	o->txid = s->txid;
	o->created_unix_ms = s->created_unix_ms;
	o->used_bytes = s->used_bytes;
	o->valid = s->valid;
	o->invalid_reason = (char *)s->invalid_reason;
	o->invalidated_unix_ms = s->invalidated_unix_ms;
	if (s->exported) {
		Frep__Admin__V1__SnapshotExport *e = &p->exp;
		frep__admin__v1__snapshot_export__init(e);
		e->nbd = (char *)s->export_nbd;
		e->export_name = (char *)s->export_name;
		e->since_unix_ms = s->export_since_unix_ms;
		e->pid = s->export_pid;
		o->export = e;
	}
	return o;
}
