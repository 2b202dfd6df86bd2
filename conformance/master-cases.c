/*
 * frep-conform plays a mirror against a master: the hand-written cases, each
 * naming the spec clauses it checks. The master runs fresh for every case
 * (--run), in its own scratch directory; the cases write through its NBD
 * export and check what reaches the mirror. The (state, message) matrix is in
 * master-matrix.c; the steps in master-steps.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master.h"
#include "tls.h"
#include "util.h"

#define PH_CREATED FREP__V1__PHASE__PHASE_CREATED
#define PH_REPLICATE FREP__V1__PHASE__PHASE_REPLICATE
#define PH_OUTOFSYNC FREP__V1__PHASE__PHASE_OUTOFSYNC
#define PH_INSYNC FREP__V1__PHASE__PHASE_INSYNC
#define MIB (1024u * 1024u)

/*
 * How long a master stopped in ERROR must stay away: its --backoff MAX must
 * be well below this for the cases that wait it out to mean anything.
 */
enum { NO_RECONNECT_MS = 2000 };

/* --- helpers ---------------------------------------------------------------------- */

/* An ERROR from this mirror, with the severity given (not necessarily the table's). */
static int send_error(struct cctx *x, uint32_t code, bool severe)
{
	Frep__V1__Error e = FREP__V1__ERROR__INIT;
	e.code = code;
	e.severe = severe;
	e.message = "frep-conform: an error from the mirror";
	return cx_send(x, FREP_MSG_ERROR, &e.base, NULL, 0);
}

static int send_goodbye(struct cctx *x)
{
	Frep__V1__Goodbye g = FREP__V1__GOODBYE__INIT;
	g.reason = "frep-conform: goodbye";
	return cx_send(x, FREP_MSG_GOODBYE, &g.base, NULL, 0);
}

/* The next connection, with a WELCOME saying w, up to PARTS_READY. */
static int reopen(struct mside *s, const struct mwelcome *w)
{
	STEP(ms_accept(s));
	STEP(ms_welcome(s, w));
	STEP(ms_extents(s));
	return ms_parts_ready(s, !w->known, 0);
}

/* WELCOME then MAKEPARTS on the connection already accepted. */
static int welcome_parts(struct mside *s, const struct mwelcome *w)
{
	STEP(ms_welcome(s, w));
	STEP(ms_extents(s));
	return ms_parts_ready(s, !w->known, 0);
}

static uint64_t next_rand(uint64_t *st)
{
	*st ^= *st << 13;
	*st ^= *st >> 7;
	*st ^= *st << 17;
	return *st;
}

/*
 * n operations through NBD over the first MiB: writes of 1 byte to 64 KiB,
 * byte-granular when the export allows it (MSG-7), trims and zeroes when it
 * offers them; ranges overlap on purpose.
 */
static int write_mix(struct mside *s, unsigned n, uint64_t seed)
{
	static const uint32_t lens[] = { 4096, 512, 65536, 12288, 1, 3000, 8192, 4096 };
	uint64_t st = seed * 2654435761u + 1;
	STEP(ms_nbd(s));
	uint64_t span = s->size < MIB ? s->size : MIB;
	for (unsigned i = 0; i < n; i++) {
		uint64_t r = next_rand(&st);
		uint32_t len = lens[r % 8];
		if (s->min_block > 1)
			len = (uint32_t)((len + s->min_block - 1) / s->min_block * s->min_block);
		if (len > span)
			len = (uint32_t)span;
		uint64_t off = (r >> 8) % (span - len + 1);
		off -= off % s->min_block;
		unsigned op = (unsigned)((r >> 40) % 8);
		if (op == 6 && s->can_trim)
			STEP(ms_trim(s, off, len));
		else if (op == 7 && s->can_zero)
			STEP(ms_zero(s, off, len));
		else
			STEP(ms_write(s, off, len, seed * 1000 + i));
	}
	return 0;
}

static struct mwelcome wel(bool known, uint32_t phase, bool consistent, uint64_t d)
{
	return (struct mwelcome){ .proto_version = 1, .known = known, .consistent = consistent,
				  .durable_txid = d, .consistent_txid = consistent ? d : 0,
				  .phase = phase };
}

/* The heartbeat interval HB-1 gives for the master's --heartbeat-timeout (--peer-timeout). */
static int hb_interval_ms(const struct cctx *x)
{
	return x->cf->peer_timeout_ms / 3 < 2000 ? x->cf->peer_timeout_ms / 3 : 2000;
}

/* --- INIT and lanes ------------------------------------------------------------------ */

static int hs_hello(struct cctx *x)
{
	return ms_accept(x->ms);
}

static int hs_session_id(struct cctx *x)
{
	struct mside *s = x->ms;
	struct mwelcome w = wel_new();
	uint8_t first[FREP_SESSION_ID_SIZE];
	STEP(ms_accept(s));
	memcpy(first, s->h.session_id, sizeof(first));
	/* Before WELCOME a lost link is minor (ERR-4): the master tries again. */
	cx_abort(x);
	STEP(ms_accept(s));
	STEP(welcome_parts(s, &w));
	STEP(ms_pass(s, PH_REPLICATE));
	/* After INIT a lost link is LINKDOWN, and the master reconnects too (FSM-4). */
	cx_abort(x);
	STEP(ms_accept(s));
	CHECK(x, memcmp(first, s->h.session_id, sizeof(first)) != 0,
	      "the third connection repeats the first one's session_id (LANE-3)");
	return 0;
}

static int hs_version(struct cctx *x)
{
	struct mside *s = x->ms;
	struct mwelcome w = wel_new();
	w.proto_version = 3;
	STEP(ms_accept(s));
	STEP(ms_welcome(s, &w));
	STEP(cx_expect_error(x, FREP_E_VERSION, NULL));
	STEP(ms_restart(s));
	w.proto_version = 0;
	STEP(ms_accept(s));
	STEP(ms_welcome(s, &w));
	return cx_expect_error(x, FREP_E_VERSION, NULL);
}

/* --- MAKEPARTS ------------------------------------------------------------------------ */

static int mp_table(struct cctx *x)
{
	struct mside *s = x->ms;
	struct mwelcome w = wel_new();
	STEP(ms_accept(s));
	STEP(ms_welcome(s, &w));
	STEP(ms_extents(s));
	/* The export the master serves is the volume the table describes (ms_nbd checks the size). */
	return ms_nbd(s);
}

static int mp_size(struct cctx *x)
{
	struct mside *s = x->ms;
	struct mwelcome w = wel_new();
	STEP(ms_accept(s));
	STEP(ms_welcome(s, &w));
	STEP(ms_extents(s));
	STEP(ms_parts_ready(s, true, s->volume_size + 4096));
	return cx_expect_error(x, FREP_E_BAD_EXTENTS, NULL);
}

static int mp_restart(struct cctx *x)
{
	struct mside *s = x->ms;
	struct mtx t;
	STEP(ms_insync(s));
	STEP(ms_write(s, 0, 4096, 1));
	STEP(ms_txs(s, s->committed));
	STEP(ms_ack(s, s->committed));
	uint64_t d = s->committed, g = s->h.generation;
	STEP(ms_quiet(s, 200));
	STEP(ms_restart(s));
	/* The restarted master validates the extents again, then sequences from D. */
	struct mwelcome w = wel_insync(d);
	STEP(reopen(s, &w));
	STEP(ms_start_sync(s, d));
	STEP(ms_write(s, 8192, 4096, 2));
	STEP(ms_tx(s, &t));
	CHECK(x, t.generation == s->h.generation && s->h.generation > g,
	      "TX %" PRIu64 " committed after the restart carries generation %" PRIu64 "; the new "
	      "HELLO says %" PRIu64 ", the old one %" PRIu64 " (DUR-3)", t.txid, t.generation,
	      s->h.generation, g);
	return 0;
}

/* After a lost link READY decides anew, from the fresh WELCOME (FSM-4). */
static int mp_reconnect(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_insync(s));
	cx_abort(x);
	struct mwelcome w = wel(true, PH_CREATED, false, 0);
	STEP(reopen(s, &w));
	STEP(ms_start_copy(s, PH_REPLICATE));
	CHECK(x, s->copy.full && s->copy.start_offset == 0,
	      "a mirror that reports phase CREATED got a %s pass from %" PRIu64
	      " (RDY-1 row 2: full, from 0)", s->copy.full ? "full" : "dirty", s->copy.start_offset);
	return ms_copy(s);
}

/* --- READY ------------------------------------------------------------------------------ */

