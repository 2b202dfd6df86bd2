/* Authorisation: which master identities may create or own which volume names (--allow FILE). */
#ifndef FREP_AUTHZ_H
#define FREP_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>

struct authz;

/*
 * Loads lines "VOLUME-GLOB IDENTITY" (fnmatch globs on both; '#' starts a
 * comment). Returns NULL with err naming the file and line on a bad line.
 * Caller frees with authz_free.
 */
struct authz *authz_load(const char *path, char *err, size_t err_len);
void authz_free(struct authz *a);

/* True if identity may create or own volume. A NULL authz (no --allow) allows all. */
bool authz_allows(const struct authz *a, const char *volume, const char *identity);

#endif
