/*
 * frep-conform plays a master against a mirror: the hand-written cases, each
 * naming the spec clauses it checks. The (state, message) matrix is in
 * mirror-matrix.c; the steps in mirror-steps.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress.h"
#include "mirror.h"
#include "tls.h"
#include "util.h"

#define MIB (1024ull * 1024)
#define TX_WRITE FREP__V1__TX_OP__TX_WRITE
#define TX_TRIM FREP__V1__TX_OP__TX_TRIM
#define TX_ZERO FREP__V1__TX_OP__TX_ZERO
#define PH_REPLICATE FREP__V1__PHASE__PHASE_REPLICATE
#define PH_OUTOFSYNC FREP__V1__PHASE__PHASE_OUTOFSYNC

/* A HELLO body with bytes appended to it (fields protobuf-c would not write). */
static int hello_plus(struct cctx *x, const uint8_t *extra, size_t extra_len)
{
	Frep__V1__Hello h = FREP__V1__HELLO__INIT;
	uint8_t sid[16], buf[FREP_MAX_BODY + 64];
	random_bytes(sid, sizeof(sid));
	h.proto_min = h.proto_max = 1;
	h.master_node = "frep-conform";
	h.volume = x->volume;
	h.volume_uuid = (ProtobufCBinaryData){ sizeof(x->uuid), x->uuid };
	h.generation = x->generation;
	h.session_id = (ProtobufCBinaryData){ sizeof(sid), sid };
	h.lane_count = 1;
	h.journal_size = 16 << 20;
	size_t n = cx_pack(&h.base, buf, sizeof(buf));
	if (!n || n + extra_len > sizeof(buf))
		return cx_fail(x, "internal: HELLO body too large");
	memcpy(buf + n, extra, extra_len);
	return cx_send_body(x, FREP_MSG_HELLO, buf, (uint32_t)(n + extra_len), NULL, 0);
}

/* Connects, sends a HELLO made by a, and expects the ERROR code. */
static int hello_refused(struct cctx *x, const struct hello_args *a, unsigned code)
{
	STEP(cx_connect(x));
	STEP(m_send_hello(x, a));
	return cx_expect_error(x, code, NULL);
}

static int expect_welcome(struct cctx *x, const struct hello_args *a, struct frame *f)
{
	STEP(cx_connect(x));
	STEP(m_send_hello(x, a));
	return cx_expect(x, FREP_MSG_WELCOME, f);
}

/* --- framing ---------------------------------------------------------------- */

