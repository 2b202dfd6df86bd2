/* Metadata files: small key=value text files replaced atomically, with a CRC32C line. */
#ifndef FREP_META_H
#define FREP_META_H

#include <stdbool.h>
#include <stdint.h>

enum meta_limits { META_MAX_KEYS = 32, META_KEY_MAX = 32, META_VAL_MAX = 256 };

/*
 * On disk (one "key=value" per line, keys in insertion order, then the CRC of
 * every byte before the crc line):
 *
 *   format=frep-meta-1
 *   uuid=0f1e...
 *   generation=7
 *   crc32c=1a2b3c4d
 */
struct meta {
	unsigned n;
	struct {
		char key[META_KEY_MAX];
		char val[META_VAL_MAX];
	} kv[META_MAX_KEYS];
};

void meta_init(struct meta *m);
/* 0, or -1 with errno: ENOENT missing, EBADMSG malformed or CRC mismatch. */
int meta_load(const char *path, struct meta *m);
/*
 * Replaces path atomically: write path.tmp, fsync it, rename over path,
 * fsync the directory. A crash leaves either the old or the new file.
 */
int meta_save(const char *path, const struct meta *m);

/* Value of key, or NULL. Borrowed from m. */
const char *meta_get(const struct meta *m, const char *key);
/* 0, or -1 if missing or not a number. */
int meta_get_u64(const struct meta *m, const char *key, uint64_t *out);
/* Sets or adds key (values with a newline are refused). 0 or -1 (full, too long). */
int meta_set(struct meta *m, const char *key, const char *val);
int meta_set_u64(struct meta *m, const char *key, uint64_t val);

#endif
