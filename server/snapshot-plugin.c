/*
 * A mirror snapshot as an nbdkit plugin: serves VOLUME@SNAPSHOT read-only.
 *
 * frep-server's export manager (server/export.c) spawns
 *   nbdkit -f -r --exit-with-parent ... frep-snapshot-plugin.so \
 *          voldir=DATA_DIR/VOLUME snapshot=NAME readyfd=3
 * Reads go through the snapshot's reader (server/snapshot.h): the base where
 * the snapshot has not saved a chunk, its overlay where it has, under a
 * shared range lock so a chunk is never seen half-way. The lifecycle:
 *   .get_ready   opens the reader, so nbdkit listens only on a snapshot that
 *                exists and is valid (else it exits with the reason on stderr);
 *   .after_fork  nbdkit listens: quit signals will cut the clients
 *                (plugin-quit.h), and "ready" goes down readyfd;
 *   .cleanup     closes the reader.
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin-quit.h"
#include "snapshot.h"
#include "util.h"

/* snap_reader_pread is safe from several threads at once. */
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* Written by the configuration callbacks and .get_ready, before any connection; read after. */
static struct {
	char *voldir, *snapshot;
	int ready_fd;
	char export_name[2 * SNAP_NAME_MAX + 2]; /* VOLUME@SNAPSHOT */
	struct snap_reader *r;
} sp = { .ready_fd = -1 };

static void sp_load(void)
{
	plugin_guard_exit();
}

static void sp_unload(void)
{
	free(sp.voldir);
	free(sp.snapshot);
}

static int sp_config(const char *key, const char *value)
{
	char **slot = NULL;
	if (strcmp(key, "voldir") == 0)
		slot = &sp.voldir;
	else if (strcmp(key, "snapshot") == 0)
		slot = &sp.snapshot;
	else if (strcmp(key, "readyfd") == 0)
		return nbdkit_parse_int("readyfd", value, &sp.ready_fd);
	if (!slot) {
		nbdkit_error("unknown parameter '%s' (voldir, snapshot, readyfd)", key);
		return -1;
	}
	free(*slot);
	return (*slot = strdup(value)) ? 0 : -1;
}

static int sp_config_complete(void)
{
	if (!sp.voldir || !sp.snapshot) {
		nbdkit_error("voldir=DATA_DIR/VOLUME and snapshot=NAME are required: this plugin is "
			     "started by frep-server (frepctl export), not by hand");
		return -1;
	}
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", sp.voldir);
	const char *volume = basename(dir);
	if (!volume_name_valid(volume) || !snapshot_name_valid(sp.snapshot)) {
		nbdkit_error("voldir=%s snapshot=%s: not a volume directory and a snapshot name",
			     sp.voldir, sp.snapshot);
		return -1;
	}
	snprintf(sp.export_name, sizeof(sp.export_name), "%s@%s", volume, sp.snapshot);
	return 0;
}

#define sp_config_help \
	"voldir=DATA_DIR/VOLUME snapshot=NAME [readyfd=N]: started by frep-server (frepctl export)."

static int sp_get_ready(void)
{
	char err[512];
	if (!(sp.r = snap_reader_open(sp.voldir, sp.snapshot, err, sizeof(err)))) {
		nbdkit_error("%s: %s", sp.export_name, err);
		return -1;
	}
	return 0;
}

/* Nothing to do but cut the clients (plugin-quit.c does): reads need no stopping. */
static void on_quit(int sig, bool first)
{
}

static int sp_after_fork(void)
{
	char err[256];
	plugin_note_listeners(NULL);
	if (plugin_quit_start(on_quit, err, sizeof(err)) < 0) {
		nbdkit_error("%s", err);
		return -1;
	}
	/* nbdkit listens already and accepts next: frep-server may answer the export command. */
	if (sp.ready_fd >= 0) {
		static const char ready[] = "ready\n";
		if (write(sp.ready_fd, ready, sizeof(ready) - 1) < 0)
			nbdkit_debug("readyfd: %m");
		close(sp.ready_fd);
		sp.ready_fd = -1;
	}
	return 0;
}

