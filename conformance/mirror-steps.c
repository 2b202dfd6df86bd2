/* frep-conform as a master: the legal steps its mirror cases are made of. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "mirror.h"
#include "util.h"

/* Deterministic data: a case can say what it sent without keeping it. */
void cx_fill(uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t v = seed * 0x9E3779B97F4A7C15ull + 1;
	for (size_t i = 0; i < len; i++) {
		v ^= v << 13;
		v ^= v >> 7;
		v ^= v << 17;
		buf[i] = (uint8_t)v;
	}
}

void cx_fill_compressible(uint8_t *buf, size_t len, uint64_t seed)
{
	uint8_t pattern[64];
	cx_fill(pattern, sizeof(pattern), seed);
	for (size_t i = 0; i < len; i++)
		buf[i] = pattern[i % sizeof(pattern)];
}

void cx_hash(const void *buf, size_t len, uint8_t out[FREP_VERIFY_HASH_SIZE])
{
	XXH128_canonicalFromHash((XXH128_canonical_t *)out, XXH3_128bits(buf, len));
}

int cx_run(struct cctx *x, const char *what, const char *cmd)
{
	fflush(NULL);
	int rc = system(cmd);
	if (rc != 0)
		return cx_fail(x, "%s (%s) exited with status %d", what, cmd, rc);
	return 0;
}

void hello_defaults(struct cctx *x, struct hello_args *a)
{
	*a = (struct hello_args){
		.volume = x->volume,
		.proto_min = 1,
		.proto_max = x->proto_max ? x->proto_max : 1,
		.lane = 0,
		.lane_count = 1,
		.uuid = x->uuid,
		.uuid_len = sizeof(x->uuid),
		.session_id_len = FREP_SESSION_ID_SIZE,
		.master_node = "frep-conform",
		.generation = x->generation,
		.has_epoch = x->epoch != 0,
		.epoch = x->epoch,
		.epoch_start = x->epoch_start,
		.n_epoch_start = x->n_epoch_start,
		.compression = x->offer_compression ? &x->offer_compression : NULL,
		.n_compression = x->offer_compression != 0,
		.lanes_max = x->lanes_max,
	};
}

int m_send_hello(struct cctx *x, const struct hello_args *a)
{
	Frep__V1__Hello h = FREP__V1__HELLO__INIT;
	uint8_t sid[64];
	char vol[128];

	random_bytes(sid, sizeof(sid));
	if (a->sid && a->session_id_len <= sizeof(sid))
		memcpy(sid, a->sid, a->session_id_len);
	if (a->session_id_len == sizeof(x->sid))
		memcpy(x->sid, sid, sizeof(x->sid));
	h.proto_min = a->proto_min;
	h.proto_max = a->proto_max;
	h.master_node = (char *)a->master_node;
	snprintf(vol, sizeof(vol), "%s", a->volume);
	h.volume = vol;
	h.volume_uuid.data = (uint8_t *)a->uuid;
	h.volume_uuid.len = a->uuid_len;
	h.generation = a->generation;
	h.session_id.data = sid;
	h.session_id.len = a->session_id_len;
	h.lane = a->lane;
	h.lane_count = a->lane_count;
	h.retained_first_txid = 0;
	h.committed_txid = 0;
	h.journal_size = 16 << 20;
	if (a->has_epoch) {
		h.has_epoch = true;
		h.epoch = a->epoch;
		h.n_epoch_history = a->n_epoch_start;
		h.epoch_history = (uint64_t *)a->epoch_start;
	}
	h.compression = (uint32_t *)a->compression;
	h.n_compression = a->n_compression;
	h.has_lanes_max = a->lanes_max != 0;
	h.lanes_max = a->lanes_max;
	return cx_send(x, FREP_MSG_HELLO, &h.base, NULL, 0);
}

