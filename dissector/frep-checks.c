/*
 * Rules one frame can break on its own, shown as expert info on the field
 * that breaks them: the protocol limits (spec/protocol.md "Limits"), fields
 * that must agree (SEQ-2, LANE-1, SEQ-7) and the ERROR messages themselves.
 * Rules across frames (gaps, resends, acknowledgements) are frep-links.c's.
 *
 * The mirror answers each of these with an ERROR of its own; flagging the
 * frame that caused it points a reader at the cause, not the consequence.
 */
#include "frep-checks.h"

#include <epan/expert.h>

#include "journal.h"
#include "wire.h"

static expert_field ei_limit = EI_INIT;
static expert_field ei_inconsistent = EI_INIT;
static expert_field ei_error_severe = EI_INIT;
static expert_field ei_error_minor = EI_INIT;
static expert_field ei_error_severity = EI_INIT;

void frep_checks_register(int proto)
{
	static ei_register_info ei[] = {
		{ &ei_limit,
		  { "frep.limit.exceeded", PI_PROTOCOL, PI_ERROR,
		    "Value beyond a protocol limit (spec \"Limits\")", EXPFILL } },
		{ &ei_inconsistent,
		  { "frep.body.inconsistent", PI_PROTOCOL, PI_ERROR,
		    "Fields disagree with each other or with the trailer", EXPFILL } },
		{ &ei_error_severe,
		  { "frep.peer_error.severe", PI_RESPONSE_CODE, PI_ERROR,
		    "ERROR, severe: the sender stops until an operator acts", EXPFILL } },
		{ &ei_error_minor,
		  { "frep.peer_error.minor", PI_RESPONSE_CODE, PI_WARN,
		    "ERROR, minor: the master retries after a backoff", EXPFILL } },
		{ &ei_error_severity,
		  { "frep.peer_error.severity", PI_PROTOCOL, PI_WARN,
		    "severe does not match the error code's row (ERR-1)", EXPFILL } },
	};

	expert_register_field_array(expert_register_protocol(proto), ei, array_length(ei));
}

/* The field's item, or the frame's when the field has none (no tree, or absent). */
static proto_item *at(const struct frep_body *b, unsigned field, proto_item *frame_item)
{
	return b->item[field] ? b->item[field] : frame_item;
}

