/*
 * frepctl's human output: a compact block per volume in the spirit of
 * `drbdadm status`, one line per Watch event as `drbdsetup events2` prints
 * them, verify results, and progress bars. Enum names come from admin.proto's
 * descriptors, as in --json and in the metrics' labels.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "frepctl.h"
#include "util.h"

enum { TABLE_CELL = 256 }; /* one table cell, truncated beyond */

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v)
{
	const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
	return ev ? ev->name : "?";
}

const char *state_name(int state)
{
	return enum_name(&frep__admin__v1__state__descriptor, state);
}

const char *role_name(int role)
{
	return enum_name(&frep__admin__v1__role__descriptor, role);
}

const char *kind_name(int kind)
{
	return enum_name(&frep__admin__v1__event__kind__descriptor, kind);
}

static int64_t now_unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "45s", "5m12s", "2h03m", "3d04h": two units at most. */
static const char *duration(char *buf, size_t len, uint64_t s)
{
	if (s < 60)
		snprintf(buf, len, "%" PRIu64 "s", s);
	else if (s < 3600)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s % 86400 / 3600);
	return buf;
}

/* How long before now t was ("5m12s"); "0s" for a t in the future (clock skew). */
static const char *age(char *buf, size_t len, int64_t t_ms, int64_t now_ms)
{
	return duration(buf, len, now_ms > t_ms ? (uint64_t)(now_ms - t_ms) / 1000 : 0);
}

static const char *size(char *buf, size_t len, uint64_t bytes)
{
	return format_size(bytes, buf, len);
}

static const char *rate(char *buf, size_t len, uint64_t bps)
{
	char s[32];
	snprintf(buf, len, "%s/s", format_size(bps, s, sizeof(s)));
	return buf;
}

/* "45.0% 450M/1.0G 50M/s eta:11s" */
static const char *progress_text(char *buf, size_t len, const Progress *p)
{
	char d[32], t[32], r[32], e[32];
	double pct = p->total_bytes ? 100.0 * (double)p->done_bytes / (double)p->total_bytes : 0;
	snprintf(buf, len, "%.1f%% %s/%s %s eta:%s", pct, size(d, sizeof(d), p->done_bytes),
		 size(t, sizeof(t), p->total_bytes), rate(r, sizeof(r), p->rate_bps),
		 p->eta_seconds ? duration(e, sizeof(e), p->eta_seconds) : "?");
	return buf;
}

static void render_peer(FILE *f, const char *label, const Frep__Admin__V1__Peer *p)
{
	if (!p) {
		fprintf(f, "  %s: not connected\n", label);
		return;
	}
	fprintf(f, "  %s:%s address:%s lanes:%" PRIu32 " cipher:%s", label,
		*p->identity ? p->identity : "?", *p->address ? p->address : "?", p->lanes,
		*p->cipher ? p->cipher : "?");
	if (p->protocol)
		fprintf(f, " protocol:%" PRIu32, p->protocol);
	if (p->compression && *p->compression && strcmp(p->compression, "none") != 0)
		fprintf(f, " compression:%s", p->compression);
	if (p->compression_ratio > 1.005)
		fprintf(f, " ratio:%.2f", p->compression_ratio);
	fputc('\n', f);
}

static void render_master(FILE *f, const Frep__Admin__V1__MasterStatus *m)
{
	char a[32], b[32], c[32], d[32], e[64];
	render_peer(f, "peer", m->peer);
	fprintf(f, "  txid committed:%" PRIu64 " acked:%" PRIu64 " applied:%" PRIu64 "\n",
		m->committed_txid, m->acked_txid, m->applied_txid);
	fprintf(f, "  lag tx:%" PRIu64 " bytes:%s seconds:%.1f\n", m->lag_tx,
		size(a, sizeof(a), m->lag_bytes), m->lag_seconds);
	uint64_t buf_total = m->buffer_used_bytes + m->buffer_free_bytes;
	fprintf(f, "  buffer used:%s free:%s (%u%%) writes:%s sends:%s dirty:%s\n",
		size(a, sizeof(a), m->buffer_used_bytes), size(b, sizeof(b), m->buffer_free_bytes),
		buf_total ? (unsigned)(100 * m->buffer_free_bytes / buf_total) : 100,
		rate(c, sizeof(c), m->write_rate_bps), rate(d, sizeof(d), m->send_rate_bps),
		size(e, sizeof(e), m->dirty_bytes));
	fprintf(f, "  mode:%s on-buffer-full:%s max-rate:%s",
		enum_name(&frep__admin__v1__mode__descriptor, m->mode),
		enum_name(&frep__admin__v1__on_buffer_full__descriptor, m->on_buffer_full),
		m->max_rate_bps ? rate(a, sizeof(a), m->max_rate_bps) : "unlimited");
	if (m->paused)
		fputs(" paused", f);
	if (m->degraded)
		fputs(" degraded", f);
	if (m->resync_full)
		fputs(" resync:full", f);
	fputc('\n', f);
	if (m->copy) {
		char p[128];
		fprintf(f, "  copy: %s\n", progress_text(p, sizeof(p), m->copy));
	}
	if (m->fenced)
		fprintf(f, "  fenced: epoch %" PRIu64 " began elsewhere after TXID %" PRIu64 "; a demote "
			"discards %" PRIu64 " TX(s), %s; local writes %s\n", m->fenced->epoch,
			m->fenced->txid, m->fenced->discard_tx, size(a, sizeof(a), m->fenced->discard_bytes),
			m->fenced->serving ? "still taken (--on-fenced=serve)" : "refused");
}

