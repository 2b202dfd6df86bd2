/* Protobuf bodies of frep frames: one named, filterable field per frep.proto field. */
#ifndef FREP_DISSECTOR_BODY_H
#define FREP_DISSECTOR_BODY_H

#include <epan/packet.h>
#include <epan/expert.h>

/* Highest field number in any frep.proto message. */
enum { FREP_BODY_MAX_FIELD = 15 };

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
	unsigned n_repeated;			  /* occurrences of a repeated field */
	wmem_array_t *repeated;			  /* struct frep_body_value, in order */
};

static inline gboolean frep_body_has(const struct frep_body *b, unsigned field)
{
	return (b->present >> field) & 1;
}

/* Registers the body fields and their subtrees under proto (proto_register_frep). */
void frep_body_register(int proto);

/*
 * Adds the fields of the body [offset, offset + len) of a frame of this type
 * to tree and fills *out. A data_crc field is checked against trailer_crc, the
 * CRC32C of the frame's trailer. Returns FALSE if the type has no message.
 */
gboolean frep_body_dissect(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, unsigned type,
			   int offset, int len, guint32 trailer_crc, struct frep_body *out);

#endif
