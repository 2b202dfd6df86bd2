/*
 * frep-conform as a mirror: the legal steps its master cases are made of, and
 * the master's volume as the cases write it through its NBD export (libnbd).
 * Every frame the master sends on the way is checked against the rules that
 * bind it wherever it appears (HELLO fields, copy records, TX contents).
 */
#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master.h"
#include "tls.h"
#include "util.h"

#define PH_NONE FREP__V1__PHASE__PHASE_NONE
#define PH_REPLICATE FREP__V1__PHASE__PHASE_REPLICATE
#define PH_OUTOFSYNC FREP__V1__PHASE__PHASE_OUTOFSYNC
#define PH_INSYNC FREP__V1__PHASE__PHASE_INSYNC
#define TX_WRITE FREP__V1__TX_OP__TX_WRITE
#define TX_TRIM FREP__V1__TX_OP__TX_TRIM
#define TX_ZERO FREP__V1__TX_OP__TX_ZERO

enum {
	MAX_VOLUME = 256 << 20, /* the model and the image live in memory */
	NBD_CHUNK = 4 << 20,	/* bytes per NBD read of the whole volume */
	NBD_RETRY_MS = 20,
};

struct mwelcome wel_new(void)
{
	return (struct mwelcome){ .proto_version = 1, .phase = PH_NONE };
}

struct mwelcome wel_insync(uint64_t d)
{
	return (struct mwelcome){ .proto_version = 1, .known = true, .consistent = true,
				  .durable_txid = d, .consistent_txid = d, .phase = PH_INSYNC };
}

int ms_init(struct cctx *x)
{
	if (!(x->ms = calloc(1, sizeof(*x->ms))))
		return cx_fail(x, "out of memory");
	x->ms->x = x;
	x->ms->echo = true;
	return 0;
}

void ms_free(struct cctx *x)
{
	struct mside *s = x->ms;
	if (!s)
		return;
	ms_nbd_close(s);
	free(s->got);
	free(s->wrote);
	free(s->model);
	free(s->img);
	free(s);
	x->ms = NULL;
}

/* Grows *arr (elements of size sz) to hold one more; the new slot, or NULL. */
static void *push(void **arr, size_t *n, size_t *cap, size_t sz)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		void *p = realloc(*arr, c * sz);
		if (!p)
			return NULL;
		*arr = p;
		*cap = c;
	}
	return (char *)*arr + (*n)++ * sz;
}

/* --- reading -------------------------------------------------------------------- */

/* HB-1: the master's heartbeats count up by one and carry its committed TXID. */
int ms_on_heartbeat(struct mside *s, const struct frame *f)
{
	const Frep__V1__Heartbeat *hb = (const Frep__V1__Heartbeat *)f->msg;
	if (!s->hb_bad[0]) {
		if (s->n_hb && hb->seq != s->hb_seq + 1)
			snprintf(s->hb_bad, sizeof(s->hb_bad), "HEARTBEAT seq %" PRIu64 " after %" PRIu64
				 ": it must increase by one with each heartbeat (HB-1)", hb->seq, s->hb_seq);
		else if (s->n_hb && hb->txid < s->hb_txid)
			snprintf(s->hb_bad, sizeof(s->hb_bad), "HEARTBEAT txid %" PRIu64 " after %" PRIu64
				 ": the committed TXID went back (HB-1, DUR-2)", hb->txid, s->hb_txid);
		else if (hb->txid > s->committed)
			snprintf(s->hb_bad, sizeof(s->hb_bad), "HEARTBEAT txid %" PRIu64 ", but the case's "
				 "writes committed only up to TXID %" PRIu64 " (HB-1)", hb->txid, s->committed);
	}
	uint64_t now = now_ms();
	if (s->n_hb && now - s->hb_last_ms > s->hb_max_gap_ms)
		s->hb_max_gap_ms = now - s->hb_last_ms;
	s->n_hb++;
	s->hb_seq = hb->seq;
	s->hb_txid = hb->txid;
	s->hb_last_ms = now;
	if (!s->echo)
		return 0;
	/* HB-2: the same seq, and the last TXID this mirror acknowledged. */
	Frep__V1__Heartbeat e = FREP__V1__HEARTBEAT__INIT;
	e.seq = hb->seq;
	e.txid = s->acked;
	return cx_send(s->x, FREP_MSG_HEARTBEAT, &e.base, NULL, 0);
}

enum frame_status ms_recv(struct mside *s, struct frame *f, int timeout_ms)
{
	struct cctx *x = s->x;
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	x->p.skip_heartbeats = false;
	for (;;) {
		uint64_t now = now_ms();
		enum frame_status st = cx_recv(x, f, now >= end ? 0 : (int)(end - now));
		if (st != FRAME_OK || f->hdr.type != FREP_MSG_HEARTBEAT)
			return st;
		if (ms_on_heartbeat(s, f) < 0)
			return FRAME_ERR;
	}
}

static int unexpected(struct mside *s, const char *want, const struct frame *f)
{
	if (f->hdr.type == FREP_MSG_ERROR) {
		const Frep__V1__Error *e = (const Frep__V1__Error *)f->msg;
		return cx_fail(s->x, "expected %s, got ERROR %s: \"%.300s\"", want,
			       frep_error_name(e->code), e->message);
	}
	return cx_fail(s->x, "expected %s, got %s", want, frep_msg_name(f->hdr.type));
}

