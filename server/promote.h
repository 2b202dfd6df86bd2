/*
 * Promotion (spec EPO-4, README "Failover and fail-back"): frepctl promote
 * makes the mirror's copy of a volume a primary at a new epoch. frep-server
 * then fences every master of an earlier epoch and never writes the copy
 * again; frep-client --adopt serves it.
 */
#ifndef FREP_PROMOTE_H
#define FREP_PROMOTE_H

#include <stdbool.h>

#include "admin.h"
#include "session.h"
#include "store.h"

/*
 * The Promote command. Refused (FAILED_PRECONDITION, with the reason and
 * what to do) while a master is connected or the copy is inconsistent,
 * unless force: then the master is disconnected with FENCED, and an
 * inconsistent copy's pre-resync snapshot is promoted instead of its
 * content. Bounded: waits up to 10 s for a fenced session to end.
 */
void mirror_promote(struct mirror_server *srv, const char *volume, bool force,
		    struct admin_reply *r);

/*
 * The durable part of a promotion (EPO-4) of the attached volume mv, its
 * journal applied and its base the state to promote: snapshots invalidated,
 * the journal emptied at t, then the metadata (promoted, epoch + 1 after t,
 * source). Promote and a switchover (SWO-3) share it. 0, or -1 with err
 * (the copy stays a mirror).
 */
int promote_at(struct mirror_volume *mv, uint64_t t, const char *source, bool forced, char *err,
	       size_t err_len);

/*
 * A valid pre-demote snapshot keeps a demote's discarded writes until an
 * operator deletes it (FBK-1), and a promotion ends every snapshot: so a
 * promotion that is not forced, and a switchover, wait for its deletion.
 * true with why when blocked.
 */
bool promote_blocked(struct mirror_volume *mv, char *why, size_t len);

/* A promoted volume's figures for the admin API (mirror status, state PROMOTED). */
void promotion_status(const struct mirror_volume *mv, struct status_promotion *out);

#endif
