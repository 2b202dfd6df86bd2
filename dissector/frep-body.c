/*
 * Protobuf bodies of frep frames, walked with a field table.
 *
 * Each frep.proto message has a table (field number, name, protobuf type,
 * label); registration makes one filterable field per entry, named
 * frep.<message in snake case>.<field name as in frep.proto>, so the tables
 * below are the only place the dissector knows the bodies. tests/dissector/
 * compares them with frep.proto: a field added there and not here fails CI.
 * dissector/README.md says why this walker and not Wireshark's protobuf
 * dissector.
 */
#include "frep-body.h"

#include "wire.h"

enum pb_kind {
	PB_UINT32,
	PB_UINT64,
	PB_BOOL,
	PB_ENUM,
	PB_STRING,
	PB_BYTES,
	PB_FIXED32,
	PB_CRC32C, /* fixed32 CRC32C of the frame trailer: checked */
};

enum pb_label { PB_REQUIRED, PB_OPTIONAL, PB_REPEATED };

/* Protobuf wire types (the low 3 bits of a field key). */
enum pb_wire { PB_WIRE_VARINT = 0, PB_WIRE_I64 = 1, PB_WIRE_LEN = 2, PB_WIRE_I32 = 5 };

struct pb_field {
	unsigned number;
	const char *name;
	enum pb_kind kind;
	enum pb_label label;
	const value_string *vals; /* PB_ENUM only */
	int hf;
};

struct pb_message {
	const char *name;   /* frep.proto message name */
	const char *abbrev; /* its filter name part */
	struct pb_field *fields;
	unsigned n_fields;
	gint ett;
};

/* enum Phase, TxOp, VerifyStatus and Compression of frep.proto. */
static const value_string phase_vals[] = {
	{ 0, "PHASE_NONE" },
	{ 1, "PHASE_CREATED" },
	{ 2, "PHASE_REPLICATE" },
	{ 3, "PHASE_OUTOFSYNC" },
	{ 4, "PHASE_INSYNC" },
	{ 0, NULL },
};

static const value_string verify_status_vals[] = {
	{ 1, "VERIFY_HASHED" },
	{ 2, "VERIFY_NOT_AT_TXID" },
	{ 0, NULL },
};

/*
 * Compression is carried as uint32 (an offer may name algorithms the receiver
 * does not know, NEG-2): the fields are uint32 with these names.
 */
const value_string frep_compression_vals[] = {
	{ 0, "COMPRESSION_NONE" },
	{ 1, "COMPRESSION_ZSTD" },
	{ 2, "COMPRESSION_LZ4" },
	{ 0, NULL },
};

static const value_string tx_op_vals[] = {
	{ 1, "TX_WRITE" },
	{ 2, "TX_TRIM" },
	{ 3, "TX_ZERO" },
	{ 0, NULL },
};

#define FIELD(n, name, kind, label) { n, name, kind, label, NULL, -1 }
#define ENUM_FIELD(n, name, vals) { n, name, PB_ENUM, PB_REQUIRED, vals, -1 }
#define NAMED_UINT32(n, name, vals) { n, name, PB_UINT32, PB_REQUIRED, vals, -1 }
#define NAMED_FIELD(n, name, label, vals) { n, name, PB_UINT32, label, vals, -1 }

