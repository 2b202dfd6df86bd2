#!/usr/bin/python3
# Test tool: checks frep's guarantees (convergence, prefix consistency, in-order application) from images and --trace-tx files.
#
# Sub-commands: converge (master and mirror byte-identical), prefix (a
# consistent mirror holds exactly the transactions up to its TXID), master
# (the master volume holds every replied write and only a TXID-order prefix
# of the rest), trace (the mirror applied the master's transactions in order).
# A traced write is tied to its frep-write.py request by (off, len, CRC32C of
# the data): with requests in flight together, TXID order is the master's
# commit order, not request order.
#
# Exit status: 0 the property holds; 1 it does not (one line saying why);
# 2 usage error or an unreadable input of the checker itself (initial image,
# trace file); 3 (prefix only) the mirror is not marked consistent, so its
# content was not checked.
#
# Trace lines (see --trace-tx): master "gen=G txid=T op=OP off=O len=L crc=C",
# mirror the same with "volume=NAME " in front. A final line without its
# newline was cut by a crash and is ignored. A line torn in the middle of the
# file (a crash, then appends after a restart) is recovered from its last
# parseable record, if any, and counts as a restart marker. In a mirror trace, any
# line without txid= (e.g. "volume=v event=start") is an explicit restart or
# resync marker.

import argparse
import ctypes
import importlib.util
import os
import re
import sys

CHUNK = 1 << 20
DEFAULT_MAX_INDEX = 1000000
INDEX_BATCH = 4096
OPS = ("write", "trim", "zero")
PHASE_INSYNC = 4
TRACE_KEYS = ("gen", "txid", "op", "off", "len", "crc")


class CheckFailed(Exception):
	"""The checked property does not hold (exit 1)."""


class InputError(Exception):
	"""The checker cannot read its own inputs (exit 2)."""


# ---- CRC32C (Castagnoli, reflected 0x82F63B78, init and final xor ~0) ----

def _crc_table():
	table = []
	for n in range(256):
		c = n
		for _ in range(8):
			c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
		table.append(c)
	return table


_TABLE = _crc_table()


def crc32c_py(data, crc=0):
	c = crc ^ 0xFFFFFFFF
	t = _TABLE
	for b in data:
		c = t[(c ^ b) & 0xFF] ^ (c >> 8)
	return c ^ 0xFFFFFFFF


def _load_isal():
	"""ISA-L's crc32_iscsi (frep's own CRC32C), or None. Pure Python is ~100x slower."""
	# The usual soname first: find_library runs ldconfig, a process per check.
	try:
		fn = ctypes.CDLL("libisal.so.2").crc32_iscsi
	except (OSError, AttributeError):
		from ctypes import util
		try:
			fn = ctypes.CDLL(util.find_library("isal")).crc32_iscsi
		except (OSError, AttributeError, TypeError):
			return None
	fn.restype = ctypes.c_uint32
	fn.argtypes = (ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32)
	return fn


_ISAL = _load_isal()
CRC_VECTOR = (b"123456789", 0xE3069283)


def crc32c_isal(data, crc=0):
	c = crc ^ 0xFFFFFFFF
	data = bytes(data)
	for pos in range(0, len(data), 1 << 30):	# the length is a C int
		piece = data[pos:pos + (1 << 30)] if len(data) > 1 << 30 else data
		c = _ISAL(piece, len(piece), c)
	return c ^ 0xFFFFFFFF


# Trust ISA-L only if it agrees with the table on the standard vector.
crc32c = crc32c_isal if _ISAL and crc32c_isal(CRC_VECTOR[0]) == CRC_VECTOR[1] else crc32c_py


def load_writer():
	path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "frep-write.py")
	sys.dont_write_bytecode = True	# no __pycache__ in the source tree
	spec = importlib.util.spec_from_file_location("frep_write", path)
	mod = importlib.util.module_from_spec(spec)
	spec.loader.exec_module(mod)
	return mod


# ---- images ----

