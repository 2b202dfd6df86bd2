/* Master session, first phases (spec "INIT", "MAKEPARTS", "READY: the decision"): TLS, HELLO/WELCOME, extents, the decision. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "compress.h"
#include "crashpoint.h"
#include "frame.h"
#include "frep/v1/frep.pb-c.h"
#include "lanes.h"
#include "log.h"
#include "session-internal.h"
#include "tls.h"
#include "util.h"
#include "verify.h"

/*
 * NEG-3: what the mirror chose must be what was offered. Settles the framing
 * of everything after WELCOME. 0, or -1 with the failure handled.
 */
static int settle_version(struct session *s, const Frep__V1__Welcome *w)
{
	struct master *m = s->m;
	if (w->proto_version < FREP_PROTO_VERSION || w->proto_version > FREP_PROTO_VERSION_MAX) {
		session_fail(s, ME_SEVERE, FREP_E_VERSION, "mirror chose protocol version %u, we speak "
			     "%u..%u", w->proto_version, FREP_PROTO_VERSION, FREP_PROTO_VERSION_MAX);
		return -1;
	}
	unsigned comp = FREP_COMPRESS_NONE, lanes = 1;
	if (w->proto_version >= 2) {
		comp = w->has_compression ? w->compression : FREP_COMPRESS_NONE;
		lanes = w->has_lanes ? w->lanes : 1;
		if (comp != FREP_COMPRESS_NONE && comp != s->o.compression) {
			session_fail(s, ME_SEVERE, FREP_E_PROTOCOL, "mirror chose compression %u, "
				     "which was not offered", comp);
			return -1;
		}
		unsigned asked = s->o.lanes > 1 ? s->o.lanes : 1;
		if (lanes < 1 || lanes > asked) {
			session_fail(s, ME_SEVERE, FREP_E_LANES, "mirror granted %u lanes, %u were asked for",
				     lanes, asked);
			return -1;
		}
	}
	if (s->o.compression != FREP_COMPRESS_NONE && comp == FREP_COMPRESS_NONE)
		log_warn(m->name, "the mirror %s: this session sends uncompressed",
			 w->proto_version < 2 ? "speaks protocol version 1 only"
					      : "does not take the compression offered");
	if (s->o.lanes > 1 && lanes < s->o.lanes)
		log_warn(m->name, "the mirror %s: this session has %u lane%s, not the %u asked for",
			 w->proto_version < 2 ? "speaks protocol version 1 only" : "granted fewer lanes",
			 lanes, lanes == 1 ? "" : "s", s->o.lanes);
	s->version = w->proto_version;
	s->lanes = lanes;
	if (frame_writer_set(&s->out, s->version, comp) < 0 ||
	    frame_reader_set(&s->rd, s->version, comp) < 0) {
		session_fail(s, ME_MINOR, 0, "out of memory");
		return -1;
	}
	return 0;
}

/*
 * Lane 0's HELLO for this connection: a fresh session (LANE-3) of one lane
 * asking for --lanes (LANE-1, LANE-4). Joining lanes start from it.
 */
void session_hello(struct session *s, Frep__V1__Hello *h, struct hello_keep *keep)
{
	struct master *m = s->m;
	snprintf(keep->hostname, sizeof(keep->hostname), "unknown");
	gethostname(keep->hostname, sizeof(keep->hostname) - 1);
	keep->offer = s->o.compression;

	*h = (Frep__V1__Hello)FREP__V1__HELLO__INIT;
	/* NEG-1: version 2 where the mirror speaks it, else version 1 as before. */
	h->proto_min = FREP_PROTO_VERSION;
	h->proto_max = FREP_PROTO_VERSION_MAX;
	h->n_compression = keep->offer != FREP_COMPRESS_NONE;
	h->compression = &keep->offer;
	h->has_lanes_max = s->o.lanes > 1;
	h->lanes_max = s->o.lanes;
	h->master_node = keep->hostname;
	h->volume = m->name;
	h->volume_uuid = (ProtobufCBinaryData){ sizeof(m->uuid), m->uuid };
	h->generation = m->generation;
	h->session_id = (ProtobufCBinaryData){ sizeof(s->session_id), s->session_id };
	h->lane = 0;
	h->lane_count = 1;
	pthread_mutex_lock(&m->lock);
	h->committed_txid = m->committed_txid;
	h->retained_first_txid = journal_first_txid(m->j) <= journal_last_txid(m->j) ?
					 journal_first_txid(m->j) : 0;
	h->journal_size = journal_capacity(m->j);
	pthread_mutex_unlock(&m->lock);
	h->has_epoch = true;
	h->epoch = m->epochs.epoch;
	h->n_epoch_history = m->epochs.n;
	h->epoch_history = m->epochs.start;
	h->has_sync_mode = true;
	h->sync_mode = m->sync_mode;
}

