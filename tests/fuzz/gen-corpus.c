/*
 * Writes the seed corpora under DIR (tests/fuzz/corpus) with the real code:
 * frames as frame_send sends them in a session, journal, metadata and bitmap
 * files as journal.c, meta.c and bitmap.c write them, cut down to the
 * harnesses' compact inputs. Run once by hand; its output is committed.
 *   gen-corpus DIR
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "compress.h"
#include "frame.h"
#include "frep/v1/frep.pb-c.h"
#include "harness.h"
#include "journal.h"
#include "log.h"
#include "mem-tls.h"
#include "meta.h"
#include "tls.h"
#include "util.h"

static const char *out_dir;

static void put(const char *harness, const char *name, const void *a, size_t alen,
		const void *b, size_t blen)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s/%s", out_dir, harness, name);
	FILE *f = fopen(path, "we");
	require(f);
	require(fwrite(a, 1, alen, f) == alen);
	require(!blen || fwrite(b, 1, blen, f) == blen);
	require(fclose(f) == 0);
}

static void *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	require(fd >= 0);
	off_t n = lseek(fd, 0, SEEK_END);
	uint8_t *buf = malloc((size_t)n + 1);
	require(buf && pread(fd, buf, (size_t)n, 0) == n);
	close(fd);
	*len = (size_t)n;
	return buf;
}

/* ------------------------------------------------------------ frames */

static uint8_t uuid[16] = { 0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78,
			    0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0 };
static uint8_t data[512];

/* Frames after HELLO go in this version with this compression (a version-2 session's). */
static unsigned gen_version = FREP_PROTO_VERSION, gen_compression;

static void send_one(struct tls_conn *c, unsigned type, const ProtobufCMessage *m,
		     const void *trailer, uint32_t len)
{
	struct frame_writer w;
	frame_writer_init(&w, c);
	if (type != FREP_MSG_HELLO)
		require(frame_writer_set(&w, gen_version, gen_compression) == 0);
	require(frame_send(&w, type, m, trailer, len) == 0);
	frame_writer_free(&w);
}

/*
 * A master's side of a first session: create, copy, sequence, say goodbye.
 * With an algorithm, in version 2 with that compression (data compresses).
 */
