/*
 * Starting nbdkit with one of frep's plugins: what frep-client (which execs
 * it) and frep-server's exports (server/export.c, which spawn it) share.
 */
#ifndef FREP_NBDKIT_RUN_H
#define FREP_NBDKIT_RUN_H

#include <stddef.h>

/* The nbdkit that CMake found. */
extern const char nbdkit_program[];

/*
 * nbdkit neither replaces nor removes its unix socket. A socket file left by
 * an earlier run (kill -9) is ours to remove; anything else is not. 0, or -1
 * with err ("--nbd unix:PATH ...": the option that named it).
 */
int nbdkit_prepare_unix_socket(const char *path, char *err, size_t err_len);

/*
 * The plugin file beside this program (build tree, or installed together),
 * else installed (where CMake installs it), into out.
 */
void nbdkit_find_plugin(const char *file, const char *installed, char *out, size_t len);

/*
 * The environment for nbdkit: this process's, and in sanitizer builds the
 * runtimes the sanitized plugin needs preloaded into the uninstrumented
 * nbdkit. A malloc'd NULL-terminated array (strings malloc'd too), or NULL
 * (ENOMEM); free with nbdkit_environ_free. Reads environ: call it where no
 * other thread changes the environment (frep never does after startup).
 */
char **nbdkit_environ(void);
void nbdkit_environ_free(char **env);

#endif
