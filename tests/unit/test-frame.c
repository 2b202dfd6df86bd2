/* Frame header codec: every length field against a boundary table, and the message tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"
#include "frep/v1/frep.pb-c.h"
#include "wire.h"

static void encode(uint8_t out[FREP_FRAME_HDR_SIZE], uint8_t type, uint32_t body, uint32_t trailer)
{
	struct frep_frame_hdr h = {
		.version = FREP_PROTO_VERSION, .type = type, .body_len = body, .trailer_len = trailer,
	};
	frame_hdr_encode(&h, out);
}

/* spec: FRAME-1 */
static void test_layout_is_big_endian(void **state)
{
	uint8_t b[FREP_FRAME_HDR_SIZE];
	encode(b, FREP_MSG_TX, 0x01020304, 0x0a0b0c0d);
	const uint8_t want[FREP_FRAME_HDR_SIZE] = { 'F', 'R', 'E', 'P', 1, FREP_MSG_TX, 0, 0,
						    1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d };
	assert_memory_equal(b, want, sizeof(want));
}

struct len_case {
	uint32_t len;
	bool ok;
};

/* 0, 1, max-1, max, max+1, 0x7fffffff, 0x80000000, 0xffffffff. */
static void check_lengths(uint8_t type, bool body, uint32_t max, bool trailer_allowed)
{
	const struct len_case cases[] = {
		{ 0, true },	      { 1, true },	   { max - 1, true },
		{ max, true },	      { max + 1, false },  { 0x7fffffffu, false },
		{ 0x80000000u, false }, { 0xffffffffu, false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t b[FREP_FRAME_HDR_SIZE];
		struct frep_frame_hdr h;
		const char *why = NULL;
		encode(b, type, body ? cases[i].len : 0, body ? 0 : cases[i].len);
		bool want = cases[i].ok && (body || trailer_allowed || cases[i].len == 0);
		int rc = frame_hdr_decode(b, FREP_PROTO_VERSION, &h, &why);
		if (want) {
			assert_int_equal(rc, 0);
			assert_int_equal(body ? h.body_len : h.trailer_len, cases[i].len);
		} else {
			assert_int_equal(rc, -1);
			assert_non_null(why);
		}
	}
}

/* spec: FRAME-6, FRAME-8 */
static void test_body_len_boundaries(void **state)
{
	check_lengths(FREP_MSG_HELLO, true, FREP_MAX_BODY, false);
	check_lengths(FREP_MSG_TX, true, FREP_MAX_BODY, true);
}

/* spec: FRAME-7, FRAME-8 */
static void test_trailer_len_boundaries(void **state)
{
	check_lengths(FREP_MSG_TX, false, FREP_MAX_TRAILER, true);
	check_lengths(FREP_MSG_COPY_DATA, false, FREP_MAX_TRAILER, true);
	/* Types without a trailer refuse any non-zero trailer length. */
	check_lengths(FREP_MSG_TX_ACK, false, FREP_MAX_TRAILER, false);
	check_lengths(FREP_MSG_HELLO, false, FREP_MAX_TRAILER, false);
}

/* spec: FRAME-2, FRAME-3, FRAME-4, FRAME-5 */
static void test_bad_headers(void **state)
{
	uint8_t b[FREP_FRAME_HDR_SIZE];
	struct frep_frame_hdr h;
	const char *why;

	encode(b, FREP_MSG_HELLO, 10, 0);
	b[0] = 'X';
	assert_int_equal(frame_hdr_decode(b, FREP_PROTO_VERSION, &h, &why), -1);
	assert_non_null(strstr(why, "magic"));

	encode(b, FREP_MSG_HELLO, 10, 0);
	b[4] = 2;
	assert_int_equal(frame_hdr_decode(b, FREP_PROTO_VERSION, &h, &why), -1);
	assert_non_null(strstr(why, "version"));

	const uint8_t bad_types[] = { 0, FREP_MSG__MAX + 1, 0x7f, 0xff };
	for (size_t i = 0; i < sizeof(bad_types); i++) {
		encode(b, bad_types[i], 0, 0);
		assert_int_equal(frame_hdr_decode(b, FREP_PROTO_VERSION, &h, &why), -1);
		assert_non_null(strstr(why, "unknown message type"));
	}

	encode(b, FREP_MSG_HELLO, 0, 0);
	b[7] = 1;
	assert_int_equal(frame_hdr_decode(b, FREP_PROTO_VERSION, &h, &why), -1);
	assert_non_null(strstr(why, "flags"));
}

/* spec: FRAME-3, FRAME-5 in version 2: the session's version, and the COMPRESSED flag on a trailer only. */
static void test_version2_headers(void **state)
{
	uint8_t b[FREP_FRAME_HDR_SIZE];
	struct frep_frame_hdr h = { .version = 2, .type = FREP_MSG_TX, .flags = FREP_FLAG_COMPRESSED,
				    .body_len = 20, .trailer_len = 100 };
	const char *why;

	frame_hdr_encode(&h, b);
	assert_int_equal(frame_hdr_decode(b, 2, &h, &why), 0);
	assert_int_equal(h.flags, FREP_FLAG_COMPRESSED);
	/* The same frame in a version-1 session, or flagged in version 1: refused. */
	assert_int_equal(frame_hdr_decode(b, 1, &h, &why), -1);
	assert_non_null(strstr(why, "version"));
	b[4] = 1;
	assert_int_equal(frame_hdr_decode(b, 1, &h, &why), -1);
	assert_non_null(strstr(why, "flags"));
	/* A version-1 frame in a version-2 session. */
	encode(b, FREP_MSG_HEARTBEAT, 4, 0);
	assert_int_equal(frame_hdr_decode(b, 2, &h, &why), -1);
	assert_non_null(strstr(why, "version"));
	/* COMPRESSED without a trailer, and a reserved bit. */
	h = (struct frep_frame_hdr){ .version = 2, .type = FREP_MSG_HEARTBEAT,
				     .flags = FREP_FLAG_COMPRESSED, .body_len = 4 };
	frame_hdr_encode(&h, b);
	assert_int_equal(frame_hdr_decode(b, 2, &h, &why), -1);
	assert_non_null(strstr(why, "without a trailer"));
	h = (struct frep_frame_hdr){ .version = 2, .type = FREP_MSG_TX, .flags = 0x0002,
				     .body_len = 4, .trailer_len = 8 };
	frame_hdr_encode(&h, b);
	assert_int_equal(frame_hdr_decode(b, 2, &h, &why), -1);
	assert_non_null(strstr(why, "reserved"));
}

static void test_every_type_has_name_and_descriptor(void **state)
{
	for (unsigned t = 1; t <= FREP_MSG__MAX; t++) {
		assert_string_not_equal(frep_msg_name(t), "UNKNOWN");
		assert_non_null(frame_msg_descriptor(t));
	}
	assert_string_equal(frep_msg_name(0), "UNKNOWN");
	assert_string_equal(frep_msg_name(FREP_MSG__MAX + 1), "UNKNOWN");
	assert_null(frame_msg_descriptor(0));
	assert_null(frame_msg_descriptor(FREP_MSG__MAX + 1));
	assert_ptr_equal(frame_msg_descriptor(FREP_MSG_TX), &frep__v1__tx__descriptor);
}

static void test_error_severity_table(void **state)
{
	for (unsigned c = 1; c <= FREP_E__MAX; c++)
		assert_string_not_equal(frep_error_name(c), "UNKNOWN");
	assert_true(frep_error_is_severe(FREP_E_NAME_CLASH));
	assert_true(frep_error_is_severe(FREP_E_NO_SPACE));
	assert_true(frep_error_is_severe(FREP_E_PROTOCOL));
	assert_false(frep_error_is_severe(FREP_E_BUSY));
	assert_false(frep_error_is_severe(FREP_E_IO));
	/* Codes from a newer peer are severe: stop rather than retry blindly. */
	assert_true(frep_error_is_severe(FREP_E__MAX + 1));
}

/* A body missing a required field does not decode. */
static void test_required_fields(void **state)
{
	uint8_t buf[64];
	Frep__V1__TxAck a = FREP__V1__TX_ACK__INIT;
	a.txid = 42;
	size_t n = protobuf_c_message_pack(&a.base, buf);
	ProtobufCMessage *m = protobuf_c_message_unpack(frame_msg_descriptor(FREP_MSG_TX_ACK),
							NULL, n, buf);
	assert_non_null(m);
	assert_int_equal(((Frep__V1__TxAck *)m)->txid, 42);
	protobuf_c_message_free_unpacked(m, NULL);
	/* An empty body lacks txid. */
	assert_null(protobuf_c_message_unpack(frame_msg_descriptor(FREP_MSG_TX_ACK), NULL, 0, buf));
}

/*
 * A taken trailer belongs to the caller: the reader forgets it (so freeing the
 * reader does not free it twice, which ASan would report) and takes another.
 */
static void test_take_trailer(void **state)
{
	struct frame_reader r;
	frame_reader_init(&r);
	r.trailer = malloc(4096);
	r.trailer_cap = 4096;
	assert_non_null(r.trailer);
	struct frame f = { .hdr = { .type = FREP_MSG_TX, .trailer_len = 100 }, .trailer = r.trailer };

	size_t cap = 0;
	uint8_t *t = frame_take_trailer(&r, &f, &cap);
	assert_ptr_equal(t, f.trailer);
	assert_int_equal(cap, 4096);
	assert_null(r.trailer);
	assert_int_equal(r.trailer_cap, 0);
	/* Taken once: a second take gets nothing. */
	assert_null(frame_take_trailer(&r, &f, &cap));
	frame_reader_free(&r);
	memset(t, 0xab, cap); /* still the caller's, whole */
	free(t);

	/* A frame without a trailer hands nothing over; the reader keeps its buffer. */
	frame_reader_init(&r);
	r.trailer = malloc(64);
	r.trailer_cap = 64;
	assert_non_null(r.trailer);
	struct frame ack = { .hdr = { .type = FREP_MSG_TX_ACK }, .trailer = r.trailer };
	cap = 7;
	assert_null(frame_take_trailer(&r, &ack, &cap));
	assert_int_equal(cap, 7);
	assert_ptr_equal(r.trailer, ack.trailer);
	assert_int_equal(r.trailer_cap, 64);
	frame_reader_free(&r);
}

/*
 * Given-back trailers are pooled within FRAME_POOL_MAX buffers and
 * FRAME_POOL_BYTES; the rest is freed at once, the pool with the reader (ASan
 * reports any leak or double free).
 */
/* spec: FRAME-11. 15 s from the first byte, plus a second per 64 KiB of trailer. */
static void test_frame_time_limit(void **state)
{
	const struct {
		uint32_t trailer;
		uint64_t ms;
	} cases[] = {
		{ 0, 15000 },
		{ 1, 15000 },
		{ 65535, 15999 },
		{ 65536, 16000 },
		{ FREP_MAX_TRAILER - 1, 15000 + 511999 },
		{ FREP_MAX_TRAILER, 15000 + 512000 },
		{ 0x7fffffffu, 15000 + 32767999 },
		{ 0xffffffffu, 15000 + 65535999 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(frame_time_limit_ms(cases[i].trailer), cases[i].ms);
}

static void test_give_trailer_pool_bounds(void **state)
{
	struct frame_reader r;
	frame_reader_init(&r);
	frame_give_trailer(&r, NULL, 4096);
	assert_int_equal(r.n_pool, 0);

	frame_give_trailer(&r, malloc(1 << 20), 1 << 20);
	assert_int_equal(r.n_pool, 1);
	assert_int_equal(r.pool_bytes, 1 << 20);
	/* Past the byte bound: freed, the pool unchanged. */
	frame_give_trailer(&r, malloc(FRAME_POOL_BYTES), FRAME_POOL_BYTES);
	assert_int_equal(r.n_pool, 1);
	assert_int_equal(r.pool_bytes, 1 << 20);

	for (unsigned i = 1; i < FRAME_POOL_MAX; i++)
		frame_give_trailer(&r, malloc(16), 16);
	assert_int_equal(r.n_pool, FRAME_POOL_MAX);
	/* Past the count bound: freed. */
	frame_give_trailer(&r, malloc(16), 16);
	assert_int_equal(r.n_pool, FRAME_POOL_MAX);
	assert_int_equal(r.pool_bytes, (1 << 20) + 16 * (FRAME_POOL_MAX - 1));
	frame_reader_free(&r);
	assert_int_equal(r.n_pool, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout_is_big_endian),
		cmocka_unit_test(test_body_len_boundaries),
		cmocka_unit_test(test_trailer_len_boundaries),
		cmocka_unit_test(test_bad_headers),
		cmocka_unit_test(test_version2_headers),
		cmocka_unit_test(test_every_type_has_name_and_descriptor),
		cmocka_unit_test(test_error_severity_table),
		cmocka_unit_test(test_required_fields),
		cmocka_unit_test(test_take_trailer),
		cmocka_unit_test(test_give_trailer_pool_bounds),
		cmocka_unit_test(test_frame_time_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
