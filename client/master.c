/* The master volume at runtime: extents, mirror buffer, transaction path, replication bookkeeping. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "adopt.h"
#include "log.h"
#include "master.h"
#include "verify.h"
#include "meta.h"
#include "bitmap.h"
#include "crashpoint.h"
#include "util.h"

enum {
	JOURNAL_MIN_SIZE = 1 << 20,
	JOURNAL_DEFAULT_FLOOR = 100 << 20, /* the model: max(100 MiB, 10% of the volume) */
	NBD_MAX_PAYLOAD = 32 << 20,	   /* what NBD clients expect at most */
};

static uint64_t default_journal_size(uint64_t volume_size)
{
	uint64_t tenth = volume_size / 10;
	return tenth > JOURNAL_DEFAULT_FLOOR ? tenth : JOURNAL_DEFAULT_FLOOR;
}

/* Forgets commit times the mirror acknowledged. Under lock. */
static void drop_acked_commit_times_locked(struct master *m)
{
	while (m->commit_times_n &&
	       m->commit_times[m->commit_times_first].txid <= m->acked_txid) {
		m->commit_times_first = (m->commit_times_first + 1) % COMMIT_TIMES;
		m->commit_times_n--;
	}
}

/* A group commit made every TXID up to `to` durable now. Under lock. */
static void note_commit_time_locked(struct master *m, uint64_t to)
{
	drop_acked_commit_times_locked(m);
	if (m->commit_times_n == COMMIT_TIMES) {
		unsigned last = (m->commit_times_first + COMMIT_TIMES - 1) % COMMIT_TIMES;
		m->commit_times[last].txid = to; /* keeps its older time: see COMMIT_TIMES */
		return;
	}
	unsigned i = (m->commit_times_first + m->commit_times_n++) % COMMIT_TIMES;
	m->commit_times[i].txid = to;
	m->commit_times[i].unix_ms = wall_ms();
}

double master_lag_seconds_locked(struct master *m)
{
	drop_acked_commit_times_locked(m);
	if (m->acked_txid >= m->committed_txid || !m->commit_times_n)
		return 0;
	int64_t age = wall_ms() - m->commit_times[m->commit_times_first].unix_ms;
	return age > 0 ? (double)age / 1000 : 0;
}

/* Loads or creates the metadata beside the journal and bumps the generation. */
/* The fencing a FENCED error recorded (master_fence), if any. */
static void load_fenced(struct master *m, const struct meta *md)
{
	uint64_t v;
	if (meta_get_u64(md, "fenced_epoch", &m->fenced.epoch) < 0)
		return;
	m->fenced.set = true;
	m->fenced.txid = meta_get_u64(md, "fenced_txid", &v) == 0 ? v : 0;
	m->fenced.unix_ms = meta_get_u64(md, "fenced_ms", &v) == 0 ? (int64_t)v : 0;
	m->fenced.since_unix_ms = meta_get_u64(md, "fenced_since_ms", &v) == 0 ? (int64_t)v : 0;
	snprintf(m->fenced.message, sizeof(m->fenced.message), "%s",
		 meta_get(md, "fenced_message") ? meta_get(md, "fenced_message") : "");
}

/*
 * Loads or creates the metadata beside the journal and bumps the generation.
 * adopt (--adopt) gives a new journal the promoted copy's UUID and epochs;
 * *adopted says it did.
 */
static int master_load_meta(struct master *m, bool journal_empty, const struct adopt_info *adopt,
			    bool *adopted, char *err, size_t err_len)
{
	struct meta md;
	char hex[2 * FREP_UUID_SIZE + 1];
	uint64_t gen = 0;

	epoch_init(&m->epochs);
	if (meta_load(m->meta_path, &md) == 0) {
		const char *name = meta_get(&md, "volume");
		const char *uuid = meta_get(&md, "uuid");
		if (!name || !uuid || hex_decode(uuid, m->uuid, FREP_UUID_SIZE) < 0 ||
		    meta_get_u64(&md, "generation", &gen) < 0) {
			snprintf(err, err_len, "%s: metadata incomplete; restore it or remove the journal and its .meta to start over",
				 m->meta_path);
			return -1;
		}
		if (strcmp(name, m->name) != 0) {
			snprintf(err, err_len, "journal %s belongs to volume %s, not %s", m->journal_path,
				 name, m->name);
			return -1;
		}
		if (epoch_load(&m->epochs, &md) < 0) {
			snprintf(err, err_len, "%s: epoch_history is malformed", m->meta_path);
			return -1;
		}
		if (adopt && (memcmp(adopt->uuid, m->uuid, FREP_UUID_SIZE) != 0 ||
			      m->epochs.epoch < adopt->epochs.epoch)) {
			snprintf(err, err_len, "--journal %s holds another history of volume %s (%s) than "
				 "the promoted copy --adopt gives (epoch %" PRIu64 "): give a new --journal "
				 "path for the adopted copy", m->journal_path, m->name,
				 memcmp(adopt->uuid, m->uuid, FREP_UUID_SIZE) ? "another volume UUID" :
				 "an earlier epoch", adopt->epochs.epoch);
			return -1;
		}
		load_fenced(m, &md);
		uint64_t fb = 0;
		m->failback = meta_get_u64(&md, "failback", &fb) == 0 && fb == 1 &&
			      meta_get_u64(&md, "since_txid", &m->since_txid) == 0;
		if (meta_get_u64(&md, "demoted", &gen) == 0 && gen == 1) {
			snprintf(err, err_len, "journal %s was demoted (frepctl demote): its copy of %s "
				 "belongs to this host's frep-server now. To serve it again, promote it "
				 "there (frepctl promote %s) and start frep-client with --adopt and a new "
				 "--journal", m->journal_path, m->name, m->name);
			return -1;
		}
		gen = 0;
		if (meta_get_u64(&md, "generation", &gen) < 0) {
			snprintf(err, err_len, "%s: metadata incomplete", m->meta_path);
			return -1;
		}
	} else if (errno == ENOENT && journal_empty) {
		/*
		 * First start, or a crash during it between creating the journal and
		 * saving the metadata: no record was ever committed, so a new UUID
		 * loses nothing. A journal with records is never trusted without it.
		 * An adopted copy keeps its volume's UUID and history instead.
		 */
		meta_init(&md);
		if (adopt) {
			memcpy(m->uuid, adopt->uuid, FREP_UUID_SIZE);
			m->epochs = adopt->epochs;
		} else if (random_bytes(m->uuid, sizeof(m->uuid)) < 0) {
			snprintf(err, err_len, "getrandom: %s", strerror(errno));
			return -1;
		}
		meta_set(&md, "format", "frep-master-1");
		meta_set(&md, "volume", m->name);
		meta_set(&md, "uuid", hex_encode(m->uuid, sizeof(m->uuid), hex));
		if (epoch_save(&m->epochs, &md) < 0) {
			snprintf(err, err_len, "%s: epoch history too long", m->meta_path);
			return -1;
		}
		if (adopt) {
			meta_set_u64(&md, "failback", 1);
			meta_set_u64(&md, "since_txid", adopt->txid);
			/*
			 * Before the metadata: once it exists a restart takes the journal
			 * as adopted, and its TXIDs must go on after t, never from 1.
			 */
			if (journal_reset(m->j, adopt->txid) < 0) {
				snprintf(err, err_len, "starting journal %s at TXID %" PRIu64 ": %s",
					 m->journal_path, adopt->txid, strerror(errno));
				return -1;
			}
		}
		*adopted = adopt != NULL;
	} else {
		snprintf(err, err_len, "%s: %s; the journal cannot be trusted without it",
			 m->meta_path, errno == ENOENT ? "missing" : strerror(errno));
		return -1;
	}
	/* The operator's settings (admin API) outlive restarts. */
	uint64_t paused = 0, rate = 0;
	m->paused = meta_get_u64(&md, "paused", &paused) == 0 && paused;
	if (meta_get_u64(&md, "max_rate", &rate) == 0) {
		m->rate_set_by_operator = true;
		atomic_store(&m->max_rate, rate);
	}
	m->generation = gen + 1;
	meta_set_u64(&md, "generation", m->generation);
	if (meta_save(m->meta_path, &md) < 0) {
		snprintf(err, err_len, "saving %s: %s", m->meta_path, strerror(errno));
		return -1;
	}
	return 0;
}