static int rdy_ahead(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_accept(s));
	STEP(ms_write(s, 0, 4096, 1));
	struct mwelcome w = wel_insync(s->committed + 1);
	STEP(welcome_parts(s, &w));
	STEP(cx_expect_error(x, FREP_E_AHEAD, NULL));
	return ms_no_reconnect(s, NO_RECONNECT_MS);
}

static int rdy_new(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_insync(s));
	STEP(send_goodbye(x));
	STEP(ms_expect_close(s));
	/* A mirror that created the extents but never started a copy. */
	struct mwelcome w = wel(true, PH_CREATED, false, 0);
	STEP(reopen(s, &w));
	STEP(ms_start_copy(s, PH_REPLICATE));
	CHECK(x, s->copy.full && s->copy.start_offset == 0,
	      "phase CREATED got a %s pass from %" PRIu64 " (RDY-1 row 2, RDY-5: full, from 0)",
	      s->copy.full ? "full" : "dirty", s->copy.start_offset);
	return ms_copy(s);
}

static int rdy_sync(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_accept(s));
	STEP(ms_write(s, 4096, 4096, 1));
	uint64_t d = s->committed;
	/* This mirror holds the volume as it was at D. */
	memcpy(s->img, s->model, s->size);
	STEP(ms_write(s, 0, 8192, 2));
	STEP(ms_write(s, 6144, 4096, 3));
	struct mwelcome w = wel_insync(d);
	STEP(welcome_parts(s, &w));
	STEP(ms_start_sync(s, d));
	/* RDY-7: D counts as acknowledged, so acknowledging it is no TXID "never sent" (SEQ-5). */
	STEP(ms_ack(s, d));
	STEP(ms_txs(s, s->committed));
	STEP(ms_ack(s, s->committed));
	STEP(ms_write(s, 65536, 4096, 4));
	return ms_check_image(s, "after START_SYNC and the TXs after D,");
}

static int rdy_outofsync(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_accept(s));
	STEP(ms_nbd(s)); /* the mirror holds the volume as it was before the writes: consistent at D */
	uint64_t d = s->committed;
	STEP(write_mix(s, 12, 7));
	struct mwelcome w = wel(true, PH_OUTOFSYNC, false, d);
	STEP(welcome_parts(s, &w));
	STEP(ms_pass(s, PH_OUTOFSYNC));
	return ms_check_image(s, "after the OUTOFSYNC pass and CONSISTENT,");
}

/* Row 4 also takes a mirror in phase INSYNC that is not consistent. */
static int rdy_not_consistent(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_accept(s));
	STEP(ms_nbd(s));
	uint64_t d = s->committed;
	STEP(ms_write(s, 0, 4096, 1));
	struct mwelcome w = wel(true, PH_INSYNC, false, d);
	STEP(welcome_parts(s, &w));
	STEP(ms_pass(s, PH_OUTOFSYNC));
	return ms_check_image(s, "after the OUTOFSYNC pass,");
}

static int rdy_resume(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_accept(s));
	STEP(ms_nbd(s));
	uint64_t cur = s->size / 2 - s->size / 2 % 4096;
	STEP(ms_write(s, 0, 8192, 1));
	STEP(ms_write(s, cur + 4096, 4096, 2));
	uint64_t base = s->committed;
	/* The interrupted pass of base B copied [0, cursor) durably, after B was applied. */
	memcpy(s->img, s->model, cur);
	STEP(ms_write(s, 4096, 4096, 3));
	STEP(ms_write(s, cur + 8192, 4096, 4));
	struct mwelcome w = wel(true, PH_REPLICATE, false, base);
	w.copy_cursor = cur;
	w.copy_base = base;
	STEP(welcome_parts(s, &w));
	STEP(ms_start_copy(s, PH_REPLICATE));
	CHECK(x, s->copy.full && s->copy.start_offset == cur && s->copy.base == base,
	      "START_COPY %s start_offset %" PRIu64 " base %" PRIu64 "; the mirror's interrupted full "
	      "pass resumes: full, start_offset %" PRIu64 " (its cursor), base %" PRIu64 " (RDY-6)",
	      s->copy.full ? "full" : "dirty", s->copy.start_offset, s->copy.base, cur, base);
	STEP(ms_copy(s));
	STEP(ms_txs(s, s->copy.t_c));
	STEP(ms_copy_ack(s, s->volume_size));
	STEP(ms_ack(s, s->copy.t_c));
	STEP(ms_consistent(s, s->copy.t_c));
	return ms_check_image(s, "after the resumed pass,");
}

static int rdy_resume_end(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_accept(s));
	STEP(ms_write(s, 0, 4096, 1));
	uint64_t base = s->committed;
	memcpy(s->img, s->model, s->size);
	struct mwelcome w = wel(true, PH_REPLICATE, false, base);
	w.copy_cursor = s->size + 65536;
	w.copy_base = base;
	STEP(welcome_parts(s, &w));
	STEP(ms_start_copy(s, PH_REPLICATE));
	CHECK(x, s->copy.start_offset == s->volume_size && s->copy.base == base,
	      "a cursor past the volume's end resumed at %" PRIu64 " base %" PRIu64 "; RDY-6: "
	      "min(cursor, volume size) = %" PRIu64 ", base %" PRIu64, s->copy.start_offset,
	      s->copy.base, s->volume_size, base);
	STEP(ms_copy(s));
	return ms_check_image(s, "after an empty resumed pass,");
}

static int rdy_no_resume(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_accept(s));
	STEP(ms_write(s, 0, 4096, 1));
	/* A base this master never committed: it cannot hold every TXID after it. */
	struct mwelcome w = wel(true, PH_REPLICATE, false, 0);
	w.copy_cursor = 65536;
	w.copy_base = s->committed + 5;
	STEP(welcome_parts(s, &w));
	STEP(ms_start_copy(s, PH_REPLICATE));
	CHECK(x, s->copy.start_offset == 0 && s->copy.base == s->committed,
	      "START_COPY start_offset %" PRIu64 " base %" PRIu64 "; a pass that cannot resume starts "
	      "afresh: from 0, with t_s its last committed TXID %" PRIu64 " (RDY-6, COPY-1)",
	      s->copy.start_offset, s->copy.base, s->committed);
	return ms_copy(s);
}

/* --- the copy ----------------------------------------------------------------------------- */

static int copy_content(struct cctx *x)
{
	struct mside *s = x->ms;
	struct mwelcome w = wel_new();
	STEP(ms_accept(s));
	STEP(write_mix(s, 24, 3));
	STEP(welcome_parts(s, &w));
	STEP(ms_start_copy(s, PH_REPLICATE));
	CHECK(x, s->copy.base == s->committed, "START_COPY base_txid %" PRIu64 "; every write was "
	      "replied before it, so t_s is the last committed TXID, %" PRIu64 " (COPY-1)",
	      s->copy.base, s->committed);
	STEP(ms_copy(s));
	STEP(ms_check_image(s, "after the copy,"));
	STEP(ms_copy_ack(s, s->volume_size));
	STEP(ms_consistent(s, s->copy.t_c));
	/* COPY-12: it took CONSISTENT(t_c) and sequences now. */
	STEP(ms_write(s, 4096, 4096, 99));
	return ms_check_image(s, "in INSYNC,");
}

/* --- version 2 ------------------------------------------------------------------------- */

static int v2_offer(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_accept(s));
	CHECK(x, s->h.proto_min == 1 && s->h.proto_max == 2, "HELLO offers versions %u..%u; a "
	      "version-2 master offers 1..2, so that a version-1 mirror still takes it (NEG-1)",
	      s->h.proto_min, s->h.proto_max);
	for (size_t i = 0; i < s->h.n_compression; i++)
		CHECK(x, s->h.compression[i] == FREP__V1__COMPRESSION__COMPRESSION_ZSTD ||
			 s->h.compression[i] == FREP__V1__COMPRESSION__COMPRESSION_LZ4,
		      "HELLO offers compression %u, no algorithm of the spec (NEG-2)", s->h.compression[i]);
	CHECK(x, s->h.lanes_max >= 1 && s->h.lanes_max <= FREP_MAX_LANES,
	      "HELLO asks for %u lanes: 1..16 (LANE-4)", s->h.lanes_max);
	return 0;
}

/* The master's first offer, or a SKIP: this case needs a master that compresses. */
static int offered(struct cctx *x, uint32_t *alg)
{
	struct mside *s = x->ms;
	if (!s->h.n_compression)
		return cx_skip(x, "the master offers no compression: run it with compression on "
			       "(frep-client --compress zstd)");
	*alg = s->h.compression[0];
	return 0;
}