static struct pb_field hello_fields[] = {
	FIELD(1, "proto_min", PB_UINT32, PB_REQUIRED),
	FIELD(2, "proto_max", PB_UINT32, PB_REQUIRED),
	FIELD(3, "master_node", PB_STRING, PB_REQUIRED),
	FIELD(4, "volume", PB_STRING, PB_REQUIRED),
	FIELD(5, "volume_uuid", PB_BYTES, PB_REQUIRED),
	FIELD(6, "generation", PB_UINT64, PB_REQUIRED),
	FIELD(7, "session_id", PB_BYTES, PB_REQUIRED),
	FIELD(8, "lane", PB_UINT32, PB_REQUIRED),
	FIELD(9, "lane_count", PB_UINT32, PB_REQUIRED),
	FIELD(10, "retained_first_txid", PB_UINT64, PB_REQUIRED),
	FIELD(11, "committed_txid", PB_UINT64, PB_REQUIRED),
	FIELD(12, "journal_size", PB_UINT64, PB_REQUIRED),
	FIELD(13, "epoch", PB_UINT64, PB_OPTIONAL),
	FIELD(14, "epoch_history", PB_UINT64, PB_REPEATED),
	FIELD(15, "sync_mode", PB_BOOL, PB_OPTIONAL),
	NAMED_FIELD(16, "compression", PB_REPEATED, frep_compression_vals),
	FIELD(17, "lanes_max", PB_UINT32, PB_OPTIONAL),
};

static struct pb_field welcome_fields[] = {
	FIELD(1, "proto_version", PB_UINT32, PB_REQUIRED),
	FIELD(2, "known", PB_BOOL, PB_REQUIRED),
	FIELD(3, "durable_txid", PB_UINT64, PB_REQUIRED),
	FIELD(4, "consistent", PB_BOOL, PB_REQUIRED),
	FIELD(5, "consistent_txid", PB_UINT64, PB_REQUIRED),
	NAMED_UINT32(6, "phase", phase_vals),
	FIELD(7, "copy_cursor", PB_UINT64, PB_REQUIRED),
	FIELD(8, "copy_base", PB_UINT64, PB_OPTIONAL),
	FIELD(9, "verify", PB_BOOL, PB_OPTIONAL),
	FIELD(10, "epoch", PB_UINT64, PB_OPTIONAL),
	NAMED_FIELD(11, "compression", PB_OPTIONAL, frep_compression_vals),
	FIELD(12, "lanes", PB_UINT32, PB_OPTIONAL),
};

static struct pb_field extent_table_fields[] = {
	FIELD(1, "extent_size", PB_UINT64, PB_REPEATED),
	FIELD(2, "allocated_bytes", PB_UINT64, PB_OPTIONAL),
};

static struct pb_field parts_ready_fields[] = {
	FIELD(1, "created", PB_BOOL, PB_REQUIRED),
	FIELD(2, "volume_size", PB_UINT64, PB_REQUIRED),
};

static struct pb_field start_copy_fields[] = {
	ENUM_FIELD(1, "kind", phase_vals),
	FIELD(2, "base_txid", PB_UINT64, PB_REQUIRED),
	FIELD(3, "total_bytes", PB_UINT64, PB_REQUIRED),
	FIELD(4, "full", PB_BOOL, PB_OPTIONAL),
	FIELD(5, "start_offset", PB_UINT64, PB_OPTIONAL),
};

static struct pb_field start_sync_fields[] = {
	FIELD(1, "from_txid", PB_UINT64, PB_REQUIRED),
};

static struct pb_field copy_data_fields[] = {
	FIELD(1, "offset", PB_UINT64, PB_REQUIRED),
	FIELD(2, "data_crc", PB_CRC32C, PB_REQUIRED),
	FIELD(3, "length", PB_UINT64, PB_OPTIONAL),
	FIELD(4, "pass", PB_UINT64, PB_OPTIONAL),
	FIELD(5, "seq", PB_UINT64, PB_OPTIONAL),
};

static struct pb_field copy_hole_fields[] = {
	FIELD(1, "offset", PB_UINT64, PB_REQUIRED),
	FIELD(2, "length", PB_UINT64, PB_REQUIRED),
	FIELD(3, "pass", PB_UINT64, PB_OPTIONAL),
	FIELD(4, "seq", PB_UINT64, PB_OPTIONAL),
};

static struct pb_field copy_ack_fields[] = {
	FIELD(1, "through", PB_UINT64, PB_REQUIRED),
};