/* A forced promotion restored these ranges from a snapshot: the old master may lack them. */
static int mark_adopted_dirty(void *ctx, uint64_t off, uint64_t len)
{
	struct master *m = ctx;
	bitmap_set_range(m->bm, off, len);
	if (m->since)
		bitmap_set_range(m->since, off, len);
	return 0;
}

/*
 * The .meta is read, changed and saved again by the session thread (a
 * fence, a fail-back done) and the admin thread (settings, a demote): one at
 * a time, or one would undo the other's keys (and they share PATH.meta.tmp).
 */
static pthread_mutex_t meta_mu = PTHREAD_MUTEX_INITIALIZER;

/* Sets every key of changes in the .meta, the rest kept. 0, or -1 with errno. */
static int meta_update(struct master *m, const struct meta *changes)
{
	struct meta md;
	pthread_mutex_lock(&meta_mu);
	int rc = meta_load(m->meta_path, &md);
	for (unsigned i = 0; rc == 0 && i < changes->n; i++)
		rc = meta_set(&md, changes->kv[i].key, changes->kv[i].val);
	if (rc == 0)
		rc = meta_save(m->meta_path, &md);
	pthread_mutex_unlock(&meta_mu);
	return rc;
}

int master_save_demoted(struct master *m, char *err, size_t err_len)
{
	struct meta ch;
	meta_init(&ch);
	meta_set_u64(&ch, "demoted", 1);
	meta_set_u64(&ch, "demoted_ms", (uint64_t)wall_ms());
	if (meta_update(m, &ch) == 0)
		return 0;
	snprintf(err, err_len, "saving %s: %s", m->meta_path, strerror(errno));
	return -1;
}

void master_fence(struct master *m, uint64_t epoch, uint64_t txid, int64_t unix_ms,
		  const char *message)
{
	struct meta ch;
	pthread_mutex_lock(&m->lock);
	bool first = !m->fenced.set || m->fenced.epoch != epoch;
	bool changed = first || m->fenced.txid != txid;
	m->fenced.set = true;
	m->fenced.epoch = epoch;
	m->fenced.txid = txid;
	m->fenced.unix_ms = unix_ms;
	if (first)
		m->fenced.since_unix_ms = wall_ms();
	snprintf(m->fenced.message, sizeof(m->fenced.message), "%s", message);
	int64_t since = m->fenced.since_unix_ms;
	pthread_mutex_unlock(&m->lock);
	if (!changed)
		return;
	/*
	 * Durable: a restart stays fenced though the mirror is out of reach. The
	 * mirror's message is kept for status as far as a value holds.
	 */
	char brief[META_VAL_MAX];
	snprintf(brief, sizeof(brief), "%.*s", META_VAL_MAX - 1, message);
	meta_init(&ch);
	meta_set_u64(&ch, "fenced_epoch", epoch);
	meta_set_u64(&ch, "fenced_txid", txid);
	meta_set_u64(&ch, "fenced_ms", (uint64_t)unix_ms);
	meta_set_u64(&ch, "fenced_since_ms", (uint64_t)since);
	meta_set(&ch, "fenced_message", brief);
	if (meta_update(m, &ch) < 0)
		log_error(m->name, "saving the fencing in %s: %s", m->meta_path, strerror(errno));
	if (!first)
		return;
	log_error(m->name, "fenced: epoch %" PRIu64 " began elsewhere after TXID %" PRIu64 "; %s; "
		  "local writes are %s", epoch, txid, message,
		  m->fenced_serve ? "still taken (--on-fenced=serve): a demote discards them" :
		  "refused from now on (EROFS): run frepctl demote to make this copy a mirror of "
		  "the new primary");
}

