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
# --depth 1 (the default) sends one request at a time: with frep-client each
# request is exactly one transaction, so TXID order is request order.
# --depth N keeps N requests in flight on one connection: the master then
# assigns TXIDs in its own commit order, so a checker maps each traced TXID
# back to its request by (off, len, CRC32C of the data), which the (seed, i)
# data makes unique. That needs writes only (trims and zeros carry no data).
# --hot-every K sends every K-th request into one small hot range, so that
# requests in flight together overlap and their order shows in the result.
# --record FILE tells the checker what happened: "sent I" before request I
# goes out, "ack I" once it was replied to successfully, one write(2) each,
# so a killed writer's file is whole up to its last line.
#
# Needs Debian's python3-libnbd (run with /usr/bin/python3) only for writing;
# importing this file for op_at()/data_at() does not.

import argparse
import hashlib
import importlib.util
import os
import signal
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
# --hot-every: the hot range, centred on the middle of the volume (on the extent
# boundary of two equal extents). Small, so hot requests in flight overlap.
HOT_SPAN = 64 * 1024


def parse_ops(text):
	ops = [o for o in text.split(",") if o]
	bad = [o for o in ops if o not in OP_WEIGHTS]
	if not ops or bad:
		raise ValueError("--ops takes a comma-separated subset of write,trim,zero")
	return tuple(o for o in OP_WEIGHTS if o in ops)	# canonical order