class Image:
	"""Concatenation of extent files, read by absolute offset."""

	def __init__(self, paths, what):
		self.paths = list(paths)
		self.fds = []
		self.sizes = []
		try:
			for path in self.paths:
				fd = os.open(path, os.O_RDONLY)
				self.fds.append(fd)
				self.sizes.append(os.fstat(fd).st_size)
		except OSError as e:
			self.close()
			# A missing mirror extent is the product's failure; a missing input is ours.
			if what == "mirror":
				raise CheckFailed("mirror extent unreadable: %s" % e)
			raise InputError("%s: %s" % (what, e))
		self.size = sum(self.sizes)

	def close(self):
		for fd in self.fds:
			os.close(fd)
		self.fds = []

	def locate(self, off):
		"""(extent index, offset inside it) of absolute offset off."""
		for k, sz in enumerate(self.sizes):
			if off < sz:
				return k, off
			off -= sz
		return len(self.sizes), off

	def read(self, off, length):
		out = bytearray()
		k, rel = self.locate(off)
		while length > 0 and k < len(self.fds):
			n = min(length, self.sizes[k] - rel)
			buf = os.pread(self.fds[k], n, rel)
			out += buf
			if len(buf) < n:	# file shrank under us: reads as zeros
				out += bytes(n - len(buf))
			length -= n
			k, rel = k + 1, 0
		return bytes(out)


def split_paths(text):
	return [p for p in text.split(",") if p]


def first_diff(a, b):
	lo, hi = 0, min(len(a), len(b))
	# Binary search on equal prefixes: C-speed comparisons instead of a Python loop.
	while hi - lo > 64:
		mid = (lo + hi) // 2
		if a[lo:mid] == b[lo:mid]:
			lo = mid
		else:
			hi = mid
	for i in range(lo, hi):
		if a[i] != b[i]:
			return i
	return hi


# ---- traces ----

# The lines frep writes, parsed in one step; anything else takes the general path.
TRACE_LINE = re.compile(r"(?:volume=(\S+) )?gen=(\d+) txid=(\d+) op=(write|trim|zero) off=(\d+) len=(\d+) "
			r"crc=([0-9a-f]{8})")


def parse_record(text, mirror):
	"""dict of a trace record, or None if text is not exactly one record."""
	m = TRACE_LINE.fullmatch(text)
	if m and bool(m.group(1)) == mirror and int(m.group(3)) >= 1:
		return {"volume": m.group(1), "gen": int(m.group(2)), "txid": int(m.group(3)), "op": m.group(4),
			"off": int(m.group(5)), "len": int(m.group(6)), "crc": int(m.group(7), 16)}
	kv = {}
	for tok in text.split():
		k, sep, v = tok.partition("=")
		if not sep or k in kv:
			return None
		kv[k] = v
	need = TRACE_KEYS + (("volume",) if mirror else ())
	if any(k not in kv for k in need):
		return None
	try:
		rec = {k: int(kv[k]) for k in ("gen", "txid", "off", "len")}
		if len(kv["crc"]) != 8:
			return None
		rec["crc"] = int(kv["crc"], 16)
	except ValueError:
		return None
	if kv["op"] not in OPS or rec["txid"] < 1 or rec["len"] < 0 or rec["off"] < 0:
		return None
	rec["op"] = kv["op"]
	rec["volume"] = kv.get("volume")
	return rec


def read_from(path, start, what):
	"""(text from byte start on, offset after its last whole line) of an appended-to file."""
	try:
		with open(path, "rb") as f:
			f.seek(start)
			raw = f.read()
	except OSError as e:
		raise InputError("%s %s: %s" % (what, path, e))
	return raw.decode(errors="replace"), start + raw.rfind(b"\n") + 1


def read_trace(path, mirror, start=0, end_out=None):
	"""[(line number, record or None for a restart marker)] from byte start (a line start)
	on; see the header for torn lines. end_out, a list, gets the offset after the last whole line."""
	text, end = read_from(path, start, "trace")
	if end_out is not None:
		end_out.append(end)
	lines = text.split("\n")
	lines.pop()	# "" after the final newline, or a partial line cut by a crash
	anchor = "volume=" if mirror else "gen="
	out = []
	for n, line in enumerate(lines, 1):
		if not line.strip():
			continue
		rec = parse_record(line, mirror)
		if rec:
			out.append((n, rec))
			continue
		if mirror and "txid=" not in line:
			out.append((n, None))	# explicit marker
			continue
		# Torn: a crash cut a line and the restarted daemon appended to it.
		pos = line.rfind(anchor)
		while pos > 0 and not parse_record(line[pos:], mirror):
			pos = line.rfind(anchor, 0, pos)
		if pos <= 0:
			# A torn line with no whole record after it (a marker or nothing was
			# appended): the crash is a restart marker; anything else is garbage.
			if not line.startswith(anchor):
				raise InputError("%s:%d: not a trace line: %r" % (path, n, line[:120]))
			out.append((n, None))
			continue
		out.append((n, None))
		out.append((n, parse_record(line[pos:], mirror)))
	return out


