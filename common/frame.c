/* Frame codec: the 16-byte header, and whole frames over a TLS connection. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "frame.h"
#include "frep/v1/frep.pb-c.h"
#include "tls.h"
#include "util.h"

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void frame_hdr_encode(const struct frep_frame_hdr *h, uint8_t out[FREP_FRAME_HDR_SIZE])
{
	put_be32(out, FREP_FRAME_MAGIC);
	out[4] = h->version;
	out[5] = h->type;
	out[6] = (uint8_t)(h->flags >> 8);
	out[7] = (uint8_t)h->flags;
	put_be32(out + 8, h->body_len);
	put_be32(out + 12, h->trailer_len);
}

int frame_hdr_decode(const uint8_t in[FREP_FRAME_HDR_SIZE], unsigned version,
		     struct frep_frame_hdr *h, const char **why)
{
	if (get_be32(in) != FREP_FRAME_MAGIC) {
		*why = "bad frame magic (expected \"FREP\")";
		return -1;
	}
	h->version = in[4];
	h->type = in[5];
	h->flags = (uint16_t)(in[6] << 8 | in[7]);
	h->body_len = get_be32(in + 8);
	h->trailer_len = get_be32(in + 12);

	if (h->version != version) {
		*why = version == 1 ? "frame version is not 1 (HELLO, WELCOME and all of a version-1 "
				      "session are framed as version 1)"
				    : "frame version is not the session's (FRAME-3)";
		return -1;
	}
	if (h->type == 0 || h->type > FREP_MSG__MAX) {
		*why = "unknown message type";
		return -1;
	}
	if (version == 1 && h->flags != 0) {
		*why = "frame flags set in a version-1 frame";
		return -1;
	}
	if (h->flags & ~FREP_FLAG_COMPRESSED) {
		*why = "reserved frame flags set";
		return -1;
	}
	if (h->body_len > FREP_MAX_BODY) {
		*why = "body length exceeds 65536";
		return -1;
	}
	if (h->trailer_len > FREP_MAX_TRAILER) {
		*why = "trailer length exceeds 33554432";
		return -1;
	}
	if (h->trailer_len && !frep_msg_has_trailer(h->type)) {
		*why = "trailer on a message type that takes none";
		return -1;
	}
	if ((h->flags & FREP_FLAG_COMPRESSED) && !h->trailer_len) {
		*why = "compressed flag on a frame without a trailer";
		return -1;
	}
	return 0;
}

static const ProtobufCMessageDescriptor *const descriptors[] = {
	[FREP_MSG_HELLO] = &frep__v1__hello__descriptor,
	[FREP_MSG_WELCOME] = &frep__v1__welcome__descriptor,
	[FREP_MSG_EXTENT_TABLE] = &frep__v1__extent_table__descriptor,
	[FREP_MSG_PARTS_READY] = &frep__v1__parts_ready__descriptor,
	[FREP_MSG_START_COPY] = &frep__v1__start_copy__descriptor,
	[FREP_MSG_START_SYNC] = &frep__v1__start_sync__descriptor,
	[FREP_MSG_COPY_DATA] = &frep__v1__copy_data__descriptor,
	[FREP_MSG_COPY_HOLE] = &frep__v1__copy_hole__descriptor,
	[FREP_MSG_COPY_ACK] = &frep__v1__copy_ack__descriptor,
	[FREP_MSG_COPY_DONE] = &frep__v1__copy_done__descriptor,
	[FREP_MSG_TX] = &frep__v1__tx__descriptor,
	[FREP_MSG_TX_ACK] = &frep__v1__tx_ack__descriptor,
	[FREP_MSG_RESEND] = &frep__v1__resend__descriptor,
	[FREP_MSG_CONSISTENT] = &frep__v1__consistent__descriptor,
	[FREP_MSG_HEARTBEAT] = &frep__v1__heartbeat__descriptor,
	[FREP_MSG_PAUSE] = &frep__v1__pause__descriptor,
	[FREP_MSG_RESUME] = &frep__v1__resume__descriptor,
	[FREP_MSG_ERROR] = &frep__v1__error__descriptor,
	[FREP_MSG_GOODBYE] = &frep__v1__goodbye__descriptor,
	[FREP_MSG_VERIFY] = &frep__v1__verify__descriptor,
	[FREP_MSG_VERIFY_RESULT] = &frep__v1__verify_result__descriptor,
	[FREP_MSG_DIVERGENCE_REQUEST] = &frep__v1__divergence_request__descriptor,
	[FREP_MSG_DIVERGENCE] = &frep__v1__divergence__descriptor,
	[FREP_MSG_SWITCHOVER] = &frep__v1__switchover__descriptor,
	[FREP_MSG_SWITCHOVER_DONE] = &frep__v1__switchover_done__descriptor,
};

const ProtobufCMessageDescriptor *frame_msg_descriptor(unsigned type)
{
	if (type == 0 || type > FREP_MSG__MAX)
		return NULL;
	return descriptors[type];
}

void frame_reader_init(struct frame_reader *r)
{
	memset(r, 0, sizeof(*r));
	r->version = FREP_PROTO_VERSION;
}

int frame_reader_set(struct frame_reader *r, unsigned version, unsigned compression)
{
	r->version = (uint8_t)version;
	r->compression = (uint8_t)compression;
	compressor_free(r->z);
	r->z = NULL;
	if (compression != FREP_COMPRESS_NONE && !(r->z = compressor_new(compression)))
		return -1;
	return 0;
}

static void reader_drop_msg(struct frame_reader *r)
{
	if (r->msg) {
		protobuf_c_message_free_unpacked(r->msg, NULL);
		r->msg = NULL;
	}
}

void frame_reader_free(struct frame_reader *r)
{
	reader_drop_msg(r);
	free(r->body);
	free(r->trailer);
	for (unsigned i = 0; i < r->n_pool; i++)
		free(r->pool[i].buf);
	compressor_free(r->z);
	free(r->zin);
	memset(r, 0, sizeof(*r));
}

void *frame_take_trailer(struct frame_reader *r, const struct frame *f, size_t *cap)
{
	if (!f->hdr.trailer_len || f->trailer != r->trailer)
		return NULL;
	void *t = r->trailer;
	*cap = r->trailer_cap;
	r->trailer = NULL;
	r->trailer_cap = 0;
	return t;
}

void frame_give_trailer(struct frame_reader *r, void *buf, size_t cap)
{
	if (!buf)
		return;
	if (r->n_pool == FRAME_POOL_MAX || cap > FRAME_POOL_BYTES - r->pool_bytes) {
		free(buf);
		return;
	}
	r->pool[r->n_pool].buf = buf;
	r->pool[r->n_pool].cap = cap;
	r->n_pool++;
	r->pool_bytes += cap;
}

static void pool_remove(struct frame_reader *r, unsigned i)
{
	r->pool_bytes -= r->pool[i].cap;
	r->pool[i] = r->pool[--r->n_pool];
}

/*
 * Makes r->trailer hold len bytes: the smallest pooled buffer that fits, else
 * a new one. A miss frees a pooled buffer (all are too small), so buffers of
 * a size no longer seen do not fill the pool for good.
 */
