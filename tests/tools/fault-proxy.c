/* Test tool: a fault-injecting TCP proxy between frep-client and frep-server, driven over a unix socket. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/*
 * Usage:
 *   fault-proxy --listen HOST:PORT --target HOST:PORT --control unix:PATH [--seed N]
 *   fault-proxy --control unix:PATH --cmd 'COMMAND'
 *
 * The proxy forwards bytes as they are (TLS passes through untouched) and logs
 * "listening on HOST:PORT" once it accepts. "up" is the direction from the
 * accepted side (frep-client) to the target (frep-server), "down" the reverse:
 * a bulk copy flows up. Commands, one per line, each answered by one line
 * starting with "ok" or "error":
 *
 *   drop-after BYTES [up|down|any]
 *   drop-after random MIN MAX [up|down|any]
 *        One-shot: counts bytes in that direction from now, over current and
 *        later connections; the connection carrying byte BYTES is cut right
 *        after it (mid-frame, wherever it falls). Default direction: any.
 *        "random" draws BYTES in [MIN, MAX] from the --seed generator; the
 *        answer names the draw, so a failing run can be replayed.
 *   drop-now [CONN]   cuts every open connection, or only connection CONN (the
 *                     proxy numbers the connections it accepts from 1: "stats"
 *                     lists the open ones; a frep session's lane 0 comes first,
 *                     its other lanes after it).
 *   stall / unstall   stops / resumes forwarding: sockets stay open, nothing is
 *                     read or written, new connections are accepted but idle.
 *   delay MS [CONN]   holds every chunk read from now MS milliseconds (0 ends it);
 *                     with CONN, only the chunks of connection CONN, open now or
 *                     accepted later (one such connection at a time: a new one
 *                     replaces it; "delay 0 CONN" ends it), one lane of several.
 *   rate MBPS         caps forwarding at MBPS MB/s (10^6 bytes; decimals allowed,
 *                     0.001..100000; 0 ends it) in each direction separately, as
 *                     a link of that speed would: one token bucket for "up" and
 *                     one for "down", each shared by every connection, served
 *                     in turn so that none starves the others. A bucket
 *                     holds 10 ms of rate, at least 16 KiB (the burst), so over
 *                     any window the bytes read in one direction stay within
 *                     MBPS * seconds + burst. The cap applies where bytes are
 *                     read, so "stats" counts what passed it; "delay" then holds
 *                     each chunk MS more (serialisation, then propagation). While
 *                     stalled, a bucket refills only up to the burst. Under a
 *                     delay at most 1 MiB waits per direction, which also caps
 *                     the rate at 1 MiB per delay.
 *   refuse on|off     accepts new connections and resets them at once.
 *   stats             accepted=N open=N up=BYTES down=BYTES drops=N refused=N
 *                     rate=MBPS burst=BYTES conns=ID[,ID...] (rate=0 burst=0
 *                     without a cap; conns=- with none open)
 *
 * A cut resets both sides (SO_LINGER 0), as a dead link or middlebox would,
 * so neither peer sees a clean end of stream. A reset or error on one side is
 * passed on to the other the same way; an end of stream is passed on as one.
 *
 * --cmd sends one command to a running proxy, prints the answer on stdout and
 * exits 0 if it starts with "ok", 1 otherwise, 2 on usage or socket errors.
 * SIGTERM or SIGINT stops the proxy with exit 0.
 */

enum proxy_limits {
	MAX_PAIRS = 64,		 /* concurrent proxied connections; frep uses one per volume */
	MAX_CONTROLS = 8,	 /* concurrent control clients */
	CHUNK = 64 * 1024,	 /* bytes read at once */
	QUEUE_MAX = 1024 * 1024, /* bytes queued per direction before reading pauses */
	LINE_MAX_LEN = 256,	 /* control command line */
	DELAY_MAX_MS = 60000,
	RATE_MAX_MBPS = 100000,	 /* beyond loopback TCP; 0.001 is the least, 1 KB/s */
	RATE_MIN_BURST = 16 * 1024,
	RATE_BURST_MS = 10,	 /* the cap holds over windows this short */
	/* Reads under a cap wait for this many tokens, not for every byte: fewer wakeups. */
	RATE_MIN_READ = 4096,
	CMD_TIMEOUT_MS = 5000,
};

