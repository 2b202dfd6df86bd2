/* Unit tests of the Prometheus metrics: the text for master and mirror volumes, and the HTTP side. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "../../common/metrics.c"

enum { STATE_INSYNC = 8, STATE_REPLICATE = 6, MODE_SYNC = 2, POLICY_BLOCK = 2 };

static struct vol_status master_vol(void)
{
	struct vol_status v = { .name = "db", .role = ROLE_MASTER, .state = STATE_INSYNC };
	v.state_since_unix_ms = 1733155200123;
	v.master.committed_txid = 812;
	v.master.acked_txid = 810;
	v.master.applied_txid = 812;
	v.master.lag_tx = 2;
	v.master.lag_bytes = 8320;
	v.master.lag_seconds = 0.25;
	v.master.journal_appends = 812;
	v.master.cracks = 3;
	v.master.mode = MODE_SYNC;
	v.master.on_buffer_full = POLICY_BLOCK;
	v.master.paused = true;
	v.master.peer.connected = true;
	snprintf(v.master.peer.address, sizeof(v.master.peer.address), "127.0.0.1:7460");
	/* Label values escape backslash, double quote and newline. */
	snprintf(v.master.peer.identity, sizeof(v.master.peer.identity), "a\"b\\c\nd");
	snprintf(v.master.peer.cipher, sizeof(v.master.peer.cipher), "TLS-CHACHA20");
	v.master.peer.lanes = 1;
	v.master.peer.compression_ratio = 0.1;
	return v;
}

static struct vol_status mirror_vol(void)
{
	struct vol_status v = { .name = "web", .role = ROLE_MIRROR, .state = STATE_REPLICATE };
	v.mirror.consistent = false;
	v.mirror.consistent_txid = 77;
	v.mirror.consistent_unix_ms = 5;
	v.mirror.last_applied_txid = 77;
	v.mirror.journal_used_bytes = 4096;
	v.mirror.journal_size_bytes = 64 << 20;
	v.mirror.volume_size_bytes = 1 << 30;
	v.mirror.copy.active = true;
	v.mirror.copy.done_bytes = 100;
	v.mirror.copy.total_bytes = 1000;
	snprintf(v.mirror.owner_identity, sizeof(v.mirror.owner_identity), "master-1");
	return v;
}

/* text has line as a whole line. */
static bool has_line(const char *text, const char *line)
{
	size_t l = strlen(line);
	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && p[l] == '\n')
			return true;
	return false;
}

static void expect_lines(const char *text, const char *const *lines, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!has_line(text, lines[i]))
			fail_msg("missing line '%s' in:\n%s", lines[i], text);
}

static void test_master_text(void **state)
{
	struct vol_status v = master_vol();
	size_t len;
	char *t = metrics_format(&v, 1, &len);
	assert_non_null(t);
	assert_int_equal(strlen(t), len);
	static const char *const want[] = {
		"# TYPE frep_state gauge",
		"frep_state{volume=\"db\",state=\"INSYNC\"} 1",
		"frep_state{volume=\"db\",state=\"REPLICATE\"} 0",
		"frep_state{volume=\"db\",state=\"DETACHED\"} 0",
		"frep_role{volume=\"db\",role=\"MASTER\"} 1",
		"frep_role{volume=\"db\",role=\"MIRROR\"} 0",
		"frep_mode{volume=\"db\",mode=\"SYNC\"} 1",
		"frep_mode{volume=\"db\",mode=\"ASYNC\"} 0",
		"frep_on_buffer_full{volume=\"db\",policy=\"BLOCK\"} 1",
		"frep_state_since_timestamp_seconds{volume=\"db\"} 1733155200.123",
		"frep_committed_txid{volume=\"db\"} 812",
		"frep_lag_transactions{volume=\"db\"} 2",
		"frep_lag_bytes{volume=\"db\"} 8320",
		"frep_lag_seconds{volume=\"db\"} 0.25",
		"frep_paused{volume=\"db\"} 1",
		"frep_degraded{volume=\"db\"} 0",
		"# TYPE frep_journal_appends_total counter",
		"frep_journal_appends_total{volume=\"db\"} 812",
		"frep_cracks_total{volume=\"db\"} 3",
		"frep_peer_connected{volume=\"db\"} 1",
		"frep_peer_compression_ratio{volume=\"db\"} 0.10000000000000001",
		"frep_peer_info{volume=\"db\",address=\"127.0.0.1:7460\",identity=\"a\\\"b\\\\c\\nd\","
		"cipher=\"TLS-CHACHA20\"} 1",
		"frep_build_info{version=\"" FREP_VERSION "\"} 1",
	};
	expect_lines(t, want, sizeof(want) / sizeof(want[0]));
	/* What Status leaves out is not here either: no copy runs, no verify ran, no error. */
	assert_null(strstr(t, "frep_copy_"));
	assert_null(strstr(t, "frep_verify_"));
	assert_null(strstr(t, "frep_last_error"));
	/* Nor the mirror's figures. */
	assert_null(strstr(t, "frep_consistent"));
	assert_null(strstr(t, "frep_owner_info"));
	assert_null(strstr(t, "STATE_UNSPECIFIED"));
	free(t);
}