/* A copy of compressible writes, then INSYNC and more of them; the image must match. */
static int v2_copy(struct mside *s, struct mwelcome *w)
{
	STEP(ms_nbd(s));
	for (unsigned i = 0; i < 8; i++)
		STEP(ms_write_compressible(s, (uint64_t)i * 65536, 65536, 500 + i));
	STEP(welcome_parts(s, w));
	STEP(ms_start_copy(s, PH_REPLICATE));
	STEP(ms_copy(s));
	STEP(ms_check_image(s, "after a version-2 copy,"));
	STEP(ms_copy_ack(s, s->volume_size));
	STEP(ms_consistent(s, s->copy.t_c));
	for (unsigned i = 0; i < 4; i++)
		STEP(ms_write_compressible(s, 4096 + (uint64_t)i * 131072, 32768, 600 + i));
	STEP(ms_txs(s, s->committed));
	STEP(ms_ack(s, s->committed));
	return ms_check_image(s, "after version-2 TXs,");
}

static int v2_compressed(struct cctx *x)
{
	struct mside *s = x->ms;
	struct mwelcome w = wel_new();
	STEP(ms_accept(s));
	w.proto_version = 2;
	STEP(offered(x, &w.compression));
	STEP(v2_copy(s, &w));
	CHECK(x, s->copy.compressed > 0, "no COPY_DATA of 512 KiB of repetitive data came compressed "
	      "(COMP-1: the master compresses with the algorithm chosen)");
	CHECK(x, s->tx_compressed > 0, "no TX of 32 KiB of repetitive data came compressed (COMP-1)");
	return 0;
}

static int v2_uncompressed(struct cctx *x)
{
	struct mside *s = x->ms;
	struct mwelcome w = wel_new();
	STEP(ms_accept(s));
	w.proto_version = 2;
	w.compression = FREP__V1__COMPRESSION__COMPRESSION_NONE;
	/* frep-conform's reader refuses a COMPRESSED flag here (FRAME-5), so the copy shows it. */
	return v2_copy(s, &w);
}

static int v2_v1_mirror(struct cctx *x)
{
	struct mside *s = x->ms;
	struct mwelcome w = wel_new();
	STEP(ms_accept(s));
	/* Version-1 framing and no compression after a version-1 WELCOME: the reader checks both. */
	return v2_copy(s, &w);
}

static int v2_bad_choice(struct cctx *x)
{
	struct mside *s = x->ms;
	struct mwelcome w = wel_new();
	uint32_t alg = 0;
	STEP(ms_accept(s));
	STEP(offered(x, &alg));
	w.proto_version = 2;
	w.compression = alg == FREP__V1__COMPRESSION__COMPRESSION_ZSTD
				? FREP__V1__COMPRESSION__COMPRESSION_LZ4
				: FREP__V1__COMPRESSION__COMPRESSION_ZSTD;
	for (size_t i = 0; i < s->h.n_compression; i++)
		if (s->h.compression[i] == w.compression)
			return cx_skip(x, "the master offers both zstd and lz4: no algorithm is left that "
				       "it did not offer");
	/* The master refuses the WELCOME in version 1: it never took up version 2 (FRAME-3). */
	STEP(ms_welcome(s, &w));
	STEP(cx_settle(x, 1, 0));
	STEP(cx_expect_error(x, FREP_E_PROTOCOL, "not offered"));
	STEP(ms_restart(s)); /* a severe error: the master waits for its operator */
	STEP(ms_accept(s));
	w.compression = alg;
	w.lanes = s->h.lanes_max + 1;
	STEP(ms_welcome(s, &w));
	STEP(cx_settle(x, 1, 0));
	return cx_expect_error(x, FREP_E_LANES, NULL);
}

/* One copy record a lane carried, into the image; its seq noted in seen[] (LANE-6). */
static int lane_take(struct mside *s, const struct frame *f, unsigned lane, uint8_t *seen,
		     size_t n_seen)
{
	struct cctx *x = s->x;
	uint64_t off, len, pass, seq;
	bool has;
	if (f->hdr.type == FREP_MSG_COPY_DATA) {
		const Frep__V1__CopyData *d = (const Frep__V1__CopyData *)f->msg;
		off = d->offset;
		len = f->hdr.trailer_len;
		has = d->has_pass && d->has_seq;
		pass = d->pass;
		seq = d->seq;
		CHECK(x, frep_crc32c(f->trailer, len) == d->data_crc, "lane %u: COPY_DATA at %" PRIu64
		      ": data_crc does not match the data", lane, off);
	} else if (f->hdr.type == FREP_MSG_COPY_HOLE) {
		const Frep__V1__CopyHole *h = (const Frep__V1__CopyHole *)f->msg;
		off = h->offset;
		len = h->length;
		has = h->has_pass && h->has_seq;
		pass = h->pass;
		seq = h->seq;
	} else {
		return cx_fail(x, "lane %u carried %s; a joining lane carries copy records only (LANE-6)",
			       lane, frep_msg_name(f->hdr.type));
	}
	CHECK(x, has, "lane %u: a copy record without pass and seq in a session of 2 lanes (LANE-6)",
	      lane);
	CHECK(x, pass == 1, "lane %u: a record of pass %" PRIu64 " in the session's first pass (LANE-6)",
	      lane, pass);
	CHECK(x, seq >= 1 && seq <= n_seen && !seen[seq - 1], "lane %u: seq %" PRIu64 " repeated or "
	      "beyond the records counted (LANE-6, LANE-7)", lane, seq);
	CHECK(x, off <= s->volume_size && len <= s->volume_size - off, "lane %u: a record past the "
	      "volume (COPY-5)", lane);
	seen[seq - 1] = 1;
	if (f->hdr.type == FREP_MSG_COPY_DATA)
		memcpy(s->img + off, f->trailer, len);
	else
		memset(s->img + off, 0, len);
	s->img_touched = true;
	return 0;
}

/*
 * LANE-1, LANE-3..7: granted two lanes, the master joins lane 1 with lane 0's
 * session, sends the copy's records with pass and seq, and counts them per
 * lane in COPY_DONE; together they are exactly the volume.
 */
