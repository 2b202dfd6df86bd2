/* frep-conform: the conformance suite's connection, case registry and assertions. */
#ifndef FREP_CONFORM_H
#define FREP_CONFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "frep/v1/frep.pb-c.h"
#include "wire.h"

/*
 * One connection of the tool, in either role. Everything it sends or reads
 * goes through the project's frame codec (common/frame.c), except what a case
 * writes as raw bytes to break the framing on purpose.
 */
struct cpeer {
	struct tls_conn *c; /* NULL once closed */
	struct frame_writer out;
	struct frame_reader rd;
	int timeout_ms;	      /* bounds every wait for the peer */
	bool skip_heartbeats; /* expect*() pass over the peer's own HEARTBEATs */
};

/* What the peer said since the last m_reset_seen(), gathered by m_absorb(). */
struct seen {
	uint64_t tx_ack;	 /* highest TX_ACK (0: none) */
	unsigned n_tx_acks;
	bool tx_ack_decreased;
	uint64_t copy_ack;	 /* highest COPY_ACK.through */
	unsigned n_copy_acks;
	bool consistent;
	uint64_t consistent_txid;
	unsigned n_resends;
	uint64_t echo_txid; /* Heartbeat.txid of the last echo */
	uint64_t resend_from, resend_to;
	unsigned n_verify_results; /* VERIFY_RESULTs, the first SEEN_VERIFY_MAX kept in order */
	struct seen_verify {
		uint64_t verify_id, offset, txid;
		uint32_t status;
		size_t hash_len; /* 0: no hash */
		uint8_t hash[FREP_VERIFY_HASH_SIZE];
	} vr[8];
};
enum { SEEN_VERIFY_MAX = 8 };

enum case_result { CASE_PASS, CASE_FAIL, CASE_SKIP };

struct conform;
struct conform_case;
struct mside;

/* What a case gets: its connection, its own volume name, and where to say why. */
struct cctx {
	struct conform *cf;
	const struct conform_case *kase;
	struct cpeer p;
	/*
	 * Lane cases: the other connections of the session (LANE-*), parked here
	 * while p is another one; cx_lane swaps one in.
	 */
	struct cpeer lanes[FREP_MAX_LANES];
	unsigned lane;		 /* the lane p is */
	char volume[48];	 /* unique per case and run */
	uint8_t uuid[16];	 /* the volume's UUID as this case's master */
	uint64_t generation;	 /* Hello.generation this case sends */
	/* Hello.epoch and epoch_history this case sends (epoch 0: none, i.e. epoch 1). */
	uint64_t epoch;
	uint64_t epoch_start[8];
	size_t n_epoch_start;
	uint64_t volume_size;	 /* the volume's size (one extent unless a case says) */
	uint64_t hb_seq;	 /* last HEARTBEAT seq sent by sync() */
	struct seen seen;
	bool use_other;		 /* cx_connect as the second identity */
	/*
	 * Mirror cases: what HELLO offers beyond version 1 (proto_max 0: only
	 * version 1, as most cases speak), and what WELCOME settled.
	 */
	uint32_t proto_max, offer_compression, lanes_max;
	uint8_t sid[16];	 /* the session_id of the last HELLO sent */
	uint32_t version, compression;
	struct mside *ms;	 /* master cases: the mirror side (conformance/master.h) */
	char why[768];		 /* the reason of a FAIL or SKIP */
};

enum case_role { ROLE_MIRROR, ROLE_MASTER };

struct conform_case {
	const char *id;	     /* e.g. "mirror.frame.magic" */
	const char *clauses; /* the spec clauses it checks, blank-separated */
	const char *title;   /* one line: what a conforming peer does */
	enum case_role role;
	bool durability;    /* needs --crash-cmd and --restart-cmd */
	int (*run)(struct cctx *x);
	/* Generated cases (the state x message matrix) carry their parameters here. */
	int state, msg;
};

/* The tables of cases, each ended by an entry with id NULL. */
extern const struct conform_case mirror_cases[];
extern const struct conform_case master_cases[];
/* The generated (state, message) matrix; built once, ended by id NULL. */
const struct conform_case *mirror_matrix_cases(void);
const struct conform_case *master_matrix_cases(void);

/* The options every case may use (conformance/main.c parses them). */
struct conform {
	enum case_role role;
	const char *host, *port; /* mirror: the target; master: where to listen */
	const char *server_name;
	const char *cert, *key, *ca;
	struct tls_config *tls;
	struct tls_config *tls_other; /* a second identity from the CA, or NULL */
	int timeout_ms;
	int peer_timeout_ms;	/* the peer's --heartbeat-timeout (HB-3) */
	int frame_bound_ms;	/* the peer's frame bound (FRAME-11) */
	const char *crash_cmd, *restart_cmd;
	/* master role */
	const char *run_cmd;	/* the master's command line, placeholders expanded */
	const char *nbd_uri;	/* the master's NBD export */
	const char *pause_cmd, *resume_cmd; /* an operator's pause and resume (IDLE), or NULL */
	const char *verify_cmd, *verify_repair_cmd; /* an operator's online verify (VFY), or NULL */
	int listen_fd;
	int master_pid;		/* the running master's process group, 0 if none */
	const char *scratch;	/* a directory for the master's files ({dir}) */
	unsigned run_id;	/* makes volume names unique across runs */
	unsigned case_no;
};

/* --- connection (conformance/peer.c) ------------------------------------ */

/*
 * Makes lane n the connection p (0 is the session's first); the one p was
 * is parked until swapped back. Every cx_* call then works on lane n.
 */
