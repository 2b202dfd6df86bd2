/*
 * Wireshark dissector for frep, the block replication protocol
 * (spec/protocol.md). frep only runs inside TLS; Wireshark hands us the
 * decrypted stream in three ways: the ALPN "frep/1", the TLS port (7460 by
 * default, a preference) or a heuristic on the frame magic.
 *
 * This file: registration, the 16-byte frame header, reassembly of frames
 * across TLS records and TCP segments, and the Info column.
 * frep-trailer.c: the trailer, decompressed; frep-body.c: the protobuf
 * bodies; frep-checks.c: rules of one frame; frep-lanes.c: what each
 * connection negotiated, sessions and lanes; frep-links.c: links and rules
 * across frames; frep-stats.c: the tap and tshark -z frep,tree.
 */
#include <epan/packet.h>
#include <epan/prefs.h>
#include <epan/expert.h>
#include <epan/proto_data.h>
#include <epan/dissectors/packet-tcp.h>
#include <epan/dissectors/packet-tls.h>
#include <ws_version.h>

#include "frep-body.h"
#include "frep-checks.h"
#include "frep-lanes.h"
#include "frep-links.h"
#include "frep-stats.h"
#include "frep-trailer.h"
#include "compress.h"
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
static int hf_flags_compressed = -1;
static int hf_flags_reserved = -1;
static int hf_body_len = -1;
static int hf_trailer_len = -1;
static gint ett_frep = -1;
static gint ett_hdr = -1;
static gint ett_flags = -1;
static expert_field ei_bad_magic = EI_INIT;
static expert_field ei_bad_version = EI_INIT;
static expert_field ei_version_mismatch = EI_INIT;
static expert_field ei_unknown_type = EI_INIT;
static expert_field ei_flags_set = EI_INIT;
static expert_field ei_oversized = EI_INIT;
static expert_field ei_trailer_unexpected = EI_INIT;
static expert_field ei_compressed_unexpected = EI_INIT;

static dissector_handle_t frep_handle;
static gboolean frep_desegment = TRUE;
static gboolean frep_alpn = TRUE;
static guint frep_tls_port = FREP_DEFAULT_PORT;

static value_string msg_type_vals[FREP_MSG__MAX + 1];

/* Version 2's one flag, COMPRESSED; every other bit is reserved (FRAME-5). */
#define FLAGS_RESERVED ((guint16)~FREP_FLAG_COMPRESSED)
static int *const flag_fields[] = { &hf_flags_compressed, &hf_flags_reserved, NULL };