/* TLS, HELLO, WELCOME. 0, or -1 with the failure handled (state changed). */
static int connect_and_hello(struct session *s)
{
	struct master *m = s->m;
	char err[256];
	struct frame f;

	s->c = tls_client_connect(s->o.tls, s->o.host, s->o.port, s->o.server_name,
				  HANDSHAKE_TIMEOUT_MS, err, sizeof(err));
	if (!s->c) {
		session_fail(s, ME_MINOR, 0, "connect: %s", err);
		return -1;
	}
	s->last_rx_ms = now_ms();
	tls_set_read_timeout(s->c, HANDSHAKE_TIMEOUT_MS);
	/* HELLO and WELCOME are version-1 frames whatever the session becomes (FRAME-3). */
	frame_writer_free(&s->out);
	frame_writer_init(&s->out, s->c);
	s->version = FREP_PROTO_VERSION;
	s->lanes = 1;
	if (frame_reader_set(&s->rd, FREP_PROTO_VERSION, FREP_COMPRESS_NONE) < 0) {
		session_fail(s, ME_MINOR, 0, "out of memory");
		return -1;
	}
	random_bytes(s->session_id, sizeof(s->session_id));

	Frep__V1__Hello h;
	struct hello_keep keep;
	session_hello(s, &h, &keep);
	if (session_send(s, FREP_MSG_HELLO, &h.base, NULL, 0) < 0)
		return -1;

	int type = session_recv(s, &f);
	if (type < 0)
		return -1;
	if (type != FREP_MSG_WELCOME) {
		session_fail(s, ME_SEVERE, FREP_E_UNEXPECTED, "expected WELCOME, got %s",
		     frep_msg_name((unsigned)type));
		return -1;
	}
	Frep__V1__Welcome *w = (Frep__V1__Welcome *)f.msg;
	if (settle_version(s, w) < 0)
		return -1;
	s->w = (struct welcome_info){
		.known = w->known,
		.consistent = w->consistent,
		.durable_txid = w->durable_txid,
		.consistent_txid = w->consistent_txid,
		.phase = w->phase,
		.copy_cursor = w->copy_cursor,
		.copy_base = w->copy_base,
		.epoch = w->has_epoch ? w->epoch : 1,
	};
	pthread_mutex_lock(&m->lock);
	verify_link_reset_locked(m, w->has_verify && w->verify);
	pthread_mutex_unlock(&m->lock);
	/* The session ID names the session's lanes in the mirror's log and on the wire (LANE-1). */
	char sid[2 * FREP_SESSION_ID_SIZE + 1];
	log_info(m->name, "connected to mirror %s:%s (%s, protocol %u, compression %s, %u lane%s, "
		 "session %s): known=%d phase=%u durable_txid=%" PRIu64 " consistent=%d@%" PRIu64,
		 s->o.host, s->o.port, tls_cipher(s->c), s->version, compress_name(s->out.compression),
		 s->lanes, s->lanes == 1 ? "" : "s", hex_encode(s->session_id, sizeof(s->session_id), sid),
		 w->known, w->phase, w->durable_txid, w->consistent, w->consistent_txid);
	return lanes_open(s);
}

/* INIT: TLS, identities, volume, protocol version. */
void session_step_init(struct session *s)
{
	if (connect_and_hello(s) == 0)
		session_feed(s, ME_MSG_WELCOME, FREP_MSG_WELCOME);
}