static void copy_welcome(const struct frame *f, struct welcome *w)
{
	const Frep__V1__Welcome *m = (const Frep__V1__Welcome *)f->msg;
	*w = (struct welcome){
		.proto_version = m->proto_version,
		.known = m->known,
		.consistent = m->consistent,
		.durable_txid = m->durable_txid,
		.consistent_txid = m->consistent_txid,
		.copy_cursor = m->copy_cursor,
		.copy_base = m->has_copy_base ? m->copy_base : 0,
		.phase = m->phase,
		.verify = m->has_verify && m->verify,
		.epoch = m->has_epoch ? m->epoch : 1,
		.has_compression = m->has_compression,
		.has_lanes = m->has_lanes,
		.compression = m->compression,
		.lanes = m->has_lanes ? m->lanes : 1,
	};
}

int m_open(struct cctx *x, struct welcome *w)
{
	uint64_t end = now_ms() + (uint64_t)x->cf->timeout_ms;
	for (;;) {
		struct hello_args a;
		struct frame f;
		hello_defaults(x, &a);
		STEP(cx_connect(x));
		STEP(m_send_hello(x, &a));
		if (cx_recv(x, &f, x->p.timeout_ms) != FRAME_OK)
			return cx_fail(x, "no WELCOME: %s", x->why);
		if (f.hdr.type == FREP_MSG_WELCOME) {
			struct welcome got;
			copy_welcome(&f, &got);
			if (w)
				*w = got;
			x->version = got.proto_version;
			x->compression = got.proto_version >= 2 ? got.compression : 0;
			return got.proto_version >= 2 ? cx_settle(x, got.proto_version, x->compression) : 0;
		}
		/* The previous session may still be closing (checkpoint): BUSY is minor (HS-6). */
		bool busy = f.hdr.type == FREP_MSG_ERROR &&
			    ((const Frep__V1__Error *)f.msg)->code == FREP_E_BUSY;
		if (!busy) {
			cx_abort(x);
			return cx_fail(x, "expected WELCOME, got %s", frep_msg_name(f.hdr.type));
		}
		cx_abort(x);
		if (now_ms() > end)
			return cx_fail(x, "the volume stayed BUSY for %d ms after its session ended",
				       x->cf->timeout_ms);
		usleep(50 * 1000);
	}
}

int m_reopen(struct cctx *x, struct welcome *w)
{
	if (x->p.c)
		cx_close(x);
	return m_open(x, w);
}

int m_parts(struct cctx *x, const uint64_t *sizes, size_t n, bool *created)
{
	Frep__V1__ExtentTable t = FREP__V1__EXTENT_TABLE__INIT;
	uint64_t one = x->volume_size, sum = 0;
	struct frame f;

	if (!sizes) {
		sizes = &one;
		n = 1;
	}
	t.extent_size = (uint64_t *)sizes;
	t.n_extent_size = n;
	for (size_t i = 0; i < n; i++)
		sum += sizes[i];
	STEP(cx_send(x, FREP_MSG_EXTENT_TABLE, &t.base, NULL, 0));
	STEP(cx_expect(x, FREP_MSG_PARTS_READY, &f));
	const Frep__V1__PartsReady *pr = (const Frep__V1__PartsReady *)f.msg;
	CHECK(x, pr->volume_size == sum, "PARTS_READY volume_size %" PRIu64 ", the extents sum to %" PRIu64,
	      pr->volume_size, sum);
	if (created)
		*created = pr->created;
	x->volume_size = sum;
	return 0;
}

int m_ready(struct cctx *x, struct welcome *w)
{
	STEP(m_open(x, w));
	return m_parts(x, NULL, 0, NULL);
}

int m_start_copy(struct cctx *x, uint32_t kind, uint64_t base, bool full, uint64_t start_offset)
{
	Frep__V1__StartCopy s = FREP__V1__START_COPY__INIT;
	s.kind = kind;
	s.base_txid = base;
	s.total_bytes = x->volume_size;
	s.has_full = true;
	s.full = full;
	s.has_start_offset = start_offset != 0;
	s.start_offset = start_offset;
	m_reset_seen(x);
	return cx_send(x, FREP_MSG_START_COPY, &s.base, NULL, 0);
}