static void test_mirror_text(void **state)
{
	struct vol_status v = mirror_vol();
	size_t len;
	char *t = metrics_format(&v, 1, &len);
	assert_non_null(t);
	static const char *const want[] = {
		"frep_state{volume=\"web\",state=\"REPLICATE\"} 1",
		"frep_role{volume=\"web\",role=\"MIRROR\"} 1",
		"frep_consistent{volume=\"web\"} 0",
		"frep_consistent_txid{volume=\"web\"} 77",
		"frep_consistent_timestamp_seconds{volume=\"web\"} 0.005",
		"frep_applied_txid{volume=\"web\"} 77",
		"frep_journal_used_bytes{volume=\"web\"} 4096",
		"frep_journal_size_bytes{volume=\"web\"} 67108864",
		"frep_volume_size_bytes{volume=\"web\"} 1073741824",
		"frep_copy_done_bytes{volume=\"web\"} 100",
		"frep_copy_total_bytes{volume=\"web\"} 1000",
		"frep_peer_connected{volume=\"web\"} 0",
		"frep_owner_info{volume=\"web\",identity=\"master-1\"} 1",
	};
	expect_lines(t, want, sizeof(want) / sizeof(want[0]));
	assert_null(strstr(t, "frep_lag_"));
	assert_null(strstr(t, "frep_mode"));
	assert_null(strstr(t, "frep_peer_info"));
	free(t);
}

/* A family's samples follow its one HELP and TYPE, whatever the mix of volumes. */
static void test_families_once(void **state)
{
	struct vol_status v[4] = { master_vol(), mirror_vol(), master_vol(), mirror_vol() };
	snprintf(v[2].name, sizeof(v[2].name), "db2");
	snprintf(v[3].name, sizeof(v[3].name), "web2");
	v[2].verify.verify_id = 4;
	v[2].verify.mismatched_regions = 2;
	v[3].last_error.set = true;
	snprintf(v[3].last_error.code, sizeof(v[3].last_error.code), "NO_SPACE");
	v[3].last_error.time_unix_ms = 2000;
	size_t len;
	char *t = metrics_format(v, 4, &len);
	assert_non_null(t);
	char seen[256][64];
	unsigned n_seen = 0;
	const char *family = "";
	for (char *save, *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[64];
		if (sscanf(line, "# TYPE %63s", name) == 1) {
			for (unsigned i = 0; i < n_seen; i++)
				if (strcmp(seen[i], name) == 0)
					fail_msg("TYPE %s twice", name);
			assert_true(n_seen < 256);
			snprintf(seen[n_seen++], sizeof(seen[0]), "%s", name);
			family = seen[n_seen - 1];
		} else if (line[0] != '#') {
			size_t l = strcspn(line, "{ ");
			if (strlen(family) != l || strncmp(line, family, l) != 0)
				fail_msg("sample '%s' outside its family (after TYPE %s)", line, family);
		}
	}
	free(t);
	t = metrics_format(v, 4, &len);
	assert_true(has_line(t, "frep_verify_mismatched_regions{volume=\"db2\"} 2"));
	assert_null(strstr(t, "frep_verify_running{volume=\"db\"}"));
	assert_true(has_line(t, "frep_last_error_timestamp_seconds{volume=\"web2\",code=\"NO_SPACE\"} 2.000"));
	free(t);
}

