/* Master replication session, internal: the session struct and what its phase files share (a module map, by file). */
#ifndef FREP_CLIENT_SESSION_INTERNAL_H
#define FREP_CLIENT_SESSION_INTERNAL_H

#include "frame.h"
#include "frep/v1/frep.pb-c.h"
#include "session.h"
#include "util.h"

/* Scaled down by FREP_FUZZ_SIZES (tests/fuzz only), as master.h says why. */
#ifdef FREP_FUZZ_SIZES
#define FREP_COPY_CHUNK (64 << 10)
#define FREP_WINDOW_TX 16
#define FREP_WINDOW_BYTES (256 << 10)
#define FREP_MAX_DIRTY_RUNS 2
#else
#define FREP_COPY_CHUNK (4 << 20)
#define FREP_WINDOW_TX 4096
#define FREP_WINDOW_BYTES (64 << 20)
#define FREP_MAX_DIRTY_RUNS (1 << 20)
#endif

enum session_limits {
	HANDSHAKE_TIMEOUT_MS = 15000,
	COPY_CHUNK = FREP_COPY_CHUNK,	  /* bytes of data per COPY_DATA frame */
	/*
	 * ...and on lanes, where the copy's low-water mark (LANE-8) moves a
	 * record at a time: smaller records keep it, and so the resume cursor
	 * and the dirty bitmap's clearing (CRK-5), close behind what was sent.
	 */
	LANE_CHUNK = FREP_COPY_CHUNK < (1 << 20) ? FREP_COPY_CHUNK : (1 << 20),
	WINDOW_TX = FREP_WINDOW_TX,	  /* TXIDs in flight before waiting for acknowledgements */
	WINDOW_BYTES = FREP_WINDOW_BYTES, /* data bytes in flight before waiting */
	FREE_INTERVAL_MS = 1000,   /* acknowledged records are freed at least this often */
	FREE_STEP = 8,		   /* and as soon as they fill 1/FREE_STEP of the buffer */
	RATE_SAMPLE_MS = 1000,	   /* dirtying and draining rates: one sample a second */
	QUICK_RETRY_MS = 100,	   /* retries right after a crack ended a pass, */
	QUICK_RETRY_FOR_MS = 5000, /* for this long */
	OUTRUN_SAMPLES = 3,	   /* samples of a growing buffer before "writes outrun the link" */
	HEARTBEAT_MAX_MS = 2000,   /* heartbeat interval: this, or a third of the timeout */
	PROGRESS_MS = 10000,
	MAX_DIRTY_RUNS = FREP_MAX_DIRTY_RUNS, /* dirty runs remembered per pass for clearing */
};


/* A region range copied by a dirty pass, cleared from the bitmap once consistent. */
struct run {
	uint64_t start, end;
};


struct welcome_info {
	bool known;
	bool consistent;
	uint64_t durable_txid;
	uint64_t consistent_txid;
	uint32_t phase;
	uint64_t copy_cursor; /* an interrupted full pass: durable below this */
	uint64_t copy_base;   /* and its base TXID */
	uint64_t epoch;	      /* Welcome.epoch: the copy's (EPO-1) */
};


/* Used only by the session thread, except `m` which is shared (see master.h). */
struct session {
	struct master *m;
	struct session_options o;
	pthread_t thread;
	struct master_fsm fsm;
	struct tls_conn *c;
	struct frame_writer out; /* on c: the version and compression WELCOME settled */
	struct frame_reader rd;
	unsigned version;	 /* the connection's protocol version (Welcome.proto_version) */
	unsigned lanes;		 /* its lanes (Welcome.lanes; 1 in version 1) */
	struct lanes *lane_set;	 /* lanes 1..lanes-1 while connected (lanes.h), else NULL */
	uint8_t session_id[FREP_SESSION_ID_SIZE];
	struct welcome_info w;
	uint8_t *buf; /* max(COPY_CHUNK, max_payload) bytes */
	size_t buf_len;

	/* Sequencing: next TXID to send; bytes of data in flight (estimate). */
	uint64_t next_send;
	uint64_t max_sent;	/* highest TXID ever sent this connection (RESEND moves next_send back) */
	uint64_t inflight_since_ack;
	uint64_t last_rx_ms;	/* last frame from the mirror: silence means a dead link */

	/* Copy progress (REPLICATE / OUTOFSYNC). */
	bool copying;
	bool need_full;	/* next pass walks every allocated block (else the bitmap) */
	uint64_t copy_base, copy_tc, copy_off, copy_total, copy_bytes, copy_acked;
	bool failback;	/* this connection's pass resyncs a copy of an earlier epoch (FBK-5) */
	/* Bytes of the pass walked, data and holes: what progress counts against
	 * copy_total (copy_off is the cursor, which a dirty pass jumps past gaps). */
	uint64_t copy_walked;
	uint64_t copy_started_ms;
	struct rate_budget pass_budget; /* this pass's bytes against the copy rate */
	uint64_t wire_seen;	/* copy bytes on the wire, every lane, when the budget last took them */
	uint64_t cracks_seen;	/* m->cracks when last looked at */

