/* frepctl demote, the master's half: demote.c. */
#ifndef FREP_CLIENT_DEMOTE_H
#define FREP_CLIENT_DEMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "admin.h"
#include "master.h"

/*
 * Stops local writes, marks what the copy changed after the promotion's
 * TXID in the dirty bitmap (durably), writes the handoff beside the journal
 * (handoff.h; its path into handoff_path), records the journal as demoted
 * and ends the process shortly after. Refused (FAILED_PRECONDITION) unless
 * fenced or force. 0, or -1 with r.
 */
int master_demote(struct master *m, bool force, char *handoff_path, size_t path_len,
		  uint64_t *discard_tx, uint64_t *discard_bytes, struct admin_reply *r);

/*
 * frepctl switchover, the master's half (SWO-1..3): in INSYNC, stops local
 * writes, waits until the mirror acknowledged them all, has it promote its
 * copy (SWITCHOVER), then hands this copy over as its consistent mirror
 * (the handoff's path into handoff_path) and ends the process. Refused
 * unless INSYNC; UNAVAILABLE, with writes back on, if the mirror does not
 * answer within SWITCHOVER_WAIT_S. 0, or -1 with r.
 */
enum { SWITCHOVER_WAIT_S = 30 };
int master_switchover(struct master *m, char *handoff_path, size_t path_len,
		      struct admin_reply *r);

#endif
