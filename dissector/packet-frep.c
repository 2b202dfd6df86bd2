/*
 * Wireshark dissector for frep, the block replication protocol
 * (spec/protocol.md). frep only runs inside TLS; Wireshark hands us the
 * decrypted stream in three ways: the ALPN "frep/1", the TLS port (7460 by
 * default, a preference) or a heuristic on the frame magic.
 *
 * This file: registration, the 16-byte frame header, reassembly of frames
 * across TLS records and TCP segments, the trailer and the Info column.
 * frep-body.c: the protobuf bodies; frep-checks.c: rules of one frame;
 * frep-links.c: links and rules across frames; frep-stats.c: the tap and
 * tshark -z frep,tree.
 */
#include <epan/packet.h>
#include <epan/prefs.h>
#include <epan/expert.h>
#include <epan/proto_data.h>
#include <epan/crc32-tvb.h>
#include <wsutil/crc32.h>
#include <epan/dissectors/packet-tcp.h>
#include <epan/dissectors/packet-tls.h>
#include <ws_version.h>

#include "frep-body.h"
#include "frep-checks.h"
#include "frep-links.h"
#include "frep-stats.h"
#include "wire.h"

WS_DLL_PUBLIC_DEF const gchar plugin_version[] = FREP_VERSION;
WS_DLL_PUBLIC_DEF const int plugin_want_major = WIRESHARK_VERSION_MAJOR;
WS_DLL_PUBLIC_DEF const int plugin_want_minor = WIRESHARK_VERSION_MINOR;
WS_DLL_PUBLIC void plugin_register(void);

static int proto_frep = -1;
static int hf_magic = -1;
static int hf_version = -1;
static int hf_type = -1;
static int hf_flags = -1;
static int hf_flags_reserved = -1;
static int hf_body_len = -1;
static int hf_trailer_len = -1;
static int hf_trailer = -1;
static int hf_trailer_crc = -1;
static gint ett_frep = -1;
static gint ett_hdr = -1;
static gint ett_flags = -1;
static expert_field ei_bad_magic = EI_INIT;
static expert_field ei_bad_version = EI_INIT;
static expert_field ei_unknown_type = EI_INIT;
static expert_field ei_flags_set = EI_INIT;
static expert_field ei_oversized = EI_INIT;
static expert_field ei_trailer_unexpected = EI_INIT;

static dissector_handle_t frep_handle;
static gboolean frep_desegment = TRUE;
static gboolean frep_alpn = TRUE;
static guint frep_tls_port = FREP_DEFAULT_PORT;

static value_string msg_type_vals[FREP_MSG__MAX + 1];

/* No flag is defined in version 1 (FRAME-4): every bit shows as reserved. */
static int *const flag_fields[] = { &hf_flags_reserved, NULL };

static gboolean header_plausible(tvbuff_t *tvb, int offset)
{
	guint8 type;

	if (tvb_captured_length_remaining(tvb, offset) < 6)
		return FALSE;
	type = tvb_get_guint8(tvb, offset + 5);
	return tvb_get_ntohl(tvb, offset) == FREP_FRAME_MAGIC &&
	       tvb_get_guint8(tvb, offset + 4) == FREP_PROTO_VERSION && type >= 1 &&
	       type <= FREP_MSG__MAX;
}

static gboolean lengths_in_limits(tvbuff_t *tvb, int offset)
{
	return tvb_get_ntohl(tvb, offset + 8) <= FREP_MAX_BODY &&
	       tvb_get_ntohl(tvb, offset + 12) <= FREP_MAX_TRAILER;
}

/*
 * A header that is not frep's, or lengths beyond the limits, would have the
 * reassembly wait for bytes that never come (up to 4 GiB): such a "frame"
 * ends with what the segment holds, and is shown as malformed.
 */
static guint get_frame_len(packet_info *pinfo, tvbuff_t *tvb, int offset, void *data)
{
	if (tvb_get_ntohl(tvb, offset) != FREP_FRAME_MAGIC || !lengths_in_limits(tvb, offset))
		return tvb_reported_length_remaining(tvb, offset);
	return FREP_FRAME_HDR_SIZE + tvb_get_ntohl(tvb, offset + 8) + tvb_get_ntohl(tvb, offset + 12);
}