static void master_session(struct tls_conn *c, bool whole, unsigned alg)
{
	Frep__V1__Hello h = FREP__V1__HELLO__INIT;
	uint32_t offer = alg;
	h.proto_min = FREP_PROTO_VERSION;
	h.proto_max = alg ? 2 : FREP_PROTO_VERSION;
	h.n_compression = alg != 0;
	h.compression = &offer;
	h.master_node = "master-host";
	h.volume = "db1";
	h.volume_uuid = (ProtobufCBinaryData){ sizeof(uuid), uuid };
	h.generation = 1;
	h.session_id = (ProtobufCBinaryData){ sizeof(uuid), uuid };
	h.lane_count = 1;
	h.journal_size = 1 << 20;
	send_one(c, FREP_MSG_HELLO, &h.base, NULL, 0);
	if (alg) {
		gen_version = 2;
		gen_compression = alg;
	}

	uint64_t sizes[2] = { 64 * 1024, 4096 };
	Frep__V1__ExtentTable t = FREP__V1__EXTENT_TABLE__INIT;
	t.n_extent_size = 2;
	t.extent_size = sizes;
	t.has_allocated_bytes = true; /* MP-7: the master's data, here all of it */
	t.allocated_bytes = sizes[0] + sizes[1];
	send_one(c, FREP_MSG_EXTENT_TABLE, &t.base, NULL, 0);

	Frep__V1__StartCopy sc = FREP__V1__START_COPY__INIT;
	sc.kind = FREP__V1__PHASE__PHASE_REPLICATE;
	sc.full = true;
	sc.total_bytes = sizes[0] + sizes[1];
	send_one(c, FREP_MSG_START_COPY, &sc.base, NULL, 0);

	Frep__V1__CopyData cd = FREP__V1__COPY_DATA__INIT;
	cd.offset = 0;
	cd.data_crc = frep_crc32c(data, sizeof(data));
	cd.has_length = alg != 0;
	cd.length = sizeof(data);
	send_one(c, FREP_MSG_COPY_DATA, &cd.base, data, sizeof(data));
	Frep__V1__CopyHole ch = FREP__V1__COPY_HOLE__INIT;
	ch.offset = sizeof(data);
	ch.length = sizes[0] + sizes[1] - sizeof(data);
	send_one(c, FREP_MSG_COPY_HOLE, &ch.base, NULL, 0);
	Frep__V1__CopyDone done = FREP__V1__COPY_DONE__INIT;
	done.last_txid = 0;
	done.copied_bytes = sizeof(data);
	send_one(c, FREP_MSG_COPY_DONE, &done.base, NULL, 0);

	Frep__V1__Tx tx = FREP__V1__TX__INIT;
	tx.generation = 1;
	tx.txid = 1;
	tx.op = FREP__V1__TX_OP__TX_WRITE;
	tx.offset = 8192;
	tx.length = sizeof(data);
	tx.data_crc = frep_crc32c(data, sizeof(data));
	send_one(c, FREP_MSG_TX, &tx.base, data, sizeof(data));
	if (whole) {
		tx.txid = 3; /* past a gap: held, RESEND asked */
		tx.op = FREP__V1__TX_OP__TX_TRIM;
		tx.length = 4096;
		tx.data_crc = 0;
		send_one(c, FREP_MSG_TX, &tx.base, NULL, 0);
		tx.txid = 2;
		tx.op = FREP__V1__TX_OP__TX_ZERO;
		send_one(c, FREP_MSG_TX, &tx.base, NULL, 0);
		Frep__V1__Verify v = FREP__V1__VERIFY__INIT;
		v.verify_id = 1;
		v.length = 8192;
		v.txid = 3;
		v.hash = (ProtobufCBinaryData){ 16, uuid };
		send_one(c, FREP_MSG_VERIFY, &v.base, NULL, 0);
		Frep__V1__Heartbeat hb = FREP__V1__HEARTBEAT__INIT;
		hb.txid = 3;
		send_one(c, FREP_MSG_HEARTBEAT, &hb.base, NULL, 0);
		Frep__V1__Pause p = FREP__V1__PAUSE__INIT;
		send_one(c, FREP_MSG_PAUSE, &p.base, NULL, 0);
		Frep__V1__Resume r = FREP__V1__RESUME__INIT;
		send_one(c, FREP_MSG_RESUME, &r.base, NULL, 0);
	}
	Frep__V1__Goodbye g = FREP__V1__GOODBYE__INIT;
	g.reason = "master shutting down";
	send_one(c, FREP_MSG_GOODBYE, &g.base, NULL, 0);
	gen_version = FREP_PROTO_VERSION;
	gen_compression = 0;
}

/* The mirror's answers in that session, and an Error. */
static void mirror_replies(struct tls_conn *c)
{
	Frep__V1__Welcome w = FREP__V1__WELCOME__INIT;
	w.proto_version = FREP_PROTO_VERSION;
	w.phase = FREP__V1__PHASE__PHASE_NONE;
	send_one(c, FREP_MSG_WELCOME, &w.base, NULL, 0);
	Frep__V1__PartsReady p = FREP__V1__PARTS_READY__INIT;
	p.created = true;
	p.volume_size = 69632;
	send_one(c, FREP_MSG_PARTS_READY, &p.base, NULL, 0);
	Frep__V1__CopyAck a = FREP__V1__COPY_ACK__INIT;
	a.through = 69632;
	send_one(c, FREP_MSG_COPY_ACK, &a.base, NULL, 0);
	Frep__V1__Consistent cons = FREP__V1__CONSISTENT__INIT;
	send_one(c, FREP_MSG_CONSISTENT, &cons.base, NULL, 0);
	Frep__V1__Resend rs = FREP__V1__RESEND__INIT;
	rs.from_txid = 2;
	rs.to_txid = 2;
	send_one(c, FREP_MSG_RESEND, &rs.base, NULL, 0);
	Frep__V1__TxAck ta = FREP__V1__TX_ACK__INIT;
	ta.txid = 3;
	send_one(c, FREP_MSG_TX_ACK, &ta.base, NULL, 0);
	Frep__V1__VerifyResult vr = FREP__V1__VERIFY_RESULT__INIT;
	vr.verify_id = 1;
	vr.txid = 3;
	vr.status = FREP__V1__VERIFY_STATUS__VERIFY_HASHED;
	vr.has_hash = true;
	vr.hash = (ProtobufCBinaryData){ 16, uuid };
	send_one(c, FREP_MSG_VERIFY_RESULT, &vr.base, NULL, 0);
	Frep__V1__Error e = FREP__V1__ERROR__INIT;
	e.code = FREP_E_RANGE;
	e.severe = true;
	e.message = "TX 4: 4096 bytes at offset 69632 leave the 69632-byte volume";
	send_one(c, FREP_MSG_ERROR, &e.base, NULL, 0);
}

