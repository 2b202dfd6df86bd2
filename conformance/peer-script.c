/* frep-conform peer: a scriptable, misbehaving master that speaks real TLS to a mirror. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "frame.h"
#include "frep/v1/frep.pb-c.h"
#include "log.h"
#include "tls.h"
#include "util.h"

/*
 * Usage:
 *   frep-conform peer --connect HOST:PORT --server-name NAME --cert F --key F --ca F
 *             [--timeout S] [SCRIPT]
 *
 * SCRIPT (a file, or stdin when absent or "-") has one command per line;
 * blank lines and lines starting with '#' are skipped:
 *
 *   send TYPE BODYFILE [TRAILER] [crc]
 *        A well-formed header (version 1, flags 0, exact lengths), the bytes of
 *        BODYFILE as the body (sent as they are, even if they do not decode),
 *        then the trailer. TRAILER is a file path, zeros:N or random:N.
 *        "crc" decodes the body, sets its data_crc field (TX, COPY_DATA) to the
 *        CRC32C of the trailer and encodes it again.
 *   raw HEX     arbitrary bytes, whitespace inside HEX ignored
 *   expect TYPE [OUTFILE]
 *        Reads one frame within the timeout; fails unless its type is TYPE.
 *        The raw body goes to OUTFILE, for protoc --decode.
 *   expect-close
 *        The server must close (EOF or reset) within the timeout, sending
 *        no further frame.
 *   close       closes the connection now (mid-frame after a partial raw)
 *   trickle MS HEX
 *        Writes the bytes of HEX one at a time, each in its own TLS record,
 *        MS ms apart (a frame dribbled in, FRAME-11). Stops early, and still
 *        succeeds, as soon as the server sends something or closes: the next
 *        command (expect, expect-close) sees what it was. Prints
 *        "trickle K of N bytes".
 *   flood TYPE BODYFILE
 *        Sends that frame (no trailer) over and over and reads nothing, until
 *        the server gives up on us and resets the connection, which ends the
 *        connection here too. Fails if a write waits longer than the timeout
 *        (the server neither reads nor closes) or the server is still reading
 *        after it. Prints "flood N frames".
 *   cork        buffers what later send and raw commands would write
 *   uncork [N]  writes the buffered bytes in one write and stops buffering;
 *               with N, only the first N bytes, with -N all but the last N
 *               (a frame cut short anywhere, even inside its trailer)
 *
 * TYPE is a message name (HELLO, TX...) or a number. Every received frame is
 * printed on stdout as "recv NAME body=N trailer=M".
 *
 * Exit: 0 the script ran as written; 1 the server did not behave as the script
 * expects (one-line reason on stderr); 2 usage, script or local file errors.
 */

enum peer_limits {
	MAX_LINE = 4096,
	MAX_RAW = MAX_LINE / 2,
	DEFAULT_TIMEOUT_S = 10,
	MAX_TIMEOUT_S = 300,
	/* A few whole frames: enough to batch or cut any frame the tool can send. */
	MAX_CORK = 4 * (FREP_FRAME_HDR_SIZE + FREP_MAX_BODY + FREP_MAX_TRAILER),
	/* Frames per write while flooding: few syscalls, and whole TLS records. */
	FLOOD_BATCH = 1024,
};

enum peer_exit { EXIT_OK = 0, EXIT_MISBEHAVED = 1, EXIT_USAGE = 2 };

struct peer {
	struct tls_conn *c; /* NULL once closed */
	struct frame_reader rd;
	int timeout_ms;
	unsigned line;
	bool corked;
	uint8_t *cork; /* owned; bytes held back while corked */
	size_t cork_len, cork_cap;
	char why[512]; /* reason of the first failure */
};

static int failf(struct peer *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Records why the script stopped; returns code for the caller to pass up. */
static int failf(struct peer *p, int code, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(p->why, sizeof(p->why), "line %u: ", p->line);
	va_start(ap, fmt);
	vsnprintf(p->why + n, sizeof(p->why) - (size_t)n, fmt, ap);
	va_end(ap);
	return code;
}

static int parse_type(const char *s)
{
	for (unsigned t = 1; t <= FREP_MSG__MAX; t++)
		if (strcasecmp(s, frep_msg_name(t)) == 0)
			return (int)t;
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 0);
	if (errno || *end || end == s || v > 255)
		return -1;
	return (int)v;
}

