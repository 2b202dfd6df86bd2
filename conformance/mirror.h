/* frep-conform plays a master against a mirror: the steps its cases are made of. */
#ifndef FREP_CONFORM_MIRROR_H
#define FREP_CONFORM_MIRROR_H

#include "conform.h"

/* The Welcome fields a case checks, copied out of the frame. */
struct welcome {
	uint32_t proto_version;
	bool known, consistent;
	uint64_t durable_txid, consistent_txid, copy_cursor, copy_base;
	uint32_t phase;
	bool verify; /* Welcome.verify (VFY-1) */
	uint64_t epoch; /* Welcome.epoch (EPO-1; 1 when absent) */
	bool has_compression, has_lanes; /* version-2 fields present */
	uint32_t compression, lanes;
};

/* A Hello with this case's defaults (one lane, version 1, its volume and UUID). */
struct hello_args {
	const char *volume; /* NULL: the case's */
	uint32_t proto_min, proto_max;
	uint32_t lane, lane_count;
	const uint8_t *uuid;
	size_t uuid_len, session_id_len;
	const char *master_node;
	uint64_t generation;
	bool has_epoch; /* false: no epoch fields (epoch 1) */
	uint64_t epoch;
	const uint64_t *epoch_start;
	size_t n_epoch_start;
	const uint32_t *compression; /* Hello.compression (version 2), n_compression of them */
	size_t n_compression;
	uint32_t lanes_max;	     /* 0: absent */
	const uint8_t *sid;	     /* session_id: NULL, a fresh random one of session_id_len */
};
void hello_defaults(struct cctx *x, struct hello_args *a);
int m_send_hello(struct cctx *x, const struct hello_args *a);

/*
 * Connects and says HELLO; w gets the WELCOME (NULL: not kept). A volume
 * still held by this case's previous session (closing, checkpointing) is
 * BUSY for a moment (HS-6, minor): it retries, as a master would.
 */
int m_open(struct cctx *x, struct welcome *w);
/* EXTENT_TABLE of n sizes (NULL: one extent of x->volume_size), then PARTS_READY. */
int m_parts(struct cctx *x, const uint64_t *sizes, size_t n, bool *created);
/* m_open then m_parts: the mirror is READY. */
int m_ready(struct cctx *x, struct welcome *w);
int m_start_copy(struct cctx *x, uint32_t kind, uint64_t base, bool full, uint64_t start_offset);
int m_copy_done(struct cctx *x, uint64_t last_txid, uint64_t copied);
int m_copy_data(struct cctx *x, uint64_t offset, uint32_t len, uint64_t seed);
int m_copy_hole(struct cctx *x, uint64_t offset, uint64_t len);
/* A new volume copied empty from base 0: the mirror is INSYNC at TXID 0. */
int m_insync(struct cctx *x);
/* The same, keeping the WELCOME in w. */
int m_insync_w(struct cctx *x, struct welcome *w);
/* Sends TX txid: a TX_WRITE of len bytes (data from seed) or a trim/zero. */
int m_tx(struct cctx *x, uint64_t txid, unsigned op, uint64_t offset, uint32_t len);
int m_tx_gen(struct cctx *x, uint64_t txid, uint64_t generation, unsigned op, uint64_t offset,
	     uint32_t len);
/* Reads until a TX_ACK covers txid (other acks and COPY_ACKs noted). */
int m_wait_ack(struct cctx *x, uint64_t txid);
/* Sends VERIFY (hash: hash_len bytes as they are, VFY-4 cases send bad ones). */
int m_verify(struct cctx *x, uint64_t id, uint64_t offset, uint64_t length, uint64_t txid,
	     const uint8_t *hash, size_t hash_len);
/* Reads until the n-th VERIFY_RESULT since m_reset_seen (x->seen.vr). */
int m_wait_verify(struct cctx *x, unsigned n);
/* Reads until CONSISTENT; *txid gets its value. */
int m_wait_consistent(struct cctx *x, uint64_t *txid);
/* Reads until COPY_ACK through >= at least. */
int m_wait_copy_ack(struct cctx *x, uint64_t at_least);
/*
 * A round trip: HEARTBEAT with a fresh seq, read until its echo. Proves the
 * mirror took everything before it without an error; what came meanwhile is
 * noted in x's seen record. Not in INIT, where HEARTBEAT is illegal (HB-4).
 */
int m_sync(struct cctx *x);
/* Reads until the echo of the last HEARTBEAT sent (x->hb_seq). */
int m_wait_echo(struct cctx *x);
/* Sends GOODBYE and waits for the close (BYE-1). */
int m_goodbye(struct cctx *x);
/* Reconnects as the same master (a new session) and reads WELCOME. */
int m_reopen(struct cctx *x, struct welcome *w);
void m_reset_seen(struct cctx *x);
/* Power loss of the mirror (--crash-cmd) then its restart (--restart-cmd). */
int m_power_cycle(struct cctx *x);

/* The mirror states a case can hold, for the matrix (conformance/mirror-matrix.c). */
enum mstate { MS_INIT, MS_MAKEPARTS, MS_READY, MS_REPLICATE, MS_OUTOFSYNC, MS_INSYNC, MS_IDLE, MS__N };
const char *mstate_name(int s);
/* Takes a fresh volume to state s (REPLICATE/OUTOFSYNC: a pass started, not done). */
int m_reach(struct cctx *x, int s);

/* TLS probes (conformance/tls-probe.c): each is a case of its own. */
int tls_no_cert(struct cctx *x);
int tls_no_alpn(struct cctx *x);
int tls_alpn_h2(struct cctx *x);
int tls_old_version(struct cctx *x);
int tls_plaintext(struct cctx *x);

#endif
