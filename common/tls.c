/* Mutual-auth TLS 1.2 over mbedTLS: config, handshakes with clear rejection reasons, I/O. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mbedtls/config.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "log.h"
#include "tls.h"
#include "util.h"

#if !defined(MBEDTLS_SSL_ALPN) || !defined(MBEDTLS_SSL_EXPORT_KEYS) ||                       \
	!defined(MBEDTLS_SSL_KEEP_PEER_CERTIFICATE) || !defined(MBEDTLS_SSL_PROTO_TLS1_2)
#error "mbedTLS must be built with ALPN, key export, kept peer certificates and TLS 1.2"
#endif

enum tls_limits {
	TLS_CN_MAX = 256,		/* longer subject CNs are refused, not truncated */
	TLS_PEER_MAX = NI_MAXHOST + NI_MAXSERV + 4,
	/* The ClientHello is kept (server side, during the handshake only) to name
	 * the ALPN a client offered when mbedTLS refuses it. s_client and frep send
	 * a few hundred bytes; a bigger hello is just not quoted. */
	TLS_HELLO_CAPTURE = 4096,
	TLS_CLOSE_NOTIFY_MS = 1000,	/* tls_close never blocks longer on a stuck peer */
};

/* Handshake record type: the first byte of every TLS connection (RFC 5246 6.2.1). */
#define TLS_RECORD_HANDSHAKE 0x16

static const char *const alpn_list[] = { "frep/1", NULL };
#define FREP_ALPN "frep/1"

/*
 * Our certificates are ECDSA P-256, so the ECDSA suites come first; ChaCha20
 * leads because it is the fastest here (≈306 MB/s vs 230 MB/s for AES-128-GCM
 * per core, the cipher alone: bench/run.sh crypto). The RSA variants only let RSA certificates work.
 */
static const int ciphersuites[] = {
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	0,
};

/*
 * Shared by all connections of a process. Everything is read-only after
 * tls_config_new except the DRBG, which rng_lock protects (Debian's mbedTLS
 * has MBEDTLS_THREADING_C and locks the DRBG itself; our lock keeps a build
 * without it correct and costs one uncontended lock per handshake draw), and
 * the key-log fd, where each session is one O_APPEND write(2) and needs no lock.
 */
struct tls_config {
	enum tls_role role;
	mbedtls_ssl_config conf;
	mbedtls_x509_crt cert;
	mbedtls_x509_crt ca;
	mbedtls_pk_context key;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	pthread_mutex_t rng_lock;
	int keylog_fd; /* -1 when no key log */
};

struct tls_conn {
	mbedtls_ssl_context ssl;
	struct tls_config *cfg;
	int fd;
	int read_timeout_ms;  /* idle limit per wait after the handshake; 0 = none */
	int write_timeout_ms; /* the same for writes: a peer that stops reading */
	uint64_t deadline_ms;	/* absolute limit (handshake, close, tls_set_deadline); 0 = none */
	int last_errno;		/* errno of the last failed socket call, for the caller */
	bool capture;		/* copy received bytes into hello[] */
	size_t hello_len;
	unsigned char *hello;
	char peer[TLS_PEER_MAX];
	char cn[TLS_CN_MAX + 1];
};