static int v2_lanes(struct cctx *x)
{
	struct mside *s = x->ms;
	struct mwelcome w = wel_new();
	struct frame f;
	uint8_t sid[16];
	STEP(ms_accept(s));
	if (s->h.lanes_max < 2)
		return cx_skip(x, "the master asks for one lane: run it with more (frep-client --lanes 2)");
	memcpy(sid, s->h.session_id, sizeof(sid));
	STEP(ms_nbd(s));
	for (unsigned i = 0; i < 8; i++)
		STEP(ms_write(s, (uint64_t)i * 131072, 65536, 700 + i));
	w.proto_version = 2;
	w.compression = s->h.n_compression ? s->h.compression[0] : 0;
	w.lanes = 2;
	STEP(ms_welcome(s, &w));
	/* Lane 1 joins. */
	cx_lane(x, 1);
	STEP(cx_accept(x));
	STEP(cx_expect(x, FREP_MSG_HELLO, &f));
	const Frep__V1__Hello *h = (const Frep__V1__Hello *)f.msg;
	CHECK(x, h->proto_min == 2 && h->proto_max == 2 && h->lane == 1 && h->lane_count == 2,
	      "the joining HELLO offers %u..%u, lane %u of %u; expected exactly 2, lane 1 of 2 "
	      "(LANE-1, LANE-5)", h->proto_min, h->proto_max, h->lane, h->lane_count);
	CHECK(x, h->session_id.len == 16 && !memcmp(h->session_id.data, sid, 16) &&
		 !strcmp(h->volume, s->h.volume) && h->generation == s->h.generation,
	      "the joining HELLO names another session, volume or generation than lane 0 (LANE-1)");
	STEP(ms_welcome(s, &w));
	cx_lane(x, 0);
	STEP(ms_extents(s));
	STEP(ms_parts_ready(s, true, 0));
	STEP(ms_start_copy(s, PH_REPLICATE));
	/* Both lanes as their frames come, until COPY_DONE and every record it counts. */
	uint64_t counts[2] = { 0, 0 }, got[2] = { 0, 0 };
	bool done = false;
	uint8_t *seen = calloc(1, 4096);
	if (!seen)
		return cx_fail(x, "out of memory");
	int rc = -1;
	uint64_t end = now_ms() + (uint64_t)x->cf->timeout_ms;
	while (!done || got[1] < counts[1]) {
		if (now_ms() > end) {
			cx_fail(x, "after %d ms: COPY_DONE %s, lane 1 carried %" PRIu64 " of %" PRIu64
				" records (LANE-7)", x->cf->timeout_ms, done ? "came" : "did not come",
				got[1], counts[1]);
			goto out;
		}
		cx_lane(x, 1);
		if (tls_readable(x->p.c, 20)) {
			if (cx_recv(x, &f, x->p.timeout_ms) != FRAME_OK) {
				cx_fail(x, "lane 1 ended after %" PRIu64 " records: %s", got[1], x->why);
				goto out;
			}
			if (lane_take(s, &f, 1, seen, 4096) < 0)
				goto out;
			got[1]++;
		}
		cx_lane(x, 0);
		if (done || !tls_readable(x->p.c, 20))
			continue;
		/* One frame at a time: a wait on lane 0 alone would stall lane 1 (and the master). */
		x->p.skip_heartbeats = false;
		if (cx_recv(x, &f, x->p.timeout_ms) != FRAME_OK) {
			cx_fail(x, "lane 0 ended before COPY_DONE: %s", x->why);
			goto out;
		}
		if (f.hdr.type == FREP_MSG_HEARTBEAT) {
			if (ms_on_heartbeat(s, &f) < 0)
				goto out;
			continue;
		}
		if (f.hdr.type != FREP_MSG_COPY_DONE) {
			if (lane_take(s, &f, 0, seen, 4096) < 0)
				goto out;
			got[0]++;
			continue;
		}
		const Frep__V1__CopyDone *d = (const Frep__V1__CopyDone *)f.msg;
		if (d->n_lane_records != 2) {
			cx_fail(x, "COPY_DONE counts %zu lanes, the session has 2 (LANE-7)",
				d->n_lane_records);
			goto out;
		}
		counts[0] = d->lane_records[0];
		counts[1] = d->lane_records[1];
		s->copy.t_c = d->last_txid;
		done = true;
		if (got[0] != counts[0] || got[1] > counts[1] || counts[0] + counts[1] > 4096) {
			cx_fail(x, "COPY_DONE counts %" PRIu64 " and %" PRIu64 " records, lanes 0 and 1 "
				"carried %" PRIu64 " and at least %" PRIu64 " (LANE-7)", counts[0], counts[1],
				got[0], got[1]);
			goto out;
		}
	}
	cx_lane(x, 0);
	for (uint64_t i = 0; i < counts[0] + counts[1]; i++)
		if (!seen[i]) {
			cx_fail(x, "seq %" PRIu64 " never came; the pass's records are 1..%" PRIu64
				" (LANE-6)", i + 1, counts[0] + counts[1]);
			goto out;
		}
	if (ms_check_image(s, "after a copy over two lanes,") < 0 ||
	    ms_copy_ack(s, s->volume_size) < 0 || ms_consistent(s, s->copy.t_c) < 0)
		goto out;
	/* In sync, writes come as TXs on lane 0 (LANE-6: lanes carry copy records only). */
	if (ms_write(s, 8192, 4096, 800) < 0 || ms_txs(s, s->committed) < 0 ||
	    ms_ack(s, s->committed) < 0)
		goto out;
	rc = ms_check_image(s, "after a TX,");
out:
	cx_lane(x, 0);
	free(seen);
	return rc;
}

static int copy_live(struct cctx *x)
{
	struct mside *s = x->ms;
	struct mwelcome w = wel_new();
	STEP(ms_accept(s));
	STEP(ms_nbd(s));
	STEP(welcome_parts(s, &w));
	STEP(ms_start_copy(s, PH_REPLICATE));
	/* Writes while the master copies: they reach the mirror as TXs after COPY_DONE. */
	STEP(write_mix(s, 16, 5));
	STEP(ms_copy(s));
	STEP(ms_check_image(s, "after the copy and every TX from t_s + 1,"));
	STEP(ms_copy_ack(s, s->volume_size));
	STEP(ms_ack(s, s->committed));
	return ms_consistent(s, s->committed);
}

static int copy_ack_beyond(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_open(s, NULL));
	STEP(ms_start_copy(s, PH_REPLICATE));
	STEP(ms_copy(s));
	STEP(ms_copy_ack(s, s->volume_size + 4096));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

/* A copy with t_c >= 2, read to its end; CONSISTENT is next. */
static int copied(struct mside *s)
{
	struct mwelcome w = wel_new();
	STEP(ms_accept(s));
	STEP(ms_write(s, 0, 4096, 1));
	STEP(ms_write(s, 8192, 4096, 2));
	STEP(welcome_parts(s, &w));
	STEP(ms_start_copy(s, PH_REPLICATE));
	STEP(ms_copy(s));
	return ms_txs(s, s->copy.t_c);
}

static int copy_consistent_low(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(copied(s));
	CHECK(x, s->copy.t_c >= 1, "t_c is 0 after two writes");
	STEP(ms_consistent(s, s->copy.t_c - 1));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int copy_consistent_high(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(copied(s));
	uint64_t sent = s->max_txid > s->copy.t_c ? s->max_txid : s->copy.t_c;
	STEP(ms_consistent(s, sent + 1));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

/* --- sequencing ----------------------------------------------------------------------------- */

static int seq_order(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_insync(s));
	STEP(write_mix(s, 40, 11));
	STEP(ms_check_image(s, "after 40 writes in INSYNC,"));
	return ms_ack(s, s->committed);
}

/*
 * SEQ-3: without a TX_ACK the master stops after a bound. Writes of 1 MiB
 * (each one TX) go on until the master falls behind and stays behind for a
 * second; then a TX_ACK lets the rest come. The writes stay within three
 * quarters of the buffer the HELLO announces, so the bound shows before a
 * full buffer would crack the mirror.
 */
static int seq_window(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_insync(s));
	STEP(ms_nbd(s));
	uint32_t len = s->size < MIB ? (uint32_t)s->size : MIB;
	uint64_t budget = s->h.journal_size / 4 * 3 / len;
	uint64_t written = 0, got = 0, first = s->committed;
	unsigned n;
	if (budget > 256)
		budget = 256;
	for (;;) {
		CHECK(x, written < budget, "the master sent all %" PRIu64 " TXs (%" PRIu64 " MiB) "
		      "without a TX_ACK; SEQ-3 requires a bound on what is unacknowledged", written,
		      written * len / MIB);
		STEP(ms_write(s, 0, len, written + 1));
		written++;
		STEP(ms_poll_txs(s, 20, &n));
		got += n;
		if (written % 8 || got == written)
			continue;
		/* Behind: slow, or stopped? Stopped stays behind while nothing is acknowledged. */
		STEP(ms_poll_txs(s, 1000, &n));
		got += n;
		if (got == written)
			continue;
		STEP(ms_poll_txs(s, 500, &n));
		got += n;
		if (n == 0)
			break;
	}
	STEP(ms_ack(s, first + got));
	return ms_txs(s, s->committed);
}

/*
 * A full buffer cracks (CRK-2): with nothing acknowledged, writes of twice the
 * master's buffer (HELLO's journal_size) end the connection, and the master
 * comes back at once; the mirror, consistent at what it acknowledged, then
 * gets a dirty OUTOFSYNC pass (READY row 4: the master no longer holds D + 1;
 * RDY-5) that brings it level. This is the default policy; a master told to
 * make writers wait instead (CRK-6) would hold these writes, and fail here.
 */
static int crk_crack(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_insync(s));
	uint64_t d = s->copy.t_c;
	STEP(ms_nbd(s));
	uint32_t len = s->size < MIB ? (uint32_t)s->size : MIB;
	uint64_t writes = 2 * s->h.journal_size / len + 16;
	for (uint64_t i = 0; i < writes; i++)
		STEP(ms_write(s, 0, len, i + 1));
	/* Nothing read, nothing acknowledged: the TXs wait in the socket until the crack drops them. */
	for (;;) {
		struct frame f;
		enum frame_status st = cx_recv(x, &f, x->p.timeout_ms);
		if (st == FRAME_OK) {
			CHECK(x, f.hdr.type == FREP_MSG_TX || f.hdr.type == FREP_MSG_HEARTBEAT,
			      "got %s while the master's buffer overflowed", frep_msg_name(f.hdr.type));
			continue;
		}
		CHECK(x, st == FRAME_EOF || !strstr(x->why, "nothing received"),
		      "the master still holds the connection after %" PRIu64 " MiB of writes with "
		      "nothing acknowledged, twice its %" PRIu64 " MiB buffer (CRK-2)",
		      writes * len / MIB, s->h.journal_size / MIB);
		break;
	}
	cx_abort(x);
	uint64_t cut = now_ms();
	STEP(ms_accept(s));
	CHECK(x, s->accepted_ms - cut < 5000, "the master took %" PRIu64 " ms to come back after the "
	      "crack; CRK-2 reconnects at once", s->accepted_ms - cut);
	struct mwelcome w = wel_insync(d);
	STEP(welcome_parts(s, &w));
	STEP(ms_pass(s, PH_OUTOFSYNC));
	CHECK(x, !s->copy.full, "after a crack the master sent a full pass; RDY-5: a dirty one");
	return ms_check_image(s, "after the crack and its dirty pass,");
}

