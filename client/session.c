/* Master replication session: drives the master state machine over one TLS link to the mirror. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "crashpoint.h"
#include "frame.h"
#include "frep/v1/frep.pb-c.h"
#include "log.h"
#include "session.h"
#include "tls.h"
#include "util.h"

enum session_limits {
	HANDSHAKE_TIMEOUT_MS = 15000,
	COPY_CHUNK = 4 << 20,	   /* bytes of data per COPY_DATA frame */
	WINDOW_TX = 4096,	   /* TXIDs in flight before waiting for acknowledgements */
	WINDOW_BYTES = 64 << 20,   /* data bytes in flight before waiting */
	FREE_INTERVAL_MS = 1000,   /* how often acknowledged records are freed */
	HEARTBEAT_MAX_MS = 2000,   /* heartbeat interval: this, or a third of the timeout */
	PROGRESS_MS = 10000,
	MAX_DIRTY_RUNS = 1 << 20,  /* dirty runs remembered per pass for clearing */
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
};

/* Used only by the session thread, except `m` which is shared (see master.h). */
struct session {
	struct master *m;
	struct session_options o;
	pthread_t thread;
	struct master_fsm fsm;
	struct tls_conn *c;
	struct frame_reader rd;
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
	uint64_t copy_started_ms, pass_bytes, pass_started_ms;
	uint64_t cracks_seen;	/* m->cracks when last looked at */
	struct run *runs;	/* dirty pass: what it copies, to clear when consistent */
	size_t n_runs;

	uint64_t backoff_ms;
	uint64_t last_free_ms, last_heartbeat_ms, last_progress_ms, heartbeat_seq;
	uint64_t rate_mark_ms, rate_mark_bytes;
};

static bool stopping(struct session *s)
{
	pthread_mutex_lock(&s->m->lock);
	bool stop = s->m->stopping;
	pthread_mutex_unlock(&s->m->lock);
	return stop;
}

static void disconnect(struct session *s)
{
	tls_close(s->c);
	s->c = NULL;
	s->copying = false;
}

/*
 * Failure paths. Before INIT succeeds every link failure is minor (RESET);
 * after it, a lost link is LINKDOWN. Severe errors are told to the peer.
 */
static void fail(struct session *s, enum master_event ev, uint32_t wire_code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void fail(struct session *s, enum master_event ev, uint32_t wire_code, const char *fmt, ...)
{
	char text[448], why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);

	/* The code name leads the reason, as the mirror logs it: "AHEAD: ...". */
	if (wire_code)
		snprintf(why, sizeof(why), "%s: %s", frep_error_name(wire_code), text);
	else
		snprintf(why, sizeof(why), "%s", text);
	if (wire_code && s->c)
		frame_send_error(s->c, wire_code, "%s", text);
	disconnect(s);
	if (ev == ME_LINK_LOST && s->fsm.state == MS_INIT)
		ev = ME_MINOR;
	if (ev == ME_MINOR || ev == ME_LINK_LOST)
		log_warn(s->m->name, "mirror %s:%s: %s", s->o.host, s->o.port, why);
	else
		log_error(s->m->name, "mirror %s:%s: %s", s->o.host, s->o.port, why);
	if (master_fsm_feed(&s->fsm, ev, why) < 0 && ev != ME_SEVERE)
		master_fsm_feed(&s->fsm, ME_SEVERE, why);
	if (s->fsm.state == MS_ERROR) {
		pthread_mutex_lock(&s->m->lock);
		snprintf(s->m->error, sizeof(s->m->error), "%s", why);
		pthread_mutex_unlock(&s->m->lock);
	}
}

/* Feeds the event a received message stands for; an illegal one is a protocol error. */
static int feed_msg(struct session *s, enum master_event ev, unsigned type)
{
	if (master_fsm_feed(&s->fsm, ev, NULL) == 0)
		return 0;
	fail(s, ME_SEVERE, FREP_E_UNEXPECTED, "%s is illegal in state %s", frep_msg_name(type),
	     master_state_name(s->fsm.state));
	return -1;
}

static int send_msg(struct session *s, unsigned type, const ProtobufCMessage *msg,
		    const void *trailer, uint32_t len)
{
	if (frame_send(s->c, type, msg, trailer, len) == 0)
		return 0;
	fail(s, ME_LINK_LOST, 0, "sending %s: %s", frep_msg_name(type), strerror(errno));
	return -1;
}

/*
 * Receives one frame. Error and Goodbye are handled here (state changed, -1).
 * Returns the frame type, or -1 after the failure was handled.
 */
static int recv_msg(struct session *s, struct frame *f)
{
	uint32_t wire_err;
	char why[256];

	enum frame_status st = frame_recv(s->c, &s->rd, f, &wire_err, why, sizeof(why));
	s->last_rx_ms = now_ms();
	if (st == FRAME_EOF) {
		fail(s, ME_LINK_LOST, 0, "connection closed by the mirror");
		return -1;
	}
	if (st == FRAME_ERR) {
		fail(s, wire_err ? ME_SEVERE : ME_LINK_LOST, wire_err, "%s", why);
		return -1;
	}
	if (f->hdr.type == FREP_MSG_ERROR) {
		Frep__V1__Error *e = (Frep__V1__Error *)f->msg;
		bool severe = e->severe || frep_error_is_severe(e->code);
		fail(s, severe ? ME_SEVERE : ME_MINOR, 0, "mirror reported %s: %s",
		     frep_error_name(e->code), e->message);
		return -1;
	}
	if (f->hdr.type == FREP_MSG_GOODBYE) {
		Frep__V1__Goodbye *g = (Frep__V1__Goodbye *)f->msg;
		fail(s, ME_LINK_LOST, 0, "mirror closed the session: %s", g->reason);
		return -1;
	}
	return f->hdr.type;
}