static struct pb_field copy_done_fields[] = {
	FIELD(1, "last_txid", PB_UINT64, PB_REQUIRED),
	FIELD(2, "copied_bytes", PB_UINT64, PB_REQUIRED),
	FIELD(3, "lane_records", PB_UINT64, PB_REPEATED),
};

static struct pb_field tx_fields[] = {
	FIELD(1, "generation", PB_UINT64, PB_REQUIRED),
	FIELD(2, "txid", PB_UINT64, PB_REQUIRED),
	ENUM_FIELD(3, "op", tx_op_vals),
	FIELD(4, "offset", PB_UINT64, PB_REQUIRED),
	FIELD(5, "length", PB_UINT64, PB_REQUIRED),
	FIELD(6, "data_crc", PB_CRC32C, PB_REQUIRED),
};

static struct pb_field tx_ack_fields[] = {
	FIELD(1, "txid", PB_UINT64, PB_REQUIRED),
};

static struct pb_field resend_fields[] = {
	FIELD(1, "from_txid", PB_UINT64, PB_REQUIRED),
	FIELD(2, "to_txid", PB_UINT64, PB_REQUIRED),
};

static struct pb_field consistent_fields[] = {
	FIELD(1, "txid", PB_UINT64, PB_REQUIRED),
};

static struct pb_field heartbeat_fields[] = {
	FIELD(1, "seq", PB_UINT64, PB_REQUIRED),
	FIELD(2, "txid", PB_UINT64, PB_REQUIRED),
};

static struct pb_field error_fields[] = {
	NAMED_UINT32(1, "code", NULL), /* vals: the error names, set at registration */
	FIELD(2, "severe", PB_BOOL, PB_REQUIRED),
	FIELD(3, "message", PB_STRING, PB_REQUIRED),
	FIELD(4, "fenced_epoch", PB_UINT64, PB_OPTIONAL),
	FIELD(5, "fenced_txid", PB_UINT64, PB_OPTIONAL),
	FIELD(6, "fenced_unix_ms", PB_UINT64, PB_OPTIONAL),
};

static struct pb_field goodbye_fields[] = {
	FIELD(1, "reason", PB_STRING, PB_REQUIRED),
};

static struct pb_field verify_fields[] = {
	FIELD(1, "verify_id", PB_UINT64, PB_REQUIRED),
	FIELD(2, "offset", PB_UINT64, PB_REQUIRED),
	FIELD(3, "length", PB_UINT64, PB_REQUIRED),
	FIELD(4, "txid", PB_UINT64, PB_REQUIRED),
	FIELD(5, "hash", PB_BYTES, PB_REQUIRED),
};

static struct pb_field verify_result_fields[] = {
	FIELD(1, "verify_id", PB_UINT64, PB_REQUIRED),
	FIELD(2, "offset", PB_UINT64, PB_REQUIRED),
	FIELD(3, "txid", PB_UINT64, PB_REQUIRED),
	ENUM_FIELD(4, "status", verify_status_vals),
	FIELD(5, "hash", PB_BYTES, PB_OPTIONAL),
};

static struct pb_field divergence_request_fields[] = {
	FIELD(1, "since_txid", PB_UINT64, PB_REQUIRED),
};

static struct pb_field divergence_fields[] = {
	FIELD(1, "offset", PB_UINT64, PB_REPEATED),
	FIELD(2, "length", PB_UINT64, PB_REPEATED),
	FIELD(3, "last", PB_BOOL, PB_REQUIRED),
};

static struct pb_field switchover_fields[] = {
	FIELD(1, "txid", PB_UINT64, PB_REQUIRED),
};

static struct pb_field switchover_done_fields[] = {
	FIELD(1, "epoch", PB_UINT64, PB_REQUIRED),
	FIELD(2, "txid", PB_UINT64, PB_REQUIRED),
};

#define MESSAGE(name, abbrev, fields) { name, abbrev, fields, G_N_ELEMENTS(fields), -1 }
#define EMPTY_MESSAGE(name, abbrev) { name, abbrev, NULL, 0, -1 }

