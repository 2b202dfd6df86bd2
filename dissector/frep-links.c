/*
 * Request/response links within one frep session, as Wireshark's NBD
 * dissector links a request to its reply, and the expert info that needs
 * more than one frame:
 *
 *   TX                   -> the first TX_ACK after it with txid >= its TXID (SEQ-4)
 *   COPY_DATA, COPY_HOLE -> the first COPY_ACK of its pass with through >= its end (COPY-8)
 *   RESEND(from, to)     -> the TXs from..to sent after it (SEQ-7)
 *   HEARTBEAT(seq)       -> the HEARTBEAT with that seq from the other side (HB-2)
 *   VERIFY               -> its VERIFY_RESULT, the first with the same verify_id,
 *                           offset and txid (VFY-5); their hashes compared (VFY-7)
 *
 * A session here is one TCP conversation (one lane: frep-lanes.c); its state
 * lives in the conversation and is only ever changed on the first pass, in
 * frame order. Copy records of a joining lane join lane 0's state: lane 0
 * carries the COPY_ACKs that cover them (LANE-8). Each frep
 * frame gets a record of what the first pass found, kept with the packet
 * under its rank among the packet's frep frames (several frames can end in
 * one packet), so that every later pass, in any order, shows the same.
 */
#include "frep-links.h"
#include "frep-lanes.h"

#include <epan/conversation.h>
#include <epan/expert.h>
#include <epan/proto_data.h>

#include "wire.h"

enum {
	/*
	 * Requests waiting for an acknowledgement, per session. frep 1 keeps at
	 * most 4096 TXIDs in flight (SEQ-3); a capture that never acknowledges
	 * must not make every TX_ACK scan millions: past this, the oldest wait
	 * is given up (it shows no ack_in).
	 */
	UNACKED_MAX = 65536,
};

enum msg_flags {
	MSG_GAP = 1u << 0,	    /* TX past a gap: gap_from..gap_to were never sent */
	MSG_DUPLICATE = 1u << 1,   /* TX whose TXID an earlier TX carried */
	MSG_ACK_UNSENT = 1u << 2,  /* TX_ACK or COPY_ACK beyond what was sent (bound) */
	MSG_VERIFY_MISMATCH = 1u << 3, /* VERIFY_RESULT: its hash differs from the VERIFY's */
	MSG_VERIFY_MATCH = 1u << 4,    /* VERIFY_RESULT: both hashes equal */
	MSG_VERIFY_ORPHAN = 1u << 5,   /* VERIFY_RESULT answering no VERIFY seen */
};

/* What the first pass found about one frep frame. File scope. */
struct msg {
	guint32 frame;
	nstime_t ts;
	guint8 type;
	guint8 flags;		 /* enum msg_flags */
	guint64 key;		 /* TX: TXID; copy record: end offset; HEARTBEAT: seq */
	guint64 gap_from, gap_to; /* MSG_GAP */
	guint64 bound;		 /* MSG_ACK_UNSENT: the most it may acknowledge */
	struct msg *answer;	 /* TX, copy record: its ack; HEARTBEAT: its echo */
	struct msg *first;	 /* ack: the oldest request it covers; echo: the request */
	guint32 n_answered;	 /* ack: requests it covers first; echo: 1 */
	nstime_t *lat;		 /* ack, echo: one latency per request answered, oldest first */
	struct msg *dup_of;	 /* TX: the first TX of its TXID */
	struct msg *resend;	 /* TX: the RESEND it answers */
	wmem_array_t *resent_in; /* RESEND: guint32 frames of the TXs that answer it */
	guint64 resend_from;	 /* RESEND: its range */
	guint64 resend_to;
	guint64 resend_next;	 /* RESEND, first pass: the next TXID it waits for */
	guint64 v_id, v_offset, v_txid; /* VERIFY, VERIFY_RESULT */
	guint8 *v_hash;		 /* their hash (16 bytes), or NULL */
};

