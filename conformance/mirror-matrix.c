/*
 * Every (state, message) pair a master can put on the wire to a mirror: a legal
 * pair must get its reply and lead to its state, an illegal one the severe
 * UNEXPECTED, and the mirror must go on serving (FSM-1, spec "State machines").
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "mirror.h"

/* What a case sends in the state; START_COPY comes in both kinds. */
enum msend {
	SEND_HELLO, SEND_EXTENT_TABLE, SEND_START_REPLICATE, SEND_START_OUTOFSYNC, SEND_START_SYNC,
	SEND_COPY_DATA, SEND_COPY_HOLE, SEND_COPY_DONE, SEND_TX, SEND_HEARTBEAT, SEND_PAUSE,
	SEND_RESUME, SEND_VERIFY, SEND_ERROR, SEND_GOODBYE,
	/* Types only a mirror sends (MSG-6). */
	SEND_WELCOME, SEND_PARTS_READY, SEND_COPY_ACK, SEND_TX_ACK, SEND_RESEND, SEND_CONSISTENT,
	SEND_VERIFY_RESULT,
	SEND__N
};

static const char *const send_name[SEND__N] = {
	"hello", "extent-table", "start-copy-replicate", "start-copy-outofsync", "start-sync",
	"copy-data", "copy-hole", "copy-done", "tx", "heartbeat", "pause", "resume", "verify",
	"error", "goodbye", "welcome", "parts-ready", "copy-ack", "tx-ack", "resend", "consistent",
	"verify-result",
};

static int send_it(struct cctx *x, int m)
{
	switch (m) {
	case SEND_HELLO: {
		struct hello_args a;
		hello_defaults(x, &a);
		return m_send_hello(x, &a);
	}
	case SEND_EXTENT_TABLE: {
		Frep__V1__ExtentTable t = FREP__V1__EXTENT_TABLE__INIT;
		t.extent_size = &x->volume_size;
		t.n_extent_size = 1;
		return cx_send(x, FREP_MSG_EXTENT_TABLE, &t.base, NULL, 0);
	}
	case SEND_START_REPLICATE:
		return m_start_copy(x, FREP__V1__PHASE__PHASE_REPLICATE, 0, true, 0);
	case SEND_START_OUTOFSYNC:
		return m_start_copy(x, FREP__V1__PHASE__PHASE_OUTOFSYNC, 0, false, 0);
	case SEND_START_SYNC: {
		Frep__V1__StartSync s = FREP__V1__START_SYNC__INIT;
		return cx_send(x, FREP_MSG_START_SYNC, &s.base, NULL, 0);
	}
	case SEND_COPY_DATA:
		return m_copy_data(x, 0, 4096, 1);
	case SEND_COPY_HOLE:
		return m_copy_hole(x, 4096, 4096);
	case SEND_COPY_DONE:
		return m_copy_done(x, 0, 0);
	case SEND_TX:
		return m_tx(x, 1, FREP__V1__TX_OP__TX_WRITE, 0, 4096);
	case SEND_HEARTBEAT: {
		Frep__V1__Heartbeat hb = FREP__V1__HEARTBEAT__INIT;
		hb.seq = ++x->hb_seq;
		return cx_send(x, FREP_MSG_HEARTBEAT, &hb.base, NULL, 0);
	}
	case SEND_PAUSE: {
		Frep__V1__Pause p = FREP__V1__PAUSE__INIT;
		return cx_send(x, FREP_MSG_PAUSE, &p.base, NULL, 0);
	}
	case SEND_RESUME: {
		Frep__V1__Resume r = FREP__V1__RESUME__INIT;
		return cx_send(x, FREP_MSG_RESUME, &r.base, NULL, 0);
	}
	case SEND_VERIFY: {
		/* Legal only in INSYNC, where the matrix's mirror is at TXID 0 (VFY-3). */
		uint8_t hash[FREP_VERIFY_HASH_SIZE] = { 0 };
		return m_verify(x, 1, 0, 4096, 0, hash, sizeof(hash));
	}
	case SEND_VERIFY_RESULT: {
		Frep__V1__VerifyResult r = FREP__V1__VERIFY_RESULT__INIT;
		r.verify_id = 1;
		r.status = FREP__V1__VERIFY_STATUS__VERIFY_NOT_AT_TXID;
		return cx_send(x, FREP_MSG_VERIFY_RESULT, &r.base, NULL, 0);
	}
	case SEND_ERROR: {
		Frep__V1__Error e = FREP__V1__ERROR__INIT;
		e.code = FREP_E_PROTOCOL;
		e.severe = true;
		e.message = "frep-conform: an error from the master";
		return cx_send(x, FREP_MSG_ERROR, &e.base, NULL, 0);
	}
	case SEND_GOODBYE: {
		Frep__V1__Goodbye g = FREP__V1__GOODBYE__INIT;
		g.reason = "frep-conform: goodbye";
		return cx_send(x, FREP_MSG_GOODBYE, &g.base, NULL, 0);
	}
	case SEND_WELCOME: {
		Frep__V1__Welcome w = FREP__V1__WELCOME__INIT;
		w.proto_version = 1;
		return cx_send(x, FREP_MSG_WELCOME, &w.base, NULL, 0);
	}
	case SEND_PARTS_READY: {
		Frep__V1__PartsReady p = FREP__V1__PARTS_READY__INIT;
		p.volume_size = x->volume_size;
		return cx_send(x, FREP_MSG_PARTS_READY, &p.base, NULL, 0);
	}
	case SEND_COPY_ACK: {
		Frep__V1__CopyAck a = FREP__V1__COPY_ACK__INIT;
		return cx_send(x, FREP_MSG_COPY_ACK, &a.base, NULL, 0);
	}
	case SEND_TX_ACK: {
		Frep__V1__TxAck a = FREP__V1__TX_ACK__INIT;
		return cx_send(x, FREP_MSG_TX_ACK, &a.base, NULL, 0);
	}
	case SEND_RESEND: {
		Frep__V1__Resend r = FREP__V1__RESEND__INIT;
		r.from_txid = 1;
		r.to_txid = 1;
		return cx_send(x, FREP_MSG_RESEND, &r.base, NULL, 0);
	}
	case SEND_CONSISTENT: {
		Frep__V1__Consistent c = FREP__V1__CONSISTENT__INIT;
		return cx_send(x, FREP_MSG_CONSISTENT, &c.base, NULL, 0);
	}
	}
	return cx_fail(x, "internal: no message %d", m);
}

