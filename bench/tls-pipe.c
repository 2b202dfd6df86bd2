/*
 * Raw TLS pipe through common/tls.c: the replication throughput baseline, and a TLS
 * test peer; --aead measures the record ciphers alone, one core (bench/run.sh crypto).
 */
#include <errno.h>
#include <getopt.h>
#include <mbedtls/cipher.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "tls.h"
#include "util.h"

/*
 * Wire format between the two ends (not frep's): an 8-byte big-endian byte
 * count, then that many bytes, then close_notify. The receiver discards the
 * bytes without touching them: the baseline is the pipe, not the consumer.
 */
enum pipe_limits {
	CHUNK_MAX = 256 << 20,
	HANDSHAKE_TIMEOUT_MS = 10000,
	IDLE_TIMEOUT_MS = 30000,
	ACCEPT_POLL_MS = 200,
	DRAIN_WAIT_MS = 3000, /* server mode: how long shutdown waits for open connections */
	AEAD_RECORD = 16384,  /* TLS's largest record plaintext: what a bulk transfer seals */
	AEAD_TAG = 16,
};

static const char *usage_text =
	"usage: tls-pipe --certs DIR [--bytes N] [--chunk N] [--cn CN] [--keylog FILE]\n"
	"       tls-pipe --server HOST:PORT --certs DIR [--ca FILE] [--keylog FILE] [--timeout MS]\n"
	"       tls-pipe --connect HOST:PORT --certs DIR [--server-name NAME] [--cn CN]\n"
	"                [--ca FILE] [--bytes N] [--chunk N]\n"
	"       tls-pipe --aead [--bytes N]\n"
	"Bench (default): a server and a client thread move N bytes (default 1G) over\n"
	"loopback and print one line: tls-pipe bytes= seconds= MBps= cipher= chunk=\n"
	"send_cpu_s= recv_cpu_s= (each end's own CPU time, its kernel work included).\n"
	"--aead seals then opens N bytes (default 1G) of 16 KiB records, as TLS does, with\n"
	"each AEAD of frep's suites, in this thread; one line each, in CPU seconds (so\n"
	"other load does not count): tls-pipe aead=NAME bytes= seal_cpu_s= open_cpu_s=.\n"
	"--server accepts connections until SIGTERM and logs each rejection.\n"
	"--connect sends N bytes (default 0) to a --server and exits 0 on success.\n"
	"--timeout bounds each TLS handshake (default 10000 ms).\n"
	"DIR holds ca.crt, server.crt/key and CN.crt/key (scripts/gen-certs.sh).\n";

struct args {
	const char *certs, *server, *connect, *server_name, *cn, *ca, *keylog;
	int timeout_ms; /* handshake limit */
	uint64_t bytes;
	uint64_t chunk;
	bool bytes_set, aead;
};

static void usage(int rc)
{
	fputs(usage_text, rc ? stderr : stdout);
	exit(rc);
}

