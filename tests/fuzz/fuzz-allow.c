/* Fuzz harness: the --allow file parser (server/authz.c) on arbitrary file contents. */
#include <string.h>

#include "authz.h"
#include "harness.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("fuzz-allow", LOG_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[][2] = {
		{ "db1", "master-a" },
		{ "vm.img", "CN with spaces" },
		{ "", "" },
		{ "a-b_c.d", "*" },
	};
	char err[512] = "";

	const char *path = memfile_set(size);
	memfile_write(data, size, 0);
	struct authz *a = authz_load(path, err, sizeof(err));
	if (!a) {
		/* The message names the option and the file, so the operator finds the line. */
		require(strncmp(err, "--allow ", 8) == 0 && strstr(err, path));
		return 0;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		authz_allows(a, names[i][0], names[i][1]);
	authz_free(a);
	return 0;
}
