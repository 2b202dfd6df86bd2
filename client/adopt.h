/*
 * frep-client --adopt DIR: the master role taken up on a promoted mirror copy
 * (DIR = the frep-server data dir's DIR/NAME after frepctl promote NAME). The
 * copy's extents become the master volume; its uuid and epoch history go
 * into a new journal, which starts at the promotion's TXID t, so the master
 * goes on from the history both copies share (spec EPO-4).
 */
#ifndef FREP_CLIENT_ADOPT_H
#define FREP_CLIENT_ADOPT_H

#include <stddef.h>
#include <stdint.h>

#include "epoch.h"
#include "wire.h"

struct adopt_info {
	char volume[FREP_MAX_VOLUME_NAME + 1];
	uint8_t uuid[FREP_UUID_SIZE];
	unsigned n_extents;
	struct epoch_history epochs; /* the promotion's epoch is the current one */
	uint64_t txid;		     /* t: the promotion's TXID */
};

/* Reads DIR/meta: a promoted copy, or -1 with err saying what DIR is instead. */
int adopt_load(const char *dir, struct adopt_info *a, char *err, size_t err_len);

/*
 * The ranges a forced promotion restored from a snapshot (DIR/promoted.dirty):
 * each is given to mark(ctx, off, len). 0 (none is fine), or -1 with err.
 */
int adopt_dirty_ranges(const char *dir, int (*mark)(void *ctx, uint64_t off, uint64_t len),
		       void *ctx, char *err, size_t err_len);

#endif
