/*
 * Every (state, message) pair a mirror can put on the wire to a master: a
 * legal pair must be taken and lead to its state, an illegal one gets the
 * severe UNEXPECTED, and the master lives on (FSM-1, spec "State machines",
 * master table). The states are those a mirror can hold the master in: INIT
 * (HELLO read, no WELCOME yet), MAKEPARTS (EXTENT_TABLE read, no PARTS_READY
 * yet), REPLICATE and OUTOFSYNC (a pass started, no CONSISTENT yet), INSYNC,
 * and IDLE, which only an operator reaches (--pause-cmd; SKIP without it).
 * READY sends START_* at once: no mirror can hold a master there.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "master.h"
#include "util.h"

#define PH_REPLICATE FREP__V1__PHASE__PHASE_REPLICATE
#define PH_OUTOFSYNC FREP__V1__PHASE__PHASE_OUTOFSYNC

/* What a case sends in the state: what a mirror sends, then what only a master sends (MSG-6). */
enum msend {
	SEND_WELCOME, SEND_PARTS_READY, SEND_COPY_ACK, SEND_TX_ACK, SEND_RESEND, SEND_CONSISTENT,
	SEND_VERIFY_RESULT, SEND_HEARTBEAT, SEND_ERROR, SEND_GOODBYE,
	SEND_HELLO, SEND_EXTENT_TABLE, SEND_START_COPY, SEND_START_SYNC, SEND_COPY_DATA,
	SEND_COPY_HOLE, SEND_COPY_DONE, SEND_TX, SEND_PAUSE, SEND_RESUME, SEND_VERIFY,
	SEND__N
};

static const char *const send_name[SEND__N] = {
	"welcome", "parts-ready", "copy-ack", "tx-ack", "resend", "consistent", "verify-result",
	"heartbeat", "error", "goodbye", "hello", "extent-table", "start-copy", "start-sync",
	"copy-data", "copy-hole", "copy-done", "tx", "pause", "resume", "verify",
};

/*
 * VERIFY_RESULT is legal in OUTOFSYNC, INSYNC and IDLE (VFY-7: one may be in
 * flight at a crack or a pause), but here it answers no VERIFY: PROTOCOL (VFY-5).
 */
static bool unsolicited_result(int st, int m)
{
	return m == SEND_VERIFY_RESULT && (st == MST_OUTOFSYNC || st == MST_INSYNC || st == MST_IDLE);
}

static const char *const state_name[MST__N] = { "INIT", "MAKEPARTS", "REPLICATE", "OUTOFSYNC",
						 "INSYNC", "IDLE" };

/* The TXs sent on this connection in the state reached: [first, s->max_txid]. */
static uint64_t first_sent;

static int write_two(struct mside *s)
{
	STEP(ms_write(s, 0, 4096, s->committed + 1));
	STEP(ms_write(s, 65536, 8192, s->committed + 1));
	return ms_txs(s, s->committed);
}

/* Takes a fresh master to state st; in the copy states and INSYNC two TXs are out, unacknowledged. */
static int reach(struct mside *s, int st)
{
	switch (st) {
	case MST_INIT:
		return ms_accept(s);
	case MST_MAKEPARTS: {
		struct mwelcome w = wel_new();
		STEP(ms_accept(s));
		STEP(ms_welcome(s, &w));
		return ms_extents(s);
	}
	case MST_REPLICATE:
		STEP(ms_open(s, NULL));
		STEP(ms_start_copy(s, PH_REPLICATE));
		STEP(ms_copy(s));
		STEP(ms_txs(s, s->copy.t_c));
		first_sent = s->committed + 1;
		return write_two(s);
	case MST_OUTOFSYNC: {
		STEP(ms_accept(s));
		STEP(ms_nbd(s));
		struct mwelcome w = { .proto_version = 1, .known = true, .durable_txid = s->committed,
				      .phase = PH_OUTOFSYNC };
		STEP(ms_write(s, 4096, 4096, 1));
		STEP(ms_welcome(s, &w));
		STEP(ms_extents(s));
		STEP(ms_parts_ready(s, false, 0));
		STEP(ms_start_copy(s, PH_OUTOFSYNC));
		STEP(ms_copy(s));
		STEP(ms_txs(s, s->copy.t_c));
		first_sent = s->committed + 1;
		return write_two(s);
	}
	case MST_INSYNC:
		STEP(ms_insync(s));
		first_sent = s->committed + 1;
		return write_two(s);
	case MST_IDLE:
		STEP(ms_insync(s));
		first_sent = s->committed + 1;
		STEP(write_two(s));
		STEP(ms_pause(s));
		return ms_expect(s, FREP_MSG_PAUSE, NULL);
	}
	return cx_fail(s->x, "internal: no state %d", st);
}

