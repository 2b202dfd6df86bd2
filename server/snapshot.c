/* Snapshots of a mirror volume: copy-before-write overlays (snapshot.h has the design). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crashpoint.h"
#include "events.h"
#include "log.h"
#include "meta.h"
#include "snapshot.h"
#include "util.h"
#include "wire.h"

enum {
	MAP_HEADER = 4096,	     /* the map's header page; the bits follow */
	COPY_BUF = 1 << 20,	     /* chunks are copied base -> overlay through this */
	MAP_MAGIC_LEN = 8,
};

static const char map_magic[MAP_MAGIC_LEN] = "FREPSNP1";

/*
 * The map's header as readers see it (mapped shared). valid turns 0 before
 * the base may be overwritten without a copy, so a reader that checks it
 * under its range lock never returns content from after the snapshot.
 */
struct map_header {
	char magic[MAP_MAGIC_LEN];
	uint32_t valid;
	uint32_t chunk;
	uint64_t txid;
	uint64_t size;
};

struct snap {
	char name[SNAP_NAME_MAX + 1];
	char dir[PATH_MAX];
	enum snap_kind kind;
	uint64_t txid;
	int64_t created_ms;
	bool valid;
	char reason[STATUS_TEXT_MAX];
	int64_t invalidated_ms;
	int overlay_fd, map_fd;	 /* -1 once invalid */
	uint8_t *bits;		 /* saved chunks, as durable in the map */
	uint8_t *pending;	 /* queued in the current snapset_cow */
};

struct snapset {
	struct snapset *next;
	unsigned refs;
	char volume[SNAP_NAME_MAX + 1];
	char voldir[PATH_MAX];
	char dir[PATH_MAX]; /* voldir/snapshots */
	pthread_mutex_t mu;
	int lock_fd;	    /* snapshots/.rangelock, read-write */
	uint64_t size;	    /* the volume's, 0 until known */
	struct snap *s[SNAP_MAX]; /* oldest first */
	unsigned n;
	bool held, consistent;
	uint64_t applied;
	bool all_locked;    /* the writer holds the whole range (a journal replay) */
	uint8_t *buf;	    /* COPY_BUF, for copies */
	uint64_t *queue;    /* chunk indexes being saved by snapset_cow */
	size_t queue_len, queue_cap;
};

static pthread_mutex_t sets_mu = PTHREAD_MUTEX_INITIALIZER;
static struct snapset *sets;
static void (*gone_hook)(const char *volume, const char *snapshot, const char *why);

bool snapshot_name_valid(const char *name)
{
	return volume_name_valid(name);
}

void snapset_set_gone_hook(void (*gone)(const char *, const char *, const char *))
{
	gone_hook = gone;
}

/*
 * Paths and names below are bounded (textf): snapset_get refuses a data dir
 * too long for them, and names are checked valid (<= 64 bytes) before use.
 */

static uint64_t chunks_of(uint64_t size)
{
	return (size + SNAP_CHUNK - 1) / SNAP_CHUNK;
}

static size_t bits_bytes(uint64_t size)
{
	return (size_t)((chunks_of(size) + 7) / 8);
}

static bool bit(const uint8_t *b, uint64_t c)
{
	return b[c / 8] & (1u << (c % 8));
}

static void bit_set(uint8_t *b, uint64_t c)
{
	b[c / 8] |= (uint8_t)(1u << (c % 8));
}

static void bit_clear(uint8_t *b, uint64_t c)
{
	b[c / 8] &= (uint8_t)~(1u << (c % 8));
}