/* Why a read ended without a frame, kept in x->why. */
static int read_failed(struct mside *s, enum frame_status st, const char *want)
{
	if (st == FRAME_EOF)
		return cx_fail(s->x, "expected %s, the master closed the connection", want);
	char why[sizeof(s->x->why)];
	snprintf(why, sizeof(why), "%s", s->x->why);
	return cx_fail(s->x, "expected %s: %s", want, why);
}

int ms_expect(struct mside *s, unsigned type, struct frame *f)
{
	struct frame tmp;
	if (!f)
		f = &tmp;
	enum frame_status st = ms_recv(s, f, s->x->p.timeout_ms);
	if (st != FRAME_OK)
		return read_failed(s, st, frep_msg_name(type));
	if (f->hdr.type != type)
		return unexpected(s, frep_msg_name(type), f);
	return 0;
}

int ms_quiet(struct mside *s, int ms)
{
	struct cctx *x = s->x;
	struct frame f;
	uint64_t end = now_ms() + (uint64_t)ms;
	for (;;) {
		uint64_t now = now_ms();
		if (now >= end || !tls_readable(x->p.c, (int)(end - now)))
			return 0;
		enum frame_status st = cx_recv(x, &f, x->p.timeout_ms);
		if (st == FRAME_OK && f.hdr.type == FREP_MSG_HEARTBEAT) {
			STEP(ms_on_heartbeat(s, &f));
			continue;
		}
		if (st == FRAME_OK)
			return unexpected(s, "no answer", &f);
		if (st == FRAME_EOF)
			return cx_fail(x, "expected no answer, the master closed the connection");
		return read_failed(s, st, "no answer");
	}
}

int ms_expect_close(struct mside *s)
{
	struct cctx *x = s->x;
	struct frame f;
	uint64_t end = now_ms() + (uint64_t)x->p.timeout_ms;
	for (;;) {
		uint64_t now = now_ms();
		enum frame_status st = cx_recv(x, &f, now >= end ? 0 : (int)(end - now));
		if (st == FRAME_EOF) {
			cx_close(x);
			return 0;
		}
		/* One already on its way when the master read ours. */
		if (st == FRAME_OK && f.hdr.type == FREP_MSG_HEARTBEAT)
			continue;
		if (st == FRAME_OK)
			return unexpected(s, "the master to close the connection", &f);
		return read_failed(s, st, "the master to close the connection");
	}
}

int ms_no_reconnect(struct mside *s, int ms)
{
	struct pollfd p = { .fd = s->x->cf->listen_fd, .events = POLLIN };
	uint64_t start = now_ms();
	int rc = poll(&p, 1, ms);
	if (rc > 0)
		return cx_fail(s->x, "the master connected again %" PRIu64 " ms later; after a severe "
			       "error it must wait for an operator (ERR-3, FSM-6)", now_ms() - start);
	return 0;
}

/* --- handshake ------------------------------------------------------------------- */

int ms_accept(struct mside *s)
{
	struct cctx *x = s->x;
	struct frame f;
	STEP(cx_accept(x));
	s->accepted_ms = now_ms();
	s->n_hb = 0;
	s->hb_max_gap_ms = 0;
	s->copy = (struct mcopy){ 0 };
	s->next_txid = s->max_txid = s->acked = 0;
	/* HS-1: HELLO comes first, nothing before it (not even a HEARTBEAT, HB-4). */
	x->p.skip_heartbeats = false;
	STEP(cx_expect(x, FREP_MSG_HELLO, &f));
	const Frep__V1__Hello *h = (const Frep__V1__Hello *)f.msg;
	CHECK(x, h->proto_min <= 1 && h->proto_max >= 1,
	      "HELLO offers protocol versions %u..%u, which do not include 1 (HS-3)", h->proto_min,
	      h->proto_max);
	CHECK(x, h->lane == 0 && h->lane_count == 1,
	      "HELLO lane %u of %u; version 1 has exactly one lane, 0 of 1 (LANE-1, LANE-2)", h->lane,
	      h->lane_count);
	CHECK(x, h->volume_uuid.len == FREP_UUID_SIZE && h->session_id.len == FREP_SESSION_ID_SIZE,
	      "HELLO volume_uuid of %zu bytes, session_id of %zu; both must be 16 (HS-2, LANE-1)",
	      h->volume_uuid.len, h->session_id.len);
	CHECK(x, volume_name_valid(h->volume), "HELLO volume \"%.80s\" is not a valid name (HS-2)",
	      h->volume);
	CHECK(x, strlen(h->master_node) <= FREP_MAX_NODE_NAME,
	      "HELLO master_node of %zu bytes; at most 255 (MSG-4)", strlen(h->master_node));
	CHECK(x, h->generation >= 1, "HELLO generation 0: it is bumped at every start (DUR-3)");
	CHECK(x, h->retained_first_txid <= h->committed_txid,
	      "HELLO retained_first_txid %" PRIu64 " above committed_txid %" PRIu64,
	      h->retained_first_txid, h->committed_txid);
	if (s->hellos) {
		CHECK(x, !strcmp(h->volume, s->h.volume) && !memcmp(h->volume_uuid.data, s->h.uuid, 16),
		      "the master's volume or its UUID changed between connections (HS-5)");
		CHECK(x, memcmp(h->session_id.data, s->h.session_id, 16) != 0,
		      "HELLO repeats the previous connection's session_id; every connection attempt "
		      "gets a fresh random one (LANE-3)");
		if (s->restarted)
			CHECK(x, h->generation > s->h.generation,
			      "HELLO generation %" PRIu64 " after a restart, before it %" PRIu64 "; it is "
			      "incremented at every master start (DUR-3)", h->generation, s->h.generation);
		else
			CHECK(x, h->generation >= s->h.generation,
			      "HELLO generation %" PRIu64 " below the previous %" PRIu64 " (DUR-3)",
			      h->generation, s->h.generation);
		CHECK(x, h->committed_txid >= s->committed,
		      "HELLO committed_txid %" PRIu64 ", but writes replied through NBD made %" PRIu64
		      " (DUR-1)", h->committed_txid, s->committed);
		CHECK(x, h->committed_txid == s->committed,
		      "HELLO committed_txid %" PRIu64 ", but only the case's writes made TXIDs, up to %"
		      PRIu64 " (DUR-2)", h->committed_txid, s->committed);
	} else {
		s->committed = s->committed0 = h->committed_txid;
	}
	s->h = (struct mhello){
		.proto_min = h->proto_min,
		.proto_max = h->proto_max,
		.lane = h->lane,
		.lane_count = h->lane_count,
		.generation = h->generation,
		.retained_first_txid = h->retained_first_txid,
		.committed_txid = h->committed_txid,
		.journal_size = h->journal_size,
		.lanes_max = h->has_lanes_max ? h->lanes_max : 1,
	};
	for (size_t i = 0; i < h->n_compression && s->h.n_compression < 4; i++)
		s->h.compression[s->h.n_compression++] = h->compression[i];
	s->version = 1;
	snprintf(s->h.volume, sizeof(s->h.volume), "%s", h->volume);
	memcpy(s->h.uuid, h->volume_uuid.data, 16);
	memcpy(s->h.session_id, h->session_id.data, 16);
	s->hellos++;
	s->restarted = false;
	return 0;
}

