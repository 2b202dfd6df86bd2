/* NBD server: fixed newstyle handshake and simple-reply transmission, one thread per client. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "nbd.h"
#include "util.h"

/* --- wire constants (NBD doc/proto.md) ------------------------------------ */

#define NBD_MAGIC 0x4e42444d41474943ull	      /* "NBDMAGIC" */
#define NBD_IHAVEOPT 0x49484156454f5054ull    /* "IHAVEOPT" */
#define NBD_OPT_REPLY_MAGIC 0x3e889045565a9ull
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u

enum nbd_handshake_flags {
	NBD_FLAG_FIXED_NEWSTYLE = 1u << 0,
	NBD_FLAG_NO_ZEROES = 1u << 1,
};

enum nbd_client_flags {
	NBD_FLAG_C_FIXED_NEWSTYLE = 1u << 0,
	NBD_FLAG_C_NO_ZEROES = 1u << 1,
};

enum nbd_transmission_flags {
	NBD_FLAG_HAS_FLAGS = 1u << 0,
	NBD_FLAG_READ_ONLY = 1u << 1,
	NBD_FLAG_SEND_FLUSH = 1u << 2,
	NBD_FLAG_SEND_FUA = 1u << 3,
	NBD_FLAG_SEND_TRIM = 1u << 5,
	NBD_FLAG_SEND_WRITE_ZEROES = 1u << 6,
	NBD_FLAG_CAN_MULTI_CONN = 1u << 8,
};

enum nbd_option {
	NBD_OPT_EXPORT_NAME = 1,
	NBD_OPT_ABORT = 2,
	NBD_OPT_LIST = 3,
	NBD_OPT_STARTTLS = 5,
	NBD_OPT_INFO = 6,
	NBD_OPT_GO = 7,
	NBD_OPT_STRUCTURED_REPLY = 8,
};

#define NBD_REP_ERR(n) ((1u << 31) | (n))
enum nbd_option_reply {
	NBD_REP_ACK = 1,
	NBD_REP_SERVER = 2,
	NBD_REP_INFO = 3,
	NBD_REP_ERR_UNSUP = NBD_REP_ERR(1),
	NBD_REP_ERR_INVALID = NBD_REP_ERR(3),
	NBD_REP_ERR_UNKNOWN = NBD_REP_ERR(6),
	NBD_REP_ERR_TOO_BIG = NBD_REP_ERR(9),
};

enum nbd_info {
	NBD_INFO_EXPORT = 0,
	NBD_INFO_NAME = 1,
	NBD_INFO_DESCRIPTION = 2,
	NBD_INFO_BLOCK_SIZE = 3,
};

enum nbd_cmd {
	NBD_CMD_READ = 0,
	NBD_CMD_WRITE = 1,
	NBD_CMD_DISC = 2,
	NBD_CMD_FLUSH = 3,
	NBD_CMD_TRIM = 4,
	NBD_CMD_WRITE_ZEROES = 6,
};

enum nbd_cmd_flags {
	NBD_CMD_FLAG_FUA = 1u << 0,
	NBD_CMD_FLAG_NO_HOLE = 1u << 1,
};

enum nbd_error {
	NBD_OK = 0,
	NBD_EPERM = 1,
	NBD_EIO = 5,
	NBD_ENOMEM = 12,
	NBD_EINVAL = 22,
	NBD_ENOSPC = 28,
	NBD_ESHUTDOWN = 108,
};

/* Sizes of the fixed parts of messages, as laid out on the wire. */
enum nbd_wire_sizes {
	NBD_HELLO_LEN = 18,	   /* NBDMAGIC, IHAVEOPT, handshake flags */
	NBD_OPT_HDR_LEN = 16,	   /* IHAVEOPT, option, length */
	NBD_OPT_REPLY_HDR_LEN = 20, /* magic, option, reply type, length */
	NBD_REQUEST_LEN = 28,	   /* magic, flags, type, cookie, offset, length */
	NBD_SIMPLE_REPLY_LEN = 16, /* magic, error, cookie */
	NBD_EXPORT_NAME_REPLY_LEN = 10, /* size, transmission flags (then 124 zeroes) */
	NBD_EXPORT_NAME_ZEROES = 124,
};

/* --- our limits ------------------------------------------------------------ */