/* By frame type (common/wire.h): the type byte names the message. */
static struct pb_message messages[FREP_MSG__MAX + 1] = {
	[FREP_MSG_HELLO] = MESSAGE("Hello", "hello", hello_fields),
	[FREP_MSG_WELCOME] = MESSAGE("Welcome", "welcome", welcome_fields),
	[FREP_MSG_EXTENT_TABLE] = MESSAGE("ExtentTable", "extent_table", extent_table_fields),
	[FREP_MSG_PARTS_READY] = MESSAGE("PartsReady", "parts_ready", parts_ready_fields),
	[FREP_MSG_START_COPY] = MESSAGE("StartCopy", "start_copy", start_copy_fields),
	[FREP_MSG_START_SYNC] = MESSAGE("StartSync", "start_sync", start_sync_fields),
	[FREP_MSG_COPY_DATA] = MESSAGE("CopyData", "copy_data", copy_data_fields),
	[FREP_MSG_COPY_HOLE] = MESSAGE("CopyHole", "copy_hole", copy_hole_fields),
	[FREP_MSG_COPY_ACK] = MESSAGE("CopyAck", "copy_ack", copy_ack_fields),
	[FREP_MSG_COPY_DONE] = MESSAGE("CopyDone", "copy_done", copy_done_fields),
	[FREP_MSG_TX] = MESSAGE("Tx", "tx", tx_fields),
	[FREP_MSG_TX_ACK] = MESSAGE("TxAck", "tx_ack", tx_ack_fields),
	[FREP_MSG_RESEND] = MESSAGE("Resend", "resend", resend_fields),
	[FREP_MSG_CONSISTENT] = MESSAGE("Consistent", "consistent", consistent_fields),
	[FREP_MSG_HEARTBEAT] = MESSAGE("Heartbeat", "heartbeat", heartbeat_fields),
	[FREP_MSG_PAUSE] = EMPTY_MESSAGE("Pause", "pause"),
	[FREP_MSG_RESUME] = EMPTY_MESSAGE("Resume", "resume"),
	[FREP_MSG_ERROR] = MESSAGE("Error", "error", error_fields),
	[FREP_MSG_GOODBYE] = MESSAGE("Goodbye", "goodbye", goodbye_fields),
	[FREP_MSG_VERIFY] = MESSAGE("Verify", "verify", verify_fields),
	[FREP_MSG_VERIFY_RESULT] = MESSAGE("VerifyResult", "verify_result", verify_result_fields),
	[FREP_MSG_DIVERGENCE_REQUEST] = MESSAGE("DivergenceRequest", "divergence_request",
						divergence_request_fields),
	[FREP_MSG_DIVERGENCE] = MESSAGE("Divergence", "divergence", divergence_fields),
	[FREP_MSG_SWITCHOVER] = MESSAGE("Switchover", "switchover", switchover_fields),
	[FREP_MSG_SWITCHOVER_DONE] = MESSAGE("SwitchoverDone", "switchover_done",
					     switchover_done_fields),
};

static int hf_unknown_field = -1;
static int hf_crc_status = -1;
static expert_field ei_unknown_field = EI_INIT;
static expert_field ei_wire_type = EI_INIT;
static expert_field ei_truncated = EI_INIT;
static expert_field ei_missing = EI_INIT;
static expert_field ei_crc_bad = EI_INIT;

static enum pb_wire kind_wire(enum pb_kind kind)
{
	switch (kind) {
	case PB_STRING:
	case PB_BYTES:
		return PB_WIRE_LEN;
	case PB_FIXED32:
	case PB_CRC32C:
		return PB_WIRE_I32;
	default:
		return PB_WIRE_VARINT;
	}
}