def rec_str(r):
	return "gen=%d txid=%d op=%s off=%d len=%d crc=%08x" % (
		r["gen"], r["txid"], r["op"], r["off"], r["len"], r["crc"])


def same_tx(a, b):
	return all(a[k] == b[k] for k in TRACE_KEYS)


def master_by_txid(path, start=0, end_out=None):
	"""{txid: record} from the master trace (from byte start on); the same TXID twice must be
	the same transaction."""
	by = {}
	for n, r in read_trace(path, False, start, end_out):
		if r is None:
			continue
		old = by.get(r["txid"])
		if old and not same_tx(old, r):
			raise CheckFailed("master trace %s:%d reuses txid=%d for different data: %s vs %s" %
					  (path, n, r["txid"], rec_str(old), rec_str(r)))
		by[r["txid"]] = r
	return by


# ---- writer sequence matching ----

class Matcher:
	"""Finds the writer's (seed, index) for a traced write by (off, len, crc)."""

	def __init__(self, writer, seeds, size, max_len, max_index, hot_every=0):
		self.w = writer
		self.seeds = seeds
		self.size = size
		self.max_len = max_len
		self.max_index = max_index
		self.hot_every = hot_every
		self.next = {s: 0 for s in seeds}
		self.by_key = {}	# (off, len) -> [(seed, index)] in enumeration order
		self.hashed = {}	# (off, len) -> how many of by_key's entries are in by_crc
		self.by_crc = {}	# (off, len, crc) -> first (seed, index) with that write

	def _extend(self):
		grew = False
		for s in self.seeds:
			start = self.next[s]
			end = min(start + INDEX_BATCH, self.max_index)
			for i in range(start, end):
				# op does not matter: only the op pick depends on --ops, not off/len.
				_, off, length = self.w.op_at(s, i, self.size, self.max_len, hot_every=self.hot_every)
				self.by_key.setdefault((off, length), []).append((s, i))
			self.next[s] = end
			grew = grew or end > start
		return grew

	def prime(self, seed, indices):
		"""Candidates to try before enumerating every index: e.g. the requests a
		--record says were sent. Only a hint: matching falls back to enumeration."""
		for i in indices:
			_, off, length = self.w.op_at(seed, i, self.size, self.max_len, hot_every=self.hot_every)
			self.by_key.setdefault((off, length), []).append((seed, i))

	def match(self, r):
		key = (r["off"], r["len"])
		while True:
			# Each candidate's data is hashed once, however many traced writes share
			# its place (the hot range, the straddles).
			cands = self.by_key.get(key, [])
			for s, i in cands[self.hashed.get(key, 0):]:
				self.by_crc.setdefault(key + (crc32c(self.w.data_at(s, i, r["len"])),), (s, i))
			self.hashed[key] = len(cands)
			hit = self.by_crc.get(key + (r["crc"],))
			if hit:
				return hit
			if not self._extend():
				break
		raise CheckFailed(
			"traced write %s matches no writer index < %d of seed(s) %s "
			"(%d with that off/len; wrong --seed, --max-len or --hot-every, or corrupted data)" %
			(rec_str(r), self.max_index, ",".join(self.seeds), len(self.by_key.get(key, []))))


# ---- rebuilding an image from the trace ----

def traced_ops(by, first, t, size, what):
	"""Records first..t of the master trace in TXID order; each must be there, inside the volume."""
	ops = []
	for txid in range(first, t + 1):
		r = by.get(txid)
		if r is None:
			raise CheckFailed("%s FAIL: master trace lacks txid=%d (needed to rebuild txid=%d)" % (what, txid, t))
		if r["off"] + r["len"] > size:
			raise CheckFailed("%s FAIL: traced %s ends past the volume (%d bytes)" % (what, rec_str(r), size))
		ops.append(r)
	return ops