static void set_err(char *err, size_t err_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !err_len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
	/* One line per reason: the caller puts it in a single log line. */
	for (char *p = err; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

static const char *mbed_err(int ret, char *buf, size_t len)
{
	mbedtls_strerror(ret, buf, len);
	return buf;
}

/* ---- randomness ------------------------------------------------------------ */

static int locked_rng(void *p, unsigned char *out, size_t len)
{
	struct tls_config *cfg = p;

	pthread_mutex_lock(&cfg->rng_lock);
	int ret = mbedtls_ctr_drbg_random(&cfg->drbg, out, len);
	pthread_mutex_unlock(&cfg->rng_lock);
	return ret;
}

/* ---- key log --------------------------------------------------------------- */

/*
 * NSS key-log format, which Wireshark reads (tls.keylog_file):
 *   CLIENT_RANDOM <client random, 64 hex> <master secret, 96 hex>
 * Called once per full handshake, on either side.
 */
static int export_keys(void *p, const unsigned char *ms, const unsigned char *kb, size_t maclen,
		       size_t keylen, size_t ivlen, const unsigned char client_random[32],
		       const unsigned char server_random[32], mbedtls_tls_prf_types prf)
{
	struct tls_config *cfg = p;
	char line[sizeof("CLIENT_RANDOM ") + 64 + 1 + 96 + 1];
	char rnd[65], sec[97];

	hex_encode(client_random, 32, rnd);
	hex_encode(ms, 48, sec);
	int n = snprintf(line, sizeof(line), "CLIENT_RANDOM %s %s\n", rnd, sec);
	/* One write(2) on an O_APPEND fd: lines of concurrent sessions never mix. */
	if (write(cfg->keylog_fd, line, (size_t)n) != n)
		log_warn(NULL, "key log: write: %s", strerror(errno));
	mbedtls_platform_zeroize(sec, sizeof(sec));
	mbedtls_platform_zeroize(line, sizeof(line));
	return 0; /* a key-log failure must not break the link */
}

/* ---- configuration --------------------------------------------------------- */

struct tls_config *tls_config_new(enum tls_role role, const char *cert_path, const char *key_path,
				  const char *ca_path, const char *keylog_path, char *err,
				  size_t err_len)
{
	static const char pers[] = "frep-tls";
	struct tls_config *cfg = calloc(1, sizeof(*cfg));
	char e[128];
	int ret;

	if (!cfg) {
		set_err(err, err_len, "out of memory");
		return NULL;
	}
	cfg->role = role;
	cfg->keylog_fd = -1;
	pthread_mutex_init(&cfg->rng_lock, NULL);
	mbedtls_ssl_config_init(&cfg->conf);
	mbedtls_x509_crt_init(&cfg->cert);
	mbedtls_x509_crt_init(&cfg->ca);
	mbedtls_pk_init(&cfg->key);
	mbedtls_entropy_init(&cfg->entropy);
	mbedtls_ctr_drbg_init(&cfg->drbg);

	/* mbedTLS says only "Read/write of file failed": name the errno first. */
	const char *files[] = { cert_path, key_path, ca_path };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (access(files[i], R_OK) < 0) {
			set_err(err, err_len, "%s: %s", files[i], strerror(errno));
			goto fail;
		}
	}
	ret = mbedtls_ctr_drbg_seed(&cfg->drbg, mbedtls_entropy_func, &cfg->entropy,
				    (const unsigned char *)pers, sizeof(pers) - 1);
	if (ret) {
		set_err(err, err_len, "seeding the DRBG: %s", mbed_err(ret, e, sizeof(e)));
		goto fail;
	}
	if ((ret = mbedtls_x509_crt_parse_file(&cfg->cert, cert_path))) {
		set_err(err, err_len, "certificate %s: %s", cert_path, mbed_err(ret, e, sizeof(e)));
		goto fail;
	}
	if ((ret = mbedtls_pk_parse_keyfile(&cfg->key, key_path, NULL))) {
		set_err(err, err_len, "key %s: %s", key_path, mbed_err(ret, e, sizeof(e)));
		goto fail;
	}
	if ((ret = mbedtls_pk_check_pair(&cfg->cert.pk, &cfg->key))) {
		set_err(err, err_len, "key %s does not belong to certificate %s", key_path,
			cert_path);
		goto fail;
	}
	if ((ret = mbedtls_x509_crt_parse_file(&cfg->ca, ca_path))) {
		set_err(err, err_len, "CA %s: %s", ca_path, mbed_err(ret, e, sizeof(e)));
		goto fail;
	}

	ret = mbedtls_ssl_config_defaults(&cfg->conf,
					  role == TLS_ROLE_SERVER ? MBEDTLS_SSL_IS_SERVER
								  : MBEDTLS_SSL_IS_CLIENT,
					  MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
	if (ret) {
		set_err(err, err_len, "TLS defaults: %s", mbed_err(ret, e, sizeof(e)));
		goto fail;
	}
	mbedtls_ssl_conf_min_version(&cfg->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_max_version(&cfg->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_ciphersuites(&cfg->conf, ciphersuites);
	mbedtls_ssl_conf_authmode(&cfg->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&cfg->conf, &cfg->ca, NULL);
	mbedtls_ssl_conf_rng(&cfg->conf, locked_rng, cfg);
	if ((ret = mbedtls_ssl_conf_own_cert(&cfg->conf, &cfg->cert, &cfg->key))) {
		set_err(err, err_len, "own certificate: %s", mbed_err(ret, e, sizeof(e)));
		goto fail;
	}
	if ((ret = mbedtls_ssl_conf_alpn_protocols(&cfg->conf, (const char **)alpn_list))) {
		set_err(err, err_len, "ALPN: %s", mbed_err(ret, e, sizeof(e)));
		goto fail;
	}
	/* Renegotiation stays off (the default): a session has one identity for its life. */
	mbedtls_ssl_conf_renegotiation(&cfg->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);

	if (keylog_path) {
		cfg->keylog_fd = open(keylog_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (cfg->keylog_fd < 0) {
			set_err(err, err_len, "key log %s: %s", keylog_path, strerror(errno));
			goto fail;
		}
		mbedtls_ssl_conf_export_keys_ext_cb(&cfg->conf, export_keys, cfg);
		log_warn(NULL, "key log enabled: TLS sessions can be decrypted by anyone who reads %s",
			 keylog_path);
	}
	return cfg;
fail:
	tls_config_free(cfg);
	return NULL;
}

void tls_config_free(struct tls_config *cfg)
{
	if (!cfg)
		return;
	if (cfg->keylog_fd >= 0)
		close(cfg->keylog_fd);
	mbedtls_ssl_config_free(&cfg->conf);
	mbedtls_x509_crt_free(&cfg->cert);
	mbedtls_x509_crt_free(&cfg->ca);
	mbedtls_pk_free(&cfg->key); /* zeroizes the private key */
	mbedtls_ctr_drbg_free(&cfg->drbg);
	mbedtls_entropy_free(&cfg->entropy);
	pthread_mutex_destroy(&cfg->rng_lock);
	mbedtls_platform_zeroize(cfg, sizeof(*cfg));
	free(cfg);
}

/* ---- socket I/O for mbedTLS ------------------------------------------------ */

/*
 * The socket is non-blocking; we wait in poll() so that one place bounds every
 * wait: by the read or write idle limit, and by deadline_ms while one is set
 * (handshake, close, a frame being received), whichever ends first. Returns
 * >0 ready, 0 timed out, -1 error (last_errno set).
 */
static int wait_fd(struct tls_conn *c, short events, int idle_ms)
{
	struct pollfd pfd = { .fd = c->fd, .events = events };

	for (;;) {
		int ms = idle_ms > 0 ? idle_ms : -1;
		if (c->deadline_ms) {
			uint64_t now = now_ms();
			if (now >= c->deadline_ms)
				return 0;
			if (ms < 0 || c->deadline_ms - now < (uint64_t)ms)
				ms = (int)(c->deadline_ms - now);
		}
		int n = poll(&pfd, 1, ms);
		if (n >= 0)
			return n;
		if (errno != EINTR) {
			c->last_errno = errno;
			return -1;
		}
	}
}

static int bio_send(void *p, const unsigned char *buf, size_t len)
{
	struct tls_conn *c = p;

	for (;;) {
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return (int)n;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			c->last_errno = errno;
			return errno == EPIPE || errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET
								      : MBEDTLS_ERR_NET_SEND_FAILED;
		}
		int r = wait_fd(c, POLLOUT, c->write_timeout_ms);
		if (r == 0)
			return MBEDTLS_ERR_SSL_TIMEOUT;
		if (r < 0)
			return MBEDTLS_ERR_NET_SEND_FAILED;
	}
}

static int bio_recv(void *p, unsigned char *buf, size_t len)
{
	struct tls_conn *c = p;

	for (;;) {
		ssize_t n = recv(c->fd, buf, len, 0);
		if (n > 0) {
			if (c->capture && c->hello_len < TLS_HELLO_CAPTURE) {
				size_t k = (size_t)n;
				if (k > TLS_HELLO_CAPTURE - c->hello_len)
					k = TLS_HELLO_CAPTURE - c->hello_len;
				memcpy(c->hello + c->hello_len, buf, k);
				c->hello_len += k;
			}
			return (int)n;
		}
		if (n == 0)
			return 0; /* mbedTLS: MBEDTLS_ERR_SSL_CONN_EOF */
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			c->last_errno = errno;
			return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET
						   : MBEDTLS_ERR_NET_RECV_FAILED;
		}
		int r = wait_fd(c, POLLIN, c->read_timeout_ms);
		if (r == 0)
			return MBEDTLS_ERR_SSL_TIMEOUT;
		if (r < 0)
			return MBEDTLS_ERR_NET_RECV_FAILED;
	}
}

/*
 * Without TCP_NODELAY, Nagle holds back the small second flight of the
 * handshake until the peer's delayed ACK fires: two stalls of ~40 ms per
 * handshake (measured). Frames are written whole, so Nagle buys nothing later.
 */
static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return 0;
}

/* ---- connection set-up and rejection reasons ------------------------------- */

static struct tls_conn *conn_new(struct tls_config *cfg, int fd, const char *peer, char *err,
				 size_t err_len)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	char e[128];
	int ret;

	if (!c) {
		set_err(err, err_len, "out of memory");
		return NULL;
	}
	c->cfg = cfg;
	c->fd = fd;
	snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "?");
	mbedtls_ssl_init(&c->ssl);
	if ((ret = mbedtls_ssl_setup(&c->ssl, &cfg->conf))) {
		set_err(err, err_len, "TLS setup: %s", mbed_err(ret, e, sizeof(e)));
		mbedtls_ssl_free(&c->ssl);
		free(c);
		return NULL;
	}
	mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
	return c;
}