static enum ftenum kind_ftype(enum pb_kind kind)
{
	switch (kind) {
	case PB_UINT64:
		return FT_UINT64;
	case PB_BOOL:
		return FT_BOOLEAN;
	case PB_STRING:
		return FT_STRING;
	case PB_BYTES:
		return FT_BYTES;
	default:
		return FT_UINT32;
	}
}

static const char *kind_proto_type(enum pb_kind kind)
{
	static const char *const names[] = {
		[PB_UINT32] = "uint32", [PB_UINT64] = "uint64", [PB_BOOL] = "bool",
		[PB_ENUM] = "enum",	[PB_STRING] = "string", [PB_BYTES] = "bytes",
		[PB_FIXED32] = "fixed32", [PB_CRC32C] = "fixed32",
	};
	return names[kind];
}

/* value_string of the error codes, from frep_error_name so wire.c stays the one name table. */
static const value_string *error_code_vals(void)
{
	value_string *vs = g_new0(value_string, FREP_E__MAX + 1);

	for (unsigned code = 1; code <= FREP_E__MAX; code++) {
		vs[code - 1].value = code;
		vs[code - 1].strptr = frep_error_name(code);
	}
	return vs;
}

void frep_body_register(int proto)
{
	static hf_register_info hf_fixed[] = {
		{ &hf_unknown_field,
		  { "Unknown field", "frep.body.unknown_field", FT_UINT32, BASE_DEC, NULL, 0x0,
		    "Field number not in frep.proto (a newer peer?)", HFILL } },
		{ &hf_crc_status,
		  { "Trailer CRC32C status", "frep.trailer.crc_status", FT_UINT8, BASE_NONE,
		    VALS(proto_checksum_vals), 0x0, NULL, HFILL } },
	};
	static ei_register_info ei[] = {
		{ &ei_unknown_field,
		  { "frep.body.unknown_field", PI_UNDECODED, PI_WARN,
		    "Field not in frep.proto, skipped", EXPFILL } },
		{ &ei_wire_type,
		  { "frep.body.wire_type", PI_MALFORMED, PI_ERROR,
		    "Field has the wrong protobuf wire type", EXPFILL } },
		{ &ei_truncated,
		  { "frep.body.truncated", PI_MALFORMED, PI_ERROR,
		    "Body ends inside a field", EXPFILL } },
		{ &ei_missing,
		  { "frep.body.missing", PI_PROTOCOL, PI_ERROR,
		    "Required field missing", EXPFILL } },
		{ &ei_crc_bad,
		  { "frep.trailer.crc_bad", PI_CHECKSUM, PI_ERROR,
		    "data_crc does not match the CRC32C of the data (the trailer, decompressed)",
		    EXPFILL } },
	};
	unsigned n_hf = 0, n_ett = 0;
	hf_register_info *hf;
	gint **ett;

	error_fields[0].vals = error_code_vals();
	for (unsigned t = 1; t <= FREP_MSG__MAX; t++)
		n_hf += messages[t].n_fields;
	/* Registration keeps pointers to these: they live as long as the program. */
	hf = g_new0(hf_register_info, n_hf);
	ett = g_new0(gint *, FREP_MSG__MAX);
	n_hf = 0;
	for (unsigned t = 1; t <= FREP_MSG__MAX; t++) {
		struct pb_message *m = &messages[t];

		ett[n_ett++] = &m->ett;
		for (unsigned i = 0; i < m->n_fields; i++) {
			struct pb_field *f = &m->fields[i];
			header_field_info *h = &hf[n_hf++].hfinfo;

			/* struct frep_body is indexed by field number: a new field must fit it. */
			g_assert(f->number <= FREP_BODY_MAX_FIELD);

			hf[n_hf - 1].p_id = &f->hf;
			h->name = f->name;
			h->abbrev = g_strdup_printf("frep.%s.%s", m->abbrev, f->name);
			h->type = kind_ftype(f->kind);
			h->display = h->type == FT_UINT64 || h->type == FT_UINT32 ? BASE_DEC : BASE_NONE;
			if (f->kind == PB_FIXED32 || f->kind == PB_CRC32C)
				h->display = BASE_HEX;
			h->strings = f->vals;
			/* The blurb names the frep.proto field: the CI test matches it. */
			h->blurb = g_strdup_printf("frep.proto %s field %u (%s%s)", m->name, f->number,
						   f->label == PB_REPEATED ? "repeated " : "",
						   kind_proto_type(f->kind));
			h->id = -1;
			h->parent = -1;
			h->ref_type = HF_REF_TYPE_NONE;
			h->same_name_prev_id = -1;
		}
	}
	proto_register_field_array(proto, hf, n_hf);
	proto_register_field_array(proto, hf_fixed, array_length(hf_fixed));
	proto_register_subtree_array(ett, n_ett);
	expert_register_field_array(expert_register_protocol(proto), ei, array_length(ei));
}

