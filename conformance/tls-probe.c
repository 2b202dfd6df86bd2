/*
 * The mirror's TLS rules (TLS-2, TLS-3, TLS-5), probed with a client that
 * breaks them on purpose. common/tls.c only makes conforming connections, so
 * these probes drive mbedTLS directly: a probe passes when the mirror never
 * answers HELLO with WELCOME, whether it refuses the handshake or closes after.
 */
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mirror.h"

enum probe {
	PROBE_NO_CERT,	   /* no client certificate */
	PROBE_NO_ALPN,	   /* no ALPN extension */
	PROBE_ALPN_H2,	   /* ALPN h2 only */
	PROBE_TLS11,	   /* TLS 1.1 at most */
	PROBE_CONFORMING,  /* everything right: the control, which must be welcomed */
};

/* A HELLO frame for the case's volume, packed as bytes to write on any transport. */
static size_t hello_frame(struct cctx *x, uint8_t *buf, size_t cap)
{
	Frep__V1__Hello h = FREP__V1__HELLO__INIT;
	uint8_t sid[16] = { 1, 2, 3 };
	h.proto_min = h.proto_max = 1;
	h.master_node = "frep-conform";
	h.volume = x->volume;
	h.volume_uuid = (ProtobufCBinaryData){ sizeof(x->uuid), x->uuid };
	h.session_id = (ProtobufCBinaryData){ sizeof(sid), sid };
	h.generation = 1;
	h.lane_count = 1;
	h.journal_size = 16 << 20;
	size_t n = cx_pack(&h.base, buf + FREP_FRAME_HDR_SIZE, cap - FREP_FRAME_HDR_SIZE);
	struct frep_frame_hdr hdr = { .version = 1, .type = FREP_MSG_HELLO, .body_len = (uint32_t)n };
	frame_hdr_encode(&hdr, buf);
	return FREP_FRAME_HDR_SIZE + n;
}

/* Did a WELCOME come back? Reads at most a header's worth. */
static bool welcomed(const uint8_t *buf, int n)
{
	return n >= (int)FREP_FRAME_HDR_SIZE && buf[5] == FREP_MSG_WELCOME;
}

/* 1: the mirror welcomed the probe; 0: it refused; -1: x->why (the probe could not run). */
static int run_probe(struct cctx *x, enum probe kind)
{
	struct conform *cf = x->cf;
	mbedtls_net_context net;
	mbedtls_ssl_context ssl;
	mbedtls_ssl_config conf;
	mbedtls_x509_crt ca, cert;
	mbedtls_pk_context key;
	mbedtls_entropy_context ent;
	mbedtls_ctr_drbg_context drbg;
	static const char *alpn_frep[] = { "frep/1", NULL }, *alpn_h2[] = { "h2", NULL };
	uint8_t buf[512];
	int rc = -1, ret;

	mbedtls_net_init(&net);
	mbedtls_ssl_init(&ssl);
	mbedtls_ssl_config_init(&conf);
	mbedtls_x509_crt_init(&ca);
	mbedtls_x509_crt_init(&cert);
	mbedtls_pk_init(&key);
	mbedtls_entropy_init(&ent);
	mbedtls_ctr_drbg_init(&drbg);
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, NULL, 0) ||
	    mbedtls_x509_crt_parse_file(&ca, cf->ca) || mbedtls_x509_crt_parse_file(&cert, cf->cert) ||
	    mbedtls_pk_parse_keyfile(&key, cf->key, NULL) ||
	    mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
					MBEDTLS_SSL_PRESET_DEFAULT)) {
		cx_fail(x, "TLS probe: cannot load %s, %s, %s", cf->ca, cf->cert, cf->key);
		goto out;
	}
	mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
	mbedtls_ssl_conf_ca_chain(&conf, &ca, NULL);
	mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_read_timeout(&conf, (uint32_t)cf->timeout_ms);
	if (kind != PROBE_NO_CERT)
		mbedtls_ssl_conf_own_cert(&conf, &cert, &key);
	if (kind != PROBE_NO_ALPN)
		mbedtls_ssl_conf_alpn_protocols(&conf, kind == PROBE_ALPN_H2 ? alpn_h2 : alpn_frep);
	if (kind == PROBE_TLS11) {
		mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_1);
		mbedtls_ssl_conf_max_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_2);
	}
	if (mbedtls_ssl_setup(&ssl, &conf) || mbedtls_ssl_set_hostname(&ssl, cf->server_name)) {
		cx_fail(x, "TLS probe: setup failed");
		goto out;
	}
	if ((ret = mbedtls_net_connect(&net, cf->host, cf->port, MBEDTLS_NET_PROTO_TCP))) {
		cx_fail(x, "TLS probe: connecting to %s:%s failed (%d)", cf->host, cf->port, ret);
		goto out;
	}
	mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, NULL, mbedtls_net_recv_timeout);
	rc = 0;
	while ((ret = mbedtls_ssl_handshake(&ssl)) != 0)
		if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE)
			goto out; /* refused during the handshake */
	size_t n = hello_frame(x, buf, sizeof(buf));
	if (mbedtls_ssl_write(&ssl, buf, n) != (int)n)
		goto out;
	ret = mbedtls_ssl_read(&ssl, buf, FREP_FRAME_HDR_SIZE);
	rc = welcomed(buf, ret) ? 1 : 0;
out:
	mbedtls_ssl_close_notify(&ssl);
	mbedtls_net_free(&net);
	mbedtls_ssl_free(&ssl);
	mbedtls_ssl_config_free(&conf);
	mbedtls_x509_crt_free(&ca);
	mbedtls_x509_crt_free(&cert);
	mbedtls_pk_free(&key);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&ent);
	return rc;
}

/* The control first: the same probe done right is welcomed, so a refusal means the rule. */
static int refused(struct cctx *x, enum probe kind, const char *what)
{
	int r = run_probe(x, PROBE_CONFORMING);
	STEP(r);
	CHECK(x, r == 1, "the control probe (a conforming handshake and HELLO) was not welcomed");
	STEP(r = run_probe(x, kind));
	CHECK(x, r == 0, "the mirror welcomed a HELLO over a connection with %s", what);
	return 0;
}

int tls_no_cert(struct cctx *x)
{
	return refused(x, PROBE_NO_CERT, "no client certificate");
}

int tls_no_alpn(struct cctx *x)
{
	return refused(x, PROBE_NO_ALPN, "no ALPN");
}

int tls_alpn_h2(struct cctx *x)
{
	return refused(x, PROBE_ALPN_H2, "ALPN h2");
}

int tls_old_version(struct cctx *x)
{
	return refused(x, PROBE_TLS11, "TLS 1.1 at most");
}

/* Plaintext: a HELLO frame straight on TCP. */
int tls_plaintext(struct cctx *x)
{
	struct conform *cf = x->cf;
	mbedtls_net_context net;
	uint8_t buf[512];
	mbedtls_net_init(&net);
	if (mbedtls_net_connect(&net, cf->host, cf->port, MBEDTLS_NET_PROTO_TCP)) {
		mbedtls_net_free(&net);
		return cx_fail(x, "connecting to %s:%s failed", cf->host, cf->port);
	}
	size_t n = hello_frame(x, buf, sizeof(buf));
	int ret = mbedtls_net_send(&net, buf, n) == (int)n
			  ? mbedtls_net_recv_timeout(&net, buf, FREP_FRAME_HDR_SIZE, (uint32_t)cf->timeout_ms)
			  : -1;
	mbedtls_net_free(&net);
	CHECK(x, !welcomed(buf, ret), "the mirror welcomed a plaintext HELLO");
	return 0;
}