static int frame_magic(struct cctx *x)
{
	STEP(cx_connect(x));
	STEP(cx_send_hdr(x, 0x58585858, 1, FREP_MSG_HELLO, 0, 0, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int frame_version(struct cctx *x)
{
	STEP(cx_connect(x));
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, 2, FREP_MSG_HELLO, 0, 0, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int frame_type0(struct cctx *x)
{
	STEP(cx_connect(x));
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, 1, 0, 0, 0, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int frame_type_unknown(struct cctx *x)
{
	STEP(m_insync(x));
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, 1, FREP_MSG__MAX + 1, 0, 0, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int frame_flags(struct cctx *x)
{
	STEP(m_insync(x));
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, 1, FREP_MSG_HEARTBEAT, 0x8000, 0, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

/* The answer comes from the header alone: the body it announces is never sent. */
static int frame_body_limit(struct cctx *x)
{
	STEP(cx_connect(x));
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, 1, FREP_MSG_HELLO, 0, FREP_MAX_BODY + 1, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int frame_body_hostile(struct cctx *x)
{
	STEP(cx_connect(x));
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, 1, FREP_MSG_HELLO, 0, 0xffffffffu, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

/* A body of exactly 65536 bytes: an unknown bytes field pads a HELLO to the limit. */
static int frame_body_max(struct cctx *x)
{
	Frep__V1__Hello h = FREP__V1__HELLO__INIT;
	uint8_t sid[16];
	random_bytes(sid, sizeof(sid));
	h.proto_min = h.proto_max = 1;
	h.master_node = "frep-conform";
	h.volume = x->volume;
	h.volume_uuid = (ProtobufCBinaryData){ sizeof(x->uuid), x->uuid };
	h.session_id = (ProtobufCBinaryData){ sizeof(sid), sid };
	h.generation = 1;
	h.lane_count = 1;
	h.journal_size = 16 << 20;
	size_t base = protobuf_c_message_get_packed_size(&h.base);
	/* field 1000, wire type 2: tag varint 0xc2 0x3e; length as a 3-byte varint */
	size_t pad = FREP_MAX_BODY - base - 2 - 3;
	uint8_t *buf = malloc(FREP_MAX_BODY);
	if (!buf)
		return cx_fail(x, "out of memory");
	protobuf_c_message_pack(&h.base, buf);
	uint8_t *p = buf + base;
	*p++ = 0xc2;
	*p++ = 0x3e;
	*p++ = (uint8_t)(0x80 | (pad & 0x7f));
	*p++ = (uint8_t)(0x80 | ((pad >> 7) & 0x7f));
	*p++ = (uint8_t)(pad >> 14);
	memset(p, 'p', pad);
	int rc = cx_connect(x) == 0 && cx_send_body(x, FREP_MSG_HELLO, buf, FREP_MAX_BODY, NULL, 0) == 0
			 ? cx_expect(x, FREP_MSG_WELCOME, NULL)
			 : -1;
	free(buf);
	return rc;
}

static int frame_trailer_limit(struct cctx *x)
{
	STEP(m_insync(x));
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, 1, FREP_MSG_TX, 0, 8, FREP_MAX_TRAILER + 1));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int frame_trailer_type(struct cctx *x)
{
	STEP(cx_connect(x));
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, 1, FREP_MSG_HELLO, 0, 0, 16));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

/* The largest trailer there is: one 32 MiB TX_WRITE. */
static int frame_trailer_max(struct cctx *x)
{
	x->volume_size = 64 * MIB;
	STEP(m_insync(x));
	STEP(m_tx(x, 1, TX_WRITE, 8 * MIB, FREP_MAX_TRAILER));
	return m_wait_ack(x, 1);
}

/* A TX cut inside its data is a lost link: nothing of it is journaled. */
static int frame_cut_tx(struct cctx *x)
{
	struct welcome w;
	STEP(m_insync(x));
	STEP(m_tx(x, 1, TX_WRITE, 0, 4096));
	STEP(m_wait_ack(x, 1));
	uint8_t data[4096];
	cx_fill(data, sizeof(data), 2);
	Frep__V1__Tx t = FREP__V1__TX__INIT;
	t.generation = x->generation;
	t.txid = 2;
	t.op = TX_WRITE;
	t.offset = 8192;
	t.length = sizeof(data);
	t.data_crc = frep_crc32c(data, sizeof(data));
	uint8_t body[128];
	size_t n = cx_pack(&t.base, body, sizeof(body));
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, 1, FREP_MSG_TX, 0, (uint32_t)n, sizeof(data)));
	STEP(cx_send_raw(x, body, n));
	STEP(cx_send_raw(x, data, sizeof(data) / 2));
	cx_close(x);
	STEP(m_reopen(x, &w));
	CHECK(x, w.durable_txid == 1, "durable_txid %" PRIu64 " after a TX 2 cut inside its data: "
	      "it must stay 1 (FRAME-10: a lost link, nothing half-received is journaled)", w.durable_txid);
	return 0;
}

/*
 * A frame trickled a byte at a time must not hold the session past the frame
 * bound: each byte comes well inside the silence timeout (HB-3), and the frame
 * (a 4 KiB body) would take minutes to complete.
 */
static int frame_trickle(struct cctx *x)
{
	enum { BODY = 4096 };
	uint8_t frame[FREP_FRAME_HDR_SIZE + BODY] = { 0 };
	struct frep_frame_hdr h = { .version = 1, .type = FREP_MSG_HEARTBEAT, .body_len = BODY };
	frame_hdr_encode(&h, frame);
	STEP(m_insync(x));
	int step_ms = x->cf->peer_timeout_ms / 4 < 1000 ? x->cf->peer_timeout_ms / 4 : 1000;
	uint64_t start = now_ms(), limit = (uint64_t)x->cf->frame_bound_ms + 5000;
	for (size_t i = 0; i < sizeof(frame); i++) {
		if (i && tls_readable(x->p.c, step_ms)) {
			struct frame f;
			enum frame_status st = cx_recv(x, &f, 1000);
			CHECK(x, st != FRAME_OK || f.hdr.type == FREP_MSG_ERROR,
			      "got %s while trickling a frame", frep_msg_name(f.hdr.type));
			uint64_t took = now_ms() - start;
			CHECK(x, took >= (uint64_t)x->cf->frame_bound_ms / 2,
			      "the mirror gave up after %" PRIu64 " ms, long before the frame bound "
			      "(%d ms; a slow link must still work)", took, x->cf->frame_bound_ms);
			return 0;
		}
		CHECK(x, now_ms() - start < limit, "the mirror still waits for the frame after %" PRIu64
		      " ms (frame bound %d ms)", now_ms() - start, x->cf->frame_bound_ms);
		if (cx_send_raw(x, frame + i, 1) < 0)
			return 0; /* reset by the mirror: it gave up, which is the point */
	}
	return cx_fail(x, "the whole %zu-byte frame went through byte by byte", sizeof(frame));
}

static int frame_order(struct cctx *x)
{
	STEP(m_insync(x));
	for (uint64_t t = 1; t <= 64; t++)
		STEP(m_tx(x, t, t % 3 == 0 ? TX_ZERO : TX_WRITE, (t % 16) * 4096, 4096));
	STEP(m_wait_ack(x, 64));
	CHECK(x, !x->seen.tx_ack_decreased, "TX_ACK values decreased (SEQ-4)");
	CHECK(x, x->seen.tx_ack == 64, "the last TX_ACK is %" PRIu64 ", 64 TXs were sent", x->seen.tx_ack);
	return 0;
}

/* --- message encoding ------------------------------------------------------- */

static int msg_garbage(struct cctx *x)
{
	static const uint8_t junk[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	STEP(cx_connect(x));
	STEP(cx_send_body(x, FREP_MSG_HELLO, junk, sizeof(junk), NULL, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int msg_required(struct cctx *x)
{
	Frep__V1__Hello h = FREP__V1__HELLO__INIT;
	uint8_t buf[256];
	/* Only the volume: every other required field is missing. */
	h.volume = x->volume;
	size_t n = 0;
	buf[n++] = 0x22;
	buf[n++] = (uint8_t)strlen(h.volume);
	memcpy(buf + n, h.volume, strlen(h.volume));
	n += strlen(h.volume);
	STEP(cx_connect(x));
	STEP(cx_send_body(x, FREP_MSG_HELLO, buf, (uint32_t)n, NULL, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int msg_unknown_field(struct cctx *x)
{
	/* field 99 varint 7; field 100 bytes "x" */
	static const uint8_t extra[] = { 0x98, 0x06, 0x07, 0xa2, 0x06, 0x01, 'x' };
	STEP(cx_connect(x));
	STEP(hello_plus(x, extra, sizeof(extra)));
	return cx_expect(x, FREP_MSG_WELCOME, NULL);
}

static int msg_field_zero(struct cctx *x)
{
	/* field 0, varint: tag 0x00 written as a two-byte varint, then value 1 */
	static const uint8_t extra[] = { 0x80, 0x00, 0x01 };
	STEP(cx_connect(x));
	STEP(hello_plus(x, extra, sizeof(extra)));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int msg_nul(struct cctx *x)
{
	/* field 4 (volume) once more, "ab\0cd": the last occurrence wins in protobuf */
	static const uint8_t extra[] = { 0x22, 0x05, 'a', 'b', 0, 'c', 'd' };
	STEP(cx_connect(x));
	STEP(hello_plus(x, extra, sizeof(extra)));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int msg_node_name(struct cctx *x)
{
	struct hello_args a;
	char node[300];
	hello_defaults(x, &a);
	memset(node, 'n', sizeof(node));
	node[FREP_MAX_NODE_NAME] = '\0';
	a.master_node = node;
	STEP(expect_welcome(x, &a, NULL));
	cx_close(x);
	node[FREP_MAX_NODE_NAME] = 'n';
	node[FREP_MAX_NODE_NAME + 1] = '\0';
	return hello_refused(x, &a, FREP_E_PROTOCOL);
}

/* Byte-granular ranges, across an extent boundary, of every record kind. */
static int msg_unaligned(struct cctx *x)
{
	static const uint64_t sizes[2] = { 64 * 1024, 64 * 1024 };
	uint64_t t;
	STEP(m_open(x, NULL));
	STEP(m_parts(x, sizes, 2, NULL));
	STEP(m_start_copy(x, PH_REPLICATE, 0, true, 0));
	STEP(m_copy_data(x, 0, 3, 1));
	STEP(m_copy_data(x, 3, 70001, 2)); /* crosses 65536 */
	STEP(m_copy_hole(x, 70004, 131072 - 70004));
	STEP(m_copy_done(x, 5, 70004));
	STEP(m_tx(x, 1, TX_WRITE, 65530, 13));
	STEP(m_tx(x, 2, TX_TRIM, 1001, 65536));
	STEP(m_tx(x, 3, TX_ZERO, 65535, 2));
	STEP(m_tx(x, 4, TX_WRITE, 131071, 1));
	STEP(m_tx(x, 5, TX_WRITE, 7, 4099));
	STEP(m_wait_consistent(x, &t));
	CHECK(x, t == 5, "CONSISTENT %" PRIu64 ", expected 5", t);
	return 0;
}

/* A message refused is refused before anything is persisted. */
static int msg_validate_start(struct cctx *x)
{
	struct welcome w;
	STEP(m_ready(x, NULL));
	STEP(m_start_copy(x, FREP__V1__PHASE__PHASE_INSYNC, 0, true, 0));
	STEP(cx_expect_error(x, FREP_E_PROTOCOL, NULL));
	STEP(m_reopen(x, &w));
	CHECK(x, w.phase == FREP__V1__PHASE__PHASE_CREATED,
	      "phase %u after a refused START_COPY; it must still be CREATED (1)", w.phase);
	return 0;
}

static int msg_validate_tx(struct cctx *x)
{
	struct welcome w;
	STEP(m_insync(x));
	Frep__V1__Tx t = FREP__V1__TX__INIT;
	uint8_t data[4096];
	cx_fill(data, sizeof(data), 9);
	t.generation = x->generation;
	t.txid = 1;
	t.op = TX_WRITE;
	t.length = sizeof(data);
	t.data_crc = frep_crc32c(data, sizeof(data)) ^ 1;
	STEP(cx_send(x, FREP_MSG_TX, &t.base, data, sizeof(data)));
	STEP(cx_expect_error(x, FREP_E_CHECKSUM, NULL));
	STEP(m_reopen(x, &w));
	CHECK(x, w.durable_txid == 0, "durable_txid %" PRIu64 " after a TX refused for its CRC", w.durable_txid);
	return 0;
}

/* --- lanes --------------------------------------------------------------------- */

static int lane_count(struct cctx *x)
{
	struct hello_args a;
	hello_defaults(x, &a);
	a.lane_count = 2;
	return hello_refused(x, &a, FREP_E_LANES);
}

static int lane_index(struct cctx *x)
{
	struct hello_args a;
	hello_defaults(x, &a);
	a.lane = 1;
	return hello_refused(x, &a, FREP_E_LANES);
}

/* --- INIT ------------------------------------------------------------------------ */

static int hs_silent_first(struct cctx *x)
{
	STEP(cx_connect(x));
	STEP(cx_expect_silence(x, 1000));
	return m_sync(x) == 0 ? cx_fail(x, "HEARTBEAT before HELLO was echoed (HB-4)") : m_reopen(x, NULL);
}

static int hs_names(struct cctx *x)
{
	static const char *const bad[] = { "", ".lock", ".", "..", ".hidden", "a/b", "a b", "a\\b",
					   "caf\xc3\xa9", "a:b" };
	char long_name[80];
	struct hello_args a;
	hello_defaults(x, &a);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		a.volume = bad[i];
		if (hello_refused(x, &a, FREP_E_PROTOCOL) < 0) {
			char why[sizeof(x->why)];
			snprintf(why, sizeof(why), "%s", x->why);
			return cx_fail(x, "volume name \"%s\": %s", bad[i], why);
		}
	}
	memset(long_name, 'v', sizeof(long_name));
	snprintf(long_name, sizeof(long_name), "%s", x->volume);
	long_name[strlen(x->volume)] = '-';
	memset(long_name + strlen(x->volume) + 1, 'v', sizeof(long_name) - strlen(x->volume) - 1);
	long_name[FREP_MAX_VOLUME_NAME + 1] = '\0';
	a.volume = long_name;
	if (hello_refused(x, &a, FREP_E_PROTOCOL) < 0)
		return cx_fail(x, "a 65-byte volume name: %s", x->why);
	long_name[FREP_MAX_VOLUME_NAME] = '\0';
	STEP(expect_welcome(x, &a, NULL));
	return 0;
}

/* HS-2's order: the first failing check names the error. */
static int hs_check_order(struct cctx *x)
{
	static const uint8_t short_uuid[3] = { 1, 2, 3 };
	struct hello_args a;
	hello_defaults(x, &a);
	a.volume = ".bad";
	a.proto_min = a.proto_max = 9;
	STEP(hello_refused(x, &a, FREP_E_PROTOCOL));
	hello_defaults(x, &a);
	a.proto_min = a.proto_max = 9;
	a.uuid = short_uuid;
	a.uuid_len = sizeof(short_uuid);
	STEP(hello_refused(x, &a, FREP_E_VERSION));
	hello_defaults(x, &a);
	a.uuid = short_uuid;
	a.uuid_len = sizeof(short_uuid);
	a.lane_count = 3;
	STEP(hello_refused(x, &a, FREP_E_PROTOCOL));
	return 0;
}

static int hs_sizes(struct cctx *x)
{
	static const uint8_t uuid15[15] = { 1 };
	struct hello_args a;
	hello_defaults(x, &a);
	a.uuid = uuid15;
	a.uuid_len = sizeof(uuid15);
	STEP(hello_refused(x, &a, FREP_E_PROTOCOL));
	hello_defaults(x, &a);
	a.session_id_len = 17;
	return hello_refused(x, &a, FREP_E_PROTOCOL);
}

static int hs_version(struct cctx *x)
{
	struct hello_args a;
	struct frame f;
	hello_defaults(x, &a);
	a.proto_min = 3;
	a.proto_max = 4;
	STEP(hello_refused(x, &a, FREP_E_VERSION));
	a.proto_min = 2;
	a.proto_max = 1;
	STEP(hello_refused(x, &a, FREP_E_VERSION));
	a.proto_min = 1;
	a.proto_max = 9;
	STEP(expect_welcome(x, &a, &f));
	uint32_t v = ((const Frep__V1__Welcome *)f.msg)->proto_version;
	CHECK(x, v == 2, "offered 1..9, the mirror chose %u (a version-2 mirror speaks 1 and 2: "
	      "the highest common is 2)", v);
	cx_close(x);
	a.proto_min = 0;
	a.proto_max = 1;
	STEP(expect_welcome(x, &a, &f));
	v = ((const Frep__V1__Welcome *)f.msg)->proto_version;
	CHECK(x, v == 1, "offered 0..1, the mirror chose %u", v);
	return 0;
}

static int hs_uuid_clash(struct cctx *x)
{
	struct hello_args a;
	uint8_t other[16];
	STEP(m_insync(x));
	STEP(m_goodbye(x));
	memcpy(other, x->uuid, sizeof(other));
	other[0] ^= 0xff;
	hello_defaults(x, &a);
	a.uuid = other;
	/* The clash shows even though the volume may still be closing: ownership comes first. */
	STEP(hello_refused(x, &a, FREP_E_NAME_CLASH));
	return m_reopen(x, NULL);
}

static int hs_clash_while_held(struct cctx *x)
{
	struct cctx other = *x;
	struct hello_args a;
	uint8_t uuid[16];
	STEP(m_insync(x));
	memcpy(uuid, x->uuid, sizeof(uuid));
	uuid[15] ^= 0x5a;
	hello_defaults(x, &a);
	a.uuid = uuid;
	other.p.c = NULL;
	int rc = hello_refused(&other, &a, FREP_E_NAME_CLASH);
	if (rc < 0)
		memcpy(x->why, other.why, sizeof(x->why));
	if (other.p.c)
		cx_abort(&other);
	return rc;
}

/* --- epochs (EPO-1..3) -------------------------------------------------------- */

/* a: this case's Hello, at epoch with the n epoch starts of starts. */
static void hello_epoch(struct cctx *x, struct hello_args *a, uint64_t epoch, const uint64_t *starts,
			size_t n)
{
	hello_defaults(x, a);
	a->has_epoch = true;
	a->epoch = epoch;
	a->epoch_start = starts;
	a->n_epoch_start = n;
}

/* This case's master is at epoch 2, which began after TXID 0 (a promoted copy's). */
static void epoch_two(struct cctx *x)
{
	x->epoch = 2;
	x->epoch_start[0] = 0;
	x->n_epoch_start = 1;
}

/*
 * A copy created by a master of epoch 2 is of epoch 2 (Welcome.epoch). A
 * master of epoch 1 is FENCED, told which epoch began after which TXID; one of
 * epoch 3 is DIVERGED: the copy's history has no record of where it left.
 */
static int epoch_fence_and_diverge(struct cctx *x)
{
	struct welcome w;
	struct hello_args a;
	struct frame f;
	epoch_two(x);
	STEP(m_insync(x));
	STEP(m_goodbye(x));
	STEP(m_open(x, &w));
	CHECK(x, w.epoch == 2, "Welcome.epoch %" PRIu64 " for a copy made at epoch 2", w.epoch);
	STEP(m_goodbye(x));
	hello_epoch(x, &a, 1, NULL, 0);
	STEP(cx_connect(x));
	STEP(m_send_hello(x, &a));
	STEP(cx_expect(x, FREP_MSG_ERROR, &f));
	const Frep__V1__Error *e = (const Frep__V1__Error *)f.msg;
	CHECK(x, e->code == FREP_E_FENCED && e->severe, "an epoch-1 master got ERROR %s (severe %d), "
	      "not FENCED", frep_error_name(e->code), e->severe);
	CHECK(x, e->has_fenced_epoch && e->fenced_epoch == 2 && e->has_fenced_txid && e->fenced_txid == 0,
	      "FENCED names epoch %" PRIu64 " after TXID %" PRIu64 ", not epoch 2 after TXID 0",
	      e->fenced_epoch, e->fenced_txid);
	cx_close(x);
	uint64_t starts[2] = { 0, 0 };
	hello_epoch(x, &a, 3, starts, 2);
	return hello_refused(x, &a, FREP_E_DIVERGED);
}

/* An epoch history that cannot be (more starts than epochs, decreasing, epoch 0): PROTOCOL. */
static int epoch_malformed(struct cctx *x)
{
	struct hello_args a;
	uint64_t starts[2] = { 9, 4 };
	hello_epoch(x, &a, 1, starts, 1);
	STEP(hello_refused(x, &a, FREP_E_PROTOCOL));
	hello_epoch(x, &a, 3, starts, 2);
	STEP(hello_refused(x, &a, FREP_E_PROTOCOL));
	hello_epoch(x, &a, 0, NULL, 0);
	return hello_refused(x, &a, FREP_E_PROTOCOL);
}

/* --- fail-back and switchover (FBK-3, SWO-2, SWO-3) ------------------------------ */

/* A copy that never left the master's history names no divergence: one empty last frame. */
static int fbk_none(struct cctx *x)
{
	struct frame f;
	STEP(m_insync(x));
	STEP(m_goodbye(x));
	STEP(m_ready(x, NULL));
	Frep__V1__DivergenceRequest q = FREP__V1__DIVERGENCE_REQUEST__INIT;
	q.since_txid = 0;
	STEP(cx_send(x, FREP_MSG_DIVERGENCE_REQUEST, &q.base, NULL, 0));
	STEP(cx_expect(x, FREP_MSG_DIVERGENCE, &f));
	const Frep__V1__Divergence *d = (const Frep__V1__Divergence *)f.msg;
	CHECK(x, d->last && d->n_offset == 0 && d->n_length == 0,
	      "DIVERGENCE of a copy that never diverged: %zu ranges, last %d", d->n_offset, d->last);
	/* Outside READY it is illegal (FSM-1). */
	STEP(m_start_copy(x, FREP__V1__PHASE__PHASE_OUTOFSYNC, 0, false, 0));
	STEP(cx_send(x, FREP_MSG_DIVERGENCE_REQUEST, &q.base, NULL, 0));
	return cx_expect_error(x, FREP_E_UNEXPECTED, NULL);
}

/*
 * A switchover once every TX is acknowledged: SWITCHOVER_DONE with the next
 * epoch, the session ends, and the copy is a primary: a master of the old
 * epoch is FENCED from then on.
 */
static int swo_done(struct cctx *x)
{
	struct frame f;
	struct hello_args a;
	STEP(m_insync(x));
	for (uint64_t t = 1; t <= 3; t++)
		STEP(m_tx(x, t, TX_WRITE, (t - 1) * 4096, 4096));
	STEP(m_wait_ack(x, 3));
	Frep__V1__Switchover w = FREP__V1__SWITCHOVER__INIT;
	w.txid = 3;
	STEP(cx_send(x, FREP_MSG_SWITCHOVER, &w.base, NULL, 0));
	STEP(cx_expect(x, FREP_MSG_SWITCHOVER_DONE, &f));
	const Frep__V1__SwitchoverDone *d = (const Frep__V1__SwitchoverDone *)f.msg;
	CHECK(x, d->epoch == 2 && d->txid == 3, "SWITCHOVER_DONE epoch %" PRIu64 " TXID %" PRIu64
	      ", not epoch 2 after TXID 3", d->epoch, d->txid);
	cx_close(x);
	hello_defaults(x, &a);
	STEP(hello_refused(x, &a, FREP_E_FENCED));
	/* A master of a later epoch still (promoted past this copy since) is BUSY: EPO-7. */
	uint64_t starts[2] = { 3, 3 };
	hello_epoch(x, &a, 3, starts, 2);
	return hello_refused(x, &a, FREP_E_BUSY);
}

/* A SWITCHOVER before the mirror acknowledged its TXID is PROTOCOL. */
static int swo_early(struct cctx *x)
{
	STEP(m_insync(x));
	STEP(m_tx(x, 1, TX_WRITE, 0, 4096));
	STEP(m_wait_ack(x, 1));
	Frep__V1__Switchover w = FREP__V1__SWITCHOVER__INIT;
	w.txid = 5;
	STEP(cx_send(x, FREP_MSG_SWITCHOVER, &w.base, NULL, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

/* Another certified identity may not take over a volume (no allow list on the mirror). */
static int hs_owner_clash(struct cctx *x)
{
	if (!x->cf->tls_other)
		return cx_skip(x, "needs --other-cert and --other-key (a second identity from the CA)");
	STEP(m_insync(x));
	STEP(m_goodbye(x));
	struct hello_args a;
	hello_defaults(x, &a);
	/* Hello.master_node is informational (TLS-6): naming the owner changes nothing. */
	a.master_node = "frep-conform";
	x->use_other = true;
	int rc = hello_refused(x, &a, FREP_E_NAME_CLASH);
	x->use_other = false;
	return rc;
}

static int hs_busy(struct cctx *x)
{
	struct cctx second = *x;
	struct hello_args a;
	STEP(m_insync(x));
	hello_defaults(x, &a);
	second.p.c = NULL;
	int rc = hello_refused(&second, &a, FREP_E_BUSY);
	if (second.p.c)
		cx_abort(&second);
	if (rc < 0) {
		memcpy(x->why, second.why, sizeof(x->why));
		return -1;
	}
	/* FSM-9: the holder's session goes on. */
	STEP(m_tx(x, 1, TX_WRITE, 0, 4096));
	return m_wait_ack(x, 1);
}

static int hs_welcome_new(struct cctx *x)
{
	struct welcome w;
	STEP(m_open(x, &w));
	CHECK(x, w.proto_version == 1, "proto_version %u", w.proto_version);
	CHECK(x, !w.known && w.durable_txid == 0 && !w.consistent && w.consistent_txid == 0 &&
		 w.phase == FREP__V1__PHASE__PHASE_NONE && w.copy_cursor == 0 && w.copy_base == 0,
	      "WELCOME for a volume the mirror never saw: known=%d durable=%" PRIu64 " consistent=%d "
	      "consistent_txid=%" PRIu64 " phase=%u cursor=%" PRIu64 " base=%" PRIu64
	      "; expected all 0/false and phase NONE", w.known, w.durable_txid, w.consistent,
	      w.consistent_txid, w.phase, w.copy_cursor, w.copy_base);
	return 0;
}

static int hs_welcome_created(struct cctx *x)
{
	struct welcome w;
	bool created;
	STEP(m_open(x, NULL));
	STEP(m_parts(x, NULL, 0, &created));
	CHECK(x, created, "PARTS_READY created=false for a new volume (MP-3)");
	STEP(m_goodbye(x));
	STEP(m_reopen(x, &w));
	CHECK(x, w.known && w.phase == FREP__V1__PHASE__PHASE_CREATED && !w.consistent,
	      "after MAKEPARTS: known=%d phase=%u consistent=%d; expected known, CREATED, not consistent",
	      w.known, w.phase, w.consistent);
	STEP(m_parts(x, NULL, 0, &created));
	CHECK(x, !created, "PARTS_READY created=true for extents that exist (MP-2: validate only)");
	return 0;
}

static int hs_welcome_insync(struct cctx *x)
{
	struct welcome w;
	STEP(m_insync(x));
	for (uint64_t t = 1; t <= 3; t++)
		STEP(m_tx(x, t, TX_WRITE, t * 4096, 4096));
	STEP(m_wait_ack(x, 3));
	STEP(m_goodbye(x));
	STEP(m_reopen(x, &w));
	CHECK(x, w.known && w.phase == FREP__V1__PHASE__PHASE_INSYNC && w.consistent &&
		 w.durable_txid == 3 && w.consistent_txid == 3 && w.copy_cursor == 0,
	      "after TXs 1..3 acknowledged in INSYNC: known=%d phase=%u consistent=%d durable=%" PRIu64
	      " consistent_txid=%" PRIu64 " cursor=%" PRIu64 "; expected INSYNC, consistent at 3",
	      w.known, w.phase, w.consistent, w.durable_txid, w.consistent_txid, w.copy_cursor);
	return 0;
}

/* --- MAKEPARTS ---------------------------------------------------------------- */

static int table_refused(struct cctx *x, const uint64_t *sizes, size_t n, const char *what)
{
	Frep__V1__ExtentTable t = FREP__V1__EXTENT_TABLE__INIT;
	t.extent_size = (uint64_t *)sizes;
	t.n_extent_size = n;
	STEP(m_open(x, NULL));
	STEP(cx_send(x, FREP_MSG_EXTENT_TABLE, &t.base, NULL, 0));
	return cx_expect_error_for(x, FREP_E_BAD_EXTENTS, what);
}

static int mp_bad_tables(struct cctx *x)
{
	static uint64_t many[FREP_MAX_EXTENTS + 1];
	for (size_t i = 0; i < FREP_MAX_EXTENTS + 1; i++)
		many[i] = 4096;
	const uint64_t zero[1] = { 0 }, odd[1] = { 4097 }, small[1] = { 2048 };
	const uint64_t over[3] = { 1ull << 63, 1ull << 63, 4096 };
	STEP(table_refused(x, NULL, 0, "no extent"));
	STEP(table_refused(x, many, FREP_MAX_EXTENTS + 1, "1025 extents"));
	STEP(table_refused(x, zero, 1, "a zero-size extent"));
	STEP(table_refused(x, odd, 1, "a 4097-byte extent"));
	STEP(table_refused(x, small, 1, "a 2048-byte extent"));
	STEP(table_refused(x, over, 3, "sizes summing past 2^64"));
	/* And the largest count is fine. */
	STEP(m_open(x, NULL));
	return m_parts(x, many, FREP_MAX_EXTENTS, NULL);
}

/*
 * MP-3: a volume the data directory cannot hold is NO_SPACE, preallocated or
 * thin (allocated_bytes as large as the volume), and leaves nothing behind.
 */
static int mp_no_space(struct cctx *x)
{
	uint64_t huge = 1ull << 60; /* 1 EiB: more than any data directory has free */
	Frep__V1__ExtentTable t = FREP__V1__EXTENT_TABLE__INIT;
	struct welcome w;
	bool created;
	t.extent_size = &huge;
	t.n_extent_size = 1;
	t.has_allocated_bytes = true;
	t.allocated_bytes = huge;
	STEP(m_open(x, NULL));
	STEP(cx_send(x, FREP_MSG_EXTENT_TABLE, &t.base, NULL, 0));
	STEP(cx_expect_error(x, FREP_E_NO_SPACE, NULL));
	STEP(m_reopen(x, &w));
	CHECK(x, !w.known, "after NO_SPACE at MAKEPARTS the volume is known: something was created (MP-3)");
	STEP(m_parts(x, NULL, 0, &created));
	CHECK(x, created, "PARTS_READY created=false after a MAKEPARTS that failed with NO_SPACE");
	return 0;
}

static int mp_mismatch(struct cctx *x)
{
	uint64_t sizes[2] = { x->volume_size, 4096 }, bigger = x->volume_size * 2;
	bool created;
	STEP(m_ready(x, NULL));
	STEP(m_goodbye(x));
	STEP(m_reopen(x, NULL));
	STEP(table_refused(x, &bigger, 1, "a larger single extent"));
	STEP(table_refused(x, sizes, 2, "one extent more"));
	/* MP-2: nothing changed; the original table still validates. */
	STEP(m_open(x, NULL));
	STEP(m_parts(x, NULL, 0, &created));
	CHECK(x, !created, "the original table re-created the volume after refused tables");
	return 0;
}

static int mp_multi(struct cctx *x)
{
	static const uint64_t sizes[3] = { 8192, 1 << 20, 4096 };
	bool created;
	STEP(m_open(x, NULL));
	STEP(m_parts(x, sizes, 3, &created));
	CHECK(x, created, "PARTS_READY created=false for a new volume");
	return 0;
}

/* --- READY ------------------------------------------------------------------------ */

static int rdy_sync_not_consistent(struct cctx *x)
{
	Frep__V1__StartSync s = FREP__V1__START_SYNC__INIT;
	STEP(m_ready(x, NULL));
	STEP(cx_send(x, FREP_MSG_START_SYNC, &s.base, NULL, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int insync_at(struct cctx *x, uint64_t last)
{
	STEP(m_insync(x));
	for (uint64_t t = 1; t <= last; t++)
		STEP(m_tx(x, t, TX_WRITE, (t % 64) * 4096, 4096));
	if (last)
		STEP(m_wait_ack(x, last));
	return 0;
}

static int rdy_sync_txid(struct cctx *x)
{
	Frep__V1__StartSync s = FREP__V1__START_SYNC__INIT;
	STEP(insync_at(x, 3));
	STEP(m_goodbye(x));
	for (uint64_t from = 2; from <= 4; from += 2) {
		STEP(m_reopen(x, NULL));
		STEP(m_parts(x, NULL, 0, NULL));
		s.from_txid = from;
		STEP(cx_send(x, FREP_MSG_START_SYNC, &s.base, NULL, 0));
		if (cx_expect_error(x, FREP_E_PROTOCOL, NULL) < 0) {
			char why[sizeof(x->why)];
			snprintf(why, sizeof(why), "%s", x->why);
			return cx_fail(x, "START_SYNC from %" PRIu64 " with durable TXID 3: %s", from, why);
		}
	}
	STEP(m_reopen(x, NULL));
	STEP(m_parts(x, NULL, 0, NULL));
	s.from_txid = 3;
	STEP(cx_send(x, FREP_MSG_START_SYNC, &s.base, NULL, 0));
	STEP(m_tx(x, 4, TX_WRITE, 0, 4096));
	return m_wait_ack(x, 4);
}

/* --- the bulk copy ------------------------------------------------------------- */

static int copy_full(struct cctx *x)
{
	uint64_t t, half = x->volume_size / 2;
	STEP(m_ready(x, NULL));
	STEP(m_start_copy(x, PH_REPLICATE, 0, true, 0));
	STEP(m_copy_data(x, 0, (uint32_t)(half / 2), 1));
	STEP(m_copy_hole(x, half / 2, half / 2));
	STEP(m_copy_data(x, half, (uint32_t)half, 2));
	STEP(m_copy_done(x, 0, half + half / 2));
	STEP(m_wait_copy_ack(x, x->volume_size));
	CHECK(x, x->seen.copy_ack == x->volume_size, "COPY_ACK through %" PRIu64 " after COPY_DONE; "
	      "expected the volume size %" PRIu64, x->seen.copy_ack, x->volume_size);
	STEP(m_wait_consistent(x, &t));
	CHECK(x, t == 0, "CONSISTENT %" PRIu64 " with no TX after a pass from base 0: expected 0", t);
	return 0;
}

/* The phase goes on disk before the first copied byte, and clears consistency. */
static int copy_phase_recorded(struct cctx *x)
{
	struct welcome w;
	STEP(insync_at(x, 3));
	STEP(m_start_copy(x, PH_OUTOFSYNC, 3, true, 0));
	STEP(m_copy_data(x, 0, 65536, 4));
	STEP(m_sync(x));
	cx_abort(x);
	STEP(m_reopen(x, &w));
	CHECK(x, w.phase == PH_OUTOFSYNC && !w.consistent,
	      "after a pass started and cut: phase %u consistent=%d; expected OUTOFSYNC (3), not "
	      "consistent (COPY-2, COPY-13)", w.phase, w.consistent);
	CHECK(x, w.consistent_txid == 3, "consistent_txid %" PRIu64 "; COPY-2 keeps the last one, 3",
	      w.consistent_txid);
	return 0;
}

static int copy_journal_restart(struct cctx *x)
{
	uint64_t t;
	STEP(insync_at(x, 2));
	STEP(m_start_copy(x, PH_OUTOFSYNC, 10, false, 0));
	STEP(m_copy_hole(x, 0, 4096));
	STEP(m_sync(x));
	CHECK(x, x->seen.echo_txid == 10, "HEARTBEAT echo txid %" PRIu64 " during a pass from base 10: "
	      "expected the base, 10 (HB-2)", x->seen.echo_txid);
	STEP(m_copy_done(x, 11, 4096));
	STEP(m_tx(x, 11, TX_WRITE, 0, 4096));
	STEP(m_wait_ack(x, 11));
	STEP(m_wait_consistent(x, &t));
	CHECK(x, t == 11, "CONSISTENT %" PRIu64 ", expected 11", t);
	return 0;
}

static int copy_bad_kind(struct cctx *x)
{
	static const uint32_t kinds[] = { FREP__V1__PHASE__PHASE_NONE, FREP__V1__PHASE__PHASE_CREATED,
					  FREP__V1__PHASE__PHASE_INSYNC, 9 };
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		STEP(m_open(x, NULL));
		STEP(m_parts(x, NULL, 0, NULL));
		STEP(m_start_copy(x, kinds[i], 0, true, 0));
		if (cx_expect_error(x, FREP_E_PROTOCOL, NULL) < 0) {
			char why[sizeof(x->why)];
			snprintf(why, sizeof(why), "%s", x->why);
			return cx_fail(x, "START_COPY kind %u: %s", kinds[i], why);
		}
	}
	return 0;
}

static int copy_base_limit(struct cctx *x)
{
	uint64_t t, top = (1ull << 62) - 1;
	STEP(m_ready(x, NULL));
	STEP(m_start_copy(x, PH_REPLICATE, top, true, 0));
	STEP(cx_expect_error(x, FREP_E_PROTOCOL, NULL));
	STEP(m_open(x, NULL));
	STEP(m_parts(x, NULL, 0, NULL));
	STEP(m_start_copy(x, PH_REPLICATE, top - 1, true, 0));
	STEP(m_copy_hole(x, 0, x->volume_size));
	STEP(m_copy_done(x, top, 0));
	STEP(m_tx(x, top, TX_ZERO, 0, 4096));
	STEP(m_wait_consistent(x, &t));
	CHECK(x, t == top, "CONSISTENT %" PRIu64 ", expected 2^62-1", t);
	return 0;
}

static int copy_refused(struct cctx *x, int (*record)(struct cctx *), unsigned code, const char *what)
{
	STEP(m_ready(x, NULL));
	STEP(m_start_copy(x, PH_REPLICATE, 0, true, 0));
	STEP(record(x));
	return cx_expect_error_for(x, code, what);
}

static int rec_data_past_end(struct cctx *x) { return m_copy_data(x, x->volume_size - 4096, 8192, 1); }
static int rec_hole_empty(struct cctx *x) { return m_copy_hole(x, 0, 0); }
static int rec_hole_past_end(struct cctx *x) { return m_copy_hole(x, 4096, x->volume_size); }
static int rec_hole_wrap(struct cctx *x) { return m_copy_hole(x, UINT64_MAX - 4095, 8192); }

static int rec_bad_crc(struct cctx *x)
{
	Frep__V1__CopyData d = FREP__V1__COPY_DATA__INIT;
	uint8_t data[4096];
	cx_fill(data, sizeof(data), 3);
	d.data_crc = frep_crc32c(data, sizeof(data)) + 1;
	return cx_send(x, FREP_MSG_COPY_DATA, &d.base, data, sizeof(data));
}

static int rec_after_done(struct cctx *x)
{
	STEP(m_copy_done(x, 1, 0));
	return m_copy_data(x, 0, 4096, 1);
}

static int copy_range(struct cctx *x)
{
	STEP(copy_refused(x, rec_data_past_end, FREP_E_RANGE, "COPY_DATA past the end"));
	STEP(copy_refused(x, rec_hole_empty, FREP_E_RANGE, "an empty COPY_HOLE"));
	STEP(copy_refused(x, rec_hole_past_end, FREP_E_RANGE, "COPY_HOLE past the end"));
	return copy_refused(x, rec_hole_wrap, FREP_E_RANGE, "COPY_HOLE whose end wraps past 2^64");
}

static int copy_crc(struct cctx *x)
{
	return copy_refused(x, rec_bad_crc, FREP_E_CHECKSUM, "COPY_DATA with a wrong CRC32C");
}

static int copy_after_done(struct cctx *x)
{
	return copy_refused(x, rec_after_done, FREP_E_UNEXPECTED, "COPY_DATA after COPY_DONE");
}

/* COPY_ACK comes on time even when no 64 MiB arrive: data and holes move the cursor. */
static int copy_ack_timer(struct cctx *x)
{
	STEP(m_ready(x, NULL));
	STEP(m_start_copy(x, PH_REPLICATE, 0, true, 0));
	STEP(m_copy_data(x, 0, 256 * 1024, 5));
	STEP(m_wait_copy_ack(x, 256 * 1024));
	STEP(m_copy_hole(x, 256 * 1024, x->volume_size - 256 * 1024));
	STEP(m_wait_copy_ack(x, x->volume_size));
	CHECK(x, x->seen.copy_ack == x->volume_size, "COPY_ACK through %" PRIu64 ", beyond what was sent",
	      x->seen.copy_ack);
	return 0;
}

static int copy_done_bad(struct cctx *x)
{
	STEP(insync_at(x, 0));
	STEP(m_start_copy(x, PH_OUTOFSYNC, 5, false, 0));
	STEP(m_copy_done(x, 4, 0));
	STEP(cx_expect_error(x, FREP_E_PROTOCOL, NULL));
	STEP(m_open(x, NULL));
	STEP(m_parts(x, NULL, 0, NULL));
	STEP(m_start_copy(x, PH_OUTOFSYNC, 5, false, 0));
	STEP(m_copy_done(x, 6, 0));
	STEP(m_copy_done(x, 6, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int copy_waits_for_tx(struct cctx *x)
{
	uint64_t t;
	STEP(m_ready(x, NULL));
	STEP(m_start_copy(x, PH_REPLICATE, 0, true, 0));
	STEP(m_copy_hole(x, 0, x->volume_size));
	STEP(m_copy_done(x, 2, 0));
	STEP(m_tx(x, 1, TX_WRITE, 0, 4096));
	STEP(m_wait_ack(x, 1));
	STEP(m_sync(x));
	CHECK(x, !x->seen.consistent, "CONSISTENT %" PRIu64 " before TX 2 of a pass that ended at 2",
	      x->seen.consistent_txid);
	STEP(m_tx(x, 2, TX_WRITE, 4096, 4096));
	STEP(m_wait_consistent(x, &t));
	CHECK(x, t == 2, "CONSISTENT %" PRIu64 ", expected 2", t);
	return 0;
}

/* A full pass cut after a COPY_ACK: the cursor and base the mirror reports, then resume. */
static int cut_pass(struct cctx *x, uint64_t base, uint64_t *cursor)
{
	struct welcome w;
	STEP(m_ready(x, NULL));
	STEP(m_start_copy(x, PH_REPLICATE, base, true, 0));
	STEP(m_copy_data(x, 0, 512 * 1024, 7));
	STEP(m_wait_copy_ack(x, 512 * 1024));
	cx_abort(x);
	STEP(m_reopen(x, &w));
	CHECK(x, w.phase == PH_REPLICATE && !w.consistent, "after a cut pass: phase %u consistent=%d",
	      w.phase, w.consistent);
	CHECK(x, w.copy_cursor == 512 * 1024 && w.copy_base == base,
	      "copy_cursor %" PRIu64 " copy_base %" PRIu64 "; it acknowledged 524288 of a pass from base %"
	      PRIu64, w.copy_cursor, w.copy_base, base);
	*cursor = w.copy_cursor;
	return m_parts(x, NULL, 0, NULL);
}

static int copy_cursor_resume(struct cctx *x)
{
	uint64_t cur, t;
	struct welcome w;
	STEP(cut_pass(x, 7, &cur));
	STEP(m_start_copy(x, PH_REPLICATE, 7, true, cur));
	STEP(m_copy_hole(x, cur, x->volume_size - cur));
	STEP(m_copy_done(x, 7, 0));
	STEP(m_wait_copy_ack(x, x->volume_size));
	STEP(m_wait_consistent(x, &t));
	CHECK(x, t == 7, "CONSISTENT %" PRIu64 " after a resumed pass from base 7", t);
	STEP(m_goodbye(x));
	STEP(m_reopen(x, &w));
	CHECK(x, w.copy_cursor == 0 && w.copy_base == 0 && w.phase == FREP__V1__PHASE__PHASE_INSYNC,
	      "after CONSISTENT: cursor %" PRIu64 " base %" PRIu64 " phase %u; COPY-15 clears them",
	      w.copy_cursor, w.copy_base, w.phase);
	return 0;
}

static int resume_refused(struct cctx *x, uint32_t kind, uint64_t base, bool full, uint64_t start,
			  const char *what)
{
	struct welcome w;
	STEP(m_start_copy(x, kind, base, full, start));
	if (cx_expect_error(x, FREP_E_PROTOCOL, NULL) < 0) {
		char why[sizeof(x->why)];
		snprintf(why, sizeof(why), "%s", x->why);
		return cx_fail(x, "%s: %s", what, why);
	}
	STEP(m_reopen(x, &w));
	CHECK(x, w.copy_cursor == 512 * 1024 && w.copy_base == 7 && w.phase == PH_REPLICATE,
	      "after a refused resume (%s): cursor %" PRIu64 " base %" PRIu64 " phase %u; nothing may "
	      "change (MSG-8)", what, w.copy_cursor, w.copy_base, w.phase);
	return m_parts(x, NULL, 0, NULL);
}

static int copy_resume_refused(struct cctx *x)
{
	uint64_t cur;
	STEP(cut_pass(x, 7, &cur));
	STEP(resume_refused(x, PH_REPLICATE, 7, true, cur + 4096, "start_offset past the cursor"));
	STEP(resume_refused(x, PH_REPLICATE, 6, true, cur, "another base"));
	STEP(resume_refused(x, PH_REPLICATE, 7, false, cur, "a dirty pass with a start_offset"));
	STEP(resume_refused(x, PH_OUTOFSYNC, 7, true, cur, "kind OUTOFSYNC for a REPLICATE pass"));
	return 0;
}

static int copy_dirty_no_cursor(struct cctx *x)
{
	struct welcome w;
	STEP(insync_at(x, 1));
	STEP(m_start_copy(x, PH_OUTOFSYNC, 1, false, 0));
	STEP(m_copy_data(x, 0, 256 * 1024, 8));
	STEP(m_wait_copy_ack(x, 256 * 1024));
	cx_abort(x);
	STEP(m_reopen(x, &w));
	CHECK(x, w.phase == PH_OUTOFSYNC && w.copy_cursor == 0 && w.copy_base == 0,
	      "a dirty pass cut: phase %u cursor %" PRIu64 " base %" PRIu64 "; a dirty pass has no "
	      "cursor (HS-7)", w.phase, w.copy_cursor, w.copy_base);
	return 0;
}

static int copy_new_pass(struct cctx *x)
{
	uint64_t t;
	STEP(m_ready(x, NULL));
	STEP(m_start_copy(x, PH_REPLICATE, 0, true, 0));
	STEP(m_copy_data(x, 0, 4096, 1));
	STEP(m_start_copy(x, PH_REPLICATE, 4, true, 0));
	STEP(m_copy_hole(x, 0, x->volume_size));
	STEP(m_copy_done(x, 4, 0));
	STEP(m_wait_consistent(x, &t));
	CHECK(x, t == 4, "CONSISTENT %" PRIu64 " after a second pass from base 4", t);
	return 0;
}

/* --- sequencing ---------------------------------------------------------------- */

static int tx_refused(struct cctx *x, const Frep__V1__Tx *t, const void *trailer, uint32_t tl,
		      unsigned code, const char *what)
{
	STEP(m_insync(x));
	STEP(cx_send(x, FREP_MSG_TX, &t->base, trailer, tl));
	return cx_expect_error_for(x, code, what);
}

static int seq_bad_tx(struct cctx *x)
{
	uint8_t data[4096];
	cx_fill(data, sizeof(data), 4);
	uint32_t crc = frep_crc32c(data, sizeof(data));
	Frep__V1__Tx t = FREP__V1__TX__INIT;
	t.generation = x->generation;
	t.txid = 1;
	t.op = TX_ZERO;
	t.length = 0;
	STEP(tx_refused(x, &t, NULL, 0, FREP_E_PROTOCOL, "a zero-length TX"));
	t.length = 4096;
	t.op = 4;
	STEP(tx_refused(x, &t, NULL, 0, FREP_E_PROTOCOL, "TX op 4"));
	t.op = 0;
	STEP(tx_refused(x, &t, NULL, 0, FREP_E_PROTOCOL, "TX op 0"));
	t.op = TX_WRITE;
	t.data_crc = crc;
	t.length = 8192;
	STEP(tx_refused(x, &t, data, sizeof(data), FREP_E_PROTOCOL, "TX_WRITE length 8192, 4096 data bytes"));
	t.op = TX_ZERO;
	t.length = 4096;
	STEP(tx_refused(x, &t, data, sizeof(data), FREP_E_PROTOCOL, "TX_ZERO with data"));
	t.op = TX_TRIM;
	t.data_crc = 0;
	t.length = 1ull << 32;
	STEP(tx_refused(x, &t, NULL, 0, FREP_E_PROTOCOL, "TX length 2^32"));
	t.length = 8192;
	t.offset = x->volume_size - 4096;
	STEP(tx_refused(x, &t, NULL, 0, FREP_E_RANGE, "a TX_TRIM past the end"));
	t.offset = UINT64_MAX - 4095;
	STEP(tx_refused(x, &t, NULL, 0, FREP_E_RANGE, "a TX_TRIM whose end wraps"));
	t.offset = 0;
	t.op = TX_WRITE;
	t.length = sizeof(data);
	t.data_crc = crc ^ 0x80;
	STEP(tx_refused(x, &t, data, sizeof(data), FREP_E_CHECKSUM, "a TX_WRITE with a wrong CRC32C"));
	t.data_crc = crc;
	t.txid = 1ull << 62;
	return tx_refused(x, &t, data, sizeof(data), FREP_E_PROTOCOL, "TXID 2^62");
}

static int seq_gap(struct cctx *x)
{
	STEP(m_insync(x));
	STEP(m_tx(x, 1, TX_WRITE, 0, 4096));
	STEP(m_wait_ack(x, 1));
	STEP(m_tx(x, 3, TX_WRITE, 8192, 4096));
	STEP(m_tx(x, 4, TX_WRITE, 12288, 4096));
	STEP(m_sync(x));
	CHECK(x, x->seen.n_resends == 1 && x->seen.resend_from == 2 && x->seen.resend_to == 2,
	      "after TXs 1, 3, 4: %u RESEND(s), the last %" PRIu64 "..%" PRIu64 "; expected one RESEND 2..2",
	      x->seen.n_resends, x->seen.resend_from, x->seen.resend_to);
	CHECK(x, x->seen.tx_ack <= 1, "TX_ACK %" PRIu64 " past the gap at 2", x->seen.tx_ack);
	STEP(m_tx(x, 2, TX_WRITE, 4096, 4096));
	STEP(m_wait_ack(x, 4));
	return 0;
}

/* Nothing past a gap is journaled: a new session finds only what came in order. */
static int seq_gap_not_journaled(struct cctx *x)
{
	struct welcome w;
	STEP(m_insync(x));
	STEP(m_tx(x, 1, TX_WRITE, 0, 4096));
	STEP(m_wait_ack(x, 1));
	STEP(m_tx(x, 3, TX_WRITE, 8192, 4096));
	STEP(m_sync(x));
	STEP(m_goodbye(x));
	STEP(m_reopen(x, &w));
	CHECK(x, w.durable_txid == 1, "durable_txid %" PRIu64 " with TX 2 never sent: TX 3 must not be "
	      "journaled (SEQ-6)", w.durable_txid);
	return 0;
}

static int seq_duplicate(struct cctx *x)
{
	STEP(insync_at(x, 2));
	STEP(m_tx(x, 2, TX_WRITE, 4096, 4096));
	STEP(m_tx(x, 1, TX_ZERO, 0, 4096));
	STEP(m_sync(x));
	STEP(m_tx(x, 3, TX_WRITE, 0, 4096));
	return m_wait_ack(x, 3);
}

static int seq_generation_newer(struct cctx *x)
{
	STEP(m_insync(x));
	STEP(m_tx_gen(x, 1, x->generation + 1, TX_WRITE, 0, 4096));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

static int seq_generation_order(struct cctx *x)
{
	x->generation = 5;
	STEP(m_insync(x));
	STEP(m_tx_gen(x, 1, 3, TX_WRITE, 0, 4096));
	STEP(m_tx_gen(x, 2, 5, TX_WRITE, 4096, 4096));
	STEP(m_wait_ack(x, 2));
	STEP(m_tx_gen(x, 3, 4, TX_WRITE, 8192, 4096));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

/* The same rule for a TX held back past a gap, checked when it is journaled. */
static int seq_generation_held(struct cctx *x)
{
	x->generation = 5;
	STEP(m_insync(x));
	STEP(m_tx_gen(x, 1, 5, TX_WRITE, 0, 4096));
	STEP(m_wait_ack(x, 1));
	STEP(m_tx_gen(x, 3, 4, TX_WRITE, 8192, 4096));
	STEP(m_sync(x));
	STEP(m_tx_gen(x, 2, 5, TX_WRITE, 4096, 4096));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

/* --- online verify ---------------------------------------------------------------- */

enum { VFY_REGION = 64 << 10 };

/* INSYNC at TXID 0 (every byte zero) on a mirror that verifies; SKIP if it says it does not (VFY-1). */
static int vfy_insync(struct cctx *x)
{
	struct welcome w;
	STEP(m_insync_w(x, &w));
	if (!w.verify)
		return cx_skip(x, "the mirror does not announce online verify (Welcome.verify, VFY-1)");
	return 0;
}

/* This case's view of the first VFY_REGION * 2 bytes: m_insync's zeroes, then its TX_WRITEs. */
static void vfy_write(uint8_t *img, uint64_t txid, uint64_t off, uint32_t len)
{
	cx_fill(img + off, len, txid); /* m_tx's data */
}

/* The n-th VERIFY_RESULT (from 0) echoes its VERIFY and says HASHED with this hash. */
static int vfy_check(struct cctx *x, unsigned n, uint64_t off, uint64_t txid, const uint8_t *want)
{
	const struct seen_verify *v = &x->seen.vr[n];
	CHECK(x, v->verify_id == 7 && v->offset == off && v->txid == txid,
	      "VERIFY_RESULT %u echoes verify %" PRIu64 " offset %" PRIu64 " TXID %" PRIu64
	      ", not the VERIFY's 7, %" PRIu64 ", %" PRIu64 " (VFY-5)", n, v->verify_id, v->offset,
	      v->txid, off, txid);
	CHECK(x, v->status == FREP__V1__VERIFY_STATUS__VERIFY_HASHED && v->hash_len == FREP_VERIFY_HASH_SIZE,
	      "VERIFY_RESULT %u: status %u with a %zu-byte hash; VERIFY_HASHED and 16 bytes expected",
	      n, v->status, v->hash_len);
	CHECK(x, memcmp(v->hash, want, FREP_VERIFY_HASH_SIZE) == 0,
	      "VERIFY_RESULT %u (offset %" PRIu64 ", TXID %" PRIu64 "): the hash is not the XXH3-128 of "
	      "the region after exactly the TXIDs up to %" PRIu64 " (VFY-2, VFY-5)", n, off, txid, txid);
	return 0;
}

/*
 * VERIFYs between TXs, sent without waiting: each is hashed after exactly the
 * TXIDs before it on the lane; a VERIFY whose master hash is wrong is still
 * answered with the mirror's own, and the session goes on.
 */
static int vfy_hash(struct cctx *x)
{
	static uint8_t img[2 * VFY_REGION];
	uint8_t h1[16], h2[16], zero[16], wrong[16];
	memset(img, 0, sizeof(img));
	STEP(vfy_insync(x));
	m_reset_seen(x);
	cx_hash(img + VFY_REGION, VFY_REGION, zero);
	memcpy(wrong, zero, sizeof(wrong));
	wrong[0] ^= 1;
	STEP(m_tx(x, 1, TX_WRITE, 0, 4096));
	vfy_write(img, 1, 0, 4096);
	cx_hash(img, VFY_REGION, h1);
	STEP(m_verify(x, 7, 0, VFY_REGION, 1, h1, sizeof(h1)));
	STEP(m_tx(x, 2, TX_WRITE, 4096, 8192));
	vfy_write(img, 2, 4096, 8192);
	cx_hash(img, VFY_REGION, h2);
	STEP(m_verify(x, 7, 0, VFY_REGION, 2, h2, sizeof(h2)));
	STEP(m_verify(x, 7, VFY_REGION, VFY_REGION, 2, wrong, sizeof(wrong)));
	STEP(m_wait_verify(x, 3));
	STEP(vfy_check(x, 0, 0, 1, h1));
	STEP(vfy_check(x, 1, 0, 2, h2));
	STEP(vfy_check(x, 2, VFY_REGION, 2, zero));
	STEP(m_tx(x, 3, TX_WRITE, 0, 4096));
	return m_wait_ack(x, 3);
}

/* A VERIFY the mirror must refuse, on a session of its own. */
static int vfy_refused(struct cctx *x, uint64_t off, uint64_t len, uint64_t txid, size_t hash_len,
		       unsigned code, const char *what)
{
	uint8_t hash[17] = { 0 };
	STEP(vfy_insync(x));
	STEP(m_tx(x, 1, TX_WRITE, 0, 4096));
	STEP(m_verify(x, 1, off, len, txid, hash, hash_len));
	return cx_expect_error_for(x, code, what);
}

static int vfy_bad(struct cctx *x)
{
	uint64_t end = x->volume_size;
	STEP(vfy_refused(x, 0, 4096, 1, 15, FREP_E_PROTOCOL, "a 15-byte hash"));
	STEP(vfy_refused(x, 0, 4096, 1, 17, FREP_E_PROTOCOL, "a 17-byte hash"));
	STEP(vfy_refused(x, 0, 0, 1, 16, FREP_E_PROTOCOL, "a region of 0 bytes"));
	STEP(vfy_refused(x, 0, FREP_MAX_VERIFY_LEN + 1, 1, 16, FREP_E_PROTOCOL,
			 "a region of 32 MiB + 1 bytes"));
	STEP(vfy_refused(x, 0, 4096, 1ull << 62, 16, FREP_E_PROTOCOL, "TXID 2^62"));
	STEP(vfy_refused(x, 0, 4096, 2, 16, FREP_E_PROTOCOL, "TXID 2 before TX 2 was sent"));
	STEP(vfy_refused(x, end - 4096, 8192, 1, 16, FREP_E_RANGE, "a region past the end"));
	return vfy_refused(x, UINT64_MAX - 4095, 8192, 1, 16, FREP_E_RANGE, "a region whose end wraps");
}

/* Held back past a gap, the mirror is not at the TXID: NOT_AT_TXID, no hash; then it is. */
static int vfy_not_at_txid(struct cctx *x)
{
	static uint8_t img[VFY_REGION];
	uint8_t h[16];
	memset(img, 0, sizeof(img));
	STEP(vfy_insync(x));
	STEP(m_tx(x, 1, TX_WRITE, 0, 4096));
	STEP(m_wait_ack(x, 1));
	STEP(m_tx(x, 3, TX_WRITE, 8192, 4096));
	m_reset_seen(x);
	STEP(m_verify(x, 9, 0, VFY_REGION, 3, img, sizeof(h)));
	STEP(m_wait_verify(x, 1));
	const struct seen_verify *v = &x->seen.vr[0];
	CHECK(x, v->status == FREP__V1__VERIFY_STATUS__VERIFY_NOT_AT_TXID && v->hash_len == 0 &&
		 v->txid == 3 && v->verify_id == 9,
	      "VERIFY at TXID 3 with TX 2 missing: status %u, %zu-byte hash, TXID %" PRIu64
	      "; VERIFY_NOT_AT_TXID without a hash expected (VFY-6)", v->status, v->hash_len, v->txid);
	STEP(m_tx(x, 2, TX_WRITE, 4096, 4096));
	STEP(m_wait_ack(x, 3));
	for (uint64_t t = 1; t <= 3; t++)
		vfy_write(img, t, (t - 1) * 4096, 4096);
	cx_hash(img, sizeof(img), h);
	STEP(m_verify(x, 9, 0, VFY_REGION, 3, h, sizeof(h)));
	STEP(m_wait_verify(x, 2));
	v = &x->seen.vr[1];
	CHECK(x, v->status == FREP__V1__VERIFY_STATUS__VERIFY_HASHED && v->hash_len == 16 &&
		 memcmp(v->hash, h, 16) == 0,
	      "VERIFY at TXID 3 once the gap is filled: status %u, not the hash of the region at 3",
	      v->status);
	return 0;
}

/* --- heartbeats ------------------------------------------------------------------- */

static int hb_echo(struct cctx *x)
{
	Frep__V1__Heartbeat hb = FREP__V1__HEARTBEAT__INIT;
	struct frame f;
	STEP(insync_at(x, 3));
	hb.seq = 77;
	hb.txid = 999;
	STEP(cx_send(x, FREP_MSG_HEARTBEAT, &hb.base, NULL, 0));
	STEP(cx_expect(x, FREP_MSG_HEARTBEAT, &f));
	const Frep__V1__Heartbeat *e = (const Frep__V1__Heartbeat *)f.msg;
	CHECK(x, e->seq == 77 && e->txid == 3, "echo seq %" PRIu64 " txid %" PRIu64
	      "; expected seq 77 and the last TX_ACK, 3", e->seq, e->txid);
	return 0;
}

static int hb_silence(struct cctx *x)
{
	STEP(m_insync(x));
	uint64_t start = now_ms();
	x->p.timeout_ms = x->cf->peer_timeout_ms * 2 + 5000;
	STEP(cx_expect_close(x));
	uint64_t took = now_ms() - start;
	CHECK(x, took + 200 >= (uint64_t)x->cf->peer_timeout_ms,
	      "the mirror closed a silent session after %" PRIu64 " ms, before its timeout of %d ms",
	      took, x->cf->peer_timeout_ms);
	return 0;
}

/* A master that stops reading is as gone as a silent one. */
static int hb_not_reading(struct cctx *x)
{
	Frep__V1__Heartbeat hb = FREP__V1__HEARTBEAT__INIT;
	uint8_t frame[64], *batch;
	enum { BATCH = 4096 };
	STEP(m_insync(x));
	hb.seq = 1;
	size_t n = cx_pack(&hb.base, frame + FREP_FRAME_HDR_SIZE, sizeof(frame) - FREP_FRAME_HDR_SIZE);
	struct frep_frame_hdr h = { .version = 1, .type = FREP_MSG_HEARTBEAT, .body_len = (uint32_t)n };
	frame_hdr_encode(&h, frame);
	size_t fl = FREP_FRAME_HDR_SIZE + n;
	if (!(batch = malloc(fl * BATCH)))
		return cx_fail(x, "out of memory");
	for (unsigned i = 0; i < BATCH; i++)
		memcpy(batch + i * fl, frame, fl);
	uint64_t end = now_ms() + (uint64_t)x->cf->peer_timeout_ms * 3 + 10000;
	tls_set_write_timeout(x->p.c, (int)(end - now_ms()));
	int rc;
	for (;;) {
		if (tls_write_full(x->p.c, batch, fl * BATCH) < 0) {
			rc = 0; /* reset or closed: the mirror gave up on us */
			break;
		}
		if (now_ms() >= end) {
			rc = cx_fail(x, "the mirror still took HEARTBEATs %d ms after we stopped reading its "
				     "echoes", x->cf->peer_timeout_ms * 3 + 10000);
			break;
		}
	}
	free(batch);
	cx_abort(x);
	return rc;
}

/* --- IDLE ------------------------------------------------------------------------ */

static int idle_not_persisted(struct cctx *x)
{
	Frep__V1__Pause p = FREP__V1__PAUSE__INIT;
	Frep__V1__StartSync s = FREP__V1__START_SYNC__INIT;
	struct welcome w;
	STEP(insync_at(x, 1));
	STEP(cx_send(x, FREP_MSG_PAUSE, &p.base, NULL, 0));
	STEP(m_sync(x));
	STEP(m_goodbye(x));
	STEP(m_reopen(x, &w));
	CHECK(x, w.phase == FREP__V1__PHASE__PHASE_INSYNC && w.consistent,
	      "after a pause and a goodbye: phase %u consistent=%d; a pause is not persisted", w.phase,
	      w.consistent);
	STEP(m_parts(x, NULL, 0, NULL));
	s.from_txid = w.durable_txid;
	STEP(cx_send(x, FREP_MSG_START_SYNC, &s.base, NULL, 0));
	STEP(cx_send(x, FREP_MSG_PAUSE, &p.base, NULL, 0));
	return m_sync(x);
}

/* --- durability (power loss of the mirror) ------------------------------------------ */

static int dur_acked(struct cctx *x)
{
	struct welcome w;
	Frep__V1__StartSync s = FREP__V1__START_SYNC__INIT;
	STEP(m_insync(x));
	for (uint64_t t = 1; t <= 40; t++)
		STEP(m_tx(x, t, t % 5 ? TX_WRITE : TX_TRIM, (t % 32) * 8192, 8192));
	STEP(m_wait_ack(x, 40));
	uint64_t acked = x->seen.tx_ack;
	STEP(m_power_cycle(x));
	STEP(m_reopen(x, &w));
	CHECK(x, w.durable_txid >= acked, "after a power loss the mirror reports durable_txid %" PRIu64
	      ", below the %" PRIu64 " it acknowledged", w.durable_txid, acked);
	CHECK(x, w.consistent && w.phase == FREP__V1__PHASE__PHASE_INSYNC,
	      "after a power loss: consistent=%d phase %u", w.consistent, w.phase);
	CHECK(x, w.consistent_txid == w.durable_txid, "consistent_txid %" PRIu64 " but durable_txid %"
	      PRIu64 ": the journal must be replayed before WELCOME (HS-8)", w.consistent_txid,
	      w.durable_txid);
	STEP(m_parts(x, NULL, 0, NULL));
	s.from_txid = w.durable_txid;
	STEP(cx_send(x, FREP_MSG_START_SYNC, &s.base, NULL, 0));
	STEP(m_tx(x, w.durable_txid + 1, TX_WRITE, 0, 4096));
	return m_wait_ack(x, w.durable_txid + 1);
}

static int dur_consistent(struct cctx *x)
{
	struct welcome w;
	uint64_t t;
	STEP(m_ready(x, NULL));
	STEP(m_start_copy(x, PH_REPLICATE, 0, true, 0));
	STEP(m_copy_data(x, 0, 65536, 3));
	STEP(m_copy_hole(x, 65536, x->volume_size - 65536));
	STEP(m_copy_done(x, 1, 65536));
	STEP(m_tx(x, 1, TX_WRITE, 0, 4096));
	STEP(m_wait_consistent(x, &t));
	STEP(m_power_cycle(x));
	STEP(m_reopen(x, &w));
	CHECK(x, w.consistent && w.phase == FREP__V1__PHASE__PHASE_INSYNC && w.consistent_txid >= t,
	      "after CONSISTENT %" PRIu64 " and a power loss: consistent=%d phase %u consistent_txid %"
	      PRIu64, t, w.consistent, w.phase, w.consistent_txid);
	return 0;
}

static int dur_cursor(struct cctx *x)
{
	struct welcome w;
	STEP(m_ready(x, NULL));
	STEP(m_start_copy(x, PH_REPLICATE, 0, true, 0));
	STEP(m_copy_data(x, 0, 512 * 1024, 7));
	STEP(m_wait_copy_ack(x, 512 * 1024));
	uint64_t through = x->seen.copy_ack;
	STEP(m_power_cycle(x));
	STEP(m_reopen(x, &w));
	CHECK(x, w.phase == PH_REPLICATE && w.copy_cursor >= through,
	      "after COPY_ACK through %" PRIu64 " and a power loss: phase %u cursor %" PRIu64, through,
	      w.phase, w.copy_cursor);
	return 0;
}

static int dur_phase(struct cctx *x)
{
	struct welcome w;
	STEP(insync_at(x, 3));
	STEP(m_start_copy(x, PH_OUTOFSYNC, 3, false, 0));
	STEP(m_copy_data(x, 0, 65536, 3));
	STEP(m_wait_copy_ack(x, 65536));
	STEP(m_power_cycle(x));
	STEP(m_reopen(x, &w));
	CHECK(x, w.phase == PH_OUTOFSYNC && !w.consistent,
	      "a pass had written data before the power loss, but the mirror reports phase %u "
	      "consistent=%d (COPY-2, DUR-9)", w.phase, w.consistent);
	return 0;
}

#define C(id, clauses, title, fn) { id, clauses, title, ROLE_MIRROR, false, fn, 0, 0 }
#define D(id, clauses, title, fn) { id, clauses, title, ROLE_MIRROR, true, fn, 0, 0 }
/* --- version 2: negotiation, framing, compression ---------------------------------------- */

#define COMP_ZSTD FREP__V1__COMPRESSION__COMPRESSION_ZSTD
#define COMP_LZ4 FREP__V1__COMPRESSION__COMPRESSION_LZ4

static int v2_negotiate(struct cctx *x)
{
	static const uint32_t offer[] = { 77, COMP_LZ4, COMP_ZSTD }; /* 77: no such algorithm */
	struct hello_args a;
	struct frame f;
	hello_defaults(x, &a);
	a.proto_max = 2;
	a.compression = offer;
	a.n_compression = 3;
	a.lanes_max = 4;
	STEP(expect_welcome(x, &a, &f));
	const Frep__V1__Welcome *w = (const Frep__V1__Welcome *)f.msg;
	CHECK(x, w->proto_version == 2, "offered 1..2, the mirror chose %u (HS-3: the highest "
	      "common; a version-2 mirror speaks 2)", w->proto_version);
	CHECK(x, w->has_compression && (w->compression == COMP_LZ4 || w->compression == 0),
	      "offered 77, lz4, zstd: the mirror chose %u; the first it speaks, lz4, or none (NEG-3)",
	      w->compression);
	uint32_t lanes = w->has_lanes ? w->lanes : 1;
	CHECK(x, lanes >= 1 && lanes <= 4, "asked for 4 lanes, granted %u (LANE-4: 1..lanes_max)",
	      lanes);
	cx_close(x);
	/* No offer: no compression. */
	a.compression = NULL;
	a.n_compression = 0;
	a.lanes_max = 0;
	STEP(expect_welcome(x, &a, &f));
	w = (const Frep__V1__Welcome *)f.msg;
	CHECK(x, w->proto_version == 2 && (!w->has_compression || w->compression == 0),
	      "offered 1..2 and no compression: version %u, compression %u (NEG-3: none)",
	      w->proto_version, w->compression);
	CHECK(x, !w->has_lanes || w->lanes == 1, "asked for no lanes, granted %u (LANE-4)", w->lanes);
	cx_close(x);
	/* A version-1 master: version 1, whatever version-2 fields its HELLO carries (NEG-1). */
	a.proto_max = 1;
	a.compression = offer + 2;
	a.n_compression = 1;
	STEP(expect_welcome(x, &a, &f));
	w = (const Frep__V1__Welcome *)f.msg;
	CHECK(x, w->proto_version == 1, "offered 1..1, the mirror chose %u (NEG-1)", w->proto_version);
	CHECK(x, !w->has_compression || w->compression == 0,
	      "a version-1 session chose compression %u (NEG-1: none in version 1)", w->compression);
	return 0;
}

/* A version-2 session takes the session's version only: a version-1 frame after WELCOME is PROTOCOL. */
static int v2_framing(struct cctx *x)
{
	x->proto_max = 2;
	STEP(m_insync(x));
	CHECK(x, x->version == 2, "offered 1..2, the mirror chose %u", x->version);
	STEP(m_sync(x));
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, 1, FREP_MSG_HEARTBEAT, 0, 0, 0));
	STEP(cx_expect_error(x, FREP_E_PROTOCOL, NULL));
	/* And a version-1 session takes no version-2 frame. */
	x->proto_max = 1;
	STEP(m_reopen(x, NULL));
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, 2, FREP_MSG_HEARTBEAT, 0, 0, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

/* A version-2 session in REPLICATE, with the given compression offered (0: none). */
static int v2_replicate(struct cctx *x, uint32_t alg)
{
	x->proto_max = 2;
	x->offer_compression = alg;
	STEP(m_ready(x, NULL));
	CHECK(x, x->version == 2, "offered 1..2, the mirror chose %u", x->version);
	CHECK(x, !alg || x->compression == alg, "offered only %s, the mirror chose %u",
	      compress_name(alg), x->compression);
	return m_start_copy(x, PH_REPLICATE, 0, true, 0);
}

/* FRAME-5: the flag only on a trailer, only where compression was negotiated; other bits reserved. */
static int v2_flags(struct cctx *x)
{
	uint8_t data[4096];
	cx_fill_compressible(data, sizeof(data), 3);
	Frep__V1__CopyData d = FREP__V1__COPY_DATA__INIT;
	d.data_crc = frep_crc32c(data, sizeof(data));
	d.has_length = true;
	d.length = sizeof(data);
	uint8_t *z = NULL;
	size_t zn = cx_compress(COMP_ZSTD, data, sizeof(data), &z);
	CHECK(x, zn > 0, "internal: zstd did not compress");
	STEP(v2_replicate(x, 0));
	int rc = cx_send_flagged(x, 2, FREP_MSG_COPY_DATA, FREP_FLAG_COMPRESSED, &d.base, z,
				 (uint32_t)zn);
	free(z);
	STEP(rc);
	STEP(cx_expect_error(x, FREP_E_PROTOCOL, "compress"));
	x->proto_max = 2;
	STEP(m_insync(x));
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, 2, FREP_MSG_HEARTBEAT, FREP_FLAG_COMPRESSED, 0, 0));
	STEP(cx_expect_error(x, FREP_E_PROTOCOL, NULL));
	STEP(m_reopen(x, NULL));
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, 2, FREP_MSG_HEARTBEAT, 0x0002, 0, 0));
	return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
}

/*
 * COMP-1..5: a copy and TXs with compressed trailers give the mirror exactly
 * the data: VERIFY's hash of the region equals the data's.
 */
static int comp_roundtrip(struct cctx *x, uint32_t alg)
{
	enum { REGION = 1 << 20 };
	uint8_t *img = calloc(1, REGION), hash[FREP_VERIFY_HASH_SIZE];
	if (!img)
		return cx_fail(x, "out of memory");
	int rc = -1;
	if (v2_replicate(x, alg) < 0)
		goto out;
	if (x->compression != alg) {
		rc = cx_fail(x, "offered only %s, the mirror chose compression %u: a mirror MAY "
			     "decline (NEG-3), but then this case has nothing to check",
			     compress_name(alg), x->compression);
		goto out;
	}
	/* The region as 4 records: compressible, random (sent raw, COMP-2), compressible, hole. */
	cx_fill_compressible(img, REGION / 4, 11);
	cx_fill(img + REGION / 4, REGION / 4, 12);
	cx_fill_compressible(img + REGION / 2, REGION / 4, 13);
	for (unsigned i = 0; i < 3; i++) {
		Frep__V1__CopyData d = FREP__V1__COPY_DATA__INIT;
		d.offset = (uint64_t)i * (REGION / 4);
		d.data_crc = frep_crc32c(img + d.offset, REGION / 4);
		d.has_length = true;
		d.length = REGION / 4;
		if (cx_send(x, FREP_MSG_COPY_DATA, &d.base, img + d.offset, REGION / 4) < 0)
			goto out;
	}
	if (m_copy_hole(x, 3 * (REGION / 4), x->volume_size - 3 * (REGION / 4)) < 0 ||
	    m_copy_done(x, 3, 3 * (REGION / 4)) < 0)
		goto out;
	/* TX_WRITEs, compressed, over what the copy wrote. */
	for (uint64_t t = 1; t <= 3; t++) {
		Frep__V1__Tx tx = FREP__V1__TX__INIT;
		uint64_t off = 4096 * (t * 37 % 200);
		cx_fill_compressible(img + off, 16384, 100 + t);
		tx.generation = x->generation;
		tx.txid = t;
		tx.op = TX_WRITE;
		tx.offset = off;
		tx.length = 16384;
		tx.data_crc = frep_crc32c(img + off, 16384);
		if (cx_send(x, FREP_MSG_TX, &tx.base, img + off, 16384) < 0)
			goto out;
	}
	uint64_t data = atomic_load(&x->p.out.data_bytes), wire = atomic_load(&x->p.out.wire_bytes);
	if (wire >= data / 2) {
		rc = cx_fail(x, "internal: %" PRIu64 " data bytes went as %" PRIu64 " on the wire: "
			     "not compressed", data, wire);
		goto out;
	}
	uint64_t t;
	if (m_wait_consistent(x, &t) < 0)
		goto out;
	if (t != 3) {
		rc = cx_fail(x, "CONSISTENT txid %" PRIu64 " after TXs 1..3 (COPY-11)", t);
		goto out;
	}
	cx_hash(img, REGION, hash);
	m_reset_seen(x);
	if (m_verify(x, 1, 0, REGION, 3, hash, sizeof(hash)) < 0 || m_wait_verify(x, 1) < 0)
		goto out;
	const struct seen_verify *v = &x->seen.vr[0];
	if (v->status != FREP__V1__VERIFY_STATUS__VERIFY_HASHED || v->hash_len != sizeof(hash) ||
	    memcmp(v->hash, hash, sizeof(hash)) != 0) {
		rc = cx_fail(x, "after a copy and TXs with %s trailers, the mirror's hash of the first "
			     "MiB differs from the data's: the decompressed data is not what was sent "
			     "(COMP-5)", compress_name(alg));
		goto out;
	}
	rc = 0;
out:
	free(img);
	return rc;
}

static int comp_zstd(struct cctx *x)
{
	return comp_roundtrip(x, COMP_ZSTD);
}

static int comp_lz4(struct cctx *x)
{
	return comp_roundtrip(x, COMP_LZ4);
}

/*
 * A compressed COPY_DATA (zstd) of n bytes of data declared as `declared`
 * (0: no length), with CRC32C crc, in a fresh REPLICATE session; the mirror
 * answers with code.
 */
static int comp_refused(struct cctx *x, const void *z, size_t zn, uint64_t declared,
			uint32_t crc, unsigned code, const char *what)
{
	Frep__V1__CopyData d = FREP__V1__COPY_DATA__INIT;
	d.data_crc = crc;
	d.has_length = declared != 0;
	d.length = declared;
	STEP(v2_replicate(x, COMP_ZSTD));
	STEP(cx_send_flagged(x, 2, FREP_MSG_COPY_DATA, FREP_FLAG_COMPRESSED, &d.base, z, (uint32_t)zn));
	return cx_expect_error_for(x, code, what);
}

/* COMP-3, COMP-4: what a compressed trailer must decompress to, and its CRC. */
static int comp_bad(struct cctx *x)
{
	enum { N = 65536 };
	static uint8_t data[N];
	uint8_t *z = NULL, junk[512];
	cx_fill_compressible(data, N, 21);
	cx_fill(junk, sizeof(junk), 22);
	size_t zn = cx_compress(COMP_ZSTD, data, N, &z);
	uint32_t crc = frep_crc32c(data, N);
	int rc = -1;
	if (!zn) {
		rc = cx_fail(x, "internal: zstd did not compress");
		goto out;
	}
	if (comp_refused(x, z, zn, N / 2, crc, FREP_E_PROTOCOL,
			 "data that decompresses past its declared length") < 0 ||
	    comp_refused(x, z, zn, 2 * N, crc, FREP_E_PROTOCOL,
			 "data that decompresses short of its declared length") < 0 ||
	    comp_refused(x, z, zn, 0, crc, FREP_E_PROTOCOL,
			 "a compressed COPY_DATA without a length") < 0 ||
	    comp_refused(x, z, zn, (uint64_t)FREP_MAX_TRAILER + 1, crc, FREP_E_PROTOCOL,
			 "a declared length above 32 MiB") < 0 ||
	    comp_refused(x, junk, sizeof(junk), N, crc, FREP_E_PROTOCOL,
			 "bytes that are no zstd frame") < 0 ||
	    comp_refused(x, z, zn, N, frep_crc32c(z, zn), FREP_E_CHECKSUM,
			 "a CRC32C of the compressed bytes, not of the data") < 0)
		goto out;
	/* A raw trailer must be as long as the length says. */
	Frep__V1__CopyData d = FREP__V1__COPY_DATA__INIT;
	d.data_crc = crc;
	d.has_length = true;
	d.length = N - 1;
	if (v2_replicate(x, COMP_ZSTD) < 0 ||
	    cx_send_flagged(x, 2, FREP_MSG_COPY_DATA, 0, &d.base, data, N) < 0)
		goto out;
	if (cx_expect_error_for(x, FREP_E_PROTOCOL, "a raw COPY_DATA whose length is not its "
				"trailer's") < 0)
		goto out;
	/* A compressed TX whose data is not Tx.length long. */
	Frep__V1__Tx tx = FREP__V1__TX__INIT;
	tx.generation = x->generation;
	tx.txid = 1;
	tx.op = TX_WRITE;
	tx.length = N - 4096;
	tx.data_crc = crc;
	x->proto_max = 2;
	x->offer_compression = COMP_ZSTD;
	if (m_insync(x) < 0 ||
	    cx_send_flagged(x, 2, FREP_MSG_TX, FREP_FLAG_COMPRESSED, &tx.base, z, (uint32_t)zn) < 0)
		goto out;
	if (cx_expect_error_for(x, FREP_E_PROTOCOL, "a compressed TX of more data than Tx.length") < 0)
		goto out;
	rc = 0;
out:
	free(z);
	return rc;
}

/*
 * COMP-4: a decompression bomb, 64 MiB of zeros in a few KiB, declared as
 * 4 MiB, is PROTOCOL; the mirror neither writes nor allocates it, and serves
 * the next session.
 */
static int comp_bomb(struct cctx *x)
{
	enum { BOMB = 64 << 20 };
	uint8_t *zeros = calloc(1, BOMB), *z = NULL;
	if (!zeros)
		return cx_fail(x, "out of memory");
	size_t zn = cx_compress(COMP_ZSTD, zeros, BOMB, &z);
	free(zeros);
	int rc = zn ? comp_refused(x, z, zn, 4 << 20, 0, FREP_E_PROTOCOL,
				   "64 MiB of zeros declared as 4 MiB")
		    : cx_fail(x, "internal: zstd did not compress");
	free(z);
	STEP(rc);
	x->offer_compression = 0;
	return m_insync(x);
}


/* --- lanes (version 2) ------------------------------------------------------------------- */

/* Lane 0 of a version-2 session asking for `want` lanes: *granted gets Welcome.lanes. */
static int lane0(struct cctx *x, uint32_t want, uint32_t *granted)
{
	struct welcome w;
	x->proto_max = 2;
	x->lanes_max = want;
	STEP(m_open(x, &w));
	CHECK(x, w.proto_version == 2, "offered 1..2, the mirror chose %u", w.proto_version);
	*granted = w.lanes;
	CHECK(x, w.lanes >= 1 && w.lanes <= want, "asked for %u lanes, granted %u (LANE-4)", want,
	      w.lanes);
	if (w.lanes < 2)
		return cx_skip(x, "the mirror granted one lane (LANE-4 allows it): nothing to join");
	return 0;
}

/* A HELLO joining lane `lane` of `count` on connection slot `slot` (LANE-1, LANE-5). */
static int lane_hello(struct cctx *x, unsigned slot, uint32_t lane, uint32_t count,
		      const uint8_t *sid, uint32_t proto_min)
{
	struct hello_args a;
	uint8_t keep[16];
	memcpy(keep, x->sid, sizeof(keep));
	hello_defaults(x, &a);
	a.proto_min = proto_min;
	a.proto_max = 2;
	a.lane = lane;
	a.lane_count = count;
	a.sid = sid;
	a.lanes_max = 0;
	cx_lane(x, slot);
	int rc = cx_connect(x) == 0 ? m_send_hello(x, &a) : -1;
	memcpy(x->sid, keep, sizeof(keep)); /* the session's stays lane 0's */
	return rc;
}

/* Joins lane n of count; the connection is left as lane n, settled to version 2. */
static int lane_join(struct cctx *x, uint32_t n, uint32_t count)
{
	struct frame f;
	STEP(lane_hello(x, n, n, count, x->sid, 2));
	STEP(cx_expect(x, FREP_MSG_WELCOME, &f));
	const Frep__V1__Welcome *w = (const Frep__V1__Welcome *)f.msg;
	CHECK(x, w->proto_version == 2 && (w->has_lanes ? w->lanes : 1) == count,
	      "lane %u joined with WELCOME version %u, %u lanes; the session's are 2 and %u (LANE-5)",
	      n, w->proto_version, w->has_lanes ? w->lanes : 1, count);
	return cx_settle(x, 2, w->has_compression ? w->compression : 0);
}

/* A lane's copy record: data from seed (len > 0) or a hole, with its pass and seq (LANE-6). */
static int lane_record(struct cctx *x, uint64_t off, uint32_t len, uint64_t hole, uint64_t seed,
		       uint64_t pass, uint64_t seq, uint8_t *img)
{
	if (!len) {
		Frep__V1__CopyHole h = FREP__V1__COPY_HOLE__INIT;
		h.offset = off;
		h.length = hole;
		h.has_pass = h.has_seq = true;
		h.pass = pass;
		h.seq = seq;
		return cx_send(x, FREP_MSG_COPY_HOLE, &h.base, NULL, 0);
	}
	Frep__V1__CopyData d = FREP__V1__COPY_DATA__INIT;
	cx_fill(img + off, len, seed);
	d.offset = off;
	d.data_crc = frep_crc32c(img + off, len);
	d.has_length = d.has_pass = d.has_seq = true;
	d.length = len;
	d.pass = pass;
	d.seq = seq;
	return cx_send(x, FREP_MSG_COPY_DATA, &d.base, img + off, len);
}

static int lane_copy_done(struct cctx *x, uint64_t t_c, const uint64_t *counts, size_t n)
{
	Frep__V1__CopyDone d = FREP__V1__COPY_DONE__INIT;
	d.last_txid = t_c;
	d.lane_records = (uint64_t *)counts;
	d.n_lane_records = n;
	return cx_send(x, FREP_MSG_COPY_DONE, &d.base, NULL, 0);
}

/* Lane 0 and lane 1 of a two-lane session in its first pass, lane 1 current. */
static int lanes_copying(struct cctx *x)
{
	uint32_t lanes = 0;
	STEP(lane0(x, 2, &lanes));
	STEP(lane_join(x, 1, 2));
	cx_lane(x, 0);
	STEP(m_parts(x, NULL, 0, NULL));
	STEP(m_start_copy(x, PH_REPLICATE, 0, true, 0));
	cx_lane(x, 1);
	return 0;
}

/*
 * LANE-5..8: records of one pass on two lanes, out of order (seq 2 on lane 1
 * before seq 1 on lane 0), then a TX over seq 2's range: the mirror holds
 * exactly the copy with the TX on top (VERIFY), never the copy over the TX.
 */
static int lanes_copy(struct cctx *x)
{
	enum { R = 256 << 10 };
	uint8_t *img = calloc(1, 2 * R), hash[FREP_VERIFY_HASH_SIZE];
	int rc = -1;
	if (!img)
		return cx_fail(x, "out of memory");
	if (lanes_copying(x) < 0)
		goto out;
	if (lane_record(x, R, R, 0, 32, 1, 2, img) < 0 ||
	    lane_record(x, 2 * R, 0, x->volume_size - 2 * R, 0, 1, 3, img) < 0)
		goto out;
	cx_lane(x, 0);
	static const uint64_t counts[2] = { 1, 2 };
	if (lane_record(x, 0, R, 0, 31, 1, 1, img) < 0 || lane_copy_done(x, 1, counts, 2) < 0)
		goto out;
	/* TX 1 over the second record's range. */
	Frep__V1__Tx tx = FREP__V1__TX__INIT;
	cx_fill(img + R + 4096, 8192, 77);
	tx.generation = x->generation;
	tx.txid = 1;
	tx.op = TX_WRITE;
	tx.offset = R + 4096;
	tx.length = 8192;
	tx.data_crc = frep_crc32c(img + R + 4096, 8192);
	uint64_t t;
	if (cx_send(x, FREP_MSG_TX, &tx.base, img + R + 4096, 8192) < 0 || m_wait_consistent(x, &t) < 0)
		goto out;
	if (t != 1) {
		rc = cx_fail(x, "CONSISTENT txid %" PRIu64 " after TX 1 (COPY-11)", t);
		goto out;
	}
	if (x->seen.copy_ack != x->volume_size) {
		rc = cx_fail(x, "the last COPY_ACK says %" PRIu64 ", not the volume's size (COPY-8)",
			     x->seen.copy_ack);
		goto out;
	}
	cx_hash(img, 2 * R, hash);
	m_reset_seen(x);
	if (m_verify(x, 1, 0, 2 * R, 1, hash, sizeof(hash)) < 0 || m_wait_verify(x, 1) < 0)
		goto out;
	const struct seen_verify *v = &x->seen.vr[0];
	if (v->status != FREP__V1__VERIFY_STATUS__VERIFY_HASHED ||
	    memcmp(v->hash, hash, sizeof(hash)) != 0) {
		rc = cx_fail(x, "records on two lanes and a TX over one: the mirror's hash of them "
			     "differs (LANE-7: no TX of the pass before every record is durable)");
		goto out;
	}
	rc = 0;
out:
	free(img);
	return rc;
}

/* Expects the join on the current connection refused with code. */
static int join_refused(struct cctx *x, unsigned code, const char *what)
{
	STEP(cx_expect_error_for(x, code, what));
	cx_close(x);
	return 0;
}

/* LANE-5: joins that do not match the session are refused; the session goes on. */
static int lanes_refused(struct cctx *x)
{
	uint8_t other[16];
	uint32_t lanes = 0;
	random_bytes(other, sizeof(other));
	STEP(lane0(x, 2, &lanes));
	STEP(lane_hello(x, 1, 1, 2, other, 2));
	STEP(join_refused(x, FREP_E_LANES, "a join naming no open session"));
	STEP(lane_hello(x, 1, 2, 2, x->sid, 2));
	STEP(join_refused(x, FREP_E_LANES, "lane 2 of 2"));
	STEP(lane_hello(x, 1, 1, 3, x->sid, 2));
	STEP(join_refused(x, FREP_E_LANES, "a lane_count other than the session's"));
	STEP(lane_hello(x, 1, 1, 2, x->sid, 1));
	STEP(join_refused(x, FREP_E_LANES, "a join offering versions 1..2, not exactly 2"));
	if (x->cf->tls_other) {
		x->use_other = true;
		int rc = lane_hello(x, 1, 1, 2, x->sid, 2);
		x->use_other = false;
		STEP(rc);
		STEP(join_refused(x, FREP_E_UNAUTHORISED, "a join from another identity"));
	}
	STEP(lane_join(x, 1, 2));
	STEP(lane_hello(x, 2, 1, 2, x->sid, 2));
	STEP(join_refused(x, FREP_E_LANES, "lane 1 again, while it is held"));
	/* Lane 0 never noticed: it goes on to READY and a copy. */
	cx_lane(x, 0);
	return m_parts(x, NULL, 0, NULL);
}

/* LANE-6, LANE-9: a HEARTBEAT on a joining lane is UNEXPECTED, there and on lane 0. */
static int lanes_unexpected(struct cctx *x)
{
	uint32_t lanes = 0;
	STEP(lane0(x, 2, &lanes));
	STEP(lane_join(x, 1, 2));
	cx_lane(x, 0);
	STEP(m_parts(x, NULL, 0, NULL));
	cx_lane(x, 1);
	Frep__V1__Heartbeat hb = FREP__V1__HEARTBEAT__INIT;
	hb.seq = 1;
	STEP(cx_send(x, FREP_MSG_HEARTBEAT, &hb.base, NULL, 0));
	STEP(cx_expect_error(x, FREP_E_UNEXPECTED, NULL));
	cx_lane(x, 0);
	return cx_expect_error(x, FREP_E_UNEXPECTED, NULL);
}

/* LANE-7: a lane that delivers more records than COPY_DONE counts for it is PROTOCOL. */
static int lanes_count(struct cctx *x)
{
	uint8_t *img = calloc(1, 65536);
	int rc = -1;
	if (!img)
		return cx_fail(x, "out of memory");
	if (lanes_copying(x) < 0)
		goto out;
	if (lane_record(x, 0, 65536, 0, 5, 1, 1, img) < 0 ||
	    lane_record(x, 65536, 0, x->volume_size - 65536, 0, 1, 2, img) < 0)
		goto out;
	cx_lane(x, 0);
	static const uint64_t counts[2] = { 0, 1 };
	if (lane_copy_done(x, 0, counts, 2) < 0)
		goto out;
	rc = cx_expect_error(x, FREP_E_PROTOCOL, NULL);
out:
	free(img);
	return rc;
}

/* LANE-9: a joining lane lost mid-copy ends the whole session: lane 0 is closed too. */
static int lanes_lost(struct cctx *x)
{
	STEP(lanes_copying(x));
	cx_abort(x);
	cx_lane(x, 0);
	/* An ERROR first is allowed; then the close. */
	for (;;) {
		struct frame f;
		enum frame_status st = cx_recv(x, &f, x->p.timeout_ms);
		if (st == FRAME_EOF)
			return 0;
		if (st == FRAME_ERR)
			return cx_fail(x, "lane 1 lost: lane 0 %s", x->why);
		CHECK(x, f.hdr.type == FREP_MSG_ERROR || f.hdr.type == FREP_MSG_COPY_ACK ||
			 f.hdr.type == FREP_MSG_HEARTBEAT,
		      "lane 1 lost mid-copy: lane 0 got %s, and stayed open (LANE-9: the session ends)",
		      frep_msg_name(f.hdr.type));
	}
}

const struct conform_case mirror_cases[] = {
	C("mirror.tls.no-client-cert", "TLS-3", "a master without a client certificate is never welcomed", tls_no_cert),
	C("mirror.tls.no-alpn", "TLS-5", "a handshake without ALPN is never welcomed", tls_no_alpn),
	C("mirror.tls.alpn-h2", "TLS-5", "a handshake with ALPN h2 is never welcomed", tls_alpn_h2),
	C("mirror.tls.version", "TLS-2", "TLS 1.1 is never welcomed", tls_old_version),
	C("mirror.tls.plaintext", "TLS-2", "a plaintext HELLO is never welcomed", tls_plaintext),
	C("mirror.frame.magic", "FRAME-1 FRAME-2 FRAME-9", "a bad magic is PROTOCOL", frame_magic),
	C("mirror.frame.version", "FRAME-3 FRAME-9", "a HELLO framed as version 2 is PROTOCOL (HELLO is always version 1)", frame_version),
	C("mirror.frame.type-zero", "FRAME-4", "type 0 is PROTOCOL", frame_type0),
	C("mirror.frame.type-unknown", "FRAME-4", "type 22, above the last, is PROTOCOL (in INSYNC)", frame_type_unknown),
	C("mirror.frame.flags", "FRAME-5", "a flag bit set is PROTOCOL", frame_flags),
	C("mirror.frame.body-limit", "FRAME-6 FRAME-8", "body_len 65537 is PROTOCOL from the header alone", frame_body_limit),
	C("mirror.frame.body-hostile", "FRAME-8", "body_len 2^32-1 is refused before the body is read", frame_body_hostile),
	C("mirror.frame.body-max", "FRAME-6 MSG-3", "a 65536-byte body is accepted", frame_body_max),
	C("mirror.frame.trailer-limit", "FRAME-7 FRAME-8", "trailer_len 32 MiB + 1 is PROTOCOL from the header alone", frame_trailer_limit),
	C("mirror.frame.trailer-type", "FRAME-7", "a trailer on HELLO is PROTOCOL", frame_trailer_type),
	C("mirror.frame.trailer-max", "FRAME-7 SEQ-2", "a 32 MiB TX_WRITE is acknowledged", frame_trailer_max),
	C("mirror.frame.cut-tx", "FRAME-10 TLS-7", "a TX cut inside its data is not journaled", frame_cut_tx),
	C("mirror.frame.trickle", "FRAME-11", "a frame trickled byte by byte ends the session within the frame bound", frame_trickle),
	C("mirror.frame.order", "FRAME-12 SEQ-4", "64 TXs in one burst: acks in order, none decreasing", frame_order),
	C("mirror.msg.garbage", "MSG-1 FRAME-9", "a body that is not protobuf is PROTOCOL", msg_garbage),
	C("mirror.msg.required", "MSG-2 FRAME-9", "a HELLO missing required fields is PROTOCOL", msg_required),
	C("mirror.msg.unknown-field", "MSG-3", "unknown fields are ignored", msg_unknown_field),
	C("mirror.msg.field-zero", "MSG-3", "a field numbered 0 is PROTOCOL", msg_field_zero),
	C("mirror.msg.nul", "MSG-4 HS-2", "a volume name holding NUL is PROTOCOL", msg_nul),
	C("mirror.msg.node-name", "MSG-4 HS-2", "master_node: 255 bytes accepted, 256 PROTOCOL", msg_node_name),
	C("mirror.msg.unaligned", "MSG-7", "byte-granular records across an extent boundary", msg_unaligned),
	C("mirror.msg.validate-start", "MSG-5 MSG-8 COPY-4", "a refused START_COPY persists nothing", msg_validate_start),
	C("mirror.msg.validate-tx", "MSG-8 SEQ-2", "a TX refused for its CRC is not journaled", msg_validate_tx),
	C("mirror.lane.count", "LANE-1 LANE-2 HS-2", "lane_count 2 is LANES", lane_count),
	C("mirror.lane.index", "LANE-2", "lane 1 of 1 is LANES", lane_index),
	C("mirror.hs.silent-first", "HS-1 HB-4", "the mirror sends nothing before HELLO", hs_silent_first),
	C("mirror.hs.names", "HS-2", "bad volume names are PROTOCOL; 64 bytes is fine", hs_names),
	C("mirror.hs.check-order", "HS-2", "HELLO checks run in the spec's order", hs_check_order),
	C("mirror.hs.sizes", "HS-2", "a 15-byte UUID or 17-byte session ID is PROTOCOL", hs_sizes),
	C("mirror.hs.version", "HS-3", "no common version is VERSION; the highest common is chosen", hs_version),
	C("mirror.v2.negotiate", "HS-3 NEG-1 NEG-2 NEG-3 LANE-4", "version 2 is chosen; the first known algorithm offered; version 1 for a version-1 master", v2_negotiate),
	C("mirror.v2.framing", "FRAME-3", "after WELCOME, a frame of the other version is PROTOCOL", v2_framing),
	C("mirror.v2.flags", "FRAME-5 COMP-1", "COMPRESSED without compression or a trailer, or a reserved flag, is PROTOCOL", v2_flags),
	C("mirror.comp.zstd", "COMP-1 COMP-2 COMP-3 COMP-5 COPY-6 SEQ-2", "zstd-compressed copy and TX data arrive exactly (VERIFY)", comp_zstd),
	C("mirror.comp.lz4", "COMP-1 COMP-2 COMP-3 COMP-5 COPY-6 SEQ-2", "lz4-compressed copy and TX data arrive exactly (VERIFY)", comp_lz4),
	C("mirror.comp.bad", "COMP-3 COMP-4 COPY-7 SEQ-2", "wrong declared lengths, no length, corrupt data are PROTOCOL; a CRC of the wrong bytes is CHECKSUM", comp_bad),
	C("mirror.lanes.copy", "LANE-1 LANE-4 LANE-5 LANE-6 LANE-7 LANE-8", "records of one pass on two lanes, out of order, then a TX over them: exact (VERIFY)", lanes_copy),
	C("mirror.lanes.refused", "LANE-5", "joins of another session, lane, count, version or identity are refused; the session goes on", lanes_refused),
	C("mirror.lanes.unexpected", "LANE-6 LANE-9", "a HEARTBEAT on a joining lane is UNEXPECTED there and on lane 0", lanes_unexpected),
	C("mirror.lanes.count", "LANE-7", "a lane delivering more records than COPY_DONE counts is PROTOCOL", lanes_count),
	C("mirror.lanes.lost", "LANE-9", "a joining lane lost mid-copy ends the session", lanes_lost),
	C("mirror.comp.bomb", "COMP-4", "64 MiB of zeros declared as 4 MiB is PROTOCOL; the mirror goes on", comp_bomb),
	C("mirror.hs.uuid-clash", "HS-5", "another UUID for the same name is NAME_CLASH", hs_uuid_clash),
	C("mirror.hs.clash-while-held", "HS-2 HS-5 HS-6", "a clash is NAME_CLASH even while the owner is connected", hs_clash_while_held),
	C("mirror.hs.owner-clash", "HS-5 TLS-6", "another identity is NAME_CLASH, whatever master_node says", hs_owner_clash),
	C("mirror.epoch.fence", "EPO-1 EPO-2 EPO-3 EPO-6 HS-2", "a copy made at epoch 2: an epoch-1 master is FENCED, an epoch-3 one DIVERGED", epoch_fence_and_diverge),
	C("mirror.epoch.malformed", "EPO-1 HS-2", "an impossible epoch history is PROTOCOL", epoch_malformed),
	C("mirror.fbk.none", "FBK-3 FSM-1", "a copy that never diverged answers one empty DIVERGENCE; outside READY it is UNEXPECTED", fbk_none),
	C("mirror.swo.done", "SWO-2 SWO-3 EPO-3 EPO-7", "SWITCHOVER once all is acknowledged: SWITCHOVER_DONE, epoch 2; then the old epoch is FENCED", swo_done),
	C("mirror.swo.early", "SWO-2", "SWITCHOVER past the acknowledged TXID is PROTOCOL", swo_early),
	C("mirror.hs.busy", "HS-6 FSM-9 ERR-1", "a second session is BUSY (minor); the first goes on", hs_busy),
	C("mirror.hs.welcome-new", "HS-7", "WELCOME for an unknown volume", hs_welcome_new),
	C("mirror.hs.welcome-created", "HS-7 MP-2 MP-3 MP-6", "WELCOME after MAKEPARTS; the table validates", hs_welcome_created),
	C("mirror.hs.welcome-insync", "HS-7 FSM-8", "WELCOME after TXs in INSYNC", hs_welcome_insync),
	C("mirror.mp.bad-tables", "MP-1", "malformed extent tables are BAD_EXTENTS; 1024 extents are fine", mp_bad_tables),
	C("mirror.mp.mismatch", "MP-2", "a table that differs from the volume is BAD_EXTENTS, nothing changes", mp_mismatch),
	C("mirror.mp.multi", "MP-3 MP-5", "several extents: created, size is the sum", mp_multi),
	C("mirror.mp.no-space", "MP-3 ERR-1", "a volume larger than the free space is NO_SPACE; nothing is created", mp_no_space),
	C("mirror.rdy.sync-not-consistent", "RDY-3", "START_SYNC on a mirror not consistent is PROTOCOL", rdy_sync_not_consistent),
	C("mirror.rdy.sync-txid", "RDY-3 RDY-7", "START_SYNC from a TXID other than the durable one is PROTOCOL", rdy_sync_txid),
	C("mirror.copy.full", "COPY-5 COPY-6 COPY-8 COPY-11", "a full pass ends in COPY_ACK(size) and CONSISTENT(0)", copy_full),
	C("mirror.copy.phase-recorded", "COPY-2 COPY-13 COPY-14 HS-7", "a pass in progress is recorded, not consistent", copy_phase_recorded),
	C("mirror.copy.journal-restart", "COPY-3 HB-2 COPY-11", "a pass from base 10 expects TX 11", copy_journal_restart),
	C("mirror.copy.bad-kind", "COPY-4", "START_COPY of another kind is PROTOCOL", copy_bad_kind),
	C("mirror.copy.base-limit", "COPY-4", "base 2^62-1 is PROTOCOL, 2^62-2 works", copy_base_limit),
	C("mirror.copy.range", "COPY-7 MSG-5 MSG-7", "records outside the volume or empty are RANGE", copy_range),
	C("mirror.copy.crc", "COPY-7", "COPY_DATA with a wrong CRC32C is CHECKSUM", copy_crc),
	C("mirror.copy.after-done", "COPY-7", "COPY_DATA after COPY_DONE is UNEXPECTED", copy_after_done),
	C("mirror.copy.ack-timer", "COPY-8", "COPY_ACK within a second, for data and holes", copy_ack_timer),
	C("mirror.copy.done-bad", "COPY-9", "COPY_DONE below the base, or twice, is PROTOCOL", copy_done_bad),
	C("mirror.copy.waits-for-tx", "COPY-10 COPY-11", "CONSISTENT only once every TX up to t_c is applied", copy_waits_for_tx),
	C("mirror.copy.cursor-resume", "COPY-15 COPY-16 HS-7", "the cursor is reported, a pass resumes there, CONSISTENT clears it", copy_cursor_resume),
	C("mirror.copy.resume-refused", "COPY-16 MSG-8", "bad resumes are PROTOCOL and change nothing", copy_resume_refused),
	C("mirror.copy.dirty-no-cursor", "COPY-15 HS-7", "a dirty pass records no cursor", copy_dirty_no_cursor),
	C("mirror.copy.new-pass", "COPY-4 COPY-17", "START_COPY during a pass starts a new one", copy_new_pass),
	C("mirror.seq.bad-tx", "SEQ-2 MSG-5", "malformed TXs: PROTOCOL, RANGE, CHECKSUM", seq_bad_tx),
	C("mirror.seq.gap", "SEQ-6 SEQ-4", "a gap gets one RESEND; held TXs are journaled once it fills", seq_gap),
	C("mirror.seq.gap-not-journaled", "SEQ-6", "nothing past a gap is journaled", seq_gap_not_journaled),
	C("mirror.seq.duplicate", "SEQ-8", "a TX below the next expected is ignored", seq_duplicate),
	C("mirror.seq.generation-newer", "SEQ-11", "a TX from a newer generation than HELLO is PROTOCOL", seq_generation_newer),
	C("mirror.seq.generation-order", "SEQ-11 DUR-3", "older generations are fine; going back is PROTOCOL", seq_generation_order),
	C("mirror.seq.generation-held", "SEQ-11 SEQ-6", "a held-back TX going back a generation is PROTOCOL", seq_generation_held),
	C("mirror.vfy.hash", "VFY-1 VFY-2 VFY-3 VFY-5 VFY-7", "VERIFYs between TXs are hashed at their TXID; a wrong master hash is no error", vfy_hash),
	C("mirror.vfy.bad", "VFY-4", "bad hashes, lengths and TXIDs are PROTOCOL, regions outside RANGE", vfy_bad),
	C("mirror.vfy.not-at-txid", "VFY-6 SEQ-6", "a VERIFY past a gap is NOT_AT_TXID, then hashed once it fills", vfy_not_at_txid),
	C("mirror.hb.echo", "HB-2", "the echo carries the seq and the last TX_ACK", hb_echo),
	C("mirror.hb.silence", "HB-3", "a silent master is dropped after the mirror's timeout, without an Error", hb_silence),
	C("mirror.hb.not-reading", "HB-3", "a master that stops reading is dropped", hb_not_reading),
	C("mirror.idle.not-persisted", "IDLE-3 FSM-8", "a pause does not survive the session", idle_not_persisted),
	D("mirror.dur.acked", "DUR-7 SEQ-4 HS-8 HS-9 DUR-12", "after a power loss, every acknowledged TX is durable and replayed", dur_acked),
	D("mirror.dur.consistent", "DUR-7 DUR-9 COPY-11", "after a power loss, CONSISTENT still holds", dur_consistent),
	D("mirror.dur.cursor", "COPY-15 COPY-8 DUR-11", "after a power loss, the cursor covers every COPY_ACK", dur_cursor),
	D("mirror.dur.phase", "COPY-2 DUR-9", "after a power loss mid-pass, the mirror is not consistent", dur_phase),
	{ NULL, NULL, NULL, ROLE_MIRROR, false, NULL, 0, 0 },
};
