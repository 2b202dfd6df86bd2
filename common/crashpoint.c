/* Named crash points for tests (see crashpoint.h); empty unless FREP_TEST_HOOKS is defined. */
#include "crashpoint.h"

#ifdef FREP_TEST_HOOKS

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

enum crashpoint_limits { CRASH_SITE_MAX = 64 };

/* Written once under pthread_once, read-only afterwards. */
static struct {
	bool armed;
	bool malformed;
	char site[CRASH_SITE_MAX]; /* "*": every site */
	uint64_t at;		   /* the hit that crashes, >= 1 */
} crash;
static pthread_once_t crash_once = PTHREAD_ONCE_INIT;
static atomic_uint_fast64_t crash_hits;

/* splitmix64: a seed of 0, 1, 2... gives well spread hit numbers. */
static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Parses a decimal number that ends at '\0' or ':'; *end is left there. */
static bool parse_u64(const char *s, char **end, uint64_t *out)
{
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, end, 10);
	if (errno || (**end != '\0' && **end != ':'))
		return false;
	*out = v;
	return true;
}

static bool parse_spec(const char *spec)
{
	const char *colon = strchr(spec, ':');
	char *end;
	uint64_t seed, max;

	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(crash.site))
		return false;
	memcpy(crash.site, spec, (size_t)(colon - spec));
	crash.site[colon - spec] = '\0';
	const char *arg = colon + 1;
	if (strncmp(arg, "random:", 7) == 0) {
		if (!parse_u64(arg + 7, &end, &seed) || *end != ':' ||
		    !parse_u64(end + 1, &end, &max) || *end != '\0' || max == 0)
			return false;
		crash.at = 1 + mix64(seed) % max;
		return true;
	}
	return parse_u64(arg, &end, &crash.at) && *end == '\0' && crash.at >= 1;
}

static void crash_init(void)
{
	const char *spec = getenv("FREP_CRASH_AT");

	if (!spec || !*spec)
		return;
	if (!parse_spec(spec)) {
		log_error(NULL, "FREP_CRASH_AT=%s: expected SITE:N or SITE:random:SEED:MAX", spec);
		crash.malformed = true;
		return;
	}
	crash.armed = true;
	log_info(NULL, "crash point %s armed at hit %" PRIu64, crash.site, crash.at);
}

void frep_crash_point(const char *site)
{
	pthread_once(&crash_once, crash_init);
	if (crash.malformed)
		_exit(2); /* a test that cannot crash where it asked must not pass */
	if (!crash.armed || (strcmp(crash.site, "*") != 0 && strcmp(crash.site, site) != 0))
		return;
	uint64_t n = atomic_fetch_add(&crash_hits, 1) + 1;
	if (n != crash.at)
		return;
	log_error(NULL, "crash point %s hit %" PRIu64 ": crashing", site, n);
	/* The shim, when preloaded, first undoes what a power loss would lose. */
	void (*power_loss)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "crashfs_crash");
	if (power_loss)
		power_loss();
	raise(SIGKILL);
	for (;;)
		pause(); /* SIGKILL is on its way; never run past the crash point */
}

#endif