static const char *tx_op_word(guint64 op)
{
	switch (op) {
	case 1: return "";
	case 2: return " TRIM";
	case 3: return " ZERO";
	default: return " OP?";
	}
}

/* One Info line per frame, with the fields a reader scans a trace for. */
static const char *info_line(packet_info *pinfo, unsigned type, const struct frep_body *b,
			     guint32 trailer_len)
{
	const char *name = val_to_str_const(type, msg_type_vals, "UNKNOWN");
	const guint64 *u = b->u;

	switch (type) {
	case FREP_MSG_HELLO:
		return wmem_strdup_printf(pinfo->pool, "%s volume=%s master=%s gen=%" PRIu64
					  " committed=%" PRIu64, name, b->s[4] ? b->s[4] : "",
					  b->s[3] ? b->s[3] : "", u[6], u[11]);
	case FREP_MSG_WELCOME:
		return wmem_strdup_printf(pinfo->pool, "%s known=%d durable=%" PRIu64
					  " consistent=%d@%" PRIu64 " cursor=%" PRIu64, name,
					  (int)u[2], u[3], (int)u[4], u[5], u[7]);
	case FREP_MSG_EXTENT_TABLE:
		if (frep_body_has(b, 2))
			return wmem_strdup_printf(pinfo->pool, "%s extents=%u allocated=%" PRIu64, name,
						  b->n_repeated, u[2]);
		return wmem_strdup_printf(pinfo->pool, "%s extents=%u", name, b->n_repeated);
	case FREP_MSG_PARTS_READY:
		return wmem_strdup_printf(pinfo->pool, "%s %s size=%" PRIu64, name,
					  u[1] ? "created" : "validated", u[2]);
	case FREP_MSG_START_COPY:
		return wmem_strdup_printf(pinfo->pool, "%s %s base=%" PRIu64 " total=%" PRIu64
					  " from=%" PRIu64, name,
					  !frep_body_has(b, 4) || u[4] ? "full" : "dirty", u[2], u[3],
					  u[5]);
	case FREP_MSG_START_SYNC:
		return wmem_strdup_printf(pinfo->pool, "%s from=%" PRIu64, name, u[1]);
	case FREP_MSG_COPY_DATA:
		return wmem_strdup_printf(pinfo->pool, "%s off=%" PRIu64 " len=%u", name, u[1],
					  trailer_len);
	case FREP_MSG_COPY_HOLE:
		return wmem_strdup_printf(pinfo->pool, "%s off=%" PRIu64 " len=%" PRIu64, name,
					  u[1], u[2]);
	case FREP_MSG_COPY_ACK:
		return wmem_strdup_printf(pinfo->pool, "%s through=%" PRIu64, name, u[1]);
	case FREP_MSG_COPY_DONE:
		return wmem_strdup_printf(pinfo->pool, "%s last=%" PRIu64 " copied=%" PRIu64, name,
					  u[1], u[2]);
	case FREP_MSG_TX:
		return wmem_strdup_printf(pinfo->pool, "%s txid=%" PRIu64 "%s off=%" PRIu64
					  " len=%" PRIu64, name, u[2], tx_op_word(u[3]), u[4],
					  u[5]);
	case FREP_MSG_TX_ACK:
		return wmem_strdup_printf(pinfo->pool, "%s through=%" PRIu64, name, u[1]);
	case FREP_MSG_RESEND:
		return wmem_strdup_printf(pinfo->pool, "%s %" PRIu64 "..%" PRIu64, name, u[1],
					  u[2]);
	case FREP_MSG_CONSISTENT:
		return wmem_strdup_printf(pinfo->pool, "%s txid=%" PRIu64, name, u[1]);
	case FREP_MSG_HEARTBEAT:
		return wmem_strdup_printf(pinfo->pool, "%s seq=%" PRIu64 " txid=%" PRIu64, name,
					  u[1], u[2]);
	case FREP_MSG_ERROR:
		return wmem_strdup_printf(pinfo->pool, "%s %s \"%s\"", name,
					  frep_error_name((unsigned)u[1]), b->s[3] ? b->s[3] : "");
	case FREP_MSG_GOODBYE:
		return wmem_strdup_printf(pinfo->pool, "%s \"%s\"", name, b->s[1] ? b->s[1] : "");
	case FREP_MSG_VERIFY:
		return wmem_strdup_printf(pinfo->pool, "%s id=%" PRIu64 " off=%" PRIu64 " len=%" PRIu64
					  " txid=%" PRIu64, name, u[1], u[2], u[3], u[4]);
	case FREP_MSG_VERIFY_RESULT:
		return wmem_strdup_printf(pinfo->pool, "%s id=%" PRIu64 " off=%" PRIu64 " txid=%" PRIu64
					  "%s", name, u[1], u[2], u[3],
					  u[4] == 2 ? " not at txid" : "");
	default:
		return name;
	}
}

