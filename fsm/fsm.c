/* Names of the replication states and events, for logs, status and the diagrams. */
#include "fsm.h"

void (*fsm_observer)(const char *volume, bool mirror, int from, int to, const char *event,
		    const char *reason);

static const char *const master_state_names[MS__COUNT] = {
	[MS_NEW] = "NEW",
	[MS_INIT] = "INIT",
	[MS_MAKEPARTS] = "MAKEPARTS",
	[MS_RESET] = "RESET",
	[MS_READY] = "READY",
	[MS_REPLICATE] = "REPLICATE",
	[MS_OUTOFSYNC] = "OUTOFSYNC",
	[MS_INSYNC] = "INSYNC",
	[MS_LINKDOWN] = "LINKDOWN",
	[MS_IDLE] = "IDLE",
	[MS_ERROR] = "ERROR",
};

static const char *const master_event_names[ME__COUNT] = {
	[ME_JOURNAL_OK] = "JOURNAL_OK",
	[ME_JOURNAL_FAIL] = "JOURNAL_FAIL",
	[ME_MSG_WELCOME] = "MSG_WELCOME",
	[ME_MSG_PARTS_READY] = "MSG_PARTS_READY",
	[ME_DECIDE_COPY] = "DECIDE_COPY",
	[ME_DECIDE_RESYNC] = "DECIDE_RESYNC",
	[ME_DECIDE_SYNC] = "DECIDE_SYNC",
	[ME_MSG_COPY_ACK] = "MSG_COPY_ACK",
	[ME_MSG_TX_ACK] = "MSG_TX_ACK",
	[ME_MSG_RESEND] = "MSG_RESEND",
	[ME_MSG_CONSISTENT] = "MSG_CONSISTENT",
	[ME_MSG_HEARTBEAT] = "MSG_HEARTBEAT",
	[ME_PAUSE] = "PAUSE",
	[ME_RESUME] = "RESUME",
	[ME_CRACK] = "CRACK",
	[ME_MINOR] = "MINOR",
	[ME_SEVERE] = "SEVERE",
	[ME_LINK_LOST] = "LINK_LOST",
	[ME_RETRY_INIT] = "RETRY_INIT",
	[ME_RETRY_MAKEPARTS] = "RETRY_MAKEPARTS",
	[ME_RECONNECT] = "RECONNECT",
	[ME_RESTART] = "RESTART",
	[ME_MSG_VERIFY_RESULT] = "MSG_VERIFY_RESULT",
	[ME_MSG_DIVERGENCE] = "MSG_DIVERGENCE",
	[ME_MSG_SWITCHOVER_DONE] = "MSG_SWITCHOVER_DONE",
};

static const char *const mirror_state_names[MR__COUNT] = {
	[MR_INIT] = "INIT",
	[MR_MAKEPARTS] = "MAKEPARTS",
	[MR_READY] = "READY",
	[MR_REPLICATE] = "REPLICATE",
	[MR_OUTOFSYNC] = "OUTOFSYNC",
	[MR_INSYNC] = "INSYNC",
	[MR_IDLE] = "IDLE",
	[MR_ERROR] = "ERROR",
};

static const char *const mirror_event_names[MV__COUNT] = {
	[MV_MSG_HELLO] = "MSG_HELLO",
	[MV_MSG_EXTENT_TABLE] = "MSG_EXTENT_TABLE",
	[MV_MSG_START_REPLICATE] = "MSG_START_REPLICATE",
	[MV_MSG_START_OUTOFSYNC] = "MSG_START_OUTOFSYNC",
	[MV_MSG_START_SYNC] = "MSG_START_SYNC",
	[MV_MSG_COPY_DATA] = "MSG_COPY_DATA",
	[MV_MSG_COPY_HOLE] = "MSG_COPY_HOLE",
	[MV_MSG_COPY_DONE] = "MSG_COPY_DONE",
	[MV_MSG_TX] = "MSG_TX",
	[MV_APPLIED_CONSISTENT] = "APPLIED_CONSISTENT",
	[MV_MSG_PAUSE] = "MSG_PAUSE",
	[MV_MSG_RESUME] = "MSG_RESUME",
	[MV_MSG_HEARTBEAT] = "MSG_HEARTBEAT",
	[MV_SEVERE] = "SEVERE",
	[MV_MSG_VERIFY] = "MSG_VERIFY",
	[MV_MSG_DIVERGENCE_REQUEST] = "MSG_DIVERGENCE_REQUEST",
	[MV_MSG_SWITCHOVER] = "MSG_SWITCHOVER",
};

/* Values come from the peer or from casts: anything outside a table is "UNKNOWN". */
static const char *name_of(const char *const *names, unsigned count, int value)
{
	if (value < 0 || (unsigned)value >= count || !names[value])
		return "UNKNOWN";
	return names[value];
}

const char *master_state_name(enum master_state s)
{
	return name_of(master_state_names, MS__COUNT, (int)s);
}

const char *master_event_name(enum master_event e)
{
	return name_of(master_event_names, ME__COUNT, (int)e);
}

const char *mirror_state_name(enum mirror_state s)
{
	return name_of(mirror_state_names, MR__COUNT, (int)s);
}

const char *mirror_event_name(enum mirror_event e)
{
	return name_of(mirror_event_names, MV__COUNT, (int)e);
}