static int send_it(struct mside *s, int m)
{
	struct cctx *x = s->x;
	switch (m) {
	case SEND_WELCOME: {
		struct mwelcome w = wel_new();
		return ms_welcome(s, &w);
	}
	case SEND_PARTS_READY:
		return ms_parts_ready(s, true, s->volume_size ? s->volume_size : 1 << 20);
	case SEND_COPY_ACK:
		return ms_copy_ack(s, s->volume_size);
	case SEND_TX_ACK:
		return ms_ack(s, s->max_txid);
	case SEND_RESEND:
		return ms_resend(s, first_sent, s->max_txid);
	case SEND_CONSISTENT:
		return ms_consistent(s, s->max_txid);
	case SEND_VERIFY_RESULT: {
		uint8_t hash[FREP_VERIFY_HASH_SIZE] = { 0 };
		Frep__V1__VerifyResult r = FREP__V1__VERIFY_RESULT__INIT;
		r.verify_id = 1;
		r.txid = s->max_txid;
		r.status = FREP__V1__VERIFY_STATUS__VERIFY_HASHED;
		r.has_hash = true;
		r.hash = (ProtobufCBinaryData){ sizeof(hash), hash };
		return cx_send(x, FREP_MSG_VERIFY_RESULT, &r.base, NULL, 0);
	}
	case SEND_VERIFY: {
		uint8_t hash[FREP_VERIFY_HASH_SIZE] = { 0 };
		Frep__V1__Verify v = FREP__V1__VERIFY__INIT;
		v.verify_id = 1;
		v.length = 4096;
		v.hash = (ProtobufCBinaryData){ sizeof(hash), hash };
		return cx_send(x, FREP_MSG_VERIFY, &v.base, NULL, 0);
	}
	case SEND_HEARTBEAT: {
		Frep__V1__Heartbeat hb = FREP__V1__HEARTBEAT__INIT;
		hb.seq = 1;
		hb.txid = s->acked;
		return cx_send(x, FREP_MSG_HEARTBEAT, &hb.base, NULL, 0);
	}
	case SEND_ERROR: {
		Frep__V1__Error e = FREP__V1__ERROR__INIT;
		e.code = FREP_E_PROTOCOL;
		e.severe = true;
		e.message = "frep-conform: an error from the mirror";
		return cx_send(x, FREP_MSG_ERROR, &e.base, NULL, 0);
	}
	case SEND_GOODBYE: {
		Frep__V1__Goodbye g = FREP__V1__GOODBYE__INIT;
		g.reason = "frep-conform: goodbye";
		return cx_send(x, FREP_MSG_GOODBYE, &g.base, NULL, 0);
	}
	case SEND_HELLO: {
		Frep__V1__Hello h = FREP__V1__HELLO__INIT;
		uint8_t id[16] = { 1 };
		h.proto_min = h.proto_max = 1;
		h.master_node = "frep-conform";
		h.volume = "frep-conform";
		h.volume_uuid = (ProtobufCBinaryData){ sizeof(id), id };
		h.session_id = (ProtobufCBinaryData){ sizeof(id), id };
		h.generation = 1;
		h.lane_count = 1;
		return cx_send(x, FREP_MSG_HELLO, &h.base, NULL, 0);
	}
	case SEND_EXTENT_TABLE: {
		Frep__V1__ExtentTable t = FREP__V1__EXTENT_TABLE__INIT;
		uint64_t one = 1 << 20;
		t.extent_size = &one;
		t.n_extent_size = 1;
		return cx_send(x, FREP_MSG_EXTENT_TABLE, &t.base, NULL, 0);
	}
	case SEND_START_COPY: {
		Frep__V1__StartCopy c = FREP__V1__START_COPY__INIT;
		c.kind = FREP__V1__PHASE__PHASE_REPLICATE;
		c.total_bytes = s->volume_size;
		return cx_send(x, FREP_MSG_START_COPY, &c.base, NULL, 0);
	}
	case SEND_START_SYNC: {
		Frep__V1__StartSync c = FREP__V1__START_SYNC__INIT;
		return cx_send(x, FREP_MSG_START_SYNC, &c.base, NULL, 0);
	}
	case SEND_COPY_DATA: {
		Frep__V1__CopyData d = FREP__V1__COPY_DATA__INIT;
		uint8_t buf[4096];
		cx_fill(buf, sizeof(buf), 1);
		d.data_crc = frep_crc32c(buf, sizeof(buf));
		return cx_send(x, FREP_MSG_COPY_DATA, &d.base, buf, sizeof(buf));
	}
	case SEND_COPY_HOLE: {
		Frep__V1__CopyHole h = FREP__V1__COPY_HOLE__INIT;
		h.length = 4096;
		return cx_send(x, FREP_MSG_COPY_HOLE, &h.base, NULL, 0);
	}
	case SEND_COPY_DONE: {
		Frep__V1__CopyDone d = FREP__V1__COPY_DONE__INIT;
		return cx_send(x, FREP_MSG_COPY_DONE, &d.base, NULL, 0);
	}
	case SEND_TX: {
		Frep__V1__Tx t = FREP__V1__TX__INIT;
		uint8_t buf[4096];
		cx_fill(buf, sizeof(buf), 2);
		t.generation = 1;
		t.txid = 1;
		t.op = FREP__V1__TX_OP__TX_WRITE;
		t.length = sizeof(buf);
		t.data_crc = frep_crc32c(buf, sizeof(buf));
		return cx_send(x, FREP_MSG_TX, &t.base, buf, sizeof(buf));
	}
	case SEND_PAUSE: {
		Frep__V1__Pause p = FREP__V1__PAUSE__INIT;
		return cx_send(x, FREP_MSG_PAUSE, &p.base, NULL, 0);
	}
	case SEND_RESUME: {
		Frep__V1__Resume r = FREP__V1__RESUME__INIT;
		return cx_send(x, FREP_MSG_RESUME, &r.base, NULL, 0);
	}
	}
	return cx_fail(x, "internal: no message %d", m);
}