/* MAKEPARTS: the mirror builds (or validates) extents like ours. */
void session_step_makeparts(struct session *s)
{
	struct master *m = s->m;
	struct frame f;
	uint64_t sizes[FREP_MAX_EXTENTS];

	/* A retry after RESET has no connection: every step revisits INIT's handshake. */
	if (!s->c && connect_and_hello(s) < 0)
		return;
	for (unsigned i = 0; i < m->vol.n; i++)
		sizes[i] = m->vol.ext[i].size;
	Frep__V1__ExtentTable t = FREP__V1__EXTENT_TABLE__INIT;
	t.n_extent_size = m->vol.n;
	t.extent_size = sizes;
	/* MP-7: what a thin mirror must have room for. Local writes may change it meanwhile. */
	if (volume_allocated(&m->vol, &t.allocated_bytes) == 0)
		t.has_allocated_bytes = true;
	else
		log_warn(m->name, "counting the allocated bytes for the mirror: %s (not sent)",
			 strerror(errno));
	if (session_send(s, FREP_MSG_EXTENT_TABLE, &t.base, NULL, 0) < 0)
		return;
	int type;
	/* FSM-1, HB-4: a HEARTBEAT is legal in MAKEPARTS; it changes nothing. */
	while ((type = session_recv(s, &f)) == FREP_MSG_HEARTBEAT)
		if (session_feed(s, ME_MSG_HEARTBEAT, FREP_MSG_HEARTBEAT) < 0)
			return;
	if (type < 0)
		return;
	if (type != FREP_MSG_PARTS_READY) {
		session_fail(s, ME_SEVERE, FREP_E_UNEXPECTED, "expected PARTS_READY, got %s",
		     frep_msg_name((unsigned)type));
		return;
	}
	Frep__V1__PartsReady *p = (Frep__V1__PartsReady *)f.msg;
	if (p->volume_size != m->vol.size) {
		session_fail(s, ME_SEVERE, FREP_E_BAD_EXTENTS, "mirror volume is %" PRIu64 " bytes, master %" PRIu64,
		     p->volume_size, m->vol.size);
		return;
	}
	log_info(m->name, "mirror extents %s", p->created ? "created" : "validated");
	session_feed(s, ME_MSG_PARTS_READY, FREP_MSG_PARTS_READY);
}

/*
 * FBK-2, FBK-3: the mirror's copy is of an earlier epoch, which our history
 * says ended after TXID t: it may hold writes after t that this copy does not
 * (a fenced old master's, demoted). Its DIVERGENCE names where; those regions
 * join the dirty bitmap, durably, and the OUTOFSYNC pass copies them with our
 * own changes since t. 0, or -1 (failed).
 */
static int fetch_divergence(struct session *s)
{
	struct master *m = s->m;
	struct frame f;
	uint64_t t, ranges = 0, bytes = 0;
	if (!epoch_end_of(&m->epochs, s->w.epoch, &t)) {
		session_fail(s, ME_SEVERE, FREP_E_DIVERGED, "the mirror's copy is of epoch %" PRIu64
			     ", which this master's history (epoch %" PRIu64 ", the last %u starts) does "
			     "not reach: no shared history to resync from", s->w.epoch, m->epochs.epoch,
			     m->epochs.n);
		return -1;
	}
	Frep__V1__DivergenceRequest q = FREP__V1__DIVERGENCE_REQUEST__INIT;
	q.since_txid = t;
	if (session_send(s, FREP_MSG_DIVERGENCE_REQUEST, &q.base, NULL, 0) < 0)
		return -1;
	for (;;) {
		int type = session_recv(s, &f);
		if (type == FREP_MSG_HEARTBEAT) {
			if (session_feed(s, ME_MSG_HEARTBEAT, FREP_MSG_HEARTBEAT) < 0)
				return -1;
			continue;
		}
		if (type < 0)
			return -1;
		if (type != FREP_MSG_DIVERGENCE) {
			session_fail(s, ME_SEVERE, FREP_E_UNEXPECTED, "expected DIVERGENCE, got %s",
				     frep_msg_name((unsigned)type));
			return -1;
		}
		Frep__V1__Divergence *d = (Frep__V1__Divergence *)f.msg;
		if (d->n_offset != d->n_length) {
			session_fail(s, ME_SEVERE, FREP_E_PROTOCOL, "DIVERGENCE with %zu offsets and %zu "
				     "lengths", d->n_offset, d->n_length);
			return -1;
		}
		for (size_t i = 0; i < d->n_length; i++)
			if (d->length[i] == 0) {
				session_fail(s, ME_SEVERE, FREP_E_PROTOCOL, "DIVERGENCE range %zu at %"
					     PRIu64 " has length 0 (FBK-3)", i, d->offset[i]);
				return -1;
			}
		pthread_mutex_lock(&m->lock);
		for (size_t i = 0; i < d->n_offset; i++)
			bitmap_set_range(m->bm, d->offset[i], d->length[i]);
		pthread_mutex_unlock(&m->lock);
		for (size_t i = 0; i < d->n_offset; i++)
			bytes += d->length[i];
		ranges += d->n_offset;
		if (session_feed(s, ME_MSG_DIVERGENCE, FREP_MSG_DIVERGENCE) < 0)
			return -1;
		if (d->last)
			break;
	}
	/*
	 * With this copy's own changes since t, durable before the pass: from
	 * START_COPY on, the mirror forgets its own record of where it changed.
	 */
	pthread_mutex_lock(&m->lock);
	int rc = bitmap_sync(m->bm) < 0 ? -1 : master_mark_since_locked(m, t);
	pthread_mutex_unlock(&m->lock);
	if (rc < 0) {
		session_fail(s, ME_SEVERE, 0, "marking what changed since TXID %" PRIu64 ": %s", t,
			     strerror(errno));
		return -1;
	}
	if (rc == 1)
		log_warn(m->name, "fail-back: this master no longer knows what it changed after TXID "
			 "%" PRIu64 " (its journal has moved on and it was not adopted with --adopt): "
			 "the whole volume is resent", t);
	s->failback = true;
	char a[16];
	log_info(m->name, "fail-back: the mirror's copy (epoch %" PRIu64 ") changed %" PRIu64
		 " range(s), %s, after TXID %" PRIu64 "; with this master's changes since, they are "
		 "resent", s->w.epoch, ranges, format_size(bytes, a, sizeof(a)), t);
	return 0;
}