/* One session's state on the first pass. File scope. */
struct session {
	address addr0; /* the side that sent the first frep frame seen: direction 0 */
	guint32 port0;
	wmem_list_t *unacked_tx;   /* struct msg *, oldest first */
	wmem_list_t *unacked_copy; /* struct msg *, oldest first */
	wmem_map_t *first_tx;	   /* TXID (guint64 *) -> struct msg * of its first TX */
	wmem_list_t *resends;	   /* RESENDs not fully answered */
	wmem_map_t *heartbeats[2]; /* seq -> HEARTBEAT from that direction not yet echoed */
	wmem_list_t *unanswered_verify; /* VERIFYs without a VERIFY_RESULT yet, oldest first */
	gboolean tx_known;	   /* tx_high is known: START_*, or a TX seen */
	guint64 tx_high;	   /* highest TXID sent, or the base of sequencing */
	gboolean copy_known;	   /* a START_COPY was seen */
	gboolean copy_done;
	guint64 copy_end;	   /* end of the pass's last record (from start_offset) */
	gboolean size_known;
	guint64 volume_size;	   /* PARTS_READY */
};

static int proto_frep = -1;
static int hf_ack_in = -1;
static int hf_ack_to = -1;
static int hf_acks = -1;
static int hf_ack_time = -1;
static int hf_resent_in = -1;
static int hf_resent_for = -1;
static int hf_resend_of = -1;
static int hf_echo_in = -1;
static int hf_echo_to = -1;
static int hf_rtt = -1;
static int hf_verify_result_in = -1;
static int hf_verify_request_in = -1;
static int hf_verify_time = -1;
static int hf_verify_match = -1;
static expert_field ei_gap = EI_INIT;
static expert_field ei_resent = EI_INIT;
static expert_field ei_resend = EI_INIT;
static expert_field ei_ack_unsent = EI_INIT;
static expert_field ei_verify_mismatch = EI_INIT;
static expert_field ei_verify_orphan = EI_INIT;
static expert_field ei_verify_not_at = EI_INIT;

