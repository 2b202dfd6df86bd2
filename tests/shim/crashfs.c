/* crashfs: LD_PRELOAD shim simulating a power loss: undoes every write not yet made durable. */
/*
 * Why: kill -9 keeps the page cache, so it cannot show whether fdatasync is
 * called where it must be. Under this shim a "crash" first rolls back, file
 * by file, everything written since that file's last fsync/fdatasync, and
 * every create or rename not yet made durable by an fsync of its directory,
 * then the process dies by SIGKILL (status 137, like kill -9).
 *
 * Environment (read once, at load):
 *   CRASHFS_ROOT=DIR[:DIR...]  only regular files under these directories are
 *                              tracked; unset: nothing is tracked, but
 *                              crashfs_crash() still kills and the sync
 *                              delay below still applies.
 *   CRASHFS_SIGNAL=USR2        this signal (name, SIGNAME or number) pulls the
 *                              plug from outside: kill -USR2 PID.
 *   CRASHFS_MAX_PENDING=BYTES  cap on saved old bytes (default 1 GiB); past it
 *                              the process aborts loudly rather than lie.
 *   CRASHFS_VERBOSE=1          one stderr line per undone operation at a crash.
 *   CRASHFS_SYNC_DELAY_MS=N    every fsync/fdatasync of a regular file or
 *                              directory sleeps N ms before the real call,
 *                              like a slow disk: widens the window in which
 *                              writes race with a sync (tmpfs syncs take no
 *                              time), or shows what waits on a sync. Works
 *                              without CRASHFS_ROOT (then it is all the shim
 *                              does) and, unlike tracking, survives fork().
 *   CRASHFS_SYNC_DELAY_PATH=GLOB  only syncs of files whose absolute path
 *                              (as /proc/self/fd names it) matches this
 *                              fnmatch(3) pattern are delayed, e.g.
 *                              '*.journal' for frep's journals but not
 *                              their .meta or .bitmap; default: every path.
 *   CRASHFS_SYNC_DELAY_LOG=FILE   each delayed sync appends "delay PATH" to
 *                              FILE before it sleeps: a test waits for that
 *                              line to know a sync is under way.
 *
 * Model, per inode (tracked by inode, not fd: a file closed without a sync
 * still loses its data):
 *   - before pwrite/write/writev/pwritev*, fallocate (punch hole, zero range,
 *     collapse, insert, extend), posix_fallocate, ftruncate/truncate change a
 *     byte range, its old bytes are read (pread through our own descriptor)
 *     and kept in an undo record with the old file size;
 *   - fsync/fdatasync of the file discards the records that existed when the
 *     call started (writes racing with the sync stay undoable); sync() and
 *     syncfs() discard everything; sync_file_range is not durable;
 *   - at a crash every inode's records are applied newest first: old bytes
 *     written back (all-zero ranges are punched), old size restored.
 * Bytes that an earlier pending record of the same inode already saved, or
 * that lie past the size the file had at its last sync, are not saved again:
 * appends and bulk copies into a sparse file cost a record header, not a
 * copy. The argument that this is exact is at save_change().
 *
 * Namespace: open(O_CREAT) of a new file and rename(2) into a tracked
 * directory are durable only once that directory (the new name's parent) is
 * fsynced. Until then a crash undoes them, newest first: a renamed file goes
 * back to its old name and the file it replaced comes back (kept alive by a
 * hard link DIR/.crashfs-PID-SEQ, removed when the directory is fsynced); a
 * created file is unlinked. This models frep's pattern "write tmp, fsync tmp,
 * rename, fsync dir" and catches any step left out.
 *
 * Limitations (documented, not modelled):
 *   - fds 0-2 and descriptors opened with O_APPEND (logs, traces) are never
 *     tracked, so the test keeps its logs;
 *   - mkdir, unlink, link, symlink, rename of a directory over another, and
 *     RENAME_EXCHANGE are not undone; a rename is made durable by an fsync of
 *     the new name's parent only (not the old one's);
 *   - writes through mmap, io_uring, splice, sendfile, copy_file_range, and
 *     calls made inside libc (fopen/fwrite/fclose use internal entry points)
 *     bypass the shim;
 *   - O_DSYNC/O_SYNC writes and RWF_DSYNC/RWF_SYNC count as write + fdatasync
 *     of the whole file (the kernel only syncs the range);
 *   - the disk itself is assumed not to tear or reorder: a crash never
 *     leaves half of one write;
 *   - after fork() the child is untracked (the parent's state is not its own;
 *     the sync delay, which has no state, goes on);
 *   - CRASHFS_SIGNAL is blocked in the loading thread and handled by a
 *     thread of the shim with sigwait(); a program that unblocks it in
 *     some thread gets the signal's default action instead.
 *
 * Concurrency: one global mutex serialises the tracked operations together
 * with the real system call (so a crash never interleaves with a
 * half-recorded write); untracked descriptors (sockets, pipes, files outside
 * the root) take no lock. A crash takes the mutex and never releases it:
 * other threads block in their next tracked call until SIGKILL arrives.
 *
 * ASan: preloading this (non-instrumented) library into an ASan binary needs
 * ASAN_OPTIONS=verify_asan_link_order=0 (or LD_PRELOAD="libasan.so.8 $shim");
 * RTLD_NEXT then reaches ASan's interceptors, then libc.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define CRASHFS_EXPORT __attribute__((visibility("default")))
#define DEFAULT_MAX_PENDING (1ull << 30)

enum crashfs_limits {
	ROOTS_MAX = 8,		/* directories in CRASHFS_ROOT */
	FD_CACHE_MAX = 4096,	/* descriptors whose "untracked" verdict is cached */
	SAVE_CHUNK = 1 << 20,	/* old bytes are saved in records of at most this */
	ZERO_BUF = 64 << 10,	/* zeros written when punching a hole fails */
	MSG_MAX = 2 * PATH_MAX + 256,
};