enum nbd_limits {
	/* The spec caps strings (export names) at 4096 bytes; INFO/GO adds a
	 * 4-byte length, a 2-byte count and 2 bytes per info request. */
	NBD_MAX_STRING = 4096,
	NBD_OPT_DATA_MAX = NBD_MAX_STRING + 4 + 2 + 2 * 64,
	/* Option data above NBD_OPT_DATA_MAX but at most this is read and
	 * dropped so the client gets NBD_REP_ERR_TOO_BIG; more closes. */
	NBD_OPT_DISCARD_MAX = 64 * 1024,
	/* A client that haggles forever holds a thread: cut it off. */
	NBD_MAX_OPTIONS = 256,
	NBD_HANDSHAKE_TIMEOUT_S = 30,
	/* An oversized WRITE's payload up to this is read and dropped so the
	 * stream stays in sync and the client gets EINVAL; beyond, we close. */
	NBD_WRITE_DISCARD_MAX = 64 * 1024 * 1024,
	NBD_MIN_PAYLOAD = 512,
	NBD_MAX_PAYLOAD = 64 * 1024 * 1024,
	NBD_PREFERRED_BLOCK = 4096,
	NBD_MAX_CLIENTS = 64,
	/* Unix stream sockets have no autotuning; the default ~200 KiB queue
	 * splits every large read reply into many wakeups. Capped by
	 * net.core.{r,w}mem_max. */
	NBD_UNIX_SOCKBUF = 4 * 1024 * 1024,
};

/* --- server state ------------------------------------------------------------ */

struct nbd_conn {
	struct nbd_server *srv;
	int fd;	    /* closed by whoever joins the thread, never by the thread */
	pthread_t thread;
	bool done;  /* thread finished; protected by srv->lock */
	bool no_zeroes;
	char peer[80];
	uint8_t *buf; /* exp->max_payload bytes, owned by the connection thread */
	uint8_t opt[NBD_OPT_DATA_MAX];
	struct nbd_conn *next; /* protected by srv->lock */
};

struct nbd_server {
	const struct nbd_export *exp;
	int listen_fd;
	int wake[2]; /* pipe: stop request or a finished connection wakes the accept loop */
	bool is_unix;
	char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	uint16_t tflags;
	pthread_t accept_thread;
	bool accept_started;
	pthread_mutex_t lock; /* protects conns, nconns, stopping and every conn->done/next */
	struct nbd_conn *conns;
	unsigned nconns;
	bool stopping;
};

/* --- byte order helpers -------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return ((uint32_t)get16(p) << 16) | get16(p + 2);
}

static uint64_t get64(const uint8_t *p)
{
	return ((uint64_t)get32(p) << 32) | get32(p + 4);
}

/* --- socket I/O ---------------------------------------------------------------- */

/*
 * Reads exactly len bytes. 1 when done, 0 on EOF before the first byte (a
 * clean close on a message boundary), -1 on error or EOF mid-message (errno
 * EPIPE then).
 */
static int recv_all(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(fd, (uint8_t *)buf + got, len - got, MSG_WAITALL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			if (got == 0)
				return 0;
			errno = EPIPE;
			return -1;
		}
		got += (size_t)n;
	}
	return 1;
}

/* Reads exactly len bytes of a message already begun: any EOF is an error (EPIPE). 0 or -1. */
static int recv_body(int fd, void *buf, size_t len)
{
	int rc = recv_all(fd, buf, len);
	if (rc == 0)
		errno = EPIPE;
	return rc == 1 ? 0 : -1;
}

/* Reads and drops len bytes through scratch. 0 or -1. */
static int discard(int fd, uint8_t *scratch, size_t scratch_len, uint64_t len)
{
	while (len > 0) {
		size_t n = len < scratch_len ? (size_t)len : scratch_len;
		if (recv_body(fd, scratch, n) < 0)
			return -1;
		len -= n;
	}
	return 0;
}

/*
 * Sends all iovecs; iov is consumed. MSG_NOSIGNAL: a client that went away
 * must give us EPIPE, not a SIGPIPE that kills the daemon.
 */