int ms_welcome(struct mside *s, const struct mwelcome *w)
{
	Frep__V1__Welcome m = FREP__V1__WELCOME__INIT;
	m.proto_version = w->proto_version;
	m.known = w->known;
	m.durable_txid = w->durable_txid;
	m.consistent = w->consistent;
	m.consistent_txid = w->consistent_txid;
	m.phase = w->phase;
	m.copy_cursor = w->copy_cursor;
	m.has_copy_base = w->copy_base != 0;
	m.copy_base = w->copy_base;
	m.has_verify = w->verify;
	m.verify = w->verify;
	if (w->proto_version >= 2) {
		m.has_compression = m.has_lanes = true;
		m.compression = w->compression;
		m.lanes = w->lanes ? w->lanes : 1;
	}
	STEP(cx_send(s->x, FREP_MSG_WELCOME, &m.base, NULL, 0));
	/* NEG-3: a version it speaks, the master frames everything after WELCOME so (FRAME-3). */
	if (w->proto_version == 2) {
		s->version = 2;
		return cx_settle(s->x, 2, w->compression);
	}
	return 0;
}

/* The model and the image, once the size is known from either side. */
static int buffers(struct mside *s, uint64_t size, const char *from)
{
	if (s->size && s->size != size)
		return cx_fail(s->x, "%s says the volume has %" PRIu64 " bytes, earlier %" PRIu64
			       " (MP-5: the extent table describes the volume the master serves)",
			       from, size, s->size);
	if (s->size)
		return 0;
	if (size > MAX_VOLUME)
		return cx_fail(s->x, "the volume has %" PRIu64 " bytes; frep-conform keeps it in memory "
			       "and takes at most %d MiB", size, MAX_VOLUME >> 20);
	if (!(s->model = calloc(1, size ? size : 1)) || !(s->img = calloc(1, size ? size : 1)))
		return cx_fail(s->x, "out of memory for a %" PRIu64 "-byte volume", size);
	s->size = size;
	return 0;
}

int ms_extents(struct mside *s)
{
	struct cctx *x = s->x;
	struct frame f;
	STEP(ms_expect(s, FREP_MSG_EXTENT_TABLE, &f));
	const Frep__V1__ExtentTable *t = (const Frep__V1__ExtentTable *)f.msg;
	CHECK(x, t->n_extent_size >= 1 && t->n_extent_size <= FREP_MAX_EXTENTS,
	      "EXTENT_TABLE of %zu extents; 1..1024 (MP-1)", t->n_extent_size);
	uint64_t sum = 0;
	for (size_t i = 0; i < t->n_extent_size; i++) {
		uint64_t e = t->extent_size[i];
		CHECK(x, e && e % FREP_EXTENT_ALIGN == 0,
		      "extent %zu has %" PRIu64 " bytes; a non-zero multiple of 4096 (MP-1)", i, e);
		CHECK(x, sum + e >= sum, "the extent sizes overflow 64 bits (MP-1)");
		sum += e;
	}
	CHECK(x, !t->has_allocated_bytes || t->allocated_bytes <= sum,
	      "EXTENT_TABLE allocated_bytes %" PRIu64 " exceeds the volume's %" PRIu64 " bytes (MP-7)",
	      t->allocated_bytes, sum);
	if (s->n_extents) {
		bool same = t->n_extent_size == s->n_extents;
		for (size_t i = 0; same && i < s->n_extents; i++)
			same = t->extent_size[i] == s->extents[i];
		CHECK(x, same, "EXTENT_TABLE differs from the one of the previous connection");
	}
	s->n_extents = t->n_extent_size;
	memcpy(s->extents, t->extent_size, s->n_extents * sizeof(uint64_t));
	s->volume_size = sum;
	return buffers(s, sum, "EXTENT_TABLE");
}

int ms_parts_ready(struct mside *s, bool created, uint64_t volume_size)
{
	Frep__V1__PartsReady p = FREP__V1__PARTS_READY__INIT;
	p.created = created;
	p.volume_size = volume_size ? volume_size : s->volume_size;
	return cx_send(s->x, FREP_MSG_PARTS_READY, &p.base, NULL, 0);
}