/* One line per committed transaction (--trace-tx), for tests and audits. */
static void trace_tx(struct master *m, const struct journal_rec *r)
{
	char line[160];
	int n = journal_rec_format(r, line, sizeof(line));
	if (write(m->trace_fd, line, (size_t)n) != n)
		log_warn(m->name, "--trace-tx: %s", strerror(errno));
}

/* Redo: re-applies every unfreed record, so the volume holds every committed write. */
/*
 * After redo of the intact records before a damaged committed one: the mirror
 * may hold that TXID and the ones after it, which are lost here. The whole
 * volume is marked dirty (durably, before a record is dropped, as in a crack),
 * the journal restarts above every TXID that may have left the host, and the
 * session starts in ERROR (CHECKSUM) saying so. Local I/O goes on; the next
 * start of frep-client resyncs the whole volume. 0 or -1.
 */
static int master_salvage(struct master *m, const struct journal_damage *d, char *err,
			  size_t err_len)
{
	bitmap_set_all(m->bm);
	if (bitmap_sync(m->bm) < 0) {
		snprintf(err, err_len, "%s; and marking the volume dirty failed: %s", d->what,
			 strerror(errno));
		return -1;
	}
	/*
	 * One TXID above the floor is skipped: a mirror consistent at the floor
	 * itself would otherwise find every later TXID here (READY row 3) and
	 * skip the resync, though it may hold the damaged write and this volume
	 * not. This way the first TXID held is floor + 2: row 4, a resync.
	 */
	uint64_t last = d->floor + 1;
	if (journal_reset(m->j, last) < 0) {
		snprintf(err, err_len, "%s; and restarting the journal after TXID %" PRIu64 " failed: %s",
			 d->what, last, strerror(errno));
		return -1;
	}
	m->written_txid = m->committed_txid = m->applied_txid = last;
	m->acked_txid = m->synced_txid = last;
	snprintf(m->journal_damage, sizeof(m->journal_damage),
		 "CHECKSUM: %s. The write of TXID %" PRIu64 " and any after it up to TXID %" PRIu64
		 " may be missing from the master volume and differ on the mirror; the volume is "
		 "served as it is, new writes get TXIDs from %" PRIu64 ", and every region is marked "
		 "dirty. To recover, restart frep-client: it resyncs the whole volume to the mirror",
		 d->what, d->txid, d->floor, last + 1);
	log_error(m->name, "%s", m->journal_damage);
	return 0;
}

static int master_redo(struct master *m, char *err, size_t err_len)
{
	uint64_t first = journal_first_txid(m->j), last = journal_last_txid(m->j);
	void *buf = NULL;
	int rc = -1;

	if (first > last)
		return 0;
	if (!(buf = malloc(m->max_payload))) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	for (uint64_t t = first; t <= last; t++) {
		struct journal_rec r;
		if (journal_read(m->j, t, &r, buf, m->max_payload) < 0) {
			snprintf(err, err_len, "redo: reading TXID %" PRIu64 ": %s", t,
				 strerror(errno));
			goto out;
		}
		int io;
		if (r.op == JOP_WRITE)
			io = volume_pwrite(&m->vol, buf, r.length, r.offset);
		else if (r.op == JOP_TRIM)
			io = volume_punch(&m->vol, r.offset, r.length);
		else
			io = volume_zero(&m->vol, r.offset, r.length);
		if (io < 0) {
			snprintf(err, err_len, "redo: applying TXID %" PRIu64 ": %s", t,
				 strerror(errno));
			goto out;
		}
		/*
		 * A crash between fdatasync and the trace line leaves a committed TXID
		 * untraced; trace every held record again (duplicates are identical).
		 */
		if (m->trace_fd >= 0)
			trace_tx(m, &r);
	}
	if (volume_sync(&m->vol) < 0) {
		snprintf(err, err_len, "redo: fdatasync: %s", strerror(errno));
		goto out;
	}
	log_info(m->name, "redo: re-applied TXIDs %" PRIu64 "..%" PRIu64 " from the mirror buffer",
		 first, last);
	rc = 0;
out:
	free(buf);
	return rc;
}

