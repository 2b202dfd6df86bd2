/* Mutually authenticated TLS 1.2 (mbedTLS) with ALPN "frep/1" for replication links. */
#ifndef FREP_TLS_H
#define FREP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tls_role { TLS_ROLE_SERVER, TLS_ROLE_CLIENT };

struct tls_config; /* shared by every connection of a process; thread-safe after creation */
struct tls_conn;   /* one connection; used by one thread at a time */

/*
 * Loads certificate, key and CA, and sets TLS 1.2 only, mutual authentication
 * required, ALPN "frep/1", ECDHE-ECDSA-CHACHA20-POLY1305 preferred, AES-GCM
 * allowed. keylog_path may be NULL; if set, NSS key-log lines are appended to
 * it (a warning is logged). Returns NULL with err filled on failure.
 * Caller frees with tls_config_free.
 */
struct tls_config *tls_config_new(enum tls_role role, const char *cert_path, const char *key_path,
				  const char *ca_path, const char *keylog_path, char *err,
				  size_t err_len);
void tls_config_free(struct tls_config *cfg);

/*
 * Server side: runs the handshake on an accepted TCP socket (takes ownership of
 * fd, sets TCP_NODELAY), then requires a verified client certificate and ALPN
 * "frep/1". On rejection, fd is closed, NULL is returned and err says why
 * (no client certificate, unknown CA, no ALPN, ALPN "h2", plaintext...).
 * peer is borrowed: "ADDR:PORT" for logs. timeout_ms bounds the handshake.
 */
struct tls_conn *tls_server_handshake(struct tls_config *cfg, int fd, const char *peer,
				      int timeout_ms, char *err, size_t err_len);

/*
 * Client side: connects to host:port, sets TCP_NODELAY, handshakes and verifies
 * the server certificate against the CA and server_name, and ALPN "frep/1".
 * Returns NULL with err filled on failure.
 */
struct tls_conn *tls_client_connect(struct tls_config *cfg, const char *host, const char *port,
				    const char *server_name, int timeout_ms, char *err,
				    size_t err_len);

/*
 * Reads exactly len bytes. Returns 1 on success, 0 if the peer closed cleanly
 * before the first byte, -1 on error or EOF after a partial read (errno set;
 * ETIMEDOUT if the read timeout expired).
 */
int tls_read_full(struct tls_conn *c, void *buf, size_t len);
/* Writes exactly len bytes; 0 or -1 (errno ETIMEDOUT if the write timeout expired). */
int tls_write_full(struct tls_conn *c, const void *buf, size_t len);

/* Read timeout for tls_read_full, in ms, per wait for data; 0 = wait forever (the default). */
void tls_set_read_timeout(struct tls_conn *c, int timeout_ms);
/*
 * Write timeout for tls_write_full, in ms, per wait for the peer to take
 * data; 0 = wait forever (the default). Without one, a peer that stops
 * reading blocks the writer for good once the socket buffers are full.
 */
void tls_set_write_timeout(struct tls_conn *c, int timeout_ms);
/*
 * Absolute limit (now_ms() clock) for every read and write wait until
 * cleared with 0, on top of the timeouts above. Bounds a whole exchange,
 * such as a frame, however slowly the peer trickles it.
 */
void tls_set_deadline(struct tls_conn *c, uint64_t deadline_ms);

/*
 * True if a read would not block: decrypted bytes are buffered, or the socket
 * is readable within timeout_ms (0 = just poll).
 */
bool tls_readable(struct tls_conn *c, int timeout_ms);

int tls_fd(const struct tls_conn *c);
/* Subject CN of the verified peer certificate; borrowed, valid until tls_close. */
const char *tls_peer_cn(const struct tls_conn *c);
/* "ADDR:PORT" of the peer; borrowed, valid until tls_close. */
const char *tls_peer_addr(const struct tls_conn *c);
/* Negotiated cipher suite name, for logs. */
const char *tls_cipher(const struct tls_conn *c);

/* Sends close_notify (best effort), closes the socket, frees. NULL is a no-op. */
void tls_close(struct tls_conn *c);
/*
 * Resets the connection (TCP RST) and frees: whatever is still queued for the
 * peer is dropped, not delivered, so a peer behind a slow link learns at once
 * that the session is over. NULL is a no-op.
 */
void tls_abort(struct tls_conn *c);

#endif