void cx_lane(struct cctx *x, unsigned n);
/* Closes every parked lane (cx_close closes p only). */
void cx_close_lanes(struct cctx *x);

/* Connects to the mirror under test; 0, or -1 with x->why set. */
int cx_connect(struct cctx *x);
/* Accepts the master's next connection; 0, or -1 with x->why set. */
int cx_accept(struct cctx *x);
void cx_close(struct cctx *x);
/* A TCP reset: nothing queued is delivered. */
void cx_abort(struct cctx *x);

int cx_send(struct cctx *x, unsigned type, const ProtobufCMessage *msg, const void *trailer,
	    uint32_t trailer_len);
int cx_send_raw(struct cctx *x, const void *buf, size_t len);
/* A frame header as the codec would write it, but with any field a case wants. */
int cx_send_hdr(struct cctx *x, uint32_t magic, uint8_t version, uint8_t type, uint16_t flags,
		uint32_t body_len, uint32_t trailer_len);

/* A frame whose body is these bytes as they are (they need not decode). */
int cx_send_body(struct cctx *x, unsigned type, const void *body, uint32_t body_len,
		 const void *trailer, uint32_t trailer_len);
/*
 * A frame of this version and flags with m packed as its body and the
 * trailer as it is (a compressed one is not compressed again): for frames
 * the codec would not write, such as a trailer flagged compressed that is not.
 */
int cx_send_flagged(struct cctx *x, uint8_t version, unsigned type, uint16_t flags,
		    const ProtobufCMessage *m, const void *trailer, uint32_t trailer_len);
/*
 * What WELCOME settled (NEG-3): from now on this connection's frames, both
 * ways, carry this version, and trailers may be compressed. 0 or -1.
 */
int cx_settle(struct cctx *x, unsigned version, unsigned compression);
/* Compresses n bytes of src with alg into *out (malloc'd); its size, 0 on failure. */
size_t cx_compress(unsigned alg, const void *src, size_t n, uint8_t **out);
/* Packs m into buf; its size, or 0 if cap is too small. */
size_t cx_pack(const ProtobufCMessage *m, uint8_t *buf, size_t cap);

/*
 * Reads the next frame (the peer's HEARTBEATs skipped when p.skip_heartbeats).
 * FRAME_OK, FRAME_EOF (closed on a boundary, or reset), FRAME_ERR (x->why).
 */
enum frame_status cx_recv(struct cctx *x, struct frame *f, int timeout_ms);
/* The next frame must be of this type; an ERROR or a close is reported as the reason. */
int cx_expect(struct cctx *x, unsigned type, struct frame *f);
/*
 * The next frame must be ERROR with this code and its severity from the spec's
 * table (ERR-1), with a non-empty message; then the peer closes without
 * another frame (ERR-1). msg_re, if set, is an extended regex the message must
 * match.
 */
int cx_expect_error(struct cctx *x, unsigned code, const char *msg_re);
/* cx_expect_error, its failure prefixed with what the case sent: "what: why". */
int cx_expect_error_for(struct cctx *x, unsigned code, const char *what);
/* The peer closes (EOF or reset) within the timeout, sending nothing more. */
int cx_expect_close(struct cctx *x);
/* Nothing arrives for ms (the peer neither answers nor closes). */
int cx_expect_silence(struct cctx *x, int ms);

/* --- the master under test (conformance/master-run.c) --------------------- */

/* Listens on --listen (port 0: a free one, which {port} then names) and makes the scratch dir. */
int master_setup(struct conform *cf);
void master_teardown(struct conform *cf);
/* Starts --run for the current case in its own process group and directory; x->ms is set up. */
int master_start(struct cctx *x);
/* SIGKILL to the master's process group; reaps it. */
void master_stop(struct conform *cf);
/* After a case: stops the master, frees x->ms, removes the case's {dir} if it passed. */
void master_end(struct cctx *x, bool passed);
/* The current case's {dir}. */
const char *master_dir(const struct conform *cf, char *buf, size_t len);
/* Expands the placeholders of a command template; -1 if it does not fit. */
int master_expand(const struct conform *cf, const char *tmpl, const char *dir, char *out,
		  size_t out_len);
/* The current case's --nbd URI, placeholders expanded; -1 if it does not fit. */
int master_nbd_uri(const struct conform *cf, char *out, size_t out_len);

/* --- assertions ------------------------------------------------------------ */

int cx_fail(struct cctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cx_skip(struct cctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define CHECK(x, cond, ...)                          \
	do {                                         \
		if (!(cond))                         \
			return cx_fail((x), __VA_ARGS__); \
	} while (0)
/* Runs a step that returns 0 or -1 with x->why already set. */
#define STEP(e)                   \
	do {                      \
		if ((e) < 0)      \
			return -1; \
	} while (0)

/* --- shared steps (conformance/steps.c) ------------------------------------ */

void cx_fill(uint8_t *buf, size_t len, uint64_t seed);
/* Data that compresses well (a 64-byte pattern from seed, repeated): COMP-* cases. */
void cx_fill_compressible(uint8_t *buf, size_t len, uint64_t seed);
/* The XXH3-128 of buf in its canonical form, as VERIFY carries it (VFY-2). */
void cx_hash(const void *buf, size_t len, uint8_t out[FREP_VERIFY_HASH_SIZE]);
/* Runs a shell command (placeholders already expanded); 0 if it exited 0. */
int cx_run(struct cctx *x, const char *what, const char *cmd);

#endif
