/* frep-server's side of the admin API: admin_ops over the data dir (ctx: struct mirror_server). */
#ifndef FREP_ADMIN_MIRROR_H
#define FREP_ADMIN_MIRROR_H

#include "admin.h"
#include "session.h"
#include "snapshot.h"

extern const struct admin_ops admin_mirror_ops;

/*
 * Creates a snapshot of a mirror volume at the latest TXID up to which it
 * has applied everything (snapshot create, and the implicit snapshot of an
 * export). name "" or NULL picks snap-YYYYMMDD-HHMMSS. 0 with *out, or -1
 * with r (NOT_FOUND, INVALID_ARGUMENT, ALREADY_EXISTS, FAILED_PRECONDITION
 * while inconsistent, RESOURCE_EXHAUSTED at SNAP_MAX).
 */
int mirror_snapshot_create(struct mirror_server *srv, const char *volume, const char *name,
			   enum snap_kind kind, struct status_snapshot *out, struct admin_reply *r);

#endif