static void check_hello(packet_info *pinfo, proto_item *fi, const struct frep_body *b)
{
	/* Field numbers of Hello in frep.proto. */
	enum {
		PROTO_MIN = 1, PROTO_MAX = 2, NODE = 3, VOLUME = 4, UUID = 5, SESSION = 7, LANE = 8,
		LANE_COUNT = 9, EPOCH = 13, HISTORY = 14, LANES_MAX = 17,
	};
	guint64 epoch = frep_body_has(b, EPOCH) ? b->u[EPOCH] : 1;
	unsigned n_history = b->n_repeated[HISTORY];

	if (frep_body_has(b, VOLUME) && (b->len[VOLUME] == 0 || b->len[VOLUME] > FREP_MAX_VOLUME_NAME))
		expert_add_info_format(pinfo, at(b, VOLUME, fi), &ei_limit,
				       "volume is %u bytes: 1..%d (HS-2)", b->len[VOLUME],
				       FREP_MAX_VOLUME_NAME);
	if (b->len[NODE] > FREP_MAX_NODE_NAME)
		expert_add_info_format(pinfo, at(b, NODE, fi), &ei_limit,
				       "master_node is %u bytes: at most %d (HS-2)", b->len[NODE],
				       FREP_MAX_NODE_NAME);
	if (frep_body_has(b, UUID) && b->len[UUID] != FREP_UUID_SIZE)
		expert_add_info_format(pinfo, at(b, UUID, fi), &ei_limit,
				       "volume_uuid is %u bytes: %d (HS-2)", b->len[UUID],
				       FREP_UUID_SIZE);
	if (frep_body_has(b, SESSION) && b->len[SESSION] != FREP_SESSION_ID_SIZE)
		expert_add_info_format(pinfo, at(b, SESSION, fi), &ei_limit,
				       "session_id is %u bytes: %d (HS-2)", b->len[SESSION],
				       FREP_SESSION_ID_SIZE);
	if (b->u[PROTO_MIN] > b->u[PROTO_MAX])
		expert_add_info_format(pinfo, at(b, PROTO_MIN, fi), &ei_inconsistent,
				       "proto_min %" PRIu64 " is above proto_max %" PRIu64 " (HS-3)",
				       b->u[PROTO_MIN], b->u[PROTO_MAX]);
	if (b->u[LANE_COUNT] > FREP_MAX_LANES)
		expert_add_info_format(pinfo, at(b, LANE_COUNT, fi), &ei_limit,
				       "lane_count %" PRIu64 ": at most %d (LANE-4)",
				       b->u[LANE_COUNT], FREP_MAX_LANES);
	/* lanes_max means something only in a version-2 offer; a version-1 mirror ignores it. */
	if (frep_body_has(b, LANES_MAX) && b->u[PROTO_MAX] >= 2 &&
	    (b->u[LANES_MAX] == 0 || b->u[LANES_MAX] > FREP_MAX_LANES))
		expert_add_info_format(pinfo, at(b, LANES_MAX, fi), &ei_limit,
				       "lanes_max %" PRIu64 ": 1..%d (LANE-4)", b->u[LANES_MAX],
				       FREP_MAX_LANES);
	if (frep_body_has(b, LANE_COUNT) && b->u[LANE] >= b->u[LANE_COUNT])
		expert_add_info_format(pinfo, at(b, LANE, fi), &ei_inconsistent,
				       "lane %" PRIu64 " is not below lane_count %" PRIu64 " (LANE-1)",
				       b->u[LANE], b->u[LANE_COUNT]);
	else if (frep_body_has(b, LANE_COUNT) && b->u[LANE] == 0 && b->u[LANE_COUNT] != 1)
		expert_add_info_format(pinfo, at(b, LANE_COUNT, fi), &ei_inconsistent,
				       "lane 0 with lane_count %" PRIu64 ": lane 0 opens its session "
				       "with lane_count 1 (LANE-1)", b->u[LANE_COUNT]);
	/* epoch_history (EPO-2). */
	if (epoch == 0)
		expert_add_info_format(pinfo, at(b, EPOCH, fi), &ei_inconsistent,
				       "epoch 0: epochs start at 1 (EPO-2)");
	else if (n_history > FREP_MAX_HISTORY || n_history > epoch - 1)
		expert_add_info_format(pinfo, at(b, EPOCH, fi), &ei_limit,
				       "%u epoch starts for epoch %" PRIu64 ": at most %d and at most "
				       "epoch - 1 (EPO-2)", n_history, epoch, FREP_MAX_HISTORY);
	for (unsigned i = 1; i < n_history; i++) {
		const struct frep_body_value *p = frep_body_value(b, HISTORY, i - 1),
					     *v = frep_body_value(b, HISTORY, i);
		if (v->v < p->v)
			expert_add_info_format(pinfo, v->item, &ei_inconsistent,
					       "epoch start %" PRIu64 " after %" PRIu64 ": they do not "
					       "decrease (EPO-2)", v->v, p->v);
	}
}

static void check_extent_table(packet_info *pinfo, proto_item *fi, const struct frep_body *b)
{
	enum { SIZE = 1, ALLOCATED = 2 };
	unsigned n = b->n_repeated[SIZE];
	const struct frep_body_value *v;
	guint64 sum = 0;

	if (n == 0 || n > FREP_MAX_EXTENTS)
		expert_add_info_format(pinfo, fi, &ei_limit, "%u extents: 1..%d (MP-1)", n,
				       FREP_MAX_EXTENTS);
	for (unsigned i = 0; i < n; i++) {
		v = frep_body_value(b, SIZE, i);
		if (v->v == 0 || v->v % FREP_EXTENT_ALIGN)
			expert_add_info_format(pinfo, v->item ? v->item : fi, &ei_limit,
					       "extent %u is %" PRIu64 " bytes: a non-zero multiple "
					       "of %d (MP-1)", i, v->v, FREP_EXTENT_ALIGN);
		sum = v->v > G_MAXUINT64 - sum ? G_MAXUINT64 : sum + v->v;
	}
	if (frep_body_has(b, ALLOCATED) && b->u[ALLOCATED] > sum)
		expert_add_info_format(pinfo, at(b, ALLOCATED, fi), &ei_inconsistent,
				       "allocated_bytes %" PRIu64 " exceeds the volume's %" PRIu64
				       " bytes (MP-7)", b->u[ALLOCATED], sum);
}