/* The state the spec's master table gives a legal pair (READY: the decision after it), or -1. */
static int legal_next(int st, int m)
{
	switch (st) {
	case MST_INIT:
		return m == SEND_WELCOME ? MST_MAKEPARTS : -1;
	case MST_MAKEPARTS:
		/* PARTS_READY leads to READY, which decides at once: here, a new volume's REPLICATE. */
		return m == SEND_PARTS_READY ? MST_REPLICATE : m == SEND_HEARTBEAT ? MST_MAKEPARTS : -1;
	case MST_REPLICATE:
	case MST_OUTOFSYNC:
		return m == SEND_COPY_ACK || m == SEND_TX_ACK || m == SEND_RESEND || m == SEND_HEARTBEAT
			       ? st
		       : m == SEND_CONSISTENT ? MST_INSYNC
					      : -1;
	case MST_INSYNC:
	case MST_IDLE:
		return m == SEND_TX_ACK || m == SEND_RESEND || m == SEND_HEARTBEAT ? st : -1;
	}
	return -1;
}

/* After a legal message: shows the state it led to with what only that state does. */
static int prove_state(struct mside *s, int st)
{
	switch (st) {
	case MST_MAKEPARTS:
		/* Still waiting for PARTS_READY, and READY follows it. */
		STEP(ms_parts_ready(s, true, 0));
		return ms_start_copy(s, 0);
	case MST_REPLICATE:
	case MST_OUTOFSYNC:
		/* Only a pass takes CONSISTENT; then the master sequences (INSYNC). */
		STEP(ms_consistent(s, s->max_txid));
		/* fall through */
	case MST_INSYNC:
		STEP(ms_write(s, 12288, 4096, s->committed + 1));
		STEP(ms_txs(s, s->committed));
		STEP(ms_ack(s, s->committed));
		return ms_quiet(s, 200);
	case MST_IDLE:
		/* IDLE-2: a write while paused is not sent until RESUME; then all is, in order. */
		STEP(ms_write(s, 12288, 4096, s->committed + 1));
		STEP(ms_quiet(s, 300));
		STEP(ms_resume(s));
		STEP(ms_expect(s, FREP_MSG_RESUME, NULL));
		STEP(ms_txs(s, s->committed));
		STEP(ms_ack(s, s->committed));
		return ms_quiet(s, 200);
	}
	return cx_fail(s->x, "internal: no state %d to prove", st);
}

