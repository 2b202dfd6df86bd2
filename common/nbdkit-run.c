/* Starting nbdkit with one of frep's plugins (nbdkit-run.h). */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbdkit-run.h"

extern char **environ;

const char nbdkit_program[] = FREP_NBDKIT;

int nbdkit_prepare_unix_socket(const char *path, char *err, size_t err_len)
{
	struct stat st;
	size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;

	if (strlen(path) > max) {
		snprintf(err, err_len, "--nbd unix:%s: socket path longer than %zu bytes", path, max);
		return -1;
	}
	if (lstat(path, &st) < 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, err_len,
			 "--nbd unix:%s exists and is not a socket; remove it or choose another path",
			 path);
		return -1;
	}
	if (unlink(path) < 0) {
		snprintf(err, err_len, "--nbd: removing stale socket %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

void nbdkit_find_plugin(const char *file, const char *installed, char *out, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		snprintf(out, len, "%s/%s", dirname(exe), file);
		if (access(out, R_OK) == 0)
			return;
	}
	snprintf(out, len, "%s", installed);
}

void nbdkit_environ_free(char **env)
{
	for (char **e = env; e && *e; e++)
		free(*e);
	free(env);
}

#ifdef FREP_SANITIZER_RUNTIMES
/*
 * Sanitizer builds: nbdkit is not instrumented, so the plugin's runtimes must
 * be loaded first, ahead of any LD_PRELOAD already set (the tests' power-loss
 * shim), which stays. nbdkit's own leaks are suppressed; allocation stacks
 * stop at the function that called malloc, so the suppression (any frame in
 * nbdkit) can never match an allocation made by frep.
 */
static const struct {
	const char *name, *value;
	bool prepend;
} sanitizer_env[] = {
	{ "LD_PRELOAD", FREP_SANITIZER_RUNTIMES, true },
	{ "ASAN_OPTIONS", "malloc_context_size=2", false },
	{ "LSAN_OPTIONS", "suppressions=" FREP_LSAN_SUPPRESSIONS, false },
};
enum { N_SANITIZER_ENV = sizeof(sanitizer_env) / sizeof(sanitizer_env[0]) };

/* "NAME=VALUE" with value added to the colon-separated list old (NULL: none). */
static char *env_with(unsigned i, const char *old)
{
	char *v;
	int n;
	if (!old || !*old)
		n = asprintf(&v, "%s=%s", sanitizer_env[i].name, sanitizer_env[i].value);
	else if (sanitizer_env[i].prepend)
		n = asprintf(&v, "%s=%s:%s", sanitizer_env[i].name, sanitizer_env[i].value, old);
	else
		n = asprintf(&v, "%s=%s:%s", sanitizer_env[i].name, old, sanitizer_env[i].value);
	return n < 0 ? NULL : v;
}
#else
enum { N_SANITIZER_ENV = 0 };
#endif

char **nbdkit_environ(void)
{
	size_t n = 0, k = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + N_SANITIZER_ENV + 1, sizeof(*env));
	if (!env)
		return NULL;
#ifdef FREP_SANITIZER_RUNTIMES
	bool set[N_SANITIZER_ENV] = { false };
#endif
	for (size_t i = 0; i < n; i++) {
		char *e = NULL;
#ifdef FREP_SANITIZER_RUNTIMES
		for (unsigned s = 0; s < N_SANITIZER_ENV && !e; s++) {
			size_t len = strlen(sanitizer_env[s].name);
			if (strncmp(environ[i], sanitizer_env[s].name, len) == 0 && environ[i][len] == '=') {
				set[s] = true;
				if (!(e = env_with(s, environ[i] + len + 1)))
					goto fail;
			}
		}
#endif
		if (!e && !(e = strdup(environ[i])))
			goto fail;
		env[k++] = e;
	}
#ifdef FREP_SANITIZER_RUNTIMES
	for (unsigned s = 0; s < N_SANITIZER_ENV; s++)
		if (!set[s] && !(env[k++] = env_with(s, NULL)))
			goto fail;
#endif
	return env;
fail:
	nbdkit_environ_free(env);
	return NULL;
}