static const struct pb_field *find_field(const struct pb_message *m, unsigned number)
{
	for (unsigned i = 0; i < m->n_fields; i++)
		if (m->fields[i].number == number)
			return &m->fields[i];
	return NULL;
}

/* Length of the value at offset of wire type wt, -1 if it runs past end. */
static int value_len(tvbuff_t *tvb, int offset, int end, unsigned wt, guint64 *len_prefix)
{
	guint64 v;
	guint n;

	switch (wt) {
	case PB_WIRE_VARINT:
		n = tvb_get_varint(tvb, offset, end - offset, &v, ENC_VARINT_PROTOBUF);
		return n ? (int)n : -1;
	case PB_WIRE_I64:
		return end - offset >= 8 ? 8 : -1;
	case PB_WIRE_I32:
		return end - offset >= 4 ? 4 : -1;
	case PB_WIRE_LEN:
		n = tvb_get_varint(tvb, offset, end - offset, &v, ENC_VARINT_PROTOBUF);
		if (!n || v > (guint64)(end - offset - (int)n))
			return -1;
		*len_prefix = n;
		return (int)(n + v);
	default:
		return -1;
	}
}

static void add_value(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, const struct pb_field *f,
		      int key_off, int voff, int vlen, guint64 prefix, gboolean crc_known,
		      guint32 data_crc, struct frep_body *out)
{
	int len = voff + vlen - key_off;
	proto_item *it;
	guint64 v = 0;

	switch (f->kind) {
	case PB_STRING:
		out->s[f->number] = (const char *)tvb_get_string_enc(pinfo->pool, tvb, voff + (int)prefix,
								   vlen - (int)prefix, ENC_UTF_8);
		out->len[f->number] = (guint32)(vlen - (int)prefix);
		it = proto_tree_add_string(tree, f->hf, tvb, key_off, len, out->s[f->number]);
		break;
	case PB_BYTES:
		out->len[f->number] = (guint32)(vlen - (int)prefix);
		out->bytes[f->number] = tvb_memdup(pinfo->pool, tvb, voff + (int)prefix,
						   vlen - (int)prefix);
		it = proto_tree_add_item(tree, f->hf, tvb, voff + (int)prefix, vlen - (int)prefix, ENC_NA);
		break;
	case PB_FIXED32:
		v = tvb_get_letohl(tvb, voff);
		it = proto_tree_add_uint(tree, f->hf, tvb, key_off, len, (guint32)v);
		break;
	case PB_CRC32C:
		v = tvb_get_letohl(tvb, voff);
		it = proto_tree_add_checksum(tree, tvb, voff, f->hf, hf_crc_status, &ei_crc_bad, pinfo,
					     data_crc, ENC_LITTLE_ENDIAN,
					     crc_known ? PROTO_CHECKSUM_VERIFY : PROTO_CHECKSUM_NO_FLAGS);
		break;
	default:
		tvb_get_varint(tvb, voff, vlen, &v, ENC_VARINT_PROTOBUF);
		if (f->kind == PB_UINT64)
			it = proto_tree_add_uint64(tree, f->hf, tvb, key_off, len, v);
		else if (f->kind == PB_BOOL)
			it = proto_tree_add_boolean(tree, f->hf, tvb, key_off, len, v != 0);
		else
			it = proto_tree_add_uint(tree, f->hf, tvb, key_off, len, (guint32)v);
		break;
	}
	out->u[f->number] = v;
	out->item[f->number] = it;
	out->present |= 1u << f->number;
	if (f->label == PB_REPEATED) {
		struct frep_body_value rv = { v, it };

		if (!out->repeated[f->number])
			out->repeated[f->number] = wmem_array_new(pinfo->pool, sizeof(rv));
		wmem_array_append_one(out->repeated[f->number], rv);
		out->n_repeated[f->number]++;
	}
}