/* TLS, HELLO, WELCOME. 0, or -1 with the failure handled (state changed). */
static int connect_and_hello(struct session *s)
{
	struct master *m = s->m;
	char err[256], hostname[FREP_MAX_NODE_NAME + 1] = "unknown";
	struct frame f;

	s->c = tls_client_connect(s->o.tls, s->o.host, s->o.port, s->o.server_name,
				  HANDSHAKE_TIMEOUT_MS, err, sizeof(err));
	if (!s->c) {
		fail(s, ME_MINOR, 0, "connect: %s", err);
		return -1;
	}
	s->last_rx_ms = now_ms();
	tls_set_read_timeout(s->c, HANDSHAKE_TIMEOUT_MS);
	gethostname(hostname, sizeof(hostname) - 1);
	random_bytes(s->session_id, sizeof(s->session_id));

	Frep__V1__Hello h = FREP__V1__HELLO__INIT;
	h.proto_min = h.proto_max = FREP_PROTO_VERSION;
	h.master_node = hostname;
	h.volume = m->name;
	h.volume_uuid = (ProtobufCBinaryData){ sizeof(m->uuid), m->uuid };
	h.generation = m->generation;
	h.session_id = (ProtobufCBinaryData){ sizeof(s->session_id), s->session_id };
	h.lane = 0;
	h.lane_count = 1;
	pthread_mutex_lock(&m->lock);
	h.committed_txid = m->committed_txid;
	h.retained_first_txid = journal_first_txid(m->j) <= journal_last_txid(m->j) ?
					journal_first_txid(m->j) : 0;
	h.journal_size = journal_capacity(m->j);
	pthread_mutex_unlock(&m->lock);
	if (send_msg(s, FREP_MSG_HELLO, &h.base, NULL, 0) < 0)
		return -1;

	int type = recv_msg(s, &f);
	if (type < 0)
		return -1;
	if (type != FREP_MSG_WELCOME) {
		fail(s, ME_SEVERE, FREP_E_UNEXPECTED, "expected WELCOME, got %s",
		     frep_msg_name((unsigned)type));
		return -1;
	}
	Frep__V1__Welcome *w = (Frep__V1__Welcome *)f.msg;
	if (w->proto_version != FREP_PROTO_VERSION) {
		fail(s, ME_SEVERE, FREP_E_VERSION, "mirror chose protocol version %u, we speak %u",
		     w->proto_version, FREP_PROTO_VERSION);
		return -1;
	}
	s->w = (struct welcome_info){
		.known = w->known,
		.consistent = w->consistent,
		.durable_txid = w->durable_txid,
		.consistent_txid = w->consistent_txid,
		.phase = w->phase,
		.copy_cursor = w->copy_cursor,
		.copy_base = w->copy_base,
	};
	log_info(m->name, "connected to mirror %s:%s (%s): known=%d phase=%u durable_txid=%" PRIu64
		 " consistent=%d@%" PRIu64,
		 s->o.host, s->o.port, tls_cipher(s->c), w->known, w->phase, w->durable_txid,
		 w->consistent, w->consistent_txid);
	return 0;
}

/* INIT: TLS, identities, volume, protocol version. */
static void step_init(struct session *s)
{
	if (connect_and_hello(s) == 0)
		feed_msg(s, ME_MSG_WELCOME, FREP_MSG_WELCOME);
}

/* MAKEPARTS: the mirror builds (or validates) extents like ours. */
static void step_makeparts(struct session *s)
{
	struct master *m = s->m;
	struct frame f;
	uint64_t sizes[FREP_MAX_EXTENTS];

	/* A retry after RESET has no connection: every step revisits INIT's handshake. */
	if (!s->c && connect_and_hello(s) < 0)
		return;
	for (unsigned i = 0; i < m->vol.n; i++)
		sizes[i] = m->vol.ext[i].size;
	Frep__V1__ExtentTable t = FREP__V1__EXTENT_TABLE__INIT;
	t.n_extent_size = m->vol.n;
	t.extent_size = sizes;
	if (send_msg(s, FREP_MSG_EXTENT_TABLE, &t.base, NULL, 0) < 0)
		return;
	int type = recv_msg(s, &f);
	if (type < 0)
		return;
	if (type != FREP_MSG_PARTS_READY) {
		fail(s, ME_SEVERE, FREP_E_UNEXPECTED, "expected PARTS_READY, got %s",
		     frep_msg_name((unsigned)type));
		return;
	}
	Frep__V1__PartsReady *p = (Frep__V1__PartsReady *)f.msg;
	if (p->volume_size != m->vol.size) {
		fail(s, ME_SEVERE, FREP_E_BAD_EXTENTS, "mirror volume is %" PRIu64 " bytes, master %" PRIu64,
		     p->volume_size, m->vol.size);
		return;
	}
	log_info(m->name, "mirror extents %s", p->created ? "created" : "validated");
	feed_msg(s, ME_MSG_PARTS_READY, FREP_MSG_PARTS_READY);
}