static void frames(void)
{
	size_t len;
	struct tls_conn *c = mem_tls_open(NULL, 0, "gen", 1);
	master_session(c, true, 0);
	const uint8_t *out = mem_tls_output(c, &len);
	put("fuzz-frame", "master-session", out, len, NULL, 0);
	put("fuzz-mirror-session", "first-session", out, len, NULL, 0);
	tls_close(c);

	/* Version 2, compressed: fuzz-frame reads it as a version-2 session (its last byte). */
	static const struct {
		unsigned alg;
		const char *name;
	} v2[] = { { FREP_COMPRESS_ZSTD, "v2-zstd" }, { FREP_COMPRESS_LZ4, "v2-lz4" } };
	for (size_t i = 0; i < sizeof(v2) / sizeof(v2[0]); i++) {
		c = mem_tls_open(NULL, 0, "gen", 1);
		master_session(c, true, v2[i].alg);
		out = mem_tls_output(c, &len);
		put("fuzz-mirror-session", v2[i].name, out, len, NULL, 0);
		/* fuzz-frame's mode byte last, and the frames after HELLO alone, as its v2 pass reads them. */
		uint8_t mode = (uint8_t)v2[i].alg;
		size_t hello = FREP_FRAME_HDR_SIZE + ((size_t)out[8] << 24 | (size_t)out[9] << 16 |
						      (size_t)out[10] << 8 | out[11]);
		put("fuzz-frame", v2[i].name, out + hello, len - hello, &mode, 1);
		tls_close(c);
	}

	c = mem_tls_open(NULL, 0, "gen", 1);
	master_session(c, false, 0);
	out = mem_tls_output(c, &len);
	put("fuzz-mirror-session", "copy-then-tx", out, len, NULL, 0);
	tls_close(c);

	c = mem_tls_open(NULL, 0, "gen", 1);
	mirror_replies(c);
	out = mem_tls_output(c, &len);
	put("fuzz-frame", "mirror-replies", out, len, NULL, 0);
	tls_close(c);
}

/* ------------------------------------------------------------ a mirror's side, in bursts */

/*
 * fuzz-master-session's input: two config bytes, then bursts of what a
 * mirror sends (see the harness). burst_begin opens one, send_one into
 * mirror_conn fills it, burst_end appends it.
 */
static uint8_t seed[64 << 10];
static size_t seed_len;
static struct tls_conn *mirror_conn;
static uint8_t burst_action;

static void seed_begin(uint8_t writes_before, uint8_t flags)
{
	seed[0] = writes_before;
	seed[1] = flags;
	seed_len = 2;
}

static void burst_begin(uint8_t action)
{
	mirror_conn = mem_tls_open(NULL, 0, "gen", 1);
	burst_action = action;
}

static void burst_end(void)
{
	size_t len;
	const uint8_t *out = mem_tls_output(mirror_conn, &len);
	require(len <= 0xffff && seed_len + 3 + len <= sizeof(seed));
	seed[seed_len++] = burst_action;
	seed[seed_len++] = (uint8_t)len;
	seed[seed_len++] = (uint8_t)(len >> 8);
	memcpy(seed + seed_len, out, len);
	seed_len += len;
	tls_close(mirror_conn);
	mirror_conn = NULL;
}

/* One burst of one message, or of none (an action alone). */
static void burst(uint8_t action, unsigned type, const ProtobufCMessage *m)
{
	burst_begin(action);
	if (m)
		send_one(mirror_conn, type, m, NULL, 0);
	burst_end();
}

/* The harness's ACTION byte (fuzz-master-session.c). */
enum {
	ACT_WRITES = 0,	   /* | count: local 4 KiB writes as the burst arrives */
	ACT_TRIMS = 2 << 3,
	ACT_BIG = 1 << 5,
	ACT_PAUSE = 1 << 6 | 1,
	ACT_RESUME = 1 << 6 | 2,
	ACT_RESYNC_FULL = 1 << 6 | 3,
	ACT_VERIFY = 1 << 6 | 4,
	ACT_CLOSE = 1 << 7,
	CFG_RESYNC_FULL = 1,
	CFG_TWO_EXTENTS = 2,
	CFG_CRACKED = 4,
	MASTER_VOLUME = 1 << 20,
};