static int send_iov(int fd, struct iovec *iov, int iovcnt)
{
	while (iovcnt > 0) {
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		size_t left = (size_t)n;
		while (iovcnt > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return 0;
}

static int send_all(int fd, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	return send_iov(fd, &iov, 1);
}

/* --- handshake -------------------------------------------------------------- */

enum haggle_result { HAGGLE_CLOSE, HAGGLE_TRANSMIT };

/* Sends one option reply; 0 or -1 with errno, logging nothing. */
static int opt_reply_raw(struct nbd_conn *c, uint32_t opt, uint32_t type, const void *data,
			 uint32_t len)
{
	uint8_t hdr[NBD_OPT_REPLY_HDR_LEN];
	put64(hdr, NBD_OPT_REPLY_MAGIC);
	put32(hdr + 8, opt);
	put32(hdr + 12, type);
	put32(hdr + 16, len);
	struct iovec iov[2] = {
		{ .iov_base = hdr, .iov_len = sizeof(hdr) },
		{ .iov_base = (void *)data, .iov_len = len },
	};
	return send_iov(c->fd, iov, len ? 2 : 1);
}

static int opt_reply(struct nbd_conn *c, uint32_t opt, uint32_t type, const void *data,
		     uint32_t len)
{
	if (opt_reply_raw(c, opt, type, data, len) < 0) {
		log_info(c->srv->exp->name, "NBD %s: sending option reply: %s", c->peer,
			 strerror(errno));
		return -1;
	}
	return 0;
}

/* An error reply carries a human-readable message, which libnbd shows its user. */
static int opt_error(struct nbd_conn *c, uint32_t opt, uint32_t type, const char *msg)
{
	return opt_reply(c, opt, type, msg, (uint32_t)strlen(msg));
}

/* Empty name is the default export (spec: reserved "default" name). */
static bool export_name_matches(const struct nbd_export *exp, const uint8_t *name, uint32_t len)
{
	return len == 0 || (strlen(exp->name) == len && memcmp(exp->name, name, len) == 0);
}

static int send_info_string(struct nbd_conn *c, uint32_t opt, uint16_t type, const char *s)
{
	uint8_t buf[2 + NBD_MAX_STRING];
	size_t len = strnlen(s, NBD_MAX_STRING);
	put16(buf, type);
	memcpy(buf + 2, s, len);
	return opt_reply(c, opt, NBD_REP_INFO, buf, (uint32_t)(2 + len));
}

/*
 * Preferred block size: 4096, or the largest power of two within max_payload
 * when that is smaller, since the spec wants max >= preferred.
 */
static uint32_t preferred_block(uint32_t max_payload)
{
	uint32_t p = NBD_PREFERRED_BLOCK;
	while (p > max_payload)
		p >>= 1;
	return p;
}

/* NBD_OPT_INFO and NBD_OPT_GO. 0 when replied (even with an error), -1 to close. */
static int handle_info(struct nbd_conn *c, uint32_t opt, uint32_t len, bool *go)
{
	const struct nbd_export *exp = c->srv->exp;
	const uint8_t *d = c->opt;
	bool want_name = false, want_desc = false;
	*go = false;

	/* Data: u32 name length, name, u16 count, count x u16 info type. */
	if (len < 6)
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "option data too short");
	uint32_t nlen = get32(d);
	if (nlen > len - 6)
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "export name length beyond option");
	uint16_t nreq = get16(d + 4 + nlen);
	if ((uint64_t)nlen + 6 + 2u * nreq != len)
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "info request count mismatch");
	for (uint16_t i = 0; i < nreq; i++) {
		uint16_t t = get16(d + 6 + nlen + 2u * i);
		if (t == NBD_INFO_NAME)
			want_name = true;
		else if (t == NBD_INFO_DESCRIPTION)
			want_desc = true;
		/* EXPORT and BLOCK_SIZE are always sent; others are ignored (spec). */
	}
	if (!export_name_matches(exp, d + 4, nlen)) {
		log_info(exp->name, "NBD %s: asked for unknown export '%.*s'", c->peer,
			 (int)(nlen > 64 ? 64 : nlen), (const char *)d + 4);
		return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "unknown export name");
	}

	uint8_t info[14];
	put16(info, NBD_INFO_EXPORT);
	put64(info + 2, exp->size);
	put16(info + 10, c->srv->tflags);
	if (opt_reply(c, opt, NBD_REP_INFO, info, 12) < 0)
		return -1;
	if (want_name && send_info_string(c, opt, NBD_INFO_NAME, exp->name) < 0)
		return -1;
	if (want_desc) {
		char desc[128];
		snprintf(desc, sizeof(desc), "frep volume %.64s", exp->name);
		if (send_info_string(c, opt, NBD_INFO_DESCRIPTION, desc) < 0)
			return -1;
	}
	put16(info, NBD_INFO_BLOCK_SIZE);
	put32(info + 2, 1);
	put32(info + 6, preferred_block(exp->max_payload));
	put32(info + 10, exp->max_payload);
	if (opt_reply(c, opt, NBD_REP_INFO, info, 14) < 0)
		return -1;
	if (opt_reply(c, opt, NBD_REP_ACK, NULL, 0) < 0)
		return -1;
	*go = opt == NBD_OPT_GO;
	return 0;
}