static int seq_ack_unsent(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_insync(s));
	STEP(write_mix(s, 2, 13));
	STEP(ms_txs(s, s->committed));
	STEP(ms_ack(s, s->max_txid + 1));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

/* Five TXs sent and none acknowledged; *first is the first of them. */
static int five_sent(struct mside *s, uint64_t *first)
{
	STEP(ms_insync(s));
	*first = s->committed + 1;
	for (unsigned i = 0; i < 5; i++)
		STEP(ms_write(s, (uint64_t)i * 8192, 4096, 20 + i));
	return ms_txs(s, s->committed);
}

static int seq_resend(struct cctx *x)
{
	struct mside *s = x->ms;
	uint64_t first;
	STEP(five_sent(s, &first));
	STEP(ms_resend(s, first + 1, first + 2));
	STEP(ms_txs(s, s->committed));
	STEP(ms_ack(s, s->committed));
	return ms_check_image(s, "after the resend,");
}

static int seq_resend_reversed(struct cctx *x)
{
	struct mside *s = x->ms;
	uint64_t first;
	STEP(five_sent(s, &first));
	STEP(ms_resend(s, first + 2, first + 1));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int seq_resend_unsent(struct cctx *x)
{
	struct mside *s = x->ms;
	uint64_t first;
	STEP(five_sent(s, &first));
	STEP(ms_resend(s, first + 1, s->max_txid + 1));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

/* --- heartbeats ------------------------------------------------------------------------------ */

/* At least two heartbeats in the next stretch, none further apart than HB-1 allows. */
static int heartbeats(struct mside *s, const char *when)
{
	int iv = hb_interval_ms(s->x);
	unsigned before = s->n_hb;
	s->hb_max_gap_ms = 0;
	STEP(ms_quiet(s, 2 * iv + iv / 2 + 200));
	CHECK(s->x, s->n_hb >= before + 2, "%u HEARTBEAT(s) %s in %d ms; HB-1: one every %d ms",
	      s->n_hb - before, when, 2 * iv + iv / 2 + 200, iv);
	CHECK(s->x, s->hb_max_gap_ms <= (uint64_t)iv * 3 / 2 + 200,
	      "%" PRIu64 " ms between two HEARTBEATs %s; HB-1: one every %d ms", s->hb_max_gap_ms,
	      when, iv);
	CHECK(s->x, !s->hb_bad[0], "%s", s->hb_bad);
	return 0;
}

static int hb_send(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_accept(s));
	STEP(ms_write(s, 0, 4096, 1));
	struct mwelcome w = wel_new();
	STEP(welcome_parts(s, &w));
	STEP(ms_start_copy(s, PH_REPLICATE));
	STEP(ms_copy(s));
	STEP(ms_txs(s, s->copy.t_c));
	/* Still REPLICATE until CONSISTENT. */
	STEP(heartbeats(s, "while copying"));
	CHECK(x, s->hb_txid == s->committed, "HEARTBEAT txid %" PRIu64 "; the master's committed TXID "
	      "is %" PRIu64 " (HB-1)", s->hb_txid, s->committed);
	STEP(ms_copy_ack(s, s->volume_size));
	STEP(ms_consistent(s, s->copy.t_c));
	STEP(ms_write(s, 4096, 4096, 2));
	STEP(ms_txs(s, s->committed));
	STEP(heartbeats(s, "while sequencing"));
	CHECK(x, s->hb_txid == s->committed, "HEARTBEAT txid %" PRIu64 "; the master's committed TXID "
	      "is %" PRIu64 " (HB-1)", s->hb_txid, s->committed);
	return 0;
}

static int hb_silence(struct cctx *x)
{
	struct mside *s = x->ms;
	int t = x->cf->peer_timeout_ms;
	STEP(ms_insync(s));
	uint64_t start = now_ms();
	s->echo = false;
	x->p.timeout_ms = t * 2 + 5000;
	STEP(ms_expect_close(s));
	uint64_t took = now_ms() - start;
	CHECK(x, took + 250 >= (uint64_t)t, "the master closed after %" PRIu64 " ms of silence, "
	      "before its --heartbeat-timeout of %d ms (HB-3)", took, t);
	CHECK(x, took <= (uint64_t)t + (uint64_t)t / 2 + 1000, "the master closed only after %" PRIu64
	      " ms of silence; its --heartbeat-timeout is %d ms (HB-3)", took, t);
	s->echo = true;
	x->p.timeout_ms = x->cf->timeout_ms;
	/* A lost link: LINKDOWN, then a new connection (FSM-4). */
	return ms_accept(s);
}

/* --- IDLE: an operator's pause (--pause-cmd, --resume-cmd) ----------------------------------- */

static int idle_pause(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_insync(s));
	STEP(ms_write(s, 0, 4096, 1));
	STEP(ms_txs(s, s->committed));
	STEP(ms_ack(s, s->committed));
	STEP(ms_pause(s));
	STEP(ms_expect(s, FREP_MSG_PAUSE, NULL));
	/* Paused: local writes go on, nothing is sequenced, heartbeats go on (IDLE-2, HB-1). */
	STEP(ms_write(s, 8192, 4096, 2));
	STEP(ms_write(s, 0, 12288, 3));
	STEP(heartbeats(s, "while paused"));
	CHECK(x, s->hb_txid == s->committed, "HEARTBEAT txid %" PRIu64 " in IDLE; the master's "
	      "committed TXID is %" PRIu64 " (HB-1)", s->hb_txid, s->committed);
	STEP(ms_resume(s));
	STEP(ms_expect(s, FREP_MSG_RESUME, NULL));
	STEP(ms_check_image(s, "after RESUME,"));
	STEP(ms_ack(s, s->committed));
	return ms_quiet(s, 200);
}

/* --- errors and goodbyes ------------------------------------------------------------------- */

static int err_minor(struct cctx *x)
{
	struct mside *s = x->ms;
	struct mwelcome w = wel_new();
	STEP(ms_accept(s));
	STEP(send_error(x, FREP_E_BUSY, false));
	STEP(ms_expect_close(s));
	/* RESET, then INIT again on a new connection (FSM-3). */
	STEP(ms_accept(s));
	STEP(ms_welcome(s, &w));
	STEP(ms_extents(s));
	STEP(send_error(x, FREP_E_IO, false));
	STEP(ms_expect_close(s));
	/* A failed MAKEPARTS is retried from a new HELLO and WELCOME too (FSM-3). */
	STEP(reopen(s, &w));
	return ms_pass(s, PH_REPLICATE);
}

static int err_minor_insync(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_insync(s));
	STEP(ms_write(s, 0, 4096, 1));
	STEP(ms_txs(s, s->committed));
	STEP(ms_ack(s, s->committed));
	STEP(ms_quiet(s, 100));
	STEP(send_error(x, FREP_E_IO, false));
	STEP(ms_expect_close(s));
	struct mwelcome w = wel_insync(s->committed);
	STEP(reopen(s, &w));
	return ms_start_sync(s, s->committed);
}

/* A severe error: closed without an answer, no retry, and local I/O goes on (FSM-6). */
static int severe(struct cctx *x, uint32_t code, bool flag)
{
	struct mside *s = x->ms;
	STEP(ms_accept(s));
	STEP(send_error(x, code, flag));
	STEP(ms_expect_close(s));
	STEP(ms_no_reconnect(s, NO_RECONNECT_MS));
	STEP(ms_write(s, 0, 4096, 1));
	return ms_read_check(s, 0, 4096, "in ERROR");
}

/*
 * FENCED (EPO-3): severe, and more: the master records it durably and takes
 * no local write from then on, across a restart, before the mirror says it
 * again. Its volume keeps what it had.
 */