static void parse_args(struct args *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "certs", required_argument, NULL, 'd' },
		{ "bytes", required_argument, NULL, 'b' },
		{ "chunk", required_argument, NULL, 'c' },
		{ "server", required_argument, NULL, 's' },
		{ "connect", required_argument, NULL, 'C' },
		{ "server-name", required_argument, NULL, 'n' },
		{ "cn", required_argument, NULL, 'u' },
		{ "ca", required_argument, NULL, 'a' },
		{ "keylog", required_argument, NULL, 'k' },
		{ "timeout", required_argument, NULL, 't' },
		{ "aead", no_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	*a = (struct args){ .bytes = 1ull << 30, .chunk = 1 << 20, .cn = "master-1",
			    .server_name = "frep-mirror", .timeout_ms = HANDSHAKE_TIMEOUT_MS };
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'd': a->certs = optarg; break;
		case 's': a->server = optarg; break;
		case 'C': a->connect = optarg; break;
		case 'n': a->server_name = optarg; break;
		case 'u': a->cn = optarg; break;
		case 'a': a->ca = optarg; break;
		case 'k': a->keylog = optarg; break;
		case 'A': a->aead = true; break;
		case 't':
			a->timeout_ms = atoi(optarg);
			if (a->timeout_ms <= 0) {
				fprintf(stderr, "tls-pipe: --timeout wants milliseconds > 0\n");
				usage(2);
			}
			break;
		case 'b':
			if (parse_size(optarg, &a->bytes) < 0) {
				fprintf(stderr, "tls-pipe: bad --bytes '%s'\n", optarg);
				usage(2);
			}
			a->bytes_set = true;
			break;
		case 'c':
			if (parse_size(optarg, &a->chunk) < 0 || a->chunk == 0 || a->chunk > CHUNK_MAX) {
				fprintf(stderr, "tls-pipe: --chunk must be 1..%d bytes\n", CHUNK_MAX);
				usage(2);
			}
			break;
		case 'h': usage(0); break;
		default: usage(2);
		}
	}
	if (optind != argc || (!a->certs && !a->aead) || (a->server && a->connect) ||
	    (a->aead && (a->server || a->connect)))
		usage(2);
	if (a->connect && !a->bytes_set)
		a->bytes = 0;
}

static struct tls_config *load(const struct args *a, enum tls_role role)
{
	char cert[4096], key[4096], ca[4096], err[512];
	const char *name = role == TLS_ROLE_SERVER ? "server" : a->cn;

	snprintf(cert, sizeof(cert), "%s/%s.crt", a->certs, name);
	snprintf(key, sizeof(key), "%s/%s.key", a->certs, name);
	snprintf(ca, sizeof(ca), "%s/ca.crt", a->certs);
	/* The bench runs both ends in one process: one key log line per session is enough. */
	const char *keylog = role == TLS_ROLE_SERVER || a->connect ? a->keylog : NULL;
	struct tls_config *cfg = tls_config_new(role, cert, key, a->ca ? a->ca : ca, keylog, err,
						sizeof(err));
	if (!cfg)
		log_error(NULL, "TLS %s config: %s", name, err);
	return cfg;
}