/* READY: the decision table of spec/protocol.md section "READY decision". */
void session_step_ready(struct session *s)
{
	struct master *m = s->m;
	if (s->w.epoch < m->epochs.epoch && fetch_divergence(s) < 0)
		return;
	pthread_mutex_lock(&m->lock);
	uint64_t committed = m->committed_txid;
	uint64_t first = journal_first_txid(m->j);
	s->cracks_seen = m->cracks;
	pthread_mutex_unlock(&m->lock);
	const struct welcome_info *w = &s->w;

	if (w->durable_txid > committed) {
		session_fail(s, ME_SEVERE, FREP_E_AHEAD,
		     "mirror holds TXID %" PRIu64 " but the master committed only up to %" PRIu64,
		     w->durable_txid, committed);
		return;
	}
	if (!w->known || w->phase == FREP__V1__PHASE__PHASE_NONE ||
	    w->phase == FREP__V1__PHASE__PHASE_CREATED || w->phase == FREP__V1__PHASE__PHASE_REPLICATE) {
		master_fsm_feed(&s->fsm, ME_DECIDE_COPY, NULL);
	} else if (w->phase == FREP__V1__PHASE__PHASE_INSYNC && w->consistent &&
		   w->durable_txid + 1 >= first) {
		Frep__V1__StartSync ss = FREP__V1__START_SYNC__INIT;
		ss.from_txid = w->durable_txid;
		if (session_send(s, FREP_MSG_START_SYNC, &ss.base, NULL, 0) < 0)
			return;
		s->next_send = w->durable_txid + 1;
		pthread_mutex_lock(&m->lock);
		if (m->acked_txid < w->durable_txid)
			m->acked_txid = w->durable_txid;
		if (m->synced_txid < w->durable_txid)
			m->synced_txid = w->durable_txid;
		/*
		 * CRK-5: the mirror equals this master at D and this master still
		 * holds every TXID after it, so no region needs a copy. Bits left
		 * set (a crack that dropped only TXIDs the mirror already had, its
		 * acknowledgements lost with the link) are stale. A crack since
		 * the decision would have freed D + 1: then they stay.
		 */
		uint64_t stale = 0;
		if (w->durable_txid + 1 >= journal_first_txid(m->j) && m->cracks == s->cracks_seen) {
			stale = bitmap_dirty_regions(m->bm);
			bitmap_clear_all(m->bm);
		}
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		if (stale) {
			if (bitmap_sync(m->bm) < 0) {
				session_fail(s, ME_SEVERE, 0, "dirty bitmap fdatasync: %s", strerror(errno));
				return;
			}
			log_info(m->name, "%" PRIu64 " dirty region(s) are clean: the mirror is consistent "
				 "at TXID %" PRIu64 " and every later TXID is still here", stale,
				 w->durable_txid);
		}
		s->max_sent = w->durable_txid;
		s->backoff_ms = 0;
		log_info(m->name, "mirror consistent at TXID %" PRIu64 "; resending from %" PRIu64,
			 w->durable_txid, s->next_send);
		master_fsm_feed(&s->fsm, ME_DECIDE_SYNC, NULL);
	} else {
		/* Everything up to the mirror's durable TXID is there; the rest is resynced. */
		pthread_mutex_lock(&m->lock);
		if (w->consistent && m->acked_txid < w->durable_txid)
			m->acked_txid = w->durable_txid;
		pthread_mutex_unlock(&m->lock);
		master_fsm_feed(&s->fsm, ME_DECIDE_RESYNC, NULL);
	}
}
