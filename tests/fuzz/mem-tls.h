/* tls.h over memory: fuzz harnesses drive frame and session code in process, without sockets or TLS. */
#ifndef FREP_FUZZ_MEM_TLS_H
#define FREP_FUZZ_MEM_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_conn;

/*
 * A connection whose peer sent exactly in[0..len) and then closed cleanly.
 * in and peer_cn are borrowed until tls_close. What the code under test
 * writes is dropped, or kept when keep_output is set (mem_tls_output).
 */
struct tls_conn *mem_tls_open(const uint8_t *in, size_t len, const char *peer_cn,
			      int keep_output);

/* Everything written so far; borrowed, valid until the next write or tls_close. */
const uint8_t *mem_tls_output(const struct tls_conn *c, size_t *len);

/*
 * The peer of a connection whose bytes arrive in bursts, as on a socket.
 * next gives the next burst: true with *in, *len (borrowed until the next
 * call), or false once the peer closed cleanly. written, if set, gets
 * everything the code under test wrote, at tls_close (borrowed for the call).
 */
struct mem_tls_peer {
	bool (*next)(void *arg, const uint8_t **in, size_t *len);
	void (*written)(void *arg, const uint8_t *out, size_t len);
	void *arg;
};

/*
 * A connection to peer (borrowed until tls_close): its next burst is asked
 * for when the last one is read up. Between two bursts tls_readable(c, 0)
 * says false once, so a receiver that drains what is waiting stops there and
 * goes on with its own work; its next blocking read, or poll of tls_fd
 * (always readable), takes the next burst.
 */
struct tls_conn *mem_tls_open_bursts(const struct mem_tls_peer *peer, const char *peer_cn);

/*
 * What tls_client_connect returns from now on: connect(arg), which may be
 * NULL (the connection is refused). Without it, tls_client_connect fails.
 */
void mem_tls_on_connect(struct tls_conn *(*connect)(void *arg), void *arg);

#endif