static int handle_list(struct nbd_conn *c, uint32_t len)
{
	if (len != 0)
		return opt_error(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
	uint8_t buf[4 + NBD_MAX_STRING];
	size_t nlen = strnlen(c->srv->exp->name, NBD_MAX_STRING);
	put32(buf, (uint32_t)nlen);
	memcpy(buf + 4, c->srv->exp->name, nlen);
	if (opt_reply(c, NBD_OPT_LIST, NBD_REP_SERVER, buf, (uint32_t)(4 + nlen)) < 0)
		return -1;
	return opt_reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_EXPORT_NAME: cannot be refused with an error reply, only by closing. */
static int handle_export_name(struct nbd_conn *c, uint32_t len)
{
	const struct nbd_export *exp = c->srv->exp;
	if (!export_name_matches(exp, c->opt, len)) {
		log_info(exp->name, "NBD %s: asked for unknown export '%.*s', closing", c->peer,
			 (int)(len > 64 ? 64 : len), (const char *)c->opt);
		return -1;
	}
	uint8_t buf[NBD_EXPORT_NAME_REPLY_LEN + NBD_EXPORT_NAME_ZEROES] = { 0 };
	put64(buf, exp->size);
	put16(buf + 8, c->srv->tflags);
	size_t n = c->no_zeroes ? NBD_EXPORT_NAME_REPLY_LEN : sizeof(buf);
	if (send_all(c->fd, buf, n) < 0) {
		log_info(exp->name, "NBD %s: sending export info: %s", c->peer, strerror(errno));
		return -1;
	}
	return 0;
}

static enum haggle_result haggle(struct nbd_conn *c)
{
	const char *vol = c->srv->exp->name;
	uint8_t hello[NBD_HELLO_LEN];
	put64(hello, NBD_MAGIC);
	put64(hello + 8, NBD_IHAVEOPT);
	put16(hello + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (send_all(c->fd, hello, sizeof(hello)) < 0) {
		log_info(vol, "NBD %s: sending greeting: %s", c->peer, strerror(errno));
		return HAGGLE_CLOSE;
	}

	uint8_t cflags_buf[4];
	int rc = recv_all(c->fd, cflags_buf, sizeof(cflags_buf));
	if (rc != 1) {
		log_info(vol, "NBD %s: closed before client flags: %s", c->peer,
			 rc == 0 ? "EOF" : strerror(errno));
		return HAGGLE_CLOSE;
	}
	uint32_t cflags = get32(cflags_buf);
	if (cflags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
		/* Spec: the server MUST drop the connection on unknown client flags. */
		log_warn(vol, "NBD %s: unknown client flags 0x%x, closing", c->peer, cflags);
		return HAGGLE_CLOSE;
	}
	c->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;

	for (unsigned n = 0; n < NBD_MAX_OPTIONS; n++) {
		uint8_t hdr[NBD_OPT_HDR_LEN];
		rc = recv_all(c->fd, hdr, sizeof(hdr));
		if (rc != 1) {
			log_info(vol, "NBD %s: closed during option haggling: %s", c->peer,
				 rc == 0 ? "EOF" : strerror(errno));
			return HAGGLE_CLOSE;
		}
		if (get64(hdr) != NBD_IHAVEOPT) {
			log_warn(vol, "NBD %s: bad option magic 0x%016llx, closing", c->peer,
				 (unsigned long long)get64(hdr));
			return HAGGLE_CLOSE;
		}
		uint32_t opt = get32(hdr + 8), len = get32(hdr + 12);

		if (len > NBD_OPT_DATA_MAX) {
			if (opt == NBD_OPT_EXPORT_NAME || len > NBD_OPT_DISCARD_MAX) {
				log_warn(vol, "NBD %s: option %u with %u bytes of data, closing",
					 c->peer, opt, len);
				return HAGGLE_CLOSE;
			}
			if (discard(c->fd, c->opt, sizeof(c->opt), len) < 0) {
				log_warn(vol, "NBD %s: reading option data: %s", c->peer,
					 strerror(errno));
				return HAGGLE_CLOSE;
			}
			if (opt_error(c, opt, NBD_REP_ERR_TOO_BIG, "option data too large") < 0)
				return HAGGLE_CLOSE;
			continue;
		}
		if (recv_body(c->fd, c->opt, len) < 0) {
			log_warn(vol, "NBD %s: reading option data: %s", c->peer,
				 strerror(errno));
			return HAGGLE_CLOSE;
		}

		bool go = false;
		switch (opt) {
		case NBD_OPT_EXPORT_NAME:
			return handle_export_name(c, len) < 0 ? HAGGLE_CLOSE : HAGGLE_TRANSMIT;
		case NBD_OPT_ABORT:
			/* Spec: reply ACK, but the client may already be gone. */
			(void)opt_reply_raw(c, opt, NBD_REP_ACK, NULL, 0);
			log_debug(vol, "NBD %s: client aborted negotiation", c->peer);
			return HAGGLE_CLOSE;
		case NBD_OPT_LIST:
			rc = handle_list(c, len);
			break;
		case NBD_OPT_INFO:
		case NBD_OPT_GO:
			rc = handle_info(c, opt, len, &go);
			break;
		default:
			/* STARTTLS, STRUCTURED_REPLY, meta contexts, extended headers... */
			log_debug(vol, "NBD %s: option %u not supported", c->peer, opt);
			rc = opt_error(c, opt, NBD_REP_ERR_UNSUP, "option not supported");
			break;
		}
		if (rc < 0)
			return HAGGLE_CLOSE;
		if (go)
			return HAGGLE_TRANSMIT;
	}
	log_warn(vol, "NBD %s: more than %d options, closing", c->peer, NBD_MAX_OPTIONS);
	return HAGGLE_CLOSE;
}

/* --- transmission ------------------------------------------------------------ */

struct nbd_request {
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint32_t length;
};

/* The one place backend errno values become NBD error codes. */
static uint32_t nbd_errno(int err)
{
	switch (err < 0 ? -err : err) {
	case 0:
		return NBD_OK;
	case EPERM:
	case EROFS:
		return NBD_EPERM;
	case EIO:
		return NBD_EIO;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}

static const char *cmd_name(uint16_t type)
{
	switch (type) {
	case NBD_CMD_READ:
		return "READ";
	case NBD_CMD_WRITE:
		return "WRITE";
	case NBD_CMD_DISC:
		return "DISC";
	case NBD_CMD_FLUSH:
		return "FLUSH";
	case NBD_CMD_TRIM:
		return "TRIM";
	case NBD_CMD_WRITE_ZEROES:
		return "WRITE_ZEROES";
	default:
		return "unknown";
	}
}

/*
 * Checks a request against the export before anything is allocated or read.
 * Returns the NBD error to reply, NBD_OK if it may run.
 */
static uint32_t validate_request(const struct nbd_server *srv, const struct nbd_request *r)
{
	const struct nbd_export *exp = srv->exp;
	uint16_t allowed = NBD_CMD_FLAG_FUA; /* spec: FUA is valid on every command */
	bool writes = false, payload = false;
	uint32_t range_err = NBD_EINVAL;

	switch (r->type) {
	case NBD_CMD_READ:
		payload = true;
		break;
	case NBD_CMD_WRITE:
		writes = payload = true;
		range_err = NBD_ENOSPC; /* spec: a write past the end is ENOSPC */
		break;
	case NBD_CMD_FLUSH:
		if (!(srv->tflags & NBD_FLAG_SEND_FLUSH))
			return NBD_EINVAL;
		return (r->flags & ~allowed) ? NBD_EINVAL : NBD_OK;
	case NBD_CMD_TRIM:
		/* Read-only exports do not advertise TRIM/WRITE_ZEROES, yet a
		 * write of any kind is answered EPERM, as the spec asks. */
		if (exp->read_only)
			return NBD_EPERM;
		if (!(srv->tflags & NBD_FLAG_SEND_TRIM))
			return NBD_EINVAL;
		writes = true;
		break;
	case NBD_CMD_WRITE_ZEROES:
		if (exp->read_only)
			return NBD_EPERM;
		if (!(srv->tflags & NBD_FLAG_SEND_WRITE_ZEROES))
			return NBD_EINVAL;
		allowed |= NBD_CMD_FLAG_NO_HOLE;
		writes = true;
		range_err = NBD_ENOSPC;
		break;
	default:
		return NBD_EINVAL;
	}
	if (r->flags & ~allowed)
		return NBD_EINVAL;
	if (writes && exp->read_only)
		return NBD_EPERM;
	if (payload && r->length > exp->max_payload)
		return NBD_EINVAL;
	if (r->offset > exp->size || r->length > exp->size - r->offset)
		return range_err;
	return NBD_OK;
}

static int send_reply(struct nbd_conn *c, const struct nbd_request *r, uint32_t err,
		      const void *data, uint32_t len)
{
	uint8_t hdr[NBD_SIMPLE_REPLY_LEN];
	put32(hdr, NBD_SIMPLE_REPLY_MAGIC);
	put32(hdr + 4, err);
	put64(hdr + 8, r->cookie);
	struct iovec iov[2] = {
		{ .iov_base = hdr, .iov_len = sizeof(hdr) },
		{ .iov_base = (void *)data, .iov_len = len },
	};
	if (send_iov(c->fd, iov, len ? 2 : 1) < 0) {
		log_info(c->srv->exp->name, "NBD %s: sending %s reply: %s", c->peer,
			 cmd_name(r->type), strerror(errno));
		return -1;
	}
	return 0;
}

/* Runs a validated request (a WRITE's payload already in c->buf) and replies. */
static int execute(struct nbd_conn *c, const struct nbd_request *r)
{
	const struct nbd_export *exp = c->srv->exp;
	const struct nbd_backend *be = &exp->backend;
	bool fua = r->flags & NBD_CMD_FLAG_FUA;
	int err = 0;

	/* Zero-length requests are no-ops: the spec discourages but allows them. */
	if (r->length == 0 && r->type != NBD_CMD_FLUSH)
		return send_reply(c, r, NBD_OK, NULL, 0);

	switch (r->type) {
	case NBD_CMD_READ:
		err = be->pread(be->ctx, c->buf, r->length, r->offset);
		if (err == 0)
			return send_reply(c, r, NBD_OK, c->buf, r->length);
		break;
	case NBD_CMD_WRITE:
		err = be->pwrite(be->ctx, c->buf, r->length, r->offset, fua);
		break;
	case NBD_CMD_FLUSH:
		err = be->flush(be->ctx);
		break;
	case NBD_CMD_TRIM:
		err = be->trim(be->ctx, r->length, r->offset, fua);
		break;
	case NBD_CMD_WRITE_ZEROES:
		err = be->zero(be->ctx, r->length, r->offset, !(r->flags & NBD_CMD_FLAG_NO_HOLE),
			       fua);
		break;
	}
	if (err) {
		/* Simple replies: an error READ carries no payload (spec). */
		log_warn(exp->name, "NBD %s: %s offset %llu length %u failed: %s", c->peer,
			 cmd_name(r->type), (unsigned long long)r->offset, r->length,
			 strerror(err < 0 ? -err : err));
	}
	return send_reply(c, r, nbd_errno(err), NULL, 0);
}

static void transmit(struct nbd_conn *c)
{
	const struct nbd_export *exp = c->srv->exp;
	const char *vol = exp->name;

	/* One buffer for the life of the connection: requests are served one at a time. */
	c->buf = malloc(exp->max_payload);
	if (!c->buf) {
		log_error(vol, "NBD %s: cannot allocate %u-byte buffer", c->peer, exp->max_payload);
		return;
	}

	for (;;) {
		uint8_t hdr[NBD_REQUEST_LEN];
		int rc = recv_all(c->fd, hdr, sizeof(hdr));
		if (rc == 0) {
			log_debug(vol, "NBD %s: client closed", c->peer);
			return;
		}
		if (rc < 0) {
			log_info(vol, "NBD %s: reading request: %s", c->peer, strerror(errno));
			return;
		}
		if (get32(hdr) != NBD_REQUEST_MAGIC) {
			log_warn(vol, "NBD %s: bad request magic 0x%08x, closing", c->peer,
				 get32(hdr));
			return;
		}
		struct nbd_request r = {
			.flags = get16(hdr + 4),
			.type = get16(hdr + 6),
			.cookie = get64(hdr + 8),
			.offset = get64(hdr + 16),
			.length = get32(hdr + 24),
		};
		if (r.type == NBD_CMD_DISC) {
			log_debug(vol, "NBD %s: client disconnected", c->peer);
			return;
		}

		uint32_t werr = validate_request(c->srv, &r);
		if (werr != NBD_OK) {
			log_debug(vol, "NBD %s: refusing %s (type %u) flags 0x%x offset %llu "
				  "length %u: error %u", c->peer, cmd_name(r.type), r.type,
				  r.flags, (unsigned long long)r.offset, r.length, werr);
			/* A refused WRITE still has its payload on the wire. */
			if (r.type == NBD_CMD_WRITE) {
				if (r.length > NBD_WRITE_DISCARD_MAX) {
					log_warn(vol, "NBD %s: refused WRITE of %u bytes is too "
						 "large to skip, closing", c->peer, r.length);
					return;
				}
				if (discard(c->fd, c->buf, exp->max_payload, r.length) < 0) {
					log_info(vol, "NBD %s: reading WRITE payload: %s",
						 c->peer, strerror(errno));
					return;
				}
			}
			if (send_reply(c, &r, werr, NULL, 0) < 0)
				return;
			continue;
		}

		if (r.type == NBD_CMD_WRITE && recv_body(c->fd, c->buf, r.length) < 0) {
			log_info(vol, "NBD %s: reading WRITE payload: %s", c->peer,
				 strerror(errno));
			return;
		}
		if (execute(c, &r) < 0)
			return;
	}
}

/* --- connections ------------------------------------------------------------- */

static void set_timeout(int fd, int seconds)
{
	struct timeval tv = { .tv_sec = seconds };
	/* Best effort: without it a silent client just holds its thread. */
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static void *conn_main(void *arg)
{
	struct nbd_conn *c = arg;
	struct nbd_server *srv = c->srv;

	log_debug(srv->exp->name, "NBD %s: connected", c->peer);
	set_timeout(c->fd, NBD_HANDSHAKE_TIMEOUT_S);
	if (haggle(c) == HAGGLE_TRANSMIT) {
		set_timeout(c->fd, 0); /* an idle mounted device is normal */
		log_debug(srv->exp->name, "NBD %s: entering transmission", c->peer);
		transmit(c);
	}
	free(c->buf);
	c->buf = NULL;

	/* The peer sees EOF now; the fd itself is closed by the joiner so its
	 * number cannot be reused while nbd_server_stop may still shut it down. */
	shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_lock(&srv->lock);
	c->done = true;
	pthread_mutex_unlock(&srv->lock);
	/* Wake the accept loop to reap us; a full pipe already means "wake up". */
	ssize_t w = write(srv->wake[1], "c", 1);
	(void)w;
	return NULL;
}

static void conn_free(struct nbd_conn *c)
{
	pthread_join(c->thread, NULL);
	close(c->fd);
	free(c);
}

/* Joins finished connections. Called from the accept thread only. */
static void reap(struct nbd_server *srv)
{
	struct nbd_conn *dead = NULL;
	pthread_mutex_lock(&srv->lock);
	for (struct nbd_conn **pp = &srv->conns; *pp;) {
		struct nbd_conn *c = *pp;
		if (c->done) {
			*pp = c->next;
			c->next = dead;
			dead = c;
			srv->nconns--;
		} else {
			pp = &c->next;
		}
	}
	pthread_mutex_unlock(&srv->lock);
	while (dead) {
		struct nbd_conn *next = dead->next;
		conn_free(dead);
		dead = next;
	}
}

/* "IP:PORT" or "[IP6]:PORT"; a unix peer is named by its pid when fd gives it. */
static void describe_peer(const struct sockaddr_storage *ss, socklen_t len, int fd, char *out,
			  size_t out_len)
{
	char host[64], serv[8]; /* numeric: an IPv6 literal with scope, a port */
	if (ss->ss_family == AF_UNIX) {
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
			snprintf(out, out_len, "unix:pid=%d", (int)cred.pid);
		else
			snprintf(out, out_len, "unix");
		return;
	}
	if (getnameinfo((const struct sockaddr *)ss, len, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(out, out_len, "?");
		return;
	}
	if (ss->ss_family == AF_INET6)
		snprintf(out, out_len, "[%s]:%s", host, serv);
	else
		snprintf(out, out_len, "%s:%s", host, serv);
}

static void tune_socket(const struct nbd_server *srv, int fd)
{
	if (srv->is_unix) {
		int sz = NBD_UNIX_SOCKBUF;
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	} else {
		/* TCP buffers are left to autotuning (setting them disables it).
		 * NODELAY: a small reply must not wait for the ACK of the last one. */
		int one = 1;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
}

static void accept_one(struct nbd_server *srv)
{
	const char *vol = srv->exp->name;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = accept4(srv->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
			return;
		log_warn(vol, "NBD accept: %s", strerror(errno));
		/* EMFILE and friends: back off rather than spin on a ready listener. */
		poll(NULL, 0, 100);
		return;
	}

	struct nbd_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		log_error(vol, "NBD: out of memory for a connection");
		close(fd);
		return;
	}
	c->srv = srv;
	c->fd = fd;
	describe_peer(&ss, sl, fd, c->peer, sizeof(c->peer));
	tune_socket(srv, fd);

	pthread_mutex_lock(&srv->lock);
	if (srv->nconns >= NBD_MAX_CLIENTS) {
		pthread_mutex_unlock(&srv->lock);
		log_warn(vol, "NBD %s: already %d clients, refusing", c->peer, NBD_MAX_CLIENTS);
		close(fd);
		free(c);
		return;
	}
	int rc = pthread_create(&c->thread, NULL, conn_main, c);
	if (rc != 0) {
		pthread_mutex_unlock(&srv->lock);
		log_error(vol, "NBD %s: cannot start connection thread: %s", c->peer,
			  strerror(rc));
		close(fd);
		free(c);
		return;
	}
	c->next = srv->conns;
	srv->conns = c;
	srv->nconns++;
	pthread_mutex_unlock(&srv->lock);
}

static void *accept_main(void *arg)
{
	struct nbd_server *srv = arg;
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = srv->listen_fd, .events = POLLIN },
			{ .fd = srv->wake[0], .events = POLLIN },
		};
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error(srv->exp->name, "NBD poll: %s", strerror(errno));
			break;
		}
		if (pfd[1].revents) {
			char drain[64];
			while (read(srv->wake[0], drain, sizeof(drain)) > 0)
				;
			reap(srv);
			pthread_mutex_lock(&srv->lock);
			bool stop = srv->stopping;
			pthread_mutex_unlock(&srv->lock);
			if (stop)
				break;
		}
		if (pfd[0].revents)
			accept_one(srv);
	}
	return NULL;
}

/* --- listening ----------------------------------------------------------------- */

static int listen_unix(struct nbd_server *srv, const char *path, char *err, size_t err_len)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd = -1;

	if (strlen(path) == 0 || strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, err_len, "unix socket path '%s' is empty or too long", path);
		goto fail;
	}
	strcpy(sun.sun_path, path);
	/* A leftover from a previous run is ours to remove; anything else is not. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, err_len, "%s exists and is not a socket", path);
			goto fail;
		}
		if (unlink(path) < 0) {
			snprintf(err, err_len, "removing stale socket %s: %s", path,
				 strerror(errno));
			goto fail;
		}
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, err_len, "socket: %s", strerror(errno));
		goto fail;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		snprintf(err, err_len, "bind %s: %s", path, strerror(errno));
		goto fail;
	}
	if (listen(fd, SOMAXCONN) < 0) {
		snprintf(err, err_len, "listen %s: %s", path, strerror(errno));
		unlink(path);
		goto fail;
	}
	srv->is_unix = true;
	strcpy(srv->unix_path, path);
	srv->listen_fd = fd;
	log_info(srv->exp->name, "NBD listening on unix:%s", path);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

static int listen_tcp(struct nbd_server *srv, const char *listen_addr, char *err, size_t err_len)
{
	char host[256], port[16];
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *res = NULL;
	int fd = -1, rc;
	char why[160] = "no address";

	if (split_host_port(listen_addr, host, sizeof(host), port, sizeof(port), NULL) < 0) {
		snprintf(err, err_len, "bad NBD listen address '%s' (want unix:PATH or HOST:PORT)",
			 listen_addr);
		return -1;
	}
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, err_len, "resolving %s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			snprintf(why, sizeof(why), "socket: %s", strerror(errno));
			continue;
		}
		int one = 1;
		/* Restart without waiting for TIME_WAIT of the last run's clients. */
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
			break;
		snprintf(why, sizeof(why), "%s", strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, err_len, "cannot listen on %s: %s", listen_addr, why);
		return -1;
	}

	if (!is_loopback_host(host))
		log_warn(srv->exp->name, "NBD on a non-loopback address %s: NBD has no "
			 "authentication; anyone who can reach it can read and write the volume",
			 host);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char bound[80] = "?";
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		describe_peer(&ss, sl, -1, bound, sizeof(bound));
	srv->listen_fd = fd;
	log_info(srv->exp->name, "NBD listening on %s", bound);
	return 0;
}