/* Listening socket on host:port ("0" = kernel's choice); prints the bound address. */
static int listen_on(const char *spec, char *bound, size_t bound_len)
{
	char host[NI_MAXHOST], port[NI_MAXSERV], h[NI_MAXHOST], p[NI_MAXSERV];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd = -1, one = 1, rc;

	if (split_host_port(spec, host, sizeof(host), port, sizeof(port), NULL) < 0) {
		log_error(NULL, "bad address '%s' (want HOST:PORT)", spec);
		return -1;
	}
	if ((rc = getaddrinfo(host, port, &hints, &res))) {
		log_error(NULL, "resolve %s: %s", spec, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		log_error(NULL, "listen on %s: %s", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
		goto out;
	}
	getnameinfo((struct sockaddr *)&ss, len, h, sizeof(h), p, sizeof(p),
		    NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(bound, bound_len, "%s:%s", h, p);
out:
	freeaddrinfo(res);
	return fd;
}

/* Receives one transfer and the close_notify after it. Bytes received, or -1. */
static int64_t serve_conn(struct tls_conn *c, uint64_t chunk, uint64_t *done_ns)
{
	unsigned char hdr[8], tail;
	uint64_t want = 0, got = 0;
	unsigned char *buf = malloc(chunk);
	int64_t ret = -1;

	if (!buf) {
		log_error(NULL, "peer %s: out of memory", tls_peer_addr(c));
		return -1;
	}
	int rc = tls_read_full(c, hdr, sizeof(hdr));
	if (rc != 1) {
		log_warn(NULL, "peer %s: reading length: %s", tls_peer_addr(c),
			 rc == 0 ? "closed before sending" : strerror(errno));
		goto out;
	}
	for (int i = 0; i < 8; i++)
		want = want << 8 | hdr[i];
	while (got < want) {
		size_t n = want - got < chunk ? (size_t)(want - got) : (size_t)chunk;
		if (tls_read_full(c, buf, n) != 1) {
			log_warn(NULL, "peer %s: after %llu of %llu bytes: %s", tls_peer_addr(c),
				 (unsigned long long)got, (unsigned long long)want,
				 strerror(errno));
			goto out;
		}
		got += n;
	}
	if (done_ns)
		*done_ns = now_ns();
	rc = tls_read_full(c, &tail, 1);
	if (rc != 0) {
		log_warn(NULL, "peer %s: expected close_notify after %llu bytes: %s",
			 tls_peer_addr(c), (unsigned long long)got,
			 rc > 0 ? "more data" : strerror(errno));
		goto out;
	}
	ret = (int64_t)got;
out:
	free(buf);
	return ret;
}

/* Sends one transfer. 0 or -1. */
static int send_all(struct tls_conn *c, uint64_t bytes, uint64_t chunk, uint64_t *start_ns)
{
	unsigned char hdr[8];
	unsigned char *buf = malloc(chunk);
	int ret = -1;

	if (!buf) {
		log_error(NULL, "out of memory for a %llu-byte chunk", (unsigned long long)chunk);
		return -1;
	}
	/* Incompressible and not all-zero, though no cipher here would care. */
	random_bytes(buf, chunk);
	for (int i = 0; i < 8; i++)
		hdr[i] = (unsigned char)(bytes >> (56 - 8 * i));
	if (start_ns)
		*start_ns = now_ns();
	if (tls_write_full(c, hdr, sizeof(hdr)) < 0)
		goto fail;
	for (uint64_t sent = 0; sent < bytes;) {
		size_t n = bytes - sent < chunk ? (size_t)(bytes - sent) : (size_t)chunk;
		if (tls_write_full(c, buf, n) < 0)
			goto fail;
		sent += n;
	}
	ret = 0;
	goto out;
fail:
	log_error(NULL, "peer %s: write: %s", tls_peer_addr(c), strerror(errno));
out:
	free(buf);
	return ret;
}

/* ---- bench ------------------------------------------------------------------ */

struct bench_server {
	struct tls_config *cfg;
	int lfd;
	uint64_t chunk;
	int64_t received;
	uint64_t done_ns;
	uint64_t cpu_ns; /* the receiving thread's, from the handshake's end to close_notify */
};

/* CPU time of the calling thread: user and system, so each end's TCP work counts. */
static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *bench_server_main(void *p)
{
	struct bench_server *b = p;
	char err[512];

	b->received = -1;
	int fd = accept4(b->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		log_error(NULL, "accept: %s", strerror(errno));
		return NULL;
	}
	struct tls_conn *c = tls_server_handshake(b->cfg, fd, "bench-client", HANDSHAKE_TIMEOUT_MS,
						  err, sizeof(err));
	if (!c) {
		log_error(NULL, "bench server: rejected client: %s", err);
		return NULL;
	}
	tls_set_read_timeout(c, IDLE_TIMEOUT_MS);
	uint64_t cpu0 = thread_cpu_ns();
	b->received = serve_conn(c, b->chunk, &b->done_ns);
	b->cpu_ns = thread_cpu_ns() - cpu0;
	tls_close(c);
	return NULL;
}

static int run_bench(const struct args *a)
{
	struct bench_server b = { .lfd = -1, .chunk = a->chunk };
	struct tls_config *ccfg = NULL;
	struct tls_conn *c = NULL;
	char bound[NI_MAXHOST + NI_MAXSERV + 2], host[NI_MAXHOST], port[NI_MAXSERV], err[512];
	char cipher[128] = "";
	uint64_t start_ns = 0, send_cpu_ns = 0;
	pthread_t t;
	bool started = false;
	int rc = 1;

	b.cfg = load(a, TLS_ROLE_SERVER);
	ccfg = load(a, TLS_ROLE_CLIENT);
	if (!b.cfg || !ccfg)
		goto out;
	b.lfd = listen_on("127.0.0.1:0", bound, sizeof(bound));
	if (b.lfd < 0)
		goto out;
	if (pthread_create(&t, NULL, bench_server_main, &b) != 0) {
		log_error(NULL, "cannot start the server thread");
		goto out;
	}
	started = true;
	split_host_port(bound, host, sizeof(host), port, sizeof(port), NULL);
	c = tls_client_connect(ccfg, host, port, a->server_name, HANDSHAKE_TIMEOUT_MS, err,
			       sizeof(err));
	if (!c) {
		log_error(NULL, "connect %s: %s", bound, err);
		shutdown(b.lfd, SHUT_RDWR); /* unblocks accept if we never got there */
		goto out;
	}
	snprintf(cipher, sizeof(cipher), "%s", tls_cipher(c));
	send_cpu_ns = thread_cpu_ns();
	if (send_all(c, a->bytes, a->chunk, &start_ns) < 0)
		goto out;
	send_cpu_ns = thread_cpu_ns() - send_cpu_ns;
	rc = 0;
out:
	tls_close(c);
	if (started)
		pthread_join(t, NULL);
	if (rc == 0 && b.received != (int64_t)a->bytes) {
		log_error(NULL, "server received %lld of %llu bytes", (long long)b.received,
			  (unsigned long long)a->bytes);
		rc = 1;
	}
	if (rc == 0) {
		double s = (double)(b.done_ns - start_ns) / 1e9;
		printf("tls-pipe bytes=%llu seconds=%.3f MBps=%.1f cipher=%s chunk=%llu "
		       "send_cpu_s=%.3f recv_cpu_s=%.3f\n",
		       (unsigned long long)a->bytes, s, s > 0 ? (double)a->bytes / 1e6 / s : 0.0,
		       cipher, (unsigned long long)a->chunk, (double)send_cpu_ns / 1e9,
		       (double)b.cpu_ns / 1e9);
	}
	if (b.lfd >= 0)
		close(b.lfd);
	tls_config_free(ccfg);
	tls_config_free(b.cfg);
	return rc;
}

/* ---- AEAD alone -------------------------------------------------------------- */

/*
 * The record cipher without the rest of TLS: what one core can seal and open, the
 * ceiling of one connection's end (and so of one lane). Same calls as mbedTLS's
 * record layer: a 12-byte nonce, the 13-byte record header as additional data, a
 * 16-byte tag. The key is random; the nonce changes per record as TLS's would.
 * Timed in this thread's CPU time: on a shared machine, other load does not count.
 */
static int aead_one(mbedtls_cipher_type_t type, const char *name, uint64_t bytes)
{
	mbedtls_cipher_context_t ctx;
	const mbedtls_cipher_info_t *info = mbedtls_cipher_info_from_type(type);
	unsigned char key[32], iv[12] = { 0 }, ad[13] = { 0x17, 0x03, 0x03 };
	unsigned char *plain = malloc(AEAD_RECORD), *sealed = malloc(AEAD_RECORD + AEAD_TAG),
		      *opened = malloc(AEAD_RECORD);
	uint64_t records = (bytes + AEAD_RECORD - 1) / AEAD_RECORD, t0, t1, t2;
	size_t olen;
	int rc = 1, ret = 0;

	mbedtls_cipher_init(&ctx);
	if (!plain || !sealed || !opened) {
		log_error(NULL, "aead %s: out of memory", name);
		goto out;
	}
	if (!info) {
		log_error(NULL, "aead %s: not in this mbedTLS build", name);
		goto out;
	}
	random_bytes(key, sizeof(key));
	random_bytes(plain, AEAD_RECORD);
	if ((ret = mbedtls_cipher_setup(&ctx, info)) ||
	    (ret = mbedtls_cipher_setkey(&ctx, key, (int)info->key_bitlen, MBEDTLS_ENCRYPT)))
		goto fail;
	t0 = thread_cpu_ns();
	for (uint64_t i = 0; i < records; i++) {
		memcpy(iv + 4, &i, sizeof(i));
		if ((ret = mbedtls_cipher_auth_encrypt_ext(&ctx, iv, sizeof(iv), ad, sizeof(ad), plain,
							   AEAD_RECORD, sealed, AEAD_RECORD + AEAD_TAG,
							   &olen, AEAD_TAG)))
			goto fail;
	}
	t1 = thread_cpu_ns();
	/* The last record sealed, opened again and again: each open checks its tag. */
	if ((ret = mbedtls_cipher_setkey(&ctx, key, (int)info->key_bitlen, MBEDTLS_DECRYPT)))
		goto fail;
	for (uint64_t i = 0; i < records; i++) {
		if ((ret = mbedtls_cipher_auth_decrypt_ext(&ctx, iv, sizeof(iv), ad, sizeof(ad), sealed,
							   AEAD_RECORD + AEAD_TAG, opened, AEAD_RECORD,
							   &olen, AEAD_TAG)))
			goto fail;
	}
	t2 = thread_cpu_ns();
	if (memcmp(opened, plain, AEAD_RECORD) != 0) {
		log_error(NULL, "aead %s: opened record differs from the sealed one", name);
		goto out;
	}
	printf("tls-pipe aead=%s bytes=%llu seal_cpu_s=%.3f open_cpu_s=%.3f\n", name,
	       (unsigned long long)(records * AEAD_RECORD), (double)(t1 - t0) / 1e9,
	       (double)(t2 - t1) / 1e9);
	rc = 0;
	goto out;
fail:
	log_error(NULL, "aead %s: mbedTLS error -0x%04x", name, (unsigned)-ret);
out:
	mbedtls_cipher_free(&ctx);
	free(plain);
	free(sealed);
	free(opened);
	return rc;
}

static int run_aead(const struct args *a)
{
	/* The AEADs of common/tls.c's suites, in its order of preference. */
	static const struct {
		mbedtls_cipher_type_t type;
		const char *name;
	} aeads[] = {
		{ MBEDTLS_CIPHER_CHACHA20_POLY1305, "CHACHA20-POLY1305" },
		{ MBEDTLS_CIPHER_AES_128_GCM, "AES-128-GCM" },
		{ MBEDTLS_CIPHER_AES_256_GCM, "AES-256-GCM" },
	};
	int rc = 0;

	for (size_t i = 0; i < sizeof(aeads) / sizeof(aeads[0]); i++)
		rc |= aead_one(aeads[i].type, aeads[i].name, a->bytes);
	return rc;
}

/* ---- server mode ------------------------------------------------------------- */

static volatile sig_atomic_t stopping;
/* Open connection threads; shutdown waits for them (bounded). */
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t conns_cond = PTHREAD_COND_INITIALIZER;
static unsigned conns;

struct conn_job {
	struct tls_config *cfg;
	uint64_t chunk;
	int timeout_ms;
	int fd;
	char peer[NI_MAXHOST + NI_MAXSERV + 4];
};

static void on_signal(int sig)
{
	stopping = 1;
}

static void *conn_main(void *p)
{
	struct conn_job *job = p;
	char err[512];

	struct tls_conn *c = tls_server_handshake(job->cfg, job->fd, job->peer, job->timeout_ms,
						  err, sizeof(err));
	if (!c) {
		log_warn(NULL, "rejected peer=%s: %s", job->peer, err);
	} else {
		log_info(NULL, "accepted peer=%s cn=%s cipher=%s", job->peer, tls_peer_cn(c),
			 tls_cipher(c));
		tls_set_read_timeout(c, IDLE_TIMEOUT_MS);
		int64_t n = serve_conn(c, job->chunk, NULL);
		if (n >= 0)
			log_info(NULL, "peer=%s cn=%s: received %lld bytes and close_notify",
				 job->peer, tls_peer_cn(c), (long long)n);
		tls_close(c);
	}
	free(job);
	pthread_mutex_lock(&conns_lock);
	conns--;
	pthread_cond_broadcast(&conns_cond);
	pthread_mutex_unlock(&conns_lock);
	return NULL;
}

static void accept_one(struct tls_config *cfg, int lfd, uint64_t chunk, int timeout_ms)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char h[NI_MAXHOST], p[NI_MAXSERV];
	pthread_attr_t attr;
	pthread_t t;

	int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn(NULL, "accept: %s", strerror(errno));
		return;
	}
	getnameinfo((struct sockaddr *)&ss, len, h, sizeof(h), p, sizeof(p),
		    NI_NUMERICHOST | NI_NUMERICSERV);
	struct conn_job *job = calloc(1, sizeof(*job));
	if (!job) {
		log_error(NULL, "peer %s:%s: out of memory", h, p);
		close(fd);
		return;
	}
	*job = (struct conn_job){ .cfg = cfg, .chunk = chunk, .timeout_ms = timeout_ms, .fd = fd };
	snprintf(job->peer, sizeof(job->peer), ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h,
		 p);
	pthread_mutex_lock(&conns_lock);
	conns++;
	pthread_mutex_unlock(&conns_lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, conn_main, job) != 0) {
		log_error(NULL, "peer %s: cannot start a connection thread", job->peer);
		close(fd);
		free(job);
		pthread_mutex_lock(&conns_lock);
		conns--;
		pthread_mutex_unlock(&conns_lock);
	}
	pthread_attr_destroy(&attr);
}

