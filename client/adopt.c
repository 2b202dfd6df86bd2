/* --adopt: reading a promoted mirror copy (adopt.h). Its layout: server/store.h. */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "adopt.h"
#include "meta.h"
#include "util.h"

int adopt_load(const char *dir, struct adopt_info *a, char *err, size_t err_len)
{
	char path[4096];
	struct meta md;
	uint64_t v, n;
	memset(a, 0, sizeof(*a));
	textf(path, sizeof(path), "%s/meta", dir);
	if (meta_load(path, &md) < 0) {
		textf(err, err_len, "--adopt %s: %s: %s (give the directory of a mirror volume that "
		      "frepctl promote promoted: DATA_DIR/NAME)", dir, path, strerror(errno));
		return -1;
	}
	const char *fmt = meta_get(&md, "format"), *name = meta_get(&md, "volume"),
		   *uuid = meta_get(&md, "uuid");
	if (!fmt || strcmp(fmt, "frep-mirror-1") != 0 || !name || !uuid ||
	    hex_decode(uuid, a->uuid, sizeof(a->uuid)) < 0 || meta_get_u64(&md, "extents", &n) < 0 ||
	    n == 0 || n > FREP_MAX_EXTENTS || epoch_load(&a->epochs, &md) < 0) {
		textf(err, err_len, "--adopt %s: %s is not a frep-server volume's metadata", dir, path);
		return -1;
	}
	if (meta_get_u64(&md, "promoted", &v) < 0 || v != 1 ||
	    meta_get_u64(&md, "promoted_txid", &a->txid) < 0) {
		textf(err, err_len, "--adopt %s: volume %s is a mirror copy, not promoted: run frepctl "
		      "promote %s on its frep-server first", dir, name, name);
		return -1;
	}
	snprintf(a->volume, sizeof(a->volume), "%s", name);
	a->n_extents = (unsigned)n;
	return 0;
}

int adopt_dirty_ranges(const char *dir, int (*mark)(void *ctx, uint64_t off, uint64_t len),
		       void *ctx, char *err, size_t err_len)
{
	char path[4096];
	textf(path, sizeof(path), "%s/" FREP_PROMOTED_DIRTY, dir);
	FILE *f = fopen(path, "r");
	if (!f) {
		if (errno == ENOENT)
			return 0;
		textf(err, err_len, "%s: %s", path, strerror(errno));
		return -1;
	}
	uint64_t r[2];
	int rc = 0;
	while (rc == 0 && fread(r, sizeof(r), 1, f) == 1)
		rc = mark(ctx, le64toh(r[0]), le64toh(r[1]));
	if (rc == 0 && ferror(f))
		rc = -1;
	if (rc < 0)
		textf(err, err_len, "%s: %s", path, strerror(errno ? errno : EIO));
	fclose(f);
	return rc;
}