gboolean frep_body_peek_varint(tvbuff_t *tvb, int offset, int len, unsigned number,
			       guint64 *value)
{
	int end = offset + len;
	gboolean found = FALSE;

	while (offset < end) {
		guint64 key, prefix = 0, v;
		guint n = tvb_get_varint(tvb, offset, end - offset, &key, ENC_VARINT_PROTOBUF);
		int vlen = n ? value_len(tvb, offset + n, end, key & 7, &prefix) : -1;

		if (vlen < 0)
			break;
		if ((key >> 3) == number && (key & 7) == PB_WIRE_VARINT &&
		    tvb_get_varint(tvb, offset + n, vlen, &v, ENC_VARINT_PROTOBUF)) {
			*value = v;
			found = TRUE;
		}
		offset += n + vlen;
	}
	return found;
}

gboolean frep_body_dissect(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, unsigned type,
			   int offset, int len, gboolean data_crc_known, guint32 data_crc,
			   struct frep_body *out)
{
	const struct pb_message *m;
	int end = offset + len;
	proto_item *ti;
	proto_tree *t;

	memset(out, 0, sizeof(*out));
	if (type == 0 || type > FREP_MSG__MAX)
		return FALSE;
	m = &messages[type];
	t = proto_tree_add_subtree(tree, tvb, offset, len, m->ett, NULL, m->name);
	while (offset < end) {
		guint64 key, prefix = 0;
		guint n = tvb_get_varint(tvb, offset, end - offset, &key, ENC_VARINT_PROTOBUF);
		unsigned number = (unsigned)(key >> 3), wt = key & 7;
		const struct pb_field *f;
		int vlen;

		vlen = n ? value_len(tvb, offset + n, end, wt, &prefix) : -1;
		if (vlen < 0) {
			proto_tree_add_expert_format(t, pinfo, &ei_truncated, tvb, offset, end - offset,
						     "%s body ends inside field %u", m->name, number);
			return TRUE;
		}
		f = find_field(m, number);
		if (!f) {
			ti = proto_tree_add_uint(t, hf_unknown_field, tvb, offset, n + vlen, number);
			expert_add_info_format(pinfo, ti, &ei_unknown_field,
					       "%s has no field %u in frep.proto: skipped", m->name,
					       number);
		} else if (wt != kind_wire(f->kind)) {
			proto_tree_add_expert_format(t, pinfo, &ei_wire_type, tvb, offset, n + vlen,
						     "%s.%s has wire type %u, frep.proto says %u",
						     m->name, f->name, wt, kind_wire(f->kind));
		} else {
			add_value(tvb, pinfo, t, f, offset, offset + n, vlen, prefix, data_crc_known,
				  data_crc, out);
		}
		offset += n + vlen;
	}
	for (unsigned i = 0; i < m->n_fields; i++) {
		const struct pb_field *f = &m->fields[i];

		if (f->label == PB_REQUIRED && !frep_body_has(out, f->number))
			proto_tree_add_expert_format(t, pinfo, &ei_missing, tvb, end, 0,
						     "%s: required field %s (%u) missing", m->name,
						     f->name, f->number);
	}
	return TRUE;
}