int m_copy_done(struct cctx *x, uint64_t last_txid, uint64_t copied)
{
	Frep__V1__CopyDone d = FREP__V1__COPY_DONE__INIT;
	d.last_txid = last_txid;
	d.copied_bytes = copied;
	return cx_send(x, FREP_MSG_COPY_DONE, &d.base, NULL, 0);
}

int m_copy_data(struct cctx *x, uint64_t offset, uint32_t len, uint64_t seed)
{
	Frep__V1__CopyData d = FREP__V1__COPY_DATA__INIT;
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return cx_fail(x, "out of memory");
	cx_fill(buf, len, seed);
	d.offset = offset;
	d.data_crc = frep_crc32c(buf, len);
	d.has_length = x->version >= 2; /* COMP-3: a compressed trailer needs it */
	d.length = len;
	int rc = cx_send(x, FREP_MSG_COPY_DATA, &d.base, buf, len);
	free(buf);
	return rc;
}

int m_copy_hole(struct cctx *x, uint64_t offset, uint64_t len)
{
	Frep__V1__CopyHole h = FREP__V1__COPY_HOLE__INIT;
	h.offset = offset;
	h.length = len;
	return cx_send(x, FREP_MSG_COPY_HOLE, &h.base, NULL, 0);
}

int m_insync(struct cctx *x)
{
	return m_insync_w(x, NULL);
}

int m_insync_w(struct cctx *x, struct welcome *w)
{
	uint64_t t;
	STEP(m_ready(x, w));
	STEP(m_start_copy(x, FREP__V1__PHASE__PHASE_REPLICATE, 0, true, 0));
	STEP(m_copy_hole(x, 0, x->volume_size));
	STEP(m_copy_done(x, 0, 0));
	STEP(m_wait_consistent(x, &t));
	CHECK(x, t == 0, "CONSISTENT txid %" PRIu64 " after an empty pass from base 0 (COPY-11: 0)", t);
	return 0;
}

int m_tx_gen(struct cctx *x, uint64_t txid, uint64_t generation, unsigned op, uint64_t offset,
	     uint32_t len)
{
	Frep__V1__Tx t = FREP__V1__TX__INIT;
	uint8_t *buf = NULL;
	uint32_t tl = 0;
	t.generation = generation;
	t.txid = txid;
	t.op = (Frep__V1__TxOp)op;
	t.offset = offset;
	t.length = len;
	if (op == FREP__V1__TX_OP__TX_WRITE) {
		if (!(buf = malloc(len ? len : 1)))
			return cx_fail(x, "out of memory");
		cx_fill(buf, len, txid);
		t.data_crc = frep_crc32c(buf, len);
		tl = len;
	}
	int rc = cx_send(x, FREP_MSG_TX, &t.base, buf, tl);
	free(buf);
	return rc;
}

int m_tx(struct cctx *x, uint64_t txid, unsigned op, uint64_t offset, uint32_t len)
{
	return m_tx_gen(x, txid, x->generation, op, offset, len);
}

void m_reset_seen(struct cctx *x)
{
	memset(&x->seen, 0, sizeof(x->seen));
}