/* The state READY of a consistent volume, where START_SYNC is legal (RDY-3). */
static int reach(struct cctx *x, int s)
{
	if (s != MS_READY)
		return m_reach(x, s);
	STEP(m_insync(x));
	STEP(m_goodbye(x));
	STEP(m_reopen(x, NULL));
	return m_parts(x, NULL, 0, NULL);
}

/* After a legal message: proves the state it led to with a message legal only there. */
static int prove_state(struct cctx *x, int s)
{
	uint64_t t;
	switch (s) {
	case MS_MAKEPARTS:
		return m_parts(x, NULL, 0, NULL);
	case MS_REPLICATE:
	case MS_OUTOFSYNC:
		/* A pass in progress takes COPY_DONE and then says CONSISTENT. */
		STEP(m_copy_done(x, 0, 0));
		STEP(m_wait_consistent(x, &t));
		CHECK(x, t == 0, "CONSISTENT %" PRIu64 " after an empty pass from base 0", t);
		return 0;
	case MS_INSYNC: {
		/* Only INSYNC takes PAUSE. */
		Frep__V1__Pause p = FREP__V1__PAUSE__INIT;
		STEP(cx_send(x, FREP_MSG_PAUSE, &p.base, NULL, 0));
		return m_sync(x);
	}
	case MS_IDLE: {
		/* Only IDLE takes RESUME. */
		Frep__V1__Resume r = FREP__V1__RESUME__INIT;
		STEP(cx_send(x, FREP_MSG_RESUME, &r.base, NULL, 0));
		return m_sync(x);
	}
	default:
		return m_sync(x);
	}
}

/* The outcome the spec's tables give: the state a legal pair leads to, or -1. */
static int legal_next(int s, int m)
{
	switch (s) {
	case MS_INIT:
		return m == SEND_HELLO ? MS_MAKEPARTS : -1;
	case MS_MAKEPARTS:
		return m == SEND_EXTENT_TABLE ? MS_READY : m == SEND_HEARTBEAT ? MS_MAKEPARTS : -1;
	case MS_READY:
		return m == SEND_START_REPLICATE ? MS_REPLICATE
		       : m == SEND_START_OUTOFSYNC ? MS_OUTOFSYNC
		       : m == SEND_START_SYNC	   ? MS_INSYNC
		       : m == SEND_HEARTBEAT	   ? MS_READY
						   : -1;
	case MS_REPLICATE:
	case MS_OUTOFSYNC: {
		int again = s == MS_REPLICATE ? SEND_START_REPLICATE : SEND_START_OUTOFSYNC;
		/* A TX before COPY_DONE is UNEXPECTED (COPY-10). */
		return m == SEND_COPY_DATA || m == SEND_COPY_HOLE || m == SEND_HEARTBEAT || m == again
			       ? s
		       : m == SEND_COPY_DONE ? MS_INSYNC
					     : -1;
	}
	case MS_INSYNC:
		return m == SEND_TX || m == SEND_HEARTBEAT || m == SEND_VERIFY ? MS_INSYNC
		       : m == SEND_PAUSE		   ? MS_IDLE
		       : m == SEND_START_OUTOFSYNC	   ? MS_OUTOFSYNC
							   : -1;
	case MS_IDLE:
		return m == SEND_TX || m == SEND_HEARTBEAT ? MS_IDLE
		       : m == SEND_RESUME		   ? MS_INSYNC
		       : m == SEND_START_OUTOFSYNC	   ? MS_OUTOFSYNC
							   : -1;
	}
	return -1;
}