/* Frees c without close_notify (the handshake did not complete); closes fd. */
static void conn_drop(struct tls_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	mbedtls_ssl_free(&c->ssl);
	free(c->hello);
	free(c);
}

/* Copies s into out with anything but printable ASCII replaced by '?'. */
static void printable(char *out, size_t out_len, const unsigned char *s, size_t n)
{
	size_t i;

	if (!out_len)
		return;
	for (i = 0; i < n && i + 1 < out_len; i++)
		out[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
	out[i] = '\0';
}

/*
 * Finds the ALPN extension (RFC 7301) in a captured ClientHello and writes
 * the offered names, comma-separated, into out. Returns the number of names,
 * 0 if the hello has none, -1 if the capture cannot be parsed (fragmented or
 * truncated hello): then the caller words its reason without quoting.
 * Every length is peer input and checked against the bytes we hold.
 */
static int hello_alpn(const unsigned char *p, size_t n, char *out, size_t out_len)
{
	size_t off, end, len;
	int count = 0;

	out[0] = '\0';
	/* record header (5), handshake header (4), version (2), random (32) */
	if (n < 5 + 4 + 2 + 32 || p[0] != TLS_RECORD_HANDSHAKE || p[5] != 1 /* client_hello */)
		return -1;
	end = 5 + ((size_t)p[3] << 8 | p[4]);
	if (end > n)
		return -1;
	off = 5 + 4 + 2 + 32;
	if (off + 1 > end)
		return -1;
	off += 1 + p[off]; /* session id */
	if (off + 2 > end)
		return -1;
	off += 2 + ((size_t)p[off] << 8 | p[off + 1]); /* cipher suites */
	if (off + 1 > end)
		return -1;
	off += 1 + p[off]; /* compression methods */
	if (off == end)
		return 0; /* no extensions at all */
	if (off + 2 > end)
		return -1;
	len = (size_t)p[off] << 8 | p[off + 1];
	off += 2;
	if (off + len > end)
		return -1;
	end = off + len;
	while (off + 4 <= end) {
		unsigned type = (unsigned)p[off] << 8 | p[off + 1];
		size_t elen = (size_t)p[off + 2] << 8 | p[off + 3];
		off += 4;
		if (off + elen > end)
			return -1;
		if (type == 16 /* application_layer_protocol_negotiation */) {
			size_t q = off + 2, qend = off + elen;
			size_t used = 0;
			if (elen < 2)
				return -1;
			while (q < qend) {
				size_t nl = p[q++];
				if (q + nl > qend)
					return -1;
				if (used + 2 < out_len) {
					if (count)
						out[used++] = ',';
					printable(out + used, out_len - used, p + q, nl);
					used += strlen(out + used);
				}
				count++;
				q += nl;
			}
			return count;
		}
		off += elen;
	}
	return 0;
}

/* Joins mbedTLS verify flags into one line. */
static void verify_text(uint32_t flags, char *out, size_t out_len)
{
	char buf[512];
	int n = mbedtls_x509_crt_verify_info(buf, sizeof(buf), "", flags);

	if (n <= 0) {
		snprintf(out, out_len, "flags 0x%x", flags);
		return;
	}
	/* "A\nB\n" -> "A; B" */
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	size_t j = 0;
	for (int i = 0; i < n && j + 3 < out_len; i++) {
		if (buf[i] == '\n') {
			out[j++] = ';';
			out[j++] = ' ';
		} else {
			out[j++] = buf[i];
		}
	}
	out[j] = '\0';
}

static const char *alert_name(unsigned char a)
{
	switch (a) {
	case MBEDTLS_SSL_ALERT_MSG_CLOSE_NOTIFY: return "close_notify";
	case MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE: return "handshake_failure";
	case MBEDTLS_SSL_ALERT_MSG_BAD_CERT: return "bad_certificate";
	case MBEDTLS_SSL_ALERT_MSG_UNSUPPORTED_CERT: return "unsupported_certificate";
	case MBEDTLS_SSL_ALERT_MSG_CERT_REVOKED: return "certificate_revoked";
	case MBEDTLS_SSL_ALERT_MSG_CERT_EXPIRED: return "certificate_expired";
	case MBEDTLS_SSL_ALERT_MSG_CERT_UNKNOWN: return "certificate_unknown";
	case MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA: return "unknown_ca";
	case MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED: return "access_denied";
	case MBEDTLS_SSL_ALERT_MSG_DECRYPT_ERROR: return "decrypt_error";
	case MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION: return "protocol_version";
	case MBEDTLS_SSL_ALERT_MSG_INSUFFICIENT_SECURITY: return "insufficient_security";
	case MBEDTLS_SSL_ALERT_MSG_UNSUPPORTED_EXT: return "unsupported_extension";
	case MBEDTLS_SSL_ALERT_MSG_NO_APPLICATION_PROTOCOL: return "no_application_protocol";
	case 116: return "certificate_required"; /* TLS 1.3 alert some TLS 1.2 peers send */
	default: return "alert";
	}
}

/*
 * Turns a failed mbedtls_ssl_handshake into the reason an operator needs.
 * `who` is the side we checked ("client" on the server, "server" on the client).
 */
static void handshake_reason(struct tls_conn *c, int ret, int timeout_ms, const char *name,
			     char *err, size_t err_len)
{
	const char *who = c->cfg->role == TLS_ROLE_SERVER ? "client" : "server";
	uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
	char e[128], v[384], offered[128];

	if (ret == MBEDTLS_ERR_SSL_TIMEOUT) {
		set_err(err, err_len, "TLS handshake timed out after %d ms", timeout_ms);
		return;
	}
	if (ret == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE ||
	    (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && (flags & MBEDTLS_X509_BADCERT_MISSING))) {
		set_err(err, err_len, "no client certificate");
		return;
	}
	/* Verify flags also explain MBEDTLS_ERR_SSL_BAD_HS_CERTIFICATE (wrong key usage). */
	if (flags != (uint32_t)-1 && flags) {
		verify_text(flags, v, sizeof(v));
		if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH)
			set_err(err, err_len, "server certificate does not match name %s (%s)", name,
				v);
		else if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
			set_err(err, err_len, "%s certificate not signed by the configured CA (%s)",
				who, v);
		else
			set_err(err, err_len, "%s certificate rejected: %s", who, v);
		return;
	}
	if (c->cfg->role == TLS_ROLE_SERVER && ret == MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO) {
		/* mbedTLS answers an ALPN list without frep/1 with no_application_protocol
		 * and this generic error; the captured hello tells which one it was. */
		int k = hello_alpn(c->hello, c->hello_len, offered, sizeof(offered));
		if (k > 0 && !strstr(offered, FREP_ALPN)) {
			set_err(err, err_len, "client offered ALPN %s; " FREP_ALPN " required",
				offered);
			return;
		}
	}
	if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE && c->ssl.in_msg) {
		unsigned char a = c->ssl.in_msg[1];
		set_err(err, err_len, "%s sent fatal alert %s (%u)%s", who, alert_name(a), a,
			a == MBEDTLS_SSL_ALERT_MSG_BAD_CERT || a == MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA ||
					a == MBEDTLS_SSL_ALERT_MSG_CERT_UNKNOWN
				? ": it refused our certificate"
				: "");
		return;
	}
	if (ret == MBEDTLS_ERR_SSL_CONN_EOF || ret == MBEDTLS_ERR_NET_CONN_RESET) {
		set_err(err, err_len, "%s closed the connection during the TLS handshake", who);
		return;
	}
	if ((ret == MBEDTLS_ERR_NET_RECV_FAILED || ret == MBEDTLS_ERR_NET_SEND_FAILED) &&
	    c->last_errno) {
		set_err(err, err_len, "TLS handshake: %s", strerror(c->last_errno));
		return;
	}
	set_err(err, err_len, "TLS handshake failed: %s", mbed_err(ret, e, sizeof(e)));
}