def op_at(seed, i, size, max_len=DEFAULT_MAX_LEN, ops=("write", "trim", "zero"), hot_every=0):
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
	if hot_every and i % hot_every == 0:
		hot_units = min(HOT_SPAN // BLOCK, units)
		n = 1 + b % min(max_units, hot_units)
		hot_first = units // 2 - hot_units // 2
		first = hot_first + c % (hot_units - n + 1)
	elif d % STRADDLE_EVERY == 0 and boundaries > 0 and n > 1:
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
		description="Sends a deterministic (seed, index) sequence of NBD requests, --depth at a time.")
	p.add_argument("--uri", required=True, help="NBD URI, e.g. nbd+unix:///vol1?socket=/tmp/x.sock")
	p.add_argument("--seed", required=True, help="sequence seed (any string)")
	p.add_argument("--count", type=int, help="number of requests (default: until --duration ends)")
	p.add_argument("--first-index", type=int, default=0, help="index of the first request (default 0)")
	p.add_argument("--duration", type=float, help="stop after this many seconds")
	p.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN,
		       help="largest request in bytes, multiple of 4096 (default %d)" % DEFAULT_MAX_LEN)
	p.add_argument("--ops", default="write", help="comma-separated subset of write,trim,zero (default write)")
	p.add_argument("--fua", action="store_true", help="send every request with FUA")
	p.add_argument("--depth", type=int, default=1,
		       help="requests in flight on the connection (default 1; above 1, writes only)")
	p.add_argument("--hot-every", type=int, default=0, metavar="K",
		       help="every K-th request goes to a %d KiB hot range (default 0: none)" % (HOT_SPAN // 1024))
	p.add_argument("--rate", type=float, default=0,
		       help="at most this many requests a second, sent in bursts of --depth so that they "
			    "are in flight together (default 0: as fast as replies come)")
	p.add_argument("--kill-at", metavar="INDEX:PID",
		       help="send SIGKILL to PID as soon as request INDEX is sent: a crash of the server "
			    "with the requests before it still in flight (for crash tests)")
	p.add_argument("--record", metavar="FILE",
		       help="append 'sent I' before request I goes out and 'ack I' once it is replied to")
	# SIGTERM: stop sending, wait for the replies to what was sent, exit 0 (stopped=signal):
	# afterwards no request of this writer is in flight at the server.
	p.add_argument("--tolerate-errors", action="store_true",
		       help="stop at the first failed request and exit 0 (for tests that kill the master)")
	p.add_argument("--log-tx", metavar="FILE",
		       help="append one master-trace-format line per acknowledged request (gen=0), in "
			    "reply order: for a server that applies requests in that order "
			    "(e.g. nbdkit -t 1), for tests without frep-client")
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
	if args.depth < 1 or args.hot_every < 0 or args.rate < 0:
		p.error("--depth must be at least 1, --hot-every and --rate not negative")
	kill_at = None
	if args.kill_at:
		idx, _, pid = args.kill_at.partition(":")
		if not idx.isdigit() or not pid.isdigit():
			p.error("--kill-at takes INDEX:PID, got %r" % args.kill_at)
		kill_at = (int(idx), int(pid))
	# Concurrent requests are told apart by their data's CRC.
	if args.depth > 1 and ops != ("write",):
		p.error("--depth above 1 takes --ops write only")

	import nbd	# only here: op_at()/data_at() users need not have libnbd

	# Blocked and polled, not handled: a handler would interrupt libnbd's poll.
	signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

	crc32c = load_sibling("frep_check", "frep-check.py").crc32c if args.log_tx else None
	log = open(args.log_tx, "a") if args.log_tx else None
	rec = open(args.record, "a", buffering=1) if args.record else None	# a line, a write(2)
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

	began = time.monotonic()
	deadline = began + args.duration if args.duration is not None else None
	i = args.first_index
	done = 0
	last = args.first_index - 1
	stopped = None
	inflight = {}	# cookie -> (index, op, off, length, data, buffer kept alive)

	def failed(idx, op, off, length, e):
		msg = "frep-write: index %d (%s off=%d len=%d) failed: %s" % (idx, op, off, length, e)
		print(msg + (" (tolerated)" if args.tolerate_errors else ""), file=sys.stderr)

	def reap():
		"""Retires every completed request: (replied, failed) counts."""
		nonlocal done, last, txid
		replied = bad = 0
		while inflight:
			cookie = h.aio_peek_command_completed()
			if cookie <= 0:
				break
			idx, op, off, length, data, _ = inflight.pop(cookie)
			try:
				h.aio_command_completed(cookie)
			except nbd.Error as e:
				failed(idx, op, off, length, e)
				bad += 1
				continue
			if rec:
				rec.write("ack %d\n" % idx)
			if log:
				crc = crc32c(data) if data is not None else 0
				log.write("gen=0 txid=%d op=%s off=%d len=%d crc=%08x\n" % (txid, op, off, length, crc))
				log.flush()
				txid += 1
			last = max(last, idx)
			done += 1
			replied += 1
		return replied, bad

	def due(idx):
		"""When request idx may go: --rate releases whole bursts of --depth requests."""
		burst = (idx - args.first_index) // args.depth * args.depth
		return began + burst / args.rate if args.rate else began

	while True:
		while stopped is None and len(inflight) < args.depth:
			if signal.SIGTERM in signal.sigpending():
				stopped = "signal"
			elif args.count is not None and i - args.first_index >= args.count:
				stopped = "count"
			elif deadline is not None and time.monotonic() >= deadline:
				stopped = "duration"
			elif time.monotonic() < due(i):
				break
			else:
				op, off, length = op_at(args.seed, i, size, args.max_len, ops, args.hot_every)
				data = data_at(args.seed, i, length) if op == "write" else None
				if rec:
					rec.write("sent %d\n" % i)
				try:
					if op == "write":
						buf = nbd.Buffer.from_bytearray(data)
						cookie = h.aio_pwrite(buf, off, flags=flags)
					elif op == "trim":
						buf, cookie = None, h.aio_trim(length, off, flags=flags)
					else:
						buf, cookie = None, h.aio_zero(length, off, flags=flags)
				except (nbd.Error, OSError) as e:
					failed(i, op, off, length, e)
					if not args.tolerate_errors:
						return 1
					stopped = "error"
					break
				inflight[cookie] = (i, op, off, length, data, buf)
				if kill_at and i == kill_at[0]:
					try:
						os.kill(kill_at[1], signal.SIGKILL)
					except ProcessLookupError:
						pass	# already gone: the replies will say so
				i += 1
		if not inflight:
			if stopped is not None:
				break
			time.sleep(max(0, min(due(i), deadline or due(i), time.monotonic() + 0.1) - time.monotonic()))
			continue
		try:
			# Replies may already be in: poll only when none is waiting. The timeout
			# lets a SIGTERM stop the sending while replies are slow.
			replied, bad = reap()
			if not replied and not bad:
				h.poll(100)
				replied, bad = reap()
		except (nbd.Error, OSError) as e:
			# The connection is gone: whatever is still in flight has no reply.
			for idx, op, off, length, _, _ in inflight.values():
				failed(idx, op, off, length, e)
			inflight.clear()
			bad = 1
		if bad:
			if not args.tolerate_errors:
				return 1
			stopped = "error"

	if stopped != "error":
		try:
			h.shutdown()
		except nbd.Error as e:
			print("frep-write: shutdown: %s" % e, file=sys.stderr)
			return 1
	for f in (log, rec):
		if f:
			f.close()
	print("frep-write: count=%d first_index=%d last_index=%d stopped=%s" %
	      (done, args.first_index, last, stopped))
	return 0


if __name__ == "__main__":
	sys.exit(main(sys.argv[1:]))
