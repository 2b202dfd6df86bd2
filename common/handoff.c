/* The demote handoff file (handoff.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handoff.h"
#include "meta.h"
#include "util.h"

int handoff_save(const char *path, const struct handoff *h, char *err, size_t err_len)
{
	char list[4096 + 16], hex[2 * FREP_UUID_SIZE + 1];
	struct meta md;
	textf(list, sizeof(list), "%s.extents", path);
	FILE *f = fopen(list, "w");
	if (!f) {
		textf(err, err_len, "%s: %s", list, strerror(errno));
		return -1;
	}
	for (unsigned i = 0; i < h->n_extents; i++)
		fprintf(f, "%s\n", h->paths[i]);
	int ok = fflush(f) == 0 && fdatasync(fileno(f)) == 0;
	fclose(f);
	meta_init(&md);
	ok = ok && meta_set(&md, "format", "frep-handoff-1") == 0 &&
	     meta_set(&md, "volume", h->volume) == 0 &&
	     meta_set(&md, "uuid", hex_encode(h->uuid, FREP_UUID_SIZE, hex)) == 0 &&
	     epoch_save(&h->epochs, &md) == 0 && meta_set_u64(&md, "txid", h->txid) == 0 &&
	     meta_set_u64(&md, "committed", h->committed) == 0 &&
	     meta_set_u64(&md, "shared", h->shared) == 0 &&
	     meta_set_u64(&md, "consistent", h->consistent) == 0 &&
	     meta_set_u64(&md, "discard_tx", h->discard_tx) == 0 &&
	     meta_set_u64(&md, "discard_bytes", h->discard_bytes) == 0 &&
	     meta_set_u64(&md, "extents", h->n_extents) == 0 && meta_set(&md, "bitmap", h->bitmap) == 0 &&
	     meta_save(path, &md) == 0;
	if (!ok)
		textf(err, err_len, "writing the handoff %s: %s", path, strerror(errno ? errno : EIO));
	return ok ? 0 : -1;
}

int handoff_load(const char *path, struct handoff *h, char *err, size_t err_len)
{
	struct meta md;
	uint64_t v, n;
	memset(h, 0, sizeof(*h));
	if (meta_load(path, &md) < 0) {
		textf(err, err_len, "handoff %s: %s", path, strerror(errno));
		return -1;
	}
	const char *fmt = meta_get(&md, "format"), *vol = meta_get(&md, "volume"),
		   *uuid = meta_get(&md, "uuid"), *bm = meta_get(&md, "bitmap");
	if (!fmt || strcmp(fmt, "frep-handoff-1") != 0 || !vol || !volume_name_valid(vol) || !uuid ||
	    hex_decode(uuid, h->uuid, FREP_UUID_SIZE) < 0 || epoch_load(&h->epochs, &md) < 0 ||
	    meta_get_u64(&md, "txid", &h->txid) < 0 || meta_get_u64(&md, "committed", &h->committed) < 0 ||
	    meta_get_u64(&md, "extents", &n) < 0 || n == 0 || n > FREP_MAX_EXTENTS || !bm) {
		textf(err, err_len, "handoff %s: not a frep demote handoff (format frep-handoff-1)", path);
		return -1;
	}
	snprintf(h->volume, sizeof(h->volume), "%s", vol);
	snprintf(h->bitmap, sizeof(h->bitmap), "%s", bm);
	h->shared = meta_get_u64(&md, "shared", &v) == 0 && v == 1;
	h->consistent = meta_get_u64(&md, "consistent", &v) == 0 && v == 1;
	h->discard_tx = meta_get_u64(&md, "discard_tx", &v) == 0 ? v : 0;
	h->discard_bytes = meta_get_u64(&md, "discard_bytes", &v) == 0 ? v : 0;
	char list[4096 + 16], line[4096];
	textf(list, sizeof(list), "%s.extents", path);
	FILE *f = fopen(list, "r");
	if (!f) {
		textf(err, err_len, "%s: %s", list, strerror(errno));
		return -1;
	}
	while (h->n_extents < n && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (!(h->paths[h->n_extents++] = strdup(line)))
			break;
	}
	fclose(f);
	if (h->n_extents != n || !h->paths[n - 1]) {
		textf(err, err_len, "%s: %u extent paths, the handoff says %" PRIu64, list,
		      h->n_extents, n);
		handoff_free(h);
		return -1;
	}
	return 0;
}

void handoff_free(struct handoff *h)
{
	for (unsigned i = 0; i < h->n_extents; i++)
		free(h->paths[i]);
	h->n_extents = 0;
}
