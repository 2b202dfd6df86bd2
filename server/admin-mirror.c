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
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin-mirror.h"
#include "export.h"
#include "frep/admin/v1/admin.pb-c.h"
#include "handoff.h"
#include "log.h"
#include "promote.h"
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
	v->state = mv.promoted ? FREP__ADMIN__V1__STATE__PROMOTED : FREP__ADMIN__V1__STATE__DETACHED;
	struct status_mirror *s = &v->mirror;
	s->epoch = mv.epochs.epoch;
	promotion_status(&mv, &s->promotion);
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
	struct snapset *ss = snapset_get(data_dir, name, err, sizeof(err));
	if (ss) {
		snapset_status(ss, s);
		snapset_put(ss);
	}
	return true;
}

static bool volume_status(const struct mirror_server *srv, const char *name, struct vol_status *v)
{
	if (registry_get(name, v)) {
		/* The session publishes between batches; snapshots change under the admin thread. */
		char err[256];
		struct snapset *ss = snapset_get(srv->data_dir, name, err, sizeof(err));
		if (ss) {
			snapset_status(ss, &v->mirror);
			snapset_put(ss);
		}
	} else if (!detached_status(srv->data_dir, name, v)) {
		return false;
	}
	v->mirror.exports = export_count(name);
	return true;
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

/* Adds their exports (server/export.c) to snapshots listed by snapset_list. */
static void describe_exports(struct status_snapshot *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		export_describe(s[i].volume, s[i].name, &s[i]);
}

/* --- snapshots ------------------------------------------------------------------- */

static bool bad_volume(const char *volume, struct admin_reply *r)
{
	if (volume_name_valid(volume))
		return false;
	r->code = ADMIN_INVALID_ARGUMENT;
	snprintf(r->message, sizeof(r->message),
		 "'%s' is not a volume name (1-64 of [A-Za-z0-9._-], not starting with '.')", volume);
	return true;
}

/* The volume's snapshot set, or NULL with r filled (NOT_FOUND when there is no such volume). */
static struct snapset *volume_snapshots(const struct mirror_server *srv, const char *volume,
					bool want_base, struct admin_reply *r)
{
	struct mirror_volume mv;
	uint32_t code;
	char err[512];
	if (bad_volume(volume, r))
		return NULL;
	bool exists = store_open(&mv, srv->data_dir, volume, &code, err, sizeof(err)) == 0 && mv.exists;
	bool promoted = mv.promoted;
	if (promoted)
		store_describe_promotion(&mv, err, sizeof(err));
	store_close(&mv);
	if (promoted && want_base) {
		admin_refuse(r, ADMIN_FAILED_PRECONDITION, "%s: snapshots and exports of it end with "
			     "the promotion (frep-client writes its base directly now)", err);
		return NULL;
	}
	if (!exists) {
		r->code = ADMIN_NOT_FOUND;
		snprintf(r->message, sizeof(r->message), "no volume '%s' on this mirror (data dir %s)",
			 volume, srv->data_dir);
		return NULL;
	}
	struct snapset *ss = snapset_get(srv->data_dir, volume, err, sizeof(err));
	if (!ss) {
		r->code = ADMIN_INTERNAL;
		snprintf(r->message, sizeof(r->message), "volume %s: snapshots: %s", volume, err);
	}
	return ss;
}

static enum admin_code create_error_code(int e)
{
	switch (e) {
	case EEXIST: return ADMIN_ALREADY_EXISTS;
	case EINVAL: return ADMIN_INVALID_ARGUMENT;
	case EAGAIN: return ADMIN_FAILED_PRECONDITION;
	case EMFILE: return ADMIN_RESOURCE_EXHAUSTED;
	default: return ADMIN_INTERNAL;
	}
}

int mirror_snapshot_create(struct mirror_server *srv, const char *volume, const char *name,
			   enum snap_kind kind, struct status_snapshot *out, struct admin_reply *r)
{
	char picked[SNAP_NAME_MAX + 1], err[512] = "";
	struct snapset *ss = volume_snapshots(srv, volume, true, r);
	if (!ss)
		return -1;
	if (!name || !*name) {
		time_t t = time(NULL);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(picked, sizeof(picked), "snap-%Y%m%d-%H%M%S", &tm);
		name = picked;
	}
	/*
	 * The session holding the volume fixes the TXID atomically with its
	 * applies; with none, this thread holds the volume for the moment it
	 * takes. A session attaching meanwhile makes ours BUSY: ask again.
	 */
	int rc = -1;
	for (int tries = 0; tries < 200; tries++) {
		rc = snapset_create_now(ss, name, kind, out, err, sizeof(err));
		if (rc == 0 || errno != ENXIO)
			break;
		struct mirror_volume mv;
		uint32_t code = 0;
		if (store_open(&mv, srv->data_dir, volume, &code, err, sizeof(err)) == 0 &&
		    store_attach(&mv, &code, err, sizeof(err)) == 0) {
			rc = snapset_create_now(ss, name, kind, out, err, sizeof(err));
			int e = errno;
			store_close(&mv);
			errno = e;
			break;
		}
		store_close(&mv);
		if (code != FREP_E_BUSY) {
			errno = EIO;
			break;
		}
		usleep(10000);
	}
	if (rc < 0) {
		r->code = create_error_code(errno);
		snprintf(r->message, sizeof(r->message), "%s", err[0] ? err : strerror(errno));
	} else {
		snprintf(r->message, sizeof(r->message), "snapshot %s@%s created at TXID %" PRIu64,
			 volume, name, out->txid);
	}
	snapset_put(ss);
	return rc;
}

static void op_promote(void *ctx, const char *volume, bool force, struct admin_reply *r)
{
	mirror_promote(ctx, volume, force, r);
}

/*
 * The first attach of an adopted copy takes its snapshot pre-demote: this
 * thread's, or the session of a master that came back first (then BUSY here,
 * and the metadata says when it is done). true once taken (or not needed).
 */
static bool pre_demote_taken(struct mirror_server *srv, const char *volume, char *err,
			     size_t err_len)
{
	uint64_t end = now_ms() + 10000;
	for (;;) {
		struct mirror_volume mv;
		uint32_t code = 0;
		int rc = store_open(&mv, srv->data_dir, volume, &code, err, err_len);
		bool pending = rc == 0 && mv.pre_demote_pending;
		if (rc == 0 && pending)
			rc = store_attach(&mv, &code, err, err_len);
		store_close(&mv);
		if (rc == 0 || (code != FREP_E_BUSY && code != FREP_E_IO) || now_ms() > end)
			return rc == 0;
		usleep(20000);
	}
}

/*
 * A session on a copy the adoption replaces (the new primary's, made before
 * the demote) ends with BUSY, which its master retries: by then the demoted
 * copy is there. Waits (bounded) for it to go.
 */
static void kick_session(const char *volume)
{
	struct vol_status live;
	struct fence_order o = { .code = FREP_E_BUSY };
	snprintf(o.message, sizeof(o.message), "volume %s is being replaced by a demoted master's "
		 "copy (frepctl demote): retry, and only what diverged is resent", volume);
	if (!registry_fence(volume, &o))
		return;
	uint64_t end = now_ms() + 10000;
	while (registry_get(volume, &live) && now_ms() < end)
		usleep(20000);
}

/*
 * frepctl demote's second half (FBK-1): the demoted master's copy becomes a
 * volume of this data dir, and the first attach takes snapshot pre-demote
 * before anything can write it.
 */
static void op_adopt(void *ctx, const char *volume, const char *path, struct admin_reply *r)
{
	struct mirror_server *srv = ctx;
	struct handoff h;
	char err[1024] = "";
	if (bad_volume(volume, r))
		return;
	if (handoff_load(path, &h, err, sizeof(err)) < 0) {
		admin_refuse(r, ADMIN_INVALID_ARGUMENT, "adopt %s: %s", volume, err);
		return;
	}
	if (strcmp(h.volume, volume) != 0) {
		admin_refuse(r, ADMIN_INVALID_ARGUMENT, "adopt %s: the handoff %s is volume %s's", volume,
			     path, h.volume);
	} else if (kick_session(volume), store_adopt(srv->data_dir, &h, err, sizeof(err)) < 0) {
		admin_refuse(r, errno == EEXIST ? ADMIN_ALREADY_EXISTS :
				errno == EBUSY ? ADMIN_UNAVAILABLE : ADMIN_INTERNAL,
			     "adopt %s: %s", volume, err);
	} else if (!pre_demote_taken(srv, volume, err, sizeof(err))) {
		admin_refuse(r, ADMIN_INTERNAL, "adopt %s: %s (the copy is in %s/%s; the next attach "
			     "takes snapshot %s)", volume, err, srv->data_dir, volume, SNAP_PRE_DEMOTE_NAME);
	} else if (h.consistent) {
		admin_refuse(r, ADMIN_OK, "%s/%s is a mirror copy of %s now, consistent at TXID %" PRIu64
			     " (epoch %" PRIu64 "): the new primary's master has nothing to copy",
			     srv->data_dir, volume, volume, h.txid, h.epochs.epoch);
	} else {
		char a[16];
		admin_refuse(r, ADMIN_OK, "%s/%s is a mirror copy of %s now (epoch %" PRIu64 ", its "
			     "extents linked where they were): snapshot %s keeps its %" PRIu64 " "
			     "discarded TX(s), %s; the new primary's master resends only what either "
			     "side changed after TXID %" PRIu64, srv->data_dir, volume, volume,
			     h.epochs.epoch, SNAP_PRE_DEMOTE_NAME, h.discard_tx,
			     format_size(h.discard_bytes, a, sizeof(a)), h.txid);
	}
	handoff_free(&h);
}

static int op_snapshot_create(void *ctx, const char *volume, const char *name,
			      struct status_snapshot *out, struct admin_reply *r)
{
	return mirror_snapshot_create(ctx, volume, name, SNAP_USER, out, r);
}

static int append_snapshots(struct snapset *ss, struct status_snapshot **out, size_t *n)
{
	struct status_snapshot *mine;
	size_t k;
	if (snapset_list(ss, &mine, &k) < 0)
		return -1;
	struct status_snapshot *all = realloc(*out, (*n + k ? *n + k : 1) * sizeof(**out));
	if (!all) {
		free(mine);
		return -1;
	}
	memcpy(all + *n, mine, k * sizeof(*mine));
	describe_exports(all + *n, k);
	*out = all;
	*n += k;
	free(mine);
	return 0;
}

static int op_snapshot_list(void *ctx, const char *volume, struct status_snapshot **out, size_t *n,
			    struct admin_reply *r)
{
	struct mirror_server *srv = ctx;
	*out = NULL;
	*n = 0;
	if (volume) {
		struct snapset *ss = volume_snapshots(srv, volume, false, r);
		if (!ss)
			return -1;
		int rc = append_snapshots(ss, out, n);
		snapset_put(ss);
		if (rc == 0)
			return 0;
	} else {
		struct vol_status *vols = NULL;
		size_t nv = 0;
		if (op_status(ctx, NULL, &vols, &nv, r) < 0)
			return -1;
		int rc = 0;
		for (size_t i = 0; i < nv && rc == 0; i++) {
			struct admin_reply ignored;
			struct snapset *ss = volume_snapshots(srv, vols[i].name, false, &ignored);
			if (ss) {
				rc = append_snapshots(ss, out, n);
				snapset_put(ss);
			}
		}
		free(vols);
		if (rc == 0)
			return 0;
	}
	r->code = ADMIN_INTERNAL;
	snprintf(r->message, sizeof(r->message), "listing snapshots: out of memory");
	return -1;
}

static void op_snapshot_delete(void *ctx, const char *volume, const char *name,
			       struct admin_reply *r)
{
	char err[512];
	if (!name || !*name) {
		r->code = ADMIN_INVALID_ARGUMENT;
		snprintf(r->message, sizeof(r->message), "snapshot delete needs a snapshot name");
		return;
	}
	struct snapset *ss = volume_snapshots(ctx, volume, false, r);
	if (!ss)
		return;
	if (snapset_delete(ss, name, err, sizeof(err)) < 0) {
		r->code = errno == ENOENT ? ADMIN_NOT_FOUND : ADMIN_INTERNAL;
		snprintf(r->message, sizeof(r->message), "%s", err);
	} else {
		snprintf(r->message, sizeof(r->message), "snapshot %s@%s deleted", volume, name);
	}
	snapset_put(ss);
}

/* --- exports (server/export.c) ---------------------------------------------------- */

/* The volume's snapshot set, the snapshot name checked too; NULL with r. */
static struct snapset *export_snapshots(const struct mirror_server *srv, const char *volume,
					const char *snapshot, struct admin_reply *r)
{
	if (snapshot[0] && !snapshot_name_valid(snapshot)) {
		admin_refuse(r, ADMIN_INVALID_ARGUMENT,
		       "'%s' is not a snapshot name (1-64 of [A-Za-z0-9._-], not starting with '.')",
		       snapshot);
		return NULL;
	}
	return volume_snapshots(srv, volume, false, r);
}

/* Snapshot name of the set into *out (with its export). 0, or -1 with r (NOT_FOUND). */
static int snapshot_find(struct snapset *ss, const char *volume, const char *name,
			 struct status_snapshot *out, struct admin_reply *r)
{
	struct status_snapshot *all = NULL;
	size_t n = 0;
	int rc = -1;
	if (snapset_list(ss, &all, &n) < 0)
		return admin_refuse(r, ADMIN_INTERNAL, "%s: listing its snapshots: %s", volume,
			      strerror(errno));
	for (size_t i = 0; i < n; i++)
		if (strcmp(all[i].name, name) == 0) {
			*out = all[i];
			rc = 0;
		}
	free(all);
	if (rc < 0)
		return admin_refuse(r, ADMIN_NOT_FOUND,
			      "no snapshot '%s' of volume '%s' (frepctl snapshot list %s)", name, volume,
			      volume);
	describe_exports(out, 1);
	return 0;
}

/* "nbd+unix:///db@s?socket=/p" or "nbd://host:port/db@s": where a client connects. */
static void nbd_uri(const char *nbd, const char *volume, const char *snapshot, char *out,
		    size_t len)
{
	if (strncmp(nbd, "unix:", 5) == 0)
		snprintf(out, len, "nbd+unix:///%s@%s?socket=%s", volume, snapshot, nbd + 5);
	else
		snprintf(out, len, "nbd://%s/%s@%s", nbd, volume, snapshot);
}

static int op_export_snapshot(void *ctx, const char *volume, const char *snapshot, const char *nbd,
			      struct status_snapshot *out, struct admin_reply *r)
{
	struct mirror_server *srv = ctx;
	struct export_addr a;
	char err[512], name[SNAP_NAME_MAX + 1];
	bool implicit = !snapshot[0];
	int rc = -1;

	if (export_parse_nbd(nbd, &a, err, sizeof(err)) < 0)
		return admin_refuse(r, ADMIN_INVALID_ARGUMENT, "%s", err);
	struct snapset *ss = export_snapshots(srv, volume, snapshot, r);
	if (!ss)
		return -1;
	if (implicit) {
		/* One implicit export per volume: a second would be a second snapshot nobody named. */
		if (snapset_find_kind(ss, SNAP_EXPORT, name, sizeof(name))) {
			struct status_snapshot cur = { 0 };
			export_describe(volume, name, &cur);
			admin_refuse(r, ADMIN_ALREADY_EXISTS,
			       "%s's latest state is already exported as %s@%s%s%s; unexport %s first, "
			       "or export a named snapshot (frepctl snapshot create %s NAME)",
			       volume, volume, name, cur.exported ? " on " : " (not served)",
			       cur.exported ? cur.export_nbd : "", volume, volume);
			goto out;
		}
		/* export-YYYYMMDD-HHMMSS: the implicit snapshot, named for when it was taken. */
		time_t t = time(NULL);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(name, sizeof(name), "export-%Y%m%d-%H%M%S", &tm);
		if (mirror_snapshot_create(srv, volume, name, SNAP_EXPORT, out, r) < 0)
			goto out;
	} else {
		snprintf(name, sizeof(name), "%s", snapshot);
		if (snapshot_find(ss, volume, name, out, r) < 0)
			goto out;
		if (!out->valid) {
			admin_refuse(r, ADMIN_FAILED_PRECONDITION,
			       "%s@%s is invalid (%s): its content is gone; delete it (frepctl snapshot "
			       "delete %s %s)",
			       volume, name, out->invalid_reason, volume, name);
			goto out;
		}
	}
	if (export_start(volume, name, nbd, r) < 0) {
		if (implicit && snapset_delete(ss, name, err, sizeof(err)) < 0)
			log_warn(volume, "export %s: deleting its implicit snapshot %s: %s", volume, name,
				 err);
		goto out;
	}
	export_describe(volume, name, out);
	char uri[STATUS_TEXT_MAX + 2 * SNAP_NAME_MAX + 32];
	nbd_uri(nbd, volume, name, uri, sizeof(uri));
	r->code = ADMIN_OK;
	snprintf(r->message, sizeof(r->message), "exporting %s@%s (TXID %" PRIu64 ") read-only on %s: %s",
		 volume, name, out->txid, nbd, uri);
	rc = 0;
out:
	snapset_put(ss);
	return rc;
}

static void op_unexport(void *ctx, const char *volume, const char *snapshot, struct admin_reply *r)
{
	struct mirror_server *srv = ctx;
	char err[512], name[SNAP_NAME_MAX + 1];
	bool implicit = !snapshot[0];

	struct snapset *ss = export_snapshots(srv, volume, snapshot, r);
	if (!ss)
		return;
	if (implicit && !snapset_find_kind(ss, SNAP_EXPORT, name, sizeof(name))) {
		admin_refuse(r, ADMIN_NOT_FOUND,
		       "%s has no export of its latest state; name the snapshot (frepctl unexport "
		       "%s@SNAPSHOT; frepctl snapshot list %s shows the exported ones)",
		       volume, volume, volume);
		goto out;
	}
	if (!implicit)
		snprintf(name, sizeof(name), "%s", snapshot);
	bool was = export_stop(volume, name, "unexported") == 0;
	if (implicit) {
		/* The implicit snapshot lives as long as its export. */
		if (snapset_delete(ss, name, err, sizeof(err)) < 0)
			admin_refuse(r, ADMIN_INTERNAL, "unexported %s@%s, but deleting its snapshot: %s",
			       volume, name, err);
		else
			snprintf(r->message, sizeof(r->message),
				 "unexported %s@%s; its NBD clients were disconnected and the implicit "
				 "snapshot is deleted", volume, name);
	} else if (!was && snapset_exists(ss, name)) {
		admin_refuse(r, ADMIN_FAILED_PRECONDITION, "%s@%s is not exported", volume, name);
	} else if (!was) {
		admin_refuse(r, ADMIN_NOT_FOUND, "no snapshot '%s' of volume '%s' (frepctl snapshot list %s)",
		       name, volume, volume);
	} else {
		snprintf(r->message, sizeof(r->message),
			 "unexported %s@%s; its NBD clients were disconnected", volume, name);
	}
out:
	snapset_put(ss);
}

const struct admin_ops admin_mirror_ops = {
	.status = op_status,
	.snapshot_create = op_snapshot_create,
	.snapshot_list = op_snapshot_list,
	.snapshot_delete = op_snapshot_delete,
	.export_snapshot = op_export_snapshot,
	.unexport = op_unexport,
	.promote = op_promote,
	.adopt = op_adopt,
};