void frep_links_register(int proto)
{
	static hf_register_info hf[] = {
		{ &hf_ack_in,
		  { "Acknowledged in", "frep.ack_in", FT_FRAMENUM, BASE_NONE,
		    FRAMENUM_TYPE(FT_FRAMENUM_RESPONSE), 0x0,
		    "The first TX_ACK or COPY_ACK that covers this TX or copy record", HFILL } },
		{ &hf_ack_to,
		  { "Acknowledges from", "frep.ack_to", FT_FRAMENUM, BASE_NONE,
		    FRAMENUM_TYPE(FT_FRAMENUM_ACK), 0x0,
		    "The oldest TX or copy record this acknowledgement is the first to cover",
		    HFILL } },
		{ &hf_acks,
		  { "Acknowledges", "frep.acks", FT_UINT32, BASE_DEC, NULL, 0x0,
		    "How many TX or copy record frames this acknowledgement is the first to cover",
		    HFILL } },
		{ &hf_ack_time,
		  { "Acknowledgement time", "frep.ack_time", FT_RELATIVE_TIME, BASE_NONE, NULL, 0x0,
		    "From the TX or copy record to the acknowledgement that covers it (on an "
		    "acknowledgement: from the oldest it covers)", HFILL } },
		{ &hf_resent_in,
		  { "Resent in", "frep.resent_in", FT_FRAMENUM, BASE_NONE,
		    FRAMENUM_TYPE(FT_FRAMENUM_RETRANS_NEXT), 0x0,
		    "A TX this RESEND asked for, sent after it", HFILL } },
		{ &hf_resent_for,
		  { "Resent for", "frep.resent_for", FT_FRAMENUM, BASE_NONE,
		    FRAMENUM_TYPE(FT_FRAMENUM_REQUEST), 0x0,
		    "The RESEND that asked for this TX", HFILL } },
		{ &hf_resend_of,
		  { "Resend of", "frep.resend_of", FT_FRAMENUM, BASE_NONE,
		    FRAMENUM_TYPE(FT_FRAMENUM_RETRANS_PREV), 0x0,
		    "The first TX that carried this TXID in the session", HFILL } },
		{ &hf_echo_in,
		  { "Echo in", "frep.hb.echo_in", FT_FRAMENUM, BASE_NONE,
		    FRAMENUM_TYPE(FT_FRAMENUM_RESPONSE), 0x0,
		    "The other side's HEARTBEAT with this seq (HB-2)", HFILL } },
		{ &hf_echo_to,
		  { "Echo of", "frep.hb.echo_to", FT_FRAMENUM, BASE_NONE,
		    FRAMENUM_TYPE(FT_FRAMENUM_REQUEST), 0x0,
		    "The HEARTBEAT with this seq that this one answers (HB-2)", HFILL } },
		{ &hf_rtt,
		  { "Round-trip time", "frep.hb.rtt", FT_RELATIVE_TIME, BASE_NONE, NULL, 0x0,
		    "From a HEARTBEAT to its echo", HFILL } },
		{ &hf_verify_result_in,
		  { "Result in", "frep.vfy.result_in", FT_FRAMENUM, BASE_NONE,
		    FRAMENUM_TYPE(FT_FRAMENUM_RESPONSE), 0x0,
		    "The VERIFY_RESULT that answers this VERIFY (VFY-5)", HFILL } },
		{ &hf_verify_request_in,
		  { "Request in", "frep.vfy.request_in", FT_FRAMENUM, BASE_NONE,
		    FRAMENUM_TYPE(FT_FRAMENUM_REQUEST), 0x0,
		    "The VERIFY this VERIFY_RESULT answers (VFY-5)", HFILL } },
		{ &hf_verify_time,
		  { "Verify time", "frep.vfy.time", FT_RELATIVE_TIME, BASE_NONE, NULL, 0x0,
		    "From a VERIFY to its VERIFY_RESULT", HFILL } },
		{ &hf_verify_match,
		  { "Hashes match", "frep.vfy.match", FT_BOOLEAN, BASE_NONE, NULL, 0x0,
		    "The mirror's hash equals the master's: the region is the same on both sides "
		    "at the TXID (VFY-7)", HFILL } },
	};
	static ei_register_info ei[] = {
		{ &ei_gap,
		  { "frep.seq.gap", PI_SEQUENCE, PI_WARN,
		    "TX past a gap: TXIDs before it were never sent (SEQ-1)", EXPFILL } },
		{ &ei_resent,
		  { "frep.seq.resent", PI_SEQUENCE, PI_NOTE,
		    "TX sent again: its TXID was sent before, or a RESEND asked for it", EXPFILL } },
		{ &ei_resend,
		  { "frep.seq.resend", PI_SEQUENCE, PI_NOTE,
		    "The mirror asks for TXIDs again (SEQ-6)", EXPFILL } },
		{ &ei_ack_unsent,
		  { "frep.seq.ack_unsent", PI_PROTOCOL, PI_ERROR,
		    "Acknowledges what was never sent (SEQ-5, COPY-8)", EXPFILL } },
		{ &ei_verify_mismatch,
		  { "frep.vfy.mismatch", PI_CHECKSUM, PI_WARN,
		    "The region differs between master and mirror (VFY-7)", EXPFILL } },
		{ &ei_verify_orphan,
		  { "frep.vfy.orphan", PI_PROTOCOL, PI_ERROR,
		    "VERIFY_RESULT answering no VERIFY (VFY-5)", EXPFILL } },
		{ &ei_verify_not_at,
		  { "frep.vfy.not_at_txid", PI_SEQUENCE, PI_NOTE,
		    "The mirror could not hash at the TXID; the master asks again (VFY-6)", EXPFILL } },
	};

	proto_frep = proto;
	proto_register_field_array(proto, hf, array_length(hf));
	expert_register_field_array(expert_register_protocol(proto), ei, array_length(ei));
}

static struct session *session_of(conversation_t *conv, packet_info *pinfo)
{
	struct session *s = conversation_get_proto_data(conv, proto_frep);