static int reserve_trailer(struct frame_reader *r, size_t len)
{
	unsigned best = r->n_pool;
	/* From the last given back: with writes of one size, the first is exact. */
	for (unsigned i = r->n_pool; i-- > 0;) {
		if (r->pool[i].cap < len || (best < r->n_pool && r->pool[i].cap >= r->pool[best].cap))
			continue;
		best = i;
		if (r->pool[i].cap == len)
			break;
	}
	free(r->trailer);
	r->trailer = NULL;
	r->trailer_cap = 0;
	if (best < r->n_pool) {
		r->trailer = r->pool[best].buf;
		r->trailer_cap = r->pool[best].cap;
		pool_remove(r, best);
		return 0;
	}
	if (r->n_pool) {
		free(r->pool[0].buf);
		pool_remove(r, 0);
	}
	if (!(r->trailer = malloc(len)))
		return -1;
	r->trailer_cap = len;
	return 0;
}

/*
 * FRAME-11's bound, FRAME_TIME_BASE_MS, with FREP_TEST_FRAME_MS in its place
 * when set (test builds only), so a test can show a trickled frame cut off
 * without waiting 15 s. Read once; read-only afterwards.
 */
static uint64_t frame_time_base = FRAME_TIME_BASE_MS;
static pthread_once_t frame_time_once = PTHREAD_ONCE_INIT;