def rebuild(base, ops, matcher):
	"""Yields (offset, expected bytes, positions in ops touching them) chunk by chunk:
	the base image with ops applied in order."""
	src = [matcher.match(r) if r["op"] == "write" else None for r in ops]
	touch = {}	# chunk -> positions in ops, in TXID order
	for pos, r in enumerate(ops):
		for c in range(r["off"] // CHUNK, (r["off"] + r["len"] - 1) // CHUNK + 1 if r["len"] else 0):
			touch.setdefault(c, []).append(pos)
	w = matcher.w
	cache = {}
	for c in range((base.size + CHUNK - 1) // CHUNK):
		off = c * CHUNK
		want = base.read(off, CHUNK)
		poss = touch.get(c, [])
		if poss:
			buf = bytearray(want)
			for pos in poss:
				r = ops[pos]
				lo, hi = max(r["off"], off), min(r["off"] + r["len"], off + len(buf))
				if src[pos] is None:
					buf[lo - off:hi - off] = bytes(hi - lo)
				else:
					if pos not in cache:
						cache[pos] = w.data_at(src[pos][0], src[pos][1], r["len"])
					buf[lo - off:hi - off] = cache[pos][lo - r["off"]:hi - r["off"]]
			want = bytes(buf)
			for pos in [p for p in cache if ops[p]["off"] + ops[p]["len"] <= off + CHUNK]:
				del cache[pos]
		yield off, want, poss


def last_writer(ops, poss, at, base_name):
	"""The last transaction among ops[poss] covering offset at, as text."""
	for pos in reversed(poss):
		r = ops[pos]
		if r["off"] <= at < r["off"] + r["len"]:
			return "txid=%d (%s off=%d len=%d)" % (r["txid"], r["op"], r["off"], r["len"])
	return "%s (no transaction <= t touched it)" % base_name


# ---- sub-commands ----

def cmd_converge(args):
	a = Image(split_paths(args.master), "master")
	b = Image(split_paths(args.mirror), "mirror")
	if a.sizes != b.sizes:
		raise CheckFailed("converge FAIL: extent sizes differ: master %s, mirror %s" % (a.sizes, b.sizes))
	for off in range(0, a.size, CHUNK):
		x = a.read(off, CHUNK)
		y = b.read(off, CHUNK)
		if x != y:
			at = off + first_diff(x, y)
			k, rel = a.locate(at)
			raise CheckFailed(
				"converge FAIL: first difference at offset %d (extent %d +%d): master 0x%02x, mirror 0x%02x" %
				(at, k, rel, x[at - off], y[at - off]))
	print("converge OK: %d bytes identical in %d extent(s)" % (a.size, len(a.sizes)))


def load_meta(path):
	"""key=value dict of a frep metadata file; its crc32c line must match (common/meta.c)."""
	try:
		with open(path, "rb") as f:
			raw = f.read()
	except OSError as e:
		raise CheckFailed("mirror metadata unreadable: %s" % e)
	pos = raw.rfind(b"crc32c=")
	if pos < 0 or (pos > 0 and raw[pos - 1:pos] != b"\n") or not raw.endswith(b"\n"):
		raise CheckFailed("mirror metadata %s has no crc32c line" % path)
	try:
		want = int(raw[pos + 7:].strip(), 16)
	except ValueError:
		raise CheckFailed("mirror metadata %s: bad crc32c line" % path)
	if crc32c(raw[:pos]) != want:
		raise CheckFailed("mirror metadata %s: crc32c mismatch (computed %08x, stored %08x)" %
				  (path, crc32c(raw[:pos]), want))
	meta = {}
	for line in raw[:pos].decode(errors="replace").splitlines():
		k, sep, v = line.partition("=")
		if not sep:
			raise CheckFailed("mirror metadata %s: bad line %r" % (path, line))
		meta[k] = v
	return meta


def meta_int(meta, key, default=None):
	try:
		return int(meta[key])
	except (KeyError, ValueError):
		if default is None:
			raise CheckFailed("mirror metadata lacks a numeric %s" % key)
		return default


def cmd_prefix(args):
	meta = load_meta(os.path.join(args.mirror_dir, "meta"))
	consistent = meta_int(meta, "consistent", 0)
	ctxid = meta_int(meta, "consistent_txid", 0)
	atxid = meta_int(meta, "applied_txid", 0)
	phase = meta_int(meta, "phase", 0)
	state = "consistent=%d consistent_txid=%d applied_txid=%d phase=%d" % (consistent, ctxid, atxid, phase)
	if consistent != 1:
		# The durable TXID still must not go backwards while inconsistent (resync keeps it).
		if args.min_txid is not None and atxid < args.min_txid:
			raise CheckFailed("prefix FAIL: mirror not consistent and applied_txid=%d < --min-txid %d (%s)" %
					  (atxid, args.min_txid, state))
		print("prefix SKIPPED: mirror not consistent (%s); content not checked" % state)
		return 3
	t = ctxid
	if args.txid_from == "applied" and phase == PHASE_INSYNC:
		t = max(ctxid, atxid)
	if args.min_txid is not None and t < args.min_txid:
		raise CheckFailed("prefix FAIL: mirror consistent at txid=%d < --min-txid %d: acknowledged transactions lost (%s)" %
				  (t, args.min_txid, state))

	n_ext = meta_int(meta, "extents")
	mirror = Image([os.path.join(args.mirror_dir, "extent.%d" % k) for k in range(n_ext)], "mirror")
	init_sizes = Image(split_paths(args.initial), "initial image").sizes
	if mirror.sizes != init_sizes:
		raise CheckFailed("prefix FAIL: mirror extent sizes %s differ from the initial image's %s" %
				  (mirror.sizes, init_sizes))
	n = check_image_at(args, mirror, "mirror", t, "prefix")
	print("prefix OK at txid=%d (%d transactions; %s)" % (t, n, state))
	return 0


def check_image_at(args, image, what, t, cmd):
	"""image holds exactly the initial image plus the traced writes up to TXID t; returns
	how many transactions that was."""
	init = Image(split_paths(args.initial), "initial image")
	if image.size != init.size:
		raise CheckFailed("%s FAIL: %s is %d bytes, the initial image %d" % (cmd, what, image.size, init.size))
	by = master_by_txid(args.master_trace)
	first = min(by) if by else 1
	last = max(by) if by else 0
	if t > last:
		raise CheckFailed("%s FAIL: %s claims txid=%d but the master trace ends at txid=%d" %
				  (cmd, what, t, last))
	if t < first - 1:
		raise InputError("%s at txid=%d, before the master trace starts (txid=%d): "
				 "the initial image does not describe it" % (what, t, first))
	ops = traced_ops(by, first, t, init.size, cmd)
	matcher = Matcher(load_writer(), args.seed, init.size, args.max_len, args.max_index, args.hot_every)
	for base, want, poss in rebuild(init, ops, matcher):
		got = image.read(base, CHUNK)
		if got != want:
			at = base + first_diff(got, want)
			k, rel = image.locate(at)
			raise CheckFailed(
				"%s FAIL at txid=%d: offset %d (extent %d +%d) %s 0x%02x, expected 0x%02x, "
				"last written by %s" % (cmd, t, at, k, rel, what, got[at - base], want[at - base],
							 last_writer(ops, poss, at, "the initial image")))
	return len(ops)


def cmd_snapshot(args):
	"""A snapshot read back whole (nbdcopy of its export) is the master after exactly the
	writes up to the snapshot's TXID."""
	n = check_image_at(args, Image([args.image], "snapshot"), "snapshot", args.txid, "snapshot")
	print("snapshot OK at txid=%d (%d transactions)" % (args.txid, n))
	return 0


def read_record(path, start=0):
	"""(sent indices, acked indices, end offset) of a frep-write.py --record file from byte
	start on; a last line without its newline was cut by a kill and is left for the next read."""
	text, end = read_from(path, start, "record")
	lists = {"sent": [], "ack": []}
	for line in text.split("\n")[:-1]:	# the last piece is "" or a cut line
		word, _, idx = line.partition(" ")
		if word not in lists or not idx.isdigit():
			raise InputError("record %s: bad line %r (after byte %d)" % (path, line[:80], start))
		lists[word].append(int(idx))
	return lists["sent"], lists["ack"], end


def load_state(path):
	"""The --cache sidecar: {"txid": K, "record:PATH": bytes already checked}."""
	state = {}
	try:
		with open(path) as f:
			for line in f:
				k, _, v = line.rstrip("\n").rpartition(" ")
				state[k] = int(v)
	except (OSError, ValueError):
		return {}
	return state


def holders(img, at, recs, matcher):
	"""TXIDs among recs whose data the image holds on the 4 KiB block of offset at."""
	lo = at // 4096 * 4096
	out = []
	for r in recs:
		a, b = max(r["off"], lo), min(r["off"] + r["len"], lo + 4096)
		if a >= b:
			continue
		if r["op"] == "write":
			s, i = matcher.match(r)
			data = matcher.w.data_at(s, i, r["len"])[a - r["off"]:b - r["off"]]
		else:
			data = bytes(b - a)
		if img.read(a, b - a) == data:
			out.append(r["txid"])
	return out


def cmd_master(args):
	init = Image(split_paths(args.initial), "initial image")
	master = Image(split_paths(args.master), "master volume")
	if master.sizes != init.sizes:
		raise CheckFailed("master extent sizes %s differ from the initial image's %s" % (master.sizes, init.sizes))
	t = args.txid
	state = load_state(args.cache + ".state") if args.cache else {}
	k = state.get("txid", -1)
	if not (0 <= k <= t and "first" in state and os.path.exists(args.cache)):
		state, k = {}, -1
	# With a usable cache, only the trace past what the last check read is parsed,
	# unless the TXIDs since the cache are not all there.
	tstart = state.get("trace", 0)
	tend = []
	by = master_by_txid(args.master_trace, tstart, tend)
	if tstart and any(x not in by for x in range(k + 1, t + 1)):
		tstart, tend = 0, []
		by = master_by_txid(args.master_trace, 0, tend)
	first = state["first"] if state else (min(by) if by else 1)
	last = max([max(k, 0)] + list(by))
	if t > last:
		raise CheckFailed("master at txid=%d but its trace ends at txid=%d" % (t, last))
	if t < first - 1:
		raise InputError("master at txid=%d, before its trace starts (txid=%d): "
				 "the initial image does not describe it" % (t, first))
	matcher = Matcher(load_writer(), [args.seed], init.size, args.max_len, args.max_index, args.hot_every)
	w = matcher.w

	# 1. Every write replied to is a traced transaction at or below t.
	def writes_by_key():
		out = {}
		for txid, r in by.items():
			if r["op"] == "write":
				key = (r["off"], r["len"], r["crc"])
				out[key] = min(txid, out.get(key, txid))
		return out
	tx_of = writes_by_key()
	replied = top = 0
	ends = {}
	for path in args.record:
		sent, acked, ends[path] = read_record(path, state.get("record:" + path, 0))
		matcher.prime(args.seed, sent)	# the TXIDs past the cache are most likely these
		for i in acked:
			_, off, length = w.op_at(args.seed, i, init.size, args.max_len, ("write",), args.hot_every)
			key = (off, length, crc32c(w.data_at(args.seed, i, length)))
			if key not in tx_of and tstart:	# traced before the last check read the trace
				tstart, tend = 0, []
				by = master_by_txid(args.master_trace, 0, tend)
				tx_of = writes_by_key()
			tx = tx_of.get(key)
			if tx is None:
				raise CheckFailed("master FAIL: write index %d (off=%d len=%d) was replied to but the master "
						  "traced no such transaction: a replied write was never committed" % (i, off, length))
			if tx > t:
				raise CheckFailed("master FAIL: write index %d (off=%d len=%d) was replied to as txid=%d, "
						  "but the master holds only up to txid=%d: a replied write was lost" %
						  (i, off, length, tx, t))
			replied += 1
			top = max(top, tx)

	# 2. The volume is the base image with every transaction up to t applied, in TXID
	# order: no write past t, none reordered.
	base, what = init, "the initial image"
	if state:
		base, what = Image([args.cache], "cache"), "the image at txid=%d (--cache)" % k
		if base.size != init.size:
			raise InputError("--cache %s holds %d bytes, the volume %d" % (args.cache, base.size, init.size))
	else:
		k = first - 1
	ops = traced_ops(by, k + 1, t, init.size, "master")
	out = open(args.cache + ".tmp", "wb") if args.cache else None
	for off, want, poss in rebuild(base, ops, matcher):
		got = master.read(off, CHUNK)
		if got != want:
			at = off + first_diff(got, want)
			e, rel = master.locate(at)
			every = master_by_txid(args.master_trace) if tstart else by
			near = [every[x] for x in sorted(every) if every[x]["off"] <= at < every[x]["off"] + every[x]["len"]]
			held = holders(master, at, near, matcher)
			raise CheckFailed(
				"master FAIL at txid=%d: offset %d (extent %d +%d) master 0x%02x, expected 0x%02x, last "
				"written by %s; its 4 KiB block holds the data of txid %s" %
				(t, at, e, rel, got[at - off], want[at - off], last_writer(ops, poss, at, what),
				 ",".join(map(str, held)) or "none traced"))
		if out:
			out.write(want)
	if out:
		out.close()
		os.rename(args.cache + ".tmp", args.cache)
		with open(args.cache + ".state.tmp", "w") as f:
			f.write("txid %d\nfirst %d\ntrace %d\n" % (t, first, tend[0]))
			f.write("".join("record:%s %d\n" % (p, n) for p, n in ends.items()))
		os.rename(args.cache + ".state.tmp", args.cache + ".state")
	print("master OK at txid=%d: %d replied write(s) checked, the latest at txid=%d; the volume is %s "
	      "plus %d transaction(s) in TXID order" % (t, replied, top, what, len(ops)))
	return 0


def cmd_trace(args):
	# Writers committing together may trace in any order: the TXID, not the line,
	# orders the master's transactions.
	master = master_by_txid(args.master_trace)

	recs = read_trace(args.mirror_trace, True)
	vols = {r["volume"] for _, r in recs if r}
	if args.volume:
		recs = [(n, r) for n, r in recs if r is None or r["volume"] == args.volume]
	elif len(vols) > 1:
		raise InputError("mirror trace holds volumes %s: pass --volume" % ",".join(sorted(vols)))
	explicit = any(r is None for _, r in recs)
	prev = None
	applied = restarts = gaps = reapplied = 0
	high = 0
	for n, r in recs:
		if r is None:
			prev = None
			restarts += 1
			continue
		txid = r["txid"]
		where = "%s:%d" % (args.mirror_trace, n)
		m = master.get(txid)
		if m is None:
			raise CheckFailed("trace FAIL: %s: mirror applied txid=%d, which the master trace lacks" % (where, txid))
		if not same_tx(m, r):
			raise CheckFailed("trace FAIL: %s: mirror applied %s but the master committed %s" %
					  (where, rec_str(r), rec_str(m)))
		if prev is not None and txid != prev + 1:
			if txid > prev + 1 and not args.allow_gaps:
				raise CheckFailed("trace FAIL: %s: mirror applied txid=%d right after txid=%d (gap or reordering)" %
						  (where, txid, prev))
			if txid <= prev and explicit:
				raise CheckFailed("trace FAIL: %s: mirror applied txid=%d after txid=%d with no restart marker" %
						  (where, txid, prev))
			if txid <= prev:
				restarts += 1	# no markers: a step back is read as a restart replaying a suffix
			else:
				gaps += 1
		if txid <= high:
			reapplied += 1
		high = max(high, txid)
		prev = txid
		applied += 1
	print("trace OK: mirror applied %d transaction(s) up to txid=%d in order and equal to the master's "
	      "(%d restart(s), %d re-applied, %d gap(s) allowed); master traced %d" %
	      (applied, high, restarts, reapplied, gaps, len(master)))
	return 0


def cmd_write_meta(args):
	body = "".join(kv + "\n" for kv in args.pairs)
	if any("=" not in kv or "\n" in kv for kv in args.pairs):
		raise InputError("write-meta takes key=value pairs")
	data = (body + "crc32c=%08x\n" % crc32c(body.encode())).encode()
	tmp = args.file + ".tmp"
	with open(tmp, "wb") as f:
		f.write(data)
		f.flush()
		os.fsync(f.fileno())
	os.rename(tmp, args.file)
	return 0


def cmd_crc32c(args):
	if args.file == "-":
		data = sys.stdin.buffer.read()
	else:
		try:
			with open(args.file, "rb") as f:
				data = f.read()
		except OSError as e:
			raise InputError(str(e))
	print("%08x" % crc32c(data))
	return 0


def cmd_selftest(args):
	data, want = CRC_VECTOR
	got = {"table": crc32c_py(data), "in use": crc32c(data)}
	for name, v in got.items():
		if v != want:
			raise CheckFailed("selftest FAIL: crc32c(%r) by %s = %08x, want %08x" % (data, name, v, want))
	blob = load_writer().data_at("selftest", 7, 100000)
	if crc32c_py(blob) != crc32c(blob):
		raise CheckFailed("selftest FAIL: ISA-L and table CRC32C disagree on 100000 bytes")
	print("selftest OK: crc32c(%r)=%08x (%s)" % (data, want, "ISA-L" if crc32c is crc32c_isal else "table"))
	return 0


def main(argv):
	p = argparse.ArgumentParser(
		prog="frep-check.py",
		description="Checks frep's guarantees from extents, mirror metadata and --trace-tx files.",
		epilog="exit status: 0 holds, 1 does not hold, 2 usage or unreadable checker input, "
		       "3 (prefix) mirror not consistent so content not checked")
	sub = p.add_subparsers(dest="cmd", required=True)

	c = sub.add_parser("converge", help="master and mirror extents are byte-identical")
	c.add_argument("--master", required=True, help="master extents, comma-separated")
	c.add_argument("--mirror", required=True, help="mirror extents, comma-separated")
	c.set_defaults(fn=cmd_converge)

	c = sub.add_parser("prefix", help="a consistent mirror holds exactly the writes up to its TXID")
	c.add_argument("--initial", required=True, help="copies of the master extents before any traced write")
	c.add_argument("--master-trace", required=True)
	c.add_argument("--mirror-dir", required=True, help="DATA_DIR/NAME of the stopped mirror")
	c.add_argument("--seed", required=True, action="append", help="frep-write.py seed (repeatable)")
	c.add_argument("--max-len", type=int, default=256 * 1024, help="frep-write.py --max-len used (default 262144)")
	c.add_argument("--min-txid", type=int, help="also require t >= this (nothing acknowledged lost)")
	c.add_argument("--txid-from", choices=("consistent", "applied"), default="consistent",
		       help="t = consistent_txid (default), or max(consistent_txid, applied_txid) when phase=INSYNC")
	c.add_argument("--max-index", type=int, default=DEFAULT_MAX_INDEX,
		       help="search writer indexes below this (default %d)" % DEFAULT_MAX_INDEX)
	c.add_argument("--hot-every", type=int, default=0, help="frep-write.py --hot-every used (default 0)")
	c.set_defaults(fn=cmd_prefix)

	c = sub.add_parser("snapshot", help="an image of a snapshot holds exactly the writes up to its TXID")
	c.add_argument("--initial", required=True, help="copies of the master extents before any traced write")
	c.add_argument("--master-trace", required=True)
	c.add_argument("--image", required=True, help="the snapshot read back whole (one file)")
	c.add_argument("--txid", required=True, type=int, help="the snapshot's TXID")
	c.add_argument("--seed", required=True, action="append", help="frep-write.py seed (repeatable)")
	c.add_argument("--max-len", type=int, default=256 * 1024, help="frep-write.py --max-len used (default 262144)")
	c.add_argument("--max-index", type=int, default=DEFAULT_MAX_INDEX,
		       help="highest frep-write.py request index to search (default %d)" % DEFAULT_MAX_INDEX)
	c.add_argument("--hot-every", type=int, default=0, help="frep-write.py --hot-every used (default 0)")
	c.set_defaults(fn=cmd_snapshot)

	c = sub.add_parser("master", help="the master volume holds every replied write, and only a TXID-order "
			   "prefix of the others")
	c.add_argument("--initial", required=True, help="copies of the master extents before any traced write")
	c.add_argument("--master-trace", required=True)
	c.add_argument("--master", required=True, help="master extents, comma-separated (no write in flight)")
	c.add_argument("--txid", required=True, type=int, help="the master's committed TXID (status committed_txid)")
	c.add_argument("--seed", required=True, help="frep-write.py seed (one; --ops write)")
	c.add_argument("--record", action="append", default=[],
		       help="frep-write.py --record file: its acknowledged writes must be at or below --txid (repeatable)")
	c.add_argument("--max-len", type=int, default=256 * 1024, help="frep-write.py --max-len used (default 262144)")
	c.add_argument("--hot-every", type=int, default=0, help="frep-write.py --hot-every used (default 0)")
	c.add_argument("--max-index", type=int, default=DEFAULT_MAX_INDEX,
		       help="search writer indexes below this (default %d)" % DEFAULT_MAX_INDEX)
	c.add_argument("--cache", metavar="FILE",
		       help="keeps the expected image and the record offsets checked in FILE and FILE.state, so "
			    "the next check of the same initial image and trace only applies the new TXIDs")
	c.set_defaults(fn=cmd_master)

	c = sub.add_parser("trace", help="the mirror applied the master's transactions in order, unchanged")
	c.add_argument("--master-trace", required=True)
	c.add_argument("--mirror-trace", required=True)
	c.add_argument("--volume", help="only this volume's mirror lines")
	c.add_argument("--allow-gaps", action="store_true",
		       help="accept forward TXID jumps (a resync between them carried their effect)")
	c.set_defaults(fn=cmd_trace)

	c = sub.add_parser("write-meta", help="write a metadata file with its crc32c line (for synthetic tests)")
	c.add_argument("file")
	c.add_argument("pairs", nargs="*", metavar="key=value")
	c.set_defaults(fn=cmd_write_meta)

	c = sub.add_parser("crc32c", help="print the CRC32C of a file (- for stdin)")
	c.add_argument("file")
	c.set_defaults(fn=cmd_crc32c)

	c = sub.add_parser("selftest", help="check CRC32C against the standard vector")
	c.set_defaults(fn=cmd_selftest)

	args = p.parse_args(argv)
	try:
		return args.fn(args) or 0
	except CheckFailed as e:
		print(str(e) if " FAIL" in str(e) else "%s FAIL: %s" % (args.cmd, e))
		return 1
	except InputError as e:
		print("%s: input error: %s" % (args.cmd, e), file=sys.stderr)
		return 2


if __name__ == "__main__":
	sys.exit(main(sys.argv[1:]))