/*
 * The rank of this frep frame among those ending in this packet, 1 for the
 * first: several frames can end in one packet, and the rank, the same on
 * every pass, keys each one's link record (frep-links.c).
 */
static unsigned next_rank(packet_info *pinfo)
{
	unsigned rank = GPOINTER_TO_UINT(p_get_proto_data(pinfo->pool, pinfo, proto_frep, 0)) + 1;

	p_add_proto_data(pinfo->pool, pinfo, proto_frep, 0, GUINT_TO_POINTER(rank));
	return rank;
}

/*
 * TLS calls us once per record and rewrites the columns between calls: the
 * first frep frame of a packet replaces what TLS wrote in the Info column,
 * the others append.
 */
static void info_add(packet_info *pinfo, unsigned rank, const char *line)
{
	col_set_str(pinfo->cinfo, COL_PROTOCOL, "frep");
	if (rank == 1) {
		col_clear_fence(pinfo->cinfo, COL_INFO);
		col_clear(pinfo->cinfo, COL_INFO);
	}
	col_append_sep_str(pinfo->cinfo, COL_INFO, ", ", line);
}

static void add_header(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, int offset)
{
	proto_tree *t = proto_tree_add_subtree(tree, tvb, offset, FREP_FRAME_HDR_SIZE, ett_hdr, NULL,
					       "Header");
	guint8 type = tvb_get_guint8(tvb, offset + 5);
	guint32 body_len = tvb_get_ntohl(tvb, offset + 8);
	guint32 trailer_len = tvb_get_ntohl(tvb, offset + 12);
	proto_item *it;

	it = proto_tree_add_item(t, hf_magic, tvb, offset, 4, ENC_BIG_ENDIAN);
	if (tvb_get_ntohl(tvb, offset) != FREP_FRAME_MAGIC)
		expert_add_info(pinfo, it, &ei_bad_magic);
	it = proto_tree_add_item(t, hf_version, tvb, offset + 4, 1, ENC_BIG_ENDIAN);
	if (tvb_get_guint8(tvb, offset + 4) != FREP_PROTO_VERSION)
		expert_add_info(pinfo, it, &ei_bad_version);
	it = proto_tree_add_item(t, hf_type, tvb, offset + 5, 1, ENC_BIG_ENDIAN);
	if (type == 0 || type > FREP_MSG__MAX)
		expert_add_info(pinfo, it, &ei_unknown_type);
	it = proto_tree_add_bitmask(t, tvb, offset + 6, hf_flags, ett_flags, flag_fields,
				    ENC_BIG_ENDIAN);
	if (tvb_get_ntohs(tvb, offset + 6))
		expert_add_info(pinfo, it, &ei_flags_set);
	it = proto_tree_add_item(t, hf_body_len, tvb, offset + 8, 4, ENC_BIG_ENDIAN);
	if (body_len > FREP_MAX_BODY)
		expert_add_info_format(pinfo, it, &ei_oversized, "body_len %u exceeds %u (FRAME-6)",
				       body_len, FREP_MAX_BODY);
	it = proto_tree_add_item(t, hf_trailer_len, tvb, offset + 12, 4, ENC_BIG_ENDIAN);
	if (trailer_len > FREP_MAX_TRAILER)
		expert_add_info_format(pinfo, it, &ei_oversized,
				       "trailer_len %u exceeds %u (FRAME-7)", trailer_len,
				       FREP_MAX_TRAILER);
	else if (trailer_len && !frep_msg_has_trailer(type))
		expert_add_info(pinfo, it, &ei_trailer_unexpected);
}