static bool welcome_verify; /* the next WELCOMEs say Welcome.verify */

static void welcome(uint8_t action, bool known, uint32_t phase, bool consistent, uint64_t durable,
		    uint64_t cursor, uint64_t base)
{
	Frep__V1__Welcome w = FREP__V1__WELCOME__INIT;
	w.has_verify = welcome_verify;
	w.verify = welcome_verify;
	w.proto_version = FREP_PROTO_VERSION;
	w.known = known;
	w.phase = phase;
	w.consistent = consistent;
	w.durable_txid = durable;
	w.consistent_txid = consistent ? durable : 0;
	w.copy_cursor = cursor;
	w.has_copy_base = cursor != 0;
	w.copy_base = base;
	burst(action, FREP_MSG_WELCOME, &w.base);
}

static void parts_ready(uint8_t action, bool created, uint64_t size)
{
	Frep__V1__PartsReady p = FREP__V1__PARTS_READY__INIT;
	p.created = created;
	p.volume_size = size;
	burst(action, FREP_MSG_PARTS_READY, &p.base);
}

static void copy_ack(uint8_t action, uint64_t through)
{
	Frep__V1__CopyAck a = FREP__V1__COPY_ACK__INIT;
	a.through = through;
	burst(action, FREP_MSG_COPY_ACK, &a.base);
}

static void tx_ack(uint8_t action, uint64_t txid)
{
	Frep__V1__TxAck a = FREP__V1__TX_ACK__INIT;
	a.txid = txid;
	burst(action, FREP_MSG_TX_ACK, &a.base);
}

static void consistent(uint8_t action, uint64_t txid)
{
	Frep__V1__Consistent c = FREP__V1__CONSISTENT__INIT;
	c.txid = txid;
	burst(action, FREP_MSG_CONSISTENT, &c.base);
}

static void resend(uint8_t action, uint64_t from, uint64_t to)
{
	Frep__V1__Resend r = FREP__V1__RESEND__INIT;
	r.from_txid = from;
	r.to_txid = to;
	burst(action, FREP_MSG_RESEND, &r.base);
}

static void heartbeat(uint8_t action, uint64_t seq, uint64_t txid)
{
	Frep__V1__Heartbeat hb = FREP__V1__HEARTBEAT__INIT;
	hb.seq = seq;
	hb.txid = txid;
	burst(action, FREP_MSG_HEARTBEAT, &hb.base);
}

static void verify_result(uint8_t action, uint64_t id, uint64_t offset, uint64_t txid, uint8_t fill)
{
	uint8_t hash[16];
	memset(hash, fill, sizeof(hash));
	Frep__V1__VerifyResult r = FREP__V1__VERIFY_RESULT__INIT;
	r.verify_id = id;
	r.offset = offset;
	r.txid = txid;
	r.status = FREP__V1__VERIFY_STATUS__VERIFY_HASHED;
	r.has_hash = true;
	r.hash = (ProtobufCBinaryData){ sizeof(hash), hash };
	burst(action, FREP_MSG_VERIFY_RESULT, &r.base);
}

static void goodbye(uint8_t action)
{
	Frep__V1__Goodbye g = FREP__V1__GOODBYE__INIT;
	g.reason = "mirror shutting down";
	burst(action, FREP_MSG_GOODBYE, &g.base);
}

static void error_frame(uint8_t action, uint32_t code, bool severe, const char *message)
{
	Frep__V1__Error e = FREP__V1__ERROR__INIT;
	e.code = code;
	e.severe = severe;
	e.message = (char *)message;
	burst(action, FREP_MSG_ERROR, &e.base);
}

/*
 * The mirror's side of real sessions with the harness's master (1 MiB
 * volume, TXIDs from 1), as frep-server answers. Each was checked with
 * FREP_FUZZ_LOG=info to take the path its comment names.
 */