int master_open(struct master *m, const struct master_options *o, char *err, size_t err_len,
		int *exit_code)
{
	char path[4096];
	char a[16], b[16];

	memset(m, 0, sizeof(*m));
	m->lock_fd = m->notify_fd = m->trace_fd = -1;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	pthread_cond_init(&m->commit_cond, NULL);
	pthread_cond_init(&m->apply_cond, NULL);
	*exit_code = 1;

	m->name = strdup(o->name);
	m->journal_path = strdup(o->journal_path);
	snprintf(path, sizeof(path), "%s.meta", o->journal_path);
	m->meta_path = strdup(path);
	m->slots = calloc(MASTER_INFLIGHT, sizeof(*m->slots));
	m->cache.buf = malloc(SEND_CACHE_BYTES);
	if (!m->name || !m->journal_path || !m->meta_path || !m->slots || !m->cache.buf) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}

	snprintf(path, sizeof(path), "%s.lock", o->journal_path);
	m->lock_fd = o->lock_fd >= 0 ? o->lock_fd : lock_file(path);
	if (m->lock_fd < 0) {
		*exit_code = 2;
		snprintf(err, err_len, "--journal %s is in use by another frep-client (%s: %s)",
			 o->journal_path, path, strerror(errno));
		return -1;
	}
	if (volume_open(&m->vol, o->name, o->paths, o->n_paths, err, err_len) < 0) {
		*exit_code = 2;
		return -1;
	}

	uint64_t def = default_journal_size(m->vol.size);
	uint64_t size = o->journal_size ? o->journal_size : def;
	if (size < JOURNAL_MIN_SIZE) {
		*exit_code = 2;
		snprintf(err, err_len, "--journal-size %s is below the 1M minimum",
			 format_size(size, a, sizeof(a)));
		return -1;
	}
	if (o->journal_size && o->journal_size < def)
		log_warn(o->name, "--journal-size %s is below the default %s (max of 100M and 10%% of the volume): a burst of writes may fill it",
			 format_size(size, a, sizeof(a)), format_size(def, b, sizeof(b)));

	/*
	 * A damaged committed record (DUR-12) does not stop the master's volume:
	 * the intact records before it are redone, and master_salvage drops the rest.
	 */
	struct journal_damage damage;
	m->j = journal_open_salvage(o->journal_path, size, o->name, &damage, err, err_len);
	if (!m->j)
		return -1;
	atomic_store(&m->max_rate, o->max_rate);
	struct adopt_info adopt;
	bool adopted = false;
	if (o->adopt && adopt_load(o->adopt, &adopt, err, err_len) < 0)
		return -1;
	if (master_load_meta(m, journal_last_txid(m->j) == 0, o->adopt ? &adopt : NULL, &adopted,
			     err, err_len) < 0)
		return -1;
	if (adopted) {
		/* The new primary goes on from the promotion's TXID: both copies hold 1..t. */
		log_info(o->name, "adopted the promoted copy %s: epoch %" PRIu64 ", TXIDs go on after %"
			 PRIu64, o->adopt, m->epochs.epoch, adopt.txid);
	}
	m->fenced_serve = o->fenced_serve;
	if (m->fenced.set)
		log_error(o->name, "fenced since %s: %s; local writes are %s", "an earlier run",
			  m->fenced.message, m->fenced_serve ? "still taken (--on-fenced=serve), and "
			  "a demote discards them" : "refused (EROFS): run frepctl demote");
	if (m->rate_set_by_operator && atomic_load(&m->max_rate) != o->max_rate)
		log_info(o->name, "copy rate %s/s set by the operator (frepctl set-rate) overrides "
			 "--max-rate", m->max_rate ? format_size(m->max_rate, a, sizeof(a)) : "unlimited");
	if (m->paused)
		log_info(o->name, "paused by the operator: sequencing stays paused until `frepctl "
			 "resume %s`", o->name);

	uint64_t max = journal_capacity(m->j) / 8;
	if (max > NBD_MAX_PAYLOAD)
		max = NBD_MAX_PAYLOAD;
	if (max > journal_max_record_data(m->j))
		max = journal_max_record_data(m->j);
	m->max_payload = (uint32_t)(max & ~(uint64_t)4095);

	m->written_txid = m->committed_txid = m->applied_txid = journal_last_txid(m->j);
	/* Unfreed records are not known to be on the mirror. */
	m->acked_txid = journal_first_txid(m->j) - 1;
	m->state_since_unix_ms = wall_ms();
	/* Their commit times died with the last run: at least as old as this start. */
	if (m->committed_txid > m->acked_txid) {
		m->commit_times[0].txid = m->committed_txid;
		m->commit_times[0].unix_ms = m->state_since_unix_ms;
		m->commit_times_n = 1;
	}
	if (o->trace_path) {
		m->trace_fd = open(o->trace_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (m->trace_fd < 0) {
			*exit_code = 2;
			snprintf(err, err_len, "--trace-tx %s: %s", o->trace_path, strerror(errno));
			return -1;
		}
	}
	if (master_redo(m, err, err_len) < 0)
		return -1;

	snprintf(path, sizeof(path), "%s.bitmap", o->journal_path);
	bool had_bitmap = access(path, F_OK) == 0;
	m->bm = bitmap_open(path, m->vol.size, BITMAP_DEFAULT_REGION, o->name, err, err_len);
	if (!m->bm)
		return -1;
	if (damage.txid && master_salvage(m, &damage, err, err_len) < 0)
		return -1;
	if (adopted) {
		m->failback = true;
		m->since_txid = adopt.txid;
	}
	if (m->failback) {
		snprintf(path, sizeof(path), "%s.since", o->journal_path);
		m->since = bitmap_open(path, m->vol.size, BITMAP_DEFAULT_REGION, o->name, err, err_len);
		if (!m->since)
			return -1;
	}
	if (adopted && adopt_dirty_ranges(o->adopt, mark_adopted_dirty, m, err, err_len) < 0)
		return -1;
	if (adopted && m->since && bitmap_sync(m->since) < 0) {
		snprintf(err, err_len, "%s.since: %s", o->journal_path, strerror(errno));
		return -1;
	}
	if (adopted && bitmap_sync(m->bm) < 0) {
		snprintf(err, err_len, "dirty bitmap %s: %s", path, strerror(errno));
		return -1;
	}
	if (!had_bitmap && !adopted && journal_last_txid(m->j) > 0) {
		/* A clear bitmap would claim the mirror lacks nothing (CRK-1): assume it lacks all. */
		bitmap_set_all(m->bm);
		if (bitmap_sync(m->bm) < 0) {
			snprintf(err, err_len, "dirty bitmap %s: %s", path, strerror(errno));
			return -1;
		}
		log_warn(o->name, "dirty bitmap %s was missing beside a used journal: every region "
			 "is marked dirty, so the next resync copies the whole volume", path);
	}
	m->on_full = o->on_full;
	m->sync_mode = o->sync_mode;
	m->sync_fail = o->sync_fail;
	m->degrade_after_ms = (uint64_t)o->degrade_after_s * 1000;
	m->state = MS_NEW;
	m->unreachable_since_ms = now_ms();

	m->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->notify_fd < 0) {
		snprintf(err, err_len, "eventfd: %s", strerror(errno));
		return -1;
	}
	log_info(m->name, "master volume: %u extent(s), %s; mirror buffer %s (%s), generation %" PRIu64
		 ", TXIDs held %" PRIu64 "..%" PRIu64,
		 m->vol.n, format_size(m->vol.size, a, sizeof(a)), m->journal_path,
		 format_size(journal_capacity(m->j), b, sizeof(b)), m->generation,
		 journal_first_txid(m->j), journal_last_txid(m->j));
	*exit_code = 0;
	return 0;
}

