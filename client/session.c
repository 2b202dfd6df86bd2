/* Master replication session: the thread, its state loop, and what every phase shares (framing, failures, heartbeats). */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bitmap.h"
#include "crashpoint.h"
#include "events.h"
#include "frame.h"
#include "frep/v1/frep.pb-c.h"
#include "lanes.h"
#include "log.h"
#include "session-internal.h"
#include "tls.h"
#include "compress.h"
#include "util.h"
#include "verify.h"

bool session_stopping(struct session *s)
{
	pthread_mutex_lock(&s->m->lock);
	bool stop = s->m->stopping;
	pthread_mutex_unlock(&s->m->lock);
	return stop;
}

static void disconnect(struct session *s)
{
	lanes_close(s, false); /* LANE-9: the session's lanes end with it */
	tls_close(s->c);
	s->c = NULL;
	s->copying = false;
	s->pass_open = false;
}

/* The last error, for Status and Watch; in ERROR also the state's reason. */
static void note_error(struct session *s, const char *code, const char *why)
{
	pthread_mutex_lock(&s->m->lock);
	struct status_error *le = &s->m->last_error;
	le->set = true;
	snprintf(le->code, sizeof(le->code), "%s", code);
	snprintf(le->message, sizeof(le->message), "%s", why);
	le->time_unix_ms = wall_ms();
	pthread_mutex_unlock(&s->m->lock);
	events_publish(EVENT_ERROR, s->m->name, 0, 0, "%s", why);
}

void session_fail(struct session *s, enum master_event ev, uint32_t wire_code, const char *fmt, ...)
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
		frame_send_error(&s->out, wire_code, "%s", text);
	disconnect(s);
	if (ev == ME_LINK_LOST && s->fsm.state == MS_INIT)
		ev = ME_MINOR;
	if (ev == ME_MINOR || ev == ME_LINK_LOST)
		log_warn(s->m->name, "mirror %s:%s: %s", s->o.host, s->o.port, why);
	else
		log_error(s->m->name, "mirror %s:%s: %s", s->o.host, s->o.port, why);
	if (master_fsm_feed(&s->fsm, ev, why) < 0 && ev != ME_SEVERE)
		master_fsm_feed(&s->fsm, ME_SEVERE, why);
	/* The code as the operator knows it: the wire's, the mirror's, or what happened. */
	const char *code = wire_code	     ? frep_error_name(wire_code)
			   : s->peer_error   ? frep_error_name(s->peer_error)
			   : ev == ME_MINOR  ? "MINOR"
			   : ev == ME_SEVERE ? "SEVERE"
					     : "LINK_LOST";
	s->peer_error = 0;
	note_error(s, code, why);
	/* After note_error: the operator's switchover waiting on it reports this error. */
	pthread_mutex_lock(&s->m->lock);
	if (s->m->switch_state == SWITCH_ASKED || s->m->switch_state == SWITCH_SENT) {
		s->m->switch_state = SWITCH_FAILED;
		pthread_cond_broadcast(&s->m->cond);
	}
	pthread_mutex_unlock(&s->m->lock);
}

/* Feeds the event a received message stands for; an illegal one is a protocol error. */
int session_feed(struct session *s, enum master_event ev, unsigned type)
{
	if (master_fsm_feed(&s->fsm, ev, NULL) == 0)
		return 0;
	session_fail(s, ME_SEVERE, FREP_E_UNEXPECTED, "%s is illegal in state %s", frep_msg_name(type),
	     master_state_name(s->fsm.state));
	return -1;
}

int session_send(struct session *s, unsigned type, const ProtobufCMessage *msg,
		 const void *trailer, uint32_t len)
{
	if (frame_send(&s->out, type, msg, trailer, len) == 0)
		return 0;
	session_fail(s, ME_LINK_LOST, 0, "sending %s: %s", frep_msg_name(type), strerror(errno));
	return -1;
}

/*
 * Receives one frame. Error and Goodbye are handled here (state changed, -1).
 * Returns the frame type, or -1 after the failure was handled.
 */
