/* Shared cmocka fixture for unit tests: a private temp dir with one file path and a stderr capture path. */
#ifndef FREP_TEST_TMPDIR_H
#define FREP_TEST_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
	char dir[64];
	char path[128];	  /* DIR/LEAF: the file under test */
	char errlog[128]; /* DIR/stderr: where a test may capture log lines */
};

/* Makes /tmp/frep-test-NAME-XXXXXX; *state owns the fixture until tmpdir_teardown. */
static inline int tmpdir_setup(void **state, const char *name, const char *leaf)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/frep-test-%s-XXXXXX", name);
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, leaf);
	snprintf(f->errlog, sizeof(f->errlog), "%s/stderr", f->dir);
	*state = f;
	return 0;
}

/* Removes every file the test left in the dir, then the dir: the test must not leave subdirs. */
static inline int tmpdir_teardown(void **state)
{
	struct fixture *f = *state;
	DIR *d = opendir(f->dir);
	struct dirent *e;
	char p[320];

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
			unlink(p);
		}
	closedir(d);
	assert_int_equal(rmdir(f->dir), 0);
	free(f);
	return 0;
}

#endif