static void frame_time_init(void)
{
#ifdef FREP_TEST_HOOKS
	const char *v = getenv("FREP_TEST_FRAME_MS");
	char *end;
	if (v && *v) {
		unsigned long long ms = strtoull(v, &end, 10);
		if (*end == '\0' && ms > 0)
			frame_time_base = ms;
	}
#endif
}

uint64_t frame_time_limit_ms(uint32_t trailer_len)
{
	pthread_once(&frame_time_once, frame_time_init);
	return frame_time_base + (uint64_t)trailer_len * 1000 / FRAME_MIN_RATE;
}

/* One base-128 varint at *off (at most 10 bytes). 0, or -1 if it runs past len. */
static int get_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v)
{
	*v = 0;
	for (unsigned shift = 0; shift < 64 && *off < len; shift += 7) {
		uint8_t b = p[(*off)++];
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -1;
}

/*
 * What protobuf-c accepts but the protocol does not, read from the wire bytes
 * of a body protobuf-c has accepted (no frep message nests a message, so
 * top-level fields are all there is; anything it cannot follow is left to
 * protobuf-c's verdict):
 * - MSG-4: strings hold no NUL. protobuf-c hands strings over NUL-terminated
 *   and drops their length, so a volume "v1\0x" would pass as "v1";
 * - field number 0, which protobuf forbids: protobuf-c keeps it as an unknown
 *   field when its tag is encoded in more bytes than needed, and then cannot
 *   read back its own encoding of it (found by tests/fuzz/fuzz-frame).
 * Returns 0, or -1 with the flaw described in why.
 */
static int body_flaw(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
		     char *why, size_t why_len)
{
	size_t off = 0;
	uint64_t key, n;

	while (off < len) {
		if (get_varint(p, len, &off, &key) < 0)
			return 0;
		if (key >> 3 == 0) {
			snprintf(why, why_len, "a field numbered 0");
			return -1;
		}
		switch (key & 7) {
		case 0: /* varint */
			if (get_varint(p, len, &off, &n) < 0)
				return 0;
			break;
		case 1: /* 64-bit */
			off += 8;
			break;
		case 5: /* 32-bit */
			off += 4;
			break;
		case 2: { /* length-delimited */
			if (get_varint(p, len, &off, &n) < 0 || n > len - off)
				return 0;
			const ProtobufCFieldDescriptor *f =
				key >> 3 <= UINT32_MAX
					? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3))
					: NULL;
			if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p + off, 0, n)) {
				snprintf(why, why_len, "string field %s holds a NUL byte (MSG-4)", f->name);
				return -1;
			}
			off += n;
			break;
		}
		default:
			return 0;
		}
	}
	return 0;
}

/*
 * COMP-3: the data's length a body declares, which a compressed trailer must
 * decompress to exactly: Tx.length, CopyData.length. 0 if it declares none.
 */
static uint64_t declared_length(const struct frame *f, const ProtobufCMessage *msg)
{
	if (f->hdr.type == FREP_MSG_TX)
		return ((const Frep__V1__Tx *)msg)->length;
	const Frep__V1__CopyData *d = (const Frep__V1__CopyData *)msg;
	return d->has_length ? d->length : 0;
}