static int dissect_frame(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, void *data)
{
	unsigned rank = next_rank(pinfo);
	guint8 type = tvb_get_guint8(tvb, 5);
	guint32 body_len = tvb_get_ntohl(tvb, 8);
	guint32 trailer_len = tvb_get_ntohl(tvb, 12);
	int trailer_off = FREP_FRAME_HDR_SIZE + (int)body_len;
	guint32 trailer_crc = 0;
	struct frep_latencies lat;
	struct frep_body body;
	proto_item *ti, *frame_item;
	proto_tree *t;

	frame_item = proto_tree_add_item(tree, proto_frep, tvb, 0, -1, ENC_NA);
	t = proto_item_add_subtree(frame_item, ett_frep);
	add_header(tvb, pinfo, t, 0);
	if (tvb_get_ntohl(tvb, 0) != FREP_FRAME_MAGIC || !lengths_in_limits(tvb, 0)) {
		info_add(pinfo, rank, "[not a frep frame]");
		return tvb_captured_length(tvb);
	}
	if (trailer_len) {
		/* Wireshark's CRC32C comes byte-swapped and without the final XOR. */
		trailer_crc = crc32c_tvb_offset_calculate(tvb, trailer_off, trailer_len,
							  CRC32C_PRELOAD) ^ 0xFFFFFFFFu;
		trailer_crc = GUINT32_SWAP_LE_BE(trailer_crc);
		proto_tree_add_item(t, hf_trailer, tvb, trailer_off, trailer_len, ENC_NA);
		ti = proto_tree_add_uint(t, hf_trailer_crc, tvb, trailer_off, trailer_len,
					 trailer_crc);
		proto_item_set_generated(ti);
	}
	frep_body_dissect(tvb, pinfo, t, type, FREP_FRAME_HDR_SIZE, (int)body_len, trailer_crc,
			  &body);
	frep_checks_dissect(pinfo, frame_item, type, &body, trailer_len);
	frep_links_dissect(tvb, pinfo, t, frame_item, rank, type, &body, trailer_len, &lat);
	info_add(pinfo, rank, info_line(pinfo, type, &body, trailer_len));
	frep_stats_tap(pinfo, type, FREP_FRAME_HDR_SIZE + body_len + trailer_len, &lat);
	return tvb_captured_length(tvb);
}

static int dissect_frep(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, void *data)
{
	tcp_dissect_pdus(tvb, pinfo, tree, frep_desegment, FREP_FRAME_HDR_SIZE, get_frame_len,
			 dissect_frame, data);
	return tvb_captured_length(tvb);
}

/*
 * Decrypted TLS data that starts with a frep header. Wireshark 4.0 passes
 * the session's application handle: set, it sends the rest of the session
 * straight to frep.
 */
static gboolean dissect_frep_heur_tls(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree,
				      void *data)
{
	if (!header_plausible(tvb, 0))
		return FALSE;
	if (data)
		*(dissector_handle_t *)data = frep_handle;
	dissect_frep(tvb, pinfo, tree, NULL);
	return TRUE;
}

/* Handoff, and again whenever the preferences change. */
static void proto_reg_handoff_frep(void)
{
	static gboolean initialized;
	static guint tls_port;
	static gboolean alpn;

	if (!initialized) {
		heur_dissector_add("tls", dissect_frep_heur_tls, "frep over TLS (frame magic)",
				   "frep_tls", proto_frep, HEURISTIC_ENABLE);
		initialized = TRUE;
	} else {
		if (tls_port)
			ssl_dissector_delete(tls_port, frep_handle);
		if (alpn)
			dissector_delete_string("tls.alpn", FREP_ALPN, frep_handle);
	}
	tls_port = frep_tls_port;
	alpn = frep_alpn;
	if (tls_port)
		ssl_dissector_add(tls_port, frep_handle);
	if (alpn)
		dissector_add_string("tls.alpn", FREP_ALPN, frep_handle);
}

