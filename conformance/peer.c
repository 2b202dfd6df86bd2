/* frep-conform: one connection to the implementation under test, and the expectations on it. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "compress.h"
#include "conform.h"
#include "tls.h"
#include "util.h"

static int vset(char *buf, size_t len, const char *fmt, va_list ap)
{
	vsnprintf(buf, len, fmt, ap);
	return -1;
}

int cx_fail(struct cctx *x, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vset(x->why, sizeof(x->why), fmt, ap);
	va_end(ap);
	return -1;
}

/* A SKIP is a FAIL that the runner reports as SKIP: x->why starts with "skip: ". */
int cx_skip(struct cctx *x, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(x->why, sizeof(x->why), "skip: ");
	va_start(ap, fmt);
	vsnprintf(x->why + n, sizeof(x->why) - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

int cx_connect(struct cctx *x)
{
	char err[256];
	struct conform *cf = x->cf;
	/* A connection still open is dropped, never leaked with its reader. */
	if (x->p.c)
		cx_abort(x);
	frame_reader_init(&x->p.rd);
	x->p.timeout_ms = cf->timeout_ms;
	x->p.c = tls_client_connect(x->use_other ? cf->tls_other : cf->tls, cf->host, cf->port, cf->server_name, cf->timeout_ms,
				    err, sizeof(err));
	frame_writer_init(&x->p.out, x->p.c);
	if (!x->p.c)
		return cx_fail(x, "connecting to %s:%s: %s", cf->host, cf->port, err);
	return 0;
}

int cx_accept(struct cctx *x)
{
	char err[256], peer[64];
	struct conform *cf = x->cf;
	if (x->p.c)
		cx_abort(x);
	frame_reader_init(&x->p.rd);
	x->p.timeout_ms = cf->timeout_ms;
	struct pollfd pfd = { .fd = cf->listen_fd, .events = POLLIN };
	if (poll(&pfd, 1, cf->timeout_ms) <= 0)
		return cx_fail(x, "the master did not connect within %d ms", cf->timeout_ms);
	struct sockaddr_storage sa;
	socklen_t sl = sizeof(sa);
	int fd = accept(cf->listen_fd, (struct sockaddr *)&sa, &sl);
	if (fd < 0)
		return cx_fail(x, "accept: %s", strerror(errno));
	snprintf(peer, sizeof(peer), "master");
	x->p.c = tls_server_handshake(cf->tls, fd, peer, cf->timeout_ms, err, sizeof(err));
	frame_writer_init(&x->p.out, x->p.c);
	if (!x->p.c)
		return cx_fail(x, "TLS handshake with the master: %s", err);
	return 0;
}

void cx_close(struct cctx *x)
{
	tls_close(x->p.c);
	x->p.c = NULL;
	frame_reader_free(&x->p.rd);
	frame_writer_free(&x->p.out);
}

void cx_abort(struct cctx *x)
{
	tls_abort(x->p.c);
	x->p.c = NULL;
	frame_reader_free(&x->p.rd);
	frame_writer_free(&x->p.out);
}

void cx_lane(struct cctx *x, unsigned n)
{
	if (n == x->lane || n >= FREP_MAX_LANES)
		return;
	/* lanes[i] holds lane i whenever it is not p. */
	x->lanes[x->lane] = x->p;
	x->p = x->lanes[n];
	memset(&x->lanes[n], 0, sizeof(x->lanes[n]));
	x->lane = n;
}

void cx_close_lanes(struct cctx *x)
{
	for (unsigned i = 0; i < FREP_MAX_LANES; i++) {
		struct cpeer *p = &x->lanes[i];
		if (!p->c)
			continue;
		tls_close(p->c);
		p->c = NULL;
		frame_reader_free(&p->rd);
		frame_writer_free(&p->out);
	}
}

int cx_send(struct cctx *x, unsigned type, const ProtobufCMessage *msg, const void *trailer,
	    uint32_t trailer_len)
{
	if (!x->p.c)
		return cx_fail(x, "sending %s: not connected", frep_msg_name(type));
	if (frame_send(&x->p.out, type, msg, trailer, trailer_len) < 0)
		return cx_fail(x, "sending %s: %s (the peer closed?)", frep_msg_name(type),
			       strerror(errno));
	return 0;
}

int cx_expect_error_for(struct cctx *x, unsigned code, const char *what)
{
	if (cx_expect_error(x, code, NULL) == 0)
		return 0;
	char why[sizeof(x->why)];
	snprintf(why, sizeof(why), "%s", x->why);
	return cx_fail(x, "%s: %s", what, why);
}

int cx_send_raw(struct cctx *x, const void *buf, size_t len)
{
	if (!x->p.c)
		return cx_fail(x, "sending raw bytes: not connected");
	if (tls_write_full(x->p.c, buf, len) < 0)
		return cx_fail(x, "sending %zu raw bytes: %s", len, strerror(errno));
	return 0;
}

int cx_send_hdr(struct cctx *x, uint32_t magic, uint8_t version, uint8_t type, uint16_t flags,
		uint32_t body_len, uint32_t trailer_len)
{
	uint8_t h[FREP_FRAME_HDR_SIZE];
	struct frep_frame_hdr hdr = {
		.version = version, .type = type, .flags = flags, .body_len = body_len,
		.trailer_len = trailer_len,
	};
	frame_hdr_encode(&hdr, h);
	for (int i = 0; i < 4; i++)
		h[i] = (uint8_t)(magic >> (24 - 8 * i));
	return cx_send_raw(x, h, sizeof(h));
}

enum frame_status cx_recv(struct cctx *x, struct frame *f, int timeout_ms)
{
	char why[256];
	uint32_t wire_err;

	if (!x->p.c) {
		cx_fail(x, "reading: not connected");
		return FRAME_ERR;
	}
	for (;;) {
		tls_set_read_timeout(x->p.c, timeout_ms);
		if (!tls_readable(x->p.c, timeout_ms)) {
			cx_fail(x, "nothing received within %d ms", timeout_ms);
			return FRAME_ERR;
		}
		errno = 0;
		enum frame_status st = frame_recv(x->p.c, &x->p.rd, f, &wire_err, why, sizeof(why));
		if (st == FRAME_OK) {
			if (x->p.skip_heartbeats && f->hdr.type == FREP_MSG_HEARTBEAT)
				continue;
			return st;
		}
		if (st == FRAME_EOF)
			return st;
		/* A reset on a frame boundary ends the stream as surely as a FIN. */
		if (!wire_err && (errno == ECONNRESET || errno == EPIPE) &&
		    !strncmp(why, "reading frame header", 20))
			return FRAME_EOF;
		cx_fail(x, "%s%s", wire_err ? "the peer sent a bad frame: " : "", why);
		return FRAME_ERR;
	}
}

int cx_expect(struct cctx *x, unsigned type, struct frame *f)
{
	struct frame tmp;
	if (!f)
		f = &tmp;
	enum frame_status st = cx_recv(x, f, x->p.timeout_ms);
	if (st == FRAME_EOF)
		return cx_fail(x, "expected %s, the peer closed the connection", frep_msg_name(type));
	if (st == FRAME_ERR) {
		char why[sizeof(x->why)];
		snprintf(why, sizeof(why), "%s", x->why);
		return cx_fail(x, "expected %s: %s", frep_msg_name(type), why);
	}
	if (f->hdr.type == type)
		return 0;
	if (f->hdr.type == FREP_MSG_ERROR) {
		const Frep__V1__Error *e = (const Frep__V1__Error *)f->msg;
		return cx_fail(x, "expected %s, got ERROR %s: \"%.300s\"", frep_msg_name(type),
			       frep_error_name(e->code), e->message);
	}
	return cx_fail(x, "expected %s, got %s", frep_msg_name(type), frep_msg_name(f->hdr.type));
}

/*
 * Frames a peer may still send before its ERROR: a mirror's acknowledgements
 * of what came earlier; what a master was streaming when it read the offence.
 */
static bool may_precede_error(const struct cctx *x, unsigned type)
{
	if (x->kase && x->kase->role == ROLE_MASTER)
		return type == FREP_MSG_TX || type == FREP_MSG_COPY_DATA || type == FREP_MSG_COPY_HOLE ||
		       type == FREP_MSG_COPY_DONE || type == FREP_MSG_HEARTBEAT;
	return type == FREP_MSG_COPY_ACK || type == FREP_MSG_TX_ACK || type == FREP_MSG_CONSISTENT ||
	       type == FREP_MSG_RESEND || type == FREP_MSG_HEARTBEAT;
}

int cx_expect_error(struct cctx *x, unsigned code, const char *msg_re)
{
	struct frame f;
	for (unsigned n = 0;; n++) {
		enum frame_status st = cx_recv(x, &f, x->p.timeout_ms);
		if (st == FRAME_OK && f.hdr.type != FREP_MSG_ERROR && may_precede_error(x, f.hdr.type) &&
		    n < 1024)
			continue;
		if (st == FRAME_OK && f.hdr.type == FREP_MSG_ERROR)
			break;
		if (st == FRAME_OK)
			return cx_fail(x, "expected ERROR %s, got %s", frep_error_name(code),
				       frep_msg_name(f.hdr.type));
		if (st == FRAME_EOF)
			return cx_fail(x, "expected ERROR %s, the peer closed the connection",
				       frep_error_name(code));
		char why[sizeof(x->why)];
		snprintf(why, sizeof(why), "%s", x->why);
		return cx_fail(x, "expected ERROR %s: %s", frep_error_name(code), why);
	}
	const Frep__V1__Error *e = (const Frep__V1__Error *)f.msg;
	char msg[FREP_MAX_MESSAGE + 1];
	snprintf(msg, sizeof(msg), "%s", e->message ? e->message : "");
	CHECK(x, e->code == code, "expected ERROR %s, got ERROR %s: \"%s\"", frep_error_name(code),
	      frep_error_name(e->code), msg);
	CHECK(x, e->severe == frep_error_is_severe(code),
	      "ERROR %s has severe=%s; the spec's table says %s (ERR-1)", frep_error_name(code),
	      e->severe ? "true" : "false", frep_error_is_severe(code) ? "severe" : "minor");
	CHECK(x, msg[0], "ERROR %s carries no message (ERR-8)", frep_error_name(code));
	/*
	 * ERR-2: the receiver of an ERROR closes. Our half of the stream ends
	 * now, so a sender lingering to drain it (ERR-1) sees the end at once;
	 * what we still read must be the peer's close, not another frame.
	 */
	shutdown(tls_fd(x->p.c), SHUT_WR);
	if (msg_re) {
		regex_t re;
		if (regcomp(&re, msg_re, REG_EXTENDED | REG_NOSUB | REG_ICASE) != 0)
			return cx_fail(x, "internal: bad regex %s", msg_re);
		int m = regexec(&re, msg, 0, NULL, 0);
		regfree(&re);
		CHECK(x, m == 0, "ERROR %s message \"%s\" does not say /%s/", frep_error_name(code),
		      msg, msg_re);
	}
	return cx_expect_close(x);
}

int cx_expect_close(struct cctx *x)
{
	struct frame f;
	enum frame_status st = cx_recv(x, &f, x->p.timeout_ms);
	if (st == FRAME_OK)
		return cx_fail(x, "expected the peer to close, got %s", frep_msg_name(f.hdr.type));
	if (st == FRAME_ERR) {
		char why[sizeof(x->why)];
		snprintf(why, sizeof(why), "%s", x->why);
		return cx_fail(x, "expected the peer to close: %s", why);
	}
	cx_close(x);
	return 0;
}

int cx_expect_silence(struct cctx *x, int ms)
{
	struct frame f;
	if (!x->p.c || !tls_readable(x->p.c, ms))
		return 0;
	enum frame_status st = cx_recv(x, &f, ms);
	if (st == FRAME_OK) {
		if (f.hdr.type == FREP_MSG_ERROR)
			return cx_fail(x, "expected no answer, got ERROR %s: \"%.300s\"",
				       frep_error_name(((Frep__V1__Error *)f.msg)->code),
				       ((Frep__V1__Error *)f.msg)->message);
		return cx_fail(x, "expected no answer, got %s", frep_msg_name(f.hdr.type));
	}
	return cx_fail(x, "expected no answer, the peer closed the connection");
}

int cx_send_body(struct cctx *x, unsigned type, const void *body, uint32_t body_len,
		 const void *trailer, uint32_t trailer_len)
{
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, x->p.out.version, (uint8_t)type, 0, body_len,
			 trailer_len));
	if (body_len)
		STEP(cx_send_raw(x, body, body_len));
	if (trailer_len)
		STEP(cx_send_raw(x, trailer, trailer_len));
	return 0;
}