int ms_open(struct mside *s, const struct mwelcome *w)
{
	struct mwelcome n = wel_new();
	if (!w)
		w = &n;
	STEP(ms_accept(s));
	STEP(ms_welcome(s, w));
	STEP(ms_extents(s));
	return ms_parts_ready(s, !w->known, 0);
}

/* --- copy and sequencing ------------------------------------------------------------ */

int ms_start_copy(struct mside *s, uint32_t kind)
{
	struct cctx *x = s->x;
	struct frame f;
	STEP(ms_expect(s, FREP_MSG_START_COPY, &f));
	const Frep__V1__StartCopy *m = (const Frep__V1__StartCopy *)f.msg;
	CHECK(x, m->kind == PH_REPLICATE || m->kind == PH_OUTOFSYNC,
	      "START_COPY kind %u; it is PHASE_REPLICATE (2) or PHASE_OUTOFSYNC (3) (COPY-4)", m->kind);
	CHECK(x, !kind || m->kind == kind, "START_COPY kind %u, expected %u (RDY-1)", m->kind, kind);
	CHECK(x, m->base_txid <= s->committed, "START_COPY base_txid %" PRIu64 " above the last "
	      "committed TXID %" PRIu64 " (COPY-1)", m->base_txid, s->committed);
	s->copy = (struct mcopy){
		.started = true,
		.kind = m->kind,
		.full = !m->has_full || m->full,
		.base = m->base_txid,
		.total = m->total_bytes,
		.start_offset = m->has_start_offset ? m->start_offset : 0,
	};
	CHECK(x, s->copy.start_offset <= s->volume_size,
	      "START_COPY start_offset %" PRIu64 " beyond the volume (%" PRIu64 " bytes) (RDY-6)",
	      s->copy.start_offset, s->volume_size);
	CHECK(x, !s->copy.start_offset || s->copy.full,
	      "START_COPY resumes at %" PRIu64 " a pass that is not full (COPY-16)", s->copy.start_offset);
	s->copy.next = s->copy.start_offset;
	s->next_txid = m->base_txid + 1;
	s->next_rule = "COPY-10: the first TX after the copy is t_s + 1";
	return 0;
}

int ms_start_sync(struct mside *s, uint64_t from)
{
	struct frame f;
	STEP(ms_expect(s, FREP_MSG_START_SYNC, &f));
	uint64_t got = ((const Frep__V1__StartSync *)f.msg)->from_txid;
	CHECK(s->x, got == from, "START_SYNC from_txid %" PRIu64 ", expected the mirror's durable "
	      "TXID %" PRIu64 " (RDY-1 row 3, RDY-3)", got, from);
	s->next_txid = from + 1;
	s->next_rule = "RDY-3: sequencing resumes at D + 1";
	return 0;
}

/* A copy record [off, off + len): in order, inside the volume, not empty (COPY-5). */
static int record_range(struct mside *s, const char *what, uint64_t off, uint64_t len)
{
	struct cctx *x = s->x;
	CHECK(x, len > 0, "%s at %" PRIu64 " of 0 bytes (COPY-5)", what, off);
	CHECK(x, off <= s->volume_size && len <= s->volume_size - off,
	      "%s [%" PRIu64 ", +%" PRIu64 ") reaches past the volume's %" PRIu64 " bytes (COPY-5)",
	      what, off, len, s->volume_size);
	if (s->copy.full)
		CHECK(x, off == s->copy.next, "%s at %" PRIu64 ", but the %s ended at %" PRIu64 "; a full "
		      "pass covers [start_offset, size) in ascending order, without gap or overlap (COPY-5)",
		      what, off, s->copy.data_bytes || s->copy.next > s->copy.start_offset ?
		      "previous record" : "pass's start_offset", s->copy.next);
	else
		CHECK(x, off >= s->copy.next, "%s at %" PRIu64 " overlaps or precedes the previous record, "
		      "which ended at %" PRIu64 " (COPY-5)", what, off, s->copy.next);
	s->copy.next = off + len;
	return 0;
}