/* READY: the decision table of spec/protocol.md section "READY decision". */
static void step_ready(struct session *s)
{
	struct master *m = s->m;
	pthread_mutex_lock(&m->lock);
	uint64_t committed = m->committed_txid;
	uint64_t first = journal_first_txid(m->j);
	s->cracks_seen = m->cracks;
	pthread_mutex_unlock(&m->lock);
	const struct welcome_info *w = &s->w;

	if (w->durable_txid > committed) {
		fail(s, ME_SEVERE, FREP_E_AHEAD,
		     "mirror holds TXID %" PRIu64 " but the master committed only up to %" PRIu64,
		     w->durable_txid, committed);
		return;
	}
	if (!w->known || w->phase == FREP__V1__PHASE__PHASE_NONE ||
	    w->phase == FREP__V1__PHASE__PHASE_CREATED || w->phase == FREP__V1__PHASE__PHASE_REPLICATE) {
		master_fsm_feed(&s->fsm, ME_DECIDE_COPY, NULL);
	} else if (w->phase == FREP__V1__PHASE__PHASE_INSYNC && w->consistent &&
		   w->durable_txid + 1 >= first) {
		Frep__V1__StartSync ss = FREP__V1__START_SYNC__INIT;
		ss.from_txid = w->durable_txid;
		if (send_msg(s, FREP_MSG_START_SYNC, &ss.base, NULL, 0) < 0)
			return;
		s->next_send = w->durable_txid + 1;
		pthread_mutex_lock(&m->lock);
		if (m->acked_txid < w->durable_txid)
			m->acked_txid = w->durable_txid;
		if (m->synced_txid < w->durable_txid)
			m->synced_txid = w->durable_txid;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		s->max_sent = w->durable_txid;
		s->backoff_ms = 0;
		log_info(m->name, "mirror consistent at TXID %" PRIu64 "; resending from %" PRIu64,
			 w->durable_txid, s->next_send);
		master_fsm_feed(&s->fsm, ME_DECIDE_SYNC, NULL);
	} else {
		/* Everything up to the mirror's durable TXID is there; the rest is resynced. */
		pthread_mutex_lock(&m->lock);
		if (w->consistent && m->acked_txid < w->durable_txid)
			m->acked_txid = w->durable_txid;
		pthread_mutex_unlock(&m->lock);
		master_fsm_feed(&s->fsm, ME_DECIDE_RESYNC, NULL);
	}
}

static void log_progress(struct session *s, uint64_t now)
{
	struct master *m = s->m;
	char a[16], b[16], c[16], d[16];

	pthread_mutex_lock(&m->lock);
	uint64_t committed = m->committed_txid, acked = m->acked_txid;
	uint64_t used = journal_used(m->j), cap = journal_capacity(m->j);
	pthread_mutex_unlock(&m->lock);

	uint64_t dt = now - s->rate_mark_ms;
	uint64_t rate = dt ? (s->copy_bytes - s->rate_mark_bytes) * 1000 / dt : 0;
	char eta[24] = "-";
	if (s->copying && rate)
		snprintf(eta, sizeof(eta), "%" PRIu64 "s", (s->copy_total - s->copy_off) / rate);
	log_info(m->name,
		 "progress state=%s copied=%s total=%s rate=%s/s eta=%s lag_tx=%" PRIu64
		 " lag_bytes=%s buffer_free=%" PRIu64 "%%",
		 master_state_name(s->fsm.state), format_size(s->copy_off, a, sizeof(a)),
		 format_size(s->copy_total, b, sizeof(b)), format_size(rate, c, sizeof(c)), eta,
		 committed - acked, format_size(used, d, sizeof(d)),
		 cap ? (cap - used) * 100 / cap : 0);
	s->rate_mark_ms = now;
	s->rate_mark_bytes = s->copy_bytes;
	s->last_progress_ms = now;
}

/* Periodic duties of a connected session: free, heartbeat, progress. */
static int housekeeping(struct session *s)
{
	uint64_t now = now_ms();
	if (now - s->last_rx_ms >= s->o.heartbeat_timeout_ms) {
		/* The mirror answers every heartbeat: this much silence is a dead link. */
		fail(s, ME_LINK_LOST, 0, "no frame from the mirror for %" PRIu64 " ms (--heartbeat-timeout)",
		     now - s->last_rx_ms);
		return -1;
	}
	if (now - s->last_free_ms >= FREE_INTERVAL_MS) {
		s->last_free_ms = now;
		if (master_free_acked(s->m) < 0) {
			fail(s, ME_SEVERE, 0, "cannot free the mirror buffer: %s", strerror(errno));
			return -1;
		}
	}
	uint64_t hb_every = s->o.heartbeat_timeout_ms / 3 < HEARTBEAT_MAX_MS ?
				    s->o.heartbeat_timeout_ms / 3 : HEARTBEAT_MAX_MS;
	if (now - s->last_heartbeat_ms >= hb_every) {
		Frep__V1__Heartbeat hb = FREP__V1__HEARTBEAT__INIT;
		hb.seq = ++s->heartbeat_seq;
		pthread_mutex_lock(&s->m->lock);
		hb.txid = s->m->committed_txid;
		pthread_mutex_unlock(&s->m->lock);
		s->last_heartbeat_ms = now;
		if (send_msg(s, FREP_MSG_HEARTBEAT, &hb.base, NULL, 0) < 0)
			return -1;
	}
	if (now - s->last_progress_ms >= PROGRESS_MS) {
		pthread_mutex_lock(&s->m->lock);
		bool inflight = s->m->committed_txid != s->m->acked_txid;
		pthread_mutex_unlock(&s->m->lock);
		if (s->copying || inflight || s->fsm.state != MS_INSYNC)
			log_progress(s, now);
		else
			s->last_progress_ms = now;
	}
	return 0;
}

