/* frepctl: the admin CLI of frep-server and frep-client, over their gRPC admin API. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "frepctl.h"
#include "util.h"

static const char usage[] =
	"Usage: " PROG " [--admin unix:PATH | --connect HOST:PORT --ca FILE --cert FILE --key FILE\n"
	"                [--server-name NAME]] [--json] COMMAND\n"
	"\n"
	"Commands:\n"
	"  status [VOLUME]             every volume, or one: role, state, peer, lag, progress\n"
	"  watch [VOLUME]              the current state, then one line per event, until\n"
	"                              interrupted (like drbdsetup events2)\n"
	"  pause VOLUME                suspend sequencing (INSYNC -> IDLE); persists\n"
	"  resume VOLUME               resume sequencing (IDLE -> INSYNC)\n"
	"  resync VOLUME --full [--wait]  copy every allocated block again\n"
	"  set-rate VOLUME RATE        copy and verify rate, bytes/s with K, M, G suffixes\n"
	"                              (50M); 0 = unlimited; persists\n"
	"  verify VOLUME [--repair] [--wait]  compare master and mirror by checksums;\n"
	"                              --repair resends mismatching regions\n"
	"\n"
	"Mirror commands (frep-server):\n"
	"  snapshot create VOLUME [NAME]  the mirror volume as of its latest consistent\n"
	"                              TXID, kept while replication goes on (default NAME\n"
	"                              snap-YYYYMMDD-HHMMSS)\n"
	"  snapshot list [VOLUME]      name, kind, TXID, age, space, valid or invalid, export\n"
	"  snapshot delete VOLUME NAME ends its export and frees its space\n"
	"  export VOLUME[@SNAPSHOT] --nbd unix:PATH|HOST:PORT  serve the snapshot read-only\n"
	"                              over NBD, export name VOLUME@SNAPSHOT; without\n"
	"                              @SNAPSHOT, an implicit snapshot of the latest\n"
	"                              consistent state (export-YYYYMMDD-HHMMSS)\n"
	"  unexport VOLUME[@SNAPSHOT]  end the export (its NBD clients are disconnected);\n"
	"                              without @SNAPSHOT, the implicit one, which is deleted\n"
	"  promote VOLUME [--force]    fail over: the mirror's copy becomes a primary at a new\n"
	"                              epoch, as of the last TXID it holds (every one it\n"
	"                              acknowledged); serve it with frep-client --adopt. Refused\n"
	"                              while its master is connected or the copy is\n"
	"                              inconsistent; --force disconnects and fences the\n"
	"                              master, or promotes the pre-resync snapshot instead\n"
	"  demote VOLUME [--force] [--mirror-admin unix:PATH]  fail back, on the old master's\n"
	"                              host: its fenced frep-client hands its copy to the\n"
	"                              host's frep-server as a mirror of the new primary (the\n"
	"                              writes it discards kept as snapshot pre-demote); the\n"
	"                              fail-back then resends only what either side changed.\n"
	"                              --force: a master no promotion fenced (a whole copy)\n"
	"  switchover VOLUME [--mirror-admin unix:PATH]  planned role swap, on the master's\n"
	"                              host, INSYNC: writes stop, the mirror's copy becomes\n"
	"                              the primary with nothing lost and nothing to copy, and\n"
	"                              this copy its mirror; local NBD clients are disconnected\n"
	"  adopt VOLUME --handoff PATH  frep-server takes a copy a demote handed over, if it\n"
	"                              could not at the time\n"
	"\n"
	"Options:\n"
	"  --admin unix:PATH           the daemon's admin socket\n"
	"  --connect HOST:PORT         a daemon's --admin-listen, over TLS with the admin\n"
	"                              certificate --cert, its key --key, and --ca, the CA\n"
	"                              that signed the daemon's certificate\n"
	"  --server-name NAME          the name the daemon's certificate must carry\n"
	"                              (default: HOST)\n"
	"  --json                      machine-readable output: one JSON document; watch\n"
	"                              prints one JSON object per line\n"
	"  --nbd unix:PATH|HOST:PORT   where export serves (PATH absolute; its directory\n"
	"                              is created if missing)\n"
	"  --wait                      follow the resync or verify to its end, with a\n"
	"                              progress bar on a terminal\n"
	"  --help, --version\n"
	"\n"
	"Without --admin or --connect, frepctl asks every local daemon: /run/frep/server.sock\n"
	"and /run/frep/client-*.sock ($FREP_RUN_DIR overrides /run/frep), and sends a\n"
	"command on VOLUME to the daemon that has it (its master, if both roles run here).\n"
	"\n"
	"Exit status: 0 ok; 1 the operation failed (the daemon refused it: unknown volume,\n"
	"wrong state, bad argument, permission denied; verify --wait found regions that\n"
	"differ and were not repaired, or the verify stopped; a watcher too slow to keep\n"
	"up was dropped); 2 usage; 3 a daemon could not be reached (no socket, stale\n"
	"socket, TLS refused, no answer in time, or it shut down). watch exits 0 on\n"
	"SIGINT and SIGTERM.\n";

#define bad_arg(...) usage_error(PROG, __VA_ARGS__)
#define COMMANDS "status, watch, pause, resume, resync, set-rate, verify, snapshot, export, unexport, promote, demote, switchover, adopt"

int report(const struct ctl *c, const struct rpc_conn *conn, struct rpc_result *res)
{
	if (conn)
		rpc_explain(conn, res);
	int rc = rpc_exit_code(res->code);
	const char *subject = c->subject ? c->subject : c->volume;
	fprintf(stderr, PROG ": %s%s%s: ", c->cmd, subject ? " " : "", subject ? subject : "");
	/* A command on a volume went to the one daemon that has it: the volume says which. */
	if (conn && (rc == EXIT_UNREACHABLE || (!c->volume && c->targets->n > 1)))
		fprintf(stderr, "%s: ", rpc_target(conn));
	fprintf(stderr, "%s: %s\n", rpc_code_name(res->code), res->details);
	return rc;
}