int ms_copy(struct mside *s)
{
	struct cctx *x = s->x;
	struct frame f;
	for (;;) {
		enum frame_status st = ms_recv(s, &f, x->p.timeout_ms);
		if (st != FRAME_OK)
			return read_failed(s, st, "a copy record or COPY_DONE");
		switch (f.hdr.type) {
		case FREP_MSG_COPY_DATA: {
			const Frep__V1__CopyData *d = (const Frep__V1__CopyData *)f.msg;
			uint32_t n = f.hdr.trailer_len;
			STEP(record_range(s, "COPY_DATA", d->offset, n));
			/* The codec decompressed a compressed trailer to exactly d->length (COMP-3, COMP-4). */
			if (f.wire_trailer_len != n)
				s->copy.compressed++;
			CHECK(x, frep_crc32c(f.trailer, n) == d->data_crc,
			      "COPY_DATA at %" PRIu64 ": data_crc %08x, the data's CRC32C is %08x", d->offset,
			      d->data_crc, frep_crc32c(f.trailer, n));
			memcpy(s->img + d->offset, f.trailer, n);
			s->img_touched = true;
			s->copy.data_bytes += n;
			break;
		}
		case FREP_MSG_COPY_HOLE: {
			const Frep__V1__CopyHole *h = (const Frep__V1__CopyHole *)f.msg;
			STEP(record_range(s, "COPY_HOLE", h->offset, h->length));
			memset(s->img + h->offset, 0, h->length);
			s->img_touched = true;
			break;
		}
		case FREP_MSG_COPY_DONE: {
			const Frep__V1__CopyDone *d = (const Frep__V1__CopyDone *)f.msg;
			s->copy.done = true;
			s->copy.t_c = d->last_txid;
			s->copy.copied_bytes = d->copied_bytes;
			if (s->copy.full)
				CHECK(x, s->copy.next == s->volume_size,
				      "COPY_DONE after records up to %" PRIu64 "; a full pass covers up to the "
				      "volume's end, %" PRIu64 " (COPY-5, COPY-9)", s->copy.next, s->volume_size);
			CHECK(x, d->last_txid >= s->copy.base, "COPY_DONE last_txid %" PRIu64
			      " below the pass's base %" PRIu64 " (COPY-9: t_c >= t_s)", d->last_txid,
			      s->copy.base);
			CHECK(x, d->last_txid <= s->committed, "COPY_DONE last_txid %" PRIu64 " above the last "
			      "committed TXID %" PRIu64 " (COPY-9)", d->last_txid, s->committed);
			CHECK(x, d->copied_bytes == s->copy.data_bytes, "COPY_DONE copied_bytes %" PRIu64
			      ", but the pass sent %" PRIu64 " data bytes", d->copied_bytes, s->copy.data_bytes);
			return 0;
		}
		case FREP_MSG_TX:
			return cx_fail(x, "TX %" PRIu64 " before COPY_DONE: TXs follow the copy (COPY-10)",
				       ((const Frep__V1__Tx *)f.msg)->txid);
		default:
			return unexpected(s, "a copy record or COPY_DONE", &f);
		}
	}
}

const struct mtx *ms_wrote(const struct mside *s, uint64_t txid)
{
	if (txid <= s->committed0 || txid - s->committed0 > s->n_wrote)
		return NULL;
	return &s->wrote[txid - s->committed0 - 1];
}

static const char *op_name(uint32_t op)
{
	return op == TX_WRITE ? "write" : op == TX_TRIM ? "trim" : op == TX_ZERO ? "zero" : "?";
}

int ms_tx(struct mside *s, struct mtx *out)
{
	struct frame f;
	STEP(ms_expect(s, FREP_MSG_TX, &f));
	return ms_take_tx(s, &f, out);
}

int ms_take_tx(struct mside *s, const struct frame *fp, struct mtx *out)
{
	struct cctx *x = s->x;
	const struct frame f = *fp;
	const Frep__V1__Tx *m = (const Frep__V1__Tx *)f.msg;
	struct mtx t = { .generation = m->generation, .txid = m->txid, .offset = m->offset,
			 .length = m->length, .op = m->op, .crc = m->data_crc };
	CHECK(x, t.txid == s->next_txid, "TX %" PRIu64 ", expected TX %" PRIu64 " (%s)", t.txid,
	      s->next_txid, s->next_rule ? s->next_rule : "SEQ-1: increasing TXIDs, none skipped");
	CHECK(x, t.txid <= s->committed, "TX %" PRIu64 " above the last committed TXID %" PRIu64
	      " (SEQ-1: only committed transactions)", t.txid, s->committed);
	CHECK(x, t.generation >= 1 && t.generation <= s->h.generation,
	      "TX %" PRIu64 " of generation %" PRIu64 ", the HELLO says %" PRIu64 " (SEQ-11)", t.txid,
	      t.generation, s->h.generation);
	CHECK(x, t.op == TX_WRITE || t.op == TX_TRIM || t.op == TX_ZERO, "TX %" PRIu64 " op %u (SEQ-2)",
	      t.txid, t.op);
	CHECK(x, t.length >= 1 && t.length <= UINT32_MAX, "TX %" PRIu64 " length %" PRIu64 " (SEQ-2)",
	      t.txid, t.length);
	CHECK(x, t.offset <= s->volume_size && t.length <= s->volume_size - t.offset,
	      "TX %" PRIu64 " [%" PRIu64 ", +%" PRIu64 ") reaches past the volume (SEQ-2)", t.txid,
	      t.offset, t.length);
	if (t.op == TX_WRITE) {
		CHECK(x, f.hdr.trailer_len == t.length, "TX %" PRIu64 ": a write of %" PRIu64
		      " bytes with %u bytes of data (SEQ-2)", t.txid, t.length, f.hdr.trailer_len);
		uint32_t crc = frep_crc32c(f.trailer, f.hdr.trailer_len);
		CHECK(x, crc == t.crc, "TX %" PRIu64 ": data_crc %08x, the data's CRC32C is %08x (SEQ-2)",
		      t.txid, t.crc, crc);
		if (f.wire_trailer_len != f.hdr.trailer_len)
			s->tx_compressed++;
		memcpy(s->img + t.offset, f.trailer, t.length);
	} else {
		CHECK(x, f.hdr.trailer_len == 0 && t.crc == 0, "TX %" PRIu64 ": a %s with %u bytes of data "
		      "and data_crc %08x (SEQ-2: none, and 0)", t.txid, op_name(t.op), f.hdr.trailer_len,
		      t.crc);
		memset(s->img + t.offset, 0, t.length);
	}
	const struct mtx *w = ms_wrote(s, t.txid);
	if (w)
		CHECK(x, w->op == t.op && w->offset == t.offset && w->length == t.length && w->crc == t.crc,
		      "TX %" PRIu64 " is a %s of [%" PRIu64 ", +%" PRIu64 ") crc %08x, but that TXID was "
		      "the case's %s of [%" PRIu64 ", +%" PRIu64 ") crc %08x through NBD (SEQ-1, DUR-2)",
		      t.txid, op_name(t.op), t.offset, t.length, t.crc, op_name(w->op), w->offset,
		      w->length, w->crc);
	for (size_t i = 0; i < s->n_got; i++) {
		const struct mtx *g = &s->got[i];
		if (g->txid != t.txid)
			continue;
		CHECK(x, !memcmp(g, &t, sizeof(t)), "TX %" PRIu64 " sent again differs from the first time "
		      "(generation %" PRIu64 " -> %" PRIu64 ", %s -> %s, crc %08x -> %08x): a (generation, "
		      "TXID) pair is never reused for other data (DUR-3)", t.txid, g->generation,
		      t.generation, op_name(g->op), op_name(t.op), g->crc, t.crc);
		goto seen;
	}
	struct mtx *slot = push((void **)&s->got, &s->n_got, &s->cap_got, sizeof(*slot));
	if (!slot)
		return cx_fail(x, "out of memory");
	*slot = t;
seen:
	s->next_rule = NULL;
	s->img_touched = true;
	s->next_txid++;
	if (t.txid > s->max_txid)
		s->max_txid = t.txid;
	if (out)
		*out = t;
	return 0;
}

