/*
 * frep-server's side of the admin API (common/admin.h): every volume of the
 * data dir. A volume a session holds reports what that session published
 * (registry.h); any other one what its metadata says, read without its lock
 * (metadata is replaced atomically), in state DETACHED. The commands are the
 * master's (pause, resync, ...): frep-server leaves them unset, and the admin
 * server answers FAILED_PRECONDITION naming frep-client.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "admin-mirror.h"
#include "frep/admin/v1/admin.pb-c.h"
#include "registry.h"
#include "store.h"
#include "util.h"

static int64_t mtime_ms(const char *dir, const char *leaf)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, leaf);
	if (stat(path, &st) < 0)
		return 0;
	return (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
}

static uint64_t file_size(const char *dir, const char *leaf)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, leaf);
	return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* A volume no session holds, from its metadata. false if it has none (not a volume). */
static bool detached_status(const char *data_dir, const char *name, struct vol_status *v)
{
	struct mirror_volume mv;
	uint32_t code;
	char err[512];
	if (store_open(&mv, data_dir, name, &code, err, sizeof(err)) < 0) {
		/* Damaged metadata is still a volume: say so rather than hide it. */
		memset(v, 0, sizeof(*v));
		snprintf(v->name, sizeof(v->name), "%s", name);
		v->role = FREP__ADMIN__V1__ROLE__MIRROR;
		v->state = FREP__ADMIN__V1__STATE__ERROR;
		v->last_error.set = true;
		snprintf(v->last_error.code, sizeof(v->last_error.code), "%s", frep_error_name(code));
		snprintf(v->last_error.message, sizeof(v->last_error.message), "%s", err);
		return true;
	}
	if (!mv.exists) {
		store_close(&mv);
		return false;
	}
	memset(v, 0, sizeof(*v));
	snprintf(v->name, sizeof(v->name), "%s", name);
	v->role = FREP__ADMIN__V1__ROLE__MIRROR;
	v->state = FREP__ADMIN__V1__STATE__DETACHED;
	struct status_mirror *s = &v->mirror;
	snprintf(s->owner_identity, sizeof(s->owner_identity), "%s", mv.owner);
	s->consistent = mv.consistent;
	s->consistent_txid = mv.consistent_txid;
	s->last_applied_txid = mv.consistent ? mv.consistent_txid : 0;
	s->consistent_unix_ms = mv.consistent ? mtime_ms(mv.dir, "meta") : 0;
	v->state_since_unix_ms = mtime_ms(mv.dir, "meta");
	s->journal_size_bytes = file_size(mv.dir, "journal");
	snprintf(s->preallocate, sizeof(s->preallocate), "%s", mv.sparse ? "sparse" : "full");
	for (unsigned i = 0; i < mv.n_extents; i++) {
		char leaf[32];
		snprintf(leaf, sizeof(leaf), "extent.%u", i);
		s->volume_size_bytes += file_size(mv.dir, leaf);
	}
	store_close(&mv);
	return true;
}

static bool volume_status(const struct mirror_server *srv, const char *name, struct vol_status *v)
{
	return registry_get(name, v) || detached_status(srv->data_dir, name, v);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(((const struct vol_status *)a)->name, ((const struct vol_status *)b)->name);
}

static int op_status(void *ctx, const char *volume, struct vol_status **out, size_t *n,
		     struct admin_reply *r)
{
	const struct mirror_server *srv = ctx;
	*out = NULL;
	*n = 0;
	if (volume) {
		if (!volume_name_valid(volume)) {
			r->code = ADMIN_INVALID_ARGUMENT;
			snprintf(r->message, sizeof(r->message),
				 "'%s' is not a volume name (1-64 of [A-Za-z0-9._-], not starting "
				 "with '.')",
				 volume);
			return -1;
		}
		struct vol_status *v = calloc(1, sizeof(*v));
		if (v && volume_status(srv, volume, v)) {
			*out = v;
			*n = 1;
			return 0;
		}
		free(v);
		r->code = v ? ADMIN_NOT_FOUND : ADMIN_INTERNAL;
		snprintf(r->message, sizeof(r->message), "no volume '%s' on this mirror (data dir %s)",
			 volume, srv->data_dir);
		return -1;
	}
	DIR *d = opendir(srv->data_dir);
	if (!d) {
		r->code = ADMIN_INTERNAL;
		snprintf(r->message, sizeof(r->message), "data dir %s: %s", srv->data_dir,
			 strerror(errno));
		return -1;
	}
	size_t cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!volume_name_valid(e->d_name))
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 8;
			struct vol_status *grown = realloc(*out, cap * sizeof(**out));
			if (!grown)
				break;
			*out = grown;
		}
		if (volume_status(srv, e->d_name, &(*out)[*n]))
			(*n)++;
	}
	closedir(d);
	if (*n > 1)
		qsort(*out, *n, sizeof(**out), cmp_names);
	return 0;
}

const struct admin_ops admin_mirror_ops = {
	.status = op_status,
};
