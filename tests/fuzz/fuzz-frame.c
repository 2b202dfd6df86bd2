/*
 * Fuzz harness: a byte stream from a peer through the frame decoder and every
 * message's protobuf decode; twice: as the frames of a version-1 session, and
 * (all but the last byte) as those after WELCOME of a version-2 session whose
 * compression the last byte picks, so that compressed trailers meet the
 * decompressors (COMP-4).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "frame.h"
#include "frep/v1/frep.pb-c.h"
#include "harness.h"
#include "log.h"
#include "mem-tls.h"
#include "tls.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("fuzz-frame", LOG_ERROR);
	return 0;
}

/* A decoded header encodes back to the same 16 bytes: nothing is lost or invented. */
static void check_header(const uint8_t *data, size_t size, unsigned version)
{
	struct frep_frame_hdr h;
	uint8_t again[FREP_FRAME_HDR_SIZE];
	const char *why = NULL;

	if (size < FREP_FRAME_HDR_SIZE)
		return;
	if (frame_hdr_decode(data, version, &h, &why) < 0) {
		require(why && *why);
		return;
	}
	frame_hdr_encode(&h, again);
	require(memcmp(again, data, sizeof(again)) == 0);
	require(frame_msg_descriptor(h.type) != NULL);
}

/*
 * Whatever unpacked packs again, and that packing is a fixed point (protobuf-c
 * may reorder fields and keeps unknown ones): the mirror answers a HEARTBEAT
 * by repacking it, and the master relays Error text.
 */
static void check_repack(const struct frame *f)
{
	const ProtobufCMessage *m = f->msg;
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *a = malloc(n + 1), *b = NULL;

	require(a);
	require(protobuf_c_message_pack(m, a) == n);
	ProtobufCMessage *again = protobuf_c_message_unpack(m->descriptor, NULL, n, a);
	require(again);
	size_t n2 = protobuf_c_message_get_packed_size(again);
	require(n2 == n);
	b = malloc(n2 + 1);
	require(b);
	require(protobuf_c_message_pack(again, b) == n2);
	require(memcmp(a, b, n) == 0);
	protobuf_c_message_free_unpacked(again, NULL);
	free(a);
	free(b);
}

/* What the daemons read of each message, with the names they log. */
static void read_fields(const struct frame *f)
{
	char line[1024];

	require(f->msg->descriptor == frame_msg_descriptor(f->hdr.type));
	require(strcmp(frep_msg_name(f->hdr.type), "UNKNOWN") != 0);
	switch (f->hdr.type) {
	case FREP_MSG_HELLO: {
		const Frep__V1__Hello *h = (const Frep__V1__Hello *)f->msg;
		snprintf(line, sizeof(line), "%s %s %zu %zu", h->volume, h->master_node,
			 h->volume_uuid.len, h->session_id.len);
		break;
	}
	case FREP_MSG_ERROR: {
		const Frep__V1__Error *e = (const Frep__V1__Error *)f->msg;
		snprintf(line, sizeof(line), "%s %d %s", frep_error_name(e->code),
			 frep_error_is_severe(e->code), e->message);
		break;
	}
	case FREP_MSG_GOODBYE:
		snprintf(line, sizeof(line), "%s", ((const Frep__V1__Goodbye *)f->msg)->reason);
		break;
	case FREP_MSG_EXTENT_TABLE: {
		const Frep__V1__ExtentTable *t = (const Frep__V1__ExtentTable *)f->msg;
		uint64_t sum = 0;
		for (size_t i = 0; i < t->n_extent_size; i++)
			sum += t->extent_size[i];
		snprintf(line, sizeof(line), "%zu %llu %d %llu", t->n_extent_size,
			 (unsigned long long)sum, (int)t->has_allocated_bytes,
			 (unsigned long long)t->allocated_bytes);
		break;
	}
	default:
		break;
	}
	/*
	 * COMP-3/4: a trailer that came compressed is exactly the declared length
	 * once decompressed, within the frame limit, whatever the input said.
	 */
	if (f->wire_trailer_len != f->hdr.trailer_len) {
		require(f->hdr.type == FREP_MSG_TX || f->hdr.type == FREP_MSG_COPY_DATA);
		require(f->hdr.trailer_len <= FREP_MAX_TRAILER);
		uint64_t want = f->hdr.type == FREP_MSG_TX
					? ((const Frep__V1__Tx *)f->msg)->length
					: ((const Frep__V1__CopyData *)f->msg)->length;
		require(want == f->hdr.trailer_len);
	}
	/* Both ends of a trailer are inside the buffer the reader sized for it. */
	if (f->hdr.trailer_len) {
		volatile uint8_t x = f->trailer[0];
		x = f->trailer[f->hdr.trailer_len - 1];
		(void)x;
	}
}

static void read_stream(const uint8_t *data, size_t size, unsigned version, unsigned compression)
{
	struct tls_conn *c = mem_tls_open(data, size, "fuzz-master", 0);
	struct frame_reader r;
	struct frame f;
	char why[256];
	uint32_t wire_err;
	unsigned n = 0;

	check_header(data, size, version);
	frame_reader_init(&r);
	require(frame_reader_set(&r, version, compression) == 0);
	for (;;) {
		why[0] = '\0';
		enum frame_status st = frame_recv(c, &r, &f, &wire_err, why, sizeof(why));
		if (st == FRAME_EOF)
			break;
		if (st == FRAME_ERR) {
			/* A clear message, and an error code the peer understands. */
			require(why[0] != '\0');
			require(wire_err <= FREP_E__MAX);
			break;
		}
		require(st == FRAME_OK);
		read_fields(&f);
		check_repack(&f);
		/* Every other trailer is kept past the next frame, as a batch does. */
		if (f.hdr.trailer_len && n++ % 2) {
			size_t cap = 0;
			void *t = frame_take_trailer(&r, &f, &cap);
			require(t && cap >= f.hdr.trailer_len);
			frame_give_trailer(&r, t, cap);
		}
	}
	frame_reader_free(&r);
	tls_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	read_stream(data, size, FREP_PROTO_VERSION, FREP_COMPRESS_NONE);
	if (size)
		read_stream(data, size - 1, 2, data[size - 1] % (FREP_COMPRESS__MAX + 1));
	return 0;
}