/* Subject CN of the verified peer certificate into c->cn. 0 or -1 (no or bad CN). */
static int take_peer_cn(struct tls_conn *c)
{
	const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&c->ssl);

	if (!crt)
		return -1;
	for (const mbedtls_x509_name *n = &crt->subject; n; n = n->next) {
		if (!n->oid.p || MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid))
			continue;
		if (n->val.len == 0 || n->val.len > TLS_CN_MAX)
			return -1;
		printable(c->cn, sizeof(c->cn), n->val.p, n->val.len);
		return 0;
	}
	return -1;
}

static int run_handshake(struct tls_conn *c, int timeout_ms)
{
	int ret;

	c->deadline_ms = timeout_ms > 0 ? now_ms() + (uint64_t)timeout_ms : 0;
	do
		ret = mbedtls_ssl_handshake(&c->ssl);
	while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
	c->deadline_ms = 0;
	return ret;
}

/* After a good handshake: ALPN and a usable CN. 0, or -1 with err set. */
static int check_peer(struct tls_conn *c, char *err, size_t err_len)
{
	const char *alpn = mbedtls_ssl_get_alpn_protocol(&c->ssl);

	/* mbedTLS lets a peer that offered no ALPN through; frep requires it. */
	if (!alpn || strcmp(alpn, FREP_ALPN) != 0) {
		if (c->cfg->role == TLS_ROLE_SERVER)
			set_err(err, err_len, "client offered no ALPN; " FREP_ALPN " required");
		else
			set_err(err, err_len, "server selected no ALPN; " FREP_ALPN " required");
		mbedtls_ssl_send_alert_message(&c->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
					       MBEDTLS_SSL_ALERT_MSG_NO_APPLICATION_PROTOCOL);
		return -1;
	}
	if (take_peer_cn(c) < 0) {
		set_err(err, err_len, "%s certificate has no usable subject CN",
			c->cfg->role == TLS_ROLE_SERVER ? "client" : "server");
		mbedtls_ssl_send_alert_message(&c->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
					       MBEDTLS_SSL_ALERT_MSG_BAD_CERT);
		return -1;
	}
	return 0;
}

