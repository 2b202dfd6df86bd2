/*
 * frep-conform: tests any implementation of spec/protocol.md, playing the
 * other side. Every case names the spec clauses it checks; see
 * conformance/README.md for the options and conformance/untestable.md for the
 * clauses no wire test can check.
 */
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conform.h"
#include "log.h"
#include "master.h"
#include "mirror.h"
#include "tls.h"
#include "util.h"

int peer_script_main(int argc, char **argv);

enum { EXIT_PASS = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

static void usage(FILE *to)
{
	fprintf(to,
		"usage:\n"
		"  frep-conform mirror --target HOST:PORT --ca F --cert F --key F [OPTIONS]\n"
		"      plays a master against the mirror at HOST:PORT\n"
		"  frep-conform master --listen HOST:PORT --ca F --cert F --key F --run 'COMMAND' [OPTIONS]\n"
		"      plays a mirror against the master COMMAND starts (once per case); placeholders\n"
		"      {host} {port} {ca} {cert} {key} {dir} {nbd} are expanded in COMMAND\n"
		"  frep-conform list [mirror|master]   the cases: ID, clauses, what they check\n"
		"  frep-conform peer --connect HOST:PORT ... [SCRIPT]   the scriptable misbehaving\n"
		"      master the end-to-end tests drive (frep-conform peer --help)\n"
		"options:\n"
		"  --case PATTERN        run the cases whose ID matches (glob; repeatable; default all)\n"
		"  --server-name NAME    the mirror's certificate name (mirror; default frep-mirror)\n"
		"  --other-cert F --other-key F   a second identity from the same CA (mirror)\n"
		"  --crash-cmd CMD --restart-cmd CMD   power-cut, then restart, the peer (durability\n"
		"                        cases; master mode: {pid} is the master's process, which\n"
		"                        frep-conform waits for, then runs --restart-cmd and --run again)\n"
		"  --peer-timeout S      the peer's --heartbeat-timeout (default 30; HB-1, HB-3)\n"
		"  --frame-bound S       the peer's bound for completing a frame (default 15, FRAME-11)\n"
		"  --nbd URI             the master's NBD export (default nbd+unix:///?socket={dir}/nbd.sock)\n"
		"  --pause-cmd CMD --resume-cmd CMD   an operator's pause and resume of the master\n"
		"                        (master mode: the IDLE cases; placeholders as in COMMAND)\n"
		"  --verify-cmd CMD --verify-repair-cmd CMD   an operator's online verify of the master,\n"
		"                        without and with repair (master mode: the VFY cases)\n"
		"  --dir DIR             scratch directory for the master's files (default: a new one in /tmp)\n"
		"  --timeout S           bound of every wait for the peer (default 10)\n"
		"  --junit FILE          also write a JUnit XML report\n"
		"exit: 0 nothing failed; 1 a case failed; 2 usage or setup error\n");
}

static bool selected(const char *id, char **pats, int n)
{
	if (n == 0)
		return true;
	for (int i = 0; i < n; i++)
		if (fnmatch(pats[i], id, 0) == 0 || strcmp(pats[i], id) == 0)
			return true;
	return false;
}

/* XML attribute text: the reasons quote messages from the peer. */
static void xml_escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		default:
			if ((unsigned char)*s >= 0x20 || *s == '\t')
				fputc(*s, f);
		}
	}
}

struct result {
	const struct conform_case *c;
	enum case_result r;
	double secs;
	char why[768];
};

static int parse_secs(const char *opt, const char *s, int *ms)
{
	char *end;
	double v = strtod(s, &end);
	if (*end || end == s || v <= 0 || v > 3600) {
		fprintf(stderr, "frep-conform: %s: expected seconds (0..3600), got '%s'\n", opt, s);
		return -1;
	}
	*ms = (int)(v * 1000);
	return 0;
}