/* Old content of [off, off + len) and the size before one change. */
struct undo {
	struct undo *prev; /* older record of the same inode */
	uint64_t seq;
	off_t off, len;
	off_t old_size;
	unsigned char *data; /* NULL: the range held only zeros (or len is 0) */
};

struct range {
	off_t a, b;
};

struct inode {
	struct inode *next;
	dev_t dev;
	ino_t ino;
	int fd;		   /* ours, O_RDWR: pins the inode, reads old bytes, undoes */
	struct undo *last; /* newest pending record, NULL: all durable */
	unsigned syncing;  /* fsync/fdatasync calls in flight on it */
	bool noskip;	   /* records survive a partial drop: save every byte */
	off_t base_size;   /* size before the oldest pending record */
	struct range *cov; /* union of the saved ranges, sorted, disjoint */
	size_t ncov, capcov;
};

/* A create or rename that an fsync of directory (dir_dev, dir_ino) makes durable. */
struct nsop {
	struct nsop *prev;
	uint64_t seq;
	bool is_rename;
	dev_t dir_dev;
	ino_t dir_ino;
	dev_t dev; /* the created or renamed inode */
	ino_t ino;
	char *from;  /* rename only */
	char *to;
	char *saved; /* rename only: hard link to the replaced file, or NULL */
};

/* Real functions, resolved with RTLD_NEXT. */
static struct {
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*pwrite)(int, const void *, size_t, off_t);
	ssize_t (*pwrite64)(int, const void *, size_t, off_t);
	ssize_t (*pwritev)(int, const struct iovec *, int, off_t);
	ssize_t (*pwritev64)(int, const struct iovec *, int, off_t);
	ssize_t (*pwritev2)(int, const struct iovec *, int, off_t, int);
	ssize_t (*pwritev64v2)(int, const struct iovec *, int, off_t, int);
	int (*fallocate)(int, int, off_t, off_t);
	int (*fallocate64)(int, int, off_t, off_t);
	int (*posix_fallocate)(int, off_t, off_t);
	int (*posix_fallocate64)(int, off_t, off_t);
	int (*ftruncate)(int, off_t);
	int (*ftruncate64)(int, off_t);
	int (*truncate)(const char *, off_t);
	int (*truncate64)(const char *, off_t);
	int (*fsync)(int);
	int (*fdatasync)(int);
	int (*sync_file_range)(int, off_t, off_t, unsigned);
	void (*sync)(void);
	int (*syncfs)(int);
	int (*close)(int);
	int (*open)(const char *, int, ...);
	int (*open64)(const char *, int, ...);
	int (*openat)(int, const char *, int, ...);
	int (*openat64)(int, const char *, int, ...);
	int (*creat)(const char *, mode_t);
	int (*creat64)(const char *, mode_t);
	int (*rename)(const char *, const char *);
	int (*renameat)(int, const char *, int, const char *);
	int (*renameat2)(int, const char *, int, const char *, unsigned);
} real;

/*
 * g_lock protects every static below except the ones set once in the
 * constructor (g_roots, g_nroots, g_max_pending, g_verbose, g_sync_delay_ms,
 * g_sync_delay_path) and g_active (atomic: cleared in a fork child).
 */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool g_active;
static char g_roots[ROOTS_MAX][PATH_MAX];
static size_t g_nroots;
static uint64_t g_max_pending = DEFAULT_MAX_PENDING;
static bool g_verbose;
static unsigned g_sync_delay_ms;
static const char *g_sync_delay_path; /* NULL: every path */
static const char *g_sync_delay_log;  /* NULL: none */
static uint64_t g_seq;
static uint64_t g_pending;
static struct inode *g_inodes;
static struct nsop *g_ns_last;
static struct {
	dev_t dev;
	ino_t ino;
	bool valid;
} g_untracked[FD_CACHE_MAX];

/* ------------------------------------------------------------ utilities */

static void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void msg(const char *fmt, ...)
{
	char buf[MSG_MAX];
	va_list ap;
	int n;

	memcpy(buf, "crashfs: ", 9);
	va_start(ap, fmt);
	n = vsnprintf(buf + 9, sizeof(buf) - 10, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n = 9 + (n < (int)sizeof(buf) - 10 ? n : (int)sizeof(buf) - 11);
	buf[n++] = '\n';
	if (real.write)
		(void)real.write(2, buf, (size_t)n);
}

/* A broken model must stop the test, never let it pass. */
static void __attribute__((noreturn)) die(const char *what)
{
	msg("FATAL: %s", what);
	abort();
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xmalloc(n), s, n);
}

#define RESOLVE(name) real.name = dlsym(RTLD_NEXT, #name)

static void resolve(void)
{
	RESOLVE(write);
	RESOLVE(writev);
	RESOLVE(pwrite);
	RESOLVE(pwrite64);
	RESOLVE(pwritev);
	RESOLVE(pwritev64);
	RESOLVE(pwritev2);
	RESOLVE(pwritev64v2);
	RESOLVE(fallocate);
	RESOLVE(fallocate64);
	RESOLVE(posix_fallocate);
	RESOLVE(posix_fallocate64);
	RESOLVE(ftruncate);
	RESOLVE(ftruncate64);
	RESOLVE(truncate);
	RESOLVE(truncate64);
	RESOLVE(fsync);
	RESOLVE(fdatasync);
	RESOLVE(sync_file_range);
	RESOLVE(sync);
	RESOLVE(syncfs);
	RESOLVE(close);
	RESOLVE(open);
	RESOLVE(open64);
	RESOLVE(openat);
	RESOLVE(openat64);
	RESOLVE(creat);
	RESOLVE(creat64);
	RESOLVE(rename);
	RESOLVE(renameat);
	RESOLVE(renameat2);
}

static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;