/*
 * Waits for the first byte and checks that it opens a TLS handshake record, so
 * an HTTP request or a port scanner gets a precise reason rather than an
 * mbedTLS record-layer error. 0, or -1 with err set.
 */
static int check_first_byte(struct tls_conn *c, int timeout_ms, char *err, size_t err_len)
{
	unsigned char b;

	c->deadline_ms = timeout_ms > 0 ? now_ms() + (uint64_t)timeout_ms : 0;
	for (;;) {
		ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);
		if (n == 1)
			break;
		if (n == 0) {
			set_err(err, err_len, "closed the connection before the TLS handshake");
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			set_err(err, err_len, "before the TLS handshake: %s", strerror(errno));
			return -1;
		}
		int r = wait_fd(c, POLLIN, 0);
		if (r == 0) {
			set_err(err, err_len, "TLS handshake timed out after %d ms (no data)",
				timeout_ms);
			return -1;
		}
		if (r < 0) {
			set_err(err, err_len, "poll: %s", strerror(c->last_errno));
			return -1;
		}
	}
	if (b != TLS_RECORD_HANDSHAKE) {
		set_err(err, err_len, "plaintext, not TLS (first byte 0x%02x%s%c%s)", b,
			b >= 0x20 && b < 0x7f ? " '" : "", b >= 0x20 && b < 0x7f ? b : ' ',
			b >= 0x20 && b < 0x7f ? "'" : "");
		return -1;
	}
	return 0;
}

