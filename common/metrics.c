/* Prometheus /metrics over libmicrohttpd: see metrics.h. */
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "frep/admin/v1/admin.pb-c.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

enum metrics_limits {
	METRICS_CONNECTIONS = 16,    /* scrapers at once; more are refused */
	METRICS_IDLE_TIMEOUT_S = 10, /* a connection silent this long is closed */
	METRICS_ERR_MAX = 256,
};

/* frep.admin.v1.Role */
enum { ROLE_ANY = 0, ROLE_MASTER = 1, ROLE_MIRROR = 2 };

/* How a field of struct vol_status is read. */
enum field_kind {
	F_U64,	  /* uint64_t */
	F_U32,	  /* uint32_t */
	F_DOUBLE, /* double */
	F_BOOL,	  /* bool, as 0 or 1 */
	F_MS,	  /* int64_t milliseconds since the epoch, as seconds */
};

#define NO_COND SIZE_MAX

/*
 * One sample per volume of the role: the field at off. With cond, only while
 * the field at cond (a bool, or verify_id) is non-zero: the parts Status
 * leaves out too (no copy running, no peer, no verify yet). Rows of one name
 * are adjacent (master and mirror keep a figure in different places).
 */
struct series {
	const char *name, *type, *help;
	int role;
	enum field_kind kind;
	size_t off;
	enum field_kind cond_kind;
	size_t cond;
};

#define V(f) offsetof(struct vol_status, f)
#define M(f) offsetof(struct vol_status, master.f)
#define R(f) offsetof(struct vol_status, mirror.f)
#define ALWAYS F_BOOL, NO_COND
#define M_COPY F_BOOL, M(copy.active)
#define R_COPY F_BOOL, R(copy.active)
#define M_PEER F_BOOL, M(peer.connected)
#define R_PEER F_BOOL, R(connected_master.connected)
#define VERIFY F_U64, V(verify.verify_id)