/* Wrappers can run before our constructor (other libraries' constructors). */
#define REAL(name) (pthread_once(&resolve_once, resolve), real.name)

/* ------------------------------------------------------------ paths */

static bool under_root(const char *path)
{
	for (size_t i = 0; i < g_nroots; i++) {
		size_t n = strlen(g_roots[i]);
		if (n == 1 && g_roots[i][0] == '/')
			return true;
		if (strncmp(path, g_roots[i], n) == 0 && (path[n] == '/' || path[n] == '\0'))
			return true;
	}
	return false;
}

/*
 * Absolute path of (dirfd, path) with its directory part resolved, the last
 * component kept as is (it may not exist yet). 0, or -1 if it cannot be
 * named (then the operation is left untracked).
 */
static int abs_path(int dirfd, const char *path, char *out, size_t len)
{
	char dir[PATH_MAX], joined[PATH_MAX], resolved[PATH_MAX];
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	int dlen = slash ? (int)(slash - path) : 0;
	int n;

	if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return -1;
	if (path[0] == '/') {
		n = snprintf(joined, sizeof(joined), "/%.*s", dlen, path);
	} else {
		if (dirfd == AT_FDCWD) {
			if (!getcwd(dir, sizeof(dir)))
				return -1;
		} else {
			char link[64];
			snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
			ssize_t r = readlink(link, dir, sizeof(dir) - 1);
			if (r < 0)
				return -1;
			dir[r] = '\0';
		}
		n = snprintf(joined, sizeof(joined), "%s/%.*s", dir, dlen, path);
	}
	if (n < 0 || n >= (int)sizeof(joined) || !realpath(joined, resolved))
		return -1;
	n = snprintf(out, len, "%s/%s", strcmp(resolved, "/") ? resolved : "", base);
	return n < 0 || n >= (int)len ? -1 : 0;
}

/* stat of the directory holding the absolute path p. */
static int stat_parent(const char *p, struct stat *st)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(p, '/');
	size_t n = slash && slash != p ? (size_t)(slash - p) : 1;

	if (n >= sizeof(dir))
		return -1;
	memcpy(dir, p, n);
	dir[n] = '\0';
	return stat(dir, st);
}

/* ------------------------------------------------------------ inodes */

static struct inode *inode_find(dev_t dev, ino_t ino)
{
	/* O(n) in inodes with pending records; a handful in frep's tests. */
	for (struct inode *in = g_inodes; in; in = in->next)
		if (in->dev == dev && in->ino == ino)
			return in;
	return NULL;
}

static void inode_free_if_idle(struct inode *in)
{
	if (in->last || in->syncing)
		return;
	for (struct inode **pp = &g_inodes; *pp; pp = &(*pp)->next) {
		if (*pp == in) {
			*pp = in->next;
			break;
		}
	}
	REAL(close)(in->fd);
	free(in->cov);
	free(in);
}

/*
 * The inode behind fd if it is a regular file under a root, written through
 * a descriptor without O_APPEND; NULL if untracked. Called with g_lock held;
 * st is fd's fstat.
 */
static struct inode *inode_track(int fd, const struct stat *st)
{
	char link[64], path[PATH_MAX];
	struct inode *in = inode_find(st->st_dev, st->st_ino);
	ssize_t n;

	if (in)
		return in;
	if (fd < FD_CACHE_MAX && g_untracked[fd].valid && g_untracked[fd].dev == st->st_dev &&
	    g_untracked[fd].ino == st->st_ino)
		return NULL;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n < 0)
		return NULL;
	path[n] = '\0';
	if (!under_root(path) || strstr(path, " (deleted)")) {
		if (fd < FD_CACHE_MAX) {
			g_untracked[fd].dev = st->st_dev;
			g_untracked[fd].ino = st->st_ino;
			g_untracked[fd].valid = true;
		}
		return NULL;
	}
	in = calloc(1, sizeof(*in));
	if (!in)
		die("out of memory");
	in->fd = REAL(open)(link, O_RDWR | O_CLOEXEC);
	if (in->fd < 0) {
		msg("cannot reopen %s read-write: %s", path, strerror(errno));
		die("tracked file cannot be reopened");
	}
	in->dev = st->st_dev;
	in->ino = st->st_ino;
	in->next = g_inodes;
	g_inodes = in;
	return in;
}

static void cov_add(struct inode *in, off_t a, off_t b)
{
	size_t i = 0, j;

	if (a >= b)
		return;
	while (i < in->ncov && in->cov[i].b < a)
		i++;
	/* ranges i..j-1 overlap or touch [a, b): merge them into one */
	for (j = i; j < in->ncov && in->cov[j].a <= b; j++) {
		if (in->cov[j].a < a)
			a = in->cov[j].a;
		if (in->cov[j].b > b)
			b = in->cov[j].b;
	}
	if (j == i) {
		if (in->ncov == in->capcov) {
			size_t cap = in->capcov ? 2 * in->capcov : 16;
			struct range *r = realloc(in->cov, cap * sizeof(*r));
			if (!r)
				die("out of memory");
			in->cov = r;
			in->capcov = cap;
		}
		memmove(&in->cov[i + 1], &in->cov[i], (in->ncov - i) * sizeof(*in->cov));
		in->ncov++;
	} else if (j > i + 1) {
		memmove(&in->cov[i + 1], &in->cov[j], (in->ncov - j) * sizeof(*in->cov));
		in->ncov -= j - i - 1;
	}
	in->cov[i].a = a;
	in->cov[i].b = b;
}

static void push_record(struct inode *in, uint64_t seq, off_t off, off_t len, off_t old_size,
			unsigned char *data)
{
	struct undo *u = xmalloc(sizeof(*u));

	u->prev = in->last;
	u->seq = seq;
	u->off = off;
	u->len = len;
	u->old_size = old_size;
	u->data = data;
	in->last = u;
}

