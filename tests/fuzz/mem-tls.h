/* tls.h over memory: fuzz harnesses drive frame and session code in process, without sockets or TLS. */
#ifndef FREP_FUZZ_MEM_TLS_H
#define FREP_FUZZ_MEM_TLS_H

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

#endif