static void mirror_sessions(void)
{
	/*
	 * First contact: create, full copy with writes meanwhile, catch-up to
	 * CONSISTENT, INSYNC with resends, pause and resume; the link drops and
	 * the next connection resumes sequencing (READY row 3); then GOODBYE.
	 */
	seed_begin(3, 0);
	welcome(0, false, FREP__V1__PHASE__PHASE_NONE, false, 0, 0, 0);
	parts_ready(0, true, MASTER_VOLUME);
	/* The copy drains a burst after each data chunk: heartbeats fit any of them. */
	heartbeat(ACT_WRITES | 2, 1, 0); /* TXIDs 4, 5 during the copy */
	copy_ack(0, 64 << 10);
	for (unsigned i = 2; i < 7; i++)
		heartbeat(0, i, 0);
	copy_ack(0, MASTER_VOLUME);
	tx_ack(0, 4);
	consistent(0, 5);
	heartbeat(ACT_WRITES | 3, 7, 5); /* 6..8 in INSYNC */
	heartbeat(0, 8, 5);
	resend(0, 6, 7);
	heartbeat(0, 9, 5);
	heartbeat(0, 10, 5);
	heartbeat(0, 11, 5);
	tx_ack(0, 8);
	heartbeat(ACT_PAUSE, 12, 8);
	heartbeat(ACT_WRITES | 1, 13, 8); /* 9, held while IDLE */
	heartbeat(ACT_RESUME, 14, 8);
	heartbeat(0, 15, 8);
	heartbeat(0, 16, 8);
	tx_ack(ACT_CLOSE, 9);
	welcome(0, true, FREP__V1__PHASE__PHASE_INSYNC, true, 8, 0, 0);
	parts_ready(0, false, MASTER_VOLUME);
	heartbeat(ACT_WRITES | ACT_TRIMS | 2, 1, 8); /* 10, 11 */
	heartbeat(0, 2, 8);
	heartbeat(0, 3, 8);
	tx_ack(0, 11);
	goodbye(0);
	put("fuzz-master-session", "first-copy-insync", seed, seed_len, NULL, 0);

	/*
	 * A restart during the first copy: the mirror's cursor and base resume
	 * it (RDY-6) on two extents, and records an earlier session acknowledged
	 * are freed already. Then the operator asks for a full resync.
	 */
	seed_begin(2 << 4 | 5, CFG_TWO_EXTENTS);
	welcome(0, true, FREP__V1__PHASE__PHASE_REPLICATE, false, 2, 512 << 10, 2);
	parts_ready(0, false, MASTER_VOLUME);
	heartbeat(0, 1, 2);
	copy_ack(0, 576 << 10);
	for (unsigned i = 2; i < 6; i++)
		heartbeat(0, i, 2);
	copy_ack(0, MASTER_VOLUME);
	tx_ack(0, 5);
	consistent(0, 5);
	heartbeat(ACT_RESYNC_FULL, 6, 5);
	for (unsigned i = 7; i < 14; i++)
		heartbeat(0, i, 5);
	copy_ack(0, MASTER_VOLUME);
	consistent(0, 5);
	goodbye(0);
	put("fuzz-master-session", "resume-copy", seed, seed_len, NULL, 0);

	/*
	 * The buffer overflowed before the session: the mirror, consistent at a
	 * TXID the journal no longer follows, gets a dirty pass (READY row 4);
	 * big writes in INSYNC crack it again, and another pass follows, on a
	 * new connection (as frep-client does it).
	 */
	seed_begin(2, CFG_CRACKED);
	welcome(0, true, FREP__V1__PHASE__PHASE_INSYNC, true, 1, 0, 0);
	parts_ready(0, false, MASTER_VOLUME);
	for (unsigned i = 1; i < 24; i++)
		heartbeat(0, i, 1);
	copy_ack(0, MASTER_VOLUME);
	consistent(0, 18);
	heartbeat(ACT_BIG | 7, 24, 18); /* 19..25 */
	tx_ack(0, 19);
	heartbeat(ACT_BIG | 7, 25, 19);
	tx_ack(0, 21);
	heartbeat(ACT_BIG | 7, 26, 21); /* the crack: the session reconnects */
	welcome(0, true, FREP__V1__PHASE__PHASE_INSYNC, true, 21, 0, 0);
	parts_ready(0, false, MASTER_VOLUME);
	for (unsigned i = 1; i < 24; i++)
		heartbeat(0, i, 21);
	copy_ack(0, MASTER_VOLUME);
	consistent(0, 39);
	put("fuzz-master-session", "crack-resync", seed, seed_len, NULL, 0);

	/*
	 * A crack that dropped only TXIDs the mirror had (1..15; its TX_ACKs were
	 * lost with the link): READY row 3 finds the dirty bits stale.
	 */
	seed_begin(0, CFG_CRACKED);
	welcome(0, true, FREP__V1__PHASE__PHASE_INSYNC, true, 15, 0, 0);
	parts_ready(0, false, MASTER_VOLUME);
	heartbeat(0, 1, 15);
	tx_ack(ACT_WRITES | 1, 16);
	heartbeat(0, 2, 16);
	tx_ack(0, 17);
	goodbye(0);
	put("fuzz-master-session", "stale-bits", seed, seed_len, NULL, 0);

	/* Messages at the edge of their states: RESEND while IDLE, CONSISTENT in INSYNC (UNEXPECTED). */
	seed_begin(3, 0);
	welcome(0, true, FREP__V1__PHASE__PHASE_INSYNC, true, 3, 0, 0);
	parts_ready(0, false, MASTER_VOLUME);
	heartbeat(ACT_WRITES | 2, 1, 3); /* 4, 5 */
	heartbeat(ACT_PAUSE, 2, 3);
	heartbeat(0, 3, 3);
	resend(0, 4, 5);
	put("fuzz-master-session", "resend-in-idle", seed, seed_len, NULL, 0);
	seed_begin(3, 0);
	welcome(0, true, FREP__V1__PHASE__PHASE_INSYNC, true, 3, 0, 0);
	parts_ready(0, false, MASTER_VOLUME);
	heartbeat(0, 1, 3);
	consistent(0, 3);
	put("fuzz-master-session", "consistent-in-insync", seed, seed_len, NULL, 0);

	/*
	 * Online verify in INSYNC on a mirror that says it verifies: the one
	 * 1 MiB region at TXID 3 answered with a hash that cannot match (a
	 * mismatch), writes meanwhile; a second verify, then a result nobody
	 * asked for.
	 */
	welcome_verify = true;
	seed_begin(3, 0);
	welcome(0, true, FREP__V1__PHASE__PHASE_INSYNC, true, 3, 0, 0);
	parts_ready(0, false, MASTER_VOLUME);
	heartbeat(0, 1, 3);
	heartbeat(ACT_VERIFY, 2, 3);
	heartbeat(0, 3, 3);
	verify_result(0, 1, 0, 3, 0xee);
	heartbeat(ACT_WRITES | 2, 4, 3); /* 4, 5 */
	tx_ack(0, 5);
	heartbeat(ACT_VERIFY, 5, 5);
	heartbeat(0, 6, 5);
	verify_result(0, 2, 0, 5, 0xee);
	heartbeat(0, 7, 5);
	verify_result(0, 2, 0, 5, 0);
	put("fuzz-master-session", "verify-mismatch", seed, seed_len, NULL, 0);
	welcome_verify = false;

	/*
	 * A resync whose dirty regions (those of TXIDs 1..3) make more runs than
	 * the pass remembers (FREP_FUZZ_SIZES: 2): it copies everything.
	 */
	seed_begin(3, 0);
	welcome(0, true, FREP__V1__PHASE__PHASE_OUTOFSYNC, false, 0, 0, 0);
	parts_ready(0, false, MASTER_VOLUME);
	for (unsigned i = 1; i < 24; i++)
		heartbeat(0, i, 0);
	copy_ack(0, MASTER_VOLUME);
	consistent(0, 3);
	goodbye(0);
	put("fuzz-master-session", "fragmented-resync", seed, seed_len, NULL, 0);

	/*
	 * Minor failures, then a severe one: a busy volume (RESET), a GOODBYE
	 * in MAKEPARTS (LINKDOWN), a mirror AHEAD of the master (ERROR).
	 */
	seed_begin(1, 0);
	error_frame(0, FREP_E_BUSY, false, "volume fuzz is in use by another session");
	welcome(0, false, FREP__V1__PHASE__PHASE_NONE, false, 0, 0, 0);
	goodbye(0);
	welcome(0, true, FREP__V1__PHASE__PHASE_INSYNC, true, 7, 0, 0);
	parts_ready(0, false, MASTER_VOLUME);
	put("fuzz-master-session", "refusals", seed, seed_len, NULL, 0);

	/* A mirror of another size, and one acknowledging a copy not sent yet (PROTOCOL). */
	seed_begin(1, 0);
	welcome(0, false, FREP__V1__PHASE__PHASE_NONE, false, 0, 0, 0);
	parts_ready(ACT_CLOSE, true, MASTER_VOLUME - 4096);
	put("fuzz-master-session", "wrong-size", seed, seed_len, NULL, 0);
	seed_begin(1, 0);
	welcome(0, true, FREP__V1__PHASE__PHASE_CREATED, false, 0, 0, 0);
	parts_ready(0, false, MASTER_VOLUME);
	copy_ack(0, MASTER_VOLUME);
	put("fuzz-master-session", "early-copy-ack", seed, seed_len, NULL, 0);
}