static gboolean header_plausible(tvbuff_t *tvb, int offset)
{
	guint8 type, version;

	if (tvb_captured_length_remaining(tvb, offset) < 6)
		return FALSE;
	type = tvb_get_guint8(tvb, offset + 5);
	version = tvb_get_guint8(tvb, offset + 4);
	return tvb_get_ntohl(tvb, offset) == FREP_FRAME_MAGIC && version >= FREP_PROTO_VERSION &&
	       version <= FREP_PROTO_VERSION_MAX && type >= 1 && type <= FREP_MSG__MAX;
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

/* " (zstd 1234)": a compressed trailer's algorithm and bytes on the wire; "" for a raw one. */
static const char *compressed_note(packet_info *pinfo, const struct frep_trailer *tr)
{
	if (!tr->compressed)
		return "";
	return wmem_strdup_printf(pinfo->pool, " (%s %u)",
				  tr->compression > FREP_COMPRESS_NONE &&
				  tr->compression <= FREP_COMPRESS__MAX ?
				  compress_name((unsigned)tr->compression) : "compressed", tr->trailer_len);
}

/* One Info line per frame, with the fields a reader scans a trace for. */
static const char *info_line(packet_info *pinfo, unsigned type, const struct frep_body *b,
			     const struct frep_trailer *tr)
{
	const char *name = val_to_str_const(type, msg_type_vals, "UNKNOWN");
	const guint64 *u = b->u;

	switch (type) {
	case FREP_MSG_HELLO:
		return wmem_strdup_printf(pinfo->pool, "%s volume=%s master=%s gen=%" PRIu64
					  " committed=%" PRIu64 "%s", name, b->s[4] ? b->s[4] : "",
					  b->s[3] ? b->s[3] : "", u[6], u[11],
					  u[8] || u[9] > 1 ? wmem_strdup_printf(pinfo->pool,
						" lane=%" PRIu64 "/%" PRIu64, u[8], u[9]) : "");
	case FREP_MSG_WELCOME:
		return wmem_strdup_printf(pinfo->pool, "%s known=%d durable=%" PRIu64
					  " consistent=%d@%" PRIu64 " cursor=%" PRIu64 "%s", name,
					  (int)u[2], u[3], (int)u[4], u[5], u[7],
					  u[1] >= 2 ? wmem_strdup_printf(pinfo->pool,
						" version=%" PRIu64 " compression=%s lanes=%" PRIu64, u[1],
						u[11] <= FREP_COMPRESS__MAX ? compress_name((unsigned)u[11]) :
						"unknown", frep_body_has(b, 12) ? u[12] : 1) : "");
	case FREP_MSG_EXTENT_TABLE:
		if (frep_body_has(b, 2))
			return wmem_strdup_printf(pinfo->pool, "%s extents=%u allocated=%" PRIu64, name,
						  b->n_repeated[1], u[2]);
		return wmem_strdup_printf(pinfo->pool, "%s extents=%u", name, b->n_repeated[1]);
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
		return wmem_strdup_printf(pinfo->pool, "%s off=%" PRIu64 " len=%u%s", name, u[1],
					  tr->data_len, compressed_note(pinfo, tr));
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
					  " len=%" PRIu64 "%s", name, u[2], tx_op_word(u[3]), u[4],
					  u[5], compressed_note(pinfo, tr));
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

/*
 * FRAME-3: version 1 until WELCOME (HELLO, WELCOME, an ERROR or GOODBYE
 * before it), then the version WELCOME chose, in both directions.
 */
static void check_version(packet_info *pinfo, proto_item *it, guint8 version,
			  const struct frep_lane_frame *conn)
{
	if (version < FREP_PROTO_VERSION || version > FREP_PROTO_VERSION_MAX)
		expert_add_info_format(pinfo, it, &ei_bad_version, "Version %u: frep has versions "
				       "%u..%u (FRAME-3)", version, FREP_PROTO_VERSION,
				       FREP_PROTO_VERSION_MAX);
	else if (conn->version && version != conn->version && !conn->welcome)
		expert_add_info_format(pinfo, it, &ei_version_mismatch, "Version %u before WELCOME: "
				       "HELLO, WELCOME and what goes before WELCOME are version %u "
				       "frames (FRAME-3)", version, FREP_PROTO_VERSION);
	else if (conn->version && version != conn->version)
		expert_add_info_format(pinfo, it, &ei_version_mismatch, "Version %u, but the WELCOME "
				       "in frame %u chose version %u for the connection (FRAME-3)",
				       version, conn->welcome, conn->version);
}

/* FRAME-5: no flag in version 1; in version 2 COMPRESSED, on a trailer, if negotiated. */
static void check_flags(packet_info *pinfo, proto_item *it, guint8 version, guint16 flags,
			guint32 trailer_len, const struct frep_lane_frame *conn)
{
	if (flags && version == 1)
		expert_add_info_format(pinfo, it, &ei_flags_set, "Flags 0x%04x in a version-1 frame: "
				       "version 1 has none (FRAME-5)", flags);
	else if (flags & FLAGS_RESERVED)
		expert_add_info_format(pinfo, it, &ei_flags_set, "Reserved flags 0x%04x set (FRAME-5)",
				       flags & FLAGS_RESERVED);
	if (!(flags & FREP_FLAG_COMPRESSED) || version == 1)
		return;
	if (!trailer_len)
		expert_add_info_format(pinfo, it, &ei_compressed_unexpected, "COMPRESSED on a frame "
				       "without a trailer (FRAME-5)");
	else if (conn->compression == FREP_COMPRESS_NONE)
		expert_add_info_format(pinfo, it, &ei_compressed_unexpected, "COMPRESSED, but the "
				       "connection negotiated no compression (WELCOME in frame %u, "
				       "COMP-1)", conn->welcome);
}

static void add_header(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, int offset,
		       const struct frep_lane_frame *conn)
{
	proto_tree *t = proto_tree_add_subtree(tree, tvb, offset, FREP_FRAME_HDR_SIZE, ett_hdr, NULL,
					       "Header");
	guint8 version = tvb_get_guint8(tvb, offset + 4);
	guint8 type = tvb_get_guint8(tvb, offset + 5);
	guint16 flags = tvb_get_ntohs(tvb, offset + 6);
	guint32 body_len = tvb_get_ntohl(tvb, offset + 8);
	guint32 trailer_len = tvb_get_ntohl(tvb, offset + 12);
	proto_item *it;

	it = proto_tree_add_item(t, hf_magic, tvb, offset, 4, ENC_BIG_ENDIAN);
	if (tvb_get_ntohl(tvb, offset) != FREP_FRAME_MAGIC)
		expert_add_info(pinfo, it, &ei_bad_magic);
	it = proto_tree_add_item(t, hf_version, tvb, offset + 4, 1, ENC_BIG_ENDIAN);
	check_version(pinfo, it, version, conn);
	it = proto_tree_add_item(t, hf_type, tvb, offset + 5, 1, ENC_BIG_ENDIAN);
	if (type == 0 || type > FREP_MSG__MAX)
		expert_add_info(pinfo, it, &ei_unknown_type);
	it = proto_tree_add_bitmask(t, tvb, offset + 6, hf_flags, ett_flags, flag_fields,
				    ENC_BIG_ENDIAN);
	check_flags(pinfo, it, version, flags, trailer_len, conn);
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
	const struct frep_lane_frame *conn = frep_lanes_frame(pinfo, rank);
	guint8 type = tvb_get_guint8(tvb, 5);
	guint16 flags = tvb_get_ntohs(tvb, 6);
	guint32 body_len = tvb_get_ntohl(tvb, 8);
	guint32 trailer_len = tvb_get_ntohl(tvb, 12);
	struct frep_latencies lat;
	struct frep_trailer tr;
	struct frep_body body;
	proto_item *frame_item;
	proto_tree *t;

	frame_item = proto_tree_add_item(tree, proto_frep, tvb, 0, -1, ENC_NA);
	t = proto_item_add_subtree(frame_item, ett_frep);
	add_header(tvb, pinfo, t, 0, conn);
	if (tvb_get_ntohl(tvb, 0) != FREP_FRAME_MAGIC || !lengths_in_limits(tvb, 0)) {
		info_add(pinfo, rank, "[not a frep frame]");
		return tvb_captured_length(tvb);
	}
	/* The trailer first: data_crc in the body is checked against its data. */
	frep_trailer_dissect(tvb, pinfo, t, type, flags, FREP_FRAME_HDR_SIZE, (int)body_len,
			     trailer_len, conn->compression, &tr);
	frep_body_dissect(tvb, pinfo, t, type, FREP_FRAME_HDR_SIZE, (int)body_len, tr.data_known,
			  tr.crc, &body);
	frep_checks_dissect(pinfo, frame_item, type, &body, trailer_len, tr.data_len);
	frep_lanes_dissect(tvb, pinfo, t, frame_item, rank, type, &body);
	frep_links_dissect(tvb, pinfo, t, frame_item, rank, type, &body, tr.data_len, &lat);
	info_add(pinfo, rank, info_line(pinfo, type, &body, &tr));
	frep_stats_tap(pinfo, type, FREP_FRAME_HDR_SIZE + body_len + trailer_len, &tr, &lat);
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
		{ &hf_flags_compressed,
		  { "Compressed", "frep.hdr.flags.compressed", FT_BOOLEAN, 16, NULL,
		    FREP_FLAG_COMPRESSED,
		    "Version 2: the trailer is compressed with the connection's algorithm (COMP-1)",
		    HFILL } },
		{ &hf_flags_reserved,
		  { "Reserved", "frep.hdr.flags.reserved", FT_UINT16, BASE_HEX, NULL, FLAGS_RESERVED,
		    "Bits 1..15, reserved: must be 0 (FRAME-5); in version 1 bit 0 is too",
		    HFILL } },
		{ &hf_body_len,
		  { "Body length", "frep.hdr.body_len", FT_UINT32, BASE_DEC, NULL, 0x0, NULL,
		    HFILL } },
		{ &hf_trailer_len,
		  { "Trailer length", "frep.hdr.trailer_len", FT_UINT32, BASE_DEC, NULL, 0x0, NULL,
		    HFILL } },
	};
	static gint *ett[] = { &ett_frep, &ett_hdr, &ett_flags };
	static ei_register_info ei[] = {
		{ &ei_bad_magic,
		  { "frep.hdr.bad_magic", PI_MALFORMED, PI_ERROR,
		    "Magic is not 0x46524550 (\"FREP\"): not a frep frame", EXPFILL } },
		{ &ei_bad_version,
		  { "frep.hdr.bad_version", PI_PROTOCOL, PI_ERROR,
		    "Version is not one frep has, 1 or 2 (FRAME-3)", EXPFILL } },
		{ &ei_version_mismatch,
		  { "frep.hdr.version_mismatch", PI_PROTOCOL, PI_ERROR,
		    "Version is not the connection's: 1 until WELCOME, then WELCOME's (FRAME-3)",
		    EXPFILL } },
		{ &ei_unknown_type,
		  { "frep.hdr.unknown_type", PI_PROTOCOL, PI_ERROR,
		    "Unknown message type", EXPFILL } },
		{ &ei_flags_set,
		  { "frep.hdr.flags_set", PI_PROTOCOL, PI_ERROR,
		    "Flags set that are not defined: any in version 1, reserved ones in version 2 "
		    "(FRAME-5)", EXPFILL } },
		{ &ei_compressed_unexpected,
		  { "frep.hdr.compressed_unexpected", PI_PROTOCOL, PI_ERROR,
		    "COMPRESSED on a frame without a trailer, or in a connection without compression "
		    "(FRAME-5, COMP-1)", EXPFILL } },
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
	frep_trailer_register(proto_frep);
	frep_body_register(proto_frep);
	frep_checks_register(proto_frep);
	frep_lanes_register(proto_frep);
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