/* CopyData.length, where present, is the data's length, compressed or not. */
static int data_length_check(const struct frame *f, const ProtobufCMessage *msg, char *why,
			     size_t why_len)
{
	if (f->hdr.type != FREP_MSG_COPY_DATA)
		return 0;
	const Frep__V1__CopyData *d = (const Frep__V1__CopyData *)msg;
	if (d->has_length && !(f->hdr.flags & FREP_FLAG_COMPRESSED) &&
	    d->length != f->hdr.trailer_len) {
		snprintf(why, why_len, "COPY_DATA declares %" PRIu64 " bytes of data but carries %u "
			 "uncompressed (COMP-3)", d->length, f->hdr.trailer_len);
		return -1;
	}
	return 0;
}

/*
 * COMP-4: decompresses r->zin into a trailer of exactly the declared length,
 * at most FREP_MAX_TRAILER: no input can make the receiver allocate or write
 * more than an uncompressed frame could.
 */
static int decompress_trailer(struct frame_reader *r, struct frame *f, char *why, size_t why_len)
{
	uint64_t want = declared_length(f, r->msg);
	char err[160];
	if (want == 0 || want > FREP_MAX_TRAILER) {
		snprintf(why, why_len, "%s with a compressed trailer declares %" PRIu64 " bytes of "
			 "data: give its length, 1..%u (COMP-3)", frep_msg_name(f->hdr.type), want,
			 (unsigned)FREP_MAX_TRAILER);
		return -1;
	}
	if (want > r->trailer_cap && reserve_trailer(r, (size_t)want) < 0) {
		snprintf(why, why_len, "out of memory for a %" PRIu64 "-byte trailer", want);
		return -1;
	}
	if (decompress_frame(r->z, r->zin, f->hdr.trailer_len, r->trailer, (size_t)want, err,
			     sizeof(err)) < 0) {
		snprintf(why, why_len, "%s trailer (%u bytes, %s): %s", frep_msg_name(f->hdr.type),
			 f->hdr.trailer_len, compress_name(r->compression), err);
		return -1;
	}
	f->hdr.trailer_len = (uint32_t)want;
	f->hdr.flags &= (uint16_t)~FREP_FLAG_COMPRESSED;
	return 0;
}