void master_close(struct master *m)
{
	verify_free(m);
	if (m->j) {
		/* After a failed write the chain has a hole: never mark it committed. */
		if (!m->journal_failed)
			journal_sync(m->j);
		journal_close(m->j);
	}
	if (m->vol.ext) {
		volume_sync(&m->vol);
		volume_close(&m->vol);
	}
	if (m->lock_fd >= 0)
		close(m->lock_fd);
	if (m->notify_fd >= 0)
		close(m->notify_fd);
	if (m->trace_fd >= 0)
		close(m->trace_fd);
	if (m->bm)
		bitmap_close(m->bm);
	bitmap_close(m->since); /* NULL is a no-op */
	free(m->name);
	free(m->journal_path);
	free(m->meta_path);
	free(m->slots);
	free(m->cache.buf);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	pthread_cond_destroy(&m->commit_cond);
	pthread_cond_destroy(&m->apply_cond);
	memset(m, 0, sizeof(*m));
	m->lock_fd = m->notify_fd = m->trace_fd = -1;
}

/*
 * Called with m->lock held. After degrade_after of the mirror being
 * unreachable, sync mode and the block policy are suspended until the next
 * INSYNC (the session clears m->degraded there).
 */
static bool degraded_locked(struct master *m)
{
	if (!m->degraded && !m->insync && m->unreachable_since_ms &&
	    now_ms() - m->unreachable_since_ms >= m->degrade_after_ms) {
		m->degraded = true;
		log_warn(m->name, "mirror unreachable for %" PRIu64 " s: %s", m->degrade_after_ms / 1000,
			 m->sync_mode && m->sync_fail ? "sync writes now fail with EIO" :
			 m->sync_mode ? "sync mode degraded to async until the next INSYNC" :
					"block policy degraded to crack until the next INSYNC");
	}
	return m->degraded;
}

static int master_crack_locked(struct master *m);
static int free_acked_locked(struct master *m);

/* The last TXID DUR-6 lets go of: acknowledged by the mirror and on the volume. */
static uint64_t freeable_txid(const struct master *m)
{
	return m->acked_txid < m->applied_txid ? m->acked_txid : m->applied_txid;
}

/*
 * The journal is full. First free what the mirror has acknowledged; only
 * when it has nothing more, crack (default), or under the block policy wait
 * up to a second for an acknowledgement (the caller retries; the degrade
 * deadline is re-checked each time). Called and returns with m->lock held.
 * 0 or an errno.
 */
static int wait_for_room(struct master *m, uint64_t txid)
{
	if (m->stopping)
		return ESHUTDOWN;
	if (freeable_txid(m) >= journal_first_txid(m->j) || m->freeing)
		return free_acked_locked(m) < 0 ? EIO : 0;
	if (m->on_full != ON_FULL_BLOCK || degraded_locked(m))
		return master_crack_locked(m) < 0 ? EIO : 0;
	/* Under sustained load this is every write: say it once per PROGRESS_MS. */
	m->full_waits++;
	uint64_t now = now_ms();
	if (now - m->full_warned_ms >= FULL_WARN_MS) {
		log_warn(m->name, "mirror buffer full at TXID %" PRIu64
			 ": writers wait for the mirror (--on-buffer-full=block; %" PRIu64 " wait(s) so far)",
			 txid, m->full_waits);
		m->full_warned_ms = now;
	}
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	pthread_cond_timedwait(&m->cond, &m->lock, &until);
	return 0;
}

/* Sync mode: waits until the mirror holds txid durably. Called with m->lock held. */
static int wait_for_mirror(struct master *m, uint64_t txid)
{
	while (m->synced_txid < txid) {
		if (m->stopping)
			return ESHUTDOWN;
		if (degraded_locked(m))
			return m->sync_fail ? EIO : 0;
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&m->cond, &m->lock, &until);
	}
	return 0;
}

static struct inflight *slot(struct master *m, uint64_t txid)
{
	return &m->slots[txid % MASTER_INFLIGHT];
}

void master_notify_session(struct master *m)
{
	uint64_t one = 1;
	ssize_t w = write(m->notify_fd, &one, sizeof(one));
	(void)w;
}

/* The journal cannot be trusted any more: every write in flight and to come fails. */
static void journal_failed_locked(struct master *m, int e, const char *what)
{
	if (!m->journal_failed) {
		m->journal_failed = e;
		log_error(m->name, "mirror buffer %s: %s: every write fails with EIO from now on; "
			  "restart frep-client once the disk is fixed (redo keeps every committed write)",
			  what, strerror(e));
	}
	pthread_cond_broadcast(&m->commit_cond);
	pthread_cond_broadcast(&m->apply_cond);
}

/* Waits for applied_txid to grow (or a crack to end). Called with m->lock held. */
static void wait_applied(struct master *m)
{
	m->apply_waiters++;
	pthread_cond_wait(&m->apply_cond, &m->lock);
	m->apply_waiters--;
}

/*
 * Records r in the send cache's table and takes room for its data (under
 * m->lock). Returns where to copy the data, or NULL when there is no room:
 * then the session reads the journal, and the writer never waits for it.
 */
static unsigned char *cache_reserve(struct master *m, const struct journal_rec *r)
{
	struct send_cache *c = &m->cache;
	struct inflight *e = slot(m, r->txid);
	uint64_t len = r->op == JOP_WRITE ? r->length : 0;
	uint64_t pos = c->head, off = pos % SEND_CACHE_BYTES;

	e->cache_start = c->head;
	if (len > SEND_CACHE_BYTES - off)
		pos += SEND_CACHE_BYTES - off; /* entries never wrap */
	if (pos + len - c->tail > SEND_CACHE_BYTES)
		return NULL;
	c->head = pos + len;
	e->cached = true;
	e->cache_pos = pos;
	return c->buf + pos % SEND_CACHE_BYTES;
}

bool master_cached_locked(struct master *m, uint64_t txid, struct journal_rec *r,
			  const void **data)
{
	const struct inflight *e = slot(m, txid);
	if (e->r.txid != txid || !e->cached || txid <= m->cache.released_txid)
		return false; /* never cached, or released and perhaps overwritten */
	*r = e->r;
	*data = r->op == JOP_WRITE ? m->cache.buf + e->cache_pos % SEND_CACHE_BYTES : NULL;
	return true;
}

