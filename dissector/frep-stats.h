/* Statistics: the "frep" tap and its stats tree (tshark -z frep,tree). */
#ifndef FREP_DISSECTOR_STATS_H
#define FREP_DISSECTOR_STATS_H

#include <epan/packet.h>

#include "frep-links.h"
#include "frep-trailer.h"

/* Registers the tap and the tree (proto_register_frep). */
void frep_stats_register(void);

/*
 * Queues one frep frame of this type and size (header, body and trailer as
 * sent) for the tap, with its trailer's data (tr) and the latencies it closes.
 */
void frep_stats_tap(packet_info *pinfo, unsigned type, guint32 frame_bytes,
		    const struct frep_trailer *tr, const struct frep_latencies *lat);

#endif