static int run_server(const struct args *a)
{
	char bound[NI_MAXHOST + NI_MAXSERV + 2];
	struct sigaction sa = { .sa_handler = on_signal };
	int rc = 1;

	struct tls_config *cfg = load(a, TLS_ROLE_SERVER);
	if (!cfg)
		return 1;
	int lfd = listen_on(a->server, bound, sizeof(bound));
	if (lfd < 0)
		goto out;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	log_info(NULL, "listening on %s", bound);
	while (!stopping) {
		struct pollfd pfd = { .fd = lfd, .events = POLLIN };
		if (poll(&pfd, 1, ACCEPT_POLL_MS) > 0)
			accept_one(cfg, lfd, a->chunk, a->timeout_ms);
	}
	close(lfd);
	rc = 0;

	/* Connections end on their own (handshake and idle limits); wait a little. */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += DRAIN_WAIT_MS / 1000;
	pthread_mutex_lock(&conns_lock);
	while (conns && pthread_cond_timedwait(&conns_cond, &conns_lock, &ts) == 0)
		;
	unsigned left = conns;
	pthread_mutex_unlock(&conns_lock);
	if (left) {
		/* Threads still use cfg: leave it to process exit. */
		log_warn(NULL, "exiting with %u connections open", left);
		return rc;
	}
out:
	tls_config_free(cfg);
	return rc;
}