static bool all_zero(const uint8_t *p, size_t len)
{
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/* The volume's extent paths from its metadata: *paths malloc'd (free_paths). */
static int volume_files(const char *voldir, char ***paths, unsigned *n, char *err, size_t err_len)
{
	char path[PATH_MAX];
	struct meta md;
	uint64_t count;
	snprintf(path, sizeof(path), "%s/meta", voldir);
	errno = 0;
	if (meta_load(path, &md) < 0 || meta_get_u64(&md, "extents", &count) < 0 || count == 0 ||
	    count > FREP_MAX_EXTENTS) {
		snprintf(err, err_len, "%s: no volume metadata (%s)", path,
			 errno ? strerror(errno) : "incomplete");
		return -1;
	}
	if (!(*paths = calloc(count, sizeof(**paths)))) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	for (unsigned i = 0; i < count; i++)
		if (asprintf(&(*paths)[i], "%s/extent.%u", voldir, i) < 0) {
			(*paths)[i] = NULL;
			*n = i;
			snprintf(err, err_len, "out of memory");
			return -1;
		}
	*n = (unsigned)count;
	return 0;
}

static void free_paths(char **paths, unsigned n)
{
	for (unsigned i = 0; paths && i < n; i++)
		free(paths[i]);
	free(paths);
}

/* The volume's size: its extent files' (0 if it has none yet). */
static uint64_t volume_size_of(const char *voldir)
{
	char **paths = NULL, err[256];
	unsigned n = 0;
	uint64_t size = 0;
	if (volume_files(voldir, &paths, &n, err, sizeof(err)) == 0)
		for (unsigned i = 0; i < n; i++) {
			struct stat st;
			if (stat(paths[i], &st) < 0) {
				size = 0;
				break;
			}
			size += (uint64_t)st.st_size;
		}
	free_paths(paths, n);
	return size;
}

static void leaf(char *out, const struct snap *s, const char *name)
{
	textf(out, PATH_MAX, "%s/%s", s->dir, name);
}

static int save_meta(const struct snapset *ss, const struct snap *s)
{
	char path[PATH_MAX];
	struct meta md;
	meta_init(&md);
	meta_set(&md, "format", "frep-snapshot-1");
	meta_set(&md, "volume", ss->volume);
	meta_set(&md, "name", s->name);
	meta_set_u64(&md, "kind", (uint64_t)s->kind);
	meta_set_u64(&md, "txid", s->txid);
	meta_set_u64(&md, "created_ms", (uint64_t)s->created_ms);
	meta_set_u64(&md, "size", ss->size);
	meta_set_u64(&md, "valid", s->valid);
	meta_set(&md, "reason", s->reason);
	meta_set_u64(&md, "invalidated_ms", (uint64_t)s->invalidated_ms);
	leaf(path, s, "meta");
	return meta_save(path, &md);
}

static void snap_free(struct snap *s)
{
	if (!s)
		return;
	if (s->overlay_fd >= 0)
		close(s->overlay_fd);
	if (s->map_fd >= 0)
		close(s->map_fd);
	free(s->bits);
	free(s->pending);
	free(s);
}

static uint64_t used_bytes(const struct snap *s)
{
	uint64_t used = 0;
	const char *leaves[] = { "overlay", "map" };
	for (unsigned i = 0; i < 2; i++) {
		char path[PATH_MAX];
		struct stat st;
		leaf(path, s, leaves[i]);
		if (stat(path, &st) == 0)
			used += (uint64_t)st.st_blocks * 512;
	}
	return used;
}

static void describe(const struct snapset *ss, const struct snap *s, struct status_snapshot *o)
{
	memset(o, 0, sizeof(*o));
	snprintf(o->volume, sizeof(o->volume), "%s", ss->volume);
	snprintf(o->name, sizeof(o->name), "%s", s->name);
	o->kind = s->kind;
	o->txid = s->txid;
	o->created_unix_ms = s->created_ms;
	o->used_bytes = used_bytes(s);
	o->valid = s->valid;
	snprintf(o->invalid_reason, sizeof(o->invalid_reason), "%s", s->reason);
	o->invalidated_unix_ms = s->invalidated_ms;
}

/*
 * Gives up snapshot s: durably marked invalid first (a crash then never
 * brings back a snapshot whose chunks the base no longer has), then its
 * space. The mark that counts is the map header's valid word, which readers
 * also watch: it lives in a block written at creation, so rewriting it needs
 * no new space, and a snapshot is most often given up because the disk is
 * full. The meta, which a full disk may refuse, only adds the reason.
 * Called with ss->mu held.
 */
static void invalidate(struct snapset *ss, struct snap *s, const char *why)
{
	if (!s->valid)
		return;
	s->valid = false;
	s->invalidated_ms = wall_ms();
	snprintf(s->reason, sizeof(s->reason), "%s", why);
	uint32_t zero = 0;
	if (s->map_fd >= 0 &&
	    (pwrite(s->map_fd, &zero, sizeof(zero), offsetof(struct map_header, valid)) !=
		     (ssize_t)sizeof(zero) ||
	     fdatasync(s->map_fd) < 0))
		log_error(ss->volume, "snapshot %s: marking its map invalid: %s", s->name,
			  strerror(errno));
	if (save_meta(ss, s) < 0)
		log_warn(ss->volume, "snapshot %s: saving why it is invalid: %s (its map says it is "
			 "invalid; after a restart the reason is not known)", s->name, strerror(errno));
	if (gone_hook)
		gone_hook(ss->volume, s->name, why);
	if (s->overlay_fd >= 0 && ftruncate(s->overlay_fd, 0) < 0)
		log_warn(ss->volume, "snapshot %s: freeing its overlay: %s", s->name, strerror(errno));
	if (s->overlay_fd >= 0)
		close(s->overlay_fd);
	if (s->map_fd >= 0)
		close(s->map_fd);
	s->overlay_fd = s->map_fd = -1;
	free(s->bits);
	free(s->pending);
	s->bits = s->pending = NULL;
	log_warn(ss->volume, "snapshot %s (TXID %" PRIu64 ") invalidated: %s; it stays listed until "
		 "deleted (frepctl snapshot delete %s %s)", s->name, s->txid, why, ss->volume, s->name);
	events_publish(EVENT_SNAPSHOT, ss->volume, 0, 0, "snapshot %s invalidated: %s", s->name, why);
}

static int open_files(struct snapset *ss, struct snap *s, bool create, char *err, size_t err_len)
{
	char path[PATH_MAX];
	int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
	size_t nbits = bits_bytes(ss->size);

	leaf(path, s, "overlay");
	if ((s->overlay_fd = open(path, flags, 0600)) < 0 ||
	    (create && ftruncate(s->overlay_fd, (off_t)ss->size) < 0))
		goto fail;
	leaf(path, s, "map");
	if ((s->map_fd = open(path, flags, 0600)) < 0)
		goto fail;
	if (!(s->bits = calloc(1, nbits ? nbits : 1)) || !(s->pending = calloc(1, nbits ? nbits : 1)))
		goto fail;
	if (create) {
		struct map_header h = { .valid = 1, .chunk = SNAP_CHUNK, .txid = s->txid, .size = ss->size };
		memcpy(h.magic, map_magic, sizeof(h.magic));
		if (ftruncate(s->map_fd, (off_t)(MAP_HEADER + nbits)) < 0 ||
		    pwrite(s->map_fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) || fdatasync(s->map_fd) < 0 ||
		    fdatasync(s->overlay_fd) < 0)
			goto fail;
		return 0;
	}
	struct map_header h;
	if (pread(s->map_fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h.magic, map_magic, sizeof(h.magic)) != 0 || h.chunk != SNAP_CHUNK ||
	    h.size != ss->size || h.txid != s->txid) {
		snprintf(err, err_len, "%s: not the map of this snapshot", path);
		errno = EBADMSG;
		return -1;
	}
	if (h.valid != 1) {
		/* Invalidated on a disk too full to save the meta as well. */
		snprintf(err, err_len, "invalidated before a restart, its reason not saved "
			 "(the disk was likely full)");
		errno = ESTALE;
		return -1;
	}
	if (pread(s->map_fd, s->bits, nbits, MAP_HEADER) != (ssize_t)nbits)
		goto fail;
	return 0;
fail:
	snprintf(err, err_len, "%s: %s", path, strerror(errno ? errno : EIO));
	return -1;
}

/* Removes a snapshot directory whose files are closed (meta first: a crash leaves no snapshot). */
static int remove_dir(const char *dir)
{
	const char *leaves[] = { "meta", "meta.tmp", "map", "overlay" };
	char path[PATH_MAX];
	for (unsigned i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, leaves[i]);
		if (unlink(path) < 0 && errno != ENOENT)
			return -1;
		if (i == 0 && fsync_parent_dir(path) < 0)
			return -1;
	}
	if (rmdir(dir) < 0)
		return -1;
	return fsync_parent_dir(dir);
}