int ms_poll_txs(struct mside *s, int ms, unsigned *n)
{
	struct cctx *x = s->x;
	uint64_t end = now_ms() + (uint64_t)ms;
	*n = 0;
	for (;;) {
		/* HEARTBEATs keep coming: only a TX restarts the wait. */
		uint64_t now = now_ms();
		if (now >= end || !tls_readable(x->p.c, (int)(end - now)))
			return 0;
		struct frame f;
		enum frame_status st = cx_recv(x, &f, x->p.timeout_ms);
		if (st != FRAME_OK)
			return read_failed(s, st, "TX");
		if (f.hdr.type == FREP_MSG_HEARTBEAT) {
			STEP(ms_on_heartbeat(s, &f));
			continue;
		}
		if (f.hdr.type != FREP_MSG_TX)
			return unexpected(s, "TX", &f);
		STEP(ms_take_tx(s, &f, NULL));
		(*n)++;
		end = now_ms() + (uint64_t)ms;
	}
}

int ms_txs(struct mside *s, uint64_t through)
{
	while (s->next_txid <= through)
		STEP(ms_tx(s, NULL));
	return 0;
}

int ms_ack(struct mside *s, uint64_t txid)
{
	Frep__V1__TxAck a = FREP__V1__TX_ACK__INIT;
	a.txid = txid;
	if (txid > s->acked)
		s->acked = txid;
	return cx_send(s->x, FREP_MSG_TX_ACK, &a.base, NULL, 0);
}

int ms_consistent(struct mside *s, uint64_t txid)
{
	Frep__V1__Consistent c = FREP__V1__CONSISTENT__INIT;
	c.txid = txid;
	return cx_send(s->x, FREP_MSG_CONSISTENT, &c.base, NULL, 0);
}

int ms_copy_ack(struct mside *s, uint64_t through)
{
	Frep__V1__CopyAck a = FREP__V1__COPY_ACK__INIT;
	a.through = through;
	return cx_send(s->x, FREP_MSG_COPY_ACK, &a.base, NULL, 0);
}

int ms_resend(struct mside *s, uint64_t from, uint64_t to)
{
	Frep__V1__Resend r = FREP__V1__RESEND__INIT;
	r.from_txid = from;
	r.to_txid = to;
	STEP(cx_send(s->x, FREP_MSG_RESEND, &r.base, NULL, 0));
	/* Go-back-N: everything from `from` on comes again, unchanged (ms_tx compares). */
	if (from <= to && to <= s->max_txid) {
		s->next_txid = from;
		s->next_rule = "SEQ-7: after RESEND every TXID from `from` on, in order";
	}
	return 0;
}

int ms_pass(struct mside *s, uint32_t kind)
{
	STEP(ms_start_copy(s, kind));
	STEP(ms_copy(s));
	STEP(ms_txs(s, s->copy.t_c));
	STEP(ms_copy_ack(s, s->volume_size));
	if (s->copy.t_c > s->copy.base)
		STEP(ms_ack(s, s->copy.t_c));
	return ms_consistent(s, s->copy.t_c);
}

int ms_insync(struct mside *s)
{
	return ms_insync_w(s, NULL);
}

int ms_insync_w(struct mside *s, const struct mwelcome *w)
{
	STEP(ms_open(s, w));
	STEP(ms_pass(s, PH_REPLICATE));
	CHECK(s->x, s->copy.full && s->copy.start_offset == 0,
	      "a new volume got a %s pass from %" PRIu64 "; RDY-1 row 2 and RDY-5: full, from 0",
	      s->copy.full ? "full" : "dirty", s->copy.start_offset);
	return 0;
}