int session_recv(struct session *s, struct frame *f)
{
	uint32_t wire_err;
	char why[256];

	enum frame_status st = frame_recv(s->c, &s->rd, f, &wire_err, why, sizeof(why));
	s->last_rx_ms = now_ms();
	if (st == FRAME_EOF) {
		session_fail(s, ME_LINK_LOST, 0, "connection closed by the mirror");
		return -1;
	}
	if (st == FRAME_ERR) {
		session_fail(s, wire_err ? ME_SEVERE : ME_LINK_LOST, wire_err, "%s", why);
		return -1;
	}
	if (f->hdr.type == FREP_MSG_ERROR) {
		Frep__V1__Error *e = (Frep__V1__Error *)f->msg;
		bool severe = e->severe || frep_error_is_severe(e->code);
		s->peer_error = e->code;
		/* An answer to SWITCHOVER that refuses it: the mirror did not take over. */
		pthread_mutex_lock(&s->m->lock);
		if (s->m->switch_state == SWITCH_SENT)
			s->m->switch_sent = false;
		pthread_mutex_unlock(&s->m->lock);
		if (e->code == FREP_E_FENCED)
			master_fence(s->m, e->has_fenced_epoch ? e->fenced_epoch : 0,
				     e->has_fenced_txid ? e->fenced_txid : 0,
				     e->has_fenced_unix_ms ? (int64_t)e->fenced_unix_ms : 0, e->message);
		session_fail(s, severe ? ME_SEVERE : ME_MINOR, 0, "mirror reported %s: %s",
		     frep_error_name(e->code), e->message);
		return -1;
	}
	if (f->hdr.type == FREP_MSG_GOODBYE) {
		Frep__V1__Goodbye *g = (Frep__V1__Goodbye *)f->msg;
		session_fail(s, ME_LINK_LOST, 0, "mirror closed the session: %s", g->reason);
		return -1;
	}
	return f->hdr.type;
}

void session_log_progress(struct session *s, uint64_t now)
{
	struct master *m = s->m;
	char a[16], b[16], c[16], d[16];

	pthread_mutex_lock(&m->lock);
	uint64_t committed = m->committed_txid, acked = m->acked_txid;
	uint64_t lag = journal_bytes_after(m->j, acked);
	uint64_t used = journal_used(m->j), cap = journal_capacity(m->j);
	pthread_mutex_unlock(&m->lock);

	uint64_t dt = now - s->rate_mark_ms;
	uint64_t rate = dt ? (s->copy_bytes - s->rate_mark_bytes) * 1000 / dt : 0;
	char eta[24] = "-";
	if (s->copying && rate && s->copy_total >= s->copy_walked)
		snprintf(eta, sizeof(eta), "%" PRIu64 "s", (s->copy_total - s->copy_walked) / rate);
	char line[256];
	snprintf(line, sizeof(line),
		 "state=%s copied=%s total=%s rate=%s/s eta=%s lag_tx=%" PRIu64
		 " lag_bytes=%s buffer_free=%" PRIu64 "%%",
		 master_state_name(s->fsm.state), format_size(s->copy_walked, a, sizeof(a)),
		 format_size(s->copy_total, b, sizeof(b)), format_size(rate, c, sizeof(c)), eta,
		 committed - acked, format_size(lag, d, sizeof(d)),
		 cap ? (cap - used) * 100 / cap : 0);
	log_info(m->name, "progress %s", line);
	/* Watch's progress tick: the same figures, and the volume's status with it. */
	events_publish(EVENT_PROGRESS, m->name, 0, 0, "%s", line);
	s->rate_mark_ms = now;
	s->rate_mark_bytes = s->copy_bytes;
	s->last_progress_ms = now;
}

/*
 * Dirtying: buffer bytes written per second. Draining: bytes per second the
 * mirror took, as acknowledged records and copied data. While the first stays
 * above the second, the buffer fills and the mirror falls behind: say so, with
 * both rates, when it starts, every PROGRESS_MS while it lasts, and when it ends.
 */