static const struct series table[] = {
	{ "frep_state_since_timestamp_seconds", "gauge", "When the volume entered its state.",
	  ROLE_ANY, F_MS, V(state_since_unix_ms), ALWAYS },
	{ "frep_volume_size_bytes", "gauge", "Size of the volume.",
	  ROLE_MASTER, F_U64, M(volume_size_bytes), ALWAYS },
	{ "frep_volume_size_bytes", "gauge", "Size of the volume.",
	  ROLE_MIRROR, F_U64, R(volume_size_bytes), ALWAYS },
	/* master */
	{ "frep_committed_txid", "gauge", "Last TXID durable in the master's journal.",
	  ROLE_MASTER, F_U64, M(committed_txid), ALWAYS },
	{ "frep_acked_txid", "gauge", "Last TXID the mirror acknowledged (durable there).",
	  ROLE_MASTER, F_U64, M(acked_txid), ALWAYS },
	{ "frep_applied_txid", "gauge", "Last TXID applied to this side's extents.",
	  ROLE_MASTER, F_U64, M(applied_txid), ALWAYS },
	{ "frep_applied_txid", "gauge", "Last TXID applied to this side's extents.",
	  ROLE_MIRROR, F_U64, R(last_applied_txid), ALWAYS },
	{ "frep_lag_transactions", "gauge", "Committed transactions the mirror has not acknowledged.",
	  ROLE_MASTER, F_U64, M(lag_tx), ALWAYS },
	{ "frep_lag_bytes", "gauge", "Journal bytes the mirror has not acknowledged.",
	  ROLE_MASTER, F_U64, M(lag_bytes), ALWAYS },
	{ "frep_lag_seconds", "gauge",
	  "Age of the oldest unacknowledged commit: what an async failover would lose now.",
	  ROLE_MASTER, F_DOUBLE, M(lag_seconds), ALWAYS },
	{ "frep_buffer_used_bytes", "gauge", "Mirror buffer (master journal) in use.",
	  ROLE_MASTER, F_U64, M(buffer_used_bytes), ALWAYS },
	{ "frep_buffer_free_bytes", "gauge", "Mirror buffer (master journal) free.",
	  ROLE_MASTER, F_U64, M(buffer_free_bytes), ALWAYS },
	{ "frep_write_rate_bytes_per_second", "gauge", "Bytes committed by local writers per second.",
	  ROLE_MASTER, F_U64, M(write_rate_bps), ALWAYS },
	{ "frep_send_rate_bytes_per_second", "gauge", "Bytes the mirror acknowledged per second.",
	  ROLE_MASTER, F_U64, M(send_rate_bps), ALWAYS },
	{ "frep_dirty_bytes", "gauge", "Bytes the dirty bitmap marks for the next resync.",
	  ROLE_MASTER, F_U64, M(dirty_bytes), ALWAYS },
	{ "frep_resync_full", "gauge", "1 while a full resync is requested or running.",
	  ROLE_MASTER, F_BOOL, M(resync_full), ALWAYS },
	{ "frep_degraded", "gauge", "1 while sync mode runs async, or block cracks (--degrade-after).",
	  ROLE_MASTER, F_BOOL, M(degraded), ALWAYS },
	{ "frep_paused", "gauge", "1 while an operator pause holds (persisted).",
	  ROLE_MASTER, F_BOOL, M(paused), ALWAYS },
	{ "frep_outrun", "gauge", "1 while local writes outrun the link to the mirror.",
	  ROLE_MASTER, F_BOOL, M(outrun), ALWAYS },
	{ "frep_max_rate_bytes_per_second", "gauge", "Copy and verify rate limit; 0 = none.",
	  ROLE_MASTER, F_U64, M(max_rate_bps), ALWAYS },
	{ "frep_journal_appends_total", "counter", "Transactions appended to the master's journal.",
	  ROLE_MASTER, F_U64, M(journal_appends), ALWAYS },
	{ "frep_journal_syncs_total", "counter", "fdatasyncs of the master's journal.",
	  ROLE_MASTER, F_U64, M(journal_syncs), ALWAYS },
	{ "frep_full_waits_total", "counter", "Times a writer waited for room in the mirror buffer.",
	  ROLE_MASTER, F_U64, M(full_waits), ALWAYS },
	{ "frep_cracks_total", "counter", "Times the mirror cracked (a full buffer became dirty regions).",
	  ROLE_MASTER, F_U64, M(cracks), ALWAYS },
	/* mirror */
	{ "frep_consistent", "gauge", "1 while the mirror volume is consistent.",
	  ROLE_MIRROR, F_BOOL, R(consistent), ALWAYS },
	{ "frep_consistent_txid", "gauge", "TXID the mirror volume is (or was last) consistent at.",
	  ROLE_MIRROR, F_U64, R(consistent_txid), ALWAYS },
	{ "frep_consistent_timestamp_seconds", "gauge", "When that TXID was made durable (0: unknown).",
	  ROLE_MIRROR, F_MS, R(consistent_unix_ms), ALWAYS },
	{ "frep_journal_used_bytes", "gauge", "Mirror journal in use.",
	  ROLE_MIRROR, F_U64, R(journal_used_bytes), ALWAYS },
	{ "frep_journal_size_bytes", "gauge", "Mirror journal size.",
	  ROLE_MIRROR, F_U64, R(journal_size_bytes), ALWAYS },
	/* a copy pass (REPLICATE, OUTOFSYNC), on either side */
	{ "frep_copy_done_bytes", "gauge", "Bytes the running copy pass has done.",
	  ROLE_MASTER, F_U64, M(copy.done_bytes), M_COPY },
	{ "frep_copy_done_bytes", "gauge", "Bytes the running copy pass has done.",
	  ROLE_MIRROR, F_U64, R(copy.done_bytes), R_COPY },
	{ "frep_copy_total_bytes", "gauge", "Bytes the running copy pass copies in all.",
	  ROLE_MASTER, F_U64, M(copy.total_bytes), M_COPY },
	{ "frep_copy_total_bytes", "gauge", "Bytes the running copy pass copies in all.",
	  ROLE_MIRROR, F_U64, R(copy.total_bytes), R_COPY },
	{ "frep_copy_rate_bytes_per_second", "gauge", "Rate of the running copy pass.",
	  ROLE_MASTER, F_U64, M(copy.rate_bps), M_COPY },
	{ "frep_copy_rate_bytes_per_second", "gauge", "Rate of the running copy pass.",
	  ROLE_MIRROR, F_U64, R(copy.rate_bps), R_COPY },
	{ "frep_copy_eta_seconds", "gauge", "Time the running copy pass still needs (0: unknown).",
	  ROLE_MASTER, F_U64, M(copy.eta_seconds), M_COPY },
	{ "frep_copy_eta_seconds", "gauge", "Time the running copy pass still needs (0: unknown).",
	  ROLE_MIRROR, F_U64, R(copy.eta_seconds), R_COPY },
	/* the peer, while connected */
	{ "frep_peer_connected", "gauge", "1 while the peer (mirror, or master) is connected.",
	  ROLE_MASTER, F_BOOL, M(peer.connected), ALWAYS },
	{ "frep_peer_connected", "gauge", "1 while the peer (mirror, or master) is connected.",
	  ROLE_MIRROR, F_BOOL, R(connected_master.connected), ALWAYS },
	{ "frep_peer_lanes", "gauge", "TLS connections of the session.",
	  ROLE_MASTER, F_U32, M(peer.lanes), M_PEER },
	{ "frep_peer_lanes", "gauge", "TLS connections of the session.",
	  ROLE_MIRROR, F_U32, R(connected_master.lanes), R_PEER },
	{ "frep_peer_compression_ratio", "gauge", "Uncompressed bytes per wire byte.",
	  ROLE_MASTER, F_DOUBLE, M(peer.compression_ratio), M_PEER },
	{ "frep_peer_compression_ratio", "gauge", "Uncompressed bytes per wire byte.",
	  ROLE_MIRROR, F_DOUBLE, R(connected_master.compression_ratio), R_PEER },
	/* the last verify, once there was one */
	{ "frep_verify_running", "gauge", "1 while a verify runs.",
	  ROLE_ANY, F_BOOL, V(verify.running), VERIFY },
	{ "frep_verify_done_bytes", "gauge", "Bytes the last verify has compared.",
	  ROLE_ANY, F_U64, V(verify.progress.done_bytes), VERIFY },
	{ "frep_verify_total_bytes", "gauge", "Bytes the last verify compares in all.",
	  ROLE_ANY, F_U64, V(verify.progress.total_bytes), VERIFY },
	{ "frep_verify_mismatched_regions", "gauge", "Regions the last verify found different.",
	  ROLE_ANY, F_U64, V(verify.mismatched_regions), VERIFY },
	{ "frep_verify_repaired_regions", "gauge", "Regions the last verify repaired.",
	  ROLE_ANY, F_U64, V(verify.repaired_regions), VERIFY },
};