static int cmp_created(const void *a, const void *b)
{
	const struct snap *x = *(struct snap *const *)a, *y = *(struct snap *const *)b;
	return x->created_ms < y->created_ms ? -1 : x->created_ms > y->created_ms ? 1 :
	       x->txid < y->txid ? -1 : x->txid > y->txid;
}

static int load(struct snapset *ss, char *err, size_t err_len)
{
	DIR *d = opendir(ss->dir);
	struct dirent *e;
	if (!d) {
		snprintf(err, err_len, "%s: %s", ss->dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		if (!snapshot_name_valid(e->d_name))
			continue;
		struct snap *s = calloc(1, sizeof(*s));
		char path[PATH_MAX];
		struct meta md;
		uint64_t v;
		if (!s)
			break;
		s->overlay_fd = s->map_fd = -1;
		textf(s->name, sizeof(s->name), "%s", e->d_name);
		textf(s->dir, sizeof(s->dir), "%s/%s", ss->dir, e->d_name);
		leaf(path, s, "meta");
		if (meta_load(path, &md) < 0) {
			/* A creation or a deletion cut short: it never was, or it is gone. */
			log_info(ss->volume, "snapshot %s: no metadata (%s): removing what was left of it",
				 s->name, strerror(errno));
			if (remove_dir(s->dir) < 0)
				log_warn(ss->volume, "removing %s: %s", s->dir, strerror(errno));
			snap_free(s);
			continue;
		}
		if (ss->n == SNAP_MAX || meta_get_u64(&md, "txid", &s->txid) < 0 ||
		    meta_get_u64(&md, "kind", &v) < 0) {
			log_error(ss->volume, "snapshot %s: %s; leaving it alone", s->name,
				  ss->n == SNAP_MAX ? "more snapshots than frep keeps" : "incomplete metadata");
			snap_free(s);
			continue;
		}
		s->kind = (enum snap_kind)v;
		s->created_ms = meta_get_u64(&md, "created_ms", &v) == 0 ? (int64_t)v : 0;
		s->valid = meta_get_u64(&md, "valid", &v) == 0 && v == 1;
		s->invalidated_ms = meta_get_u64(&md, "invalidated_ms", &v) == 0 ? (int64_t)v : 0;
		snprintf(s->reason, sizeof(s->reason), "%s", meta_get(&md, "reason") ? meta_get(&md, "reason") : "");
		if (s->valid && open_files(ss, s, false, err, err_len) < 0) {
			if (errno == ESTALE)
				log_warn(ss->volume, "snapshot %s: %s", s->name, err);
			else
				log_error(ss->volume, "snapshot %s: %s", s->name, err);
			s->valid = true; /* so that invalidate() records it */
			invalidate(ss, s, err);
		}
		ss->s[ss->n++] = s;
	}
	closedir(d);
	qsort(ss->s, ss->n, sizeof(ss->s[0]), cmp_created);
	return 0;
}

struct snapset *snapset_get(const char *data_dir, const char *volume, char *err, size_t err_len)
{
	pthread_mutex_lock(&sets_mu);
	struct snapset *ss;
	for (ss = sets; ss; ss = ss->next)
		if (strcmp(ss->volume, volume) == 0)
			break;
	if (ss) {
		ss->refs++;
		if (!ss->size)
			ss->size = volume_size_of(ss->voldir);
		pthread_mutex_unlock(&sets_mu);
		return ss;
	}
	/* Room for DIR/VOLUME/snapshots/NAME/meta.tmp under every name. */
	if (strlen(data_dir) + 2 * SNAP_NAME_MAX + 32 >= PATH_MAX) {
		snprintf(err, err_len, "data dir %s: path too long for snapshots", data_dir);
		goto fail;
	}
	ss = calloc(1, sizeof(*ss));
	if (!ss) {
		snprintf(err, err_len, "out of memory");
		goto fail;
	}
	snprintf(ss->volume, sizeof(ss->volume), "%s", volume);
	snprintf(ss->voldir, sizeof(ss->voldir), "%s/%s", data_dir, volume);
	textf(ss->dir, sizeof(ss->dir), "%s/snapshots", ss->voldir);
	pthread_mutex_init(&ss->mu, NULL);
	ss->size = volume_size_of(ss->voldir);
	char path[PATH_MAX];
	textf(path, sizeof(path), "%s/.rangelock", ss->dir);
	int made = mkdir(ss->dir, 0700);
	if ((made < 0 && errno != EEXIST) || (made == 0 && fsync_parent_dir(ss->dir) < 0) ||
	    (ss->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		snprintf(err, err_len, "%s: %s", errno == EEXIST ? path : ss->dir, strerror(errno));
		pthread_mutex_destroy(&ss->mu);
		free(ss);
		goto fail;
	}
	if (load(ss, err, err_len) < 0) {
		close(ss->lock_fd);
		pthread_mutex_destroy(&ss->mu);
		free(ss);
		goto fail;
	}
	ss->refs = 1;
	ss->next = sets;
	sets = ss;
	pthread_mutex_unlock(&sets_mu);
	return ss;
fail:
	pthread_mutex_unlock(&sets_mu);
	return NULL;
}

void snapset_put(struct snapset *ss)
{
	if (!ss)
		return;
	pthread_mutex_lock(&sets_mu);
	if (--ss->refs > 0) {
		pthread_mutex_unlock(&sets_mu);
		return;
	}
	for (struct snapset **p = &sets; *p; p = &(*p)->next)
		if (*p == ss) {
			*p = ss->next;
			break;
		}
	pthread_mutex_unlock(&sets_mu);
	for (unsigned i = 0; i < ss->n; i++)
		snap_free(ss->s[i]);
	close(ss->lock_fd);
	free(ss->buf);
	free(ss->queue);
	pthread_mutex_destroy(&ss->mu);
	free(ss);
}

bool snapset_active(struct snapset *ss)
{
	pthread_mutex_lock(&ss->mu);
	bool any = ss->n > 0;
	pthread_mutex_unlock(&ss->mu);
	return any;
}

/* --- copy-before-write ------------------------------------------------------------ */

static int queue_add(struct snapset *ss, uint64_t c)
{
	if (ss->queue_len == ss->queue_cap) {
		size_t cap = ss->queue_cap ? 2 * ss->queue_cap : 1024;
		uint64_t *q = realloc(ss->queue, cap * sizeof(*q));
		if (!q)
			return -1;
		ss->queue = q;
		ss->queue_cap = cap;
	}
	ss->queue[ss->queue_len++] = c;
	return 0;
}

/* Copies chunks [c, c + count) of the base into s's overlay, skipping all-zero chunks. */
static int copy_chunks(struct snapset *ss, struct snap *s, const struct volume *base, uint64_t c,
		       uint64_t count)
{
	while (count) {
		uint64_t n = count < COPY_BUF / SNAP_CHUNK ? count : COPY_BUF / SNAP_CHUNK;
		uint64_t off = c * SNAP_CHUNK, len = n * SNAP_CHUNK;
		if (off + len > ss->size)
			len = ss->size - off;
		if (volume_pread(base, ss->buf, len, off) < 0)
			return -1;
		for (uint64_t k = 0; k < len; k += SNAP_CHUNK) {
			size_t piece = len - k < SNAP_CHUNK ? (size_t)(len - k) : SNAP_CHUNK;
			if (all_zero(ss->buf + k, piece))
				continue; /* the overlay's hole there reads as zeros */
			if (pwrite(s->overlay_fd, ss->buf + k, piece, (off_t)(off + k)) != (ssize_t)piece)
				return -1;
		}
		c += n;
		count -= n;
	}
	return 0;
}

/*
 * Queues the chunks of the ranges that s must save, copies them, makes the
 * copies durable, then the map. -1 with errno, nothing marked saved.
 */
static int save_for(struct snapset *ss, struct snap *s, const struct volume *base,
		    const struct snap_range *ranges, unsigned n)
{
	ss->queue_len = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct snap_range *r = &ranges[i];
		if ((r->txid && r->txid <= s->txid) || r->len == 0 || r->off >= ss->size)
			continue;
		uint64_t end = r->off + r->len > ss->size ? ss->size : r->off + r->len;
		for (uint64_t c = r->off / SNAP_CHUNK; c * SNAP_CHUNK < end; c++) {
			if (bit(s->bits, c) || bit(s->pending, c))
				continue;
			if (queue_add(ss, c) < 0)
				goto fail;
			bit_set(s->pending, c);
		}
	}
	if (ss->queue_len == 0)
		return 0;
	/* Runs of consecutive chunks are copied in one read. */
	for (size_t i = 0; i < ss->queue_len;) {
		size_t j = i + 1;
		while (j < ss->queue_len && ss->queue[j] == ss->queue[j - 1] + 1)
			j++;
		if (copy_chunks(ss, s, base, ss->queue[i], j - i) < 0)
			goto fail;
		i = j;
	}
	frep_crash_point("cow-copied");
	if (fdatasync(s->overlay_fd) < 0)
		goto fail;
	/* Only now may the map say saved: the copies are durable. */
	for (size_t i = 0; i < ss->queue_len; i++) {
		bit_set(s->bits, ss->queue[i]);
		bit_clear(s->pending, ss->queue[i]);
	}
	uint64_t last_page = UINT64_MAX;
	for (size_t i = 0; i < ss->queue_len; i++) {
		uint64_t page = ss->queue[i] / 8 / 4096;
		if (page == last_page)
			continue;
		last_page = page;
		size_t from = (size_t)page * 4096, len = bits_bytes(ss->size) - from;
		if (len > 4096)
			len = 4096;
		if (pwrite(s->map_fd, s->bits + from, len, (off_t)(MAP_HEADER + from)) != (ssize_t)len)
			return -1; /* the bits are set in memory: the caller invalidates */
	}
	frep_crash_point("cow-mapped");
	if (fdatasync(s->map_fd) < 0)
		return -1;
	frep_crash_point("cow-saved");
	return 0;
fail:;
	int e = errno ? errno : EIO;
	for (size_t i = 0; i < ss->queue_len; i++)
		bit_clear(s->pending, ss->queue[i]);
	errno = e;
	return -1;
}

static struct snap *oldest_valid(struct snapset *ss)
{
	for (unsigned i = 0; i < ss->n; i++)
		if (ss->s[i]->valid)
			return ss->s[i];
	return NULL;
}

static void cow_locked(struct snapset *ss, const struct volume *base,
		       const struct snap_range *ranges, unsigned n)
{
	if (!ss->buf && !(ss->buf = malloc(COPY_BUF))) {
		for (unsigned i = 0; i < ss->n; i++)
			invalidate(ss, ss->s[i], "out of memory for copy-before-write");
		return;
	}
	for (unsigned i = 0; i < ss->n; i++) {
		struct snap *s = ss->s[i];
		while (s->valid && save_for(ss, s, base, ranges, n) < 0) {
			char why[STATUS_TEXT_MAX];
			int e = errno;
			if (e == ENOSPC || e == EDQUOT) {
				/* Space first goes back from the oldest; then this one is retried. */
				struct snap *old = oldest_valid(ss);
				snprintf(why, sizeof(why), "no space left for snapshot %s's copy-before-write "
					 "(%s)%s", s->name, strerror(e), old == s ? "" : "; the oldest goes first");
				invalidate(ss, old, why);
			} else {
				snprintf(why, sizeof(why), "copy-before-write failed: %s", strerror(e));
				invalidate(ss, s, why);
			}
		}
	}
}

void snapset_cow(struct snapset *ss, const struct volume *base, const struct snap_range *ranges,
		 unsigned n)
{
	pthread_mutex_lock(&ss->mu);
	if (ss->n)
		cow_locked(ss, base, ranges, n);
	pthread_mutex_unlock(&ss->mu);
}

static int range_lock(int fd, short type, uint64_t off, uint64_t len)
{
	struct flock fl = {
		.l_type = type,
		.l_whence = SEEK_SET,
		.l_start = (off_t)off,
		.l_len = (off_t)len,
	};
	int rc;
	while ((rc = fcntl(fd, F_OFD_SETLKW, &fl)) < 0 && errno == EINTR)
		;
	return rc;
}

int snapset_modify(struct snapset *ss, const struct volume *base, const struct snap_range *r,
		   int (*io)(void *arg), void *arg)
{
	pthread_mutex_lock(&ss->mu);
	bool lock = ss->n && !ss->all_locked;
	int rc = -1, e = 0;
	if (ss->n)
		cow_locked(ss, base, r, 1);
	if (lock && range_lock(ss->lock_fd, F_WRLCK, r->off, r->len) < 0) {
		e = errno;
		goto out;
	}
	rc = io(arg);
	e = errno;
	if (lock)
		range_lock(ss->lock_fd, F_UNLCK, r->off, r->len);
	if (rc == 0 && r->txid)
		ss->applied = r->txid;
out:
	pthread_mutex_unlock(&ss->mu);
	errno = e;
	return rc;
}

int snapset_lock_all(struct snapset *ss)
{
	pthread_mutex_lock(&ss->mu);
	int rc = ss->size ? range_lock(ss->lock_fd, F_WRLCK, 0, ss->size) : 0;
	ss->all_locked = rc == 0 && ss->size;
	pthread_mutex_unlock(&ss->mu);
	return rc;
}

void snapset_unlock_all(struct snapset *ss)
{
	pthread_mutex_lock(&ss->mu);
	if (ss->all_locked)
		range_lock(ss->lock_fd, F_UNLCK, 0, ss->size);
	ss->all_locked = false;
	pthread_mutex_unlock(&ss->mu);
}

/* --- the holder's state, and the admin side ---------------------------------------- */

void snapset_set_holder(struct snapset *ss, bool held, bool consistent, uint64_t applied_txid)
{
	pthread_mutex_lock(&ss->mu);
	ss->held = held;
	ss->consistent = held && consistent;
	ss->applied = applied_txid;
	pthread_mutex_unlock(&ss->mu);
}

int snapset_holder_consistent(struct snapset *ss, uint64_t *txid)
{
	pthread_mutex_lock(&ss->mu);
	int rc = !ss->held ? -1 : ss->consistent ? 1 : 0;
	*txid = ss->applied;
	pthread_mutex_unlock(&ss->mu);
	return rc;
}

static struct snap *find(struct snapset *ss, const char *name)
{
	for (unsigned i = 0; i < ss->n; i++)
		if (strcmp(ss->s[i]->name, name) == 0)
			return ss->s[i];
	return NULL;
}

static int create_locked(struct snapset *ss, const char *name, enum snap_kind kind, uint64_t txid,
			 struct status_snapshot *out, char *err, size_t err_len)
{
	if (!snapshot_name_valid(name)) {
		snprintf(err, err_len, "'%s' is not a snapshot name: use 1-64 of [A-Za-z0-9._-], not "
			 "starting with '.'", name);
		errno = EINVAL;
		return -1;
	}
	if (find(ss, name)) {
		snprintf(err, err_len, "volume %s already has a snapshot named %s", ss->volume, name);
		errno = EEXIST;
		return -1;
	}
	if (ss->n == SNAP_MAX) {
		snprintf(err, err_len, "volume %s has %d snapshots, the most frep keeps: delete one first",
			 ss->volume, SNAP_MAX);
		errno = EMFILE;
		return -1;
	}
	if (!ss->size && !(ss->size = volume_size_of(ss->voldir))) {
		snprintf(err, err_len, "volume %s has no extents yet", ss->volume);
		errno = ENOENT;
		return -1;
	}
	struct snap *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, err_len, "out of memory");
		errno = ENOMEM;
		return -1;
	}
	s->overlay_fd = s->map_fd = -1;
	snprintf(s->name, sizeof(s->name), "%s", name);
	textf(s->dir, sizeof(s->dir), "%s/%s", ss->dir, name);
	s->kind = kind;
	s->txid = txid;
	s->created_ms = wall_ms();
	s->valid = true;
	errno = 0;
	/* Files, then their directory entries, then the metadata that makes it exist. */
	if (mkdir(s->dir, 0700) < 0 || open_files(ss, s, true, err, err_len) < 0 ||
	    fsync_parent_dir(s->dir) < 0 || (frep_crash_point("snapshot-create"), save_meta(ss, s) < 0)) {
		int e = errno ? errno : EIO;
		if (!err[0] || e == EEXIST)
			snprintf(err, err_len, "creating snapshot %s in %s: %s", name, ss->dir, strerror(e));
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", s->dir);
		snap_free(s);
		remove_dir(dir);
		errno = e;
		return -1;
	}
	ss->s[ss->n++] = s;
	if (out)
		describe(ss, s, out);
	log_info(ss->volume, "snapshot %s created at TXID %" PRIu64, name, txid);
	events_publish(EVENT_SNAPSHOT, ss->volume, 0, 0, "snapshot %s created at TXID %" PRIu64, name,
		       txid);
	return 0;
}