	if (s)
		return s;
	s = wmem_new0(wmem_file_scope(), struct session);
	copy_address_wmem(wmem_file_scope(), &s->addr0, &pinfo->src);
	s->port0 = pinfo->srcport;
	s->unacked_tx = wmem_list_new(wmem_file_scope());
	s->unacked_copy = wmem_list_new(wmem_file_scope());
	s->first_tx = wmem_map_new(wmem_file_scope(), g_int64_hash, g_int64_equal);
	s->resends = wmem_list_new(wmem_file_scope());
	for (unsigned d = 0; d < 2; d++)
		s->heartbeats[d] = wmem_map_new(wmem_file_scope(), g_int64_hash, g_int64_equal);
	s->unanswered_verify = wmem_list_new(wmem_file_scope());
	conversation_add_proto_data(conv, proto_frep, s);
	return s;
}

static unsigned direction(const struct session *s, packet_info *pinfo)
{
	return addresses_equal(&s->addr0, &pinfo->src) && s->port0 == pinfo->srcport ? 0 : 1;
}

static guint64 *key64(guint64 v)
{
	guint64 *k = wmem_new(wmem_file_scope(), guint64);

	*k = v;
	return k;
}

static void wait_for_ack(wmem_list_t *unacked, struct msg *m)
{
	if (wmem_list_count(unacked) >= UNACKED_MAX)
		wmem_list_remove_frame(unacked, wmem_list_head(unacked));
	wmem_list_append(unacked, m);
}

/* ack covers every request waiting in unacked whose key is at most through. */
static void cover(packet_info *pinfo, wmem_list_t *unacked, struct msg *ack, guint64 through)
{
	wmem_array_t *covered = wmem_array_new(pinfo->pool, sizeof(struct msg *));
	wmem_list_frame_t *f, *next;

	for (f = wmem_list_head(unacked); f; f = next) {
		struct msg *r = wmem_list_frame_data(f);

		next = wmem_list_frame_next(f);
		if (r->key > through)
			continue;
		r->answer = ack;
		wmem_array_append_one(covered, r);
		wmem_list_remove_frame(unacked, f);
	}
	ack->n_answered = wmem_array_get_count(covered);
	if (!ack->n_answered)
		return;
	ack->first = *(struct msg **)wmem_array_index(covered, 0);
	ack->lat = wmem_alloc_array(wmem_file_scope(), nstime_t, ack->n_answered);
	for (guint32 i = 0; i < ack->n_answered; i++) {
		const struct msg *r = *(struct msg **)wmem_array_index(covered, i);

		nstime_delta(&ack->lat[i], &ack->ts, &r->ts);
	}
}

static void first_pass_tx(struct session *s, struct msg *m)
{
	guint64 txid = m->key;
	struct msg *first = wmem_map_lookup(s->first_tx, &txid);
	wmem_list_frame_t *f;

	if (first) {
		m->dup_of = first;
		m->flags |= MSG_DUPLICATE;
	} else {
		wmem_map_insert(s->first_tx, key64(txid), m);
	}
	if (s->tx_known && txid > s->tx_high && txid - s->tx_high > 1) {
		m->flags |= MSG_GAP;
		m->gap_from = s->tx_high + 1;
		m->gap_to = txid - 1;
	}
	if (!s->tx_known || txid > s->tx_high)
		s->tx_high = txid;
	s->tx_known = TRUE;
	/* Go-back-N (SEQ-7): the TXs of a RESEND come in order, from its from_txid. */
	for (f = wmem_list_head(s->resends); f; f = wmem_list_frame_next(f)) {
		struct msg *r = wmem_list_frame_data(f);

		if (txid < r->resend_next || txid > r->resend_to)
			continue;
		m->resend = r;
		wmem_array_append_one(r->resent_in, m->frame);
		if (txid == r->resend_to)
			wmem_list_remove_frame(s->resends, f);
		else
			r->resend_next = txid + 1;
		break;
	}
	wait_for_ack(s->unacked_tx, m);
}