static bool all_zero(const unsigned char *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Saves the current bytes of [a, b) (all inside the file) in records. */
static void save_range(struct inode *in, uint64_t seq, off_t a, off_t b, off_t old_size)
{
	while (a < b) {
		size_t n = (size_t)(b - a < SAVE_CHUNK ? b - a : SAVE_CHUNK);
		unsigned char *buf = xmalloc(n);
		ssize_t r = pread(in->fd, buf, n, a);
		if (r != (ssize_t)n) {
			msg("pread of %zu bytes at %lld: %s", n, (long long)a,
			    r < 0 ? strerror(errno) : "short read");
			die("cannot save old bytes");
		}
		if (all_zero(buf, n)) {
			free(buf);
			buf = NULL;
		} else {
			g_pending += n;
			if (g_pending > g_max_pending) {
				msg("more than %llu bytes of unsynced old data pending"
				    " (CRASHFS_MAX_PENDING)",
				    (unsigned long long)g_max_pending);
				die("undo log over its cap");
			}
		}
		push_record(in, seq, a, (off_t)n, old_size, buf);
		a += (off_t)n;
	}
}

/*
 * Records what undoes a change of the bytes [a, b) (b may be past EOF, or
 * OFF_MAX for "to the end") and of the size. With g_lock held, before the
 * real call.
 *
 * Why skipping is exact: undo runs newest first; each record writes back its
 * bytes, then sets its old size. A byte p below base_size that no change
 * touched is never written by an undo, and no undo truncation cuts it (that
 * would need an earlier change that shrank the file below p, which touched
 * p). A touched p is saved by the first change that touched it, with its
 * value at the last sync; undoing that record restores it, and the older
 * records neither write p nor cut it. The oldest record sets base_size. So a
 * later change need not save bytes already covered, nor bytes >= base_size.
 * This holds only if no record can be dropped while it is in use: a sync
 * in flight (syncing) or a partial drop (noskip) turns skipping off.
 */
static void save_change(struct inode *in, off_t a, off_t b)
{
	struct stat st;
	uint64_t seq = ++g_seq;
	off_t size, lim;

	if (fstat(in->fd, &st) < 0)
		die("fstat of a tracked file failed");
	size = st.st_size;
	lim = b < size ? b : size;
	if (!in->last) {
		in->base_size = size;
		in->ncov = 0;
		in->noskip = false;
		save_range(in, seq, a, lim, size);
		if (!in->last)
			push_record(in, seq, size, 0, size, NULL); /* the size alone */
		cov_add(in, a, lim);
		return;
	}
	if (in->noskip || in->syncing) {
		save_range(in, seq, a, lim, size);
		cov_add(in, a, lim);
		return;
	}
	if (lim > in->base_size)
		lim = in->base_size;
	/* save only the holes of the coverage in [a, lim) */
	size_t i = 0;
	off_t x = a;
	while (i < in->ncov && in->cov[i].b <= a)
		i++;
	while (x < lim) {
		if (i < in->ncov && in->cov[i].a <= x) {
			x = in->cov[i].b;
			i++;
			continue;
		}
		off_t y = i < in->ncov && in->cov[i].a < lim ? in->cov[i].a : lim;
		save_range(in, seq, x, y, size);
		x = y;
	}
	cov_add(in, a, lim);
}

static void free_records(struct undo *u)
{
	while (u) {
		struct undo *prev = u->prev;
		if (u->data)
			g_pending -= (uint64_t)u->len;
		free(u->data);
		free(u);
		u = prev;
	}
}

/* The inode is durable up to seq: drop the records made before. g_lock held. */
static void drop_until(struct inode *in, uint64_t seq)
{
	struct undo **pp = &in->last;

	while (*pp && (*pp)->seq > seq)
		pp = &(*pp)->prev;
	free_records(*pp);
	*pp = NULL;
	if (in->last) {
		in->noskip = true; /* a newer record may rely on a dropped one */
	} else {
		in->ncov = 0;
		in->noskip = false;
	}
}

/* ------------------------------------------------------------ namespace */

static void ns_free(struct nsop *op)
{
	free(op->from);
	free(op->to);
	free(op->saved);
	free(op);
}

/* Directory (dev, ino) is durable up to seq (all dirs if all). g_lock held. */
static void ns_durable(dev_t dev, ino_t ino, bool all, uint64_t seq)
{
	for (struct nsop **pp = &g_ns_last; *pp;) {
		struct nsop *op = *pp;
		if (op->seq <= seq && (all || (op->dir_dev == dev && op->dir_ino == ino))) {
			*pp = op->prev;
			if (op->saved)
				unlink(op->saved); /* the replaced file is gone for good */
			ns_free(op);
		} else {
			pp = &op->prev;
		}
	}
}

static struct nsop *ns_new(const char *to)
{
	struct stat dst;
	struct nsop *op;

	if (stat_parent(to, &dst) < 0)
		return NULL;
	op = xmalloc(sizeof(*op));
	memset(op, 0, sizeof(*op));
	op->seq = ++g_seq;
	op->dir_dev = dst.st_dev;
	op->dir_ino = dst.st_ino;
	op->to = xstrdup(to);
	return op;
}

/* ------------------------------------------------------------ the crash */

static void undo_inode(struct inode *in, unsigned long long *bytes)
{
	static const unsigned char zeros[ZERO_BUF];

	for (struct undo *u = in->last; u; u = u->prev) {
		if (g_verbose)
			msg("undo ino %llu: [%lld, +%lld) %s, size %lld",
			    (unsigned long long)in->ino, (long long)u->off, (long long)u->len,
			    u->data ? "old bytes" : "zeros", (long long)u->old_size);
		if (u->data) {
			if (REAL(pwrite)(in->fd, u->data, (size_t)u->len, u->off) != u->len)
				msg("undo pwrite failed: %s", strerror(errno));
		} else if (u->len > 0 &&
			   REAL(fallocate)(in->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, u->off,
					   u->len) < 0) {
			for (off_t o = 0; o < u->len; o += ZERO_BUF) {
				size_t n = (size_t)(u->len - o < ZERO_BUF ? u->len - o : ZERO_BUF);
				if (REAL(pwrite)(in->fd, zeros, n, u->off + o) != (ssize_t)n)
					msg("undo zero fill failed: %s", strerror(errno));
			}
		}
		if (REAL(ftruncate)(in->fd, u->old_size) < 0)
			msg("undo truncate failed: %s", strerror(errno));
		*bytes += (unsigned long long)u->len;
	}
}

static bool path_is(const char *p, dev_t dev, ino_t ino)
{
	struct stat st;
	return lstat(p, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

static void undo_ns(struct nsop *op)
{
	if (!path_is(op->to, op->dev, op->ino)) {
		msg("cannot undo %s of %s: the name now holds another file",
		    op->is_rename ? "rename" : "create", op->to);
		return;
	}
	if (g_verbose)
		msg("undo %s %s%s%s", op->is_rename ? "rename" : "create", op->from ? op->from : "",
		    op->from ? " -> " : "", op->to);
	if (!op->is_rename) {
		if (unlink(op->to) < 0)
			msg("undo create: unlink %s: %s", op->to, strerror(errno));
		return;
	}
	if (REAL(rename)(op->to, op->from) < 0)
		msg("undo rename: %s -> %s: %s", op->to, op->from, strerror(errno));
	if (op->saved && REAL(rename)(op->saved, op->to) < 0)
		msg("undo rename: restore %s: %s", op->to, strerror(errno));
}

CRASHFS_EXPORT void crashfs_crash(void)
{
	unsigned long long bytes = 0, files = 0, names = 0;
	sigset_t pipe_set;

	/* a closed stderr pipe must not kill us half way through the undo */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
	if (atomic_load(&g_active)) {
		pthread_mutex_lock(&g_lock); /* never released: this process is over */
		for (struct inode *in = g_inodes; in; in = in->next) {
			if (in->last)
				files++;
			undo_inode(in, &bytes);
		}
		for (struct nsop *op = g_ns_last; op; op = op->prev, names++)
			undo_ns(op);
	}
	msg("power loss: undid %llu bytes in %llu files and %llu creates/renames; SIGKILL", bytes,
	    files, names);
	kill(getpid(), SIGKILL);
	for (;;)
		pause();
}

static void *signal_thread(void *arg)
{
	sigset_t *set = arg;
	int sig;

	while (sigwait(set, &sig) != 0)
		;
	crashfs_crash();
	return NULL;
}

static int parse_signal(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);

	if (*s && !*end)
		return n > 0 && n < NSIG ? (int)n : -1;
	if (strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (int i = 1; i < NSIG; i++) {
		const char *abbrev = sigabbrev_np(i);
		if (abbrev && strcmp(abbrev, s) == 0)
			return i;
	}
	return -1;
}

static void after_fork_child(void)
{
	atomic_store(&g_active, false);
}

__attribute__((constructor)) static void crashfs_init(void)
{
	static sigset_t set;
	const char *roots = getenv("CRASHFS_ROOT");
	const char *sig = getenv("CRASHFS_SIGNAL");
	const char *max = getenv("CRASHFS_MAX_PENDING");
	const char *verbose = getenv("CRASHFS_VERBOSE");
	const char *delay = getenv("CRASHFS_SYNC_DELAY_MS");
	const char *delay_path = getenv("CRASHFS_SYNC_DELAY_PATH");
	const char *delay_log = getenv("CRASHFS_SYNC_DELAY_LOG");
	pthread_t tid;

	pthread_once(&resolve_once, resolve);
	if (delay && *delay)
		g_sync_delay_ms = (unsigned)strtoul(delay, NULL, 10);
	if (delay_path && *delay_path)
		g_sync_delay_path = xstrdup(delay_path);
	if (delay_log && *delay_log)
		g_sync_delay_log = xstrdup(delay_log);
	if (!roots || !*roots)
		return;
	for (const char *p = roots; *p && g_nroots < ROOTS_MAX;) {
		size_t n = strcspn(p, ":");
		char dir[PATH_MAX];
		if (n > 0 && n < sizeof(dir)) {
			memcpy(dir, p, n);
			dir[n] = '\0';
			if (!realpath(dir, g_roots[g_nroots])) {
				/* not there yet: keep it as written, minus trailing slashes */
				while (n > 1 && dir[n - 1] == '/')
					dir[--n] = '\0';
				memcpy(g_roots[g_nroots], dir, n + 1);
			}
			g_nroots++;
		}
		p += n;
		if (*p == ':')
			p++;
	}
	if (max && *max)
		g_max_pending = strtoull(max, NULL, 10);
	g_verbose = verbose && *verbose && strcmp(verbose, "0") != 0;
	pthread_atfork(NULL, NULL, after_fork_child);
	atomic_store(&g_active, true);
	if (sig && *sig) {
		int signo = parse_signal(sig);
		if (signo < 0) {
			msg("CRASHFS_SIGNAL=%s: unknown signal", sig);
			die("bad CRASHFS_SIGNAL");
		}
		sigemptyset(&set);
		sigaddset(&set, signo);
		/* blocked here, so in every thread the program creates later */
		pthread_sigmask(SIG_BLOCK, &set, NULL);
		if (pthread_create(&tid, NULL, signal_thread, &set) != 0)
			die("cannot start the signal thread");
		pthread_detach(tid);
	}
}

/* ------------------------------------------------------------ wrappers */

/*
 * Common path of every content change: fd is checked without the lock (most
 * writes are to sockets); tracked ones hold g_lock across save and call.
 * Returns the inode with g_lock held, or NULL (lock not held).
 */
static struct inode *begin(int fd, int *flags)
{
	struct stat st;
	struct inode *in;

	if (!atomic_load(&g_active) || fd <= 2 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return NULL;
	*flags = fcntl(fd, F_GETFL);
	if (*flags < 0 || (*flags & O_APPEND))
		return NULL;
	pthread_mutex_lock(&g_lock);
	in = inode_track(fd, &st);
	if (!in)
		pthread_mutex_unlock(&g_lock);
	return in;
}

/* After the real call: a synchronous write counts as a sync of the file. */
static void end(struct inode *in, bool ok, bool dsync)
{
	if (ok && dsync) {
		drop_until(in, g_seq);
		inode_free_if_idle(in);
	}
	pthread_mutex_unlock(&g_lock);
}

static off_t iov_len(const struct iovec *iov, int cnt)
{
	off_t n = 0;
	for (int i = 0; i < cnt; i++)
		n += (off_t)iov[i].iov_len;
	return n;
}

static bool fd_dsync(int flags)
{
	return (flags & O_DSYNC) != 0; /* O_SYNC includes the O_DSYNC bit */
}

#define OFF_END ((off_t)INT64_MAX)

static ssize_t do_pwrite(ssize_t (*fn)(int, const void *, size_t, off_t), int fd, const void *buf,
			 size_t count, off_t off)
{
	int flags;
	struct inode *in = begin(fd, &flags);
	ssize_t r;

	if (!in)
		return fn(fd, buf, count, off);
	save_change(in, off, off + (off_t)count);
	r = fn(fd, buf, count, off);
	end(in, r >= 0, fd_dsync(flags));
	return r;
}

CRASHFS_EXPORT ssize_t pwrite(int fd, const void *buf, size_t count, off_t off)
{
	return do_pwrite(REAL(pwrite), fd, buf, count, off);
}

CRASHFS_EXPORT ssize_t pwrite64(int fd, const void *buf, size_t count, off_t off)
{
	return do_pwrite(REAL(pwrite64), fd, buf, count, off);
}

CRASHFS_EXPORT ssize_t write(int fd, const void *buf, size_t count)
{
	int flags;
	struct inode *in = begin(fd, &flags);
	ssize_t r;

	if (!in)
		return REAL(write)(fd, buf, count);
	off_t pos = lseek(fd, 0, SEEK_CUR);
	if (pos >= 0)
		save_change(in, pos, pos + (off_t)count);
	r = REAL(write)(fd, buf, count);
	end(in, r >= 0, fd_dsync(flags));
	return r;
}

CRASHFS_EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	int flags;
	struct inode *in = begin(fd, &flags);
	ssize_t r;

	if (!in)
		return REAL(writev)(fd, iov, cnt);
	off_t pos = lseek(fd, 0, SEEK_CUR);
	if (pos >= 0)
		save_change(in, pos, pos + iov_len(iov, cnt));
	r = REAL(writev)(fd, iov, cnt);
	end(in, r >= 0, fd_dsync(flags));
	return r;
}

static ssize_t do_pwritev(ssize_t (*fn)(int, const struct iovec *, int, off_t), int fd,
			  const struct iovec *iov, int cnt, off_t off)
{
	int flags;
	struct inode *in = begin(fd, &flags);
	ssize_t r;

	if (!in)
		return fn(fd, iov, cnt, off);
	save_change(in, off, off + iov_len(iov, cnt));
	r = fn(fd, iov, cnt, off);
	end(in, r >= 0, fd_dsync(flags));
	return r;
}

CRASHFS_EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	return do_pwritev(REAL(pwritev), fd, iov, cnt, off);
}

CRASHFS_EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
	return do_pwritev(REAL(pwritev64), fd, iov, cnt, off);
}

static ssize_t do_pwritev2(ssize_t (*fn)(int, const struct iovec *, int, off_t, int), int fd,
			   const struct iovec *iov, int cnt, off_t off, int rwf)
{
	int flags;
	struct inode *in = begin(fd, &flags);
	ssize_t r;

	if (!in)
		return fn(fd, iov, cnt, off, rwf);
	off_t pos = off;
	if (rwf & RWF_APPEND) {
		struct stat st;
		pos = fstat(fd, &st) == 0 ? st.st_size : -1;
	} else if (off == -1) {
		pos = lseek(fd, 0, SEEK_CUR);
	}
	if (pos >= 0)
		save_change(in, pos, pos + iov_len(iov, cnt));
	r = fn(fd, iov, cnt, off, rwf);
	end(in, r >= 0, fd_dsync(flags) || (rwf & (RWF_DSYNC | RWF_SYNC)));
	return r;
}

CRASHFS_EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int rwf)
{
	return do_pwritev2(REAL(pwritev2), fd, iov, cnt, off, rwf);
}