static void check_tx(packet_info *pinfo, proto_item *fi, const struct frep_body *b,
		     guint32 trailer_len, guint32 data_len)
{
	enum { TXID = 2, OP = 3, LENGTH = 5, DATA_CRC = 6 };
	guint64 op = b->u[OP], length = b->u[LENGTH];

	if (frep_body_has(b, TXID) && (b->u[TXID] == 0 || b->u[TXID] >= JOURNAL_MAX_TXID))
		expert_add_info_format(pinfo, at(b, TXID, fi), &ei_limit,
				       "txid %" PRIu64 ": 1..2^62-1 (SEQ-2)", b->u[TXID]);
	if (frep_body_has(b, LENGTH) && (length == 0 || length > G_MAXUINT32))
		expert_add_info_format(pinfo, at(b, LENGTH, fi), &ei_limit,
				       "length %" PRIu64 ": 1..2^32-1 (SEQ-2)", length);
	if (!frep_body_has(b, OP))
		return;
	if (op < JOP_WRITE || op > JOP_ZERO)
		expert_add_info_format(pinfo, at(b, OP, fi), &ei_inconsistent,
				       "op %" PRIu64 " is not a TxOp (SEQ-2)", op);
	else if (op == JOP_WRITE && frep_body_has(b, LENGTH) && length != data_len)
		expert_add_info_format(pinfo, at(b, LENGTH, fi), &ei_inconsistent,
				       "TX_WRITE of length %" PRIu64 " carries %u data bytes (SEQ-2)",
				       length, data_len);
	else if (op != JOP_WRITE && (trailer_len || b->u[DATA_CRC]))
		expert_add_info_format(pinfo, at(b, OP, fi), &ei_inconsistent,
				       "%s with %u data bytes and data_crc 0x%08x: both must be 0 "
				       "(SEQ-2)", op == JOP_TRIM ? "TX_TRIM" : "TX_ZERO", trailer_len,
				       (guint32)b->u[DATA_CRC]);
}

static void check_error(packet_info *pinfo, proto_item *fi, const struct frep_body *b)
{
	enum { CODE = 1, SEVERE = 2, MESSAGE = 3 };
	unsigned code = (unsigned)b->u[CODE];
	gboolean severe = b->u[SEVERE] != 0;

	expert_add_info_format(pinfo, fi, severe ? &ei_error_severe : &ei_error_minor,
			       "ERROR %s (%s): %s", frep_error_name(code), severe ? "severe" : "minor",
			       b->s[MESSAGE] ? b->s[MESSAGE] : "");
	/* An unknown code's row is unknown: a newer peer's choice stands. */
	if (code >= 1 && code <= FREP_E__MAX && severe != frep_error_is_severe(code))
		expert_add_info_format(pinfo, at(b, SEVERE, fi), &ei_error_severity,
				       "severe=%s, but %s is %s (ERR-1)", severe ? "true" : "false",
				       frep_error_name(code),
				       frep_error_is_severe(code) ? "severe" : "minor");
	if (b->len[MESSAGE] >= FREP_MAX_MESSAGE)
		expert_add_info_format(pinfo, at(b, MESSAGE, fi), &ei_limit,
				       "message is %u bytes: under %d (MSG-4)", b->len[MESSAGE],
				       FREP_MAX_MESSAGE);
}

/* Version 2's Welcome: a Compression frep knows (NEG-3), 1..16 lanes (LANE-4). */
static void check_welcome(packet_info *pinfo, proto_item *fi, const struct frep_body *b)
{
	enum { PROTO_VERSION = 1, COMPRESSION = 11, LANES = 12 };

	if (b->u[PROTO_VERSION] < 2)
		return; /* version 1 has neither field; a version-1 master ignores them */
	if (b->u[COMPRESSION] > 2)
		expert_add_info_format(pinfo, at(b, COMPRESSION, fi), &ei_inconsistent,
				       "compression %" PRIu64 " is not a Compression (NEG-3)",
				       b->u[COMPRESSION]);
	if (frep_body_has(b, LANES) && (b->u[LANES] == 0 || b->u[LANES] > FREP_MAX_LANES))
		expert_add_info_format(pinfo, at(b, LANES, fi), &ei_limit,
				       "lanes %" PRIu64 ": 1..%d (LANE-4)", b->u[LANES], FREP_MAX_LANES);
}