static void render_mirror(FILE *f, const Frep__Admin__V1__MirrorStatus *m, int64_t now_ms)
{
	char a[32], b[32];
	fprintf(f, "  owner:%s ", *m->owner_identity ? m->owner_identity : "?");
	if (m->consistent)
		fprintf(f, "consistent@%" PRIu64, m->consistent_txid);
	else
		fprintf(f, "inconsistent (last consistent@%" PRIu64 ")", m->consistent_txid);
	if (m->consistent_unix_ms)
		fprintf(f, " %s ago", age(a, sizeof(a), m->consistent_unix_ms, now_ms));
	fprintf(f, " applied:%" PRIu64 "\n", m->last_applied_txid);
	fprintf(f, "  journal used:%s size:%s", size(a, sizeof(a), m->journal_used_bytes),
		size(b, sizeof(b), m->journal_size_bytes));
	if (m->preallocate && *m->preallocate)
		fprintf(f, " preallocate:%s", m->preallocate);
	fputc('\n', f);
	render_peer(f, "master", m->connected_master);
	if (m->copy) {
		char p[128];
		fprintf(f, "  copy: %s\n", progress_text(p, sizeof(p), m->copy));
	}
	const Frep__Admin__V1__Promotion *q = m->promotion;
	if (q) {
		fprintf(f, "  promoted: epoch %" PRIu64 " after TXID %" PRIu64 " %s ago (%s%s); recovery "
			"point TXID %" PRIu64, q->epoch, q->txid, age(a, sizeof(a), q->unix_ms, now_ms),
			q->source, q->forced ? ", forced" : "", q->recovery_txid);
		if (q->recovery_unix_ms)
			fprintf(f, " acknowledged %s before", age(b, sizeof(b), q->recovery_unix_ms, q->unix_ms));
		fprintf(f, "; %s\n", q->loss);
	}
}

static void render_verify(FILE *f, const Frep__Admin__V1__VerifyStatus *v, int64_t now_ms)
{
	char a[32], p[128];
	fprintf(f, "  verify #%" PRIu64 "%s: ", v->verify_id, v->repair ? " (repair)" : "");
	if (v->running) {
		fprintf(f, "running %s\n", v->progress ? progress_text(p, sizeof(p), v->progress) : "");
		return;
	}
	fprintf(f, "%s mismatched:%" PRIu64 " repaired:%" PRIu64, *v->outcome ? v->outcome : "?",
		v->mismatched_regions, v->repaired_regions);
	if (v->finished_unix_ms)
		fprintf(f, " finished %s ago", age(a, sizeof(a), v->finished_unix_ms, now_ms));
	fputc('\n', f);
}

void render_volume(FILE *f, const VolumeStatus *v, int64_t now_ms)
{
	char a[32];
	if (!now_ms)
		now_ms = now_unix_ms();
	fprintf(f, "%s role:%s state:%s", v->name, role_name(v->role), state_name(v->state));
	if (v->state_since_unix_ms)
		fprintf(f, " since:%s", age(a, sizeof(a), v->state_since_unix_ms, now_ms));
	fputc('\n', f);
	if (v->master)
		render_master(f, v->master);
	if (v->mirror)
		render_mirror(f, v->mirror, now_ms);
	if (v->verify && v->verify->verify_id)
		render_verify(f, v->verify, now_ms);
	if (v->last_error)
		fprintf(f, "  last-error:%s %s ago: %s\n", v->last_error->code,
			age(a, sizeof(a), v->last_error->time_unix_ms, now_ms), v->last_error->message);
}

