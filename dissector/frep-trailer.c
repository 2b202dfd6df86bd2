/*
 * The trailer of COPY_DATA and TX: the block data, raw or compressed (spec
 * "Compression (version 2)").
 *
 * A compressed trailer (flag COMPRESSED, FRAME-5) is one zstd frame or one
 * lz4 block, of the algorithm the connection's WELCOME chose (NEG-3). It is
 * decompressed as the mirror does, with common/compress.c: into a buffer of
 * exactly the length the body declares (Tx.length, CopyData.length: COMP-3),
 * 1..FREP_MAX_TRAILER, never more (COMP-4), and refused if the data does not
 * fill it exactly. The data becomes a data source of its own, "Decompressed
 * trailer", and data_crc is checked against it: the CRC is of the data, not
 * of what the wire carried (COMP-3).
 */
#include "frep-trailer.h"

#include <epan/crc32-tvb.h>
#include <epan/expert.h>
#include <wsutil/crc32.h>

#include "compress.h"
#include "frep-body.h"
#include "wire.h"

static int hf_trailer = -1;
static int hf_crc = -1;
static int hf_data_len = -1;
static int hf_compression = -1;
static int hf_ratio = -1;
static int hf_data = -1;
static gint ett_trailer = -1;
static expert_field ei_length = EI_INIT;
static expert_field ei_decompress = EI_INIT;
static expert_field ei_unknown = EI_INIT;

/* One decompression context per algorithm, made on first use: dissection runs on one thread. */
static struct compressor *codecs[FREP_COMPRESS__MAX + 1];

static void free_codecs(void)
{
	for (unsigned i = 0; i <= FREP_COMPRESS__MAX; i++) {
		compressor_free(codecs[i]);
		codecs[i] = NULL;
	}
}

void frep_trailer_register(int proto)
{
	static hf_register_info hf[] = {
		{ &hf_trailer,
		  { "Trailer", "frep.trailer", FT_BYTES, BASE_NONE, NULL, 0x0,
		    "Block data of COPY_DATA and TX as sent: compressed if the header says so",
		    HFILL } },
		{ &hf_crc,
		  { "Trailer CRC32C", "frep.trailer.crc32c", FT_UINT32, BASE_HEX, NULL, 0x0,
		    "CRC32C computed over the data (the trailer, decompressed)", HFILL } },
		{ &hf_data_len,
		  { "Data length", "frep.trailer.data_len", FT_UINT32, BASE_DEC, NULL, 0x0,
		    "Bytes of data: the trailer's length, or, compressed, the length it "
		    "decompresses to (COMP-3)", HFILL } },
		{ &hf_compression,
		  { "Compression", "frep.trailer.compression", FT_UINT32, BASE_DEC,
		    VALS(frep_compression_vals), 0x0,
		    "The algorithm of the connection's WELCOME (NEG-3)", HFILL } },
		{ &hf_ratio,
		  { "Compression ratio", "frep.trailer.ratio", FT_DOUBLE, BASE_NONE, NULL, 0x0,
		    "Data length / trailer length", HFILL } },
		{ &hf_data,
		  { "Data", "frep.trailer.data", FT_BYTES, BASE_NONE, NULL, 0x0,
		    "The trailer decompressed (data source \"Decompressed trailer\")", HFILL } },
	};
	static gint *ett[] = { &ett_trailer };
	static ei_register_info ei[] = {
		{ &ei_length,
		  { "frep.trailer.length_bad", PI_PROTOCOL, PI_ERROR,
		    "Compressed trailer without a declared length of 1..33554432 (COMP-3, COMP-4)",
		    EXPFILL } },
		{ &ei_decompress,
		  { "frep.trailer.decompress_failed", PI_PROTOCOL, PI_ERROR,
		    "Compressed trailer that does not decompress to exactly its declared length "
		    "(COMP-4)", EXPFILL } },
		{ &ei_unknown,
		  { "frep.trailer.not_decompressed", PI_UNDECODED, PI_WARN,
		    "Compressed trailer not decompressed: the algorithm is not known", EXPFILL } },
	};

	proto_register_field_array(proto, hf, array_length(hf));
	proto_register_subtree_array(ett, array_length(ett));
	expert_register_field_array(expert_register_protocol(proto), ei, array_length(ei));
	register_shutdown_routine(free_codecs);
}

static guint32 crc32c_of(tvbuff_t *tvb, int offset, guint32 len)
{
	/* Wireshark's CRC32C comes byte-swapped and without the final XOR. */
	guint32 crc = crc32c_tvb_offset_calculate(tvb, offset, len, CRC32C_PRELOAD) ^ 0xFFFFFFFFu;

	return GUINT32_SWAP_LE_BE(crc);
}

/*
 * Decompresses the trailer into a new data source of exactly the declared
 * length; NULL, with expert info on item, if it cannot.
 */
