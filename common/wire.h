/* frep wire constants: frame header, message types, limits and error codes. */
#ifndef FREP_WIRE_H
#define FREP_WIRE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Frame header, 16 bytes, every field big-endian (spec/protocol.md, "Framing"):
 *
 *   0        4     5      6        8             12            16
 *   +--------+-----+------+--------+-------------+-------------+
 *   | magic  | ver | type | flags  |  body_len   | trailer_len |
 *   +--------+-----+------+--------+-------------+-------------+
 *
 * body_len bytes of protobuf (proto/frep/v1/frep.proto) follow, then
 * trailer_len bytes of raw block data (COPY_DATA and TX only).
 */
#define FREP_FRAME_MAGIC 0x46524550u /* "FREP" */
#define FREP_FRAME_HDR_SIZE 16u
#define FREP_PROTO_VERSION 1u /* HELLO and WELCOME are framed so in every version (FRAME-3) */
#define FREP_PROTO_VERSION_MAX 2u /* the highest version frep speaks (NEG-1) */
/* ALPN names the protocol family, not a version: Hello and Welcome choose it. */
#define FREP_ALPN "frep/1"
#define FREP_DEFAULT_PORT 7460 /* unassigned by IANA; documented in README */

/* Frame header as decoded; the packed wire form exists only as bytes. */
struct frep_frame_hdr {
	uint8_t version;
	uint8_t type;	 /* enum frep_msg_type */
	uint16_t flags;	 /* version 1: 0; version 2: FREP_FLAG_* */
	uint32_t body_len;
	uint32_t trailer_len;
};

/* Frame flags of version 2 (FRAME-5). */
enum frep_frame_flags {
	FREP_FLAG_COMPRESSED = 1 << 0, /* the trailer is compressed (COMP-1) */
};

enum frep_limits {
	FREP_MAX_BODY = 64 * 1024,	   /* protobuf body bytes */
	FREP_MAX_TRAILER = 32 * 1024 * 1024, /* block data bytes in one frame */
	FREP_MAX_EXTENTS = 1024,	   /* extents in one volume */
	FREP_MAX_HISTORY = 8,		   /* epoch starts a Hello or a volume keeps (EPO-1) */
	FREP_MAX_VOLUME_NAME = 64,	   /* bytes, [A-Za-z0-9._-] */
	FREP_MAX_MESSAGE = 512,		   /* bytes of Error.message / Goodbye.reason */
	FREP_MAX_NODE_NAME = 255,	   /* bytes of Hello.master_node */
	FREP_MAX_LANES = 16,		   /* lanes per session in version 2 (1 in version 1) */
	FREP_EXTENT_ALIGN = 4096,	   /* every extent size is a multiple of this */
	FREP_UUID_SIZE = 16,
	FREP_VERIFY_HASH_SIZE = 16,	   /* XXH3-128, canonical form */
	FREP_MAX_VERIFY_LEN = 32 * 1024 * 1024, /* bytes one Verify may cover */
	FREP_SESSION_ID_SIZE = 16,
};

/* Type byte of the frame header; each names one protobuf message. */
enum frep_msg_type {
	FREP_MSG_HELLO = 1,	  /* master -> mirror */
	FREP_MSG_WELCOME = 2,	  /* mirror -> master */
	FREP_MSG_EXTENT_TABLE = 3, /* master -> mirror */
	FREP_MSG_PARTS_READY = 4, /* mirror -> master */
	FREP_MSG_START_COPY = 5,  /* master -> mirror */
	FREP_MSG_START_SYNC = 6,  /* master -> mirror */
	FREP_MSG_COPY_DATA = 7,	  /* master -> mirror, trailer: data */
	FREP_MSG_COPY_HOLE = 8,	  /* master -> mirror */
	FREP_MSG_COPY_ACK = 9,	  /* mirror -> master */
	FREP_MSG_COPY_DONE = 10,  /* master -> mirror */
	FREP_MSG_TX = 11,	  /* master -> mirror, trailer: data of TX_WRITE */
	FREP_MSG_TX_ACK = 12,	  /* mirror -> master */
	FREP_MSG_RESEND = 13,	  /* mirror -> master */
	FREP_MSG_CONSISTENT = 14, /* mirror -> master */
	FREP_MSG_HEARTBEAT = 15,  /* both */
	FREP_MSG_PAUSE = 16,	  /* master -> mirror */
	FREP_MSG_RESUME = 17,	  /* master -> mirror */
	FREP_MSG_ERROR = 18,	  /* both */
	FREP_MSG_GOODBYE = 19,	  /* both */
	FREP_MSG_VERIFY = 20,	  /* master -> mirror */
	FREP_MSG_VERIFY_RESULT = 21, /* mirror -> master */
	FREP_MSG_DIVERGENCE_REQUEST = 22, /* master -> mirror */
	FREP_MSG_DIVERGENCE = 23, /* mirror -> master */
	FREP_MSG_SWITCHOVER = 24, /* master -> mirror */
	FREP_MSG_SWITCHOVER_DONE = 25, /* mirror -> master */
	FREP_MSG__MAX = FREP_MSG_SWITCHOVER_DONE,
};

/* Error.code values. Severity is fixed per code (frep_error_is_severe). */
enum frep_error_code {
	FREP_E_PROTOCOL = 1,	 /* malformed frame or body */
	FREP_E_UNEXPECTED = 2,	 /* message illegal in the receiver's state */
	FREP_E_VERSION = 3,	 /* no common protocol version */
	FREP_E_UNAUTHORISED = 4, /* identity not allowed for this volume */
	FREP_E_NAME_CLASH = 5,	 /* volume name owned by another master or UUID */
	FREP_E_NO_SPACE = 6,	 /* not enough disk space for the extents */
	FREP_E_BAD_EXTENTS = 7,	 /* extent table malformed or does not match */
	FREP_E_RANGE = 8,	 /* offset or length outside the volume */
	FREP_E_CHECKSUM = 9,	 /* data CRC32C mismatch */
	FREP_E_AHEAD = 10,	 /* mirror holds a TXID the master never committed */
	FREP_E_IO = 11,		 /* transient I/O error */
	FREP_E_BUSY = 12,	 /* volume in use by another session */
	FREP_E_SHUTDOWN = 13,	 /* peer is shutting down or restarting */
	FREP_E_INTERNAL = 14,	 /* bug or resource exhaustion in the sender */
	FREP_E_LANES = 15,	 /* lane layout not supported */
	FREP_E_FENCED = 16,	 /* the volume was promoted past this master's epoch */
	FREP_E_DIVERGED = 17,	 /* the copies' epochs do not meet: no shared history */
	FREP_E__MAX = FREP_E_DIVERGED,
};

/* Message name for logs, "UNKNOWN" for anything else. */
const char *frep_msg_name(unsigned type);
/* True if a frame of this type may carry a trailer. */
bool frep_msg_has_trailer(unsigned type);
const char *frep_error_name(unsigned code);
/* Severe errors go to ERROR and wait for an operator; minor ones go to RESET. */
bool frep_error_is_severe(unsigned code);

#endif
