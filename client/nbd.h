/* NBD server: serves the master volume to local users (fixed newstyle handshake). */
#ifndef FREP_NBD_H
#define FREP_NBD_H

#include <stdbool.h>
#include <stdint.h>

/*
 * What the NBD server calls to do I/O. frep-client wires these to the
 * transaction path (journal commit, apply, replicate); the NBD unit test wires
 * them to a plain file. Each returns 0 or an errno value (EIO, ENOSPC, EINVAL...)
 * that is sent back to the NBD client. Called from the connection's thread;
 * the backend does its own locking.
 */
struct nbd_backend {
	void *ctx;
	int (*pread)(void *ctx, void *buf, uint32_t len, uint64_t off);
	/* fua: the write must be durable before the reply. */
	int (*pwrite)(void *ctx, const void *buf, uint32_t len, uint64_t off, bool fua);
	int (*flush)(void *ctx);
	int (*trim)(void *ctx, uint32_t len, uint64_t off, bool fua);
	/* may_trim: NBD_CMD_FLAG_NO_HOLE not set, so the range may be deallocated. */
	int (*zero)(void *ctx, uint32_t len, uint64_t off, bool may_trim, bool fua);
};

struct nbd_export {
	const char *name;     /* export name = volume name; borrowed */
	uint64_t size;
	uint32_t max_payload; /* advertised maximum block size and largest request accepted */
	bool read_only;
	struct nbd_backend backend;
};

struct nbd_server;

/*
 * Listens on "unix:PATH" or "HOST:PORT" and serves exp, one thread per client
 * connection. A non-loopback HOST:PORT logs a warning (NBD has no
 * authentication). Returns NULL with err filled. exp is borrowed and must
 * outlive the server.
 */
struct nbd_server *nbd_server_start(const char *listen, const struct nbd_export *exp, char *err,
				    size_t err_len);
/* Stops accepting, disconnects clients, joins their threads, frees. */
void nbd_server_stop(struct nbd_server *s);

#endif
