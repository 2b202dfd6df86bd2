/* Test tool: serves a plain file through client/nbd.c, to test the NBD layer on its own. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "nbd.h"
#include "util.h"

enum { DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024, ZERO_CHUNK = 1024 * 1024 };

struct file_backend {
	int fd;
};

static int file_pread(void *ctx, void *buf, uint32_t len, uint64_t off)
{
	struct file_backend *f = ctx;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(f->fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0) /* the file shrank under us: read as zeroes */
			memset((char *)buf + done, 0, len - done), n = (ssize_t)(len - done);
		done += (size_t)n;
	}
	return 0;
}

static int file_flush(void *ctx)
{
	struct file_backend *f = ctx;
	return fdatasync(f->fd) < 0 ? errno : 0;
}

static int file_pwrite(void *ctx, const void *buf, uint32_t len, uint64_t off, bool fua)
{
	struct file_backend *f = ctx;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(f->fd, (const char *)buf + done, len - done,
				   (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		done += (size_t)n;
	}
	return fua ? file_flush(ctx) : 0;
}

static int file_trim(void *ctx, uint32_t len, uint64_t off, bool fua)
{
	struct file_backend *f = ctx;
	if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, len) < 0)
		return errno;
	return fua ? file_flush(ctx) : 0;
}

/* Writes zeroes the slow way, for file systems without fallocate modes. */
static int write_zeroes(void *ctx, uint32_t len, uint64_t off)
{
	static const char zeroes[ZERO_CHUNK];
	while (len > 0) {
		uint32_t n = len < ZERO_CHUNK ? len : ZERO_CHUNK;
		int err = file_pwrite(ctx, zeroes, n, off, false);
		if (err)
			return err;
		len -= n;
		off += n;
	}
	return 0;
}

static int file_zero(void *ctx, uint32_t len, uint64_t off, bool may_trim, bool fua)
{
	struct file_backend *f = ctx;
	int mode = may_trim ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
			    : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	int err = 0;
	if (fallocate(f->fd, mode, (off_t)off, len) < 0) {
		err = errno;
		if (err == EOPNOTSUPP)
			err = write_zeroes(ctx, len, off);
	}
	if (err)
		return err;
	return fua ? file_flush(ctx) : 0;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: nbd-file-server --file PATH --listen unix:SOCK|HOST:PORT --name NAME\n"
		     "                       [--max-payload N] [--read-only] [--log-level LEVEL]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "listen", required_argument, NULL, 'l' },
		{ "name", required_argument, NULL, 'n' },
		{ "max-payload", required_argument, NULL, 'm' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *listen_addr = NULL, *name = NULL;
	uint64_t max_payload = DEFAULT_MAX_PAYLOAD;
	bool read_only = false;
	int level = LOG_INFO, c, ret = 1;
	struct file_backend fb = { .fd = -1 };
	struct nbd_server *srv = NULL;

	while ((c = getopt_long(argc, argv, "f:l:n:m:rL:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			path = optarg;
			break;
		case 'l':
			listen_addr = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'm':
			if (parse_size(optarg, &max_payload) < 0 || max_payload > UINT32_MAX) {
				fprintf(stderr, "nbd-file-server: bad --max-payload '%s'\n", optarg);
				return 2;
			}
			break;
		case 'r':
			read_only = true;
			break;
		case 'L':
			level = log_level_parse(optarg);
			if (level < 0) {
				fprintf(stderr, "nbd-file-server: bad --log-level '%s'\n", optarg);
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
	if (!path || !listen_addr || !name || optind != argc) {
		usage(stderr);
		return 2;
	}
	log_init("nbd-file-server", (enum log_level)level);

	/* Block the stop signals before any thread starts, so only sigwait sees them. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	fb.fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fb.fd < 0) {
		log_error(name, "open %s: %s", path, strerror(errno));
		goto out;
	}
	off_t size = lseek(fb.fd, 0, SEEK_END);
	if (size < 0) {
		log_error(name, "size of %s: %s", path, strerror(errno));
		goto out;
	}

	struct nbd_export exp = {
		.name = name,
		.size = (uint64_t)size,
		.max_payload = (uint32_t)max_payload,
		.read_only = read_only,
		.backend = {
			.ctx = &fb,
			.pread = file_pread,
			.pwrite = file_pwrite,
			.flush = file_flush,
			.trim = file_trim,
			.zero = file_zero,
		},
	};
	char err[256];
	srv = nbd_server_start(listen_addr, &exp, err, sizeof(err));
	if (!srv) {
		log_error(name, "%s", err);
		goto out;
	}

	int sig;
	sigwait(&stop, &sig);
	log_info(name, "signal %d: stopping", sig);
	nbd_server_stop(srv);
	ret = 0;
out:
	if (fb.fd >= 0)
		close(fb.fd);
	return ret;
}