CRASHFS_EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off_t off, int rwf)
{
	return do_pwritev2(REAL(pwritev64v2), fd, iov, cnt, off, rwf);
}

static int do_fallocate(int (*fn)(int, int, off_t, off_t), int fd, int mode, off_t off, off_t len)
{
	int flags, r;
	struct inode *in = begin(fd, &flags);

	if (!in)
		return fn(fd, mode, off, len);
	if ((mode & ~FALLOC_FL_KEEP_SIZE) == 0)
		save_change(in, off + len, off + len); /* allocation: the size at most */
	else if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		save_change(in, off, off + len);
	else
		save_change(in, off, OFF_END); /* collapse, insert, unknown: the whole tail */
	r = fn(fd, mode, off, len);
	end(in, r == 0, fd_dsync(flags));
	return r;
}

CRASHFS_EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
	return do_fallocate(REAL(fallocate), fd, mode, off, len);
}

CRASHFS_EXPORT int fallocate64(int fd, int mode, off_t off, off_t len)
{
	return do_fallocate(REAL(fallocate64), fd, mode, off, len);
}

static int do_posix_fallocate(int (*fn)(int, off_t, off_t), int fd, off_t off, off_t len)
{
	int flags, r;
	struct inode *in = begin(fd, &flags);

	if (!in)
		return fn(fd, off, len);
	save_change(in, off + len, off + len);
	r = fn(fd, off, len);
	end(in, r == 0, fd_dsync(flags));
	return r;
}