static void first_pass_heartbeat(struct session *s, packet_info *pinfo, struct msg *m)
{
	unsigned dir = direction(s, pinfo);
	struct msg *req = wmem_map_remove(s->heartbeats[!dir], &m->key);

	if (!req) {
		wmem_map_insert(s->heartbeats[dir], key64(m->key), m);
		return;
	}
	req->answer = m;
	m->first = req;
	m->n_answered = 1;
	m->lat = wmem_new(wmem_file_scope(), nstime_t);
	nstime_delta(m->lat, &m->ts, &req->ts);
}

/* A VERIFY or VERIFY_RESULT's identity and hash, from its body (field numbers of frep.proto). */
static void verify_fields(struct msg *m, const struct frep_body *b)
{
	gboolean req = m->type == FREP_MSG_VERIFY;
	unsigned txid_field = req ? 4 : 3;

	m->v_id = b->u[1];
	m->v_offset = b->u[2];
	m->v_txid = b->u[txid_field];
	if (b->bytes[5] && b->len[5] == FREP_VERIFY_HASH_SIZE)
		m->v_hash = wmem_memdup(wmem_file_scope(), b->bytes[5], FREP_VERIFY_HASH_SIZE);
}

/* A VERIFY_RESULT answers the oldest VERIFY with its verify_id, offset and txid (VFY-5). */
static void first_pass_verify_result(struct session *s, struct msg *m, const struct frep_body *b)
{
	wmem_list_frame_t *f;

	for (f = wmem_list_head(s->unanswered_verify); f; f = wmem_list_frame_next(f)) {
		struct msg *req = wmem_list_frame_data(f);

		if (req->v_id != m->v_id || req->v_offset != m->v_offset || req->v_txid != m->v_txid)
			continue;
		wmem_list_remove_frame(s->unanswered_verify, f);
		req->answer = m;
		m->first = req;
		m->n_answered = 1;
		m->lat = wmem_new(wmem_file_scope(), nstime_t);
		nstime_delta(m->lat, &m->ts, &req->ts);
		if (b->u[4] == 1 && m->v_hash && req->v_hash)
			m->flags |= memcmp(m->v_hash, req->v_hash, FREP_VERIFY_HASH_SIZE) ?
					    MSG_VERIFY_MISMATCH : MSG_VERIFY_MATCH;
		return;
	}
	m->flags |= MSG_VERIFY_ORPHAN;
}

static struct session *session_get(packet_info *pinfo)
{
	return session_of(find_or_create_conversation(pinfo), pinfo);
}

/* The first pass: the session's state moves on by one frame. */
static void first_pass(struct session *s, packet_info *pinfo, struct msg *m,
		       const struct frep_body *b, guint32 data_len)
{
	const guint64 *u = b->u;

	switch (m->type) {
	case FREP_MSG_PARTS_READY:
		s->volume_size = u[2];
		s->size_known = TRUE;
		break;
	case FREP_MSG_START_COPY:
		/* A new pass: what the last one left unacknowledged never will be. */
		s->unacked_copy = wmem_list_new(wmem_file_scope());
		s->copy_known = TRUE;
		s->copy_done = FALSE;
		s->copy_end = u[5];
		/* Sequencing after the pass starts at base_txid + 1 (COPY-10). */
		s->tx_known = TRUE;
		s->tx_high = u[2];
		break;
	case FREP_MSG_START_SYNC:
		s->tx_known = TRUE;
		s->tx_high = u[1];
		break;
	case FREP_MSG_COPY_DATA:
	case FREP_MSG_COPY_HOLE: {
		guint64 len = m->type == FREP_MSG_COPY_DATA ? data_len : u[2];
		struct session *c = session_of(frep_lanes_copy_conversation(pinfo), pinfo);

		m->key = u[1] + len < u[1] ? G_MAXUINT64 : u[1] + len;
		c->copy_end = MAX(c->copy_end, m->key);
		wait_for_ack(c->unacked_copy, m);
		break;
	}
	case FREP_MSG_COPY_DONE:
		s->copy_done = TRUE;
		break;
	case FREP_MSG_COPY_ACK:
		/* Up to the end of the last record sent; the volume size after COPY_DONE (COPY-8). */
		if (s->copy_known && (!s->copy_done || s->size_known)) {
			m->bound = s->copy_done ? s->volume_size : s->copy_end;
			if (u[1] > m->bound)
				m->flags |= MSG_ACK_UNSENT;
		}
		cover(pinfo, s->unacked_copy, m, u[1]);
		break;
	case FREP_MSG_TX:
		m->key = u[2];
		first_pass_tx(s, m);
		break;
	case FREP_MSG_TX_ACK:
		if (s->tx_known && u[1] > s->tx_high) {
			m->flags |= MSG_ACK_UNSENT;
			m->bound = s->tx_high;
		}
		cover(pinfo, s->unacked_tx, m, u[1]);
		break;
	case FREP_MSG_RESEND:
		m->resent_in = wmem_array_new(wmem_file_scope(), sizeof(guint32));
		m->resend_from = m->resend_next = u[1];
		m->resend_to = u[2];
		if (u[1] <= u[2])
			wmem_list_append(s->resends, m);
		break;
	case FREP_MSG_HEARTBEAT:
		m->key = u[1];
		first_pass_heartbeat(s, pinfo, m);
		break;
	case FREP_MSG_VERIFY:
		verify_fields(m, b);
		wait_for_ack(s->unanswered_verify, m);
		break;
	case FREP_MSG_VERIFY_RESULT:
		verify_fields(m, b);
		m->key = u[4]; /* status */
		first_pass_verify_result(s, m, b);
		break;
	default:
		break;
	}
}