struct tls_conn *tls_server_handshake(struct tls_config *cfg, int fd, const char *peer,
				      int timeout_ms, char *err, size_t err_len)
{
	struct tls_conn *c;
	int ret;

	if (set_nonblock(fd) < 0) {
		set_err(err, err_len, "fcntl: %s", strerror(errno));
		close(fd);
		return NULL;
	}
	set_nodelay(fd);
	c = conn_new(cfg, fd, peer, err, err_len);
	if (!c) {
		close(fd);
		return NULL;
	}
	if (check_first_byte(c, timeout_ms, err, err_len) < 0)
		goto fail;
	c->hello = malloc(TLS_HELLO_CAPTURE);
	c->capture = c->hello != NULL;
	ret = run_handshake(c, timeout_ms);
	c->capture = false;
	if (ret) {
		handshake_reason(c, ret, timeout_ms, NULL, err, err_len);
		goto fail;
	}
	if (check_peer(c, err, err_len) < 0)
		goto fail;
	free(c->hello);
	c->hello = NULL;
	return c;
fail:
	conn_drop(c);
	return NULL;
}

/* Non-blocking connect bounded by deadline. Returns the fd or -1 with err set. */
static int connect_to(const char *host, const char *port, uint64_t deadline, char *err,
		      size_t err_len)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	int fd = -1, last = ECONNREFUSED;

	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		set_err(err, err_len, "resolve %s:%s: %s", host, port, gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			last = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			goto out;
		if (errno == EINPROGRESS) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			uint64_t now = now_ms();
			int ms = deadline > now ? (int)(deadline - now) : 0;
			int n;
			do
				n = poll(&pfd, 1, deadline ? ms : -1);
			while (n < 0 && errno == EINTR);
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			if (n == 0)
				soerr = ETIMEDOUT;
			else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
				soerr = errno;
			if (soerr == 0)
				goto out;
			last = soerr;
		} else {
			last = errno;
		}
		close(fd);
		fd = -1;
	}
	set_err(err, err_len, "connect to %s:%s: %s", host, port, strerror(last));