/* "2026-12-02T16:30:29.123+00:00", local time, as drbdsetup events2 --timestamps. */
static void timestamp(FILE *f, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char day[32], zone[8];
	localtime_r(&t, &tm);
	strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
	strftime(zone, sizeof(zone), "%z", &tm);
	fprintf(f, "%s.%03d%.3s:%s", day, (int)(ms % 1000), zone, zone + 3);
}

/* "state-change" for STATE_CHANGE: the kind in events2's lower-case style. */
static void kind_word(FILE *f, int kind)
{
	for (const char *k = kind_name(kind); *k; k++)
		fputc(*k == '_' ? '-' : *k >= 'A' && *k <= 'Z' ? *k - 'A' + 'a' : *k, f);
}

void render_event(FILE *f, const Event *e)
{
	const VolumeStatus *v = e->volume;
	char p[128];
	timestamp(f, e->time_unix_ms ? e->time_unix_ms : now_unix_ms());
	fputc(' ', f);
	kind_word(f, e->kind);
	if (v)
		fprintf(f, " %s", v->name);
	switch (e->kind) {
	case FREP__ADMIN__V1__EVENT__KIND__EXISTS:
	case FREP__ADMIN__V1__EVENT__KIND__VOLUME_ADDED:
		if (v)
			fprintf(f, " role:%s state:%s", role_name(v->role), state_name(v->state));
		break;
	case FREP__ADMIN__V1__EVENT__KIND__STATE_CHANGE:
		fprintf(f, " %s -> %s", state_name(e->old_state), v ? state_name(v->state) : "?");
		break;
	case FREP__ADMIN__V1__EVENT__KIND__PROGRESS: {
		const Progress *c = v && v->master ? v->master->copy : v && v->mirror ? v->mirror->copy : NULL;
		if (c)
			fprintf(f, " copy %s", progress_text(p, sizeof(p), c));
		if (v && v->master)
			fprintf(f, " lag-tx:%" PRIu64 " lag-bytes:%" PRIu64, v->master->lag_tx,
				v->master->lag_bytes);
		break;
	}
	case FREP__ADMIN__V1__EVENT__KIND__ERROR:
		if (v && v->last_error)
			fprintf(f, " %s: %s", v->last_error->code, v->last_error->message);
		break;
	case FREP__ADMIN__V1__EVENT__KIND__VERIFY_PROGRESS:
	case FREP__ADMIN__V1__EVENT__KIND__VERIFY_DONE:
		if (v && v->verify) {
			const Frep__Admin__V1__VerifyStatus *vs = v->verify;
			fprintf(f, " #%" PRIu64, vs->verify_id);
			if (vs->running && vs->progress)
				fprintf(f, " %s", progress_text(p, sizeof(p), vs->progress));
			else if (!vs->running)
				fprintf(f, " %s mismatched:%" PRIu64 " repaired:%" PRIu64, vs->outcome,
					vs->mismatched_regions, vs->repaired_regions);
		}
		break;
	default:
		break;
	}
	if (e->reason && *e->reason)
		fprintf(f, " (%s)", e->reason);
	fputc('\n', f);
}

/* "user", "pre-resync", "export": Snapshot.Kind in lower case. */
static void snapshot_kind(char *buf, size_t len, int kind)
{
	const char *k = enum_name(&frep__admin__v1__snapshot__kind__descriptor, kind);
	size_t i = 0;
	for (; k[i] && i < len - 1; i++)
		buf[i] = k[i] == '_' ? '-' : k[i] >= 'A' && k[i] <= 'Z' ? (char)(k[i] - 'A' + 'a') : k[i];
	buf[i] = '\0';
}

enum { SNAPSHOT_COLUMNS = 8 };

/* One snapshot's cells: the table's columns in order. */
static void snapshot_cells(const Snapshot *s, int64_t now_ms, char cells[][TABLE_CELL])
{
	char a[32];
	snprintf(cells[0], TABLE_CELL, "%s", s->volume);
	snprintf(cells[1], TABLE_CELL, "%s", s->name);
	snapshot_kind(cells[2], TABLE_CELL, s->kind);
	snprintf(cells[3], TABLE_CELL, "%" PRIu64, s->txid);
	snprintf(cells[4], TABLE_CELL, "%s ago", age(a, sizeof(a), s->created_unix_ms, now_ms));
	size(cells[5], TABLE_CELL, s->used_bytes);
	if (s->valid)
		snprintf(cells[6], TABLE_CELL, "valid");
	else
		snprintf(cells[6], TABLE_CELL, "invalid %s ago: %s",
			 age(a, sizeof(a), s->invalidated_unix_ms, now_ms), s->invalid_reason);
	if (s->export)
		snprintf(cells[7], TABLE_CELL, "%s pid:%" PRIu32, s->export->nbd, s->export->pid);
	else
		snprintf(cells[7], TABLE_CELL, "-");
}

