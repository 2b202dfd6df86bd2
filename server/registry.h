/*
 * The volumes live sessions hold, published for the admin API: each session
 * copies its volume's status here at its own pace (after every batch), and
 * the admin thread reads copies. One mutex, held only for a struct copy, so
 * the API never waits on a session nor a session on the API.
 */
#ifndef FREP_REGISTRY_H
#define FREP_REGISTRY_H

#include <stdbool.h>

#include "status.h"

/*
 * An order to a connected master's session: end with Error code, FENCED (a
 * promotion, EPO-3: with epoch and txid) or BUSY (the volume is being
 * replaced: the master retries, FBK-1).
 */
struct fence_order {
	uint32_t code;
	uint64_t epoch, txid; /* FENCED; txid 0: the session's own durable TXID */
	int64_t unix_ms;
	char message[400];
};

struct mirror_live {
	struct vol_status st; /* role MIRROR */
	struct mirror_live *next;
	bool fence;	       /* an order waits (under the registry's mutex) */
	struct fence_order order;
};

/* A session took its volume (locked, attached) / let it go. */
void registry_add(struct mirror_live *l, const struct vol_status *st);
void registry_remove(struct mirror_live *l);
void registry_update(struct mirror_live *l, const struct vol_status *st);
/* Gives the session holding volume a fence order: false if no session holds it. */
bool registry_fence(const char *volume, const struct fence_order *o);
/* The session's side: true and *o filled once, when an order waits. */
bool registry_fence_taken(struct mirror_live *l, struct fence_order *o);
/* The live status of volume if a session holds it: true and *out filled. */
bool registry_get(const char *volume, struct vol_status *out);

#endif