void frep_checks_dissect(packet_info *pinfo, proto_item *fi, unsigned type,
			 const struct frep_body *b, guint32 trailer_len, guint32 data_len)
{
	switch (type) {
	case FREP_MSG_HELLO:
		check_hello(pinfo, fi, b);
		break;
	case FREP_MSG_WELCOME:
		check_welcome(pinfo, fi, b);
		break;
	case FREP_MSG_EXTENT_TABLE:
		check_extent_table(pinfo, fi, b);
		break;
	case FREP_MSG_START_COPY:
		/* base_txid + 1 must still be a TXID (COPY-4). */
		if (b->u[2] >= JOURNAL_MAX_TXID - 1)
			expert_add_info_format(pinfo, at(b, 2, fi), &ei_limit,
					       "base_txid %" PRIu64 ": below 2^62-1 (COPY-4)", b->u[2]);
		break;
	case FREP_MSG_COPY_DATA:
		if (trailer_len == 0)
			expert_add_info_format(pinfo, fi, &ei_inconsistent,
					       "COPY_DATA without data: an empty range (COPY-7)");
		else if (frep_body_has(b, 3) && b->u[3] != data_len)
			expert_add_info_format(pinfo, at(b, 3, fi), &ei_inconsistent,
					       "COPY_DATA declares %" PRIu64 " bytes of data and carries "
					       "%u (COMP-3)", b->u[3], data_len);
		break;
	case FREP_MSG_COPY_DONE:
		if (b->n_repeated[3] > FREP_MAX_LANES)
			expert_add_info_format(pinfo, fi, &ei_limit,
					       "%u lane_records: one per lane, at most %d (LANE-7)",
					       b->n_repeated[3], FREP_MAX_LANES);
		break;
	case FREP_MSG_TX:
		check_tx(pinfo, fi, b, trailer_len, data_len);
		break;
	case FREP_MSG_RESEND:
		if (b->u[1] > b->u[2])
			expert_add_info_format(pinfo, at(b, 1, fi), &ei_inconsistent,
					       "from_txid %" PRIu64 " is above to_txid %" PRIu64
					       " (SEQ-7)", b->u[1], b->u[2]);
		break;
	case FREP_MSG_ERROR:
		check_error(pinfo, fi, b);
		break;
	case FREP_MSG_VERIFY:
		if (b->len[5] != FREP_VERIFY_HASH_SIZE)
			expert_add_info_format(pinfo, at(b, 5, fi), &ei_limit,
					       "hash is %u bytes: XXH3-128 is %d (VFY-4)", b->len[5],
					       FREP_VERIFY_HASH_SIZE);
		if (b->u[3] == 0 || b->u[3] > FREP_MAX_VERIFY_LEN)
			expert_add_info_format(pinfo, at(b, 3, fi), &ei_limit,
					       "length %" PRIu64 ": 1..%d (VFY-4)", b->u[3],
					       FREP_MAX_VERIFY_LEN);
		break;
	case FREP_MSG_VERIFY_RESULT:
		if (b->u[4] == 1 && b->len[5] != FREP_VERIFY_HASH_SIZE)
			expert_add_info_format(pinfo, at(b, 4, fi), &ei_inconsistent,
					       "VERIFY_HASHED with a %u-byte hash: 16 bytes (VFY-5)",
					       b->len[5]);
		break;
	case FREP_MSG_GOODBYE:
		if (b->len[1] >= FREP_MAX_MESSAGE)
			expert_add_info_format(pinfo, at(b, 1, fi), &ei_limit,
					       "reason is %u bytes: under %d (MSG-4)", b->len[1],
					       FREP_MAX_MESSAGE);
		break;
	default:
		break;
	}
}