/* Handles one frame from the mirror while copying or sequencing. 0 or -1 (state changed). */
static int handle_incoming(struct session *s)
{
	struct master *m = s->m;
	struct frame f;
	int type = recv_msg(s, &f);
	if (type < 0)
		return -1;

	switch (type) {
	case FREP_MSG_TX_ACK: {
		Frep__V1__TxAck *a = (Frep__V1__TxAck *)f.msg;
		if (feed_msg(s, ME_MSG_TX_ACK, type) < 0)
			return -1;
		if (a->txid > s->max_sent) {
			fail(s, ME_SEVERE, FREP_E_PROTOCOL,
			     "TX_ACK for TXID %" PRIu64 " that was never sent (highest sent %" PRIu64 ")",
			     a->txid, s->max_sent);
			return -1;
		}
		pthread_mutex_lock(&m->lock);
		if (a->txid > m->acked_txid)
			m->acked_txid = a->txid;
		if (a->txid > m->synced_txid)
			m->synced_txid = a->txid;
		pthread_cond_broadcast(&m->cond); /* sync-mode writers wait for this */
		pthread_mutex_unlock(&m->lock);
		s->inflight_since_ack = 0;
		return 0;
	}
	case FREP_MSG_RESEND: {
		Frep__V1__Resend *r = (Frep__V1__Resend *)f.msg;
		if (feed_msg(s, ME_MSG_RESEND, type) < 0)
			return -1;
		pthread_mutex_lock(&m->lock);
		uint64_t first = journal_first_txid(m->j);
		pthread_mutex_unlock(&m->lock);
		if (r->from_txid < first || r->from_txid > r->to_txid || r->to_txid > s->max_sent) {
			fail(s, ME_SEVERE, FREP_E_PROTOCOL,
			     "RESEND %" PRIu64 "..%" PRIu64 " outside what was sent and retained (%" PRIu64 "..%" PRIu64 ")",
			     r->from_txid, r->to_txid, first, s->max_sent);
			return -1;
		}
		log_info(m->name, "mirror asked to resend TXIDs %" PRIu64 "..%" PRIu64, r->from_txid,
			 r->to_txid);
		s->next_send = r->from_txid;
		return 0;
	}
	case FREP_MSG_COPY_ACK: {
		Frep__V1__CopyAck *a = (Frep__V1__CopyAck *)f.msg;
		if (feed_msg(s, ME_MSG_COPY_ACK, type) < 0)
			return -1;
		/*
		 * Informational: the mirror's cursor is what resumes a pass. It is
		 * bounded by the volume (after COPY_DONE the mirror acknowledges the
		 * whole volume, COPY-8).
		 */
		if (a->through > m->vol.size) {
			fail(s, ME_SEVERE, FREP_E_PROTOCOL, "COPY_ACK through %" PRIu64
			     " beyond what was copied (%" PRIu64 ")", a->through, s->copy_off);
			return -1;
		}
		s->copy_acked = a->through;
		return 0;
	}
	case FREP_MSG_CONSISTENT: {
		Frep__V1__Consistent *c = (Frep__V1__Consistent *)f.msg;
		/* The mirror may have applied past t_c in the same batch: any sent TXID >= t_c. */
		if (s->copying || c->txid < s->copy_tc || c->txid > s->max_sent) {
			fail(s, ME_SEVERE, FREP_E_PROTOCOL,
			     "CONSISTENT at TXID %" PRIu64 " outside %" PRIu64 "..%" PRIu64
			     " (copy end .. highest sent)",
			     c->txid, s->copy_tc, s->max_sent);
			return -1;
		}
		if (feed_msg(s, ME_MSG_CONSISTENT, type) < 0)
			return -1;
		pthread_mutex_lock(&m->lock);
		if (m->synced_txid < c->txid)
			m->synced_txid = c->txid;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		log_info(m->name, "mirror consistent at TXID %" PRIu64, c->txid);
		s->backoff_ms = 0;
		return 0;
	}
	case FREP_MSG_HEARTBEAT:
		return feed_msg(s, ME_MSG_HEARTBEAT, type);
	default:
		fail(s, ME_SEVERE, FREP_E_UNEXPECTED, "%s is not a message a mirror sends",
		     frep_msg_name((unsigned)type));
		return -1;
	}
}

/* Drains frames already waiting, without blocking. 0 or -1 (state changed). */
static int drain_incoming(struct session *s)
{
	while (s->c && tls_readable(s->c, 0))
		if (handle_incoming(s) < 0)
			return -1;
	return 0;
}

/*
 * A crack dropped records the session may still have to send. In a copy the
 * FSM stays put and step_copy starts another pass; in INSYNC or IDLE it goes
 * OUTOFSYNC. Returns true if there was one (the caller returns to the loop).
 */
