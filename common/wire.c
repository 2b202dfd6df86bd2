/* Name tables for wire enums, so logs never show raw numbers. */
#include "wire.h"

static const char *const msg_names[] = {
	[FREP_MSG_HELLO] = "HELLO",
	[FREP_MSG_WELCOME] = "WELCOME",
	[FREP_MSG_EXTENT_TABLE] = "EXTENT_TABLE",
	[FREP_MSG_PARTS_READY] = "PARTS_READY",
	[FREP_MSG_START_COPY] = "START_COPY",
	[FREP_MSG_START_SYNC] = "START_SYNC",
	[FREP_MSG_COPY_DATA] = "COPY_DATA",
	[FREP_MSG_COPY_HOLE] = "COPY_HOLE",
	[FREP_MSG_COPY_ACK] = "COPY_ACK",
	[FREP_MSG_COPY_DONE] = "COPY_DONE",
	[FREP_MSG_TX] = "TX",
	[FREP_MSG_TX_ACK] = "TX_ACK",
	[FREP_MSG_RESEND] = "RESEND",
	[FREP_MSG_CONSISTENT] = "CONSISTENT",
	[FREP_MSG_HEARTBEAT] = "HEARTBEAT",
	[FREP_MSG_PAUSE] = "PAUSE",
	[FREP_MSG_RESUME] = "RESUME",
	[FREP_MSG_ERROR] = "ERROR",
	[FREP_MSG_GOODBYE] = "GOODBYE",
	[FREP_MSG_VERIFY] = "VERIFY",
	[FREP_MSG_VERIFY_RESULT] = "VERIFY_RESULT",
	[FREP_MSG_DIVERGENCE_REQUEST] = "DIVERGENCE_REQUEST",
	[FREP_MSG_DIVERGENCE] = "DIVERGENCE",
	[FREP_MSG_SWITCHOVER] = "SWITCHOVER",
	[FREP_MSG_SWITCHOVER_DONE] = "SWITCHOVER_DONE",
};

const char *frep_msg_name(unsigned type)
{
	if (type == 0 || type > FREP_MSG__MAX)
		return "UNKNOWN";
	return msg_names[type];
}

bool frep_msg_has_trailer(unsigned type)
{
	return type == FREP_MSG_COPY_DATA || type == FREP_MSG_TX;
}

static const struct {
	const char *name;
	bool severe;
} errors[] = {
	[FREP_E_PROTOCOL] = { "PROTOCOL", true },
	[FREP_E_UNEXPECTED] = { "UNEXPECTED", true },
	[FREP_E_VERSION] = { "VERSION", true },
	[FREP_E_UNAUTHORISED] = { "UNAUTHORISED", true },
	[FREP_E_NAME_CLASH] = { "NAME_CLASH", true },
	[FREP_E_NO_SPACE] = { "NO_SPACE", true },
	[FREP_E_BAD_EXTENTS] = { "BAD_EXTENTS", true },
	[FREP_E_RANGE] = { "RANGE", true },
	[FREP_E_CHECKSUM] = { "CHECKSUM", true },
	[FREP_E_AHEAD] = { "AHEAD", true },
	[FREP_E_IO] = { "IO", false },
	[FREP_E_BUSY] = { "BUSY", false },
	[FREP_E_SHUTDOWN] = { "SHUTDOWN", false },
	[FREP_E_INTERNAL] = { "INTERNAL", true },
	[FREP_E_LANES] = { "LANES", true },
	[FREP_E_FENCED] = { "FENCED", true },
	[FREP_E_DIVERGED] = { "DIVERGED", true },
};

const char *frep_error_name(unsigned code)
{
	if (code == 0 || code > FREP_E__MAX)
		return "UNKNOWN";
	return errors[code].name;
}

bool frep_error_is_severe(unsigned code)
{
	/* An unknown code from a newer peer is treated as severe: stop and tell the operator. */
	if (code == 0 || code > FREP_E__MAX)
		return true;
	return errors[code].severe;
}
