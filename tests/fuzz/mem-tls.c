/* tls.h over memory: fuzz harnesses drive frame and session code in process, without sockets or TLS. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

struct tls_conn *tls_client_connect(struct tls_config *cfg, const char *host, const char *port,
				    const char *server_name, int timeout_ms, char *err,
				    size_t err_len)
{
	snprintf(err, err_len, "no TLS in fuzz harnesses");
	return NULL;
}

/* As tls_read_full: the end of the input is close_notify on a boundary, a reset inside a read. */
int tls_read_full(struct tls_conn *c, void *buf, size_t len)
{
	if (c->pos == c->len && len)
		return 0;
	if (len > c->len - c->pos) {
		c->pos = c->len;
		errno = ECONNRESET;
		return -1;
	}
	memcpy(buf, c->in + c->pos, len);
	c->pos += len;
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

/* A closed peer is readable too: the read then reports the end. */
bool tls_readable(struct tls_conn *c, int timeout_ms)
{
	return true;
}

int tls_fd(const struct tls_conn *c)
{
	return -1;
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
	free(c->out);
	free(c);
}

void tls_abort(struct tls_conn *c)
{
	tls_close(c);
}