void master_release_cached_locked(struct master *m, uint64_t upto)
{
	struct send_cache *c = &m->cache;
	uint64_t last = journal_last_txid(m->j), t = upto + 1, to;

	if (upto > c->released_txid)
		c->released_txid = upto;
	/*
	 * The new tail is where TXID upto + 1 started. If its entry was reused,
	 * the pipeline window says every TXID up to last - MASTER_INFLIGHT is
	 * applied (its copy is done): start from the oldest entry still held.
	 */
	if (t > last) {
		to = c->head;
	} else {
		if (last >= MASTER_INFLIGHT && t <= last - MASTER_INFLIGHT)
			t = last - MASTER_INFLIGHT + 1;
		to = slot(m, t)->cache_start;
	}
	if (to > c->tail)
		c->tail = to;
}

/*
 * Step 1, under m->lock: the next TXID and its ring space. Waits while the
 * pipeline window is full or a crack drains it; a full journal cracks or
 * blocks (wait_for_room). 0 or an errno.
 */
static bool overlap(const struct journal_rec *a, const struct journal_rec *b);

/* A write that verify's range lock holds off (see struct master). Called with m->lock held. */
static bool range_blocks(const struct master *m, const struct journal_rec *r, bool in_range)
{
	const struct journal_rec lk = { .offset = m->range_off, .length = m->range_len };
	return m->range_locked && !in_range && overlap(r, &lk);
}

static int reserve(struct master *m, struct journal_rec *r, struct journal_resv *v,
		   unsigned char **cache_dst, bool in_range)
{
	int e;

	for (;;) {
		if (m->journal_failed)
			return EIO;
		if (m->cracking || journal_last_txid(m->j) - m->applied_txid >= MASTER_INFLIGHT ||
		    range_blocks(m, r, in_range)) {
			wait_applied(m);
			continue;
		}
		r->txid = journal_last_txid(m->j) + 1;
		if (journal_reserve(m->j, r, v) == 0)
			break;
		if (errno != ENOSPC) {
			e = errno;
			log_error(m->name, "mirror buffer: reserving TXID %" PRIu64 ": %s", r->txid,
				  strerror(e));
			return e;
		}
		if ((e = wait_for_room(m, r->txid)) != 0)
			return e;
	}
	*slot(m, r->txid) = (struct inflight){ .r = *r };
	*cache_dst = cache_reserve(m, r);
	m->journal_appends++;
	return 0;
}

/* One line per committed transaction (--trace-tx), in TXID order. */
static void trace_committed(struct master *m, uint64_t from, uint64_t to)
{
	char buf[8192];
	size_t n = 0;
	for (uint64_t t = from; t <= to; t++) {
		n += (size_t)journal_rec_format(&slot(m, t)->r, buf + n, sizeof(buf) - n);
		if (sizeof(buf) - n < 160 || t == to) {
			if (write(m->trace_fd, buf, n) != (ssize_t)n)
				log_warn(m->name, "--trace-tx: %s", strerror(errno));
			n = 0;
		}
	}
}

/*
 * Step 2, under m->lock: records that txid is written (write_err 0) and waits
 * until it is durable. Group commit: whoever finds no fdatasync running
 * becomes the leader and, without the lock, fdatasyncs for every record
 * written so far (the contiguous prefix: an fdatasync covers a record only
 * if its write returned before the fdatasync started). The others wait for
 * it. 0 or an errno.
 */
static int commit(struct master *m, uint64_t txid, int write_err)
{
	if (write_err) {
		journal_failed_locked(m, write_err, "write");
		return EIO;
	}
	slot(m, txid)->written = true;
	uint64_t was = m->written_txid;
	while (m->written_txid < journal_last_txid(m->j) && slot(m, m->written_txid + 1)->written)
		m->written_txid++;
	/* Writers behind the prefix need a wake-up only when no group commit will give one. */
	if (m->written_txid != was && m->prefix_waiters && !m->syncing)
		pthread_cond_broadcast(&m->commit_cond);

	while (m->committed_txid < txid) {
		if (m->journal_failed)
			return EIO;
		if (m->syncing) {
			pthread_cond_wait(&m->commit_cond, &m->lock);
			continue;
		}
		if (m->written_txid < txid) {
			m->prefix_waiters++;
			pthread_cond_wait(&m->commit_cond, &m->lock);
			m->prefix_waiters--;
			continue;
		}
		uint64_t from = m->committed_txid + 1, to = m->written_txid;
		m->syncing = true;
		pthread_mutex_unlock(&m->lock);

		frep_crash_point("journal-append");
		int rc = journal_flush(m->j), e = errno;
		if (rc == 0) {
			frep_crash_point("journal-synced");
			if (m->trace_fd >= 0)
				trace_committed(m, from, to);
		}

		pthread_mutex_lock(&m->lock);
		m->syncing = false;
		m->journal_syncs++;
		if (rc < 0) {
			journal_failed_locked(m, e, "fdatasync");
			return EIO;
		}
		journal_mark_synced(m->j, to);
		m->committed_txid = to;
		note_commit_time_locked(m, to);
		pthread_cond_broadcast(&m->commit_cond);
		master_notify_session(m);
	}
	return 0;
}

int master_save_settings(struct master *m, bool paused, bool rate_set, uint64_t max_rate,
			 char *err, size_t err_len)
{
	struct meta ch;
	meta_init(&ch);
	meta_set_u64(&ch, "paused", paused);
	if (rate_set)
		meta_set_u64(&ch, "max_rate", max_rate);
	if (meta_update(m, &ch) == 0)
		return 0;
	snprintf(err, err_len, "saving %s: %s", m->meta_path, strerror(errno));
	return -1;
}

static bool overlap(const struct journal_rec *a, const struct journal_rec *b)
{
	return a->offset < b->offset + b->length && b->offset < a->offset + a->length;
}

/*
 * Step 3, under m->lock: waits until no transaction with a lower TXID that
 * overlaps r is still unapplied, so overlapping writes reach the volume in
 * TXID order (DUR-4). O(transactions in flight).
 */
