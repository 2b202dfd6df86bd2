/* Authorisation: which master identities may create or own which volume names (--allow FILE). */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authz.h"

enum { AUTHZ_MAX_RULES = 4096, AUTHZ_LINE_MAX = 1024 };

struct authz_rule {
	char *volume_glob;
	char *identity_glob;
};

struct authz {
	struct authz_rule *rules;
	unsigned n;
};

void authz_free(struct authz *a)
{
	if (!a)
		return;
	for (unsigned i = 0; i < a->n; i++) {
		free(a->rules[i].volume_glob);
		free(a->rules[i].identity_glob);
	}
	free(a->rules);
	free(a);
}

struct authz *authz_load(const char *path, char *err, size_t err_len)
{
	char line[AUTHZ_LINE_MAX];
	unsigned lineno = 0;
	struct authz *a = calloc(1, sizeof(*a));
	FILE *f = fopen(path, "re");

	if (!a || !f) {
		snprintf(err, err_len, "--allow %s: %s", path, strerror(errno));
		goto fail;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(err, err_len, "--allow %s:%u: line longer than %d bytes", path, lineno,
				 AUTHZ_LINE_MAX - 1);
			goto fail;
		}
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *save, *vol = strtok_r(line, " \t\r\n", &save);
		if (!vol)
			continue;
		char *id = strtok_r(NULL, " \t\r\n", &save);
		if (!id || strtok_r(NULL, " \t\r\n", &save)) {
			snprintf(err, err_len,
				 "--allow %s:%u: expected \"VOLUME-GLOB IDENTITY\" (two fields)", path,
				 lineno);
			goto fail;
		}
		if (a->n == AUTHZ_MAX_RULES) {
			snprintf(err, err_len, "--allow %s: more than %d rules", path, AUTHZ_MAX_RULES);
			goto fail;
		}
		struct authz_rule *r = realloc(a->rules, (a->n + 1) * sizeof(*r));
		if (!r)
			goto nomem;
		a->rules = r;
		r[a->n].volume_glob = strdup(vol);
		r[a->n].identity_glob = strdup(id);
		a->n++;
		if (!r[a->n - 1].volume_glob || !r[a->n - 1].identity_glob)
			goto nomem;
	}
	fclose(f);
	return a;
nomem:
	snprintf(err, err_len, "--allow %s: out of memory", path);
fail:
	if (f)
		fclose(f);
	authz_free(a);
	return NULL;
}

bool authz_allows(const struct authz *a, const char *volume, const char *identity)
{
	if (!a)
		return true;
	for (unsigned i = 0; i < a->n; i++)
		if (fnmatch(a->rules[i].volume_glob, volume, 0) == 0 &&
		    fnmatch(a->rules[i].identity_glob, identity, 0) == 0)
			return true;
	return false;
}