static void add_frame(proto_tree *tree, tvbuff_t *tvb, int hf, guint32 frame)
{
	proto_item_set_generated(proto_tree_add_uint(tree, hf, tvb, 0, 0, frame));
}

static void add_time(proto_tree *tree, tvbuff_t *tvb, int hf, const nstime_t *t)
{
	proto_item_set_generated(proto_tree_add_time(tree, hf, tvb, 0, 0, t));
}

/* Every pass: the record as fields and expert info. */
static void show(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, proto_item *fi,
		 const struct msg *m)
{
	nstime_t d;

	if (m->answer) {
		nstime_delta(&d, &m->answer->ts, &m->ts);
		if (m->type == FREP_MSG_VERIFY) {
			add_frame(tree, tvb, hf_verify_result_in, m->answer->frame);
			add_time(tree, tvb, hf_verify_time, &d);
		} else if (m->type == FREP_MSG_HEARTBEAT) {
			add_frame(tree, tvb, hf_echo_in, m->answer->frame);
			add_time(tree, tvb, hf_rtt, &d);
		} else {
			add_frame(tree, tvb, hf_ack_in, m->answer->frame);
			add_time(tree, tvb, hf_ack_time, &d);
		}
	}
	switch (m->type) {
	case FREP_MSG_TX_ACK:
	case FREP_MSG_COPY_ACK:
		if (m->first) {
			add_frame(tree, tvb, hf_ack_to, m->first->frame);
			add_time(tree, tvb, hf_ack_time, &m->lat[0]);
		}
		proto_item_set_generated(proto_tree_add_uint(tree, hf_acks, tvb, 0, 0, m->n_answered));
		if (m->flags & MSG_ACK_UNSENT)
			expert_add_info_format(pinfo, fi, &ei_ack_unsent, m->type == FREP_MSG_TX_ACK ?
					       "TX_ACK beyond the highest TXID sent, %" PRIu64 " (SEQ-5)" :
					       "COPY_ACK beyond the copy sent so far, %" PRIu64 " (COPY-8)",
					       m->bound);
		break;
	case FREP_MSG_HEARTBEAT:
		if (m->first) {
			add_frame(tree, tvb, hf_echo_to, m->first->frame);
			add_time(tree, tvb, hf_rtt, &m->lat[0]);
		}
		break;
	case FREP_MSG_VERIFY_RESULT:
		if (m->first) {
			add_frame(tree, tvb, hf_verify_request_in, m->first->frame);
			add_time(tree, tvb, hf_verify_time, &m->lat[0]);
		}
		if (m->flags & (MSG_VERIFY_MATCH | MSG_VERIFY_MISMATCH))
			proto_item_set_generated(proto_tree_add_boolean(tree, hf_verify_match, tvb, 0, 0,
									(m->flags & MSG_VERIFY_MATCH) != 0));
		if (m->flags & MSG_VERIFY_MISMATCH)
			expert_add_info_format(pinfo, fi, &ei_verify_mismatch,
					       "Region of verify %" PRIu64 " at offset %" PRIu64
					       " differs at TXID %" PRIu64 ": the mirror's hash is not the "
					       "master's in frame %u (VFY-7)", m->v_id, m->v_offset,
					       m->v_txid, m->first->frame);
		if (m->flags & MSG_VERIFY_ORPHAN)
			expert_add_info_format(pinfo, fi, &ei_verify_orphan,
					       "VERIFY_RESULT for verify %" PRIu64 " at offset %" PRIu64
					       ", TXID %" PRIu64 ": no such VERIFY unanswered (VFY-5)",
					       m->v_id, m->v_offset, m->v_txid);
		if (m->key == 2)
			expert_add_info(pinfo, fi, &ei_verify_not_at);
		break;
	case FREP_MSG_RESEND:
		for (guint i = 0; m->resent_in && i < wmem_array_get_count(m->resent_in); i++)
			add_frame(tree, tvb, hf_resent_in, *(guint32 *)wmem_array_index(m->resent_in, i));
		expert_add_info_format(pinfo, fi, &ei_resend,
				       "The mirror asks for TXIDs %" PRIu64 "..%" PRIu64 " again (SEQ-6)",
				       m->resend_from, m->resend_to);
		break;
	case FREP_MSG_TX:
		if (m->dup_of)
			add_frame(tree, tvb, hf_resend_of, m->dup_of->frame);
		if (m->resend)
			add_frame(tree, tvb, hf_resent_for, m->resend->frame);
		if (m->flags & MSG_DUPLICATE)
			expert_add_info_format(pinfo, fi, &ei_resent,
					       "TX %" PRIu64 " sent again (first in frame %u)", m->key,
					       m->dup_of->frame);
		else if (m->resend)
			expert_add_info_format(pinfo, fi, &ei_resent,
					       "TX %" PRIu64 " sent for the RESEND in frame %u", m->key,
					       m->resend->frame);
		if (m->flags & MSG_GAP)
			expert_add_info_format(pinfo, fi, &ei_gap,
					       "TX %" PRIu64 " past a gap: TXIDs %" PRIu64 "..%" PRIu64
					       " were not sent before it (SEQ-1)", m->key, m->gap_from,
					       m->gap_to);
		break;
	default:
		break;
	}
}