/* The mirror still serves others after a case: a HELLO on a name never created. */
static int mirror_alive(struct conform *cf, char *why, size_t why_len)
{
	struct cctx x = { .cf = cf, .generation = 1, .volume_size = 1 << 20 };
	snprintf(x.volume, sizeof(x.volume), "cf%08x-alive", cf->run_id);
	random_bytes(x.uuid, sizeof(x.uuid));
	int rc = m_open(&x, NULL);
	if (rc < 0)
		snprintf(why, why_len, "%.400s", x.why);
	if (x.p.c)
		cx_close(&x);
	return rc;
}

static enum case_result run_one(struct conform *cf, const struct conform_case *c, char *why,
				size_t why_len)
{
	struct cctx x = { .cf = cf, .kase = c, .generation = 1, .volume_size = 1 << 20 };
	cf->case_no++;
	snprintf(x.volume, sizeof(x.volume), "cf%08x-%u", cf->run_id, cf->case_no);
	random_bytes(x.uuid, sizeof(x.uuid));
	why[0] = '\0';
	int rc = 0;
	if (c->durability && (!cf->crash_cmd || !cf->restart_cmd)) {
		snprintf(why, why_len, "needs --crash-cmd and --restart-cmd");
		return CASE_SKIP;
	}
	if (c->role == ROLE_MASTER)
		rc = master_start(&x);
	if (rc == 0)
		rc = c->run(&x);
	if (x.p.c)
		cx_abort(&x);
	cx_close_lanes(&x);
	/* MSG-5: whatever the mirror did, the master lives on and serves its volume. */
	if (c->role == ROLE_MASTER && rc == 0)
		rc = master_alive(&x);
	if (c->role == ROLE_MASTER)
		master_end(&x, rc == 0);
	if (rc < 0) {
		bool skip = !strncmp(x.why, "skip: ", 6);
		size_t skip_len = skip ? 6 : 0;
		memcpy(why, x.why + skip_len, why_len < sizeof(x.why) - skip_len ? why_len : sizeof(x.why) - skip_len);
		why[why_len - 1] = '\0';
		return skip ? CASE_SKIP : CASE_FAIL;
	}
	if (c->role == ROLE_MIRROR) {
		char a[512];
		if (mirror_alive(cf, a, sizeof(a)) < 0) {
			snprintf(why, why_len, "the mirror stopped serving after this case (MSG-5): %.400s", a);
			return CASE_FAIL;
		}
	}
	return CASE_PASS;
}

static void add_cases(const struct conform_case **all, size_t *n, const struct conform_case *t)
{
	for (; t->id; t++)
		all[(*n)++] = t;
}

static size_t all_cases(enum case_role role, const struct conform_case **all)
{
	size_t n = 0;
	if (role == ROLE_MIRROR) {
		add_cases(all, &n, mirror_cases);
		add_cases(all, &n, mirror_matrix_cases());
	} else {
		add_cases(all, &n, master_cases);
		add_cases(all, &n, master_matrix_cases());
	}
	return n;
}

enum { MAX_CASES = 1024 };

static int list_cases(int argc, char **argv)
{
	static const struct conform_case *all[MAX_CASES];
	for (int role = ROLE_MIRROR; role <= ROLE_MASTER; role++) {
		if (argc > 2 && strcmp(argv[2], role == ROLE_MIRROR ? "mirror" : "master"))
			continue;
		size_t n = all_cases((enum case_role)role, all);
		for (size_t i = 0; i < n; i++)
			printf("%s\t%s\t%s%s\n", all[i]->id, all[i]->clauses, all[i]->title,
			       all[i]->durability ? " (durability)" : "");
	}
	return EXIT_PASS;
}