int snapset_create(struct snapset *ss, const char *name, enum snap_kind kind, uint64_t txid,
		   struct status_snapshot *out, char *err, size_t err_len)
{
	err[0] = '\0';
	pthread_mutex_lock(&ss->mu);
	int rc = create_locked(ss, name, kind, txid, out, err, err_len);
	pthread_mutex_unlock(&ss->mu);
	return rc;
}

int snapset_create_now(struct snapset *ss, const char *name, enum snap_kind kind,
		       struct status_snapshot *out, char *err, size_t err_len)
{
	err[0] = '\0';
	pthread_mutex_lock(&ss->mu);
	int rc;
	if (!ss->held) {
		errno = ENXIO;
		rc = -1;
	} else if (!ss->consistent) {
		snprintf(err, err_len, "volume %s is inconsistent (a copy or a resync runs); a snapshot "
			 "can only hold a consistent state: try again once it is INSYNC", ss->volume);
		errno = EAGAIN;
		rc = -1;
	} else {
		rc = create_locked(ss, name, kind, ss->applied, out, err, err_len);
	}
	pthread_mutex_unlock(&ss->mu);
	return rc;
}

int snapset_delete(struct snapset *ss, const char *name, char *err, size_t err_len)
{
	pthread_mutex_lock(&ss->mu);
	unsigned i;
	for (i = 0; i < ss->n && strcmp(ss->s[i]->name, name) != 0; i++)
		;
	if (i == ss->n) {
		pthread_mutex_unlock(&ss->mu);
		snprintf(err, err_len, "volume %s has no snapshot named %s", ss->volume, name);
		errno = ENOENT;
		return -1;
	}
	struct snap *s = ss->s[i];
	if (gone_hook)
		gone_hook(ss->volume, s->name, "the snapshot was deleted");
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", s->dir);
	uint64_t txid = s->txid;
	snap_free(s);
	memmove(&ss->s[i], &ss->s[i + 1], (ss->n - i - 1) * sizeof(ss->s[0]));
	ss->n--;
	int rc = remove_dir(dir);
	if (rc < 0)
		snprintf(err, err_len, "removing %s: %s", dir, strerror(errno));
	pthread_mutex_unlock(&ss->mu);
	log_info(ss->volume, "snapshot %s (TXID %" PRIu64 ") deleted", name, txid);
	events_publish(EVENT_SNAPSHOT, ss->volume, 0, 0, "snapshot %s deleted", name);
	return rc;
}