/* ---- client mode ------------------------------------------------------------- */

static int run_connect(const struct args *a)
{
	char host[NI_MAXHOST], port[NI_MAXSERV], err[512];
	int rc = 1;

	if (split_host_port(a->connect, host, sizeof(host), port, sizeof(port), NULL) < 0) {
		log_error(NULL, "bad address '%s' (want HOST:PORT)", a->connect);
		return 2;
	}
	struct tls_config *cfg = load(a, TLS_ROLE_CLIENT);
	if (!cfg)
		return 1;
	struct tls_conn *c = tls_client_connect(cfg, host, port, a->server_name, a->timeout_ms,
						err, sizeof(err));
	if (!c) {
		log_error(NULL, "connect %s: %s", a->connect, err);
		goto out;
	}
	log_info(NULL, "connected to %s cn=%s cipher=%s", tls_peer_addr(c), tls_peer_cn(c),
		 tls_cipher(c));
	if (send_all(c, a->bytes, a->chunk, NULL) == 0)
		rc = 0;
	tls_close(c);
out:
	tls_config_free(cfg);
	return rc;
}

int main(int argc, char **argv)
{
	struct args a;

	parse_args(&a, argc, argv);
	log_init("tls-pipe", LOG_INFO);
	signal(SIGPIPE, SIG_IGN);
	if (a.aead)
		return run_aead(&a);
	if (a.server)
		return run_server(&a);
	if (a.connect)
		return run_connect(&a);
	return run_bench(&a);
}