/* Notes an acknowledgement-like frame; false if f is something else. */
static bool absorb(struct cctx *x, const struct frame *f)
{
	struct seen *s = &x->seen;
	switch (f->hdr.type) {
	case FREP_MSG_TX_ACK: {
		uint64_t t = ((const Frep__V1__TxAck *)f->msg)->txid;
		if (s->n_tx_acks && t < s->tx_ack)
			s->tx_ack_decreased = true;
		s->tx_ack = t > s->tx_ack ? t : s->tx_ack;
		s->n_tx_acks++;
		return true;
	}
	case FREP_MSG_COPY_ACK: {
		uint64_t t = ((const Frep__V1__CopyAck *)f->msg)->through;
		s->copy_ack = t > s->copy_ack ? t : s->copy_ack;
		s->n_copy_acks++;
		return true;
	}
	case FREP_MSG_CONSISTENT:
		s->consistent = true;
		s->consistent_txid = ((const Frep__V1__Consistent *)f->msg)->txid;
		return true;
	case FREP_MSG_VERIFY_RESULT: {
		const Frep__V1__VerifyResult *r = (const Frep__V1__VerifyResult *)f->msg;
		if (s->n_verify_results < SEEN_VERIFY_MAX) {
			struct seen_verify *v = &s->vr[s->n_verify_results];
			*v = (struct seen_verify){ .verify_id = r->verify_id, .offset = r->offset,
						   .txid = r->txid, .status = r->status };
			if (r->has_hash && r->hash.len <= sizeof(v->hash)) {
				v->hash_len = r->hash.len;
				memcpy(v->hash, r->hash.data, r->hash.len);
			} else if (r->has_hash) {
				v->hash_len = r->hash.len; /* too long: the length tells */
			}
		}
		s->n_verify_results++;
		return true;
	}
	case FREP_MSG_RESEND:
		s->n_resends++;
		s->resend_from = ((const Frep__V1__Resend *)f->msg)->from_txid;
		s->resend_to = ((const Frep__V1__Resend *)f->msg)->to_txid;
		return true;
	default:
		return false;
	}
}

/* Reads frames, noting acknowledgements, until done(x) holds. */
static int wait_until(struct cctx *x, bool (*done)(struct cctx *, uint64_t), uint64_t arg,
		      const char *what)
{
	struct frame f;
	uint64_t end = now_ms() + (uint64_t)x->p.timeout_ms;
	while (!done(x, arg)) {
		uint64_t now = now_ms();
		if (now >= end)
			return cx_fail(x, "no %s within %d ms", what, x->p.timeout_ms);
		enum frame_status st = cx_recv(x, &f, (int)(end - now));
		if (st == FRAME_EOF)
			return cx_fail(x, "the mirror closed the connection while %s was awaited", what);
		if (st == FRAME_ERR) {
			char why[sizeof(x->why)];
			snprintf(why, sizeof(why), "%s", x->why);
			return cx_fail(x, "waiting for %s: %s", what, why);
		}
		if (absorb(x, &f))
			continue;
		if (f.hdr.type == FREP_MSG_HEARTBEAT &&
		    ((const Frep__V1__Heartbeat *)f.msg)->seq == x->hb_seq && done(x, UINT64_MAX)) {
			x->seen.echo_txid = ((const Frep__V1__Heartbeat *)f.msg)->txid;
			break;
		}
		if (f.hdr.type == FREP_MSG_ERROR)
			return cx_fail(x, "waiting for %s, got ERROR %s: \"%.300s\"", what,
				       frep_error_name(((const Frep__V1__Error *)f.msg)->code),
				       ((const Frep__V1__Error *)f.msg)->message);
		return cx_fail(x, "waiting for %s, got %s", what, frep_msg_name(f.hdr.type));
	}
	return 0;
}

static bool acked(struct cctx *x, uint64_t t)
{
	return t != UINT64_MAX && x->seen.n_tx_acks && x->seen.tx_ack >= t;
}

static bool verified(struct cctx *x, uint64_t n)
{
	return n != UINT64_MAX && x->seen.n_verify_results >= n;
}

int m_wait_verify(struct cctx *x, unsigned n)
{
	char what[64];
	snprintf(what, sizeof(what), "VERIFY_RESULT number %u", n);
	return wait_until(x, verified, n, what);
}

int m_verify(struct cctx *x, uint64_t id, uint64_t offset, uint64_t length, uint64_t txid,
	     const uint8_t *hash, size_t hash_len)
{
	Frep__V1__Verify v = FREP__V1__VERIFY__INIT;
	v.verify_id = id;
	v.offset = offset;
	v.length = length;
	v.txid = txid;
	v.hash.data = (uint8_t *)hash;
	v.hash.len = hash_len;
	return cx_send(x, FREP_MSG_VERIFY, &v.base, NULL, 0);
}

