/* Metadata files: small key=value text files replaced atomically, with a CRC32C line. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crashpoint.h"
#include "meta.h"
#include "util.h"

enum { META_FILE_MAX = META_MAX_KEYS * (META_KEY_MAX + META_VAL_MAX + 2) + 64 };

void meta_init(struct meta *m)
{
	memset(m, 0, sizeof(*m));
}

const char *meta_get(const struct meta *m, const char *key)
{
	for (unsigned i = 0; i < m->n; i++)
		if (strcmp(m->kv[i].key, key) == 0)
			return m->kv[i].val;
	return NULL;
}

int meta_get_u64(const struct meta *m, const char *key, uint64_t *out)
{
	const char *v = meta_get(m, key);
	if (!v || !*v)
		return -1;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || *end)
		return -1;
	*out = x;
	return 0;
}

int meta_set(struct meta *m, const char *key, const char *val)
{
	if (strlen(key) >= META_KEY_MAX || strlen(val) >= META_VAL_MAX || strchr(val, '\n') ||
	    strchr(key, '=') || strchr(key, '\n')) {
		errno = EINVAL;
		return -1;
	}
	unsigned i;
	for (i = 0; i < m->n; i++)
		if (strcmp(m->kv[i].key, key) == 0)
			break;
	if (i == m->n) {
		if (m->n == META_MAX_KEYS) {
			errno = ENOSPC;
			return -1;
		}
		strcpy(m->kv[m->n++].key, key);
	}
	strcpy(m->kv[i].val, val);
	return 0;
}

int meta_set_u64(struct meta *m, const char *key, uint64_t val)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%" PRIu64, val);
	return meta_set(m, key, buf);
}

int meta_load(const char *path, struct meta *m)
{
	char buf[META_FILE_MAX + 1];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf));
	int e = errno;
	close(fd);
	if (n < 0) {
		errno = e;
		return -1;
	}
	if ((size_t)n > META_FILE_MAX)
		goto bad;
	buf[n] = '\0';

	char *crc_line = strstr(buf, "crc32c=");
	if (!crc_line || (crc_line != buf && crc_line[-1] != '\n'))
		goto bad;
	uint32_t want;
	if (sscanf(crc_line, "crc32c=%8" SCNx32 "\n", &want) != 1 ||
	    frep_crc32c(buf, (size_t)(crc_line - buf)) != want)
		goto bad;

	meta_init(m);
	*crc_line = '\0';
	for (char *line = buf, *next; *line; line = next) {
		next = strchr(line, '\n');
		if (!next)
			goto bad;
		*next++ = '\0';
		char *eq = strchr(line, '=');
		if (!eq)
			goto bad;
		*eq = '\0';
		if (meta_set(m, line, eq + 1) < 0)
			goto bad;
	}
	return 0;
bad:
	errno = EBADMSG;
	return -1;
}

int meta_save(const char *path, const struct meta *m)
{
	char buf[META_FILE_MAX];
	char tmp[PATH_MAX];
	size_t len = 0;
	int fd = -1, rc = -1, e = 0;

	for (unsigned i = 0; i < m->n; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s=%s\n", m->kv[i].key,
					m->kv[i].val);
	len += (size_t)snprintf(buf + len, sizeof(buf) - len, "crc32c=%08" PRIx32 "\n",
				frep_crc32c(buf, len));
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (write(fd, buf, len) != (ssize_t)len) {
		e = errno ? errno : EIO;
		goto out;
	}
	frep_crash_point("meta-write");
	if (fsync(fd) < 0 || rename(tmp, path) < 0 || fsync_parent_dir(path) < 0) {
		e = errno;
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0) {
		unlink(tmp);
		errno = e;
	}
	return rc;
}