static bool cracked(struct session *s)
{
	pthread_mutex_lock(&s->m->lock);
	uint64_t cracks = s->m->cracks;
	pthread_mutex_unlock(&s->m->lock);
	if (cracks == s->cracks_seen)
		return false;
	s->cracks_seen = cracks;
	master_fsm_feed(&s->fsm, ME_CRACK, "mirror buffer overflowed");
	if (s->fsm.state == MS_REPLICATE || s->fsm.state == MS_OUTOFSYNC) {
		/*
		 * Passes carry no ID on the wire, so acknowledgements of the abandoned
		 * pass could be taken for the next one's: the next pass starts on a
		 * fresh connection (RESET, then INIT and READY decide it).
		 */
		Frep__V1__Goodbye g = FREP__V1__GOODBYE__INIT;
		g.reason = "mirror buffer overflowed during the copy: starting another pass";
		frame_send(s->c, FREP_MSG_GOODBYE, &g.base, NULL, 0);
		fail(s, ME_MINOR, 0, "mirror buffer overflowed during the copy: another pass follows");
	}
	return true;
}

/* Publishes the state for writers (sync, block, degrade) and the control socket. */
static void publish_state(struct session *s)
{
	struct master *m = s->m;
	/* A paused mirror acknowledges nothing: IDLE runs the degrade clock too. */
	bool insync = s->fsm.state == MS_INSYNC;
	pthread_mutex_lock(&m->lock);
	m->state = s->fsm.state;
	if (insync && !m->insync) {
		m->unreachable_since_ms = 0;
		if (m->degraded)
			log_info(m->name, "mirror in sync again: %s restored",
				 m->sync_mode ? "sync mode" : "--on-buffer-full=block");
		m->degraded = false;
		pthread_cond_broadcast(&m->cond);
	} else if (!insync && m->unreachable_since_ms == 0) {
		m->unreachable_since_ms = now_ms();
	}
	m->insync = insync;
	if (s->fsm.state != MS_ERROR)
		m->error[0] = '\0';
	pthread_mutex_unlock(&m->lock);
}

/* Sends committed TXIDs from next_send, within the window. 0 or -1 (state changed). */
static int send_committed(struct session *s)
{
	struct master *m = s->m;
	while (s->fsm.state != MS_IDLE) { /* IDLE: the operator paused sequencing */
		struct journal_rec r;
		if (cracked(s))
			return -1;
		struct journal_loc loc;
		const void *data = s->buf;
		pthread_mutex_lock(&m->lock);
		uint64_t committed = m->committed_txid, acked = m->acked_txid;
		if (s->next_send > committed || s->next_send - acked > WINDOW_TX ||
		    s->inflight_since_ack >= WINDOW_BYTES) {
			pthread_mutex_unlock(&m->lock);
			return 0;
		}
		/* Fresh records come from memory; older ones from the journal. */
		bool cached = master_cached_locked(m, s->next_send, &r, &data);
		int rc = cached ? 0 : journal_locate(m->j, s->next_send, &loc);
		int e = errno;
		pthread_mutex_unlock(&m->lock);
		/* The read itself runs unlocked, so writers never wait for it. */
		if (!cached && rc == 0) {
			rc = journal_read_at(m->j, &loc, &r, s->buf, s->buf_len);
			e = errno;
		}
		if (rc < 0) {
			/* Only a crack frees unacknowledged records; then this is no error. */
			if (cracked(s))
				return -1;
			fail(s, ME_SEVERE, 0, "reading TXID %" PRIu64 " from the mirror buffer: %s",
			     s->next_send, strerror(e));
			return -1;
		}
		Frep__V1__Tx tx = FREP__V1__TX__INIT;
		tx.generation = r.generation;
		tx.txid = r.txid;
		tx.op = (Frep__V1__TxOp)r.op;
		tx.offset = r.offset;
		tx.length = r.length;
		tx.data_crc = r.data_crc;
		uint32_t dlen = r.op == JOP_WRITE ? (uint32_t)r.length : 0;
		if (send_msg(s, FREP_MSG_TX, &tx.base, data, dlen) < 0)
			return -1;
		pthread_mutex_lock(&m->lock);
		master_release_cached_locked(m, r.txid);
		pthread_mutex_unlock(&m->lock);
		if (s->next_send > s->max_sent)
			s->max_sent = s->next_send;
		s->next_send++;
		s->inflight_since_ack += dlen;
		if (drain_incoming(s) < 0)
			return -1;
	}
	return 0;
}
/*
 * Waits up to timeout_ms for a frame from the mirror or a new commit, and
 * handles the frame. 0 or -1 (state changed).
 */
static int wait_event(struct session *s, int timeout_ms)
{
	if (tls_readable(s->c, 0))
		return handle_incoming(s);
	struct pollfd p[2] = {
		{ .fd = tls_fd(s->c), .events = POLLIN },
		{ .fd = s->m->notify_fd, .events = POLLIN },
	};
	if (poll(p, 2, timeout_ms) < 0 && errno != EINTR) {
		fail(s, ME_SEVERE, 0, "poll: %s", strerror(errno));
		return -1;
	}
	if (p[1].revents & POLLIN) {
		uint64_t v;
		ssize_t n = read(s->m->notify_fd, &v, sizeof(v));
		(void)n;
	}
	if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
		return handle_incoming(s);
	return 0;
}