	/*
	 * The pass this connection runs, from START_COPY until it is consistent or
	 * the connection ends: what its COPY_ACKs let the master clear (CRK-5).
	 */
	bool pass_open;
	bool pass_full;		/* walks [pass_from, volume end); else the runs */
	uint64_t pass_from;
	uint64_t pass_cracks;	/* m->cracks at its start: a crack since stops clearing */
	struct run *runs;	/* dirty pass: what it copies, in walk order */
	size_t n_runs;
	size_t runs_cleared;	/* runs before this one are clear */
	bool retry_now;		/* a crack ended the pass: reconnect without backoff, */
	uint64_t quick_retry_until_ms; /* and retry quickly until then */

	/* Dirtying and draining rates (status, and the "writes outrun the link" log). */
	uint64_t rate_ms, rate_head, rate_drained, rate_full_waits;
	uint64_t copy_bytes_total; /* data copied by every pass of this process (draining) */
	bool outrun;
	unsigned outrun_samples; /* samples in a row with the buffer growing */
	uint64_t outrun_logged_ms;

	uint64_t backoff_ms;
	uint64_t last_free_ms, last_heartbeat_ms, last_progress_ms, heartbeat_seq;
	uint64_t rate_mark_ms, rate_mark_bytes;
	uint64_t rate_copy_bytes;		 /* copy_bytes at the last rate sample */
	const struct tls_conn *published_conn; /* the link m->peer describes */
	uint32_t peer_error;			 /* the code of an ERROR the mirror sent */
};

/* session.c */
/*
 * The session thread (session_start) is these, in order: session_enter,
 * session_step until the master stops, session_leave. tests/fuzz drives them
 * in its own thread, one step at a time, without session_start.
 */
/* Allocates a session for m (no thread, no connection); session_free frees it. NULL if out of memory. */
struct session *session_new(struct master *m, const struct session_options *o);
void session_free(struct session *s);
/* NEW -> INIT, or ERROR if the journal was salvaged at open. */
void session_enter(struct session *s);
/* One turn of the state loop: the work of the current state, until it changes or the master stops. */
void session_step(struct session *s);
/* Says Goodbye if connected, then frees what the mirror acknowledged. */
void session_leave(struct session *s);

bool session_stopping(struct session *s);

/*
 * Failure paths. Before INIT succeeds every link failure is minor (RESET);
 * after it, a lost link is LINKDOWN. Severe errors are told to the peer.
 */
void session_fail(struct session *s, enum master_event ev, uint32_t wire_code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Feeds the event a received message stands for; an illegal one is a protocol error. */
int session_feed(struct session *s, enum master_event ev, unsigned type);

int session_send(struct session *s, unsigned type, const ProtobufCMessage *msg,
		 const void *trailer, uint32_t len);

/*
 * Receives one frame. Error and Goodbye are handled here (state changed, -1).
 * Returns the frame type, or -1 after the failure was handled.
 */
int session_recv(struct session *s, struct frame *f);

void session_log_progress(struct session *s, uint64_t now);

/* Periodic duties of a connected session: free, heartbeat, progress. */
int session_housekeeping(struct session *s);

/* Publishes the state for writers (sync, block, degrade) and the control socket. */
void session_publish_state(struct session *s);

/* session-handshake.c */
/* What a HELLO points into besides the session and the master; the caller keeps it while sending. */
struct hello_keep {
	char hostname[FREP_MAX_NODE_NAME + 1];
	uint32_t offer;
};
/* Lane 0's HELLO for this connection: a fresh session of one lane asking for --lanes. */
void session_hello(struct session *s, Frep__V1__Hello *h, struct hello_keep *keep);

/* INIT: TLS, identities, volume, protocol version. */
void session_step_init(struct session *s);

/* MAKEPARTS: the mirror builds (or validates) extents like ours. */
void session_step_makeparts(struct session *s);

/* READY: the decision table of spec/protocol.md section "READY decision". */
void session_step_ready(struct session *s);

/* session-copy.c */
/*
 * A COPY_ACK: the mirror holds every record of the pass below `through`
 * durably (COPY-8), so their regions are clean (CRK-5). 0 or -1 (failed).
 */
int session_copy_acked(struct session *s, uint64_t through);

/*
 * REPLICATE / OUTOFSYNC, one pass at a time. A full pass copies every
 * allocated block (the first copy, --resync=full, an operator's resync-full);
 * a dirty pass copies the regions of the bitmap. Then CopyDone(t_c) and
 * sequencing t_s+1..t_c; the mirror says CONSISTENT once it applied t_c
 * durably. A crack during the pass means another (dirty) pass.
 */
void session_step_copy(struct session *s);

/* session-sequence.c */
/* Drains frames already waiting, without blocking. 0 or -1 (state changed). */
int session_drain(struct session *s);

/*
 * A crack dropped records the session may still have to send. In a copy the
 * FSM stays put and session_step_copy starts another pass; in INSYNC or IDLE it goes
 * OUTOFSYNC. Returns true if there was one (the caller returns to the loop).
 */
bool session_cracked(struct session *s);

/*
 * Waits up to timeout_ms for a frame from the mirror or a new commit, and
 * handles the frame. 0 or -1 (state changed).
 */
int session_wait_event(struct session *s, int timeout_ms);

/* Sequencing: send in TXID order with a window, until the state leaves `state`. */
void session_sequence(struct session *s, enum master_state state);

#endif