bool snapset_exists(struct snapset *ss, const char *name)
{
	pthread_mutex_lock(&ss->mu);
	bool found = find(ss, name) != NULL;
	pthread_mutex_unlock(&ss->mu);
	return found;
}

void snapset_invalidate_all(struct snapset *ss, const char *why, const char *except)
{
	pthread_mutex_lock(&ss->mu);
	for (unsigned i = 0; i < ss->n; i++)
		if (!except || strcmp(ss->s[i]->name, except) != 0)
			invalidate(ss, ss->s[i], why);
	pthread_mutex_unlock(&ss->mu);
}

int snapset_restore(struct snapset *ss, const char *name, const struct volume *base,
		    uint64_t *txid, int (*restored)(void *ctx, uint64_t off, uint64_t len),
		    void *ctx, char *err, size_t err_len)
{
	pthread_mutex_lock(&ss->mu);
	struct snap *s = find(ss, name);
	int rc = -1;
	if (!s || !s->valid) {
		snprintf(err, err_len, "volume %s has no valid snapshot named %s", ss->volume, name);
		errno = ENOENT;
		goto out;
	}
	/*
	 * Each saved chunk goes back into the base. Idempotent: a crash half-way
	 * leaves the snapshot whole (its chunks still in the overlay), and the
	 * next attempt writes the same bytes again.
	 */
	if (!ss->buf && !(ss->buf = malloc(COPY_BUF))) {
		snprintf(err, err_len, "restoring snapshot %s: out of memory", name);
		goto out;
	}
	uint64_t chunks = (ss->size + SNAP_CHUNK - 1) / SNAP_CHUNK;
	for (uint64_t c = 0; c < chunks; c++) {
		if (!bit(s->bits, c))
			continue;
		uint64_t off = c * SNAP_CHUNK;
		uint64_t len = ss->size - off < SNAP_CHUNK ? ss->size - off : SNAP_CHUNK;
		if (pread(s->overlay_fd, ss->buf, len, (off_t)off) != (ssize_t)len ||
		    volume_pwrite(base, ss->buf, len, off) < 0 || (restored && restored(ctx, off, len) < 0)) {
			snprintf(err, err_len, "restoring snapshot %s at offset %" PRIu64 ": %s", name, off,
				 strerror(errno));
			goto out;
		}
	}
	if (volume_sync(base) < 0) {
		snprintf(err, err_len, "restoring snapshot %s: fdatasync: %s", name, strerror(errno));
		goto out;
	}
	*txid = s->txid;
	rc = 0;
out:
	pthread_mutex_unlock(&ss->mu);
	return rc;
}