static uint16_t transmission_flags(const struct nbd_export *exp)
{
	const struct nbd_backend *be = &exp->backend;
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FUA;
	/* The backend's flush covers every connection, so several may be used. */
	f |= NBD_FLAG_CAN_MULTI_CONN;
	if (be->flush)
		f |= NBD_FLAG_SEND_FLUSH;
	if (exp->read_only) {
		f |= NBD_FLAG_READ_ONLY;
	} else {
		if (be->trim)
			f |= NBD_FLAG_SEND_TRIM;
		if (be->zero)
			f |= NBD_FLAG_SEND_WRITE_ZEROES;
	}
	return f;
}

struct nbd_server *nbd_server_start(const char *listen_addr, const struct nbd_export *exp,
				    char *err, size_t err_len)
{
	struct nbd_server *srv = NULL;

	if (!exp->name || strlen(exp->name) == 0 || strlen(exp->name) > NBD_MAX_STRING) {
		snprintf(err, err_len, "NBD export name must be 1..%d bytes", NBD_MAX_STRING);
		goto fail;
	}
	if (exp->max_payload < NBD_MIN_PAYLOAD || exp->max_payload > NBD_MAX_PAYLOAD) {
		snprintf(err, err_len, "NBD max payload %u outside %d..%d", exp->max_payload,
			 NBD_MIN_PAYLOAD, NBD_MAX_PAYLOAD);
		goto fail;
	}
	if (!exp->backend.pread || (!exp->read_only && !exp->backend.pwrite)) {
		snprintf(err, err_len, "NBD backend lacks pread/pwrite");
		goto fail;
	}

	srv = calloc(1, sizeof(*srv));
	if (!srv) {
		snprintf(err, err_len, "out of memory");
		goto fail;
	}
	srv->exp = exp;
	srv->listen_fd = -1;
	srv->wake[0] = srv->wake[1] = -1;
	srv->tflags = transmission_flags(exp);
	pthread_mutex_init(&srv->lock, NULL);
	if (pipe2(srv->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		snprintf(err, err_len, "pipe: %s", strerror(errno));
		goto fail;
	}

	int rc;
	if (strncmp(listen_addr, "unix:", 5) == 0)
		rc = listen_unix(srv, listen_addr + 5, err, err_len);
	else
		rc = listen_tcp(srv, listen_addr, err, err_len);
	if (rc < 0)
		goto fail;

	rc = pthread_create(&srv->accept_thread, NULL, accept_main, srv);
	if (rc != 0) {
		snprintf(err, err_len, "cannot start NBD accept thread: %s", strerror(rc));
		goto fail;
	}
	srv->accept_started = true;
	return srv;
fail:
	if (srv)
		nbd_server_stop(srv);
	return NULL;
}

void nbd_server_stop(struct nbd_server *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_mutex_unlock(&s->lock);
	if (s->accept_started) {
		ssize_t w = write(s->wake[1], "s", 1);
		(void)w;
		pthread_join(s->accept_thread, NULL);
	}

	/* No new connections now. Wake every client thread out of its recv/send;
	 * one busy inside the backend finishes that call first. */
	pthread_mutex_lock(&s->lock);
	for (struct nbd_conn *c = s->conns; c; c = c->next)
		shutdown(c->fd, SHUT_RDWR);
	struct nbd_conn *list = s->conns;
	s->conns = NULL;
	s->nconns = 0;
	pthread_mutex_unlock(&s->lock);
	while (list) {
		struct nbd_conn *next = list->next;
		conn_free(list);
		list = next;
	}

	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		if (s->is_unix)
			unlink(s->unix_path);
	}
	if (s->wake[0] >= 0)
		close(s->wake[0]);
	if (s->wake[1] >= 0)
		close(s->wake[1]);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