enum frame_status frame_recv(struct tls_conn *c, struct frame_reader *r, struct frame *f,
			     uint32_t *wire_err, char *why, size_t why_len)
{
	uint8_t hdr[FREP_FRAME_HDR_SIZE];
	enum frame_status st = FRAME_ERR;
	const char *bad;
	uint64_t deadline;

	*wire_err = 0;
	reader_drop_msg(r);
	/* Waiting for a frame is the session's business (its idle and silence limits)... */
	int rc = tls_read_full(c, hdr, 1);
	if (rc == 0)
		return FRAME_EOF;
	if (rc < 0) {
		snprintf(why, why_len, "reading frame header: %s", strerror(errno));
		return FRAME_ERR;
	}
	/* ...but from its first byte on a frame has FRAME-11's bound, however it trickles. */
	deadline = now_ms() + frame_time_limit_ms(0);
	tls_set_deadline(c, deadline);
	if (tls_read_full(c, hdr + 1, sizeof(hdr) - 1) != 1) {
		if (now_ms() >= deadline)
			snprintf(why, why_len, "frame header not completed within %" PRIu64
				 " ms of its first byte (FRAME-11)", frame_time_limit_ms(0));
		else
			snprintf(why, why_len, "reading frame header: %s",
				 errno ? strerror(errno) : "end of stream");
		goto out;
	}
	if (frame_hdr_decode(hdr, r->version, &f->hdr, &bad) < 0) {
		*wire_err = FREP_E_PROTOCOL;
		snprintf(why, why_len, "%s", bad);
		goto out;
	}
	deadline += frame_time_limit_ms(f->hdr.trailer_len) - frame_time_limit_ms(0);
	tls_set_deadline(c, deadline);
	bool compressed = f->hdr.flags & FREP_FLAG_COMPRESSED;
	if (compressed && !r->z) {
		*wire_err = FREP_E_PROTOCOL;
		snprintf(why, why_len, "%s with a compressed trailer, but the session negotiated no "
			 "compression (COMP-1)", frep_msg_name(f->hdr.type));
		goto out;
	}
	/* Lengths are validated above, so these allocations are bounded. */
	if (!r->body && !(r->body = malloc(FREP_MAX_BODY)))
		goto nomem;
	uint8_t *into = r->trailer;
	if (compressed) {
		if (f->hdr.trailer_len > r->zin_cap) {
			free(r->zin);
			r->zin_cap = 0;
			if (!(r->zin = malloc(f->hdr.trailer_len)))
				goto nomem;
			r->zin_cap = f->hdr.trailer_len;
		}
		into = r->zin;
	} else if (f->hdr.trailer_len > r->trailer_cap) {
		if (reserve_trailer(r, f->hdr.trailer_len) < 0)
			goto nomem;
		into = r->trailer;
	}
	if (f->hdr.body_len && tls_read_full(c, r->body, f->hdr.body_len) != 1)
		goto truncated;
	if (f->hdr.trailer_len && tls_read_full(c, into, f->hdr.trailer_len) != 1)
		goto truncated;
	f->wire_trailer_len = f->hdr.trailer_len;

	const ProtobufCMessageDescriptor *d = descriptors[f->hdr.type];
	r->msg = protobuf_c_message_unpack(d, NULL, f->hdr.body_len, r->body);
	if (!r->msg) {
		*wire_err = FREP_E_PROTOCOL;
		snprintf(why, why_len, "malformed %s body (%u bytes)", frep_msg_name(f->hdr.type),
			 f->hdr.body_len);
		goto out;
	}
	char flaw[128];
	if (body_flaw(d, r->body, f->hdr.body_len, flaw, sizeof(flaw)) < 0) {
		*wire_err = FREP_E_PROTOCOL;
		snprintf(why, why_len, "malformed %s body: %s", frep_msg_name(f->hdr.type), flaw);
		goto out;
	}
	if (data_length_check(f, r->msg, why, why_len) < 0 ||
	    (compressed && decompress_trailer(r, f, why, why_len) < 0)) {
		*wire_err = FREP_E_PROTOCOL;
		goto out;
	}
	f->msg = r->msg;
	f->trailer = r->trailer;
	r->data_bytes += f->hdr.trailer_len;
	r->wire_bytes += f->wire_trailer_len;
	st = FRAME_OK;
	goto out;

truncated:
	/* EOF or failure inside a frame is an error, unlike EOF on a boundary. */
	if (now_ms() >= deadline)
		snprintf(why, why_len, "%s frame (%u body and %u trailer bytes) not completed "
			 "within %" PRIu64 " ms of its first byte (FRAME-11)",
			 frep_msg_name(f->hdr.type), f->hdr.body_len, f->hdr.trailer_len,
			 frame_time_limit_ms(f->hdr.trailer_len));
	else
		snprintf(why, why_len, "connection lost inside a %s frame: %s",
			 frep_msg_name(f->hdr.type), errno ? strerror(errno) : "end of stream");
	goto out;
nomem:
	*wire_err = FREP_E_INTERNAL;
	snprintf(why, why_len, "out of memory for a %u-byte trailer", f->hdr.trailer_len);
out:
	tls_set_deadline(c, 0);
	return st;
}

void frame_writer_init(struct frame_writer *w, struct tls_conn *c)
{
	memset(w, 0, sizeof(*w));
	w->c = c;
	w->version = FREP_PROTO_VERSION;
}

void frame_writer_free(struct frame_writer *w)
{
	compressor_free(w->z);
	free(w->zbuf);
	w->z = NULL;
	w->zbuf = NULL;
	w->zcap = 0;
}

