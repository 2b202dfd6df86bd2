#!/usr/bin/python3
# Test tool: writes a deterministic (seed, index) sequence of NBD requests, so a checker can rebuild the image.
#
# Every request i is a pure function of (seed, i, volume size, --max-len, --ops):
#   - op/offset/length come from sha256("frep-write/op", seed, i);
#   - write data is the first LEN bytes of shake_256("frep-write/data", seed, i),
#     so it depends on (seed, i) only (and its length).
# frep-check.py imports op_at() and data_at() from this file: they are the one
# definition of the sequence. Keep them stable; changing them breaks old traces.
#
# Requests are sent one at a time: with frep-client each request is exactly one
# transaction, so TXID order is request order.
#
# Needs Debian's python3-libnbd (run with /usr/bin/python3) only for writing;
# importing this file for op_at()/data_at() does not.

import argparse
import hashlib
import importlib.util
import os
import struct
import sys
import time

BLOCK = 4096
DEFAULT_MAX_LEN = 256 * 1024
# Weight of each op when several are allowed: mostly writes, as real load is.
OP_WEIGHTS = {"write": 6, "trim": 1, "zero": 1}
# One request in STRADDLE_EVERY is placed across a multiple of STRADDLE_STEP,
# so extents sized in multiples of it get boundary-crossing requests.
STRADDLE_EVERY = 8
STRADDLE_STEP = 16 << 20


def parse_ops(text):
	ops = [o for o in text.split(",") if o]
	bad = [o for o in ops if o not in OP_WEIGHTS]
	if not ops or bad:
		raise ValueError("--ops takes a comma-separated subset of write,trim,zero")
	return tuple(o for o in OP_WEIGHTS if o in ops)	# canonical order