/* ------------------------------------------------------------ journal */

enum { J_FILE = 1 << 20, J_HDR = 4096, J_RING = J_FILE - J_HDR };

/* The harness's compact form: ctl, wrap, both slots, ring bytes [from, ring end) then [0, to). */
static void journal_image(const char *path, const char *name, uint8_t ctl, uint64_t from,
			  uint64_t to)
{
	size_t len;
	uint8_t *f = slurp(path, &len);
	require(len == J_FILE);
	uint64_t wrap = from ? J_RING - from : 0;
	size_t n = 3 + 128 + wrap + to;
	uint8_t *img = malloc(n);
	require(img);
	img[0] = ctl;
	img[1] = (uint8_t)wrap;
	img[2] = (uint8_t)(wrap >> 8);
	memcpy(img + 3, f, 64);
	memcpy(img + 67, f + 2048, 64);
	memcpy(img + 131, f + J_HDR + from, wrap);
	memcpy(img + 131 + wrap, f + J_HDR, to);
	put("fuzz-journal", name, img, n, NULL, 0);
	free(img);
	free(f);
}

static void append(struct journal *j, uint64_t txid, uint32_t op, uint64_t len)
{
	struct journal_rec r = { .generation = 1, .txid = txid, .offset = txid * 4096,
				 .length = len, .op = op };
	if (op == JOP_WRITE)
		r.data_crc = frep_crc32c(data, len);
	require(journal_append(j, &r, op == JOP_WRITE ? data : NULL) == 0);
}

