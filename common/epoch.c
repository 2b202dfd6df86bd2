/* Epoch histories (epoch.h): kept in metadata, carried in Hello. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epoch.h"

void epoch_init(struct epoch_history *h)
{
	memset(h, 0, sizeof(*h));
	h->epoch = 1;
}

void epoch_begin(struct epoch_history *h, uint64_t txid)
{
	if (h->n == FREP_MAX_HISTORY) {
		memmove(h->start, h->start + 1, (h->n - 1) * sizeof(h->start[0]));
		h->n--;
	}
	h->start[h->n++] = txid;
	h->epoch++;
}

bool epoch_end_of(const struct epoch_history *h, uint64_t e, uint64_t *txid)
{
	/* Epoch e + 1 began at start[k] with e + 1 = epoch - n + 1 + k. */
	if (e >= h->epoch || e + h->n < h->epoch)
		return false;
	*txid = h->start[e + h->n - h->epoch];
	return true;
}

static int check(const struct epoch_history *h, char *err, size_t err_len)
{
	if (h->epoch == 0) {
		snprintf(err, err_len, "epoch 0: epochs start at 1");
		return -1;
	}
	if (h->n > FREP_MAX_HISTORY || h->n > h->epoch - 1) {
		snprintf(err, err_len, "%u epoch starts for epoch %" PRIu64 " (at most %d, and at "
			 "most epoch - 1)", h->n, h->epoch, FREP_MAX_HISTORY);
		return -1;
	}
	for (unsigned k = 1; k < h->n; k++)
		if (h->start[k] < h->start[k - 1]) {
			snprintf(err, err_len, "epoch starts decrease (%" PRIu64 " after %" PRIu64 ")",
				 h->start[k], h->start[k - 1]);
			return -1;
		}
	return 0;
}

int epoch_load(struct epoch_history *h, const struct meta *md)
{
	char err[128];
	epoch_init(h);
	if (meta_get_u64(md, "epoch", &h->epoch) < 0) {
		h->epoch = 1;
		return 0;
	}
	const char *list = meta_get(md, "epoch_history");
	for (const char *p = list; p && *p && h->n < FREP_MAX_HISTORY;) {
		char *end;
		h->start[h->n++] = strtoull(p, &end, 10);
		if (end == p)
			return -1;
		p = *end == ',' ? end + 1 : end;
	}
	return check(h, err, sizeof(err));
}

int epoch_save(const struct epoch_history *h, struct meta *md)
{
	char list[META_VAL_MAX] = "";
	size_t len = 0;
	for (unsigned k = 0; k < h->n; k++)
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%" PRIu64, k ? "," : "",
					h->start[k]);
	if (len >= sizeof(list))
		return -1;
	return meta_set_u64(md, "epoch", h->epoch) < 0 || meta_set(md, "epoch_history", list) < 0
		       ? -1
		       : 0;
}

int epoch_from_wire(struct epoch_history *h, uint64_t epoch, const uint64_t *start, size_t n,
		    char *err, size_t err_len)
{
	epoch_init(h);
	h->epoch = epoch;
	if (n > FREP_MAX_HISTORY) {
		snprintf(err, err_len, "%zu epoch starts (at most %d)", n, FREP_MAX_HISTORY);
		return -1;
	}
	h->n = (unsigned)n;
	if (n) /* start is NULL for an empty history: memcpy's arguments must not be */
		memcpy(h->start, start, n * sizeof(*start));
	return check(h, err, err_len);
}