def op_at(seed, i, size, max_len=DEFAULT_MAX_LEN, ops=("write", "trim", "zero")):
	"""(op, offset, length) of request i: 4 KiB aligned, inside [0, size)."""
	h = hashlib.sha256(b"frep-write/op\0" + seed.encode() + b"\0" + str(i).encode()).digest()
	a, b, c, d = struct.unpack("<QQQQ", h)
	units = size // BLOCK
	if units == 0:
		raise ValueError("volume smaller than one 4 KiB block")
	max_units = max(1, min(max_len // BLOCK, units))
	n = 1 + b % max_units
	total = sum(OP_WEIGHTS[o] for o in ops)
	pick = a % total
	for op in ops:
		if pick < OP_WEIGHTS[op]:
			break
		pick -= OP_WEIGHTS[op]
	step_units = STRADDLE_STEP // BLOCK
	boundaries = (units - 1) // step_units
	if d % STRADDLE_EVERY == 0 and boundaries > 0 and n > 1:
		boundary = (1 + c % boundaries) * step_units
		first = min(max(boundary - n // 2, 0), units - n)
	else:
		first = c % (units - n + 1)
	return op, first * BLOCK, n * BLOCK


def data_at(seed, i, length):
	"""Write data of request i: depends on (seed, i) only; shorter lengths are prefixes."""
	return hashlib.shake_256(b"frep-write/data\0" + seed.encode() + b"\0" + str(i).encode()).digest(length)


def load_sibling(name, filename):
	path = os.path.join(os.path.dirname(os.path.abspath(__file__)), filename)
	sys.dont_write_bytecode = True	# no __pycache__ in the source tree
	spec = importlib.util.spec_from_file_location(name, path)
	mod = importlib.util.module_from_spec(spec)
	spec.loader.exec_module(mod)
	return mod


def main(argv):
	p = argparse.ArgumentParser(
		prog="frep-write.py",
		description="Sends a deterministic (seed, index) sequence of NBD requests, one at a time.")
	p.add_argument("--uri", required=True, help="NBD URI, e.g. nbd+unix:///vol1?socket=/tmp/x.sock")
	p.add_argument("--seed", required=True, help="sequence seed (any string)")
	p.add_argument("--count", type=int, help="number of requests (default: until --duration ends)")
	p.add_argument("--first-index", type=int, default=0, help="index of the first request (default 0)")
	p.add_argument("--duration", type=float, help="stop after this many seconds")
	p.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN,
		       help="largest request in bytes, multiple of 4096 (default %d)" % DEFAULT_MAX_LEN)
	p.add_argument("--ops", default="write", help="comma-separated subset of write,trim,zero (default write)")
	p.add_argument("--fua", action="store_true", help="send every request with FUA")
	p.add_argument("--tolerate-errors", action="store_true",
		       help="stop at the first failed request and exit 0 (for tests that kill the master)")
	p.add_argument("--log-tx", metavar="FILE",
		       help="append one master-trace-format line per acknowledged request (gen=0), "
			    "for tests without frep-client")
	p.add_argument("--log-first-txid", type=int,
		       help="txid of the first logged request (default first-index + 1)")
	args = p.parse_args(argv)

	try:
		ops = parse_ops(args.ops)
	except ValueError as e:
		p.error(str(e))
	if args.count is None and args.duration is None:
		p.error("give --count, --duration or both")
	if args.count is not None and args.count < 0 or args.first_index < 0:
		p.error("--count and --first-index must not be negative")
	if args.max_len < BLOCK or args.max_len % BLOCK:
		p.error("--max-len must be a positive multiple of 4096")

	import nbd	# only here: op_at()/data_at() users need not have libnbd

	crc32c = load_sibling("frep_check", "frep-check.py").crc32c if args.log_tx else None
	log = open(args.log_tx, "a") if args.log_tx else None
	txid = args.log_first_txid if args.log_first_txid is not None else args.first_index + 1

	h = nbd.NBD()
	try:
		h.connect_uri(args.uri)
		size = h.get_size()
		max_block = h.get_block_size(nbd.SIZE_MAXIMUM)
	except nbd.Error as e:
		print("frep-write: connecting to %s: %s" % (args.uri, e), file=sys.stderr)
		return 1
	# Clamping would silently change the sequence: refuse instead.
	if max_block and args.max_len > max_block:
		print("frep-write: --max-len %d exceeds the export's maximum block size %d" %
		      (args.max_len, max_block), file=sys.stderr)
		return 1
	for op, can in (("trim", h.can_trim), ("zero", h.can_zero)):
		if op in ops and not can():
			print("frep-write: the export does not support %s" % op, file=sys.stderr)
			return 1
	if args.fua and not h.can_fua():
		print("frep-write: the export does not support FUA", file=sys.stderr)
		return 1
	flags = nbd.CMD_FLAG_FUA if args.fua else 0

	deadline = time.monotonic() + args.duration if args.duration is not None else None
	i = args.first_index
	done = 0
	last = args.first_index - 1
	stopped = "count"
	while True:
		if args.count is not None and done >= args.count:
			break
		if deadline is not None and time.monotonic() >= deadline:
			stopped = "duration"
			break
		op, off, length = op_at(args.seed, i, size, args.max_len, ops)
		data = data_at(args.seed, i, length) if op == "write" else None
		try:
			if op == "write":
				h.pwrite(data, off, flags)
			elif op == "trim":
				h.trim(length, off, flags)
			else:
				h.zero(length, off, flags)
		except (nbd.Error, OSError) as e:
			msg = "frep-write: index %d (%s off=%d len=%d) failed: %s" % (i, op, off, length, e)
			if not args.tolerate_errors:
				print(msg, file=sys.stderr)
				return 1
			print(msg + " (tolerated)", file=sys.stderr)
			stopped = "error"
			break
		if log:
			crc = crc32c(data) if data is not None else 0
			log.write("gen=0 txid=%d op=%s off=%d len=%d crc=%08x\n" % (txid, op, off, length, crc))
			log.flush()
			txid += 1
		last = i
		done += 1
		i += 1

	if stopped != "error":
		try:
			h.shutdown()
		except nbd.Error as e:
			print("frep-write: shutdown: %s" % e, file=sys.stderr)
			return 1
	if log:
		log.close()
	print("frep-write: count=%d first_index=%d last_index=%d stopped=%s" %
	      (done, args.first_index, last, stopped))
	return 0


if __name__ == "__main__":
	sys.exit(main(sys.argv[1:]))