out:
	freeaddrinfo(res);
	return fd;
}

static void fd_peer_name(int fd, char *out, size_t out_len)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char h[NI_MAXHOST], p[NI_MAXSERV];

	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    getnameinfo((struct sockaddr *)&ss, len, h, sizeof(h), p, sizeof(p),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(out, out_len, "?");
		return;
	}
	snprintf(out, out_len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
}

struct tls_conn *tls_client_connect(struct tls_config *cfg, const char *host, const char *port,
				    const char *server_name, int timeout_ms, char *err,
				    size_t err_len)
{
	uint64_t deadline = timeout_ms > 0 ? now_ms() + (uint64_t)timeout_ms : 0;
	char peer[TLS_PEER_MAX], e[128];
	struct tls_conn *c;
	int fd, ret;

	/* The certificate is always checked against a name: without one mbedTLS
	 * 2.28 would accept any certificate from the CA. */
	if (!server_name)
		server_name = host;
	fd = connect_to(host, port, deadline, err, err_len);
	if (fd < 0)
		return NULL;
	set_nodelay(fd);
	fd_peer_name(fd, peer, sizeof(peer));
	c = conn_new(cfg, fd, peer, err, err_len);
	if (!c) {
		close(fd);
		return NULL;
	}
	if ((ret = mbedtls_ssl_set_hostname(&c->ssl, server_name))) {
		set_err(err, err_len, "server name %s: %s", server_name, mbed_err(ret, e, sizeof(e)));
		goto fail;
	}
	int left = 0;
	if (deadline) {
		uint64_t now = now_ms();
		left = deadline > now ? (int)(deadline - now) : 1;
	}
	ret = run_handshake(c, left);
	if (ret) {
		handshake_reason(c, ret, timeout_ms, server_name, err, err_len);
		goto fail;
	}
	if (check_peer(c, err, err_len) < 0)
		goto fail;
	return c;
fail:
	conn_drop(c);
	return NULL;
}