/* The exposition text being built: out of memory once f is NULL. */
struct text {
	FILE *f;
	char family[128]; /* whose HELP and TYPE came last */
};

static void header(struct text *t, const char *name, const char *type, const char *help)
{
	if (strcmp(t->family, name) == 0)
		return;
	snprintf(t->family, sizeof(t->family), "%s", name);
	fprintf(t->f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped as the format wants (backslash, double quote, newline). */
static void label_value(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

/* name{volume="V",k1="v1",...}: labels are name/value pairs ending in NULL. */
static void sample_start(FILE *f, const char *name, const char *volume, ...)
{
	va_list ap;
	const char *k;

	fprintf(f, "%s{volume=", name);
	label_value(f, volume);
	va_start(ap, volume);
	while ((k = va_arg(ap, const char *))) {
		fprintf(f, ",%s=", k);
		label_value(f, va_arg(ap, const char *));
	}
	va_end(ap);
	fputs("} ", f);
}

static const void *field(const struct vol_status *v, size_t off)
{
	return (const char *)v + off;
}

static bool nonzero(const struct vol_status *v, enum field_kind kind, size_t off)
{
	if (off == NO_COND)
		return true;
	if (kind == F_U64)
		return *(const uint64_t *)field(v, off) != 0;
	return *(const bool *)field(v, off);
}

/* Doubles with 17 digits read back as the same double; milliseconds exactly. */
static void value(FILE *f, const struct vol_status *v, enum field_kind kind, size_t off)
{
	const void *p = field(v, off);
	switch (kind) {
	case F_U64: fprintf(f, "%" PRIu64 "\n", *(const uint64_t *)p); break;
	case F_U32: fprintf(f, "%" PRIu32 "\n", *(const uint32_t *)p); break;
	case F_DOUBLE: fprintf(f, "%.17g\n", *(const double *)p); break;
	case F_BOOL: fprintf(f, "%d\n", *(const bool *)p ? 1 : 0); break;
	case F_MS: {
		int64_t ms = *(const int64_t *)p;
		uint64_t a = ms < 0 ? -(uint64_t)ms : (uint64_t)ms;
		fprintf(f, "%s%" PRIu64 ".%03" PRIu64 "\n", ms < 0 ? "-" : "", a / 1000, a % 1000);
		break;
	}
	}
}

/*
 * One sample per volume (of role; ROLE_ANY for all) and per value of an enum
 * of the admin API, named by label: 1 for the volume's value, 0 for the others.
 * The proto's *_UNSPECIFIED value (0) is left out.
 */
static void enum_family(struct text *t, const char *name, const char *help, const char *label,
			const ProtobufCEnumDescriptor *d, int role, const struct vol_status *vols,
			size_t n, size_t field_off)
{
	for (size_t i = 0; i < n; i++) {
		if (role != ROLE_ANY && vols[i].role != role)
			continue;
		int cur = *(const int *)field(&vols[i], field_off);
		header(t, name, "gauge", help);
		for (unsigned k = 0; k < d->n_values; k++) {
			if (d->values[k].value == 0)
				continue;
			sample_start(t->f, name, vols[i].name, label, d->values[k].name, NULL);
			fprintf(t->f, "%d\n", d->values[k].value == cur);
		}
	}
}

char *metrics_format(const struct vol_status *vols, size_t n, size_t *len)
{
	char *buf = NULL;
	struct text t = { .f = open_memstream(&buf, len) };

	if (!t.f)
		return NULL;
	header(&t, "frep_build_info", "gauge", "The frep version serving these metrics.");
	fprintf(t.f, "frep_build_info{version=");
	label_value(t.f, FREP_VERSION);
	fputs("} 1\n", t.f);

	enum_family(&t, "frep_role", "The volume's role: 1 for its role, 0 for the other.", "role",
		    &frep__admin__v1__role__descriptor, ROLE_ANY, vols, n, V(role));
	enum_family(&t, "frep_state", "The volume's replication state: 1 for its state, 0 for the others.",
		    "state", &frep__admin__v1__state__descriptor, ROLE_ANY, vols, n, V(state));
	enum_family(&t, "frep_mode", "Replication mode (--mode): 1 for the volume's.", "mode",
		    &frep__admin__v1__mode__descriptor, ROLE_MASTER, vols, n, M(mode));
	enum_family(&t, "frep_on_buffer_full", "Policy for a full mirror buffer (--on-buffer-full).",
		    "policy", &frep__admin__v1__on_buffer_full__descriptor, ROLE_MASTER, vols, n,
		    M(on_buffer_full));

	for (size_t r = 0; r < sizeof(table) / sizeof(table[0]); r++) {
		const struct series *s = &table[r];
		for (size_t i = 0; i < n; i++) {
			if ((s->role != ROLE_ANY && vols[i].role != s->role) ||
			    !nonzero(&vols[i], s->cond_kind, s->cond))
				continue;
			header(&t, s->name, s->type, s->help);
			sample_start(t.f, s->name, vols[i].name, NULL);
			value(t.f, &vols[i], s->kind, s->off);
		}
	}

	/* Text that Status carries: as labels of a sample valued 1 (or a time). */
	for (size_t i = 0; i < n; i++) {
		const struct status_peer *p = vols[i].role == ROLE_MASTER ? &vols[i].master.peer
									 : &vols[i].mirror.connected_master;
		if (!p->connected)
			continue;
		header(&t, "frep_peer_info", "gauge",
		       "The connected peer: address, identity (certificate CN), cipher.");
		sample_start(t.f, "frep_peer_info", vols[i].name, "address", p->address, "identity",
			     p->identity, "cipher", p->cipher, NULL);
		fputs("1\n", t.f);
	}
	for (size_t i = 0; i < n; i++) {
		if (vols[i].role != ROLE_MIRROR)
			continue;
		header(&t, "frep_owner_info", "gauge", "The master identity that owns the mirror volume.");
		sample_start(t.f, "frep_owner_info", vols[i].name, "identity",
			     vols[i].mirror.owner_identity, NULL);
		fputs("1\n", t.f);
	}
	for (size_t i = 0; i < n; i++) {
		if (!vols[i].last_error.set)
			continue;
		header(&t, "frep_last_error_timestamp_seconds", "gauge",
		       "When the volume's last error happened, with its code.");
		sample_start(t.f, "frep_last_error_timestamp_seconds", vols[i].name, "code",
			     vols[i].last_error.code, NULL);
		value(t.f, &vols[i], F_MS, V(last_error.time_unix_ms));
	}
	if (fclose(t.f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* --- the HTTP server ----------------------------------------------------------- */

static struct {
	struct MHD_Daemon *d;
	const struct admin_ops *ops;
	void *ctx;
	char start_err[METRICS_ERR_MAX]; /* what libmicrohttpd said while starting */
	bool starting;
} mx;

/* libmicrohttpd's own messages: into the log, and kept while starting for the error. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[METRICS_ERR_MAX];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t l = strlen(msg);
	while (l > 0 && msg[l - 1] == '\n')
		msg[--l] = '\0';
	if (mx.starting)
		snprintf(mx.start_err, sizeof(mx.start_err), "%s", msg);
	else
		log_warn(NULL, "--metrics: %s", msg);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type, char *body,
			     size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
	if (!r) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	enum MHD_Result ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	static char not_found[] = "frep serves /metrics only\n";
	static char bad_method[] = "GET /metrics\n";
	static const char plain[] = "text/plain; charset=utf-8";

	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, plain, bad_method, strlen(bad_method),
			     MHD_RESPMEM_PERSISTENT);
	if (strcmp(url, "/metrics") != 0)
		return reply(c, MHD_HTTP_NOT_FOUND, plain, not_found, strlen(not_found),
			     MHD_RESPMEM_PERSISTENT);

	struct vol_status *vols = NULL;
	size_t n = 0, len = 0;
	struct admin_reply r = { 0 };
	if (mx.ops->status(mx.ctx, NULL, &vols, &n, &r) < 0) {
		char *msg = NULL;
		int l = asprintf(&msg, "status: %s\n", r.message);
		free(vols);
		if (l < 0)
			return MHD_NO;
		return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, plain, msg, (size_t)l,
			     MHD_RESPMEM_MUST_FREE);
	}
	char *text = metrics_format(vols, n, &len);
	free(vols);
	if (!text)
		return MHD_NO;
	return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len,
		     MHD_RESPMEM_MUST_FREE);
}

bool metrics_listen_valid(const char *listen)
{
	char host[256], port[16];
	return split_host_port(listen, host, sizeof(host), port, sizeof(port), NULL) >= 0;
}

int metrics_start(const char *listen, const struct admin_ops *ops, void *ctx, char *err,
		  size_t err_len)
{
	char host[256], port[16], h[NI_MAXHOST], p[NI_MAXSERV];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL;

	if (split_host_port(listen, host, sizeof(host), port, sizeof(port), NULL) < 0) {
		snprintf(err, err_len, "--metrics: expected HOST:PORT, got '%s'", listen);
		return -1;
	}
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, err_len, "--metrics %s: %s", listen, gai_strerror(rc));
		return -1;
	}
	mx.ops = ops;
	mx.ctx = ctx;
	mx.starting = true;
	mx.start_err[0] = '\0';
	/*
	 * The port goes to libmicrohttpd's messages only: it binds SOCK_ADDR.
	 * One thread polls every connection, and a scrape only copies numbers
	 * (admin_ops never wait on I/O): a silent scraper costs a connection
	 * slot until the idle timeout, never a stalled thread.
	 */
	mx.d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG |
					(res->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
				(uint16_t)atoi(port), NULL, NULL, answer, NULL,
				MHD_OPTION_SOCK_ADDR, res->ai_addr,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_CONNECTIONS,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_IDLE_TIMEOUT_S,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				MHD_OPTION_END);
	mx.starting = false;
	freeaddrinfo(res);
	if (!mx.d) {
		snprintf(err, err_len, "--metrics %s: cannot serve: %s", listen,
			 mx.start_err[0] ? mx.start_err : "libmicrohttpd failed to start");
		return -1;
	}

	const union MHD_DaemonInfo *info = MHD_get_daemon_info(mx.d, MHD_DAEMON_INFO_LISTEN_FD);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (info && getsockname(info->listen_fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
			NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		log_info(NULL, ss.ss_family == AF_INET6 ? "metrics on http://[%s]:%s/metrics"
							: "metrics on http://%s:%s/metrics",
			 h, p);
	return 0;
}

void metrics_stop(void)
{
	if (!mx.d)
		return;
	MHD_stop_daemon(mx.d);
	mx.d = NULL;
}