/* Sequencing: send in TXID order with a window, until the state leaves `state`. */
/* Operator requests from the control socket. 0, or -1 if the state changed. */
static int take_requests(struct session *s)
{
	struct master *m = s->m;
	pthread_mutex_lock(&m->lock);
	bool pause = m->pause_req, resume = m->resume_req, full = m->resync_full_req;
	m->pause_req = m->resume_req = false;
	if (full && (s->fsm.state == MS_INSYNC || s->fsm.state == MS_IDLE))
		m->resync_full_req = false;
	pthread_mutex_unlock(&m->lock);

	if (pause && s->fsm.state == MS_INSYNC) {
		Frep__V1__Pause p = FREP__V1__PAUSE__INIT;
		if (send_msg(s, FREP_MSG_PAUSE, &p.base, NULL, 0) < 0)
			return -1;
		master_fsm_feed(&s->fsm, ME_PAUSE, "operator");
		return -1;
	}
	if (resume && s->fsm.state == MS_IDLE) {
		Frep__V1__Resume r = FREP__V1__RESUME__INIT;
		if (send_msg(s, FREP_MSG_RESUME, &r.base, NULL, 0) < 0)
			return -1;
		master_fsm_feed(&s->fsm, ME_RESUME, "operator");
		return -1;
	}
	if (full && (s->fsm.state == MS_INSYNC || s->fsm.state == MS_IDLE)) {
		/* The operator's full re-copy: out of sync by decision, not by overflow. */
		log_info(m->name, "operator asked for a full resync");
		s->need_full = true;
		master_fsm_feed(&s->fsm, ME_CRACK, "operator asked for a full resync");
		return -1;
	}
	return 0;
}

/* Sequencing: send in TXID order with a window, until the state leaves `state`. */
static void sequence(struct session *s, enum master_state state)
{
	while (s->fsm.state == state && !stopping(s)) {
		publish_state(s);
		if (cracked(s) || take_requests(s) < 0 || send_committed(s) < 0 ||
		    housekeeping(s) < 0)
			return;
		if (s->fsm.state != state)
			return;
		if (wait_event(s, 200) < 0)
			return;
	}
}
/* Sends one copied range, data or hole. 0 or -1 (state changed). */
static int copy_range(struct session *s, uint64_t off, uint64_t end, bool data)
{
	struct master *m = s->m;
	if (!data) {
		Frep__V1__CopyHole h = FREP__V1__COPY_HOLE__INIT;
		h.offset = off;
		h.length = end - off;
		s->copy_off = end;
		return send_msg(s, FREP_MSG_COPY_HOLE, &h.base, NULL, 0);
	}
	while (off < end) {
		uint32_t n = end - off > COPY_CHUNK ? COPY_CHUNK : (uint32_t)(end - off);
		if (volume_pread(&m->vol, s->buf, n, off) < 0) {
			fail(s, ME_SEVERE, 0, "reading master volume at %" PRIu64 ": %s", off,
			     strerror(errno));
			return -1;
		}
		Frep__V1__CopyData d = FREP__V1__COPY_DATA__INIT;
		d.offset = off;
		d.data_crc = frep_crc32c(s->buf, n);
		if (send_msg(s, FREP_MSG_COPY_DATA, &d.base, s->buf, n) < 0)
			return -1;
		frep_crash_point("copy");
		off += n;
		s->copy_off = off;
		s->copy_bytes += n;
		s->pass_bytes += n;
		if (drain_incoming(s) < 0 || housekeeping(s) < 0 || stopping(s))
			return -1;
		/* --max-rate: a shared DR link; wait until this pass is back on its budget. */
		while (s->o.max_rate && !stopping(s)) {
			uint64_t due_ms = s->pass_bytes * 1000 / s->o.max_rate;
			uint64_t spent = now_ms() - s->pass_started_ms;
			if (spent >= due_ms)
				break;
			uint64_t nap = due_ms - spent < 100 ? due_ms - spent : 100;
			if (wait_event(s, (int)nap) < 0 || housekeeping(s) < 0)
				return -1;
		}
	}
	return 0;
}
/*
 * REPLICATE / OUTOFSYNC: copy every allocated block straight to the mirror's
 * extents (holes as hole records), then sequence base+1..t_c; the mirror says
 * CONSISTENT once it applied t_c durably.
 */
/* Walks [start, end) sending data and holes as the master volume has them. 0 or -1. */
static int copy_span(struct session *s, uint64_t start, uint64_t end)
{
	uint64_t off = start;
	while (off < end) {
		uint64_t d, e;
		int rc = volume_next_data(&s->m->vol, off, &d, &e);
		if (rc < 0) {
			fail(s, ME_SEVERE, 0, "SEEK_DATA on master volume at %" PRIu64 ": %s", off,
			     strerror(errno));
			return -1;
		}
		if (rc == 0 || d > end)
			d = e = end;
		if (e > end)
			e = end;
		if (d > off && copy_range(s, off, d, false) < 0)
			return -1;
		if (e > d && copy_range(s, d, e, true) < 0)
			return -1;
		off = e;
	}
	return 0;
}

/*
 * Snapshots the dirty runs a pass will copy, so exactly those are cleared when
 * the mirror is consistent. Called with m->lock held. 0 or -1.
 */
