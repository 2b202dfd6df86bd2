/* Connections, sessions and lanes: what each connection negotiated, and the rules across lanes. */
#ifndef FREP_DISSECTOR_LANES_H
#define FREP_DISSECTOR_LANES_H

#include <epan/packet.h>
#include <epan/conversation.h>

#include "frep-body.h"

/* No WELCOME seen on the connection: the algorithm is not known. */
#define FREP_COMPRESSION_UNKNOWN (-1)

/*
 * What a frame's connection had negotiated when the frame came, the same on
 * every pass. Borrowed: valid as long as the capture file is open.
 */
struct frep_lane_frame {
	guint8 version;	   /* the version its header must carry (FRAME-3); 0: unknown */
	int compression;   /* the Compression WELCOME chose, or FREP_COMPRESSION_UNKNOWN */
	guint32 hello;	   /* the connection's HELLO frame, 0 if not seen */
	guint32 welcome;   /* its WELCOME frame, 0 if not seen yet */
};

/* Registers the session and lane fields and their expert info under proto (proto_register_frep). */
void frep_lanes_register(int proto);

/*
 * Before its header is shown: what the connection of the frep frame of rank
 * rank (frep-links.h) had negotiated. The first pass records it from the
 * connection's state; later passes read the record back.
 */
const struct frep_lane_frame *frep_lanes_frame(packet_info *pinfo, unsigned rank);

/*
 * After its body is read: the first pass moves the connection and its
 * session on by this frame (a HELLO names the session and lane, a WELCOME
 * settles version, compression and lanes, copy records are counted per lane
 * and pass); every pass adds the session fields (frep.session, frep.lane,
 * frep.session.opened_in) to tree and the expert info of the rules across
 * lanes (LANE-1..7, NEG-3) to the frame (frame_item).
 */
void frep_lanes_dissect(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, proto_item *frame_item,
			unsigned rank, unsigned type, const struct frep_body *b);

/*
 * The connection whose copy state (records waiting for COPY_ACK) this
 * packet's copy records join: lane 0's for a joining lane of a session whose
 * lane 0 is in the capture (LANE-8 acknowledges the records of every lane on
 * lane 0), else the packet's own. First pass.
 */
conversation_t *frep_lanes_copy_conversation(packet_info *pinfo);

#endif