static void wait_turn(struct master *m, const struct journal_rec *r)
{
	for (;;) {
		bool blocked = false;
		for (uint64_t t = m->applied_txid + 1; t < r->txid && !blocked; t++) {
			const struct inflight *in = slot(m, t);
			blocked = !in->applied && overlap(&in->r, r);
		}
		if (!blocked)
			return;
		wait_applied(m);
	}
}

/* Step 4, under m->lock: txid is on the volume (or given up); advances applied_txid. */
static void applied(struct master *m, uint64_t txid)
{
	slot(m, txid)->applied = true;
	while (m->applied_txid < journal_last_txid(m->j) && slot(m, m->applied_txid + 1)->applied)
		m->applied_txid++;
	if (m->apply_waiters)
		pthread_cond_broadcast(&m->apply_cond);
}

static int apply(struct master *m, const struct journal_rec *r, const void *data)
{
	int io;
	if (r->op == JOP_WRITE)
		io = volume_pwrite(&m->vol, data, r->length, r->offset);
	else if (r->op == JOP_TRIM)
		io = volume_punch(&m->vol, r->offset, r->length);
	else
		io = volume_zero(&m->vol, r->offset, r->length);
	if (io == 0)
		return 0;
	int e = errno;
	log_error(m->name, "applying TXID %" PRIu64 " at offset %" PRIu64 ": %s", r->txid, r->offset,
		  strerror(e));
	return e;
}

/*
 * The pipeline: reserve (locked), write the record (unlocked, in parallel with
 * other writers), commit (one fdatasync for a group), apply (unlocked; in TXID
 * order only where ranges overlap), reply. A crash after commit is repaired by
 * redo at start; before it, the write was never replied to.
 */
static int submit(struct master *m, unsigned op, uint64_t off, uint32_t len, const void *data,
		  bool in_range)
{
	struct journal_rec r = {
		.generation = m->generation,
		.offset = off,
		.length = len,
		.op = op,
		.data_crc = op == JOP_WRITE ? frep_crc32c(data, len) : 0,
	};
	struct journal_resv v;
	unsigned char *cache_dst = NULL;
	int e;

	if (len == 0)
		return 0;
	if (off > m->vol.size || len > m->vol.size - off || (op == JOP_WRITE && len > m->max_payload))
		return EINVAL;

	pthread_mutex_lock(&m->lock);
	if (m->demoted || m->switching || (m->fenced.set && !m->fenced_serve)) {
		/* EPO-3: the promoted copy is the primary; a write here would only be discarded. */
		pthread_mutex_unlock(&m->lock);
		return EROFS;
	}
	if (m->sync_mode && m->sync_fail && degraded_locked(m)) {
		/* --sync-fallback=fail: no write the mirror cannot get. */
		pthread_mutex_unlock(&m->lock);
		return EIO;
	}
	if ((e = reserve(m, &r, &v, &cache_dst, in_range)) != 0) {
		pthread_mutex_unlock(&m->lock);
		return e;
	}
	pthread_mutex_unlock(&m->lock);

	if (cache_dst && op == JOP_WRITE)
		memcpy(cache_dst, data, len);

	int write_err = journal_write(m->j, &v, data) < 0 ? errno : 0;

	pthread_mutex_lock(&m->lock);
	e = commit(m, r.txid, write_err);
	if (!e) {
		wait_turn(m, &r);
		pthread_mutex_unlock(&m->lock);
		e = apply(m, &r, data);
		pthread_mutex_lock(&m->lock);
	}
	applied(m, r.txid);
	/* Sync mode waits after the apply, so writers behind this one are not held. */
	if (!e && m->sync_mode)
		e = wait_for_mirror(m, r.txid);
	pthread_mutex_unlock(&m->lock);
	return e;
}

int master_submit(struct master *m, unsigned op, uint64_t off, uint32_t len, const void *data)
{
	return submit(m, op, off, len, data, false);
}

int master_submit_in_range(struct master *m, unsigned op, uint64_t off, uint32_t len,
			   const void *data)
{
	return submit(m, op, off, len, data, true);
}

uint64_t master_range_lock_locked(struct master *m, uint64_t off, uint64_t len)
{
	m->range_locked = true;
	m->range_off = off;
	m->range_len = len;
	/* wait_turn's test, for every transaction reserved so far. */
	struct journal_rec lk = { .txid = journal_last_txid(m->j) + 1, .offset = off, .length = len };
	wait_turn(m, &lk);
	return m->committed_txid;
}

void master_range_unlock_locked(struct master *m)
{
	m->range_locked = false;
	/* Writers the lock held off wait in reserve() on apply_cond. */
	if (m->apply_waiters)
		pthread_cond_broadcast(&m->apply_cond);
}

uint64_t master_quiesce_all_locked(struct master *m)
{
	while (m->applied_txid < journal_last_txid(m->j) && !m->journal_failed)
		wait_applied(m);
	return journal_last_txid(m->j);
}

uint64_t master_quiesce_locked(struct master *m)
{
	uint64_t base = m->committed_txid;
	/* Every TXID up to base is committed, so its writer is applying it now. */
	while (m->applied_txid < base && !m->journal_failed)
		wait_applied(m);
	return base;
}

/* The regions of the records up to upto, about to leave the journal, into PATH.since. */
static int keep_since_locked(struct master *m, uint64_t upto)
{
	if (!m->since)
		return 0;
	for (uint64_t t = journal_first_txid(m->j); t <= upto; t++) {
		struct journal_loc l;
		if (journal_locate(m->j, t, &l) < 0)
			return -1;
		if (t > m->since_txid)
			bitmap_set_range(m->since, l.offset, l.length);
	}
	return bitmap_sync(m->since);
}