int m_wait_ack(struct cctx *x, uint64_t txid)
{
	char what[64];
	snprintf(what, sizeof(what), "TX_ACK of TXID %" PRIu64, txid);
	return wait_until(x, acked, txid, what);
}

static bool consistent(struct cctx *x, uint64_t t)
{
	(void)t;
	return x->seen.consistent;
}

int m_wait_consistent(struct cctx *x, uint64_t *txid)
{
	STEP(wait_until(x, consistent, 0, "CONSISTENT"));
	*txid = x->seen.consistent_txid;
	return 0;
}

static bool copy_acked(struct cctx *x, uint64_t t)
{
	return t != UINT64_MAX && x->seen.n_copy_acks && x->seen.copy_ack >= t;
}

int m_wait_copy_ack(struct cctx *x, uint64_t at_least)
{
	char what[64];
	snprintf(what, sizeof(what), "COPY_ACK through %" PRIu64 " or more", at_least);
	return wait_until(x, copy_acked, at_least, what);
}

/* The echo ends the wait: done() is asked with UINT64_MAX when it arrives. */
static bool echoed(struct cctx *x, uint64_t t)
{
	(void)x;
	return t == UINT64_MAX;
}

int m_wait_echo(struct cctx *x)
{
	return wait_until(x, echoed, 0, "the HEARTBEAT echo");
}

int m_sync(struct cctx *x)
{
	Frep__V1__Heartbeat hb = FREP__V1__HEARTBEAT__INIT;
	hb.seq = ++x->hb_seq;
	hb.txid = 0;
	STEP(cx_send(x, FREP_MSG_HEARTBEAT, &hb.base, NULL, 0));
	return m_wait_echo(x);
}

int m_goodbye(struct cctx *x)
{
	Frep__V1__Goodbye g = FREP__V1__GOODBYE__INIT;
	g.reason = "conformance case done";
	STEP(cx_send(x, FREP_MSG_GOODBYE, &g.base, NULL, 0));
	return cx_expect_close(x);
}

int m_power_cycle(struct cctx *x)
{
	struct conform *cf = x->cf;
	if (!cf->crash_cmd || !cf->restart_cmd)
		return cx_skip(x, "needs --crash-cmd and --restart-cmd");
	STEP(cx_run(x, "--crash-cmd", cf->crash_cmd));
	if (x->p.c)
		cx_abort(x);
	return cx_run(x, "--restart-cmd", cf->restart_cmd);
}

const char *mstate_name(int s)
{
	static const char *const n[MS__N] = { "INIT", "MAKEPARTS", "READY", "REPLICATE",
					       "OUTOFSYNC", "INSYNC", "IDLE" };
	return s >= 0 && s < MS__N ? n[s] : "?";
}

int m_reach(struct cctx *x, int s)
{
	switch (s) {
	case MS_INIT:
		return cx_connect(x);
	case MS_MAKEPARTS:
		return m_open(x, NULL);
	case MS_READY:
		return m_ready(x, NULL);
	case MS_REPLICATE:
		STEP(m_ready(x, NULL));
		STEP(m_start_copy(x, FREP__V1__PHASE__PHASE_REPLICATE, 0, true, 0));
		return m_sync(x);
	case MS_OUTOFSYNC:
		STEP(m_insync(x));
		STEP(m_start_copy(x, FREP__V1__PHASE__PHASE_OUTOFSYNC, 0, false, 0));
		return m_sync(x);
	case MS_INSYNC:
		return m_insync(x);
	case MS_IDLE: {
		Frep__V1__Pause p = FREP__V1__PAUSE__INIT;
		STEP(m_insync(x));
		STEP(cx_send(x, FREP_MSG_PAUSE, &p.base, NULL, 0));
		return m_sync(x);
	}
	default:
		return cx_fail(x, "internal: no state %d", s);
	}
}
