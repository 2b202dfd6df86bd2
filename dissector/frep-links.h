/* Links between the frames of one frep session, and the expert info of its sequence. */
#ifndef FREP_DISSECTOR_LINKS_H
#define FREP_DISSECTOR_LINKS_H

#include <epan/packet.h>

#include "frep-body.h"

/* Which request an acknowledgement or echo answers. */
enum frep_latency_kind {
	FREP_LAT_NONE,
	FREP_LAT_TX,	    /* TX -> TX_ACK */
	FREP_LAT_COPY,	    /* COPY_DATA, COPY_HOLE -> COPY_ACK */
	FREP_LAT_HEARTBEAT, /* HEARTBEAT -> its echo */
	FREP_LAT_VERIFY,    /* VERIFY -> VERIFY_RESULT */
};

/*
 * The requests one frame acknowledges for the first time: one latency each,
 * oldest first. Borrowed: valid as long as the capture file is open.
 */
struct frep_latencies {
	enum frep_latency_kind kind;
	unsigned n;
	const nstime_t *t;
};

/* Registers the link fields and their expert info under proto (proto_register_frep). */
void frep_links_register(int proto);

/*
 * Adds the links and sequence expert info of one frame to tree (frame_item
 * is its item): idx is its rank among the frep frames of this packet (1 for
 * the first), the same on every pass, which keys its state. The first pass
 * through a packet works the links out from the session's state; later
 * passes read them back, so forward links (ack_in, echo_in, resent_in) show
 * from the second pass on (tshark -2, or the GUI). data_len is the bytes of
 * data of its trailer, decompressed (frep-trailer.h). *lat gets the
 * latencies this frame closes, for the statistics tap.
 */
void frep_links_dissect(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, proto_item *frame_item,
			unsigned idx, unsigned type, const struct frep_body *b, guint32 data_len,
			struct frep_latencies *lat);

#endif
