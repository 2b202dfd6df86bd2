/*
 * frep-client: the master daemon. Checks its command line, takes the journal
 * lock, and becomes nbdkit serving the volume through frep's plugin
 * (client/plugin.c), which replicates every write to the mirror.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin.h"
#include "log.h"
#include "nbdkit-run.h"
#include "options.h"
#include "tls.h"
#include "util.h"
#include "volume.h"

#define PROG FREP_CLIENT_PROG

enum { NBDKIT_MAX_ARGS = 16 + CLIENT_MAX_PARAMS };

/* One line, exit 2: an operator error found before the exec, as after it (plugin.c). */
static void __attribute__((format(printf, 1, 2), noreturn)) operator_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* The files the plugin opens, opened here first so that their errors exit 2 before nbdkit starts. */
static void check_files(const struct client_options *o)
{
	char err[512];
	struct volume v;
	struct tls_config *tls = tls_config_new(TLS_ROLE_CLIENT, o->cert, o->key, o->ca, NULL, err,
						sizeof(err));
	if (!tls)
		operator_error("%s", err);
	tls_config_free(tls);
	if (volume_open(&v, o->volume_name, o->paths, o->n_paths, err, sizeof(err)) < 0)
		operator_error("%s", err);
	volume_close(&v);
	const char *tls_files[][2] = {
		{ "--nbd-tls-cert", o->nbd_tls_cert },
		{ "--nbd-tls-key", o->nbd_tls_key },
		{ "--nbd-tls-ca", o->nbd_tls_ca },
	};
	for (unsigned i = 0; i < 3; i++) {
		if (!tls_files[i][1])
			continue;
		int fd = open(tls_files[i][1], O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			operator_error("%s %s: %s", tls_files[i][0], tls_files[i][1], strerror(errno));
		close(fd);
	}
}

/* The admin API's options, checked as the plugin will use them (admin_start). */
static void check_admin(const struct client_options *o)
{
	char err[512];
	struct admin_opts ao = {
		.unix_path = strcmp(o->admin, "none") == 0 ? NULL : o->admin + 5,
		.listen = o->admin_listen,
		.cert = o->admin_cert,
		.key = o->admin_key,
		.ca = o->admin_ca,
		.allow = o->admin_allow,
	};
	if ((ao.unix_path && admin_make_run_dir(ao.unix_path, err, sizeof(err)) < 0) ||
	    admin_check(&ao, err, sizeof(err)) < 0)
		operator_error("%s", err);
}

/*
 * One daemon per journal: the lock is taken here, and its fd, without
 * close-on-exec, passes through the exec to the plugin (lockfd=N), whose
 * master_open adopts it.
 */
static int take_journal_lock(const char *journal)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s.lock", journal);
	int fd = lock_file(path);
	if (fd < 0 && errno == EWOULDBLOCK)
		operator_error("--journal %s is in use by another frep-client (%s is locked)", journal,
			       path);
	if (fd < 0)
		operator_error("--journal %s: cannot create its lock file %s: %s", journal, path,
			       strerror(errno));
	if (fcntl(fd, F_SETFD, 0) < 0)
		operator_error("--journal %s: fcntl: %s", journal, strerror(errno));
	return fd;
}

/*
 * nbdkit reads its x509 files from one directory under fixed names: a
 * private temporary directory of links to the given files, which the plugin
 * removes once nbdkit has loaded them.
 */
static char *make_tls_dir(const struct client_options *o)
{
	const char *links[][2] = {
		{ o->nbd_tls_ca, "ca-cert.pem" },
		{ o->nbd_tls_cert, "server-cert.pem" },
		{ o->nbd_tls_key, "server-key.pem" },
	};
	const char *tmp = getenv("TMPDIR");
	char *dir;

	if (asprintf(&dir, "%s/frep-nbd-tls.XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0 || !mkdtemp(dir))
		operator_error("--nbd-tls-*: cannot make a temporary directory: %s", strerror(errno));
	for (unsigned i = 0; i < 3; i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", dir, links[i][1]);
		if (symlink(links[i][0], path) < 0)
			operator_error("--nbd-tls-*: linking %s: %s", path, strerror(errno));
	}
	return dir;
}

int main(int argc, char **argv)
{
	struct client_options o;
	char *nargv[NBDKIT_MAX_ARGS], plugin[PATH_MAX], lockfd[32], *tls_param = NULL;
	char host[256], port[16];
	int n = 0;

	client_options_parse(&o, argc, argv);
	log_init(PROG, (enum log_level)o.log_level);
	check_files(&o);
	int lock_fd = take_journal_lock(o.journal);
	check_admin(&o);

	nargv[n++] = "nbdkit";
	nargv[n++] = "--foreground"; /* this process (same PID) is the daemon */
	if (strncmp(o.nbd, "unix:", 5) == 0) {
		char err[512];
		if (nbdkit_prepare_unix_socket(o.nbd + 5, err, sizeof(err)) < 0)
			operator_error("%s", err);
		nargv[n++] = "--unix";
		nargv[n++] = (char *)o.nbd + 5;
	} else {
		/* Checked by client_options_parse. */
		split_host_port(o.nbd, host, sizeof(host), port, sizeof(port), NULL);
		nargv[n++] = "--ipaddr";
		nargv[n++] = host;
		nargv[n++] = "--port";
		nargv[n++] = port;
	}
	if (o.nbd_tls_cert) {
		char *dir = make_tls_dir(&o), *certs;
		if (asprintf(&certs, "--tls-certificates=%s", dir) < 0 ||
		    asprintf(&tls_param, "tlsdir=%s", dir) < 0)
			operator_error("out of memory");
		nargv[n++] = "--tls=require";
		nargv[n++] = certs;
		nargv[n++] = "--tls-verify-peer";
	}
	nbdkit_find_plugin("frep-plugin.so", FREP_PLUGIN_INSTALLED, plugin, sizeof(plugin));
	nargv[n++] = plugin;
	snprintf(lockfd, sizeof(lockfd), "lockfd=%d", lock_fd);
	nargv[n++] = lockfd;
	if (tls_param)
		nargv[n++] = tls_param;
	for (unsigned i = 0; i < o.n_params; i++)
		nargv[n++] = o.params[i];
	nargv[n] = NULL;

	char **env = nbdkit_environ();
	if (!env)
		operator_error("out of memory");
	execve(nbdkit_program, nargv, env);
	log_error(o.volume_name, "cannot run %s: %s", nbdkit_program, strerror(errno));
	return 1;
}
