/* Rules one frame can break on its own: limits, fields that must agree, ERROR messages. */
#ifndef FREP_DISSECTOR_CHECKS_H
#define FREP_DISSECTOR_CHECKS_H

#include <epan/packet.h>

#include "frep-body.h"

/* Registers the expert info of the checks under proto (proto_register_frep). */
void frep_checks_register(int proto);

/*
 * Adds expert info to the body b of a frame of this type, read by
 * frep_body_dissect: values beyond the spec's Limits, fields that disagree
 * with each other or with the trailer (trailer_len bytes on the wire, data_len
 * bytes of data once decompressed: frep-trailer.h), and every ERROR message
 * (by its severity). frame_item is the frame's tree item, for rules of no one
 * field.
 */
void frep_checks_dissect(packet_info *pinfo, proto_item *frame_item, unsigned type,
			 const struct frep_body *b, guint32 trailer_len, guint32 data_len);

#endif