/* Reads a whole file of at most max bytes. Caller frees *buf. */
static int slurp(const char *path, size_t max, uint8_t **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	int rc = -1;
	*buf = malloc(max + 1);
	if (!*buf)
		goto out;
	*len = fread(*buf, 1, max + 1, f);
	if (ferror(f))
		goto out;
	if (*len > max) {
		errno = EFBIG;
		goto out;
	}
	rc = 0;
out:
	if (rc < 0) {
		free(*buf);
		*buf = NULL;
	}
	fclose(f);
	return rc;
}

/* TRAILER argument: a file, zeros:N or random:N. Caller frees *buf. */
static int make_trailer(struct peer *p, const char *spec, uint8_t **buf, size_t *len)
{
	char *end;
	*buf = NULL;
	*len = 0;
	if (!strncmp(spec, "zeros:", 6) || !strncmp(spec, "random:", 7)) {
		bool zeros = spec[0] == 'z';
		const char *num = spec + (zeros ? 6 : 7);
		errno = 0;
		unsigned long long n = strtoull(num, &end, 0);
		if (errno || *end || end == num || n > FREP_MAX_TRAILER)
			return failf(p, EXIT_USAGE, "trailer length \"%s\": 0..%d", num,
				     FREP_MAX_TRAILER);
		if (n == 0)
			return 0;
		*len = (size_t)n;
		if (!(*buf = calloc(1, *len)))
			return failf(p, EXIT_USAGE, "out of memory for %zu trailer bytes", *len);
		for (size_t done = 0; !zeros && done < *len;) {
			ssize_t r = getrandom(*buf + done, *len - done, 0);
			if (r < 0 && errno != EINTR)
				return failf(p, EXIT_USAGE, "getrandom: %s", strerror(errno));
			done += r > 0 ? (size_t)r : 0;
		}
		return 0;
	}
	if (slurp(spec, FREP_MAX_TRAILER, buf, len) < 0)
		return failf(p, EXIT_USAGE, "trailer %s: %s", spec, strerror(errno));
	return 0;
}

/* Sets the data_crc field of a TX or COPY_DATA body to the trailer's CRC32C. */
static int fix_crc(struct peer *p, unsigned type, uint8_t **body, size_t *body_len,
		   const uint8_t *trailer, size_t trailer_len)
{
	const ProtobufCMessageDescriptor *d = frame_msg_descriptor(type);
	const ProtobufCFieldDescriptor *fd =
		d ? protobuf_c_message_descriptor_get_field_by_name(d, "data_crc") : NULL;
	if (!fd || fd->type != PROTOBUF_C_TYPE_FIXED32)
		return failf(p, EXIT_USAGE, "crc: %s has no data_crc field", frep_msg_name(type));
	ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, *body_len, *body);
	if (!m)
		return failf(p, EXIT_USAGE, "crc: the body does not decode as %s", frep_msg_name(type));
	*(uint32_t *)((char *)m + fd->offset) = frep_crc32c(trailer, trailer_len);
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *out = malloc(n ? n : 1);
	if (!out) {
		protobuf_c_message_free_unpacked(m, NULL);
		return failf(p, EXIT_USAGE, "out of memory");
	}
	protobuf_c_message_pack(m, out);
	protobuf_c_message_free_unpacked(m, NULL);
	free(*body);
	*body = out;
	*body_len = n;
	return 0;
}

static int need_conn(struct peer *p, const char *cmd)
{
	if (p->c)
		return 0;
	return failf(p, EXIT_USAGE, "%s after close", cmd);
}

/* Writes to the server, or appends to the cork buffer; what names the bytes for errors. */
static int peer_write(struct peer *p, const char *what, const void *buf, size_t len)
{
	if (!len)
		return 0;
	if (!p->corked) {
		/* A server that already rejected us may have closed: that is a finding, not a usage error. */
		if (tls_write_full(p->c, buf, len) < 0)
			return failf(p, EXIT_MISBEHAVED, "sending %s: %s", what, strerror(errno));
		return 0;
	}
	if (len > MAX_CORK - p->cork_len)
		return failf(p, EXIT_USAGE, "cork: more than %d bytes buffered", MAX_CORK);
	if (p->cork_len + len > p->cork_cap) {
		size_t cap = p->cork_cap ? p->cork_cap : 4096;
		while (cap < p->cork_len + len)
			cap *= 2;
		uint8_t *n = realloc(p->cork, cap);
		if (!n)
			return failf(p, EXIT_USAGE, "cork: out of memory for %zu bytes", cap);
		p->cork = n;
		p->cork_cap = cap;
	}
	memcpy(p->cork + p->cork_len, buf, len);
	p->cork_len += len;
	return 0;
}

