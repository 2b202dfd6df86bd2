/* Protobuf bodies of frep frames: one named, filterable field per frep.proto field. */
#ifndef FREP_DISSECTOR_BODY_H
#define FREP_DISSECTOR_BODY_H

#include <epan/packet.h>
#include <epan/expert.h>

/* Highest field number in any frep.proto message. */
enum { FREP_BODY_MAX_FIELD = 17 };

/* One occurrence of a repeated field: its value and its tree item. */
struct frep_body_value {
	guint64 v;
	proto_item *item;
};

/*
 * What the walker read from one body, for the Info column, the checks
 * (frep-checks.c) and the links (frep-links.c). Strings and the array are in
 * pinfo->pool; items may be NULL (no tree).
 */
struct frep_body {
	guint64 u[FREP_BODY_MAX_FIELD + 1];	  /* integers, by field number */
	const char *s[FREP_BODY_MAX_FIELD + 1];   /* strings, by field number */
	guint32 len[FREP_BODY_MAX_FIELD + 1];	  /* bytes of a string or bytes field */
	const guint8 *bytes[FREP_BODY_MAX_FIELD + 1]; /* a bytes field's content (len bytes) */
	proto_item *item[FREP_BODY_MAX_FIELD + 1]; /* tree item, by field number */
	guint32 present;			  /* bit n: field n was seen */
	/* A repeated field's occurrences, by field number: struct frep_body_value, in order. */
	unsigned n_repeated[FREP_BODY_MAX_FIELD + 1];
	wmem_array_t *repeated[FREP_BODY_MAX_FIELD + 1];
};

static inline gboolean frep_body_has(const struct frep_body *b, unsigned field)
{
	return (b->present >> field) & 1;
}

/* The i-th occurrence (from 0, below n_repeated[field]) of a repeated field. */
static inline const struct frep_body_value *frep_body_value(const struct frep_body *b,
							    unsigned field, unsigned i)
{
	return (const struct frep_body_value *)wmem_array_index(b->repeated[field], i);
}

/* enum Compression of frep.proto (Hello.compression, Welcome.compression). */
extern const value_string frep_compression_vals[];

/* Registers the body fields and their subtrees under proto (proto_register_frep). */
void frep_body_register(int proto);

/*
 * Adds the fields of the body [offset, offset + len) of a frame of this type
 * to tree and fills *out. With data_crc_known, a data_crc field is checked
 * against data_crc, the CRC32C of the frame's data (its trailer, once
 * decompressed); without, it is shown unverified (data that could not be
 * decompressed). Returns FALSE if the type has no message.
 */
gboolean frep_body_dissect(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, unsigned type,
			   int offset, int len, gboolean data_crc_known, guint32 data_crc,
			   struct frep_body *out);

/*
 * The value of varint field number of the body [offset, offset + len), the
 * last occurrence, read without adding anything to the tree; FALSE if the
 * body holds none (or ends before it). For what must be known before the
 * body is shown: the data length a compressed trailer declares (COMP-3).
 */
gboolean frep_body_peek_varint(tvbuff_t *tvb, int offset, int len, unsigned number,
			       guint64 *value);

#endif