/* --- HTTP ------------------------------------------------------------------------ */

static bool stub_fail;
static unsigned stub_calls;

static int stub_status(void *ctx, const char *volume, struct vol_status **out, size_t *n,
		       struct admin_reply *r)
{
	stub_calls++;
	assert_null(volume);
	if (stub_fail) {
		r->code = ADMIN_INTERNAL;
		snprintf(r->message, sizeof(r->message), "data dir /x: gone");
		return -1;
	}
	*out = calloc(1, sizeof(**out));
	**out = master_vol();
	*n = 1;
	return 0;
}

static const struct admin_ops stub_ops = { .status = stub_status };

/* The port of this process's listening TCP socket (the metrics server's). */
static int listening_port(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int port = -1;
	while (d && (e = readdir(d))) {
		int fd = atoi(e->d_name), on = 0;
		struct sockaddr_in sin;
		socklen_t l = sizeof(on), sl = sizeof(sin);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &l) == 0 && on &&
		    getsockname(fd, (struct sockaddr *)&sin, &sl) == 0 && sin.sin_family == AF_INET)
			port = ntohs(sin.sin_port);
	}
	if (d)
		closedir(d);
	return port;
}

/* One HTTP/1.0 request; the whole answer in buf (NUL-terminated), or -1 if refused. */
static int http(int port, const char *request, char *buf, size_t len)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 5 };
	size_t got = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	assert_int_equal(write(fd, request, strlen(request)), strlen(request));
	ssize_t r;
	while (got < len - 1 && (r = read(fd, buf + got, len - 1 - got)) > 0)
		got += (size_t)r;
	buf[got] = '\0';
	close(fd);
	return 0;
}

static void test_http(void **state)
{
	static char buf[1 << 16];
	char err[256];

	assert_int_equal(metrics_start("127.0.0.1:0", &stub_ops, NULL, err, sizeof(err)), 0);
	int port = listening_port();
	assert_true(port > 0);

	assert_int_equal(http(port, "GET /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "HTTP/1.1 200"));
	assert_non_null(strstr(buf, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
	assert_true(has_line(buf, "frep_state{volume=\"db\",state=\"INSYNC\"} 1"));
	assert_int_equal(stub_calls, 1);

	assert_int_equal(http(port, "GET / HTTP/1.0\r\n\r\n", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "HTTP/1.1 404"));
	assert_int_equal(http(port, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n", buf,
			      sizeof(buf)), 0);
	assert_non_null(strstr(buf, "HTTP/1.1 405"));
	assert_int_equal(stub_calls, 1);

	/* A status that fails is a 500 that says why, never a page of zeros. */
	stub_fail = true;
	assert_int_equal(http(port, "GET /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "HTTP/1.1 500"));
	assert_non_null(strstr(buf, "status: data dir /x: gone"));
	assert_null(strstr(buf, "frep_state"));
	stub_fail = false;

	metrics_stop();
	assert_int_equal(http(port, "GET /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf)), -1);
	metrics_stop(); /* twice is harmless */
}

static void test_start_errors(void **state)
{
	char err[256], spec[64];

	assert_int_equal(metrics_start("localhost", &stub_ops, NULL, err, sizeof(err)), -1);
	assert_string_equal(err, "--metrics: expected HOST:PORT, got 'localhost'");

	/* A port in use: the error names the address and the reason. */
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	snprintf(spec, sizeof(spec), "127.0.0.1:%d", ntohs(sin.sin_port));
	assert_int_equal(metrics_start(spec, &stub_ops, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, spec));
	assert_non_null(strstr(err, "cannot serve: "));
	assert_non_null(strstr(err, "in use"));
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_master_text),
		cmocka_unit_test(test_mirror_text),
		cmocka_unit_test(test_families_once),
		cmocka_unit_test(test_http),
		cmocka_unit_test(test_start_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