static int run_pair(struct cctx *x, int s, int m)
{
	STEP(reach(x, s));
	m_reset_seen(x);
	if (m == SEND_ERROR || m == SEND_GOODBYE) {
		/* ERR-2, BYE-1: the mirror closes and answers nothing. */
		STEP(send_it(x, m));
		return cx_expect_close(x);
	}
	int next = legal_next(s, m);
	if (next < 0) {
		STEP(send_it(x, m));
		return cx_expect_error(x, FREP_E_UNEXPECTED, NULL);
	}
	struct frame f;
	uint64_t t;
	STEP(send_it(x, m));
	switch (m) {
	case SEND_HELLO:
		STEP(cx_expect(x, FREP_MSG_WELCOME, NULL));
		break;
	case SEND_EXTENT_TABLE:
		STEP(cx_expect(x, FREP_MSG_PARTS_READY, &f));
		break;
	case SEND_COPY_DONE:
		STEP(m_wait_copy_ack(x, x->volume_size));
		STEP(m_wait_consistent(x, &t));
		CHECK(x, t == 0, "CONSISTENT %" PRIu64 " after an empty pass from base 0", t);
		break;
	case SEND_TX:
		STEP(m_wait_ack(x, 1));
		break;
	case SEND_HEARTBEAT:
		STEP(m_wait_echo(x));
		break;
	case SEND_VERIFY:
		STEP(m_wait_verify(x, 1));
		break;
	default:
		break;
	}
	return prove_state(x, next);
}

static int run_matrix_case(struct cctx *x)
{
	return run_pair(x, x->kase->state, x->kase->msg);
}

/*
 * The clauses a pair checks: FSM-1 for the illegal ones (and MSG-6 for a type
 * no master sends), FSM-10 and the message's own rules for the legal ones.
 */
static const char *pair_clauses(int s, int m)
{
	if (m >= SEND_WELCOME)
		return "FSM-1 MSG-6";
	if (m == SEND_ERROR)
		return "ERR-2";
	if (m == SEND_GOODBYE)
		return "BYE-1";
	if (legal_next(s, m) < 0) {
		switch (m) {
		case SEND_HEARTBEAT: return "FSM-1 HB-4";
		case SEND_PAUSE:
		case SEND_RESUME: return "FSM-1 IDLE-1";
		case SEND_TX: return s == MS_REPLICATE || s == MS_OUTOFSYNC ? "FSM-1 COPY-10" : "FSM-1";
		case SEND_START_REPLICATE:
		case SEND_START_OUTOFSYNC: return "FSM-1 COPY-17";
		case SEND_VERIFY: return "FSM-1 VFY-4";
		default: return s == MS_INIT ? "FSM-1 HS-1" : "FSM-1";
		}
	}
	switch (m) {
	case SEND_HELLO: return "FSM-10 HS-1";
	case SEND_EXTENT_TABLE: return "FSM-10 MP-3";
	case SEND_HEARTBEAT: return "FSM-10 HB-2 HB-4";
	case SEND_PAUSE:
	case SEND_RESUME: return "FSM-10 IDLE-1";
	case SEND_START_REPLICATE:
	case SEND_START_OUTOFSYNC: return s == MS_IDLE ? "FSM-10 COPY-17 IDLE-4" : "FSM-10 COPY-17";
	case SEND_START_SYNC: return "FSM-10 RDY-3";
	case SEND_TX: return s == MS_IDLE ? "FSM-10 IDLE-2 SEQ-4" : "FSM-10 SEQ-4";
	case SEND_COPY_DONE: return "FSM-10 COPY-11";
	case SEND_VERIFY: return "FSM-10 VFY-5";
	default: return "FSM-10";
	}
}

const struct conform_case *mirror_matrix_cases(void)
{
	static struct conform_case cases[MS__N * SEND__N + 1];
	static char ids[MS__N * SEND__N][64], titles[MS__N * SEND__N][96];
	if (cases[0].id)
		return cases;
	unsigned n = 0;
	for (int s = 0; s < MS__N; s++) {
		for (int m = 0; m < SEND__N; m++, n++) {
			char st[16];
			snprintf(st, sizeof(st), "%s", mstate_name(s));
			for (char *c = st; *c; c++)
				*c = (char)(*c - 'A' + 'a');
			snprintf(ids[n], sizeof(ids[n]), "mirror.state.%s.%s", st, send_name[m]);
			int next = legal_next(s, m);
			if (m == SEND_ERROR || m == SEND_GOODBYE)
				snprintf(titles[n], sizeof(titles[n]), "%s in %s: the mirror closes without an answer",
					 send_name[m], mstate_name(s));
			else if (next < 0)
				snprintf(titles[n], sizeof(titles[n]), "%s in %s is UNEXPECTED", send_name[m],
					 mstate_name(s));
			else
				snprintf(titles[n], sizeof(titles[n]), "%s in %s is answered and leads to %s",
					 send_name[m], mstate_name(s), mstate_name(next));
			cases[n] = (struct conform_case){
				.id = ids[n],
				.clauses = pair_clauses(s, m),
				.title = titles[n],
				.role = ROLE_MIRROR,
				.run = run_matrix_case,
				.state = s,
				.msg = m,
			};
		}
	}
	return cases;
}

