/* Master session, sequencing (spec "INSYNC", "Buffer full", "IDLE"): TXs in TXID order with a window, acknowledgements, cracks, operator requests. */
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
#include "lanes.h"
#include "log.h"
#include "session-internal.h"
#include "tls.h"
#include "util.h"
#include "verify.h"

/* Handles one frame from the mirror while copying or sequencing. 0 or -1 (state changed). */
static uint64_t switch_txid_of(struct master *m)
{
	pthread_mutex_lock(&m->lock);
	uint64_t t = m->switch_txid;
	pthread_mutex_unlock(&m->lock);
	return t;
}

static int handle_incoming(struct session *s)
{
	struct master *m = s->m;
	struct frame f;
	int type = session_recv(s, &f);
	if (type < 0)
		return -1;

	switch (type) {
	case FREP_MSG_TX_ACK: {
		Frep__V1__TxAck *a = (Frep__V1__TxAck *)f.msg;
		if (session_feed(s, ME_MSG_TX_ACK, type) < 0)
			return -1;
		if (a->txid > s->max_sent) {
			session_fail(s, ME_SEVERE, FREP_E_PROTOCOL,
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
		if (session_feed(s, ME_MSG_RESEND, type) < 0)
			return -1;
		pthread_mutex_lock(&m->lock);
		uint64_t first = journal_first_txid(m->j);
		pthread_mutex_unlock(&m->lock);
		if (r->from_txid < first || r->from_txid > r->to_txid || r->to_txid > s->max_sent) {
			session_fail(s, ME_SEVERE, FREP_E_PROTOCOL,
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
		if (session_feed(s, ME_MSG_COPY_ACK, type) < 0)
			return -1;
		/*
		 * The master clears what it covers (CRK-5), so it may not exceed
		 * what was sent: the records so far, or after COPY_DONE the whole
		 * volume (COPY-8).
		 */
		uint64_t sent = s->copying ? s->copy_off : m->vol.size;
		if (a->through > sent) {
			session_fail(s, ME_SEVERE, FREP_E_PROTOCOL, "COPY_ACK through %" PRIu64
			     " beyond what was copied (%" PRIu64 ")", a->through, sent);
			return -1;
		}
		s->copy_acked = a->through;
		return session_copy_acked(s, a->through);
	}
	case FREP_MSG_CONSISTENT: {
		Frep__V1__Consistent *c = (Frep__V1__Consistent *)f.msg;
		/* The mirror may have applied past t_c in the same batch: any sent TXID >= t_c. */
		if (s->copying || c->txid < s->copy_tc || c->txid > s->max_sent) {
			session_fail(s, ME_SEVERE, FREP_E_PROTOCOL,
			     "CONSISTENT at TXID %" PRIu64 " outside %" PRIu64 "..%" PRIu64
			     " (copy end .. highest sent)",
			     c->txid, s->copy_tc, s->max_sent);
			return -1;
		}
		if (session_feed(s, ME_MSG_CONSISTENT, type) < 0)
			return -1;
		pthread_mutex_lock(&m->lock);
		if (m->synced_txid < c->txid)
			m->synced_txid = c->txid;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		log_info(m->name, "mirror consistent at TXID %" PRIu64, c->txid);
		if (s->failback) {
			s->failback = false;
			master_failback_done(m);
		}
		s->backoff_ms = 0;
		return 0;
	}
	case FREP_MSG_VERIFY_RESULT: {
		if (session_feed(s, ME_MSG_VERIFY_RESULT, type) < 0)
			return -1;
		char why[512];
		pthread_mutex_lock(&m->lock);
		int rc = verify_result_locked(m, (Frep__V1__VerifyResult *)f.msg, why, sizeof(why));
		pthread_mutex_unlock(&m->lock);
		if (rc < 0) {
			session_fail(s, ME_SEVERE, FREP_E_PROTOCOL, "%s", why);
			return -1;
		}
		return 0;
	}
	case FREP_MSG_SWITCHOVER_DONE: {
		Frep__V1__SwitchoverDone *d = (Frep__V1__SwitchoverDone *)f.msg;
		pthread_mutex_lock(&m->lock);
		bool sent = m->switch_state == SWITCH_SENT;
		pthread_mutex_unlock(&m->lock);
		if (!sent || d->txid != switch_txid_of(m)) {
			session_fail(s, ME_SEVERE, FREP_E_UNEXPECTED, "SWITCHOVER_DONE at TXID %" PRIu64
				     " answers no SWITCHOVER of this master", d->txid);
			return -1;
		}
		if (session_feed(s, ME_MSG_SWITCHOVER_DONE, type) < 0)
			return -1;
		pthread_mutex_lock(&m->lock);
		m->switch_epoch = d->epoch;
		m->switch_state = SWITCH_DONE;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		log_warn(m->name, "switchover: the mirror's copy is the primary at epoch %" PRIu64
			 " after TXID %" PRIu64, d->epoch, d->txid);
		return 0;
	}
	case FREP_MSG_HEARTBEAT:
		return session_feed(s, ME_MSG_HEARTBEAT, type);
	default:
		session_fail(s, ME_SEVERE, FREP_E_UNEXPECTED, "%s is not a message a mirror sends",
		     frep_msg_name((unsigned)type));
		return -1;
	}
}

/* Drains frames already waiting, without blocking. 0 or -1 (state changed). */
int session_drain(struct session *s)
{
	while (s->c && tls_readable(s->c, 0))
		if (handle_incoming(s) < 0)
			return -1;
	return 0;
}

/*
 * A crack dropped records the session may still have to send. In a copy the
 * FSM stays put and session_step_copy starts another pass; in INSYNC or IDLE it goes
 * OUTOFSYNC. Returns true if there was one (the caller returns to the loop).
 */
bool session_cracked(struct session *s)
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
		 * fresh connection (RESET, then INIT and READY decide it), at once.
		 * A reset, not a close: on a slow link the abandoned pass's data
		 * still in flight would hold the mirror's session (and the volume,
		 * BUSY) until it drained.
		 */
		lanes_close(s, true);
		tls_abort(s->c);
		s->c = NULL;
		session_fail(s, ME_MINOR, 0, "mirror buffer overflowed during the copy: another pass follows");
		s->retry_now = true;
		s->quick_retry_until_ms = now_ms() + QUICK_RETRY_FOR_MS;
	}
	return true;
}

/* Sends committed TXIDs from next_send, within the window. 0 or -1 (state changed). */
static int send_committed(struct session *s)
{
	struct master *m = s->m;
	while (s->fsm.state != MS_IDLE) { /* IDLE: the operator paused sequencing */
		struct journal_rec r;
		if (session_cracked(s))
			return -1;
		struct journal_loc loc;
		const void *data = s->buf;
		pthread_mutex_lock(&m->lock);
		/* A VERIFY goes right after the TX it was hashed at, before the next (VFY-3). */
		Frep__V1__Verify vr;
		uint8_t hash[FREP_VERIFY_HASH_SIZE];
		int due = verify_due_locked(m, s->next_send, &vr, hash);
		if (due != 0) {
			pthread_mutex_unlock(&m->lock);
			if (due < 0)
				return 0; /* still hashing: the verify thread wakes us */
			if (session_send(s, FREP_MSG_VERIFY, &vr.base, NULL, 0) < 0)
				return -1;
			continue;
		}
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
			if (session_cracked(s))
				return -1;
			session_fail(s, ME_SEVERE, 0, "reading TXID %" PRIu64 " from the mirror buffer: %s",
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
		if (session_send(s, FREP_MSG_TX, &tx.base, data, dlen) < 0)
			return -1;
		pthread_mutex_lock(&m->lock);
		master_release_cached_locked(m, r.txid);
		pthread_mutex_unlock(&m->lock);
		if (s->next_send > s->max_sent)
			s->max_sent = s->next_send;
		s->next_send++;
		s->inflight_since_ack += dlen;
		if (session_drain(s) < 0)
			return -1;
	}
	return 0;
}
/*
 * Waits up to timeout_ms for a frame from the mirror or a new commit, and
 * handles the frame. 0 or -1 (state changed).
 */
int session_wait_event(struct session *s, int timeout_ms)
{
	if (tls_readable(s->c, 0))
		return handle_incoming(s);
	struct pollfd p[2] = {
		{ .fd = tls_fd(s->c), .events = POLLIN },
		{ .fd = s->m->notify_fd, .events = POLLIN },
	};
	if (poll(p, 2, timeout_ms) < 0 && errno != EINTR) {
		session_fail(s, ME_SEVERE, 0, "poll: %s", strerror(errno));
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

/*
 * Operator settings from the admin API. A pause holds until resumed, across
 * reconnects and restarts: INSYNC with it set pauses at once. 0, or -1 if the
 * state changed.
 */
static int take_requests(struct session *s)
{
	struct master *m = s->m;
	pthread_mutex_lock(&m->lock);
	bool paused = m->paused, full = m->resync_full_req;
	bool pause = paused && s->fsm.state == MS_INSYNC, resume = !paused && s->fsm.state == MS_IDLE;
	if (full && (s->fsm.state == MS_INSYNC || s->fsm.state == MS_IDLE))
		m->resync_full_req = false;
	pthread_mutex_unlock(&m->lock);

	if (pause && s->fsm.state == MS_INSYNC) {
		Frep__V1__Pause p = FREP__V1__PAUSE__INIT;
		if (session_send(s, FREP_MSG_PAUSE, &p.base, NULL, 0) < 0)
			return -1;
		master_fsm_feed(&s->fsm, ME_PAUSE, "operator");
		return -1;
	}
	if (resume && s->fsm.state == MS_IDLE) {
		Frep__V1__Resume r = FREP__V1__RESUME__INIT;
		if (session_send(s, FREP_MSG_RESUME, &r.base, NULL, 0) < 0)
			return -1;
		master_fsm_feed(&s->fsm, ME_RESUME, "operator");
		return -1;
	}
	pthread_mutex_lock(&m->lock);
	bool switch_now = m->switch_state == SWITCH_ASKED && s->fsm.state == MS_INSYNC &&
			  m->acked_txid >= m->switch_txid;
	uint64_t switch_txid = m->switch_txid;
	if (switch_now)
		m->switch_state = SWITCH_SENT, m->switch_sent = true;
	pthread_mutex_unlock(&m->lock);
	if (switch_now) {
		/* SWO-2: everything acknowledged, nothing more to come: the mirror takes over. */
		Frep__V1__Switchover w = FREP__V1__SWITCHOVER__INIT;
		w.txid = switch_txid;
		if (session_send(s, FREP_MSG_SWITCHOVER, &w.base, NULL, 0) < 0)
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
void session_sequence(struct session *s, enum master_state state)
{
	while (s->fsm.state == state && !session_stopping(s)) {
		session_publish_state(s);
		if (session_cracked(s) || take_requests(s) < 0 || send_committed(s) < 0 ||
		    session_housekeeping(s) < 0)
			return;
		if (s->fsm.state != state)
			return;
		if (session_wait_event(s, 200) < 0)
			return;
	}
}
