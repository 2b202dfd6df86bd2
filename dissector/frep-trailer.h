/* The trailer of COPY_DATA and TX: its data, decompressed for display, and their CRC32C. */
#ifndef FREP_DISSECTOR_TRAILER_H
#define FREP_DISSECTOR_TRAILER_H

#include <epan/packet.h>

/* What frep_trailer_dissect found: the frame's data. */
struct frep_trailer {
	guint32 trailer_len;	/* bytes of trailer as sent */
	gboolean compressed;	/* flag COMPRESSED on a COPY_DATA or TX with a trailer */
	int compression;	/* compressed: the connection's Compression, negative if not known */
	gboolean data_known;	/* the data is at hand: the trailer, or its decompression */
	guint32 data_len;	/* its length; compressed and not decompressed: the declared length */
	guint32 crc;		/* CRC32C of the data, when data_known */
};

/* Registers the trailer fields and their expert info under proto (proto_register_frep). */
void frep_trailer_register(int proto);

/*
 * Adds the trailer of a frame of this type and flags (FRAME-5), its body at
 * [body_off, body_off + body_len) and trailer_len trailer bytes after it, to
 * tree, and fills *out. A compressed trailer is decompressed with the
 * connection's compression (a Compression value, or negative if not known)
 * into exactly the length the body declares (COMP-3, COMP-4), shown as the
 * data source "Decompressed trailer"; the CRC32C is computed over the data.
 */
void frep_trailer_dissect(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, unsigned type,
			  guint16 flags, int body_off, int body_len, guint32 trailer_len,
			  int compression, struct frep_trailer *out);

#endif