static int err_fenced(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_insync(s));
	STEP(ms_write(s, 0, 4096, 7));
	struct mtx tx;
	STEP(ms_tx(s, &tx));
	STEP(ms_ack(s, tx.txid));
	Frep__V1__Error e = FREP__V1__ERROR__INIT;
	e.code = FREP_E_FENCED;
	e.severe = true;
	e.message = "frep-conform: volume promoted elsewhere";
	e.has_fenced_epoch = e.has_fenced_txid = e.has_fenced_unix_ms = true;
	e.fenced_epoch = 2;
	e.fenced_txid = tx.txid;
	e.fenced_unix_ms = (uint64_t)wall_ms();
	STEP(cx_send(x, FREP_MSG_ERROR, &e.base, NULL, 0));
	STEP(ms_expect_close(s));
	STEP(ms_no_reconnect(s, NO_RECONNECT_MS));
	STEP(ms_write_refused(s, 4096, 4096, 8, "fenced"));
	STEP(ms_read_check(s, 0, 8192, "fenced"));
	/* Durable: restarted, it refuses writes before any mirror speaks to it. */
	STEP(ms_restart(s));
	STEP(ms_write_refused(s, 8192, 4096, 9, "fenced, after a restart"));
	return ms_read_check(s, 0, 16384, "fenced, after a restart");
}

static int err_severe(struct cctx *x)
{
	return severe(x, FREP_E_NAME_CLASH, true);
}

static int err_severe_flag(struct cctx *x)
{
	return severe(x, FREP_E_BUSY, true);
}

static int err_unknown_code(struct cctx *x)
{
	return severe(x, 99, false);
}

static int err_code_zero(struct cctx *x)
{
	return severe(x, 0, false);
}

/* The wait before the next connection after a minor error at INIT. */
static int busy_delay(struct mside *s, uint64_t *ms)
{
	uint64_t sent = now_ms();
	STEP(send_error(s->x, FREP_E_BUSY, false));
	STEP(ms_expect_close(s));
	STEP(ms_accept(s));
	*ms = s->accepted_ms - sent;
	return 0;
}

static int err_backoff(struct cctx *x)
{
	struct mside *s = x->ms;
	uint64_t d1, d2, d3, d4;
	STEP(ms_accept(s));
	STEP(busy_delay(s, &d1));
	STEP(busy_delay(s, &d2));
	STEP(busy_delay(s, &d3));
	CHECK(x, d3 > d1, "retries after %" PRIu64 ", %" PRIu64 ", %" PRIu64 " ms; the backoff doubles "
	      "from MIN up to MAX (FSM-5; frep-conform needs MAX >= 4 MIN)", d1, d2, d3);
	/* CONSISTENT resets it to MIN. */
	struct mwelcome w = wel_new();
	STEP(welcome_parts(s, &w));
	STEP(ms_pass(s, PH_REPLICATE));
	STEP(ms_quiet(s, 100));
	uint64_t sent = now_ms();
	STEP(send_error(x, FREP_E_IO, false));
	STEP(ms_expect_close(s));
	STEP(ms_accept(s));
	d4 = s->accepted_ms - sent;
	CHECK(x, d4 < d3, "the retry after CONSISTENT waited %" PRIu64 " ms, the third before it %" PRIu64
	      " ms; CONSISTENT resets the backoff to MIN (FSM-5)", d4, d3);
	return 0;
}

static int bye_insync(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_insync(s));
	STEP(send_goodbye(x));
	STEP(ms_expect_close(s));
	struct mwelcome w = wel_insync(s->copy.t_c);
	STEP(reopen(s, &w));
	return ms_start_sync(s, s->copy.t_c);
}

static int bye_init(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_accept(s));
	STEP(send_goodbye(x));
	STEP(ms_expect_close(s));
	return ms_accept(s);
}

/* --- framing and encoding ---------------------------------------------------------------- */

