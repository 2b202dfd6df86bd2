/*
 * The admin options' checks, apart from the gRPC server (admin.c) so that
 * frep-client can make them before it execs nbdkit, without gRPC.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "admin.h"
#include "util.h"

/* The whole file, NUL-terminated (gRPC wants PEM strings), or NULL with err. */
char *admin_slurp(const char *what, const char *path, char *err, size_t err_len)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0;
	if (!f) {
		snprintf(err, err_len, "%s %s: %s", what, path, strerror(errno));
		return NULL;
	}
	FILE *m = open_memstream(&buf, &len);
	char chunk[4096];
	size_t n;
	while (m && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	bool bad = ferror(f) || !m;
	fclose(f);
	if (m)
		fclose(m);
	if (bad || len == 0) {
		snprintf(err, err_len, "%s %s: %s", what, path, bad ? "read error" : "empty file");
		free(buf);
		return NULL;
	}
	return buf;
}

int admin_allow_load(const char *path, char (*allow)[STATUS_TEXT_MAX], unsigned max,
		     unsigned *n_allow, char *err, size_t err_len)
{
	FILE *f = fopen(path, "re");
	char line[512];
	unsigned lineno = 0;
	*n_allow = 0;
	if (!f) {
		snprintf(err, err_len, "--admin-allow %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		line[strcspn(line, "#\r\n")] = '\0';
		char *s = line + strspn(line, " \t"), *e = s + strlen(s);
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		if (!*s)
			continue;
		if (strlen(s) >= STATUS_TEXT_MAX || *n_allow == max) {
			snprintf(err, err_len, "--admin-allow %s line %u: %s", path, lineno,
				 *n_allow == max ? "too many identities" : "identity longer than 255 bytes");
			fclose(f);
			return -1;
		}
		snprintf(allow[(*n_allow)++], STATUS_TEXT_MAX, "%s", s);
	}
	fclose(f);
	if (*n_allow == 0) {
		snprintf(err, err_len,
			 "--admin-allow %s lists no identity: no one could use the admin API over "
			 "TLS; list one certificate CN per line",
			 path);
		return -1;
	}
	return 0;
}

/*
 * gRPC unlinks whatever socket is at the path (grpc/grpc#17122): refuse a
 * path that is not a socket, and the socket of a daemon that still answers.
 */
int admin_check_unix_path(const char *path, char *err, size_t err_len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, err_len, "--admin unix:%s: path longer than %zu bytes", path,
			 sizeof(sa.sun_path) - 1);
		return -1;
	}
	if (lstat(path, &st) != 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, err_len, "--admin unix:%s exists and is not a socket; remove it or "
			 "choose another path", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	if (live) {
		snprintf(err, err_len, "--admin unix:%s: another daemon is serving it (give each "
			 "daemon its own --admin path)", path);
		return -1;
	}
	return 0;
}

int admin_check(const struct admin_opts *o, char *err, size_t err_len)
{
	if (o->unix_path && admin_check_unix_path(o->unix_path, err, err_len) < 0)
		return -1;
	if (!o->listen) {
		if (o->cert || o->key || o->ca || o->allow) {
			snprintf(err, err_len, "--admin-cert, --admin-key, --admin-ca and --admin-allow "
				 "need --admin-listen HOST:PORT");
			return -1;
		}
		return 0;
	}
	if (!o->cert || !o->key || !o->ca || !o->allow) {
		snprintf(err, err_len, "--admin-listen needs --admin-cert, --admin-key, --admin-ca "
			 "and --admin-allow (remote admin always uses TLS with an allow list)");
		return -1;
	}
	char host[256], port[16];
	if (split_host_port(o->listen, host, sizeof(host), port, sizeof(port), NULL) < 0) {
		snprintf(err, err_len, "--admin-listen: expected HOST:PORT, got '%s'", o->listen);
		return -1;
	}
	const char *what[] = { "--admin-cert", "--admin-key", "--admin-ca" };
	const char *path[] = { o->cert, o->key, o->ca };
	for (int i = 0; i < 3; i++) {
		char *pem = admin_slurp(what[i], path[i], err, err_len);
		if (!pem)
			return -1;
		bool looks_pem = strstr(pem, "-----BEGIN ") != NULL;
		free(pem);
		if (!looks_pem) {
			snprintf(err, err_len, "%s %s: not a PEM file", what[i], path[i]);
			return -1;
		}
	}
	static char allow[ADMIN_MAX_ALLOW][STATUS_TEXT_MAX];
	unsigned n;
	return admin_allow_load(o->allow, allow, ADMIN_MAX_ALLOW, &n, err, err_len);
}


int admin_make_run_dir(const char *unix_path, char *err, size_t err_len)
{
	const char *dir = admin_run_dir();
	size_t l = strlen(dir);
	if (strncmp(unix_path, dir, l) != 0 || unix_path[l] != '/' || strchr(unix_path + l + 1, '/'))
		return 0; /* not in the run dir: the operator's path, the operator's directory */
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, err_len, "cannot create %s for the admin socket: %s (give --admin "
			 "unix:PATH, or --admin none)", dir, strerror(errno));
		return -1;
	}
	return 0;
}

int admin_refuse(struct admin_reply *r, enum admin_code code, const char *fmt, ...)
{
	va_list ap;
	r->code = code;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
	return -1;
}