int frame_writer_set(struct frame_writer *w, unsigned version, unsigned compression)
{
	w->version = (uint8_t)version;
	w->compression = (uint8_t)compression;
	compressor_free(w->z);
	w->z = NULL;
	if (compression != FREP_COMPRESS_NONE && !(w->z = compressor_new(compression)))
		return -1;
	return 0;
}

/*
 * COMP-2: the trailer compressed into w->zbuf if the writer compresses, the
 * frame may carry it so, and it shrinks; its compressed size, else 0.
 */
static uint32_t compress_trailer(struct frame_writer *w, unsigned type, const ProtobufCMessage *msg,
				 const void *trailer, uint32_t len)
{
	if (!w->z || !len)
		return 0;
	if (type == FREP_MSG_COPY_DATA) {
		const Frep__V1__CopyData *d = (const Frep__V1__CopyData *)msg;
		if (!d->has_length || d->length != len)
			return 0; /* the receiver could not tell the data's length (COMP-3) */
	} else if (type != FREP_MSG_TX) {
		return 0;
	}
	size_t need = compress_bound(w->compression, len);
	if (!need)
		return 0;
	if (need > w->zcap) {
		free(w->zbuf);
		w->zcap = 0;
		if (!(w->zbuf = malloc(need)))
			return 0; /* goes raw */
		w->zcap = need;
	}
	return (uint32_t)compress_frame(w->z, trailer, len, w->zbuf, w->zcap);
}

int frame_send(struct frame_writer *w, unsigned type, const ProtobufCMessage *msg,
	       const void *trailer, uint32_t trailer_len)
{
	/*
	 * A frame that fits one TLS record (16 KiB of plaintext) goes out as one,
	 * trailer included: a 4 KiB TX is then one record to seal and one to open,
	 * not two, which costs more than the copy. Larger frames send header and
	 * body, then the trailer straight from the caller's buffer.
	 */
	uint8_t buf[16384];
	uint8_t *out = buf;
	size_t body_len = protobuf_c_message_get_packed_size(msg);
	size_t head = FREP_FRAME_HDR_SIZE + body_len;
	int rc = -1;

	if (body_len > FREP_MAX_BODY || trailer_len > FREP_MAX_TRAILER) {
		errno = EMSGSIZE;
		return -1;
	}
	if (head > sizeof(buf) && !(out = malloc(head)))
		return -1;

	struct frep_frame_hdr h = {
		.version = w->version,
		.type = (uint8_t)type,
		.body_len = (uint32_t)body_len,
		.trailer_len = trailer_len,
	};
	uint32_t packed = compress_trailer(w, type, msg, trailer, trailer_len);
	if (trailer_len) {
		atomic_fetch_add_explicit(&w->data_bytes, trailer_len, memory_order_relaxed);
		atomic_fetch_add_explicit(&w->wire_bytes, packed ? packed : trailer_len,
					  memory_order_relaxed);
	}
	if (packed) {
		h.flags = FREP_FLAG_COMPRESSED;
		h.trailer_len = trailer_len = packed;
		trailer = w->zbuf;
	}
	frame_hdr_encode(&h, out);
	protobuf_c_message_pack(msg, out + FREP_FRAME_HDR_SIZE);
	if (out == buf && trailer_len <= sizeof(buf) - head) {
		if (trailer_len)
			memcpy(out + head, trailer, trailer_len);
		rc = tls_write_full(w->c, out, head + trailer_len);
		goto out;
	}
	if (tls_write_full(w->c, out, head) < 0)
		goto out;
	if (trailer_len && tls_write_full(w->c, trailer, trailer_len) < 0)
		goto out;
	rc = 0;
out:
	if (out != buf)
		free(out);
	return rc;
}

int frame_send_error(struct frame_writer *w, uint32_t code, const char *fmt, ...)
{
	char text[FREP_MAX_MESSAGE];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);

	Frep__V1__Error e = FREP__V1__ERROR__INIT;
	e.code = code;
	e.severe = frep_error_is_severe(code);
	e.message = text;
	return frame_send(w, FREP_MSG_ERROR, &e.base, NULL, 0);
}