int master_mark_since_locked(struct master *m, uint64_t t)
{
	uint64_t first = journal_first_txid(m->j), start, end;
	if (first > t + 1 && (!m->since || t < m->since_txid)) {
		/* Records after t are gone and nothing kept where they wrote: everything differs. */
		bitmap_set_all(m->bm);
		return bitmap_sync(m->bm) < 0 ? -1 : 1;
	}
	for (uint64_t at = 0; m->since && bitmap_next_dirty(m->since, at, &start, &end); at = end)
		bitmap_set_range(m->bm, start, end - start);
	return master_mark_dirty_locked(m, t, m->committed_txid);
}

void master_failback_done(struct master *m)
{
	struct meta ch;
	char path[4200];
	pthread_mutex_lock(&m->lock);
	struct bitmap *since = m->since;
	m->since = NULL;
	pthread_mutex_unlock(&m->lock);
	if (!since)
		return;
	bitmap_close(since);
	m->failback = false;
	meta_init(&ch);
	meta_set_u64(&ch, "failback", 0);
	if (meta_update(m, &ch) == 0) {
		snprintf(path, sizeof(path), "%s.since", m->journal_path);
		unlink(path);
	}
	log_info(m->name, "fail-back done: the old master's copy holds this primary's history; "
		 "the record of what changed since the promotion is dropped");
}

int master_mark_dirty_locked(struct master *m, uint64_t after, uint64_t upto)
{
	uint64_t first = journal_first_txid(m->j);
	if (after + 1 < first)
		after = first - 1; /* older records are gone: covered by an earlier crack */
	for (uint64_t t = after + 1; t <= upto; t++) {
		struct journal_loc l;
		if (journal_locate(m->j, t, &l) < 0) {
			log_error(m->name, "marking TXID %" PRIu64 " dirty: %s", t, strerror(errno));
			return -1;
		}
		bitmap_set_range(m->bm, l.offset, l.length);
	}
	if (bitmap_sync(m->bm) < 0) {
		log_error(m->name, "dirty bitmap fdatasync: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Cracks the mirror: durably marks in the bitmap every record the mirror has
 * not acknowledged, then frees every record. New reservations wait, and the
 * crack first waits for every reserved transaction to be applied, so the
 * volume sync below covers them all. Called and returns with m->lock held.
 */
static int master_crack_locked(struct master *m)
{
	int rc = -1;

	if (m->cracking) {
		/* Another writer is cracking: its crack frees the room this one needs. */
		while (m->cracking)
			wait_applied(m);
		return 0;
	}
	m->cracking = true;
	while (m->applied_txid < journal_last_txid(m->j) && !m->journal_failed)
		wait_applied(m);
	if (m->journal_failed)
		goto out;
	uint64_t last = m->committed_txid;

	/*
	 * The journal is the only durable copy of applied-but-unsynced writes, and
	 * the bitmap must name every region the mirror lacks, both before a single
	 * record is dropped.
	 */
	pthread_mutex_unlock(&m->lock);
	int sync_rc = volume_sync(&m->vol), e = errno;
	pthread_mutex_lock(&m->lock);
	if (sync_rc < 0) {
		log_error(m->name, "crack: fdatasync of master extents: %s", strerror(e));
		goto out;
	}
	uint64_t acked = m->acked_txid;
	if (master_mark_dirty_locked(m, acked, last) < 0)
		goto out;
	frep_crash_point("crack");
	m->cracked_bytes += journal_bytes_after(m->j, acked);
	if (keep_since_locked(m, last) < 0) {
		log_error(m->name, "crack: keeping what changed since the promotion: %s", strerror(errno));
		goto out;
	}
	if (last >= journal_first_txid(m->j) && journal_free_through(m->j, last) < 0) {
		log_error(m->name, "crack: freeing the mirror buffer: %s", strerror(errno));
		goto out;
	}
	m->cracks++;
	master_release_cached_locked(m, last);
	log_warn(m->name, "mirror buffer full: mirror cracked; %" PRIu64 " unacknowledged transaction(s) "
		 "(TXIDs %" PRIu64 "..%" PRIu64 ") moved to the dirty bitmap (%" PRIu64 " dirty regions)",
		 last > acked ? last - acked : 0, acked + 1, last, bitmap_dirty_regions(m->bm));
	master_notify_session(m);
	rc = 0;
out:
	m->cracking = false;
	pthread_cond_broadcast(&m->cond);
	pthread_cond_broadcast(&m->apply_cond);
	return rc;
}

/*
 * Frees the records the mirror acknowledged and the volume holds (DUR-6): the
 * volume is made durable first, without the lock, since until then the
 * record is the only durable copy of the write. One freer at a time; a caller
 * that finds one running waits for it. Called and returns with m->lock held.
 * 0, or -1 (logged).
 */
static int free_acked_locked(struct master *m)
{
	if (m->freeing) {
		while (m->freeing)
			pthread_cond_wait(&m->cond, &m->lock);
		return 0;
	}
	uint64_t upto = freeable_txid(m);
	if (upto < journal_first_txid(m->j))
		return 0;
	m->freeing = true;
	pthread_mutex_unlock(&m->lock);
	int rc = volume_sync(&m->vol), e = errno;
	pthread_mutex_lock(&m->lock);
	if (rc < 0)
		log_error(m->name, "fdatasync of master extents: %s", strerror(e));
	/* A crack meanwhile may have freed them already. */
	else if (upto >= journal_first_txid(m->j) && (rc = keep_since_locked(m, upto)) < 0)
		log_error(m->name, "keeping what changed since the promotion: %s", strerror(errno));
	else if (upto >= journal_first_txid(m->j) && (rc = journal_free_through(m->j, upto)) < 0)
		log_error(m->name, "freeing mirror buffer through TXID %" PRIu64 ": %s", upto,
			  strerror(errno));
	m->freeing = false;
	pthread_cond_broadcast(&m->cond);
	return rc;
}

int master_free_acked(struct master *m)
{
	pthread_mutex_lock(&m->lock);
	int rc = free_acked_locked(m);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void master_stop(struct master *m)
{
	pthread_mutex_lock(&m->lock);
	m->stopping = true;
	verify_abort_locked(m, "aborted: frep-client is stopping");
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	master_notify_session(m);
}