static void sp_cleanup(void)
{
	plugin_quit_end();
	if (sp.r)
		snap_reader_close(sp.r);
	sp.r = NULL;
	plugin_cleanup_done();
}

static int sp_list_exports(int readonly, int is_tls, struct nbdkit_exports *exports)
{
	return nbdkit_add_export(exports, sp.export_name, NULL);
}

/* The default export "" is the snapshot, as for a client that names it. */
static const char *sp_default_export(int readonly, int is_tls)
{
	return sp.export_name;
}

static void *sp_open(int readonly)
{
	const char *name = nbdkit_export_name();
	if (!name || strcmp(name, sp.export_name) != 0) {
		nbdkit_error("unknown export '%s': this server exports '%s'", name ? name : "",
			     sp.export_name);
		return NULL;
	}
	return NBDKIT_HANDLE_NOT_NEEDED;
}

static int64_t sp_get_size(void *h)
{
	return (int64_t)snap_reader_size(sp.r);
}

/* A snapshot never changes: nbdkit runs with -r, and says so even without it. */
static int sp_can_write(void *h) { return 0; }
static int sp_can_extents(void *h) { return 1; }

/* Read-only: every connection sees the same bytes. */
static int sp_can_multi_conn(void *h) { return 1; }

static int sp_pread(void *h, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	if (snap_reader_pread(sp.r, buf, count, offset) < 0) {
		int e = errno;
		/* Invalidated while exported: the export ends soon (the gone hook); say why meanwhile. */
		if (e == EIO)
			nbdkit_error("%s: read at %" PRIu64 ": the snapshot has been invalidated",
				     sp.export_name, offset);
		nbdkit_set_error(e);
		return -1;
	}
	return 0;
}

struct extents_ctx {
	struct nbdkit_extents *e;
	bool one; /* NBDKIT_FLAG_REQ_ONE: the first run is enough */
	bool done;
};

static int add_extent(void *arg, uint64_t off, uint64_t len, bool hole)
{
	struct extents_ctx *x = arg;
	if (x->done)
		return 0;
	if (nbdkit_add_extent(x->e, off, len, hole ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO : 0) < 0)
		return -1;
	x->done = x->one;
	return 0;
}

/* base:allocation from the snapshot's own view, so nbdcopy and nbdinfo --map skip its holes. */
static int sp_extents(void *h, uint32_t count, uint64_t offset, uint32_t flags,
		      struct nbdkit_extents *extents)
{
	struct extents_ctx x = { .e = extents, .one = flags & NBDKIT_FLAG_REQ_ONE };
	if (snap_reader_extents(sp.r, offset, count, add_extent, &x) < 0) {
		nbdkit_set_error(errno ? errno : EIO);
		return -1;
	}
	return 0;
}

static struct nbdkit_plugin plugin = {
	.name = "frep-snapshot",
	.longname = "frep mirror snapshot",
	.version = FREP_VERSION,
	.description = "Serves a snapshot of a frep mirror volume, read-only.",
	.load = sp_load,
	.unload = sp_unload,
	.config = sp_config,
	.config_complete = sp_config_complete,
	.config_help = sp_config_help,
	.get_ready = sp_get_ready,
	.after_fork = sp_after_fork,
	.cleanup = sp_cleanup,
	.list_exports = sp_list_exports,
	.default_export = sp_default_export,
	.open = sp_open,
	.get_size = sp_get_size,
	.can_write = sp_can_write,
	.can_extents = sp_can_extents,
	.can_multi_conn = sp_can_multi_conn,
	.pread = sp_pread,
	.extents = sp_extents,
};

NBDKIT_REGISTER_PLUGIN(plugin)