int exit_worse(int a, int b)
{
	/* A daemon that did not answer may have held the answer: that outranks a refusal. */
	if (a == EXIT_UNREACHABLE || b == EXIT_UNREACHABLE)
		return EXIT_UNREACHABLE;
	return a > b ? a : b;
}

void print_json(struct json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	json_object_put(o);
}

struct args {
	const char *admin, *connect, *nbd;
	struct rpc_tls tls;
	bool json, full, wait, repair, force;
	const char *cmd;
	const char *mirror_admin, *handoff;
	const char *pos[3]; /* the command's own arguments */
	int npos;
};

static void parse_args(struct args *a, int argc, char **argv)
{
	enum { OPT_ADMIN = 256, OPT_CONNECT, OPT_CA, OPT_CERT, OPT_KEY, OPT_SERVER_NAME, OPT_JSON,
	       OPT_FULL, OPT_WAIT, OPT_REPAIR, OPT_NBD, OPT_FORCE, OPT_MIRROR_ADMIN, OPT_HANDOFF };
	static const struct option opts[] = {
		{ "admin", required_argument, NULL, OPT_ADMIN },
		{ "connect", required_argument, NULL, OPT_CONNECT },
		{ "ca", required_argument, NULL, OPT_CA },
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "server-name", required_argument, NULL, OPT_SERVER_NAME },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "full", no_argument, NULL, OPT_FULL },
		{ "wait", no_argument, NULL, OPT_WAIT },
		{ "repair", no_argument, NULL, OPT_REPAIR },
		{ "nbd", required_argument, NULL, OPT_NBD },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "mirror-admin", required_argument, NULL, OPT_MIRROR_ADMIN },
		{ "handoff", required_argument, NULL, OPT_HANDOFF },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	memset(a, 0, sizeof(*a));
	opterr = 0;
	/* Options may come before or after the command: "frepctl status --json" works. */
	for (;;) {
		int o = getopt_long(argc, argv, "", opts, NULL);
		if (o == -1)
			break;
		switch (o) {
		case OPT_ADMIN:
			if (strncmp(optarg, "unix:", 5) != 0 || !optarg[5])
				bad_arg("--admin: expected unix:PATH, got '%s'", optarg);
			a->admin = optarg;
			break;
		case OPT_CONNECT: a->connect = optarg; break;
		case OPT_CA: a->tls.ca = optarg; break;
		case OPT_CERT: a->tls.cert = optarg; break;
		case OPT_KEY: a->tls.key = optarg; break;
		case OPT_SERVER_NAME: a->tls.server_name = optarg; break;
		case OPT_JSON: a->json = true; break;
		case OPT_FULL: a->full = true; break;
		case OPT_WAIT: a->wait = true; break;
		case OPT_REPAIR: a->repair = true; break;
		case OPT_NBD: a->nbd = optarg; break;
		case OPT_FORCE: a->force = true; break;
		case OPT_MIRROR_ADMIN:
			if (strncmp(optarg, "unix:", 5) != 0 || !optarg[5])
				bad_arg("--mirror-admin: expected unix:PATH, got '%s'", optarg);
			a->mirror_admin = optarg;
			break;
		case OPT_HANDOFF: a->handoff = optarg; break;
		case 'h': fputs(usage, stdout); exit(0);
		case 'V': printf(PROG " %s\n", FREP_VERSION); exit(0);
		case ':': bad_arg("%s needs a value", argv[optind - 1]);
		default: bad_arg("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		bad_arg("a command is required (" COMMANDS ")");
	a->cmd = argv[optind++];
	for (; optind < argc; optind++) {
		if (a->npos == 3)
			bad_arg("%s: unexpected argument '%s'", a->cmd, argv[optind]);
		a->pos[a->npos++] = argv[optind];
	}
	if (a->admin && a->connect)
		bad_arg("--admin and --connect exclude each other");
	bool any_tls = a->tls.ca || a->tls.cert || a->tls.key || a->tls.server_name;
	if (a->connect && !(a->tls.ca && a->tls.cert && a->tls.key))
		bad_arg("--connect needs --ca, --cert and --key (the admin API is TLS-only over TCP)");
	if (!a->connect && any_tls)
		bad_arg("--ca, --cert, --key and --server-name go with --connect");
	if (a->connect && !strchr(a->connect, ':'))
		bad_arg("--connect: expected HOST:PORT, got '%s'", a->connect);
}

/* The command's arguments: exactly min..max positional ones, and only its own flags. */
static void want(const struct args *a, int min, int max, const char *synopsis, bool full, bool wait,
		 bool repair)
{
	if (a->npos < min)
		bad_arg("%s: missing argument (%s)", a->cmd, synopsis);
	if (a->npos > max)
		bad_arg("%s: unexpected argument '%s' (%s)", a->cmd, a->pos[max], synopsis);
	if ((a->full && !full) || (a->wait && !wait) || (a->repair && !repair))
		bad_arg("%s: %s does not apply (%s)", a->cmd,
			a->full && !full ? "--full" : a->wait && !wait ? "--wait" : "--repair", synopsis);
}

int main(int argc, char **argv)
{
	struct args a;
	parse_args(&a, argc, argv);

	uint64_t rate = 0;
	const char *cmd = a.cmd, *snapshot = NULL, *subject = NULL;
	char volume[256], cmdline[64];
	bool mirror = false;
	if (a.force && strcmp(a.cmd, "promote") != 0 && strcmp(a.cmd, "demote") != 0)
		bad_arg("%s: --force goes with promote and demote", a.cmd);
	if (a.mirror_admin && strcmp(a.cmd, "demote") != 0 && strcmp(a.cmd, "adopt") != 0 &&
	    strcmp(a.cmd, "switchover") != 0)
		bad_arg("%s: --mirror-admin goes with demote, switchover and adopt", a.cmd);
	if (a.handoff && strcmp(a.cmd, "adopt") != 0)
		bad_arg("%s: --handoff goes with adopt (adopt VOLUME --handoff PATH)", a.cmd);
	if (a.nbd && strcmp(a.cmd, "export") != 0)
		bad_arg("%s: --nbd goes with export (export VOLUME[@SNAPSHOT] --nbd ADDRESS)", a.cmd);
	if (!strcmp(cmd, "status") || !strcmp(cmd, "watch")) {
		want(&a, 0, 1, !strcmp(cmd, "status") ? "status [VOLUME]" : "watch [VOLUME]", false, false,
		     false);
	} else if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume")) {
		want(&a, 1, 1, !strcmp(cmd, "pause") ? "pause VOLUME" : "resume VOLUME", false, false, false);
	} else if (!strcmp(cmd, "resync")) {
		want(&a, 1, 1, "resync VOLUME --full [--wait]", true, true, false);
		/* The only resync there is today copies everything: say so rather than send a request
		 * the daemon must refuse (INVALID_ARGUMENT). */
		if (!a.full)
			bad_arg("resync: --full is required (resync VOLUME --full [--wait]; a crack already "
				"resyncs only the dirty regions on its own)");
	} else if (!strcmp(cmd, "set-rate")) {
		want(&a, 2, 2, "set-rate VOLUME RATE", false, false, false);
		if (parse_size(a.pos[1], &rate) < 0)
			bad_arg("set-rate: expected RATE in bytes per second with K, M, G suffixes (50M; 0 = "
				"unlimited), got '%s'", a.pos[1]);
	} else if (!strcmp(cmd, "verify")) {
		want(&a, 1, 1, "verify VOLUME [--repair] [--wait]", false, true, true);
	} else if (!strcmp(cmd, "snapshot")) {
		static const char syn[] = "snapshot create VOLUME [NAME], snapshot list [VOLUME], "
					  "snapshot delete VOLUME NAME";
		want(&a, 1, 3, syn, false, false, false);
		const char *sub = a.pos[0];
		if (!strcmp(sub, "create") && a.npos >= 2)
			snapshot = a.npos == 3 ? a.pos[2] : NULL;
		else if (!strcmp(sub, "delete") && a.npos == 3)
			snapshot = a.pos[2];
		else if (!(!strcmp(sub, "list") && a.npos <= 2))
			bad_arg("snapshot %s: expected %s", sub, syn);
		snprintf(cmdline, sizeof(cmdline), "snapshot %s", sub);
		cmd = cmdline;
		/* The VOLUME argument comes after the subcommand. */
		a.pos[0] = a.npos >= 2 ? a.pos[1] : NULL;
		a.npos = a.npos >= 2 ? 1 : 0;
		mirror = true;
	} else if (!strcmp(cmd, "export") || !strcmp(cmd, "unexport")) {
		bool ex = !strcmp(cmd, "export");
		const char *syn = ex ? "export VOLUME[@SNAPSHOT] --nbd unix:PATH|HOST:PORT"
				     : "unexport VOLUME[@SNAPSHOT]";
		want(&a, 1, 1, syn, false, false, false);
		if (ex && !a.nbd)
			bad_arg("export: --nbd is required (%s)", syn);
		/* VOLUME@SNAPSHOT: '@' is in neither name, so the first one splits them. */
		const char *at = strchr(a.pos[0], '@');
		size_t vlen = at ? (size_t)(at - a.pos[0]) : strlen(a.pos[0]);
		if (!vlen || vlen >= sizeof(volume) || (at && !at[1]))
			bad_arg("%s: expected VOLUME or VOLUME@SNAPSHOT, got '%s'", cmd, a.pos[0]);
		snprintf(volume, sizeof(volume), "%.*s", (int)vlen, a.pos[0]);
		snapshot = at ? at + 1 : NULL;
		subject = a.pos[0];
		a.pos[0] = volume;
		mirror = true;
	} else if (!strcmp(cmd, "promote")) {
		want(&a, 1, 1, "promote VOLUME [--force]", false, false, false);
		mirror = true;
	} else if (!strcmp(cmd, "demote")) {
		want(&a, 1, 1, "demote VOLUME [--force] [--mirror-admin unix:PATH]", false, false, false);
	} else if (!strcmp(cmd, "switchover")) {
		want(&a, 1, 1, "switchover VOLUME [--mirror-admin unix:PATH]", false, false, false);
	} else if (!strcmp(cmd, "adopt")) {
		want(&a, 1, 1, "adopt VOLUME --handoff PATH", false, false, false);
		if (!a.handoff)
			bad_arg("adopt: --handoff is required (adopt VOLUME --handoff PATH)");
		mirror = true;
	} else {
		bad_arg("unknown command '%s' (" COMMANDS ")", cmd);
	}

	struct targets targets = { 0 };
	struct ctl c = { .cmd = cmd, .volume = a.npos ? a.pos[0] : NULL, .json = a.json,
			 .targets = &targets, .subject = subject, .mirror = mirror };
	char err[512];
	if (a.admin || a.connect) {
		targets_add(&targets, a.admin ? a.admin : a.connect);
	} else {
		c.discovered = true;
		if (targets_discover(&targets, err, sizeof(err)) < 0) {
			fprintf(stderr, PROG ": %s\n", err);
			return EXIT_UNREACHABLE;
		}
		if (targets.n == 0) {
			fprintf(stderr, PROG ": no frep admin socket in %s (server.sock, client-*.sock): no "
					"daemon runs here, or use --admin or --connect\n",
				admin_run_dir());
			return EXIT_UNREACHABLE;
		}
	}
	c.conns = calloc(targets.n, sizeof(*c.conns));
	for (size_t i = 0; i < targets.n; i++) {
		c.conns[i] = rpc_open(targets.names[i], a.connect ? &a.tls : NULL, err, sizeof(err));
		if (!c.conns[i]) /* only the PEM files can fail here: an operator error */
			bad_arg("%s", err);
	}

	int rc;
	if (!strcmp(cmd, "status"))
		rc = cmd_status(&c);
	else if (!strcmp(cmd, "watch"))
		rc = cmd_watch(&c);
	else if (!strcmp(cmd, "pause"))
		rc = cmd_volume(&c, "Pause");
	else if (!strcmp(cmd, "resume"))
		rc = cmd_volume(&c, "Resume");
	else if (!strcmp(cmd, "resync"))
		rc = cmd_resync(&c, a.full, a.wait);
	else if (!strcmp(cmd, "set-rate"))
		rc = cmd_set_rate(&c, rate);
	else if (!strcmp(cmd, "snapshot create"))
		rc = cmd_snapshot_create(&c, snapshot);
	else if (!strcmp(cmd, "snapshot list"))
		rc = cmd_snapshot_list(&c);
	else if (!strcmp(cmd, "snapshot delete"))
		rc = cmd_snapshot_delete(&c, snapshot);
	else if (!strcmp(cmd, "export"))
		rc = cmd_export(&c, snapshot, a.nbd);
	else if (!strcmp(cmd, "unexport"))
		rc = cmd_unexport(&c, snapshot);
	else if (!strcmp(cmd, "verify"))
		rc = cmd_verify(&c, a.repair, a.wait);
	else if (!strcmp(cmd, "promote"))
		rc = cmd_promote(&c, a.force);
	else if (!strcmp(cmd, "demote"))
		rc = cmd_demote(&c, a.force, false, a.mirror_admin);
	else if (!strcmp(cmd, "switchover"))
		rc = cmd_demote(&c, false, true, a.mirror_admin);
	else if (!strcmp(cmd, "adopt"))
		rc = cmd_adopt(&c, a.handoff, a.mirror_admin);
	else
		abort(); /* every command was checked above */

	for (size_t i = 0; i < targets.n; i++)
		rpc_close(c.conns[i]);
	free(c.conns);
	targets_free(&targets);
	rpc_shutdown();
	return rc;
}