enum dir { UP, DOWN, ANY };
static const char *const dir_names[] = { "up", "down", "any" };

/* A piece of stream read from one side, to write to the other once due. */
struct chunk {
	struct chunk *next;
	uint64_t due_ms;
	size_t len, off;
	uint8_t data[];
};

/* One direction of a pair: reads fd[d], writes fd[!d]. */
struct flow {
	struct chunk *head, *tail;
	size_t queued;
	bool eof;	/* the reading side ended its stream */
	bool shut;	/* the end of stream was passed on */
	bool cut_when_flushed; /* the drop budget ended in this flow */
};

/* fd[0] is the accepted side, fd[1] the target side; flow[UP] reads fd[0]. */
struct pair {
	bool used;
	unsigned id;
	int fd[2];
	struct flow flow[2];
	uint64_t bytes[2];
};

/* A token bucket: bytes that may be read now, refilled at the rate up to the burst. */
struct bucket {
	double tokens;
	uint64_t refilled_ns;
};

struct control {
	int fd; /* -1 when the slot is free */
	size_t len;
	char line[LINE_MAX_LEN];
};

struct proxy {
	int listen_fd, control_fd, signal_fd;
	struct sockaddr_storage target;
	socklen_t target_len;
	char control_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct pair pairs[MAX_PAIRS];
	struct control controls[MAX_CONTROLS];
	uint64_t rng;

	bool stalled, refusing;
	uint64_t delay_ms;
	unsigned delay_conn;	/* 0, or the one connection delay_conn_ms holds instead */
	uint64_t delay_conn_ms;
	double rate_bps, burst; /* bytes per second and per direction; 0: no cap */
	struct bucket bucket[2];
	bool drop_armed;
	enum dir drop_dir;
	uint64_t drop_left;

	unsigned accepted, refused, drops;
	uint64_t total[2];
	int first_slot; /* the pair served first this round (fairness under a cap) */
};

/* splitmix64: small, seedable, good enough to spread byte counts. */
static uint64_t rng_next(struct proxy *p)
{
	uint64_t z = (p->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Closes with a reset instead of a FIN: the peer sees ECONNRESET, not EOF. */
static void close_reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static int resolve(const char *hostport, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256], port[16];
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV }, *ai = NULL;
	if (split_host_port(hostport, host, sizeof(host), port, sizeof(port), NULL) < 0) {
		log_error(NULL, "bad address '%s' (want HOST:PORT)", hostport);
		return -1;
	}
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0) {
		log_error(NULL, "resolve %s: %s", hostport, gai_strerror(rc));
		return -1;
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static int unix_addr(const char *spec, struct sockaddr_un *sun)
{
	if (strncmp(spec, "unix:", 5) != 0 || strlen(spec + 5) == 0 ||
	    strlen(spec + 5) >= sizeof(sun->sun_path)) {
		log_error(NULL, "bad control address '%s' (want unix:PATH, short enough)", spec);
		return -1;
	}
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	strcpy(sun->sun_path, spec + 5);
	return 0;
}

static void log_listening(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[64], port[16];
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		log_warn(NULL, "listening, address unknown: %s", strerror(errno));
		return;
	}
	log_info(NULL, "listening on %s:%s", host, port);
}