static void journals(const char *dir)
{
	char path[512], err[512];

	/* A few records of each op, the first two freed: a tail past offset 0. */
	snprintf(path, sizeof(path), "%s/journal", dir);
	struct journal *j = journal_open(path, J_FILE, NULL, err, sizeof(err));
	require(j);
	append(j, 1, JOP_WRITE, 256);
	append(j, 2, JOP_TRIM, 4096);
	append(j, 3, JOP_ZERO, 8192);
	append(j, 4, JOP_WRITE, 512);
	require(journal_sync(j) == 0);
	require(journal_free_through(j, 2) == 0);
	append(j, 5, JOP_WRITE, 100);
	require(journal_sync(j) == 0);
	uint64_t head = journal_head_pos(j);
	journal_close(j);
	journal_image(path, "records", 0, 0, head);
	journal_image(path, "records-fix", 3, 0, head);
	journal_image(path, "records-salvage", 7, 0, head);
	unlink(path);

	/* Trims (64 bytes each, 16320 to a ring) around the ring end: a chain that wraps. */
	j = journal_open(path, J_FILE, NULL, err, sizeof(err));
	require(j);
	uint64_t per_ring = J_RING / 64;
	for (uint64_t t = 1; t <= per_ring + 10; t++) {
		append(j, t, JOP_TRIM, 4096);
		if (t % 1024 == 0) {
			require(journal_sync(j) == 0);
			require(journal_free_through(j, t - 8) == 0);
		}
	}
	require(journal_sync(j) == 0);
	require(journal_free_through(j, per_ring - 5) == 0);
	journal_close(j);
	journal_image(path, "wrapped", 0, (per_ring - 5) * 64, 10 * 64);
	journal_image(path, "wrapped-fix", 3, (per_ring - 5) * 64, 10 * 64);
	unlink(path);
}

/* ------------------------------------------------------------ meta, bitmap, allow */