static int write_junit(const char *path, enum case_role role, const struct result *res, size_t n,
		       unsigned failed, unsigned skipped, double total)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "frep-conform: --junit %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
	fprintf(f, "<testsuite name=\"frep-conform %s\" tests=\"%zu\" failures=\"%u\" skipped=\"%u\" "
		   "time=\"%.3f\">\n", role == ROLE_MIRROR ? "mirror" : "master", n, failed, skipped, total);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "  <testcase classname=\"%s\" name=\"", role == ROLE_MIRROR ? "mirror" : "master");
		xml_escaped(f, res[i].c->id);
		fprintf(f, "\" time=\"%.3f\">\n    <properties><property name=\"clauses\" value=\"",
			res[i].secs);
		xml_escaped(f, res[i].c->clauses);
		fprintf(f, "\"/></properties>\n");
		if (res[i].r != CASE_PASS) {
			fprintf(f, "    <%s message=\"", res[i].r == CASE_FAIL ? "failure" : "skipped");
			xml_escaped(f, res[i].why);
			fprintf(f, "\"/>\n");
		}
		fprintf(f, "  </testcase>\n");
	}
	fprintf(f, "</testsuite>\n");
	return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "target", required_argument, NULL, 't' },
		{ "listen", required_argument, NULL, 'l' },
		{ "ca", required_argument, NULL, 'A' },
		{ "cert", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'K' },
		{ "server-name", required_argument, NULL, 'n' },
		{ "other-cert", required_argument, NULL, 'o' },
		{ "other-key", required_argument, NULL, 'O' },
		{ "case", required_argument, NULL, 'c' },
		{ "crash-cmd", required_argument, NULL, 'x' },
		{ "restart-cmd", required_argument, NULL, 'r' },
		{ "peer-timeout", required_argument, NULL, 'p' },
		{ "frame-bound", required_argument, NULL, 'f' },
		{ "run", required_argument, NULL, 'R' },
		{ "nbd", required_argument, NULL, 'N' },
		{ "pause-cmd", required_argument, NULL, 'P' },
		{ "resume-cmd", required_argument, NULL, 'U' },
		{ "verify-cmd", required_argument, NULL, 'V' },
		{ "verify-repair-cmd", required_argument, NULL, 'W' },
		{ "dir", required_argument, NULL, 'd' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "junit", required_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct result res[MAX_CASES];
	static const struct conform_case *all[MAX_CASES];
	static char *pats[MAX_CASES];
	struct conform cf = {
		.server_name = "frep-mirror",
		.timeout_ms = 10000,
		.peer_timeout_ms = 30000,
		.frame_bound_ms = 15000,
		.listen_fd = -1,
	};
	const char *addr = NULL, *junit = NULL, *other_cert = NULL, *other_key = NULL;
	char host[256], port[32], err[256];
	int npats = 0, opt;

	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "peer"))
		return peer_script_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "list"))
		return list_cases(argc, argv);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return EXIT_PASS;
	}
	if (!strcmp(argv[1], "mirror"))
		cf.role = ROLE_MIRROR;
	else if (!strcmp(argv[1], "master"))
		cf.role = ROLE_MASTER;
	else {
		fprintf(stderr, "frep-conform: unknown command '%s': mirror, master, list or peer\n", argv[1]);
		return EXIT_USAGE;
	}
	log_init("frep-conform", LOG_ERROR);
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 't': addr = optarg; break;
		case 'l': addr = optarg; break;
		case 'A': cf.ca = optarg; break;
		case 'C': cf.cert = optarg; break;
		case 'K': cf.key = optarg; break;
		case 'n': cf.server_name = optarg; break;
		case 'o': other_cert = optarg; break;
		case 'O': other_key = optarg; break;
		case 'c':
			if (npats < MAX_CASES)
				pats[npats++] = optarg;
			break;
		case 'x': cf.crash_cmd = optarg; break;
		case 'r': cf.restart_cmd = optarg; break;
		case 'p':
			if (parse_secs("--peer-timeout", optarg, &cf.peer_timeout_ms) < 0)
				return EXIT_USAGE;
			break;
		case 'f':
			if (parse_secs("--frame-bound", optarg, &cf.frame_bound_ms) < 0)
				return EXIT_USAGE;
			break;
		case 'R': cf.run_cmd = optarg; break;
		case 'N': cf.nbd_uri = optarg; break;
		case 'P': cf.pause_cmd = optarg; break;
		case 'U': cf.resume_cmd = optarg; break;
		case 'V': cf.verify_cmd = optarg; break;
		case 'W': cf.verify_repair_cmd = optarg; break;
		case 'd': cf.scratch = optarg; break;
		case 'T':
			if (parse_secs("--timeout", optarg, &cf.timeout_ms) < 0)
				return EXIT_USAGE;
			break;
		case 'j': junit = optarg; break;
		case 'h': usage(stdout); return EXIT_PASS;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "frep-conform: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	const char *what = cf.role == ROLE_MIRROR ? "--target" : "--listen";
	if (!addr || !cf.ca || !cf.cert || !cf.key) {
		fprintf(stderr, "frep-conform: %s, --ca, --cert and --key are required\n", what);
		return EXIT_USAGE;
	}
	if (split_host_port(addr, host, sizeof(host), port, sizeof(port), NULL) < 0) {
		fprintf(stderr, "frep-conform: %s: expected HOST:PORT, got '%s'\n", what, addr);
		return EXIT_USAGE;
	}
	if (!other_cert != !other_key) {
		fprintf(stderr, "frep-conform: --other-cert and --other-key go together\n");
		return EXIT_USAGE;
	}
	if (!cf.crash_cmd != !cf.restart_cmd) {
		fprintf(stderr, "frep-conform: --crash-cmd and --restart-cmd go together\n");
		return EXIT_USAGE;
	}
	if (!cf.pause_cmd != !cf.resume_cmd) {
		fprintf(stderr, "frep-conform: --pause-cmd and --resume-cmd go together\n");
		return EXIT_USAGE;
	}
	if (cf.role == ROLE_MASTER && !cf.run_cmd) {
		fprintf(stderr, "frep-conform: master: --run 'COMMAND' is required (it starts the master "
				"under test)\n");
		return EXIT_USAGE;
	}
	cf.host = host;
	cf.port = port;
	enum tls_role tr = cf.role == ROLE_MIRROR ? TLS_ROLE_CLIENT : TLS_ROLE_SERVER;
	if (!(cf.tls = tls_config_new(tr, cf.cert, cf.key, cf.ca, NULL, err, sizeof(err)))) {
		fprintf(stderr, "frep-conform: %s\n", err);
		return EXIT_USAGE;
	}
	if (other_cert &&
	    !(cf.tls_other = tls_config_new(tr, other_cert, other_key, cf.ca, NULL, err, sizeof(err)))) {
		fprintf(stderr, "frep-conform: --other-cert: %s\n", err);
		return EXIT_USAGE;
	}
	random_bytes(&cf.run_id, sizeof(cf.run_id));
	if (cf.role == ROLE_MASTER && master_setup(&cf) < 0)
		return EXIT_USAGE;

	size_t n = all_cases(cf.role, all), nres = 0;
	unsigned passed = 0, failed = 0, skipped = 0;
	uint64_t t0 = now_ms();
	for (size_t i = 0; i < n; i++) {
		if (!selected(all[i]->id, pats, npats))
			continue;
		struct result *r = &res[nres++];
		uint64_t s = now_ms();
		r->c = all[i];
		r->r = run_one(&cf, all[i], r->why, sizeof(r->why));
		r->secs = (double)(now_ms() - s) / 1000;
		static const char *const word[] = { "PASS", "FAIL", "SKIP" };
		printf("%s %s [%s] %s%s%s\n", word[r->r], r->c->id, r->c->clauses, r->c->title,
		       r->r == CASE_PASS ? "" : ": ", r->r == CASE_PASS ? "" : r->why);
		fflush(stdout);
		passed += r->r == CASE_PASS;
		failed += r->r == CASE_FAIL;
		skipped += r->r == CASE_SKIP;
	}
	if (nres == 0) {
		fprintf(stderr, "frep-conform: no case matches the --case patterns (frep-conform list)\n");
		return EXIT_USAGE;
	}
	double total = (double)(now_ms() - t0) / 1000;
	printf("%u passed, %u failed, %u skipped (%zu cases, %.1f s)\n", passed, failed, skipped, nres,
	       total);
	if (junit && write_junit(junit, cf.role, res, nres, failed, skipped, total) < 0)
		return EXIT_USAGE;
	if (cf.role == ROLE_MASTER)
		master_teardown(&cf);
	tls_config_free(cf.tls);
	tls_config_free(cf.tls_other);
	return failed ? EXIT_FAILED : EXIT_PASS;
}
