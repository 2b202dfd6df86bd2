/* tls.h over memory: fuzz harnesses drive frame and session code in process, without sockets or TLS. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "mem-tls.h"
#include "tls.h"

/*
 * Linked before libfrepcommon.a, this file defines every function of tls.h,
 * so the linker never takes common/tls.o from the archive. A function added
 * to tls.h and called by the code under test must be added here too: the
 * link then fails with a duplicate symbol, never silently.
 */

struct tls_conn {
	const uint8_t *in;
	size_t len, pos;
	const struct mem_tls_peer *peer; /* NULL: in is all there is */
	bool paused;		/* tls_readable said false at the end of this burst */
	bool closed;		/* next said the peer closed */
	bool keep_output;
	uint8_t *out;
	size_t out_len, out_cap;
	const char *cn;
};

struct tls_conn *mem_tls_open(const uint8_t *in, size_t len, const char *peer_cn,
			      int keep_output)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	if (!c)
		abort(); /* the harness's own allocation: not peer input */
	c->in = in;
	c->len = len;
	c->cn = peer_cn;
	c->keep_output = keep_output;
	return c;
}

/*
 * The output buffer of burst connections, kept from one to the next: a
 * copy writes about the whole volume, and growing a new buffer for every
 * connection (fresh pages, each poisoned by ASan) cost more than the run.
 * One burst connection at a time.
 */
static struct {
	uint8_t *buf;
	size_t cap;
	bool taken;
} kept;

struct tls_conn *mem_tls_open_bursts(const struct mem_tls_peer *peer, const char *peer_cn)
{
	struct tls_conn *c = mem_tls_open(NULL, 0, peer_cn, peer->written != NULL);
	if (kept.taken)
		abort(); /* the harness's own misuse: not peer input */
	kept.taken = true;
	c->peer = peer;
	c->out = kept.buf;
	c->out_cap = kept.cap;
	return c;
}

/* The next non-empty burst, or false at the end of the input. */
static bool next_burst(struct tls_conn *c)
{
	while (c->peer && !c->closed) {
		if (!c->peer->next(c->peer->arg, &c->in, &c->len)) {
			c->closed = true;
			c->in = NULL;
			c->len = 0;
		}
		c->pos = 0;
		c->paused = false;
		if (c->len)
			return true;
	}
	return false;
}

const uint8_t *mem_tls_output(const struct tls_conn *c, size_t *len)
{
	*len = c->out_len;
	return c->out;
}

struct tls_config *tls_config_new(enum tls_role role, const char *cert_path, const char *key_path,
				  const char *ca_path, const char *keylog_path, char *err,
				  size_t err_len)
{
	snprintf(err, err_len, "no TLS in fuzz harnesses");
	return NULL;
}

void tls_config_free(struct tls_config *cfg)
{
}

struct tls_conn *tls_server_handshake(struct tls_config *cfg, int fd, const char *peer,
				      int timeout_ms, char *err, size_t err_len)
{
	snprintf(err, err_len, "no TLS in fuzz harnesses");
	return NULL;
}

static struct tls_conn *(*connect_fn)(void *arg);
static void *connect_arg;

void mem_tls_on_connect(struct tls_conn *(*connect)(void *arg), void *arg)
{
	connect_fn = connect;
	connect_arg = arg;
}

struct tls_conn *tls_client_connect(struct tls_config *cfg, const char *host, const char *port,
				    const char *server_name, int timeout_ms, char *err,
				    size_t err_len)
{
	struct tls_conn *c = connect_fn ? connect_fn(connect_arg) : NULL;
	if (!c)
		snprintf(err, err_len, "%s", connect_fn ? "connection refused (fuzz input used up)" :
							  "no TLS in fuzz harnesses");
	return c;
}

/*
 * As tls_read_full: the end of the input is close_notify on a boundary, a
 * reset inside a read. A read waits for as many bursts as it needs.
 */
int tls_read_full(struct tls_conn *c, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		if (c->pos == c->len && !next_burst(c)) {
			if (got == 0)
				return 0;
			errno = ECONNRESET;
			return -1;
		}
		size_t n = len - got < c->len - c->pos ? len - got : c->len - c->pos;
		memcpy((uint8_t *)buf + got, c->in + c->pos, n);
		c->pos += n;
		got += n;
	}
	return 1;
}

int tls_write_full(struct tls_conn *c, const void *buf, size_t len)
{
	if (!c->keep_output)
		return 0;
	if (len > c->out_cap - c->out_len) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		while (cap - c->out_len < len)
			cap *= 2;
		uint8_t *p = realloc(c->out, cap);
		if (!p) {
			errno = ENOMEM;
			return -1;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, buf, len);
	c->out_len += len;
	return 0;
}

void tls_set_read_timeout(struct tls_conn *c, int timeout_ms)
{
}

void tls_set_write_timeout(struct tls_conn *c, int timeout_ms)
{
}

/* The input is all there is: nothing trickles, so no deadline can pass. */
void tls_set_deadline(struct tls_conn *c, uint64_t deadline_ms)
{
}

/*
 * A closed peer is readable too: the read then reports the end. Between
 * bursts, just polling (timeout 0) finds nothing once; waiting finds the next.
 */
bool tls_readable(struct tls_conn *c, int timeout_ms)
{
	if (c->pos < c->len || !c->peer || c->closed)
		return true;
	if (timeout_ms == 0 && !c->paused) {
		c->paused = true;
		return false;
	}
	next_burst(c);
	return true;
}

/* A burst connection's: an eventfd never read, so poll finds the next burst at once. */
int tls_fd(const struct tls_conn *c)
{
	static int always_readable = -1;

	if (!c->peer)
		return -1;
	if (always_readable < 0) {
		always_readable = eventfd(1, EFD_CLOEXEC);
		if (always_readable < 0)
			abort(); /* the harness's own: not peer input */
	}
	return always_readable;
}

const char *tls_peer_cn(const struct tls_conn *c)
{
	return c->cn;
}

const char *tls_peer_addr(const struct tls_conn *c)
{
	return "fuzz:0";
}

const char *tls_cipher(const struct tls_conn *c)
{
	return "none";
}

void tls_close(struct tls_conn *c)
{
	if (!c)
		return;
	if (c->peer && c->peer->written)
		c->peer->written(c->peer->arg, c->out, c->out_len);
	if (c->peer) {
		kept.buf = c->out;
		kept.cap = c->out_cap;
		kept.taken = false;
	} else {
		free(c->out);
	}
	free(c);
}

void tls_abort(struct tls_conn *c)
{
	tls_close(c);
}