static void sample_rates(struct session *s, uint64_t now)
{
	struct master *m = s->m;
	char a[16], b[16];

	pthread_mutex_lock(&m->lock);
	uint64_t head = journal_head_pos(m->j);
	uint64_t lag = journal_bytes_after(m->j, m->acked_txid);
	uint64_t used = journal_used(m->j), cap = journal_capacity(m->j);
	uint64_t drained = head - lag - m->cracked_bytes + s->copy_bytes_total;
	uint64_t full_waits = m->full_waits;
	pthread_mutex_unlock(&m->lock);

	uint64_t dt = now - s->rate_ms;
	bool first = s->rate_ms == 0;
	uint64_t dirty = first ? 0 : (head - s->rate_head) * 1000 / dt;
	uint64_t drain = first || drained < s->rate_drained ? 0 : (drained - s->rate_drained) * 1000 / dt;
	bool waited = full_waits != s->rate_full_waits;
	s->rate_ms = now;
	s->rate_head = head;
	s->rate_drained = drained;
	s->rate_full_waits = full_waits;
	if (first)
		return;
	/*
	 * Outrun: the buffer grows, and holds enough for it to matter, or (block
	 * policy) writers waited for room, which holds dirtying down to draining;
	 * for OUTRUN_SAMPLES seconds in a row (one second without
	 * acknowledgements, as when a copy hands over to sequencing, is no trend).
	 */
	bool growing = (dirty > drain + drain / 16 && lag >= cap / FREE_STEP) || waited;
	bool keeps_up = !waited && (dirty <= drain || lag < cap / (2 * FREE_STEP));
	s->outrun_samples = growing ? s->outrun_samples + 1 : 0;

	uint64_t copy_rate = first || s->copy_bytes < s->rate_copy_bytes
				     ? 0
				     : (s->copy_bytes - s->rate_copy_bytes) * 1000 / dt;
	s->rate_copy_bytes = s->copy_bytes;
	pthread_mutex_lock(&m->lock);
	m->dirty_rate = dirty;
	m->drain_rate = drain;
	m->copy.active = s->copying;
	m->copy.done_bytes = s->copy_walked;
	m->copy.total_bytes = s->copy_total;
	m->copy.rate_bps = copy_rate;
	m->copy.eta_seconds = copy_rate && s->copy_total > s->copy_walked
				      ? (s->copy_total - s->copy_walked + copy_rate - 1) / copy_rate
				      : 0;
	if (s->outrun_samples >= OUTRUN_SAMPLES)
		m->outrun = true;
	else if (keeps_up)
		m->outrun = false;
	bool now_outrun = m->outrun;
	pthread_mutex_unlock(&m->lock);

	if (now_outrun && (!s->outrun || now - s->outrun_logged_ms >= PROGRESS_MS)) {
		log_warn(m->name, "writes outrun the link to the mirror: dirtying %s/s, draining %s/s; "
			 "mirror buffer %" PRIu64 "%% full%s",
			 format_size(dirty, a, sizeof(a)), format_size(drain, b, sizeof(b)),
			 cap ? used * 100 / cap : 0,
			 waited ? "; writers wait for room (--on-buffer-full=block)" : "");
		s->outrun_logged_ms = now;
	} else if (!now_outrun && s->outrun) {
		log_info(m->name, "the mirror keeps up again: dirtying %s/s, draining %s/s",
			 format_size(dirty, a, sizeof(a)), format_size(drain, b, sizeof(b)));
	}
	s->outrun = now_outrun;
}

