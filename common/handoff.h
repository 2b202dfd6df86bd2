/*
 * A copy handed from the master role to the mirror role on one host
 * (frepctl demote: frep-client writes it, frep-server adopts from it). The
 * file sits beside the master's journal: PATH (key=value metadata, meta.h)
 * and PATH.extents (the extent paths, one per line). The copy's extents stay
 * where they are; frep-server links to them (server/adopt.c).
 */
#ifndef FREP_HANDOFF_H
#define FREP_HANDOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "epoch.h"
#include "wire.h"

struct handoff {
	char volume[FREP_MAX_VOLUME_NAME + 1];
	uint8_t uuid[FREP_UUID_SIZE];
	struct epoch_history epochs; /* the copy's history: it ends where the copy left it */
	uint64_t txid;		     /* the copy shares the new primary's history up to here */
	uint64_t committed;	     /* the copy's own last TXID: its content */
	bool shared;		     /* false (demote --force): no shared history known */
	bool consistent;	     /* a switchover's copy: the primary at exactly txid */
	uint64_t discard_tx, discard_bytes; /* the copy's TXs after txid, and their bytes */
	unsigned n_extents;
	char *paths[FREP_MAX_EXTENTS];
	char bitmap[4096];	     /* where the copy changed after txid (bitmap.h file) */
};

int handoff_save(const char *path, const struct handoff *h, char *err, size_t err_len);
/* 0, or -1 with err; release with handoff_free. */
int handoff_load(const char *path, struct handoff *h, char *err, size_t err_len);
void handoff_free(struct handoff *h);

#endif