void frep_links_dissect(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, proto_item *fi,
			unsigned idx,
			unsigned type, const struct frep_body *b, guint32 data_len,
			struct frep_latencies *lat)
{
	struct msg *m = p_get_proto_data(wmem_file_scope(), pinfo, proto_frep, idx);

	lat->kind = FREP_LAT_NONE;
	lat->n = 0;
	/*
	 * A packet dissected again within the first pass (a dissector retrying
	 * it) finds its record made: the session's state must not move twice.
	 */
	if (!m && !PINFO_FD_VISITED(pinfo)) {
		m = wmem_new0(wmem_file_scope(), struct msg);
		m->frame = pinfo->num;
		m->ts = pinfo->abs_ts;
		m->type = (guint8)type;
		first_pass(session_get(pinfo), pinfo, m, b, data_len);
		p_add_proto_data(wmem_file_scope(), pinfo, proto_frep, idx, m);
	}
	if (!m)
		return;
	show(tvb, pinfo, tree, fi, m);
	if (m->n_answered) {
		lat->kind = type == FREP_MSG_TX_ACK ? FREP_LAT_TX :
			    type == FREP_MSG_COPY_ACK ? FREP_LAT_COPY :
			    type == FREP_MSG_VERIFY_RESULT ? FREP_LAT_VERIFY : FREP_LAT_HEARTBEAT;
		lat->n = m->n_answered;
		lat->t = m->lat;
	}
}