/* Periodic duties of a connected session: free, heartbeat, rates, progress. */
int session_housekeeping(struct session *s)
{
	uint64_t now = now_ms();
	if (now - s->last_rx_ms >= s->o.heartbeat_timeout_ms) {
		/* The mirror answers every heartbeat: this much silence is a dead link. */
		session_fail(s, ME_LINK_LOST, 0, "no frame from the mirror for %" PRIu64 " ms (--heartbeat-timeout)",
		     now - s->last_rx_ms);
		return -1;
	}
	if (lanes_check(s) < 0)
		return -1;
	/*
	 * Free as acknowledgements arrive, in steps: each free costs an fdatasync
	 * of the master volume (DUR-6), so free once acknowledged records fill
	 * FREE_STEP of the buffer, and at least once a second. A writer that
	 * finds the buffer full frees at once itself (CRK-2).
	 */
	pthread_mutex_lock(&s->m->lock);
	struct journal *j = s->m->j;
	uint64_t acked_held = journal_used(j) - journal_bytes_after(j, s->m->acked_txid);
	bool step = acked_held >= journal_capacity(j) / FREE_STEP;
	pthread_mutex_unlock(&s->m->lock);
	if (now - s->last_free_ms >= FREE_INTERVAL_MS || step) {
		s->last_free_ms = now;
		if (master_free_acked(s->m) < 0) {
			session_fail(s, ME_SEVERE, 0, "cannot free the mirror buffer: %s", strerror(errno));
			return -1;
		}
	}
	if (now - s->rate_ms >= RATE_SAMPLE_MS)
		sample_rates(s, now);
	uint64_t hb_every = s->o.heartbeat_timeout_ms / 3 < HEARTBEAT_MAX_MS ?
				    s->o.heartbeat_timeout_ms / 3 : HEARTBEAT_MAX_MS;
	if (now - s->last_heartbeat_ms >= hb_every) {
		Frep__V1__Heartbeat hb = FREP__V1__HEARTBEAT__INIT;
		hb.seq = ++s->heartbeat_seq;
		pthread_mutex_lock(&s->m->lock);
		hb.txid = s->m->committed_txid;
		pthread_mutex_unlock(&s->m->lock);
		s->last_heartbeat_ms = now;
		if (session_send(s, FREP_MSG_HEARTBEAT, &hb.base, NULL, 0) < 0)
			return -1;
	}
	if (now - s->last_progress_ms >= PROGRESS_MS) {
		pthread_mutex_lock(&s->m->lock);
		bool inflight = s->m->committed_txid != s->m->acked_txid;
		pthread_mutex_unlock(&s->m->lock);
		if (s->copying || inflight || s->fsm.state != MS_INSYNC)
			session_log_progress(s, now);
		else
			s->last_progress_ms = now;
	}
	return 0;
}

/* Publishes the state for writers (sync, block, degrade) and the control socket. */
void session_publish_state(struct session *s)
{
	struct master *m = s->m;
	/* A paused mirror acknowledges nothing: IDLE runs the degrade clock too. */
	bool insync = s->fsm.state == MS_INSYNC;
	pthread_mutex_lock(&m->lock);
	/* The copy pass and the peer, as the admin API's Status shows them. */
	m->copy.active = s->copying;
	m->copy.done_bytes = s->copy_walked;
	m->copy.total_bytes = s->copy_total;
	m->copy_full = s->pass_full;
	if (s->c != s->published_conn) {
		struct status_peer *p = &m->peer;
		memset(p, 0, sizeof(*p));
		if (s->c) {
			p->connected = true;
			snprintf(p->address, sizeof(p->address), "%s", tls_peer_addr(s->c));
			snprintf(p->identity, sizeof(p->identity), "%s", tls_peer_cn(s->c));
			snprintf(p->cipher, sizeof(p->cipher), "%s", tls_cipher(s->c));
			p->lanes = s->lanes;
			p->protocol = s->version;
			snprintf(p->compression, sizeof(p->compression), "%s",
				 compress_name(s->out.compression));
		}
		s->published_conn = s->c;
	}
	if (s->c) {
		/* Every lane's: the compression ratio is the session's. */
		uint64_t data, wire;
		lanes_bytes(s, &data, &wire);
		data += atomic_load(&s->out.data_bytes);
		wire += atomic_load(&s->out.wire_bytes);
		m->peer.data_bytes = data;
		m->peer.wire_bytes = wire;
		m->peer.compression_ratio = wire ? (double)data / (double)wire : 1;
	}
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
	verify_state_locked(m, s->fsm.state);
	pthread_mutex_unlock(&m->lock);
}
static void backoff_wait(struct session *s)
{
	if (now_ms() < s->quick_retry_until_ms) {
		/*
		 * A crack ended a pass: the next one starts now, it is no failure of
		 * the link. The mirror may take a moment to see the old session go
		 * (BUSY): retry every QUICK_RETRY_MS meanwhile, without growing the
		 * backoff.
		 */
		if (s->retry_now) {
			s->retry_now = false;
			return;
		}
		struct timespec nap = { .tv_sec = 0, .tv_nsec = QUICK_RETRY_MS * 1000000L };
		nanosleep(&nap, NULL);
		return;
	}
	if (s->backoff_ms == 0)
		s->backoff_ms = s->o.backoff_min_ms;
	uint32_t jitter;
	random_bytes(&jitter, sizeof(jitter));
	uint64_t wait = s->backoff_ms / 2 + jitter % (s->backoff_ms / 2 + 1);
	struct timespec until;
	deadline_in(CLOCK_REALTIME, wait, &until);
	pthread_mutex_lock(&s->m->lock);
	while (!s->m->stopping && pthread_cond_timedwait(&s->m->cond, &s->m->lock, &until) == 0)
		;
	pthread_mutex_unlock(&s->m->lock);
	s->backoff_ms = s->backoff_ms * 2 > s->o.backoff_max_ms ? s->o.backoff_max_ms : s->backoff_ms * 2;
}