static void proto_register_frep(void)
{
	static hf_register_info hf[] = {
		{ &hf_magic,
		  { "Magic", "frep.hdr.magic", FT_UINT32, BASE_HEX, NULL, 0x0,
		    "0x46524550, \"FREP\"", HFILL } },
		{ &hf_version,
		  { "Version", "frep.hdr.version", FT_UINT8, BASE_DEC, NULL, 0x0, NULL, HFILL } },
		{ &hf_type,
		  { "Type", "frep.hdr.type", FT_UINT8, BASE_DEC, VALS(msg_type_vals), 0x0,
		    "Message type (common/wire.h)", HFILL } },
		{ &hf_flags,
		  { "Flags", "frep.hdr.flags", FT_UINT16, BASE_HEX, NULL, 0x0, NULL, HFILL } },
		{ &hf_flags_reserved,
		  { "Reserved", "frep.hdr.flags.reserved", FT_UINT16, BASE_HEX, NULL, 0xFFFF,
		    "No flag is defined in version 1: must be 0", HFILL } },
		{ &hf_body_len,
		  { "Body length", "frep.hdr.body_len", FT_UINT32, BASE_DEC, NULL, 0x0, NULL,
		    HFILL } },
		{ &hf_trailer_len,
		  { "Trailer length", "frep.hdr.trailer_len", FT_UINT32, BASE_DEC, NULL, 0x0, NULL,
		    HFILL } },
		{ &hf_trailer,
		  { "Trailer", "frep.trailer", FT_BYTES, BASE_NONE, NULL, 0x0,
		    "Block data (COPY_DATA, TX)", HFILL } },
		{ &hf_trailer_crc,
		  { "Trailer CRC32C", "frep.trailer.crc32c", FT_UINT32, BASE_HEX, NULL, 0x0,
		    "CRC32C computed over the trailer", HFILL } },
	};
	static gint *ett[] = { &ett_frep, &ett_hdr, &ett_flags };
	static ei_register_info ei[] = {
		{ &ei_bad_magic,
		  { "frep.hdr.bad_magic", PI_MALFORMED, PI_ERROR,
		    "Magic is not 0x46524550 (\"FREP\"): not a frep frame", EXPFILL } },
		{ &ei_bad_version,
		  { "frep.hdr.bad_version", PI_PROTOCOL, PI_ERROR,
		    "Version is not 1 (FRAME-3)", EXPFILL } },
		{ &ei_unknown_type,
		  { "frep.hdr.unknown_type", PI_PROTOCOL, PI_ERROR,
		    "Unknown message type", EXPFILL } },
		{ &ei_flags_set,
		  { "frep.hdr.flags_set", PI_PROTOCOL, PI_WARN,
		    "Flags set: no flag is defined in version 1", EXPFILL } },
		{ &ei_oversized,
		  { "frep.hdr.oversized", PI_MALFORMED, PI_ERROR,
		    "Length beyond the protocol's limit", EXPFILL } },
		{ &ei_trailer_unexpected,
		  { "frep.hdr.trailer_unexpected", PI_PROTOCOL, PI_ERROR,
		    "Trailer on a message type that has none", EXPFILL } },
	};
	module_t *module;

	/* Names from frep_msg_name, so common/wire.c stays the one name table. */
	for (unsigned t = 1; t <= FREP_MSG__MAX; t++) {
		msg_type_vals[t - 1].value = t;
		msg_type_vals[t - 1].strptr = frep_msg_name(t);
	}
	proto_frep = proto_register_protocol("frep block replication protocol", "frep", "frep");
	proto_register_field_array(proto_frep, hf, array_length(hf));
	proto_register_subtree_array(ett, array_length(ett));
	expert_register_field_array(expert_register_protocol(proto_frep), ei, array_length(ei));
	frep_body_register(proto_frep);
	frep_checks_register(proto_frep);
	frep_links_register(proto_frep);
	frep_stats_register();
	frep_handle = register_dissector("frep", dissect_frep, proto_frep);

	module = prefs_register_protocol(proto_frep, proto_reg_handoff_frep);
	prefs_register_bool_preference(module, "desegment", "Reassemble frames spanning TLS records",
				       "Reassemble a frame whose header, body or trailer spans "
				       "several TLS records or TCP segments.",
				       &frep_desegment);
	prefs_register_uint_preference(module, "tls.port", "frep TLS port",
				       "Decode TLS on this TCP port as frep (0: none). Sessions "
				       "with ALPN frep/1 are found on any port.",
				       10, &frep_tls_port);
	prefs_register_bool_preference(module, "alpn", "Claim TLS sessions with ALPN frep/1",
				       "Decode every TLS session that negotiated ALPN frep/1.",
				       &frep_alpn);
}

void plugin_register(void)
{
	static proto_plugin plugin;

	plugin.register_protoinfo = proto_register_frep;
	plugin.register_handoff = proto_reg_handoff_frep;
	proto_register_plugin(&plugin);
}
