/*
 * Epochs (spec EPO-1): a volume's history counts its promotions. Epoch 1 is
 * the volume as created; each promotion of a copy begins the next epoch after
 * a TXID t, which both copies then share up to t. Masters (journal meta) and
 * mirrors (volume meta) keep the epoch and the TXIDs after which the last few
 * epochs began, so that two copies can tell where their histories part.
 */
#ifndef FREP_EPOCH_H
#define FREP_EPOCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meta.h"
#include "wire.h"

/*
 * A forced promotion's restored ranges, in the promoted volume's directory
 * (u64 offset, u64 length pairs, little-endian): the new primary's first
 * dirty regions (server/promote.c writes it, client/adopt.c reads it).
 */
#define FREP_PROMOTED_DIRTY "promoted.dirty"

struct epoch_history {
	uint64_t epoch; /* 1 + the promotions in the volume's history */
	unsigned n;	/* starts kept: n <= FREP_MAX_HISTORY, n <= epoch - 1 */
	/* start[k]: the TXID after which epoch (epoch - n + 1 + k) began; non-decreasing. */
	uint64_t start[FREP_MAX_HISTORY];
};

void epoch_init(struct epoch_history *h); /* epoch 1, no promotion */
/* Begins the next epoch after txid; the oldest start goes when FREP_MAX_HISTORY are kept. */
void epoch_begin(struct epoch_history *h, uint64_t txid);
/* The TXID after which epoch e + 1 began, i.e. where epoch e ended: true if known. */
bool epoch_end_of(const struct epoch_history *h, uint64_t e, uint64_t *txid);
/* Keys "epoch" and "epoch_history" (comma-separated starts); absent keys: epoch 1. 0 or -1. */
int epoch_load(struct epoch_history *h, const struct meta *md);
int epoch_save(const struct epoch_history *h, struct meta *md);
/* A Hello's epoch and epoch_history, checked (0, or -1 with err saying what is wrong). */
int epoch_from_wire(struct epoch_history *h, uint64_t epoch, const uint64_t *start, size_t n,
		    char *err, size_t err_len);

#endif