CRASHFS_EXPORT int posix_fallocate(int fd, off_t off, off_t len)
{
	return do_posix_fallocate(REAL(posix_fallocate), fd, off, len);
}

CRASHFS_EXPORT int posix_fallocate64(int fd, off_t off, off_t len)
{
	return do_posix_fallocate(REAL(posix_fallocate64), fd, off, len);
}

static int do_ftruncate(int (*fn)(int, off_t), int fd, off_t len)
{
	int flags, r;
	struct inode *in = begin(fd, &flags);

	if (!in)
		return fn(fd, len);
	save_change(in, len, OFF_END);
	r = fn(fd, len);
	end(in, r == 0, fd_dsync(flags));
	return r;
}

CRASHFS_EXPORT int ftruncate(int fd, off_t len)
{
	return do_ftruncate(REAL(ftruncate), fd, len);
}

CRASHFS_EXPORT int ftruncate64(int fd, off_t len)
{
	return do_ftruncate(REAL(ftruncate64), fd, len);
}

/* truncate(path): through a descriptor, so the tracked path is the ftruncate one. */
static int do_truncate(int (*fn)(const char *, off_t), const char *path, off_t len)
{
	int fd, r;

	if (!atomic_load(&g_active))
		return fn(path, len);
	fd = REAL(open)(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return fn(path, len);
	r = ftruncate(fd, len);
	int e = errno;
	REAL(close)(fd);
	errno = e;
	return r;
}

CRASHFS_EXPORT int truncate(const char *path, off_t len)
{
	return do_truncate(REAL(truncate), path, len);
}

CRASHFS_EXPORT int truncate64(const char *path, off_t len)
{
	return do_truncate(REAL(truncate64), path, len);
}

/* CRASHFS_SYNC_DELAY_MS, if fd's path matches CRASHFS_SYNC_DELAY_PATH. Takes no lock. */
static void sync_delay(int fd)
{
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n < 0)
		n = snprintf(path, sizeof(path), "(fd %d)", fd);
	path[n] = '\0';
	if (g_sync_delay_path && fnmatch(g_sync_delay_path, path, 0) != 0)
		return;
	if (g_sync_delay_log) {
		/* O_APPEND: never tracked, and one write(2) per line keeps lines whole */
		int log = REAL(open)(g_sync_delay_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (log >= 0) {
			char line[PATH_MAX + 8];
			int len = snprintf(line, sizeof(line), "delay %s\n", path);
			(void)!REAL(write)(log, line, (size_t)len);
			REAL(close)(log);
		}
	}
	struct timespec ts = { g_sync_delay_ms / 1000, (long)(g_sync_delay_ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int do_sync(int (*fn)(int), int fd)
{
	struct stat st;
	struct inode *in = NULL;
	uint64_t seq;
	int r;

	if ((!atomic_load(&g_active) && !g_sync_delay_ms) || fstat(fd, &st) < 0 ||
	    (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)))
		return fn(fd);
	if (!atomic_load(&g_active)) {
		sync_delay(fd);
		return fn(fd);
	}
	pthread_mutex_lock(&g_lock);
	seq = g_seq;
	if (S_ISREG(st.st_mode) && (in = inode_find(st.st_dev, st.st_ino)))
		in->syncing++; /* keeps it allocated, and records it relies on */
	pthread_mutex_unlock(&g_lock);
	/* unlocked: other threads write on while the disk flushes */
	if (g_sync_delay_ms)
		sync_delay(fd);
	r = fn(fd);
	int e = errno;
	pthread_mutex_lock(&g_lock);
	if (in) {
		in->syncing--;
		if (r == 0)
			drop_until(in, seq);
		inode_free_if_idle(in);
	} else if (r == 0 && S_ISDIR(st.st_mode)) {
		ns_durable(st.st_dev, st.st_ino, false, seq);
	}
	pthread_mutex_unlock(&g_lock);
	errno = e;
	return r;
}

CRASHFS_EXPORT int fsync(int fd)
{
	return do_sync(REAL(fsync), fd);
}

CRASHFS_EXPORT int fdatasync(int fd)
{
	return do_sync(REAL(fdatasync), fd);
}

/* Starts writeback but promises nothing: not a sync in the model. */
CRASHFS_EXPORT int sync_file_range(int fd, off_t off, off_t len, unsigned int flags)
{
	return REAL(sync_file_range)(fd, off, len, flags);
}

static void sync_all(uint64_t seq)
{
	for (struct inode *in = g_inodes, *next; in; in = next) {
		next = in->next;
		drop_until(in, seq);
		inode_free_if_idle(in);
	}
	ns_durable(0, 0, true, seq);
}

CRASHFS_EXPORT void sync(void)
{
	uint64_t seq;

	if (!atomic_load(&g_active)) {
		REAL(sync)();
		return;
	}
	pthread_mutex_lock(&g_lock);
	seq = g_seq;
	pthread_mutex_unlock(&g_lock);
	REAL(sync)();
	pthread_mutex_lock(&g_lock);
	sync_all(seq);
	pthread_mutex_unlock(&g_lock);
}

/* Treated as sync(): the tests keep all tracked files on one file system. */
CRASHFS_EXPORT int syncfs(int fd)
{
	uint64_t seq;
	int r;

	if (!atomic_load(&g_active))
		return REAL(syncfs)(fd);
	pthread_mutex_lock(&g_lock);
	seq = g_seq;
	pthread_mutex_unlock(&g_lock);
	r = REAL(syncfs)(fd);
	int e = errno;
	if (r == 0) {
		pthread_mutex_lock(&g_lock);
		sync_all(seq);
		pthread_mutex_unlock(&g_lock);
	}
	errno = e;
	return r;
}

/* The inode stays tracked (we hold our own descriptor); only the fd cache forgets. */
CRASHFS_EXPORT int close(int fd)
{
	if (atomic_load(&g_active) && fd >= 0 && fd < FD_CACHE_MAX) {
		pthread_mutex_lock(&g_lock);
		g_untracked[fd].valid = false;
		pthread_mutex_unlock(&g_lock);
	}
	return REAL(close)(fd);
}

/*
 * open(O_CREAT) of a name that did not exist under a root: remembered until
 * its directory is fsynced. The lock spans the check and the call so a crash
 * cannot slip between them.
 */
static int do_open(int dirfd, const char *path, int flags, mode_t mode, bool at,
		   int (*fn)(const char *, int, ...), int (*fnat)(int, const char *, int, ...))
{
	char abs[PATH_MAX];
	struct stat st;
	struct nsop *op;
	bool existed;
	int fd;

#define CALL() (at ? fnat(dirfd, path, flags, mode) : fn(path, flags, mode))
	if (!atomic_load(&g_active) || !(flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ||
	    abs_path(at ? dirfd : AT_FDCWD, path, abs, sizeof(abs)) < 0 || !under_root(abs))
		return CALL();
	pthread_mutex_lock(&g_lock);
	existed = lstat(abs, &st) == 0;
	fd = CALL();
	int e = errno;
	if (fd >= 0 && !existed && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    (op = ns_new(abs))) {
		op->dev = st.st_dev;
		op->ino = st.st_ino;
		op->prev = g_ns_last;
		g_ns_last = op;
	}
	pthread_mutex_unlock(&g_lock);
	errno = e;
	return fd;
#undef CALL
}

static mode_t va_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

CRASHFS_EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = va_mode(flags, ap);
	va_end(ap);
	return do_open(AT_FDCWD, path, flags, mode, false, REAL(open), NULL);
}

CRASHFS_EXPORT int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = va_mode(flags, ap);
	va_end(ap);
	return do_open(AT_FDCWD, path, flags, mode, false, REAL(open64), NULL);
}

CRASHFS_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = va_mode(flags, ap);
	va_end(ap);
	return do_open(dirfd, path, flags, mode, true, NULL, REAL(openat));
}

CRASHFS_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = va_mode(flags, ap);
	va_end(ap);
	return do_open(dirfd, path, flags, mode, true, NULL, REAL(openat64));
}

