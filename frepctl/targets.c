/*
 * Which daemons frepctl asks when neither --admin nor --connect is given:
 * the admin sockets the daemons make by default (common/admin.h),
 * server.sock and client-VOLUME.sock in /run/frep. Not every *.sock there:
 * NBD sockets may live beside them, and an HTTP/2 preface is no NBD
 * handshake (admin-api.md §6).
 */
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "admin.h"
#include "frepctl.h"

void targets_add(struct targets *t, const char *name)
{
	t->names = realloc(t->names, (t->n + 1) * sizeof(*t->names));
	t->names[t->n++] = strdup(name);
}

void targets_free(struct targets *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->names[i]);
	free(t->names);
	*t = (struct targets){ 0 };
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int admin_socket_name(const struct dirent *d)
{
	return strcmp(d->d_name, "server.sock") == 0 || fnmatch("client-?*.sock", d->d_name, 0) == 0;
}

int targets_discover(struct targets *t, char *err, size_t err_len)
{
	const char *dir = admin_run_dir(); /* $FREP_RUN_DIR, as the daemons read it */
	struct dirent **list;
	int n = scandir(dir, &list, admin_socket_name, by_name);
	if (n < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, err_len, "%s: %s", dir, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char path[PATH_MAX], target[PATH_MAX + 8];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
		/* lstat: a symlink or a regular file of that name is not a daemon's socket. */
		if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
			snprintf(target, sizeof(target), "unix:%s", path);
			targets_add(t, target);
		}
		free(list[i]);
	}
	free(list);
	return 0;
}