static int do_uncork(struct peer *p, char **argv, int argc)
{
	size_t n;
	int rc;

	if (argc > 2)
		return failf(p, EXIT_USAGE, "usage: uncork [N|-N]");
	if (!p->corked)
		return failf(p, EXIT_USAGE, "uncork without cork");
	if ((rc = need_conn(p, "uncork")))
		return rc;
	n = p->cork_len;
	if (argc == 2) {
		const char *num = argv[1] + (argv[1][0] == '-');
		char *end;
		errno = 0;
		unsigned long long v = strtoull(num, &end, 0);
		if (errno || *end || end == num || !isdigit((unsigned char)*num) || v > p->cork_len)
			return failf(p, EXIT_USAGE, "uncork %s: 0..%zu bytes are buffered", argv[1],
				     p->cork_len);
		n = argv[1][0] == '-' ? p->cork_len - (size_t)v : (size_t)v;
	}
	p->corked = false;
	p->cork_len = 0;
	return peer_write(p, "the corked bytes", p->cork, n);
}

/* TYPE BODYFILE of send and flood: the type, and the body (caller frees *body). */
static int frame_args(struct peer *p, const char *cmd, char **argv, int *type, uint8_t **body,
		      size_t *body_len)
{
	int rc;

	*body = NULL;
	if ((*type = parse_type(argv[1])) < 0)
		return failf(p, EXIT_USAGE, "unknown type \"%s\"", argv[1]);
	if ((rc = need_conn(p, cmd)))
		return rc;
	if (slurp(argv[2], FREP_MAX_BODY, body, body_len) < 0)
		return failf(p, EXIT_USAGE, "body %s: %s", argv[2], strerror(errno));
	return 0;
}

static int do_send(struct peer *p, char **argv, int argc)
{
	uint8_t *body = NULL, *trailer = NULL;
	size_t body_len = 0, trailer_len = 0;
	bool crc = argc > 3 && !strcmp(argv[argc - 1], "crc");
	int rc;

	if (crc)
		argc--;
	if (argc < 3 || argc > 4)
		return failf(p, EXIT_USAGE, "usage: send TYPE BODYFILE [TRAILER] [crc]");
	int type;
	if ((rc = frame_args(p, "send", argv, &type, &body, &body_len)))
		goto out;
	if (argc == 4 && (rc = make_trailer(p, argv[3], &trailer, &trailer_len)))
		goto out;
	if (crc && (rc = fix_crc(p, (unsigned)type, &body, &body_len, trailer, trailer_len)))
		goto out;

	struct frep_frame_hdr h = {
		.version = FREP_PROTO_VERSION,
		.type = (uint8_t)type,
		.body_len = (uint32_t)body_len,
		.trailer_len = (uint32_t)trailer_len,
	};
	uint8_t hdr[FREP_FRAME_HDR_SIZE];
	frame_hdr_encode(&h, hdr);
	const char *what = frep_msg_name((unsigned)type);
	if ((rc = peer_write(p, what, hdr, sizeof(hdr))) || (rc = peer_write(p, what, body, body_len)))
		goto out;
	rc = peer_write(p, what, trailer, trailer_len);
out:
	free(body);
	free(trailer);
	return rc;
}

static int hexval(int c)
{
	return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
}