/* ---- data ------------------------------------------------------------------ */

/* Sets errno from an mbedTLS I/O error; logs what errno cannot say. */
static void io_errno(struct tls_conn *c, int ret, const char *op)
{
	char e[128];

	switch (ret) {
	case MBEDTLS_ERR_SSL_TIMEOUT:
		errno = ETIMEDOUT;
		break;
	case MBEDTLS_ERR_SSL_CONN_EOF:
	case MBEDTLS_ERR_NET_CONN_RESET:
	case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
		errno = ECONNRESET;
		break;
	case MBEDTLS_ERR_NET_RECV_FAILED:
	case MBEDTLS_ERR_NET_SEND_FAILED:
		errno = c->last_errno ? c->last_errno : EIO;
		break;
	default:
		log_warn(NULL, "peer %s: TLS %s: %s", c->peer, op, mbed_err(ret, e, sizeof(e)));
		errno = EPROTO;
		break;
	}
}

int tls_read_full(struct tls_conn *c, void *buf, size_t len)
{
	unsigned char *p = buf;
	size_t got = 0;

	while (got < len) {
		size_t want = len - got;
		if (want > INT_MAX)
			want = INT_MAX;
		int n = mbedtls_ssl_read(&c->ssl, p + got, want);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
		/* Only close_notify is a clean end: a bare TCP FIN could be a truncation. */
		if (n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY && got == 0)
			return 0;
		if (n == 0 || n == MBEDTLS_ERR_SSL_CONN_EOF) {
			errno = ECONNRESET;
			return -1;
		}
		io_errno(c, n, "read");
		return -1;
	}
	return 1;
}

int tls_write_full(struct tls_conn *c, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t done = 0;

	/* mbedtls_ssl_write takes at most one record (16 KiB) per call. */
	while (done < len) {
		size_t want = len - done;
		if (want > INT_MAX)
			want = INT_MAX;
		int n = mbedtls_ssl_write(&c->ssl, p + done, want);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		/* mbedTLS requires the same arguments again after WANT_*: we do. */
		if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE || n == 0)
			continue;
		io_errno(c, n, "write");
		return -1;
	}
	return 0;
}

void tls_set_read_timeout(struct tls_conn *c, int timeout_ms)
{
	c->read_timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
}

void tls_set_write_timeout(struct tls_conn *c, int timeout_ms)
{
	c->write_timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
}

void tls_set_deadline(struct tls_conn *c, uint64_t deadline_ms)
{
	c->deadline_ms = deadline_ms;
}

bool tls_readable(struct tls_conn *c, int timeout_ms)
{
	if (mbedtls_ssl_get_bytes_avail(&c->ssl) > 0 || mbedtls_ssl_check_pending(&c->ssl))
		return true;

	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	uint64_t deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	for (;;) {
		uint64_t now = now_ms();
		int ms = deadline > now ? (int)(deadline - now) : 0;
		int n = poll(&pfd, 1, ms);
		if (n >= 0)
			return n > 0; /* POLLHUP/POLLERR count: the read reports them */
		if (errno != EINTR)
			return true; /* let the read fail with the reason */
	}
}

int tls_fd(const struct tls_conn *c)
{
	return c->fd;
}

const char *tls_peer_cn(const struct tls_conn *c)
{
	return c->cn;
}

const char *tls_peer_addr(const struct tls_conn *c)
{
	return c->peer;
}

const char *tls_cipher(const struct tls_conn *c)
{
	return mbedtls_ssl_get_ciphersuite(&c->ssl);
}

static void tls_free(struct tls_conn *c)
{
	close(c->fd);
	mbedtls_ssl_free(&c->ssl); /* zeroizes session keys and record buffers */
	free(c->hello);
	mbedtls_platform_zeroize(c, sizeof(*c));
	free(c);
}

void tls_close(struct tls_conn *c)
{
	if (!c)
		return;
	/* Best effort, bounded: a peer that stopped reading must not hold us. */
	c->deadline_ms = now_ms() + TLS_CLOSE_NOTIFY_MS;
	mbedtls_ssl_close_notify(&c->ssl);
	tls_free(c);
}

void tls_abort(struct tls_conn *c)
{
	if (!c)
		return;
	struct linger reset = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
	tls_free(c);
}
