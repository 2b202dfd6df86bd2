/* Frame codec: the 16-byte header, and whole frames over a TLS connection. */
#ifndef FREP_FRAME_H
#define FREP_FRAME_H

#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct compressor;
struct tls_conn;

void frame_hdr_encode(const struct frep_frame_hdr *h, uint8_t out[FREP_FRAME_HDR_SIZE]);

/*
 * Decodes and validates a header: magic, version equal to the session's
 * (1 before WELCOME), known type, flags (none in version 1; in version 2
 * FREP_FLAG_COMPRESSED, only on a trailer), body_len <= FREP_MAX_BODY,
 * trailer_len <= FREP_MAX_TRAILER and zero for types without a trailer.
 * Returns 0, or -1 with *why set to a static string. Runs before anything is
 * allocated for the frame.
 */
int frame_hdr_decode(const uint8_t in[FREP_FRAME_HDR_SIZE], unsigned version,
		     struct frep_frame_hdr *h, const char **why);

/* Protobuf descriptor of a message type, NULL if unknown. */
const ProtobufCMessageDescriptor *frame_msg_descriptor(unsigned type);

/*
 * A received frame. The reader owns the buffers and reuses them for the next
 * frame: msg and trailer are valid until the next frame_recv or frame_reader_free
 * (a trailer taken with frame_take_trailer is the taker's).
 */
struct frame {
	/*
	 * As received, except that for a compressed trailer trailer_len is the
	 * data's length once decompressed (what trailer holds) and the flag is
	 * cleared: receivers see data, whatever the wire carried.
	 */
	struct frep_frame_hdr hdr;
	ProtobufCMessage *msg; /* unpacked body; cast by hdr.type */
	uint8_t *trailer;      /* hdr.trailer_len bytes */
	uint32_t wire_trailer_len; /* trailer bytes on the wire */
};

/* Trailer buffers a reader keeps for reuse once given back: at most this many, and bytes. */
enum { FRAME_POOL_MAX = 256, FRAME_POOL_BYTES = 4 << 20 };

struct frame_reader {
	uint8_t *body;
	uint8_t *trailer;
	size_t trailer_cap;
	ProtobufCMessage *msg;
	struct {
		void *buf;
		size_t cap;
	} pool[FRAME_POOL_MAX]; /* given back by frame_give_trailer */
	unsigned n_pool;
	size_t pool_bytes;
	/* What WELCOME settled (frame_reader_set); version 1, uncompressed, until then. */
	uint8_t version;
	uint8_t compression;
	struct compressor *z;
	uint8_t *zin; /* a compressed trailer as read, before it is decompressed */
	size_t zin_cap;
	uint64_t data_bytes, wire_bytes; /* trailer bytes received, decompressed and as read */
};

void frame_reader_init(struct frame_reader *r);
void frame_reader_free(struct frame_reader *r);
/*
 * From now on frames must carry this version, and compressed trailers (with
 * compression, an enum frep_compression other than none) are decompressed.
 * 0, or -1 if out of memory.
 */
int frame_reader_set(struct frame_reader *r, unsigned version, unsigned compression);

/*
 * The sending side of one connection. The version and compression are
 * those the session settled (frame_writer_set; 1 and none until then).
 * One thread sends on a writer at a time; the counters may be read by any.
 */
struct frame_writer {
	struct tls_conn *c;
	uint8_t version;
	uint8_t compression;
	struct compressor *z;
	uint8_t *zbuf; /* compressed trailer of the frame being sent */
	size_t zcap;
	/* COPY_DATA and TX trailer bytes, as given and as sent (compression ratio). */
	_Atomic uint64_t data_bytes, wire_bytes;
};

void frame_writer_init(struct frame_writer *w, struct tls_conn *c);
void frame_writer_free(struct frame_writer *w);
/* As frame_reader_set, for what this side sends: a trailer goes compressed where that shrinks it. */
int frame_writer_set(struct frame_writer *w, unsigned version, unsigned compression);

/*
 * Hands the trailer of f, the frame r received last, over to the caller;
 * f->trailer stays valid as long as the caller keeps it. *cap gets the
 * buffer's size (at least f->hdr.trailer_len). The reader takes another for
 * its next frame with a trailer. So a receiver keeps the data it needs beyond
 * the next frame without copying it. NULL, and nothing changes, if f has no
 * trailer or it was taken already.
 */
void *frame_take_trailer(struct frame_reader *r, const struct frame *f, size_t *cap);

/*
 * Gives a taken trailer (cap bytes) back to r, which reuses it for a later
 * frame instead of allocating (and faulting in) another, or frees it when its
 * pool is full. NULL is ignored. Use instead of free() for taken trailers.
 */
void frame_give_trailer(struct frame_reader *r, void *buf, size_t cap);

enum frame_status { FRAME_OK = 1, FRAME_EOF = 0, FRAME_ERR = -1 };

/*
 * FRAME-11: a frame must be complete within FRAME_TIME_BASE_MS of its first
 * byte, plus a second per FRAME_MIN_RATE bytes of trailer, so a link down to
 * 64 KiB/s still carries a 32 MiB trailer while a peer trickling a frame
 * byte by byte cannot hold a session for ever.
 */
enum { FRAME_TIME_BASE_MS = 15000, FRAME_MIN_RATE = 64 << 10 };

/* The bound of a frame with a trailer of trailer_len bytes, in ms. */
uint64_t frame_time_limit_ms(uint32_t trailer_len);

/*
 * Reads one whole frame. FRAME_EOF: the peer closed on a frame boundary.
 * FRAME_ERR: I/O error, EOF inside a frame, a frame not completed within
 * frame_time_limit_ms of its first byte, or an invalid header or body
 * (strings with a NUL included, MSG-4); *wire_err is then the Error.code to
 * send back (0 when the link itself failed and nothing can be sent) and why
 * says what was wrong. Waiting for the first byte is bounded only by the
 * connection's read timeout.
 */
enum frame_status frame_recv(struct tls_conn *c, struct frame_reader *r, struct frame *f,
			     uint32_t *wire_err, char *why, size_t why_len);

/*
 * Sends header, packed msg and optional trailer, in the writer's version. A
 * COPY_DATA or TX trailer goes compressed if the writer compresses and that
 * makes it smaller (a COPY_DATA must then carry its length, COMP-3).
 * Returns 0 or -1 (link failed).
 */
int frame_send(struct frame_writer *w, unsigned type, const ProtobufCMessage *msg,
	       const void *trailer, uint32_t trailer_len);

/* Sends an Error frame; the caller closes the connection afterwards. */
int frame_send_error(struct frame_writer *w, uint32_t code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