int ms_verify_all(struct mside *s, uint64_t bad_at, uint64_t *bad_off, uint64_t *bad_len)
{
	struct cctx *x = s->x;
	uint64_t covered = 0, id = 0;
	*bad_off = *bad_len = 0;
	while (covered < s->volume_size) {
		struct frame f;
		enum frame_status st = ms_recv(s, &f, x->p.timeout_ms);
		if (st != FRAME_OK)
			return read_failed(s, st, "VERIFY");
		if (f.hdr.type == FREP_MSG_TX) {
			STEP(ms_take_tx(s, &f, NULL));
			STEP(ms_ack(s, s->max_txid));
			continue;
		}
		if (f.hdr.type != FREP_MSG_VERIFY)
			return unexpected(s, "VERIFY or TX", &f);
		const Frep__V1__Verify *v = (const Frep__V1__Verify *)f.msg;
		uint64_t last = s->next_txid - 1;
		CHECK(x, v->txid == last, "VERIFY of [%" PRIu64 ", +%" PRIu64 ") at TXID %" PRIu64
		      " came right after TX %" PRIu64 ": it goes after TX txid and before TX txid + 1 (VFY-3)",
		      v->offset, v->length, v->txid, last);
		CHECK(x, v->length >= 1 && v->length <= FREP_MAX_VERIFY_LEN && v->offset <= s->volume_size &&
			 v->length <= s->volume_size - v->offset && v->hash.len == FREP_VERIFY_HASH_SIZE,
		      "VERIFY of [%" PRIu64 ", +%" PRIu64 ") with a %zu-byte hash: a region of the volume, "
		      "1..32 MiB, and 16 bytes (VFY-4)", v->offset, v->length, v->hash.len);
		CHECK(x, !id || v->verify_id == id, "VERIFY of verify %" PRIu64 " during verify %" PRIu64,
		      v->verify_id, id);
		id = v->verify_id;
		uint8_t h[FREP_VERIFY_HASH_SIZE];
		cx_hash(s->img + v->offset, v->length, h);
		CHECK(x, memcmp(h, v->hash.data, sizeof(h)) == 0,
		      "VERIFY of [%" PRIu64 ", +%" PRIu64 ") at TXID %" PRIu64 ": its hash is not the "
		      "XXH3-128 of the region after exactly the TXIDs up to %" PRIu64 " (VFY-2, VFY-3)",
		      v->offset, v->length, v->txid, v->txid);
		if (bad_at >= v->offset && bad_at - v->offset < v->length) {
			h[0] ^= 0x5a; /* the damage a mismatch stands for */
			*bad_off = v->offset;
			*bad_len = v->length;
		}
		Frep__V1__VerifyResult r = FREP__V1__VERIFY_RESULT__INIT;
		r.verify_id = v->verify_id;
		r.offset = v->offset;
		r.txid = v->txid;
		r.status = FREP__V1__VERIFY_STATUS__VERIFY_HASHED;
		r.has_hash = true;
		r.hash.data = h;
		r.hash.len = sizeof(h);
		covered += v->length;
		STEP(cx_send(x, FREP_MSG_VERIFY_RESULT, &r.base, NULL, 0));
	}
	CHECK(x, covered == s->volume_size, "VERIFYs covered %" PRIu64 " bytes of a %" PRIu64
	      "-byte volume", covered, s->volume_size);
	return 0;
}

int ms_check_image(struct mside *s, const char *when)
{
	if (!s->nbd)
		STEP(ms_nbd(s));
	STEP(ms_txs(s, s->committed));
	for (uint64_t i = 0; i < s->size; i++)
		if (s->img[i] != s->model[i]) {
			uint64_t end = i;
			while (end < s->size && s->img[end] != s->model[end])
				end++;
			return cx_fail(s->x, "%s the mirror's image differs from the master volume in [%"
				       PRIu64 ", %" PRIu64 "): the copy and the TXs after it do not carry "
				       "exactly what was written through NBD (COPY-1, COPY-5, DUR-10)", when,
				       i, end);
		}
	return 0;
}

/* --- the master's volume through NBD ------------------------------------------------ */

void ms_nbd_close(struct mside *s)
{
	if (!s->nbd)
		return;
	nbd_shutdown(s->nbd, 0);
	nbd_close(s->nbd);
	s->nbd = NULL;
}

/* Reads [0, size) into buf. */
static int nbd_read_all(struct mside *s, uint8_t *buf)
{
	for (uint64_t off = 0; off < s->size; off += NBD_CHUNK) {
		size_t n = s->size - off < NBD_CHUNK ? (size_t)(s->size - off) : NBD_CHUNK;
		if (nbd_pread(s->nbd, buf + off, n, off, 0) < 0)
			return cx_fail(s->x, "NBD read of %zu bytes at %" PRIu64 ": %s", n, off,
				       nbd_get_error());
	}
	return 0;
}

int ms_nbd(struct mside *s)
{
	struct cctx *x = s->x;
	char uri[1024];
	if (s->nbd)
		return 0;
	if (master_nbd_uri(x->cf, uri, sizeof(uri)) < 0)
		return cx_fail(x, "--nbd: the URI is too long once expanded");
	uint64_t end = now_ms() + (uint64_t)x->cf->timeout_ms;
	for (;;) {
		struct nbd_handle *h = nbd_create();
		if (!h)
			return cx_fail(x, "nbd_create: %s", nbd_get_error());
		if (nbd_connect_uri(h, uri) == 0) {
			s->nbd = h;
			break;
		}
		char err[300];
		snprintf(err, sizeof(err), "%s", nbd_get_error());
		nbd_close(h);
		if (now_ms() >= end)
			return cx_fail(x, "the master's NBD export %s did not serve within %d ms: %s", uri,
				       x->cf->timeout_ms, err);
		usleep(NBD_RETRY_MS * 1000);
	}
	int64_t size = nbd_get_size(s->nbd);
	if (size < 0)
		return cx_fail(x, "NBD size: %s", nbd_get_error());
	s->can_trim = nbd_can_trim(s->nbd) == 1;
	s->can_zero = nbd_can_zero(s->nbd) == 1;
	int64_t minb = nbd_get_block_size(s->nbd, LIBNBD_SIZE_MINIMUM);
	s->min_block = minb > 0 ? (uint64_t)minb : 512;
	if (s->model_read) {
		/* Again (a restart): every replied write must still read back (DUR-1, DUR-5). */
		CHECK(x, (uint64_t)size == s->size, "the NBD export has %" PRIu64 " bytes, before %" PRIu64,
		      (uint64_t)size, s->size);
		uint8_t *now = malloc(s->size ? s->size : 1);
		if (!now)
			return cx_fail(x, "out of memory");
		int rc = nbd_read_all(s, now);
		uint64_t i = 0;
		while (rc == 0 && i < s->size && now[i] == s->model[i])
			i++;
		free(now);
		STEP(rc);
		CHECK(x, i == s->size, "the master volume read through NBD differs at offset %" PRIu64
		      " from what the case wrote and the master replied to (DUR-1, DUR-5)", i);
		return 0;
	}
	STEP(buffers(s, (uint64_t)size, "the NBD export"));
	STEP(nbd_read_all(s, s->model));
	s->model_read = true;
	/* Until a copy says otherwise, this mirror holds the volume as it was before the case's writes. */
	if (!s->img_touched)
		memcpy(s->img, s->model, s->size);
	return 0;
}