int cx_send_flagged(struct cctx *x, uint8_t version, unsigned type, uint16_t flags,
		    const ProtobufCMessage *m, const void *trailer, uint32_t trailer_len)
{
	uint8_t body[FREP_MAX_BODY];
	size_t n = cx_pack(m, body, sizeof(body));
	STEP(cx_send_hdr(x, FREP_FRAME_MAGIC, version, (uint8_t)type, flags, (uint32_t)n,
			 trailer_len));
	if (n)
		STEP(cx_send_raw(x, body, n));
	if (trailer_len)
		STEP(cx_send_raw(x, trailer, trailer_len));
	return 0;
}

int cx_settle(struct cctx *x, unsigned version, unsigned compression)
{
	if (frame_writer_set(&x->p.out, version, compression) < 0 ||
	    frame_reader_set(&x->p.rd, version, compression) < 0)
		return cx_fail(x, "out of memory");
	return 0;
}

size_t cx_compress(unsigned alg, const void *src, size_t n, uint8_t **out)
{
	struct compressor *z = compressor_new(alg);
	size_t cap = compress_bound(alg, n), len = 0;
	*out = cap ? malloc(cap) : NULL;
	if (z && *out)
		len = compress_frame(z, src, n, *out, cap);
	compressor_free(z);
	return len;
}

size_t cx_pack(const ProtobufCMessage *m, uint8_t *buf, size_t cap)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	if (n > cap)
		return 0;
	return protobuf_c_message_pack(m, buf);
}