static int snapshot_runs(struct session *s, uint64_t *bytes)
{
	uint64_t off = 0, a, b;
	s->n_runs = 0;
	*bytes = 0;
	while (bitmap_next_dirty(s->m->bm, off, &a, &b) == 1) {
		if (s->n_runs == MAX_DIRTY_RUNS) {
			/* Too fragmented to track: copy it all. */
			s->need_full = true;
			s->n_runs = 0;
			*bytes = s->m->vol.size;
			return 0;
		}
		if (!s->runs && !(s->runs = malloc(MAX_DIRTY_RUNS * sizeof(*s->runs))))
			return -1;
		s->runs[s->n_runs++] = (struct run){ a, b };
		*bytes += b - a;
		off = b;
	}
	return 0;
}

/*
 * REPLICATE / OUTOFSYNC, one pass at a time. A full pass copies every
 * allocated block (the first copy, --resync=full, an operator's resync-full);
 * a dirty pass copies the regions of the bitmap. Then CopyDone(t_c) and
 * sequencing t_s+1..t_c; the mirror says CONSISTENT once it applied t_c
 * durably. A crack during the pass means another (dirty) pass.
 */
static void step_copy(struct session *s)
{
	struct master *m = s->m;
	enum master_state state = s->fsm.state;
	bool full = s->need_full || state == MS_REPLICATE ||
		    (state == MS_OUTOFSYNC && s->o.resync_full);
	uint64_t total = 0;

	s->need_full = false;
	/*
	 * t_s must be applied to the volume, not only committed, or the copy could
	 * read a block before TX t_s lands and replay would never bring it: wait
	 * until every committed TXID is applied. Later TXIDs are replayed after
	 * the copy. Records up to t_s the mirror lacks are marked dirty (a dirty
	 * pass copies their regions), so they, and everything acknowledged, can
	 * be freed.
	 */
	pthread_mutex_lock(&m->lock);
	s->copy_base = master_quiesce_locked(m);
	master_release_cached_locked(m, s->copy_base); /* the pass sends from copy_base + 1 */
	s->cracks_seen = m->cracks;
	/*
	 * An interrupted full pass resumes at the mirror's cursor with its old
	 * base, if every TXID after that base is still here to be replayed.
	 */
	uint64_t resume = 0;
	if (full && s->w.copy_cursor && s->w.copy_base <= m->committed_txid &&
	    journal_first_txid(m->j) <= s->w.copy_base + 1 &&
	    ((state == MS_REPLICATE && s->w.phase == FREP__V1__PHASE__PHASE_REPLICATE) ||
	     (state == MS_OUTOFSYNC && s->w.phase == FREP__V1__PHASE__PHASE_OUTOFSYNC))) {
		resume = s->w.copy_cursor < m->vol.size ? s->w.copy_cursor : m->vol.size;
		s->copy_base = s->w.copy_base;
	}
	s->w.copy_cursor = 0; /* once: a later pass of this session starts afresh */
	/*
	 * A full OUTOFSYNC pass marks the whole volume dirty first: if it is cut
	 * short, the next pass (dirty, by default) still copies everything it
	 * did not finish. The first copy (REPLICATE) resumes from the mirror's
	 * cursor instead.
	 */
	if (full && state == MS_OUTOFSYNC)
		bitmap_set_all(m->bm);
	int rc = master_mark_dirty_locked(m, m->acked_txid, s->copy_base);
	if (rc == 0 && !full)
		rc = snapshot_runs(s, &total);
	if (s->need_full) {
		full = true;
		s->need_full = false;
	}
	if (full)
		total = m->vol.size;
	if (m->acked_txid < s->copy_base)
		m->acked_txid = s->copy_base;
	pthread_mutex_unlock(&m->lock);
	if (rc < 0) {
		fail(s, ME_SEVERE, 0, "cannot prepare the %s pass: %s", full ? "full" : "dirty",
		     strerror(errno));
		return;
	}

	s->copying = true;
	s->copy_off = s->copy_bytes = s->copy_acked = s->pass_bytes = 0;
	s->copy_total = total;
	s->copy_started_ms = s->pass_started_ms = s->rate_mark_ms = s->last_progress_ms = now_ms();
	s->rate_mark_bytes = 0;
	s->next_send = s->copy_base + 1;
	s->max_sent = s->copy_base;
	s->inflight_since_ack = 0;

	Frep__V1__StartCopy sc = FREP__V1__START_COPY__INIT;
	sc.kind = state == MS_REPLICATE ? FREP__V1__PHASE__PHASE_REPLICATE :
					  FREP__V1__PHASE__PHASE_OUTOFSYNC;
	sc.base_txid = s->copy_base;
	sc.total_bytes = total;
	sc.has_full = true;
	sc.full = full;
	sc.has_start_offset = resume != 0;
	sc.start_offset = resume;
	if (send_msg(s, FREP_MSG_START_COPY, &sc.base, NULL, 0) < 0)
		return;
	log_info(m->name, "%s: %s pass over %" PRIu64 " bytes (%zu dirty runs), base TXID %" PRIu64,
		 master_state_name(state), full ? "full" : "dirty", total, full ? (size_t)0 : s->n_runs,
		 s->copy_base);
	if (resume)
		log_info(m->name, "resuming the interrupted copy at offset %" PRIu64
			 " (mirror cursor), replaying from TXID %" PRIu64, resume, s->copy_base + 1);
	s->copy_off = resume;
	log_progress(s, now_ms());

	if (full) {
		if (copy_span(s, resume, m->vol.size) < 0)
			return;
	} else {
		for (size_t i = 0; i < s->n_runs; i++)
			if (copy_span(s, s->runs[i].start, s->runs[i].end) < 0)
				return;
	}
	if (cracked(s))
		return; /* the FSM stayed in this state: the loop starts another pass */

	pthread_mutex_lock(&m->lock);
	s->copy_tc = m->committed_txid;
	pthread_mutex_unlock(&m->lock);
	Frep__V1__CopyDone done = FREP__V1__COPY_DONE__INIT;
	done.last_txid = s->copy_tc;
	done.copied_bytes = s->copy_bytes;
	if (send_msg(s, FREP_MSG_COPY_DONE, &done.base, NULL, 0) < 0)
		return;
	log_progress(s, now_ms());
	s->copying = false;
	uint64_t ms = now_ms() - s->copy_started_ms;
	log_info(m->name, "copy walked %" PRIu64 " bytes (%" PRIu64 " data) in %" PRIu64
		 " ms; sequencing TXIDs %" PRIu64 "..%" PRIu64 " to reach consistency",
		 total, s->copy_bytes, ms, s->copy_base + 1, s->copy_tc);
	sequence(s, state);
	if (s->fsm.state != MS_INSYNC)
		return;

	/* Consistent: what this pass copied is on the mirror; unless a crack re-dirtied it. */
	pthread_mutex_lock(&m->lock);
	if (m->cracks == s->cracks_seen) {
		if (full)
			bitmap_clear_all(m->bm);
		else
			for (size_t i = 0; i < s->n_runs; i++)
				bitmap_clear_range(m->bm, s->runs[i].start, s->runs[i].end - s->runs[i].start);
		if (bitmap_sync(m->bm) < 0)
			log_warn(m->name, "dirty bitmap fdatasync after resync: %s", strerror(errno));
	}
	pthread_mutex_unlock(&m->lock);
	log_info(m->name, "%s done: %" PRIu64 " data bytes copied, %" PRIu64 " ms",
		 full ? "full pass" : "dirty resync", s->copy_bytes, now_ms() - s->copy_started_ms);
}
static void backoff_wait(struct session *s)
{
	if (s->backoff_ms == 0)
		s->backoff_ms = s->o.backoff_min_ms;
	uint32_t jitter;
	random_bytes(&jitter, sizeof(jitter));
	uint64_t wait = s->backoff_ms / 2 + jitter % (s->backoff_ms / 2 + 1);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)(wait / 1000);
	until.tv_nsec += (long)(wait % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&s->m->lock);
	while (!s->m->stopping && pthread_cond_timedwait(&s->m->cond, &s->m->lock, &until) == 0)
		;
	pthread_mutex_unlock(&s->m->lock);
	s->backoff_ms = s->backoff_ms * 2 > s->o.backoff_max_ms ? s->o.backoff_max_ms : s->backoff_ms * 2;
}