/* The mirror buffer was reserved by master_open: INIT, unless it found a committed record damaged. */
void session_enter(struct session *s)
{
	struct master *m = s->m;

	if (m->journal_damage[0]) {
		/* A damaged committed record: replicating on could hide divergence. */
		master_fsm_feed(&s->fsm, ME_JOURNAL_FAIL, m->journal_damage);
		const char *prefix = "CHECKSUM: ", *why = m->journal_damage;
		if (strncmp(why, prefix, strlen(prefix)) == 0)
			why += strlen(prefix);
		note_error(s, "CHECKSUM", why);
	} else {
		master_fsm_feed(&s->fsm, ME_JOURNAL_OK, NULL);
	}
}

void session_step(struct session *s)
{
	struct master *m = s->m;

	session_publish_state(s);
	switch (s->fsm.state) {
	case MS_INIT:
		session_step_init(s);
		break;
	case MS_MAKEPARTS:
		session_step_makeparts(s);
		break;
	case MS_READY:
		session_step_ready(s);
		break;
	case MS_REPLICATE:
	case MS_OUTOFSYNC:
		session_step_copy(s);
		break;
	case MS_INSYNC:
	case MS_IDLE:
		session_sequence(s, s->fsm.state);
		break;
	case MS_RESET:
	case MS_LINKDOWN:
		backoff_wait(s);
		if (!session_stopping(s))
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
		session_fail(s, ME_SEVERE, 0, "session in state %s", master_state_name(s->fsm.state));
		break;
	}
}

void session_leave(struct session *s)
{
	if (s->c) {
		Frep__V1__Goodbye g = FREP__V1__GOODBYE__INIT;
		g.reason = "master shutting down";
		frame_send(&s->out, FREP_MSG_GOODBYE, &g.base, NULL, 0);
		disconnect(s);
	}
	master_free_acked(s->m);
}

static void *session_main(void *arg)
{
	struct session *s = arg;

	session_enter(s);
	while (!session_stopping(s))
		session_step(s);
	session_leave(s);
	return NULL;
}

struct session *session_new(struct master *m, const struct session_options *o)
{
	struct session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->m = m;
	s->o = *o;
	s->buf_len = m->max_payload > COPY_CHUNK ? m->max_payload : COPY_CHUNK;
	s->buf = malloc(s->buf_len);
	if (!s->buf) {
		free(s);
		return NULL;
	}
	frame_reader_init(&s->rd);
	master_fsm_init(&s->fsm, m->name);
	return s;
}

void session_free(struct session *s)
{
	frame_reader_free(&s->rd);
	frame_writer_free(&s->out);
	free(s->runs);
	free(s->buf);
	free(s);
}

struct session *session_start(struct master *m, const struct session_options *o)
{
	struct session *s = session_new(m, o);
	if (s && pthread_create(&s->thread, NULL, session_main, s) != 0) {
		session_free(s);
		return NULL;
	}
	return s;
}

void session_join(struct session *s)
{
	pthread_join(s->thread, NULL);
	session_free(s);
}