CRASHFS_EXPORT int creat(const char *path, mode_t mode)
{
	return open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
}

CRASHFS_EXPORT int creat64(const char *path, mode_t mode)
{
	return open64(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
}

/*
 * rename into a root: remembered, with a hard link keeping the file it
 * replaces, until the new name's directory is fsynced.
 */
static int do_rename(int odir, const char *old, int ndir, const char *new, unsigned flags,
		     int (*fn)(int, const char *, int, const char *, unsigned))
{
	char from[PATH_MAX], to[PATH_MAX], saved[PATH_MAX + 64];
	struct stat sst, tst;
	struct nsop *op = NULL;
	bool have_saved = false;
	int r;

	if (!atomic_load(&g_active) || (flags & RENAME_EXCHANGE) ||
	    abs_path(ndir, new, to, sizeof(to)) < 0 || !under_root(to) ||
	    abs_path(odir, old, from, sizeof(from)) < 0)
		return fn(odir, old, ndir, new, flags);
	pthread_mutex_lock(&g_lock);
	if (lstat(from, &sst) < 0 || (!S_ISREG(sst.st_mode) && !S_ISDIR(sst.st_mode))) {
		r = fn(odir, old, ndir, new, flags);
		goto out;
	}
	op = ns_new(to);
	if (op && lstat(to, &tst) == 0) {
		if (!S_ISREG(tst.st_mode) || !S_ISREG(sst.st_mode)) {
			ns_free(op); /* a directory replaced: not modelled */
			op = NULL;
		} else {
			char *slash = strrchr(to, '/');
			snprintf(saved, sizeof(saved), "%.*s/.crashfs-%d-%llu", (int)(slash - to), to,
				 (int)getpid(), (unsigned long long)op->seq);
			if (link(to, saved) < 0) {
				msg("cannot keep %s as %s: %s", to, saved, strerror(errno));
				die("rename cannot be made undoable");
			}
			have_saved = true;
		}
	}
	r = fn(odir, old, ndir, new, flags);
	if (r == 0 && op) {
		op->is_rename = true;
		op->dev = sst.st_dev;
		op->ino = sst.st_ino;
		op->from = xstrdup(from);
		op->saved = have_saved ? xstrdup(saved) : NULL;
		op->prev = g_ns_last;
		g_ns_last = op;
		op = NULL;
	} else if (have_saved) {
		unlink(saved);
	}
out:;
	int e = errno;
	if (op)
		ns_free(op);
	pthread_mutex_unlock(&g_lock);
	errno = e;
	return r;
}

static int plain_rename(int odir, const char *old, int ndir, const char *new, unsigned flags)
{
	return REAL(rename)(old, new);
}

static int plain_renameat(int odir, const char *old, int ndir, const char *new, unsigned flags)
{
	return REAL(renameat)(odir, old, ndir, new);
}

CRASHFS_EXPORT int rename(const char *old, const char *new)
{
	return do_rename(AT_FDCWD, old, AT_FDCWD, new, 0, plain_rename);
}

CRASHFS_EXPORT int renameat(int odir, const char *old, int ndir, const char *new)
{
	return do_rename(odir, old, ndir, new, 0, plain_renameat);
}

CRASHFS_EXPORT int renameat2(int odir, const char *old, int ndir, const char *new, unsigned flags)
{
	return do_rename(odir, old, ndir, new, flags, REAL(renameat2));
}