static tvbuff_t *decompress(tvbuff_t *tvb, packet_info *pinfo, proto_item *item, unsigned type,
			    int body_off, int body_len, int trailer_off, guint32 trailer_len,
			    int alg, guint32 *data_len)
{
	/* COMP-3: the data's length is Tx.length or CopyData.length. */
	unsigned field = type == FREP_MSG_TX ? 5 : 3;
	const char *name = frep_msg_name(type);
	char why[256];
	guint64 want;
	guint8 *data;
	tvbuff_t *out;

	if (!frep_body_peek_varint(tvb, body_off, body_len, field, &want)) {
		expert_add_info_format(pinfo, item, &ei_length, "%s with a compressed trailer declares "
				       "no length (COMP-3)", name);
		return NULL;
	}
	*data_len = (guint32)MIN(want, G_MAXUINT32);
	if (want == 0 || want > FREP_MAX_TRAILER) {
		expert_add_info_format(pinfo, item, &ei_length, "%s declares %" PRIu64 " bytes of "
				       "data: a compressed trailer holds 1..%u (COMP-4)", name, want,
				       (unsigned)FREP_MAX_TRAILER);
		return NULL;
	}
	if (alg < 0) {
		expert_add_info_format(pinfo, item, &ei_unknown, "Not decompressed: no WELCOME of this "
				       "connection named the algorithm before it");
		return NULL;
	}
	if (alg == FREP_COMPRESS_NONE || alg > FREP_COMPRESS__MAX) {
		/* No algorithm: flagged in the header (COMP-1). Unknown: the WELCOME is flagged. */
		expert_add_info_format(pinfo, item, &ei_unknown, "Not decompressed: the connection "
				       "negotiated %s", alg == FREP_COMPRESS_NONE ? "no compression" :
				       "an algorithm frep does not know");
		return NULL;
	}
	if (!codecs[alg] && !(codecs[alg] = compressor_new((unsigned)alg)))
		return NULL;
	data = wmem_alloc(pinfo->pool, (size_t)want);
	if (decompress_frame(codecs[alg], tvb_get_ptr(tvb, trailer_off, (gint)trailer_len),
			     trailer_len, data, (size_t)want, why, sizeof(why)) < 0) {
		expert_add_info_format(pinfo, item, &ei_decompress, "%s trailer of %u bytes: %s (COMP-4)",
				       name, trailer_len, why);
		return NULL;
	}
	out = tvb_new_child_real_data(tvb, data, (guint)want, (gint)want);
	add_new_data_source(pinfo, out, "Decompressed trailer");
	return out;
}

void frep_trailer_dissect(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, unsigned type,
			  guint16 flags, int body_off, int body_len, guint32 trailer_len,
			  int compression, struct frep_trailer *out)
{
	int trailer_off = body_off + body_len;
	tvbuff_t *data;
	proto_item *item, *ti;
	proto_tree *t;

	memset(out, 0, sizeof(*out));
	out->trailer_len = trailer_len;
	if (!trailer_len) {
		out->data_known = TRUE;
		return;
	}
	item = proto_tree_add_item(tree, hf_trailer, tvb, trailer_off, (gint)trailer_len, ENC_NA);
	t = proto_item_add_subtree(item, ett_trailer);
	/* COMPRESSED elsewhere than on COPY_DATA and TX is flagged with the header. */
	out->compressed = (flags & FREP_FLAG_COMPRESSED) &&
			  (type == FREP_MSG_COPY_DATA || type == FREP_MSG_TX);
	if (!out->compressed) {
		out->data_known = TRUE;
		out->data_len = trailer_len;
		out->crc = crc32c_of(tvb, trailer_off, trailer_len);
		ti = proto_tree_add_uint(t, hf_crc, tvb, trailer_off, (gint)trailer_len, out->crc);
		proto_item_set_generated(ti);
		ti = proto_tree_add_uint(t, hf_data_len, tvb, trailer_off, (gint)trailer_len,
					 trailer_len);
		proto_item_set_generated(ti);
		return;
	}
	out->compression = compression;
	ti = proto_tree_add_uint(t, hf_compression, tvb, trailer_off, (gint)trailer_len,
				 compression < 0 ? 0 : (guint32)compression);
	proto_item_set_generated(ti);
	if (compression < 0)
		proto_item_append_text(ti, " (not known: no WELCOME before it)");
	data = decompress(tvb, pinfo, item, type, body_off, body_len, trailer_off, trailer_len,
			  compression, &out->data_len);
	if (!data)
		return;
	out->data_known = TRUE;
	out->crc = crc32c_of(data, 0, out->data_len);
	proto_tree_add_item(t, hf_data, data, 0, (gint)out->data_len, ENC_NA);
	ti = proto_tree_add_uint(t, hf_crc, data, 0, (gint)out->data_len, out->crc);
	proto_item_set_generated(ti);
	ti = proto_tree_add_uint(t, hf_data_len, data, 0, (gint)out->data_len, out->data_len);
	proto_item_set_generated(ti);
	ti = proto_tree_add_double(t, hf_ratio, tvb, trailer_off, (gint)trailer_len,
				   (double)out->data_len / trailer_len);
	proto_item_set_generated(ti);
}