/* Notes a replied write: its TXID is the next one (DUR-2). */
static int wrote(struct mside *s, uint32_t op, uint64_t off, uint64_t len, uint32_t crc)
{
	struct mtx *w = push((void **)&s->wrote, &s->n_wrote, &s->cap_wrote, sizeof(*w));
	if (!w)
		return cx_fail(s->x, "out of memory");
	*w = (struct mtx){ .generation = s->h.generation, .txid = ++s->committed, .offset = off,
			   .length = len, .op = op, .crc = crc };
	return 0;
}

static int nbd_ready(struct mside *s, uint64_t off, uint64_t len)
{
	CHECK(s->x, s->hellos, "internal: a write before the master's first HELLO");
	STEP(ms_nbd(s));
	CHECK(s->x, len && off <= s->size && len <= s->size - off,
	      "internal: a write [%" PRIu64 ", +%" PRIu64 ") outside the %" PRIu64 "-byte volume", off,
	      len, s->size);
	CHECK(s->x, s->committed - s->committed0 == s->n_wrote, "internal: writes and TXIDs disagree");
	return 0;
}

static int write_filled(struct mside *s, uint64_t off, uint32_t len, uint64_t seed,
			bool compressible)
{
	STEP(nbd_ready(s, off, len));
	uint8_t *buf = malloc(len);
	if (!buf)
		return cx_fail(s->x, "out of memory");
	if (compressible)
		cx_fill_compressible(buf, len, seed);
	else
		cx_fill(buf, len, seed);
	int rc = nbd_pwrite(s->nbd, buf, len, off, 0);
	if (rc == 0) {
		memcpy(s->model + off, buf, len);
		rc = wrote(s, TX_WRITE, off, len, frep_crc32c(buf, len));
	} else {
		rc = cx_fail(s->x, "NBD write of %u bytes at %" PRIu64 ": %s", len, off, nbd_get_error());
	}
	free(buf);
	return rc;
}

int ms_write(struct mside *s, uint64_t off, uint32_t len, uint64_t seed)
{
	return write_filled(s, off, len, seed, false);
}

int ms_write_compressible(struct mside *s, uint64_t off, uint32_t len, uint64_t seed)
{
	return write_filled(s, off, len, seed, true);
}

int ms_write_refused(struct mside *s, uint64_t off, uint32_t len, uint64_t seed, const char *when)
{
	STEP(ms_nbd(s));
	uint8_t *buf = malloc(len);
	if (!buf)
		return cx_fail(s->x, "out of memory");
	cx_fill(buf, len, seed);
	int rc = nbd_pwrite(s->nbd, buf, len, off, 0);
	free(buf);
	if (rc == 0)
		return cx_fail(s->x, "%s, the master took an NBD write of %u bytes at %" PRIu64, when,
			       len, off);
	return 0;
}

int ms_trim(struct mside *s, uint64_t off, uint32_t len)
{
	STEP(nbd_ready(s, off, len));
	if (nbd_trim(s->nbd, len, off, 0) < 0)
		return cx_fail(s->x, "NBD trim of %u bytes at %" PRIu64 ": %s", len, off, nbd_get_error());
	/* frep's trim is not advisory: the range reads back as zeroes on both sides. */
	memset(s->model + off, 0, len);
	return wrote(s, TX_TRIM, off, len, 0);
}

int ms_zero(struct mside *s, uint64_t off, uint32_t len)
{
	STEP(nbd_ready(s, off, len));
	if (nbd_zero(s->nbd, len, off, 0) < 0)
		return cx_fail(s->x, "NBD zero of %u bytes at %" PRIu64 ": %s", len, off, nbd_get_error());
	memset(s->model + off, 0, len);
	return wrote(s, TX_ZERO, off, len, 0);
}

int ms_read_check(struct mside *s, uint64_t off, uint64_t len, const char *when)
{
	STEP(ms_nbd(s));
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return cx_fail(s->x, "out of memory");
	int rc = nbd_pread(s->nbd, buf, len, off, 0);
	if (rc < 0)
		rc = cx_fail(s->x, "NBD read of %" PRIu64 " bytes at %" PRIu64 " %s: %s", len, off, when,
			     nbd_get_error());
	else if (memcmp(buf, s->model + off, len) != 0)
		rc = cx_fail(s->x, "NBD read at %" PRIu64 " %s differs from what was written", off, when);
	free(buf);
	return rc;
}