void render_snapshots(FILE *f, const Snapshot *const *s, size_t n, int64_t now_ms)
{
	static const char *const head[SNAPSHOT_COLUMNS] = { "VOLUME", "SNAPSHOT", "KIND", "TXID",
							    "CREATED", "USED", "STATE", "EXPORT" };
	char (*cells)[SNAPSHOT_COLUMNS][TABLE_CELL] = calloc(n ? n : 1, sizeof(*cells));
	size_t width[SNAPSHOT_COLUMNS];
	if (!now_ms)
		now_ms = now_unix_ms();
	if (!n || !cells) {
		fprintf(f, n ? "out of memory\n" : "no snapshots\n");
		free(cells);
		return;
	}
	for (unsigned k = 0; k < SNAPSHOT_COLUMNS; k++)
		width[k] = strlen(head[k]);
	for (size_t i = 0; i < n; i++) {
		snapshot_cells(s[i], now_ms, cells[i]);
		for (unsigned k = 0; k < SNAPSHOT_COLUMNS; k++)
			if (strlen(cells[i][k]) > width[k])
				width[k] = strlen(cells[i][k]);
	}
	/* The last column unpadded: no trailing blanks. */
	for (size_t i = 0; i <= n; i++)
		for (unsigned k = 0; k < SNAPSHOT_COLUMNS; k++) {
			const char *cell = i ? cells[i - 1][k] : head[k];
			if (k + 1 < SNAPSHOT_COLUMNS)
				fprintf(f, "%-*s  ", (int)width[k], cell);
			else
				fprintf(f, "%s\n", cell);
		}
	free(cells);
}

void render_verify_result(FILE *f, const char *volume, const VerifyResult *r)
{
	const Frep__Admin__V1__VerifyStatus *s = r->status;
	char a[32], b[32];
	if (!s) {
		fprintf(f, "%s: no verify result\n", volume);
		return;
	}
	fprintf(f, "%s: verify #%" PRIu64 "%s %s: %" PRIu64 " mismatching region%s of %s, %" PRIu64
		   " repaired\n",
		volume, s->verify_id, s->repair ? " (repair)" : "", *s->outcome ? s->outcome : "?",
		s->mismatched_regions, s->mismatched_regions == 1 ? "" : "s",
		size(a, sizeof(a), r->region_size), s->repaired_regions);
	for (size_t i = 0; i < r->n_mismatches; i++) {
		const Frep__Admin__V1__Region *g = r->mismatches[i];
		fprintf(f, "  mismatch offset:%" PRIu64 " length:%" PRIu64 " (%s+%s)\n", g->offset, g->length,
			size(a, sizeof(a), g->offset), size(b, sizeof(b), g->length));
	}
}

enum {
	BAR_WIDTH = 30,
	PLAIN_INTERVAL_MS = 2000, /* plain lines go to logs: one every 2 s at most */
};

void progress_init(struct progress_bar *b, FILE *f, const char *cmd, const char *volume)
{
	*b = (struct progress_bar){ .f = f, .tty = isatty(fileno(f)) };
	snprintf(b->what, sizeof(b->what), "%s %s", cmd, volume);
}

void progress_update(struct progress_bar *b, const Progress *p)
{
	char text[128];
	progress_text(text, sizeof(text), p);
	bool done = p->total_bytes && p->done_bytes >= p->total_bytes;
	if (b->tty) {
		unsigned fill = p->total_bytes ? (unsigned)(BAR_WIDTH * (double)p->done_bytes /
							    (double)p->total_bytes) : 0;
		char bar[BAR_WIDTH + 1];
		for (unsigned i = 0; i < BAR_WIDTH; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[BAR_WIDTH] = '\0';
		/* \r and erase-to-end-of-line: the bar is redrawn in place. */
		fprintf(b->f, "\r%s [%s] %s\033[K", b->what, bar, text);
		b->drawn = true;
	} else {
		int64_t now = now_unix_ms();
		if (!done && b->last_ms && now - b->last_ms < PLAIN_INTERVAL_MS)
			return;
		b->last_ms = now;
		fprintf(b->f, "%s: %s\n", b->what, text);
	}
	fflush(b->f);
}

void progress_end(struct progress_bar *b)
{
	if (b->drawn) {
		fputc('\n', b->f);
		fflush(b->f);
	}
	b->drawn = false;
}
