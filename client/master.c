/* The master volume at runtime: extents, mirror buffer, transaction path, replication bookkeeping. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "master.h"
#include "meta.h"
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

/* Loads or creates the metadata beside the journal and bumps the generation. */
static int master_load_meta(struct master *m, bool journal_existed, char *err, size_t err_len)
{
	struct meta md;
	char hex[2 * FREP_UUID_SIZE + 1];
	uint64_t gen = 0;

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
	} else if (errno == ENOENT && !journal_existed) {
		meta_init(&md);
		if (random_bytes(m->uuid, sizeof(m->uuid)) < 0) {
			snprintf(err, err_len, "getrandom: %s", strerror(errno));
			return -1;
		}
		meta_set(&md, "format", "frep-master-1");
		meta_set(&md, "volume", m->name);
		meta_set(&md, "uuid", hex_encode(m->uuid, sizeof(m->uuid), hex));
	} else {
		snprintf(err, err_len, "%s: %s; the journal cannot be trusted without it",
			 m->meta_path, errno == ENOENT ? "missing" : strerror(errno));
		return -1;
	}
	m->generation = gen + 1;
	meta_set_u64(&md, "generation", m->generation);
	if (meta_save(m->meta_path, &md) < 0) {
		snprintf(err, err_len, "saving %s: %s", m->meta_path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Redo: re-applies every unfreed record, so the volume holds every committed write. */
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
	m->lock_fd = m->notify_fd = -1;
	pthread_mutex_init(&m->write_lock, NULL);
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	*exit_code = 1;

	m->name = strdup(o->name);
	m->journal_path = strdup(o->journal_path);
	snprintf(path, sizeof(path), "%s.meta", o->journal_path);
	m->meta_path = strdup(path);
	if (!m->name || !m->journal_path || !m->meta_path) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}

	snprintf(path, sizeof(path), "%s.lock", o->journal_path);
	m->lock_fd = lock_file(path);
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

	bool existed = access(o->journal_path, F_OK) == 0;
	m->j = journal_open(o->journal_path, size, o->name, err, err_len);
	if (!m->j)
		return -1;
	if (master_load_meta(m, existed, err, err_len) < 0)
		return -1;

	uint64_t max = journal_capacity(m->j) / 8;
	if (max > NBD_MAX_PAYLOAD)
		max = NBD_MAX_PAYLOAD;
	if (max > journal_max_record_data(m->j))
		max = journal_max_record_data(m->j);
	m->max_payload = (uint32_t)(max & ~(uint64_t)4095);

	m->committed_txid = m->applied_txid = journal_last_txid(m->j);
	/* Unfreed records are not known to be on the mirror. */
	m->acked_txid = journal_first_txid(m->j) - 1;
	if (master_redo(m, err, err_len) < 0)
		return -1;

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
	if (m->j) {
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
	free(m->name);
	free(m->journal_path);
	free(m->meta_path);
	pthread_mutex_destroy(&m->write_lock);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	memset(m, 0, sizeof(*m));
	m->lock_fd = m->notify_fd = -1;
}

int master_submit(struct master *m, unsigned op, uint64_t off, uint32_t len, const void *data)
{
	struct journal_rec r = {
		.generation = m->generation,
		.offset = off,
		.length = len,
		.op = op,
		.data_crc = op == JOP_WRITE ? frep_crc32c(data, len) : 0,
	};
	bool warned = false;
	int e = 0;

	if (len == 0)
		return 0;
	if (off > m->vol.size || len > m->vol.size - off)
		return EINVAL;

	pthread_mutex_lock(&m->write_lock);
	pthread_mutex_lock(&m->lock);
	for (;;) {
		r.txid = m->committed_txid + 1;
		if (journal_append(m->j, &r, data) == 0)
			break;
		if (errno != ENOSPC || m->stopping) {
			e = m->stopping ? ESHUTDOWN : errno;
			log_error(m->name, "mirror buffer append of TXID %" PRIu64 ": %s", r.txid,
				  strerror(e));
			goto unlock;
		}
		/* Full: hold writers until the mirror acknowledges and space is freed. */
		if (!warned) {
			log_warn(m->name, "mirror buffer full: writers wait for the mirror to acknowledge");
			warned = true;
		}
		pthread_cond_wait(&m->cond, &m->lock);
	}
	if (journal_sync(m->j) < 0) {
		e = errno;
		log_error(m->name, "mirror buffer fdatasync for TXID %" PRIu64 ": %s", r.txid,
			  strerror(e));
		goto unlock;
	}
	m->committed_txid = r.txid;
	if (op == JOP_WRITE)
		m->committed_bytes += len;
	pthread_mutex_unlock(&m->lock);

	uint64_t one = 1;
	ssize_t w = write(m->notify_fd, &one, sizeof(one));
	(void)w;

	/* The record is durable: a crash from here on is repaired by redo at start. */
	int io;
	if (op == JOP_WRITE)
		io = volume_pwrite(&m->vol, data, len, off);
	else if (op == JOP_TRIM)
		io = volume_punch(&m->vol, off, len);
	else
		io = volume_zero(&m->vol, off, len);
	if (io < 0) {
		e = errno;
		log_error(m->name, "applying TXID %" PRIu64 " at offset %" PRIu64 ": %s", r.txid,
			  off, strerror(e));
	}
	pthread_mutex_lock(&m->lock);
	m->applied_txid = r.txid;
unlock:
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_unlock(&m->write_lock);
	return e;
}

int master_free_acked(struct master *m)
{
	pthread_mutex_lock(&m->lock);
	uint64_t upto = m->acked_txid < m->applied_txid ? m->acked_txid : m->applied_txid;
	uint64_t first = journal_first_txid(m->j);
	pthread_mutex_unlock(&m->lock);
	if (upto < first)
		return 0;

	/* The journal is the only durable copy of applied-but-unsynced writes. */
	if (volume_sync(&m->vol) < 0) {
		log_error(m->name, "fdatasync of master extents: %s", strerror(errno));
		return -1;
	}
	pthread_mutex_lock(&m->lock);
	int rc = journal_free_through(m->j, upto);
	if (rc < 0)
		log_error(m->name, "freeing mirror buffer through TXID %" PRIu64 ": %s", upto,
			  strerror(errno));
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void master_stop(struct master *m)
{
	pthread_mutex_lock(&m->lock);
	m->stopping = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	uint64_t one = 1;
	ssize_t w = write(m->notify_fd, &one, sizeof(one));
	(void)w;
}