static void *session_main(void *arg)
{
	struct session *s = arg;
	struct master *m = s->m;

	master_fsm_feed(&s->fsm, ME_JOURNAL_OK, NULL);
	while (!stopping(s)) {
		publish_state(s);
		switch (s->fsm.state) {
		case MS_INIT:
			step_init(s);
			break;
		case MS_MAKEPARTS:
			step_makeparts(s);
			break;
		case MS_READY:
			step_ready(s);
			break;
		case MS_REPLICATE:
		case MS_OUTOFSYNC:
			step_copy(s);
			break;
		case MS_INSYNC:
		case MS_IDLE:
			sequence(s, s->fsm.state);
			break;
		case MS_RESET:
		case MS_LINKDOWN:
			backoff_wait(s);
			if (!stopping(s))
				master_fsm_retry(&s->fsm);
			break;
		case MS_ERROR:
			/*
			 * The operator fixes the cause and restarts; local I/O goes on
			 * meanwhile, and a full buffer cracks into the bitmap, so the
			 * later resync is incremental.
			 */
			pthread_mutex_lock(&m->lock);
			while (!m->stopping)
				pthread_cond_wait(&m->cond, &m->lock);
			pthread_mutex_unlock(&m->lock);
			break;
		case MS_NEW:
		case MS__COUNT:
			fail(s, ME_SEVERE, 0, "session in state %s", master_state_name(s->fsm.state));
			break;
		}
	}
	if (s->c) {
		Frep__V1__Goodbye g = FREP__V1__GOODBYE__INIT;
		g.reason = "master shutting down";
		frame_send(s->c, FREP_MSG_GOODBYE, &g.base, NULL, 0);
		disconnect(s);
	}
	master_free_acked(m);
	return NULL;
}

struct session *session_start(struct master *m, const struct session_options *o)
{
	struct session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->m = m;
	s->o = *o;
	s->buf_len = m->max_payload > COPY_CHUNK ? m->max_payload : COPY_CHUNK;
	s->buf = malloc(s->buf_len);
	frame_reader_init(&s->rd);
	master_fsm_init(&s->fsm, m->name);
	if (!s->buf || pthread_create(&s->thread, NULL, session_main, s) != 0) {
		free(s->buf);
		free(s);
		return NULL;
	}
	return s;
}

void session_join(struct session *s)
{
	pthread_join(s->thread, NULL);
	frame_reader_free(&s->rd);
	free(s->runs);
	free(s->buf);
	free(s);
}