bool snapset_find_kind(struct snapset *ss, enum snap_kind kind, char *name, size_t len)
{
	pthread_mutex_lock(&ss->mu);
	bool found = false;
	for (unsigned i = 0; i < ss->n && !found; i++)
		if (ss->s[i]->kind == kind) {
			snprintf(name, len, "%s", ss->s[i]->name);
			found = true;
		}
	pthread_mutex_unlock(&ss->mu);
	return found;
}

int snapset_list(struct snapset *ss, struct status_snapshot **out, size_t *n)
{
	pthread_mutex_lock(&ss->mu);
	*n = ss->n;
	*out = calloc(ss->n ? ss->n : 1, sizeof(**out));
	if (*out)
		for (unsigned i = 0; i < ss->n; i++)
			describe(ss, ss->s[i], &(*out)[i]);
	pthread_mutex_unlock(&ss->mu);
	return *out ? 0 : -1;
}

void snapset_status(struct snapset *ss, struct status_mirror *m)
{
	pthread_mutex_lock(&ss->mu);
	m->snapshots = ss->n;
	m->snapshot_bytes = 0;
	m->snapshots_invalid = 0;
	for (unsigned i = 0; i < ss->n; i++) {
		m->snapshot_bytes += used_bytes(ss->s[i]);
		m->snapshots_invalid += !ss->s[i]->valid;
	}
	pthread_mutex_unlock(&ss->mu);
}

