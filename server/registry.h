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

struct mirror_live {
	struct vol_status st; /* role MIRROR */
	struct mirror_live *next;
};

/* A session took its volume (locked, attached) / let it go. */
void registry_add(struct mirror_live *l, const struct vol_status *st);
void registry_remove(struct mirror_live *l);
void registry_update(struct mirror_live *l, const struct vol_status *st);
/* The live status of volume if a session holds it: true and *out filled. */
bool registry_get(const char *volume, struct vol_status *out);

#endif