static int run_pair(struct cctx *x, int st, int m)
{
	struct mside *s = x->ms;
	STEP(reach(s, st));
	if (m == SEND_ERROR) {
		/* ERR-2: no answer, the connection closes. */
		STEP(send_it(s, m));
		return ms_expect_close(s);
	}
	if (m == SEND_GOODBYE) {
		/* BYE-1: nothing after it; a lost link (LINKDOWN, or RESET in INIT), so a new connection. */
		STEP(send_it(s, m));
		STEP(ms_expect_close(s));
		return ms_accept(s);
	}
	int next = legal_next(st, m);
	STEP(send_it(s, m));
	if (unsolicited_result(st, m))
		return cx_expect_error(x, FREP_E_PROTOCOL, NULL);
	if (next < 0)
		return cx_expect_error(x, FREP_E_UNEXPECTED, NULL);
	switch (m) {
	case SEND_WELCOME:
		STEP(ms_extents(s));
		break;
	case SEND_PARTS_READY:
		STEP(ms_start_copy(s, PH_REPLICATE));
		STEP(ms_copy(s));
		break;
	case SEND_RESEND:
		/* Go-back-N from `from`, each TX as it was the first time (ms_tx compares); in IDLE after RESUME. */
		if (st == MST_IDLE)
			STEP(ms_quiet(s, 300));
		else
			STEP(ms_txs(s, s->max_txid));
		break;
	case SEND_CONSISTENT:
		STEP(ms_quiet(s, 200));
		break;
	default:
		/* HEARTBEAT, TX_ACK, COPY_ACK: taken without an answer. */
		STEP(ms_quiet(s, 300));
		break;
	}
	if (m == SEND_PARTS_READY)
		return 0;
	return prove_state(s, next);
}

static int run_matrix_case(struct cctx *x)
{
	return run_pair(x, x->kase->state, x->kase->msg);
}

/* Clauses each pair checks besides FSM-1. */
static const char *pair_clauses(int st, int m)
{
	if (m >= SEND_HELLO)
		return "FSM-1 MSG-6";
	switch (m) {
	case SEND_ERROR: return "ERR-2";
	case SEND_GOODBYE: return st == MST_INIT ? "BYE-1 ERR-4" : "BYE-1 ERR-5";
	case SEND_HEARTBEAT: return st == MST_IDLE ? "FSM-1 HB-4 IDLE-2" : "FSM-1 HB-4";
	case SEND_PARTS_READY: return st == MST_MAKEPARTS ? "FSM-1 RDY-1" : "FSM-1";
	case SEND_VERIFY_RESULT: return unsolicited_result(st, m) ? "FSM-10 VFY-5" : "FSM-1";
	case SEND_CONSISTENT:
		return st == MST_REPLICATE || st == MST_OUTOFSYNC ? "FSM-1 FSM-10 COPY-12" : "FSM-1";
	case SEND_RESEND:
		return st == MST_IDLE ? "FSM-1 SEQ-7 IDLE-2" : st >= MST_REPLICATE ? "FSM-1 SEQ-7" : "FSM-1";
	case SEND_COPY_ACK:
		return st == MST_REPLICATE || st == MST_OUTOFSYNC ? "FSM-1 COPY-8" : "FSM-1";
	case SEND_TX_ACK:
		return st == MST_IDLE ? "FSM-1 SEQ-5 IDLE-2" : st >= MST_REPLICATE ? "FSM-1 SEQ-5" : "FSM-1";
	default: return "FSM-1";
	}
}

const struct conform_case *master_matrix_cases(void)
{
	static struct conform_case cases[MST__N * SEND__N + 1];
	static char ids[MST__N * SEND__N][64], titles[MST__N * SEND__N][96];
	if (cases[0].id)
		return cases;
	unsigned n = 0;
	for (int st = 0; st < MST__N; st++) {
		for (int m = 0; m < SEND__N; m++, n++) {
			char lower[16];
			snprintf(lower, sizeof(lower), "%s", state_name[st]);
			for (char *c = lower; *c; c++)
				*c = (char)(*c - 'A' + 'a');
			snprintf(ids[n], sizeof(ids[n]), "master.state.%s.%s", lower, send_name[m]);
			int next = legal_next(st, m);
			if (m == SEND_ERROR)
				snprintf(titles[n], sizeof(titles[n]), "error in %s: the master closes without an answer",
					 state_name[st]);
			else if (m == SEND_GOODBYE)
				snprintf(titles[n], sizeof(titles[n]), "goodbye in %s: the master closes and reconnects",
					 state_name[st]);
			else if (unsolicited_result(st, m))
				snprintf(titles[n], sizeof(titles[n]), "%s in %s answering no VERIFY is PROTOCOL",
					 send_name[m], state_name[st]);
			else if (next < 0)
				snprintf(titles[n], sizeof(titles[n]), "%s in %s is UNEXPECTED", send_name[m],
					 state_name[st]);
			else
				snprintf(titles[n], sizeof(titles[n]), "%s in %s is taken and leads to %s",
					 send_name[m], state_name[st], state_name[next]);
			cases[n] = (struct conform_case){
				.id = ids[n],
				.clauses = pair_clauses(st, m),
				.title = titles[n],
				.role = ROLE_MASTER,
				.run = run_matrix_case,
				.state = st,
				.msg = m,
			};
		}
	}
	return cases;
}