static int open_listener(struct proxy *p, const char *listen_addr, const char *control)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct sockaddr_un sun;
	int one = 1;

	if (resolve(listen_addr, &ss, &len) < 0 || unix_addr(control, &sun) < 0)
		return -1;
	p->listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (p->listen_fd < 0 ||
	    setsockopt(p->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(p->listen_fd, (struct sockaddr *)&ss, len) < 0 || listen(p->listen_fd, 16) < 0) {
		log_error(NULL, "listen on %s: %s", listen_addr, strerror(errno));
		return -1;
	}
	/* A stale socket file from a killed run would make bind fail. */
	unlink(sun.sun_path);
	p->control_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (p->control_fd < 0 || bind(p->control_fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(p->control_fd, 4) < 0) {
		log_error(NULL, "control socket %s: %s", sun.sun_path, strerror(errno));
		return -1;
	}
	strcpy(p->control_path, sun.sun_path);
	return 0;
}

static void free_flow(struct flow *f)
{
	while (f->head) {
		struct chunk *c = f->head;
		f->head = c->next;
		free(c);
	}
	f->tail = NULL;
	f->queued = 0;
}

static void close_pair(struct pair *pr, bool reset, const char *why)
{
	log_info(NULL, "connection %u %s after %" PRIu64 " bytes up, %" PRIu64 " down", pr->id,
		 why, pr->bytes[UP], pr->bytes[DOWN]);
	for (int i = 0; i < 2; i++) {
		if (reset)
			close_reset(pr->fd[i]);
		else
			close(pr->fd[i]);
		free_flow(&pr->flow[i]);
	}
	memset(pr, 0, sizeof(*pr));
}

static void cut_pair(struct proxy *p, struct pair *pr)
{
	p->drops++;
	close_pair(pr, true, "cut");
}

static void accept_one(struct proxy *p)
{
	int cfd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), tfd = -1;
	if (cfd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn(NULL, "accept: %s", strerror(errno));
		return;
	}
	p->accepted++;
	if (p->refusing) {
		p->refused++;
		log_info(NULL, "connection %u refused (refuse on)", p->accepted);
		close_reset(cfd);
		return;
	}
	struct pair *pr = NULL;
	for (int i = 0; i < MAX_PAIRS && !pr; i++)
		if (!p->pairs[i].used)
			pr = &p->pairs[i];
	if (!pr) {
		log_warn(NULL, "connection %u: %d connections open already, resetting", p->accepted,
			 MAX_PAIRS);
		close_reset(cfd);
		return;
	}
	/*
	 * A blocking connect keeps the loop single-threaded: on loopback it
	 * completes or is refused at once. A refused target is passed on as a
	 * reset, as if the proxy were not there.
	 */
	tfd = socket(p->target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (tfd < 0 || connect(tfd, (struct sockaddr *)&p->target, p->target_len) < 0 ||
	    set_nonblock(tfd) < 0) {
		log_warn(NULL, "connection %u: connect to target: %s", p->accepted, strerror(errno));
		if (tfd >= 0)
			close(tfd);
		close_reset(cfd);
		return;
	}
	/* Frames are small and latency-bound; do not let Nagle add delays the test did not ask for. */
	int one = 1;
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(tfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(pr, 0, sizeof(*pr));
	pr->used = true;
	pr->id = p->accepted;
	pr->fd[0] = cfd;
	pr->fd[1] = tfd;
	log_info(NULL, "connection %u accepted", pr->id);
}

static void rate_set(struct proxy *p, double mbps)
{
	p->rate_bps = mbps * 1e6;
	p->burst = p->rate_bps * RATE_BURST_MS / 1000;
	if (p->rate_bps && p->burst < RATE_MIN_BURST)
		p->burst = RATE_MIN_BURST;
	for (int d = UP; d <= DOWN; d++)
		p->bucket[d] = (struct bucket){ .tokens = p->burst, .refilled_ns = now_ns() };
}

/* Bytes direction d may read now: a whole chunk without a cap, 0 while its bucket refills. */
static size_t rate_allowance(struct proxy *p, enum dir d)
{
	if (!p->rate_bps)
		return CHUNK;
	struct bucket *b = &p->bucket[d];
	uint64_t now = now_ns();
	b->tokens += (double)(now - b->refilled_ns) * p->rate_bps / 1e9;
	if (b->tokens > p->burst)
		b->tokens = p->burst;
	b->refilled_ns = now;
	if (b->tokens < RATE_MIN_READ)
		return 0;
	return b->tokens < CHUNK ? (size_t)b->tokens : CHUNK;
}

/* Milliseconds until direction d may read again, rounded up (poll must not wake early and spin). */
static uint64_t rate_wait_ms(const struct proxy *p, enum dir d)
{
	return (uint64_t)((RATE_MIN_READ - p->bucket[d].tokens) * 1000 / p->rate_bps) + 1;
}

/*
 * Reads one chunk for flow d of pr, within the rate cap, applying the drop
 * budget. -1 if the pair is gone.
 */
static int read_flow(struct proxy *p, struct pair *pr, enum dir d)
{
	struct flow *f = &pr->flow[d];
	size_t allowed = rate_allowance(p, d);
	if (!allowed)
		return 0;
	struct chunk *c = malloc(sizeof(*c) + CHUNK);
	if (!c) {
		log_error(NULL, "connection %u: out of memory", pr->id);
		close_pair(pr, true, "reset (no memory)");
		return -1;
	}
	ssize_t n = read(pr->fd[d == UP ? 0 : 1], c->data, allowed);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		free(c);
		return 0;
	}
	if (n < 0) {
		log_info(NULL, "connection %u: %s side: %s", pr->id, d == UP ? "accepted" : "target",
			 strerror(errno));
		free(c);
		close_pair(pr, true, "reset (passed on)");
		return -1;
	}
	if (n == 0) {
		free(c);
		f->eof = true;
		return 0;
	}
	size_t len = (size_t)n;
	if (p->rate_bps)
		p->bucket[d].tokens -= (double)n;
	if (p->drop_armed && (p->drop_dir == ANY || p->drop_dir == d) && len >= p->drop_left) {
		len = (size_t)p->drop_left;
		p->drop_armed = false;
		f->cut_when_flushed = true;
		log_info(NULL, "connection %u: drop budget reached in %s direction at byte %" PRIu64,
			 pr->id, dir_names[d], pr->bytes[d] + len);
	} else if (p->drop_armed && (p->drop_dir == ANY || p->drop_dir == d)) {
		p->drop_left -= len;
	}
	pr->bytes[d] += len;
	p->total[d] += len;
	if (len == 0) {
		free(c);
		cut_pair(p, pr);
		return -1;
	}
	c->next = NULL;
	c->len = len;
	c->off = 0;
	c->due_ms = now_ms() + (pr->id == p->delay_conn ? p->delay_conn_ms : p->delay_ms);
	if (f->tail)
		f->tail->next = c;
	else
		f->head = c;
	f->tail = c;
	f->queued += len;
	return 0;
}

/* Writes what is due in flow d. -1 if the pair is gone. */
static int write_flow(struct proxy *p, struct pair *pr, enum dir d)
{
	struct flow *f = &pr->flow[d];
	int fd = pr->fd[d == UP ? 1 : 0];
	uint64_t now = now_ms();
	while (f->head && f->head->due_ms <= now) {
		struct chunk *c = f->head;
		ssize_t n = send(fd, c->data + c->off, c->len - c->off, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n < 0) {
			log_info(NULL, "connection %u: %s side: %s", pr->id,
				 d == UP ? "target" : "accepted", strerror(errno));
			close_pair(pr, true, "reset (passed on)");
			return -1;
		}
		c->off += (size_t)n;
		f->queued -= (size_t)n;
		if (c->off < c->len)
			return 0;
		f->head = c->next;
		if (!f->head)
			f->tail = NULL;
		free(c);
	}
	if (f->head)
		return 0;
	if (f->cut_when_flushed) {
		cut_pair(p, pr);
		return -1;
	}
	if (f->eof && !f->shut) {
		shutdown(fd, SHUT_WR);
		f->shut = true;
		if (pr->flow[!d].shut) {
			close_pair(pr, false, "closed by both sides");
			return -1;
		}
	}
	return 0;
}

static bool flow_may_read(const struct flow *f)
{
	return !f->eof && !f->cut_when_flushed && f->queued < QUEUE_MAX;
}

static int parse_dir(const char *s, enum dir *d)
{
	for (int i = UP; i <= ANY; i++)
		if (strcmp(s, dir_names[i]) == 0) {
			*d = (enum dir)i;
			return 0;
		}
	return -1;
}

/* Runs one control command; the answer goes to out (one line, no newline). */
static void run_command(struct proxy *p, char *line, char *out, size_t out_len)
{
	char *argv[6];
	int argc = 0;
	for (char *tok = strtok(line, " \t\r"); tok && argc < 6; tok = strtok(NULL, " \t\r"))
		argv[argc++] = tok;
	if (argc == 0) {
		snprintf(out, out_len, "error empty command");
		return;
	}
	const char *cmd = argv[0];
	if (strcmp(cmd, "drop-after") == 0 && argc >= 2) {
		uint64_t bytes, min, max;
		enum dir d = ANY;
		int next = 2;
		if (strcmp(argv[1], "random") == 0) {
			if (argc < 4 || parse_size(argv[2], &min) < 0 || parse_size(argv[3], &max) < 0 ||
			    min > max) {
				snprintf(out, out_len, "error usage: drop-after random MIN MAX [up|down|any]");
				return;
			}
			bytes = min + rng_next(p) % (max - min + 1);
			next = 4;
		} else if (parse_size(argv[1], &bytes) < 0) {
			snprintf(out, out_len, "error bad byte count '%s'", argv[1]);
			return;
		}
		if (argc > next + 1 || (argc == next + 1 && parse_dir(argv[next], &d) < 0)) {
			snprintf(out, out_len, "error usage: drop-after BYTES|random MIN MAX [up|down|any]");
			return;
		}
		p->drop_armed = true;
		p->drop_left = bytes;
		p->drop_dir = d;
		snprintf(out, out_len, "ok drop-after %" PRIu64 " %s", bytes, dir_names[d]);
	} else if (strcmp(cmd, "drop-now") == 0 && argc <= 2) {
		uint64_t only = 0;
		if (argc == 2 && (parse_size(argv[1], &only) < 0 || only == 0)) {
			snprintf(out, out_len, "error drop-now wants a connection number from 1, got '%s'",
				 argv[1]);
			return;
		}
		unsigned n = 0;
		for (int i = 0; i < MAX_PAIRS; i++)
			if (p->pairs[i].used && (!only || p->pairs[i].id == only)) {
				cut_pair(p, &p->pairs[i]);
				n++;
			}
		if (only && !n) {
			snprintf(out, out_len, "error connection %" PRIu64 " is not open", only);
			return;
		}
		snprintf(out, out_len, "ok dropped %u", n);
	} else if ((strcmp(cmd, "stall") == 0 || strcmp(cmd, "unstall") == 0) && argc == 1) {
		p->stalled = cmd[0] == 's';
		snprintf(out, out_len, "ok %s", cmd);
	} else if (strcmp(cmd, "delay") == 0 && (argc == 2 || argc == 3)) {
		uint64_t ms, conn = 0;
		if (parse_size(argv[1], &ms) < 0 || ms > DELAY_MAX_MS) {
			snprintf(out, out_len, "error delay wants 0..%d ms", DELAY_MAX_MS);
			return;
		}
		if (argc == 3 && (parse_size(argv[2], &conn) < 0 || conn == 0 || conn > UINT32_MAX)) {
			snprintf(out, out_len, "error delay MS CONN wants a connection number from 1, got '%s'",
				 argv[2]);
			return;
		}
		if (!conn) {
			p->delay_ms = ms;
			snprintf(out, out_len, "ok delay %" PRIu64, ms);
		} else {
			p->delay_conn = ms ? (unsigned)conn : 0;
			p->delay_conn_ms = ms;
			snprintf(out, out_len, "ok delay %" PRIu64 " connection %" PRIu64, ms, conn);
		}
	} else if (strcmp(cmd, "rate") == 0 && argc == 2) {
		char *end;
		errno = 0;
		double mbps = strtod(argv[1], &end);
		/* Written so that NaN fails too. */
		if (errno || end == argv[1] || *end ||
		    !(mbps == 0 || (mbps >= 0.001 && mbps <= RATE_MAX_MBPS))) {
			snprintf(out, out_len,
				 "error rate wants MB/s, 0.001..%d with decimals (e.g. 12.5), or 0 to end"
				 " the cap; got '%s'", RATE_MAX_MBPS, argv[1]);
			return;
		}
		rate_set(p, mbps);
		snprintf(out, out_len, "ok rate %g MB/s per direction, burst %.0f bytes", mbps, p->burst);
	} else if (strcmp(cmd, "refuse") == 0 && argc == 2 &&
		   (strcmp(argv[1], "on") == 0 || strcmp(argv[1], "off") == 0)) {
		p->refusing = strcmp(argv[1], "on") == 0;
		snprintf(out, out_len, "ok refuse %s", argv[1]);
	} else if (strcmp(cmd, "stats") == 0 && argc == 1) {
		unsigned open = 0;
		char ids[96] = "-";
		size_t at = 0;
		/* In accept order: the slots are reused, so sort by id. */
		for (unsigned last = 0;;) {
			unsigned next = 0;
			for (int i = 0; i < MAX_PAIRS; i++)
				if (p->pairs[i].used && p->pairs[i].id > last &&
				    (!next || p->pairs[i].id < next))
					next = p->pairs[i].id;
			if (!next)
				break;
			if (at < sizeof(ids) - 12)
				at += (size_t)snprintf(ids + at, sizeof(ids) - at, "%s%u", open ? "," : "", next);
			open++;
			last = next;
		}
		snprintf(out, out_len,
			 "ok accepted=%u open=%u up=%" PRIu64 " down=%" PRIu64 " drops=%u refused=%u"
			 " rate=%g burst=%.0f conns=%s",
			 p->accepted, open, p->total[UP], p->total[DOWN], p->drops, p->refused,
			 p->rate_bps / 1e6, p->burst, ids);
	} else {
		snprintf(out, out_len, "error unknown command or wrong arguments: %s", cmd);
	}
	log_info(NULL, "control: %s", out);
}

static void control_close(struct control *c)
{
	close(c->fd);
	c->fd = -1;
	c->len = 0;
}

static void control_accept(struct proxy *p)
{
	int fd = accept4(p->control_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	for (int i = 0; i < MAX_CONTROLS; i++)
		if (p->controls[i].fd < 0) {
			p->controls[i].fd = fd;
			p->controls[i].len = 0;
			return;
		}
	log_warn(NULL, "control: %d clients already, closing a new one", MAX_CONTROLS);
	close(fd);
}

static void control_read(struct proxy *p, struct control *c)
{
	ssize_t n = read(c->fd, c->line + c->len, sizeof(c->line) - c->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		control_close(c);
		return;
	}
	c->len += (size_t)n;
	char *nl;
	while ((nl = memchr(c->line, '\n', c->len))) {
		char out[256];
		*nl = '\0';
		run_command(p, c->line, out, sizeof(out));
		size_t ol = strlen(out);
		out[ol++] = '\n';
		/* One short line on a unix socket fits its buffer: a failure means the client left. */
		if (send(c->fd, out, ol, MSG_NOSIGNAL) != (ssize_t)ol) {
			control_close(c);
			return;
		}
		size_t used = (size_t)(nl + 1 - c->line);
		memmove(c->line, nl + 1, c->len - used);
		c->len -= used;
	}
	if (c->len == sizeof(c->line)) {
		static const char too_long[] = "error line too long\n";
		send(c->fd, too_long, sizeof(too_long) - 1, MSG_NOSIGNAL);
		control_close(c);
	}
}

/*
 * Milliseconds until the earliest delayed chunk is due or a throttled
 * direction may read again; -1 if nothing waits.
 */
static int poll_timeout(const struct proxy *p, const bool throttled[2])
{
	uint64_t now = now_ms(), best = UINT64_MAX;
	if (p->stalled)
		return -1;
	for (int d = UP; d <= DOWN; d++)
		if (throttled[d] && now + rate_wait_ms(p, (enum dir)d) < best)
			best = now + rate_wait_ms(p, (enum dir)d);
	for (int i = 0; i < MAX_PAIRS; i++)
		for (int d = UP; d <= DOWN; d++) {
			const struct chunk *c = p->pairs[i].used ? p->pairs[i].flow[d].head : NULL;
			if (c && c->due_ms < best)
				best = c->due_ms;
		}
	if (best == UINT64_MAX)
		return -1;
	return best <= now ? 0 : (int)(best - now);
}

enum { SLOT_SIGNAL, SLOT_LISTEN, SLOT_CONTROL, SLOT_CONTROLS,
       SLOT_PAIRS = SLOT_CONTROLS + MAX_CONTROLS, SLOT_COUNT = SLOT_PAIRS + 2 * MAX_PAIRS };

static int run(struct proxy *p)
{
	struct pollfd pfd[SLOT_COUNT];
	unsigned polled_id[MAX_PAIRS];
	for (;;) {
		pfd[SLOT_SIGNAL] = (struct pollfd){ .fd = p->signal_fd, .events = POLLIN };
		pfd[SLOT_LISTEN] = (struct pollfd){ .fd = p->listen_fd, .events = POLLIN };
		pfd[SLOT_CONTROL] = (struct pollfd){ .fd = p->control_fd, .events = POLLIN };
		for (int i = 0; i < MAX_CONTROLS; i++)
			pfd[SLOT_CONTROLS + i] = (struct pollfd){ .fd = p->controls[i].fd,
								  .events = POLLIN };
		uint64_t now = now_ms();
		bool throttled[2] = { false, false };
		for (int i = 0; i < MAX_PAIRS; i++) {
			struct pair *pr = &p->pairs[i];
			for (int side = 0; side < 2; side++) {
				struct pollfd *q = &pfd[SLOT_PAIRS + 2 * i + side];
				*q = (struct pollfd){ .fd = pr->used ? pr->fd[side] : -1 };
				if (!pr->used || p->stalled)
					continue;
				/* side 0 is read by UP and written by DOWN; side 1 the reverse. */
				enum dir in_dir = side == 0 ? UP : DOWN;
				struct flow *in = &pr->flow[in_dir];
				struct flow *out = &pr->flow[!in_dir];
				if (flow_may_read(in)) {
					if (rate_allowance(p, in_dir))
						q->events |= POLLIN;
					else
						throttled[in_dir] = true;
				}
				if (out->head && out->head->due_ms <= now)
					q->events |= POLLOUT;
				/* A hung-up socket polls ready even with no events: skip it until wanted. */
				if (!q->events)
					q->fd = -1;
			}
			polled_id[i] = pr->used ? pr->id : 0;
		}
		if (poll(pfd, SLOT_COUNT, poll_timeout(p, throttled)) < 0) {
			if (errno == EINTR)
				continue;
			log_error(NULL, "poll: %s", strerror(errno));
			return -1;
		}
		if (pfd[SLOT_SIGNAL].revents) {
			struct signalfd_siginfo si;
			if (read(p->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				log_info(NULL, "signal %u: stopping", si.ssi_signo);
				return 0;
			}
		}
		if (pfd[SLOT_LISTEN].revents & POLLIN)
			accept_one(p);
		if (pfd[SLOT_CONTROL].revents & POLLIN)
			control_accept(p);
		for (int i = 0; i < MAX_CONTROLS; i++)
			if (p->controls[i].fd >= 0 && pfd[SLOT_CONTROLS + i].fd == p->controls[i].fd &&
			    pfd[SLOT_CONTROLS + i].revents)
				control_read(p, &p->controls[i]);
		/*
		 * Under a cap, whichever connection reads first takes the tokens:
		 * start one slot further each round, so that connections sharing
		 * the link share it as a router's queue would, and none starves
		 * (the lanes of one session, each with its own TCP connection).
		 */
		for (int k = 1; k <= MAX_PAIRS; k++)
			if (p->pairs[(p->first_slot + k) % MAX_PAIRS].used) {
				p->first_slot = (p->first_slot + k) % MAX_PAIRS;
				break;
			}
		for (int k = 0; k < MAX_PAIRS; k++) {
			int i = (p->first_slot + k) % MAX_PAIRS;
			struct pair *pr = &p->pairs[i];
			/* A control command may have cut this slot, or stalled the proxy. */
			if (!pr->used || pr->id != polled_id[i] || p->stalled)
				continue;
			short r0 = pfd[SLOT_PAIRS + 2 * i].revents, r1 = pfd[SLOT_PAIRS + 2 * i + 1].revents;
			if ((r0 & (POLLIN | POLLHUP | POLLERR)) && flow_may_read(&pr->flow[UP]) &&
			    read_flow(p, pr, UP) < 0)
				continue;
			if ((r1 & (POLLIN | POLLHUP | POLLERR)) && flow_may_read(&pr->flow[DOWN]) &&
			    read_flow(p, pr, DOWN) < 0)
				continue;
			/* Write whatever is due, also right after reading, without waiting a poll round. */
			if (write_flow(p, pr, UP) < 0 || write_flow(p, pr, DOWN) < 0)
				continue;
		}
	}
}

/* Client mode: one command, one answer. */
static int send_cmd(const char *control, const char *cmd)
{
	struct sockaddr_un sun;
	char buf[LINE_MAX_LEN + 2];
	size_t len = 0;
	int fd = -1, ret = 2;

	if (unix_addr(control, &sun) < 0)
		goto out;
	if (strlen(cmd) > LINE_MAX_LEN - 1 || strchr(cmd, '\n')) {
		log_error(NULL, "command too long or has a newline");
		goto out;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		log_error(NULL, "connect %s: %s", sun.sun_path, strerror(errno));
		goto out;
	}
	snprintf(buf, sizeof(buf), "%s\n", cmd);
	if (send(fd, buf, strlen(buf), MSG_NOSIGNAL) != (ssize_t)strlen(buf)) {
		log_error(NULL, "send to %s: %s", sun.sun_path, strerror(errno));
		goto out;
	}
	uint64_t deadline = now_ms() + CMD_TIMEOUT_MS;
	while (!memchr(buf, '\n', len)) {
		struct pollfd q = { .fd = fd, .events = POLLIN };
		uint64_t now = now_ms();
		if (len == sizeof(buf) - 1 || now >= deadline ||
		    poll(&q, 1, (int)(deadline - now)) <= 0) {
			log_error(NULL, "no answer from %s", sun.sun_path);
			goto out;
		}
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0) {
			log_error(NULL, "answer from %s cut short", sun.sun_path);
			goto out;
		}
		len += (size_t)n;
	}
	*(char *)memchr(buf, '\n', len) = '\0';
	printf("%s\n", buf);
	ret = strncmp(buf, "ok", 2) == 0 ? 0 : 1;
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: fault-proxy --listen HOST:PORT --target HOST:PORT --control unix:PATH"
		     " [--seed N] [--log-level LEVEL]\n"
		     "       fault-proxy --control unix:PATH --cmd COMMAND\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "target", required_argument, NULL, 't' },
		{ "control", required_argument, NULL, 'c' },
		{ "seed", required_argument, NULL, 's' },
		{ "cmd", required_argument, NULL, 'C' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen_addr = NULL, *target = NULL, *control = NULL, *cmd = NULL;
	uint64_t seed = 1;
	int level = LOG_INFO, c, ret = 1;
	struct proxy p = { .listen_fd = -1, .control_fd = -1, .signal_fd = -1 };

	while ((c = getopt_long(argc, argv, "l:t:c:s:C:L:h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen_addr = optarg;
			break;
		case 't':
			target = optarg;
			break;
		case 'c':
			control = optarg;
			break;
		case 's': {
			char *end;
			errno = 0;
			seed = strtoull(optarg, &end, 0);
			if (errno || *end || end == optarg) {
				fprintf(stderr, "fault-proxy: bad --seed '%s'\n", optarg);
				return 2;
			}
			break;
		}
		case 'C':
			cmd = optarg;
			break;
		case 'L':
			level = log_level_parse(optarg);
			if (level < 0) {
				fprintf(stderr, "fault-proxy: bad --log-level '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || !control || (cmd && (listen_addr || target)) ||
	    (!cmd && (!listen_addr || !target))) {
		usage(stderr);
		return 2;
	}
	log_init("fault-proxy", (enum log_level)level);
	if (cmd)
		return send_cmd(control, cmd);

	for (int i = 0; i < MAX_CONTROLS; i++)
		p.controls[i].fd = -1;
	p.rng = seed;
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);
	p.signal_fd = signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK);
	if (p.signal_fd < 0) {
		log_error(NULL, "signalfd: %s", strerror(errno));
		goto out;
	}
	if (resolve(target, &p.target, &p.target_len) < 0 ||
	    open_listener(&p, listen_addr, control) < 0)
		goto out;
	log_info(NULL, "seed %" PRIu64 ", target %s, control %s", seed, target, control);
	log_listening(p.listen_fd);
	ret = run(&p) < 0 ? 1 : 0;
out:
	for (int i = 0; i < MAX_PAIRS; i++)
		if (p.pairs[i].used)
			close_pair(&p.pairs[i], true, "reset (stopping)");
	for (int i = 0; i < MAX_CONTROLS; i++)
		if (p.controls[i].fd >= 0)
			control_close(&p.controls[i]);
	if (p.control_fd >= 0) {
		close(p.control_fd);
		unlink(p.control_path);
	}
	if (p.listen_fd >= 0)
		close(p.listen_fd);
	if (p.signal_fd >= 0)
		close(p.signal_fd);
	return ret;
}