static int bad_header(struct cctx *x, uint32_t magic, uint8_t version, uint8_t type, uint16_t flags,
		      uint32_t body_len, uint32_t trailer_len)
{
	STEP(ms_insync(x->ms));
	STEP(cx_send_hdr(x, magic, version, type, flags, body_len, trailer_len));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int frame_magic(struct cctx *x)
{
	return bad_header(x, 0x58585858, 1, FREP_MSG_HEARTBEAT, 0, 4, 0);
}

static int frame_version(struct cctx *x)
{
	return bad_header(x, FREP_FRAME_MAGIC, 2, FREP_MSG_HEARTBEAT, 0, 4, 0);
}

static int frame_type_zero(struct cctx *x)
{
	return bad_header(x, FREP_FRAME_MAGIC, 1, 0, 0, 0, 0);
}

static int frame_type_unknown(struct cctx *x)
{
	return bad_header(x, FREP_FRAME_MAGIC, 1, FREP_MSG__MAX + 1, 0, 0, 0);
}

static int frame_flags(struct cctx *x)
{
	return bad_header(x, FREP_FRAME_MAGIC, 1, FREP_MSG_HEARTBEAT, 0x0001, 4, 0);
}

static int frame_body_limit(struct cctx *x)
{
	return bad_header(x, FREP_FRAME_MAGIC, 1, FREP_MSG_TX_ACK, 0, FREP_MAX_BODY + 1, 0);
}

static int frame_trailer_type(struct cctx *x)
{
	return bad_header(x, FREP_FRAME_MAGIC, 1, FREP_MSG_TX_ACK, 0, 2, 16);
}

static int frame_trailer_limit(struct cctx *x)
{
	return bad_header(x, FREP_FRAME_MAGIC, 1, FREP_MSG_TX, 0, 8, FREP_MAX_TRAILER + 1);
}

static int msg_garbage(struct cctx *x)
{
	static const uint8_t junk[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	STEP(ms_insync(x->ms));
	STEP(cx_send_body(x, FREP_MSG_TX_ACK, junk, sizeof(junk), NULL, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int msg_required(struct cctx *x)
{
	STEP(ms_insync(x->ms));
	STEP(cx_send_body(x, FREP_MSG_TX_ACK, NULL, 0, NULL, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int msg_unknown_field(struct cctx *x)
{
	struct mside *s = x->ms;
	/* seq 1, txid 0, then field 99 (varint 7) and field 100 (bytes "x") */
	static const uint8_t hb[] = { 0x08, 0x01, 0x10, 0x00, 0x98, 0x06, 0x07, 0xa2, 0x06, 0x01, 'x' };
	STEP(ms_insync(s));
	STEP(cx_send_body(x, FREP_MSG_HEARTBEAT, hb, sizeof(hb), NULL, 0));
	STEP(ms_quiet(s, 300));
	STEP(ms_write(s, 0, 4096, 1));
	return ms_txs(s, s->committed);
}

/* --- durability: power loss of the master (--crash-cmd, --restart-cmd) ------------------------ */

static int dur_committed(struct cctx *x)
{
	struct mside *s = x->ms;
	struct mtx t;
	STEP(ms_insync(s));
	uint64_t base = s->committed, g = s->h.generation;
	STEP(write_mix(s, 10, 17));
	STEP(ms_txs(s, s->committed));
	uint64_t acked = base + 4;
	STEP(ms_ack(s, acked));
	STEP(ms_quiet(s, 200));
	STEP(ms_power_cycle(s));
	STEP(ms_accept(s)); /* committed_txid covers every replied write; generation higher */
	CHECK(x, s->h.retained_first_txid && s->h.retained_first_txid <= acked + 1,
	      "after the power loss the master retains TXIDs from %" PRIu64 ", but the mirror "
	      "acknowledged only up to %" PRIu64 " (DUR-6)", s->h.retained_first_txid, acked);
	struct mwelcome w = wel_insync(acked);
	STEP(welcome_parts(s, &w));
	STEP(ms_start_sync(s, acked));
	/* The unacknowledged TXs again, as they were (ms_tx compares each with the first time). */
	while (s->next_txid <= s->committed) {
		STEP(ms_tx(s, &t));
		CHECK(x, t.generation == g, "TX %" PRIu64 " resent after the restart carries generation %"
		      PRIu64 "; it was committed by generation %" PRIu64 " (DUR-3, SEQ-11)", t.txid,
		      t.generation, g);
	}
	STEP(ms_write(s, 65536, 4096, 99));
	STEP(ms_tx(s, &t));
	CHECK(x, t.generation == s->h.generation, "TX %" PRIu64 " committed after the restart carries "
	      "generation %" PRIu64 ", the HELLO %" PRIu64 " (DUR-3)", t.txid, t.generation,
	      s->h.generation);
	return ms_check_image(s, "after the power loss and the resent TXs,");
}

static int dur_redo(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_accept(s));
	STEP(write_mix(s, 24, 19));
	STEP(ms_power_cycle(s));
	/* ms_nbd reads the whole volume again: every replied write must be there (DUR-5). */
	STEP(ms_nbd(s));
	return ms_accept(s);
}

/* --- online verify ---------------------------------------------------------------- */

/* INSYNC with a mirror that says it verifies (VFY-1), data written everywhere, all acknowledged. */
static int vfy_ready(struct mside *s)
{
	struct mwelcome w = wel_new();
	w.verify = true;
	STEP(ms_insync_w(s, &w));
	STEP(ms_nbd(s));
	for (uint64_t off = 0; off < s->volume_size; off += 256 * 1024)
		STEP(ms_write(s, off + 4096, 65536, off + 1));
	STEP(ms_txs(s, s->committed));
	return ms_ack(s, s->committed);
}

/* The last region, in the middle: what a mismatch there names. */
static uint64_t vfy_bad_at(const struct mside *s)
{
	return s->volume_size - 4096;
}

/* A verify compares every region once, each at the TXID it follows, with writes going on. */
static int vfy_compare(struct cctx *x)
{
	struct mside *s = x->ms;
	uint64_t off, len;
	STEP(vfy_ready(s));
	STEP(ms_verify(s, false));
	STEP(ms_write(s, s->volume_size - 8192, 4096, 77)); /* a write while it runs */
	STEP(ms_verify_all(s, UINT64_MAX, &off, &len));
	STEP(ms_txs(s, s->committed)); /* the write's TX, if it came after every VERIFY */
	STEP(ms_ack(s, s->committed));
	STEP(ms_quiet(s, 300));
	return ms_check_image(s, "after a verify");
}

/* Without Welcome.verify, no VERIFY, whatever the operator asks (VFY-1). */
static int vfy_not_announced(struct cctx *x)
{
	struct mside *s = x->ms;
	STEP(ms_insync(s));
	STEP(ms_nbd(s));
	STEP(ms_write(s, 0, 4096, 1));
	STEP(ms_tx(s, NULL));
	STEP(ms_ack(s, s->committed));
	if (!x->cf->verify_cmd)
		return cx_skip(x, "needs --verify-cmd (an operator's online verify)");
	char dir[300], cmd[4096];
	if (master_expand(x->cf, x->cf->verify_cmd, master_dir(x->cf, dir, sizeof(dir)), cmd,
			  sizeof(cmd)) < 0)
		return cx_fail(x, "--verify-cmd: the command is too long once expanded");
	fflush(NULL);
	int rc = system(cmd); /* refused or not: the wire must stay free of VERIFY */
	(void)rc;
	return ms_quiet(s, 1000);
}

/* A mismatch is no error: the session goes on, and without repair nothing is rewritten (VFY-7). */
static int vfy_mismatch(struct cctx *x)
{
	struct mside *s = x->ms;
	uint64_t off, len;
	STEP(vfy_ready(s));
	STEP(ms_verify(s, false));
	STEP(ms_verify_all(s, vfy_bad_at(s), &off, &len));
	CHECK(x, len, "no VERIFY covered offset %" PRIu64, vfy_bad_at(s));
	STEP(ms_quiet(s, 500));
	STEP(ms_write(s, 0, 4096, 99));
	STEP(ms_tx(s, NULL));
	return ms_ack(s, s->committed);
}

/* With repair, exactly the mismatching region comes again as TX_WRITEs of the master's data (VFY-8). */
static int vfy_repair(struct cctx *x)
{
	struct mside *s = x->ms;
	uint64_t off, len, first;
	unsigned n;
	STEP(vfy_ready(s));
	STEP(ms_verify(s, true));
	STEP(ms_verify_all(s, vfy_bad_at(s), &off, &len));
	CHECK(x, len, "no VERIFY covered offset %" PRIu64, vfy_bad_at(s));
	/*
	 * The repair's TXs are the master's own, not writes of this case: it
	 * cannot know how many to expect, so any TXID may come (SEQ-1 aside).
	 */
	first = s->max_txid + 1;
	s->committed = UINT64_MAX >> 2;
	STEP(ms_poll_txs(s, 1000, &n));
	s->committed = s->max_txid;
	CHECK(x, n, "no TX rewrote the mismatching region [%" PRIu64 ", +%" PRIu64 ") (VFY-8)", off, len);
	uint64_t covered = 0;
	for (size_t i = 0; i < s->n_got; i++) {
		const struct mtx *t = &s->got[i];
		if (t->txid < first)
			continue;
		CHECK(x, t->op == FREP__V1__TX_OP__TX_WRITE && t->offset >= off &&
			 t->offset + t->length <= off + len,
		      "after the verify, TX %" PRIu64 " (op %u, [%" PRIu64 ", +%" PRIu64 ")) is not a "
		      "TX_WRITE inside the mismatching region [%" PRIu64 ", +%" PRIu64 ") (VFY-8)",
		      t->txid, t->op, t->offset, t->length, off, len);
		covered += t->length;
	}
	CHECK(x, covered == len, "the repair rewrote %" PRIu64 " bytes of the %" PRIu64
	      "-byte mismatching region (VFY-8)", covered, len);
	STEP(ms_ack(s, s->max_txid));
	return ms_check_image(s, "after the repair");
}

/* The first VERIFY answered with a result it cannot take: PROTOCOL (VFY-5). */
static int vfy_bad_answer(struct cctx *x, bool bad_echo)
{
	struct mside *s = x->ms;
	struct frame f;
	uint8_t hash[FREP_VERIFY_HASH_SIZE] = { 0 };
	STEP(vfy_ready(s));
	STEP(ms_verify(s, false));
	STEP(ms_expect(s, FREP_MSG_VERIFY, &f));
	const Frep__V1__Verify *v = (const Frep__V1__Verify *)f.msg;
	Frep__V1__VerifyResult r = FREP__V1__VERIFY_RESULT__INIT;
	r.verify_id = v->verify_id;
	r.offset = v->offset + (bad_echo ? 4096 : 0);
	r.txid = v->txid;
	r.status = FREP__V1__VERIFY_STATUS__VERIFY_HASHED;
	r.has_hash = true;
	r.hash = (ProtobufCBinaryData){ bad_echo ? sizeof(hash) : 8, hash };
	STEP(cx_send(x, FREP_MSG_VERIFY_RESULT, &r.base, NULL, 0));
	/* VERIFYs the master sent before it read the result are passed over. */
	for (;;) {
		enum frame_status st = ms_recv(s, &f, x->p.timeout_ms);
		if (st != FRAME_OK)
			return cx_fail(x, "expected ERROR PROTOCOL, the master %s",
				       st == FRAME_EOF ? "closed the connection" : "sent nothing readable");
		if (f.hdr.type != FREP_MSG_VERIFY)
			break;
	}
	CHECK(x, f.hdr.type == FREP_MSG_ERROR, "expected ERROR PROTOCOL, got %s",
	      frep_msg_name(f.hdr.type));
	const Frep__V1__Error *e = (const Frep__V1__Error *)f.msg;
	CHECK(x, e->code == FREP_E_PROTOCOL && e->severe && e->message[0],
	      "expected ERROR PROTOCOL (severe, with a message), got %s severe=%d \"%.200s\" (ERR-1)",
	      frep_error_name(e->code), e->severe, e->message);
	return cx_expect_close(x);
}

static int vfy_bad_echo(struct cctx *x)
{
	return vfy_bad_answer(x, true);
}

static int vfy_short_hash(struct cctx *x)
{
	return vfy_bad_answer(x, false);
}

#define C(id, clauses, title, fn) { id, clauses, title, ROLE_MASTER, false, fn, 0, 0 }
#define D(id, clauses, title, fn) { id, clauses, title, ROLE_MASTER, true, fn, 0, 0 }

const struct conform_case master_cases[] = {
	C("master.hs.hello", "ROLE-1 HS-1 LANE-1 LANE-2 HS-2 MSG-4", "the first frame is a well-formed HELLO for one lane", hs_hello),
	C("master.hs.session-id", "LANE-3 ERR-4 FSM-4", "every connection attempt has a fresh session_id", hs_session_id),
	C("master.hs.version", "HS-3", "WELCOME proto_version 3, or 0, is VERSION", hs_version),
	C("master.v2.offer", "HS-3 NEG-1 NEG-2 LANE-1 LANE-4", "HELLO offers versions 1..2, known algorithms, 1..16 lanes", v2_offer),
	C("master.v2.compressed", "NEG-3 FRAME-3 FRAME-5 COMP-1 COMP-2 COMP-3 COMP-5", "with compression chosen, copy and TX data come compressed and exact", v2_compressed),
	C("master.v2.uncompressed", "NEG-3 COMP-1", "version 2 without compression: nothing comes compressed", v2_uncompressed),
	C("master.v2.v1-mirror", "NEG-1 FRAME-3", "a version-1 WELCOME: the master speaks version 1, uncompressed", v2_v1_mirror),
	C("master.v2.lanes", "LANE-1 LANE-3 LANE-4 LANE-5 LANE-6 LANE-7", "two lanes granted: lane 1 joins the session, records carry pass and seq, COPY_DONE counts them", v2_lanes),
	C("master.v2.bad-choice", "NEG-3 LANE-4", "a compression not offered is PROTOCOL; more lanes than asked is LANES", v2_bad_choice),
	C("master.mp.table", "MP-1 MP-5 MP-7", "the extent table is valid and describes the exported volume", mp_table),
	C("master.mp.size", "MP-5", "PARTS_READY with another volume_size is BAD_EXTENTS", mp_size),
	C("master.mp.restart", "MP-6 DUR-3 RDY-1", "after a restart MAKEPARTS runs again, then START_SYNC from D", mp_restart),
	C("master.mp.reconnect", "FSM-4 MP-6 RDY-1", "after a lost link READY decides from the fresh WELCOME", mp_reconnect),
	C("master.rdy.ahead", "RDY-1 RDY-2 ERR-3", "row 1: D > C is AHEAD, and the master stays away", rdy_ahead),
	C("master.rdy.new", "RDY-1 RDY-5", "row 2: a new or CREATED volume gets a full pass from 0", rdy_new),
	C("master.rdy.sync", "RDY-1 RDY-3 RDY-7 SEQ-1 SEQ-5", "row 3: START_SYNC from D, then TX D+1.. as written", rdy_sync),
	C("master.rdy.outofsync", "RDY-1 RDY-5 CRK-4 COPY-5 DUR-14", "row 4: an OUTOFSYNC pass brings the mirror level", rdy_outofsync),
	C("master.rdy.not-consistent", "RDY-1", "row 4: phase INSYNC but not consistent is OUTOFSYNC", rdy_not_consistent),
	C("master.rdy.resume", "RDY-6 COPY-16 COPY-5 DUR-13", "an interrupted full pass resumes at the cursor with its base", rdy_resume),
	C("master.rdy.resume-end", "RDY-6", "a cursor past the end resumes at the volume size", rdy_resume_end),
	C("master.rdy.no-resume", "RDY-6 COPY-1", "a base the master never committed starts a new pass", rdy_no_resume),
	C("master.copy.content", "COPY-1 COPY-5 COPY-9 COPY-12 DUR-10 MSG-7", "the copy carries exactly what was written; t_s is the last commit", copy_content),
	C("master.copy.live", "COPY-10 DUR-10 SEQ-1", "writes during the copy come as TXs after COPY_DONE, from t_s+1", copy_live),
	C("master.copy.ack-beyond", "COPY-8", "COPY_ACK beyond what was copied is PROTOCOL", copy_ack_beyond),
	C("master.copy.consistent-low", "COPY-12", "CONSISTENT below t_c is PROTOCOL", copy_consistent_low),
	C("master.copy.consistent-high", "COPY-12", "CONSISTENT above the last TXID sent is PROTOCOL", copy_consistent_high),
	C("master.seq.order", "SEQ-1 SEQ-2 MSG-7 DUR-2", "TXs in TXID order, none skipped, each as written", seq_order),
	C("master.seq.window", "SEQ-3", "without TX_ACK the master stops after a bound, and goes on after one", seq_window),
	C("master.crk.crack", "CRK-2 CRK-4 RDY-5", "a full buffer cracks: the connection ends, a dirty OUTOFSYNC pass follows", crk_crack),
	C("master.seq.ack-unsent", "SEQ-5", "TX_ACK of a TXID never sent is PROTOCOL", seq_ack_unsent),
	C("master.seq.resend", "SEQ-7 SEQ-1", "RESEND gets every TXID from `from` again, unchanged", seq_resend),
	C("master.seq.resend-reversed", "SEQ-7", "RESEND with from > to is PROTOCOL", seq_resend_reversed),
	C("master.seq.resend-unsent", "SEQ-7", "RESEND up to a TXID never sent is PROTOCOL", seq_resend_unsent),
	C("master.hb.send", "HB-1", "heartbeats while copying and sequencing: seq +1, the committed TXID", hb_send),
	C("master.hb.silence", "HB-3 ERR-5 FSM-4", "a silent mirror is dropped after the timeout, then reconnected", hb_silence),
	C("master.vfy.compare", "VFY-1 VFY-2 VFY-3 VFY-5", "a verify covers the volume once, each VERIFY right after its TXID, with writes going on", vfy_compare),
	C("master.vfy.not-announced", "VFY-1", "no VERIFY to a mirror whose WELCOME does not say verify", vfy_not_announced),
	C("master.vfy.mismatch", "VFY-7", "a mismatching hash is no error, and nothing is rewritten without repair", vfy_mismatch),
	C("master.vfy.repair", "VFY-8 SEQ-1", "repair rewrites exactly the mismatching region as TX_WRITEs of the master's data", vfy_repair),
	C("master.vfy.bad-echo", "VFY-5", "a VERIFY_RESULT echoing another offset is PROTOCOL", vfy_bad_echo),
	C("master.vfy.short-hash", "VFY-5", "VERIFY_HASHED with an 8-byte hash is PROTOCOL", vfy_short_hash),
	C("master.idle.pause", "IDLE-1 IDLE-2 IDLE-3 HB-1", "an operator's pause: PAUSE, no TX, heartbeats; RESUME, then the TXs", idle_pause),
	C("master.err.minor", "ERR-2 ERR-3 FSM-3 HS-6", "a minor ERROR in INIT or MAKEPARTS: no answer, a retry", err_minor),
	C("master.err.minor-insync", "ERR-3 FSM-3 RDY-1", "a minor ERROR in INSYNC: a retry that decides again", err_minor_insync),
	C("master.err.severe", "ERR-2 ERR-3 FSM-6", "a severe ERROR: no answer, no retry, local writes go on", err_severe),
	C("master.err.severe-flag", "ERR-6", "a minor code with severe=true is severe", err_severe_flag),
	C("master.err.fenced", "EPO-3 ERR-3", "FENCED: no retry, no local write, across a restart", err_fenced),
	C("master.err.unknown-code", "ERR-6", "code 99 with severe=false is severe", err_unknown_code),
	C("master.err.code-zero", "ERR-6", "code 0 with severe=false is severe", err_code_zero),
	C("master.err.backoff", "FSM-5", "retries back off, doubling; CONSISTENT resets the backoff", err_backoff),
	C("master.bye.insync", "BYE-1 ERR-5 FSM-4", "GOODBYE in INSYNC: the master closes, reconnects, syncs", bye_insync),
	C("master.bye.init", "BYE-1 ERR-4", "GOODBYE in INIT: the master closes and retries", bye_init),
	C("master.frame.magic", "FRAME-2 FRAME-9", "a bad magic is PROTOCOL", frame_magic),
	C("master.frame.version", "FRAME-3 FRAME-9", "frame version 2 is PROTOCOL", frame_version),
	C("master.frame.type-zero", "FRAME-4", "type 0 is PROTOCOL", frame_type_zero),
	C("master.frame.type-unknown", "FRAME-4", "type 20 is PROTOCOL", frame_type_unknown),
	C("master.frame.flags", "FRAME-5", "a flag bit set is PROTOCOL", frame_flags),
	C("master.frame.body-limit", "FRAME-6 FRAME-8", "body_len 65537 is PROTOCOL from the header alone", frame_body_limit),
	C("master.frame.trailer-type", "FRAME-7", "a trailer on TX_ACK is PROTOCOL", frame_trailer_type),
	C("master.frame.trailer-limit", "FRAME-7 FRAME-8", "trailer_len 32 MiB + 1 is PROTOCOL from the header alone", frame_trailer_limit),
	C("master.msg.garbage", "MSG-1 FRAME-9", "a body that is not protobuf is PROTOCOL", msg_garbage),
	C("master.msg.required", "MSG-2 FRAME-9", "a TX_ACK without its txid is PROTOCOL", msg_required),
	C("master.msg.unknown-field", "MSG-3", "unknown fields are ignored", msg_unknown_field),
	D("master.dur.committed", "DUR-1 DUR-2 DUR-3 DUR-6 SEQ-11 RDY-3", "after a power loss every replied write is committed and resent as it was", dur_committed),
	D("master.dur.redo", "DUR-5 DUR-1", "after a power loss the volume holds every replied write", dur_redo),
	{ NULL, NULL, NULL, ROLE_MASTER, false, NULL, 0, 0 },
};