/* HEX (whitespace ignored) into buf[MAX_RAW]; *n gets the byte count. */
static int parse_hex(struct peer *p, const char *cmd, const char *hex, uint8_t *buf, size_t *n)
{
	int hi = -1;

	*n = 0;
	for (const char *s = hex; *s; s++) {
		if (isspace((unsigned char)*s))
			continue;
		if (!isxdigit((unsigned char)*s))
			return failf(p, EXIT_USAGE, "%s: '%c' is not a hex digit", cmd, *s);
		if (*n == MAX_RAW)
			return failf(p, EXIT_USAGE, "%s: more than %d bytes", cmd, MAX_RAW);
		int v = hexval((unsigned char)*s);
		if (hi < 0) {
			hi = v;
			continue;
		}
		buf[(*n)++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	if (hi >= 0 || *n == 0)
		return failf(p, EXIT_USAGE, "%s: need a non-empty, even number of hex digits", cmd);
	return 0;
}

static int do_raw(struct peer *p, const char *hex)
{
	uint8_t buf[MAX_RAW];
	size_t n;
	int rc;

	if ((rc = need_conn(p, "raw")) || (rc = parse_hex(p, "raw", hex, buf, &n)))
		return rc;
	return peer_write(p, "raw bytes", buf, n);
}

static int do_trickle(struct peer *p, const char *args)
{
	uint8_t buf[MAX_RAW];
	size_t n, i;
	char *end;
	int rc;

	errno = 0;
	unsigned long ms = strtoul(args, &end, 10);
	if (errno || end == args || !isspace((unsigned char)*end) || ms > (unsigned long)p->timeout_ms)
		return failf(p, EXIT_USAGE, "usage: trickle MS HEX (MS at most the timeout, %d)",
			     p->timeout_ms);
	if ((rc = need_conn(p, "trickle")) || (rc = parse_hex(p, "trickle", end, buf, &n)))
		return rc;
	for (i = 0; i < n; i++) {
		/* The pause doubles as the watch for the server's answer or close. */
		if (i && tls_readable(p->c, (int)ms))
			break;
		if ((rc = peer_write(p, "a trickled byte", buf + i, 1)))
			return rc;
	}
	printf("trickle %zu of %zu bytes\n", i, n);
	return 0;
}

static int do_flood(struct peer *p, char **argv, int argc)
{
	uint8_t *body = NULL, *batch = NULL;
	size_t body_len, frame_len;
	unsigned long frames = 0;
	int rc;

	if (argc != 3)
		return failf(p, EXIT_USAGE, "usage: flood TYPE BODYFILE");
	int type;
	if ((rc = frame_args(p, "flood", argv, &type, &body, &body_len)))
		goto out;
	struct frep_frame_hdr h = {
		.version = FREP_PROTO_VERSION, .type = (uint8_t)type, .body_len = (uint32_t)body_len,
	};
	frame_len = FREP_FRAME_HDR_SIZE + body_len;
	if (!(batch = malloc(frame_len * FLOOD_BATCH))) {
		rc = failf(p, EXIT_USAGE, "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < FLOOD_BATCH; i++) {
		frame_hdr_encode(&h, batch + i * frame_len);
		memcpy(batch + i * frame_len + FREP_FRAME_HDR_SIZE, body, body_len);
	}
	tls_set_write_timeout(p->c, p->timeout_ms);
	uint64_t end = now_ms() + (uint64_t)p->timeout_ms;
	for (;;) {
		if (tls_write_full(p->c, batch, frame_len * FLOOD_BATCH) < 0)
			break;
		frames += FLOOD_BATCH;
		if (now_ms() >= end) {
			rc = failf(p, EXIT_MISBEHAVED, "flood: the server still reads after %lu frames "
				   "and %d ms", frames, p->timeout_ms);
			goto out;
		}
	}
	if (errno == ETIMEDOUT) {
		rc = failf(p, EXIT_MISBEHAVED, "flood: the server neither read nor closed for %d ms "
			   "(after %lu frames)", p->timeout_ms, frames);
		goto out;
	}
	if (errno != ECONNRESET && errno != EPIPE) {
		rc = failf(p, EXIT_MISBEHAVED, "flood: %s", strerror(errno));
		goto out;
	}
	printf("flood %lu frames\n", frames);
	tls_abort(p->c);
	p->c = NULL;
	rc = 0;
out:
	free(body);
	free(batch);
	return rc;
}

static int write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = len ? fwrite(buf, 1, len, f) : 0;
	int rc = fclose(f);
	return w == len && rc == 0 ? 0 : -1;
}

/*
 * Reads one frame through the project's codec. FRAME_ERR leaves p->why set and
 * *link_gone true when the link ended on a frame boundary without close_notify
 * (a bare FIN or a reset), which expect-close accepts as a close.
 */
static enum frame_status recv_one(struct peer *p, struct frame *f, bool *link_gone)
{
	uint32_t wire_err;
	char why[256];

	*link_gone = false;
	tls_set_read_timeout(p->c, p->timeout_ms);
	if (!tls_readable(p->c, p->timeout_ms)) {
		failf(p, EXIT_MISBEHAVED, "nothing received within %d ms", p->timeout_ms);
		return FRAME_ERR;
	}
	errno = 0;
	enum frame_status st = frame_recv(p->c, &p->rd, f, &wire_err, why, sizeof(why));
	int e = errno;
	if (st == FRAME_OK)
		printf("recv %s body=%u trailer=%u\n", frep_msg_name(f->hdr.type), f->hdr.body_len,
		       f->hdr.trailer_len);
	if (st != FRAME_ERR)
		return st;
	*link_gone = wire_err == 0 && (e == ECONNRESET || e == EPIPE) &&
		     !strncmp(why, "reading frame header", 20);
	failf(p, EXIT_MISBEHAVED, "%s%s", wire_err ? "server sent a bad frame: " : "", why);
	return FRAME_ERR;
}

static int do_expect(struct peer *p, char **argv, int argc)
{
	struct frame f;
	int rc;

	if (argc < 2 || argc > 3)
		return failf(p, EXIT_USAGE, "usage: expect TYPE [OUTFILE]");
	int type = parse_type(argv[1]);
	if (type < 0)
		return failf(p, EXIT_USAGE, "unknown type \"%s\"", argv[1]);
	if ((rc = need_conn(p, "expect")))
		return rc;
	bool gone;
	enum frame_status st = recv_one(p, &f, &gone);
	if (st == FRAME_EOF || gone)
		return failf(p, EXIT_MISBEHAVED, "server closed while %s was expected",
			     frep_msg_name((unsigned)type));
	if (st == FRAME_ERR)
		return EXIT_MISBEHAVED;
	/* The body bytes as received, before anything of ours re-encodes them. */
	if (argc == 3 && write_file(argv[2], p->rd.body, f.hdr.body_len) < 0)
		return failf(p, EXIT_USAGE, "writing %s: %s", argv[2], strerror(errno));
	if (f.hdr.type == type)
		return 0;
	if (f.hdr.type == FREP_MSG_ERROR) {
		const Frep__V1__Error *e = (const Frep__V1__Error *)f.msg;
		return failf(p, EXIT_MISBEHAVED, "expected %s, got ERROR %s: %.300s",
			     frep_msg_name((unsigned)type), frep_error_name(e->code), e->message);
	}
	return failf(p, EXIT_MISBEHAVED, "expected %s, got %s", frep_msg_name((unsigned)type),
		     frep_msg_name(f.hdr.type));
}

static int do_expect_close(struct peer *p)
{
	struct frame f;
	int rc;

	if ((rc = need_conn(p, "expect-close")))
		return rc;
	bool gone;
	enum frame_status st = recv_one(p, &f, &gone);
	if (st == FRAME_OK)
		return failf(p, EXIT_MISBEHAVED, "expected the server to close, got %s",
			     frep_msg_name(f.hdr.type));
	if (st == FRAME_EOF || gone) {
		p->why[0] = '\0';
		return 0;
	}
	/* Silence, or a close inside a frame, is not what was asked for. */
	return EXIT_MISBEHAVED;
}

/* Splits on blanks in place; returns the word count (at most max). */
static int split(char *s, char **argv, int max)
{
	int n = 0;
	for (char *tok = strtok(s, " \t\r\n"); tok && n < max; tok = strtok(NULL, " \t\r\n"))
		argv[n++] = tok;
	return n;
}

static int run_line(struct peer *p, char *line)
{
	char *argv[8] = { 0 };
	char *s = line;

	while (isspace((unsigned char)*s))
		s++;
	if (*s == '\0' || *s == '#')
		return 0;
	if (!strncmp(s, "raw", 3) && isspace((unsigned char)s[3]))
		return do_raw(p, s + 4);
	if (!strncmp(s, "trickle", 7) && isspace((unsigned char)s[7]) && !p->corked)
		return do_trickle(p, s + 8);
	int argc = split(s, argv, 8);
	if (!strcmp(argv[0], "send"))
		return do_send(p, argv, argc);
	if (!strcmp(argv[0], "expect"))
		return do_expect(p, argv, argc);
	if (!strcmp(argv[0], "expect-close") && argc == 1)
		return do_expect_close(p);
	if (!strcmp(argv[0], "cork") && argc == 1) {
		if (p->corked)
			return failf(p, EXIT_USAGE, "cork while corked");
		p->corked = true;
		return 0;
	}
	if (!strcmp(argv[0], "uncork"))
		return do_uncork(p, argv, argc);
	if (p->corked && strcmp(argv[0], "send"))
		return failf(p, EXIT_USAGE, "%s while corked: uncork first", argv[0]);
	if (!strcmp(argv[0], "flood"))
		return do_flood(p, argv, argc);
	if (!strcmp(argv[0], "close") && argc == 1) {
		tls_close(p->c);
		p->c = NULL;
		return 0;
	}
	return failf(p, EXIT_USAGE, "unknown command \"%s\"", argv[0]);
}

static void usage(void)
{
	fprintf(stderr, "usage: frep-conform peer --connect HOST:PORT --server-name NAME --cert F --key F "
			"--ca F [--timeout S] [SCRIPT]\n");
}

int peer_script_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "server-name", required_argument, NULL, 'n' },
		{ "cert", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'K' },
		{ "ca", required_argument, NULL, 'A' },
		{ "timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *connect = NULL, *server_name = NULL, *cert = NULL, *key = NULL, *ca = NULL;
	struct peer p = { .timeout_ms = DEFAULT_TIMEOUT_S * 1000 };
	struct tls_config *cfg = NULL;
	FILE *script = NULL;
	char err[256], host[256], line[MAX_LINE];
	int opt, rc = EXIT_USAGE;

	log_init("frep-conform peer", LOG_WARN);
	frame_reader_init(&p.rd);
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': connect = optarg; break;
		case 'n': server_name = optarg; break;
		case 'C': cert = optarg; break;
		case 'K': key = optarg; break;
		case 'A': ca = optarg; break;
		case 't': {
			char *end;
			long s = strtol(optarg, &end, 10);
			if (*end || s < 1 || s > MAX_TIMEOUT_S) {
				fprintf(stderr, "frep-conform peer: --timeout: 1..%d seconds\n", MAX_TIMEOUT_S);
				return EXIT_USAGE;
			}
			p.timeout_ms = (int)s * 1000;
			break;
		}
		default: usage(); return EXIT_USAGE;
		}
	}
	const char *colon = connect ? strrchr(connect, ':') : NULL;
	if (!colon || !server_name || !cert || !key || !ca || optind + 1 < argc ||
	    (size_t)(colon - connect) >= sizeof(host)) {
		usage();
		return EXIT_USAGE;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - connect), connect);
	if (optind < argc && strcmp(argv[optind], "-")) {
		if (!(script = fopen(argv[optind], "r"))) {
			fprintf(stderr, "frep-conform peer: %s: %s\n", argv[optind], strerror(errno));
			return EXIT_USAGE;
		}
	} else {
		script = stdin;
	}

	if (!(cfg = tls_config_new(TLS_ROLE_CLIENT, cert, key, ca, NULL, err, sizeof(err)))) {
		fprintf(stderr, "frep-conform peer: %s\n", err);
		goto out;
	}
	if (!(p.c = tls_client_connect(cfg, host, colon + 1, server_name, p.timeout_ms, err,
				       sizeof(err)))) {
		fprintf(stderr, "frep-conform peer: connecting to %s: %s\n", connect, err);
		rc = EXIT_MISBEHAVED;
		goto out;
	}
	rc = EXIT_OK;
	while (rc == EXIT_OK && fgets(line, sizeof(line), script)) {
		p.line++;
		if (!strchr(line, '\n') && !feof(script)) {
			rc = failf(&p, EXIT_USAGE, "line longer than %d bytes", MAX_LINE - 1);
			break;
		}
		rc = run_line(&p, line);
		fflush(stdout);
	}
	if (rc == EXIT_OK && p.corked)
		rc = failf(&p, EXIT_USAGE, "the script ended with bytes still corked");
	if (rc != EXIT_OK)
		fprintf(stderr, "frep-conform peer: %s\n", p.why[0] ? p.why : "failed");
out:
	tls_close(p.c);
	free(p.cork);
	frame_reader_free(&p.rd);
	tls_config_free(cfg);
	if (script && script != stdin)
		fclose(script);
	return rc;
}