static void metas(const char *dir)
{
	char path[512], hex[33];
	struct meta m;
	size_t len;

	snprintf(path, sizeof(path), "%s/meta", dir);
	meta_init(&m);
	meta_set(&m, "format", "frep-mirror-1");
	meta_set(&m, "volume", "db1");
	meta_set(&m, "owner", "master-a");
	meta_set(&m, "uuid", hex_encode(uuid, sizeof(uuid), hex));
	meta_set_u64(&m, "phase", FREP__V1__PHASE__PHASE_INSYNC);
	meta_set_u64(&m, "consistent", 1);
	meta_set_u64(&m, "consistent_txid", 1234);
	meta_set_u64(&m, "applied_txid", 1234);
	meta_set_u64(&m, "copy_cursor", 0);
	meta_set_u64(&m, "copy_base", 0);
	meta_set_u64(&m, "copy_full", 0);
	meta_set_u64(&m, "extents", 2);
	require(meta_save(path, &m) == 0);
	uint8_t *f = slurp(path, &len);
	put("fuzz-meta", "mirror", "\0", 1, f, len);
	/* Without its crc32c line (the last 16 bytes): the harness adds it. */
	put("fuzz-meta", "mirror-add-crc", "\1", 1, f, len - 16);
	free(f);

	meta_init(&m);
	meta_set(&m, "format", "frep-master-1");
	meta_set(&m, "volume", "db1");
	meta_set(&m, "uuid", hex);
	meta_set_u64(&m, "generation", 7);
	require(meta_save(path, &m) == 0);
	f = slurp(path, &len);
	put("fuzz-meta", "master", "\0", 1, f, len);
	free(f);
	unlink(path);
}

static void bitmaps(const char *dir)
{
	char path[512], err[512];
	size_t len;
	uint64_t vol = 64 << 20; /* 1024 regions of 64 KiB: one page */

	snprintf(path, sizeof(path), "%s/bitmap", dir);
	struct bitmap *b = bitmap_open(path, vol, 64 * 1024, NULL, err, sizeof(err));
	require(b);
	bitmap_set_range(b, 0, 4096);
	bitmap_set_range(b, 10 << 20, 3 << 20);
	bitmap_set_range(b, vol - 1, 1);
	require(bitmap_sync(b) == 0);
	bitmap_close(b);
	uint8_t *f = slurp(path, &len);
	require(len == 2 * BITMAP_PAGE_SIZE);
	uint8_t prefix[10] = { 0, 4 };
	uint64_t le = htole64(vol);
	memcpy(prefix + 2, &le, 8);
	/* Header (64 bytes) and the page; the page's zero tail is left to the harness. */
	uint8_t img[64 + 256];
	memcpy(img, f, 64);
	memcpy(img + 64, f + BITMAP_PAGE_SIZE, 256);
	put("fuzz-bitmap", "short-page", prefix, sizeof(prefix), img, sizeof(img));
	prefix[0] = 7; /* fix geometry, size and page CRCs */
	put("fuzz-bitmap", "short-page-fix", prefix, sizeof(prefix), img, sizeof(img));
	prefix[0] = 0;
	uint8_t *whole = malloc(64 + BITMAP_PAGE_SIZE);
	require(whole);
	memcpy(whole, f, 64);
	memcpy(whole + 64, f + BITMAP_PAGE_SIZE, BITMAP_PAGE_SIZE);
	put("fuzz-bitmap", "one-page", prefix, sizeof(prefix), whole, 64 + BITMAP_PAGE_SIZE);
	free(whole);
	free(f);
	unlink(path);
}

static void allows(void)
{
	static const char allow[] =
		"# volume-glob   identity-glob\n"
		"db*             master-a\n"
		"vm-[0-9]*.img\tmaster-?  # trailing comment\n"
		"\n"
		"*               admin\n";
	static const char bad[] = "db1 master-a extra\n";
	put("fuzz-allow", "allow", allow, sizeof(allow) - 1, NULL, 0);
	put("fuzz-allow", "three-fields", bad, sizeof(bad) - 1, NULL, 0);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen-corpus DIR (tests/fuzz/corpus)\n");
		return 2;
	}
	out_dir = argv[1];
	log_init("gen-corpus", LOG_WARN);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 1);
	const char *dir = fuzz_tmpdir();
	frames();
	mirror_sessions();
	journals(dir);
	metas(dir);
	bitmaps(dir);
	allows();
	return 0;
}