bool snapset_reclaim(struct snapset *ss, const char *why)
{
	pthread_mutex_lock(&ss->mu);
	struct snap *s = oldest_valid(ss);
	if (s)
		invalidate(ss, s, why);
	pthread_mutex_unlock(&ss->mu);
	return s != NULL;
}

/* --- readers -------------------------------------------------------------------------- */

struct snap_reader {
	char name[SNAP_NAME_MAX + 1];
	char lock_path[PATH_MAX];
	struct volume base;
	int overlay_fd;
	uint64_t txid, size;
	const uint8_t *map; /* the map file, mapped shared: header, then bits */
	size_t map_len;
};

struct snap_reader *snap_reader_open(const char *voldir, const char *name, char *err,
				     size_t err_len)
{
	char **paths = NULL, path[PATH_MAX];
	unsigned n = 0;
	struct meta md;
	uint64_t valid = 0;
	struct snap_reader *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	r->overlay_fd = -1;
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->lock_path, sizeof(r->lock_path), "%s/snapshots/.rangelock", voldir);
	snprintf(path, sizeof(path), "%s/snapshots/%s/meta", voldir, name);
	if (!snapshot_name_valid(name) || meta_load(path, &md) < 0 ||
	    meta_get_u64(&md, "txid", &r->txid) < 0) {
		snprintf(err, err_len, "no snapshot %s in %s (%s)", name, voldir,
			 snapshot_name_valid(name) ? strerror(errno) : "invalid name");
		free(r);
		return NULL;
	}
	if (meta_get_u64(&md, "valid", &valid) < 0 || valid != 1) {
		snprintf(err, err_len, "snapshot %s was invalidated: %s", name,
			 meta_get(&md, "reason") ? meta_get(&md, "reason") : "");
		free(r);
		return NULL;
	}
	int rc = volume_files(voldir, &paths, &n, err, err_len);
	if (rc == 0)
		rc = volume_open_readonly(&r->base, name, paths, n, err, err_len);
	free_paths(paths, n);
	if (rc < 0) {
		free(r);
		return NULL;
	}
	r->size = r->base.size;
	snprintf(path, sizeof(path), "%s/snapshots/%s/overlay", voldir, name);
	if ((r->overlay_fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/snapshots/%s/map", voldir, name);
	int map_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (map_fd < 0)
		goto fail;
	r->map_len = MAP_HEADER + bits_bytes(r->size);
	void *m = mmap(NULL, r->map_len, PROT_READ, MAP_SHARED, map_fd, 0);
	close(map_fd);
	if (m == MAP_FAILED)
		goto fail;
	r->map = m;
	const struct map_header *h = (const void *)r->map;
	if (memcmp(h->magic, map_magic, sizeof(h->magic)) != 0 || h->size != r->size ||
	    h->txid != r->txid) {
		snprintf(err, err_len, "%s: not the map of this snapshot", path);
		snap_reader_close(r);
		return NULL;
	}
	return r;
fail:
	snprintf(err, err_len, "%s: %s", path, strerror(errno));
	snap_reader_close(r);
	return NULL;
}

uint64_t snap_reader_size(const struct snap_reader *r)
{
	return r->size;
}

uint64_t snap_reader_txid(const struct snap_reader *r)
{
	return r->txid;
}

static bool reader_valid(const struct snap_reader *r)
{
	return __atomic_load_n(&((const struct map_header *)r->map)->valid, __ATOMIC_ACQUIRE) == 1;
}

static bool reader_saved(const struct snap_reader *r, uint64_t c)
{
	return bit(r->map + MAP_HEADER, c);
}

/* The end of the run of chunks from off that read from the same place, capped at end. */
static uint64_t run_end(const struct snap_reader *r, uint64_t off, uint64_t end, bool *saved)
{
	uint64_t c = off / SNAP_CHUNK;
	*saved = reader_saved(r, c);
	uint64_t e = (c + 1) * SNAP_CHUNK;
	while (e < end && reader_saved(r, e / SNAP_CHUNK) == *saved)
		e += SNAP_CHUNK;
	return e < end ? e : end;
}

int snap_reader_pread(struct snap_reader *r, void *buf, uint64_t len, uint64_t off)
{
	if (off > r->size || len > r->size - off) {
		errno = EINVAL;
		return -1;
	}
	/* One open file description per call: OFD locks of one description would merge. */
	int lock_fd = open(r->lock_path, O_RDONLY | O_CLOEXEC);
	if (lock_fd < 0)
		return -1;
	int rc = -1;
	if (len && range_lock(lock_fd, F_RDLCK, off, len) < 0)
		goto out;
	if (!reader_valid(r)) {
		errno = EIO;
		goto out;
	}
	uint64_t end = off + len, pos = off;
	while (pos < end) {
		bool saved;
		uint64_t e = run_end(r, pos, end, &saved);
		uint8_t *p = (uint8_t *)buf + (pos - off);
		if (saved) {
			ssize_t got = pread(r->overlay_fd, p, e - pos, (off_t)pos);
			if (got < 0)
				goto out;
			if ((uint64_t)got < e - pos) /* past the overlay's end: never written */
				memset(p + got, 0, (size_t)(e - pos - (uint64_t)got));
		} else if (volume_pread(&r->base, p, e - pos, pos) < 0) {
			goto out;
		}
		pos = e;
	}
	rc = 0;
out:;
	int e = errno;
	close(lock_fd); /* releases the lock */
	errno = e;
	return rc;
}

/* The first data at or after off in the overlay: 1 with [*d, *de), 0 if none, -1. */
static int overlay_next_data(const struct snap_reader *r, uint64_t off, uint64_t *d, uint64_t *de)
{
	off_t x = lseek(r->overlay_fd, (off_t)off, SEEK_DATA);
	if (x < 0)
		return errno == ENXIO ? 0 : -1;
	off_t h = lseek(r->overlay_fd, x, SEEK_HOLE);
	if (h < 0)
		return -1;
	*d = (uint64_t)x;
	*de = (uint64_t)h;
	return 1;
}

int snap_reader_extents(struct snap_reader *r, uint64_t off, uint64_t len,
			int (*add)(void *ctx, uint64_t off, uint64_t len, bool hole), void *ctx)
{
	if (off > r->size || len > r->size - off) {
		errno = EINVAL;
		return -1;
	}
	uint64_t end = off + len, pos = off;
	while (pos < end) {
		bool saved;
		uint64_t e = run_end(r, pos, end, &saved);
		while (pos < e) {
			uint64_t d, de;
			int found = saved ? overlay_next_data(r, pos, &d, &de) :
					    volume_next_data(&r->base, pos, &d, &de);
			if (found < 0)
				return -1;
			if (!found || d >= e) {
				if (add(ctx, pos, e - pos, true) < 0)
					return -1;
				pos = e;
				break;
			}
			if (d > pos && add(ctx, pos, d - pos, true) < 0)
				return -1;
			if (de > e)
				de = e;
			if (add(ctx, d, de - d, false) < 0)
				return -1;
			pos = de;
		}
	}
	return 0;
}

void snap_reader_close(struct snap_reader *r)
{
	if (!r)
		return;
	if (r->map)
		munmap((void *)r->map, r->map_len);
	if (r->overlay_fd >= 0)
		close(r->overlay_fd);
	volume_close(&r->base);
	free(r);
}
