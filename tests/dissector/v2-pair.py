#!/usr/bin/python3
"""Both ends of scripted frep version-2 sessions over real TLS on loopback, for the
dissector tests: what frep's own daemons do not send (frep-server grants one lane
for now) or never send (frames that break version 2's rules).

usage: v2-pair.py PKI KEYLOG PYOUT PORTFILE GOFILE

Listens on a loopback port and writes it to PORTFILE, waits for GOFILE (the capture
runs), then plays each session below, master and mirror both, one frame at a time:
a frame is sent and read whole by the other end before the next goes, so the
capture holds them in this order. Every lane is a TLS 1.2 connection with ALPN
frep/1 (the key log goes to KEYLOG); bodies are encoded by protoc's Python code of
frep.proto (in PYOUT), so no frep C code is involved. Prints, as JSON, one entry per
frame sent: {"conn", "lane", "type", "expert": [names], "text": [in its messages],
"data": sha256 of a trailer's data, compressed or not}.

  A  a good session of 3 lanes with zstd: lanes join, copy records on every lane
     with pass and seq, some compressed, COPY_DONE.lane_records, a compressed TX.
  B  2 lanes with lz4, breaking the rules: a lane joining with the wrong offer and
     lane count, a record without pass and seq, a TX on a joining lane, trailers
     that do not decompress to their declared length, lane_records that disagree
     with the records seen, a version-1 frame after WELCOME, flags misplaced.
  C  version 2 without compression: a COMPRESSED trailer, a length that is not the
     trailer's.
  D  a WELCOME choosing what its HELLO did not offer, on A's session_id.
  E  one lane with zstd: trailers that do not decompress, or not to the length
     declared, or declare none or too much; a data_crc that is not the data's.
"""
import ctypes
import hashlib
import importlib.util
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time

pki, keylog, pyout, portfile, gofile = sys.argv[1:6]
sys.path.insert(0, pyout)
from frep.v1 import frep_pb2 as pb  # noqa: E402

sys.dont_write_bytecode = True	# no __pycache__ in the source tree
_spec = importlib.util.spec_from_file_location(
	"frep_check", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../tools/frep-check.py"))
_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_check)
crc32c = _check.crc32c

TYPES = ["", "HELLO", "WELCOME", "EXTENT_TABLE", "PARTS_READY", "START_COPY", "START_SYNC",
	 "COPY_DATA", "COPY_HOLE", "COPY_ACK", "COPY_DONE", "TX", "TX_ACK", "RESEND", "CONSISTENT",
	 "HEARTBEAT", "PAUSE", "RESUME", "ERROR", "GOODBYE"]
COMPRESSED = 0x0001
ZSTD, LZ4 = 1, 2

# The algorithms, from the libraries frep links (libzstd, liblz4): one zstd frame,
# one raw lz4 block (COMP-1).
_zstd = ctypes.CDLL("libzstd.so.1")
_zstd.ZSTD_compressBound.restype = ctypes.c_size_t
_zstd.ZSTD_compress.restype = ctypes.c_size_t
_zstd.ZSTD_compress.argtypes = (ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
				ctypes.c_int)
_lz4 = ctypes.CDLL("liblz4.so.1")
_lz4.LZ4_compress_default.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int)


def compress(alg, data):
	if alg == ZSTD:
		cap = _zstd.ZSTD_compressBound(len(data))
		out = ctypes.create_string_buffer(cap)
		n = _zstd.ZSTD_compress(out, cap, data, len(data), 1)
	else:
		cap = len(data) + len(data) // 255 + 16
		out = ctypes.create_string_buffer(cap)
		n = _lz4.LZ4_compress_default(data, out, len(data), cap)
	assert 0 < n < len(data), "test data must compress"
	return out.raw[:n]


def text(offset, n):
	"""Compressible data that names its offset."""
	return b"".join((b"v2-pair data at %010d\n" % o).rjust(32, b".") for o in range(offset, offset + n, 32))


def tls_contexts():
	srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
	srv.load_cert_chain(pki + "/server.crt", pki + "/server.key")
	srv.verify_mode = ssl.CERT_REQUIRED
	cli = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
	cli.load_cert_chain(pki + "/master-1.crt", pki + "/master-1.key")
	cli.keylog_filename = keylog
	for c in (srv, cli):
		c.load_verify_locations(pki + "/ca.crt")
		# TLS-2, TLS-4, TLS-5 as frep has them (frepcap.py counts a 16-byte tag per record).
		c.minimum_version = c.maximum_version = ssl.TLSVersion.TLSv1_2
		c.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
		c.set_alpn_protocols(["frep/1"])
	return srv, cli


listener = socket.create_server(("127.0.0.1", 0))
with open(portfile + ".tmp", "w") as f:
	f.write("%d\n" % listener.getsockname()[1])
os.rename(portfile + ".tmp", portfile)
for _ in range(200):
	if os.path.exists(gofile):
		break
	time.sleep(0.05)
else:
	sys.exit("v2-pair: %s never appeared" % gofile)
SRV, CLI = tls_contexts()
manifest = []


class Conn:
	"""One lane: a TLS connection, the master's end and the mirror's."""

	def __init__(self, name, lane):
		self.name, self.lane, self.version = name, lane, 1
		raw = socket.create_connection(listener.getsockname())
		raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
		acc, _ = listener.accept()
		ends = {}
		t = threading.Thread(target=lambda: ends.update(s=SRV.wrap_socket(acc, server_side=True)))
		t.start()
		self.m = CLI.wrap_socket(raw, server_hostname="frep-mirror")
		t.join()
		self.s = ends["s"]

	def send(self, master, type_name, expert=(), text=(), trailer=b"", data=None, flags=0,
		 version=None, **fields):
		"""One frame from the master (or the mirror), read whole at the other end."""
		cls = getattr(pb, "".join(w.capitalize() for w in type_name.split("_")))
		body = cls(**fields).SerializeToString()
		hdr = struct.pack(">IBBHII", 0x46524550, version or self.version, TYPES.index(type_name),
				  flags, len(body), len(trailer))
		frame = hdr + body + trailer
		(self.m if master else self.s).sendall(frame)
		peer, got = self.s if master else self.m, b""
		while len(got) < len(frame):
			got += peer.recv(len(frame) - len(got))
		assert got == frame
		entry = {"conn": self.name, "lane": self.lane, "type": TYPES.index(type_name),
			 "expert": sorted(expert), "text": list(text)}
		if data is not None or trailer:
			entry["data"] = hashlib.sha256(trailer if data is None else data).hexdigest()
		manifest.append(entry)

	def close(self):
		self.m.close()
		self.s.close()


def hello(conn, sid, lanes_max=None, offer=(), proto=(1, 2), lane_count=1, **kw):
	extra = {"lanes_max": lanes_max} if lanes_max else {}
	conn.send(True, "HELLO", proto_min=proto[0], proto_max=proto[1], master_node="v2-pair",
		  volume="lanes", volume_uuid=bytes(range(16)), generation=1, session_id=sid,
		  lane=conn.lane, lane_count=lane_count, retained_first_txid=0, committed_txid=0,
		  journal_size=1 << 24, compression=list(offer), **extra, **kw)


def welcome(conn, compression, lanes, **kw):
	conn.send(False, "WELCOME", proto_version=2, known=False, durable_txid=0, consistent=False,
		  consistent_txid=0, phase=0, copy_cursor=0, compression=compression, lanes=lanes, **kw)
	conn.version = 2


def copy_data(conn, offset, data, alg=None, length=None, wire=None, crc=None, **kw):
	"""COPY_DATA of data: compressed with alg (or sent compressed as wire), declaring
	length (default the data's, -1 for none) and crc (default the data's)."""
	trailer = wire if wire is not None else compress(alg, data) if alg else data
	if length != -1:
		kw["length"] = len(data) if length is None else length
	conn.send(True, "COPY_DATA", trailer=trailer, data=data,
		  flags=COMPRESSED if alg or wire is not None else 0, offset=offset,
		  data_crc=crc32c(data) if crc is None else crc, **kw)


def ready(conn):
	conn.send(True, "EXTENT_TABLE", extent_size=[65536], allocated_bytes=65536)
	conn.send(False, "PARTS_READY", created=True, volume_size=65536)
	conn.send(True, "START_COPY", kind=2, base_txid=0, total_bytes=65536)


SID_A = bytes(range(0x40, 0x50))

# A: three lanes, zstd; records spread over the lanes, acknowledged on lane 0 (LANE-8).
a = [Conn("A0", 0)]
hello(a[0], SID_A, lanes_max=3, offer=(ZSTD, LZ4))
welcome(a[0], ZSTD, 3)
for lane in (1, 2):
	a.append(Conn("A%d" % lane, lane))
	hello(a[lane], SID_A, offer=(ZSTD, LZ4), proto=(2, 2), lane_count=3)
	welcome(a[lane], ZSTD, 3)
ready(a[0])
copy_data(a[1], 0, text(0, 8192), ZSTD, **{"pass": 1}, seq=1)
a[2].send(True, "COPY_HOLE", offset=8192, length=8192, **{"pass": 1}, seq=2)
copy_data(a[0], 16384, text(16384, 8192), ZSTD, **{"pass": 1}, seq=3)
copy_data(a[2], 24576, os.urandom(4096), **{"pass": 1}, seq=4)	# raw: it would not shrink
a[0].send(False, "COPY_ACK", through=28672)
a[1].send(True, "COPY_HOLE", offset=28672, length=36864, **{"pass": 1}, seq=5)
a[0].send(True, "COPY_DONE", last_txid=0, copied_bytes=20480, lane_records=[1, 2, 2])
a[0].send(False, "COPY_ACK", through=65536)
a[0].send(False, "CONSISTENT", txid=0)
tx = text(40960, 8192)
a[0].send(True, "TX", trailer=compress(ZSTD, tx), data=tx, flags=COMPRESSED, generation=1, txid=1,
	  op=1, offset=40960, length=len(tx), data_crc=crc32c(tx))
a[0].send(False, "TX_ACK", txid=1)
for lane in (2, 1, 0):
	a[lane].send(True, "GOODBYE", reason="done")

# B: two lanes, lz4, and what breaks the rules of version 2.
b = [Conn("B0", 0), Conn("B1", 1)]
hello(b[0], bytes(range(0x50, 0x60)), lanes_max=2, offer=(LZ4,))
welcome(b[0], LZ4, 2)
hello(b[1], bytes(range(0x50, 0x60)), offer=(LZ4,), lane_count=3,
      expert=["frep.lane.join_bad"], text=["Lane 1 offers versions 1..2", "Lane 1 of 3, but lane 0's WELCOME"])
welcome(b[1], LZ4, 2)
ready(b[0])
copy_data(b[1], 0, text(0, 4096), LZ4, expert=["frep.lane.no_seq"],
	  text=["COPY_DATA without pass and seq in a session of 2 lanes"])
tx = text(0, 4096)
b[1].send(True, "TX", trailer=compress(LZ4, tx), data=tx, flags=COMPRESSED, generation=1, txid=1, op=1,
	  offset=0, length=len(tx), data_crc=crc32c(tx), expert=["frep.lane.unexpected"],
	  text=["TX from the master on joining lane 1"])
# One literal, then a match 65535 bytes back, before the start of the data.
copy_data(b[0], 4096, text(4096, 4096), wire=b"\x1fA\xff\xff\x00", **{"pass": 1}, seq=2,
	  expert=["frep.trailer.decompress_failed"], text=["lz4 data is corrupt"])
copy_data(b[0], 8192, text(8192, 4096), wire=compress(LZ4, text(8192, 4096)), length=8192,
	  **{"pass": 1}, seq=3, expert=["frep.trailer.decompress_failed"],
	  text=["decompresses to 4096 bytes, not the 8192 declared"])
b[0].send(True, "COPY_DONE", last_txid=0, copied_bytes=12288, lane_records=[1, 3],
	  expert=["frep.lane.records"], text=["Lane 0 carried 2 copy records of pass 1, COPY_DONE declares 1"])
copy_data(b[0], 16384, os.urandom(4096), **{"pass": 1}, seq=4, expert=["frep.lane.records"],
	  text=["COPY_DATA number 3 of pass 1 on lane 0: COPY_DONE in frame"])
b[0].send(False, "CONSISTENT", txid=0, expert=["frep.lane.records"],
	  text=["CONSISTENT, but lane 1 carried 1 of the 3 copy records of pass 1"])
b[0].send(False, "HEARTBEAT", seq=1, txid=0, version=1, expert=["frep.hdr.version_mismatch"],
	  text=["Version 1, but the WELCOME in frame"])
b[0].send(False, "COPY_ACK", through=0, flags=COMPRESSED, expert=["frep.hdr.compressed_unexpected"],
	  text=["COMPRESSED on a frame without a trailer"])
b[0].send(True, "HEARTBEAT", seq=1, txid=0, flags=0x0002, expert=["frep.hdr.flags_set"],
	  text=["Reserved flags 0x0002 set"])
b[0].send(True, "GOODBYE", reason="done")

# C: version 2 without compression.
c = Conn("C0", 0)
hello(c, bytes(range(0x60, 0x70)))
welcome(c, 0, 1)
ready(c)
copy_data(c, 0, text(0, 4096), ZSTD, expert=["frep.hdr.compressed_unexpected",
					    "frep.trailer.not_decompressed"],
	  text=["COMPRESSED, but the connection negotiated no compression", "Not decompressed"])
copy_data(c, 4096, os.urandom(4096), length=8192, expert=["frep.body.inconsistent"],
	  text=["COPY_DATA declares 8192 bytes of data and carries 4096 (COMP-3)"])
c.send(True, "GOODBYE", reason="done")

# D: a WELCOME that chooses what was not offered, on a session_id A had.
d = Conn("D0", 0)
hello(d, SID_A, lanes_max=1, offer=(LZ4,), expert=["frep.session.reused"],
      text=["also opened the session in frame"])
welcome(d, ZSTD, 2, expert=["frep.neg.bad_choice"],
	text=["compression 1 was not in the HELLO's offer", "lanes 2: 1..the HELLO's lanes_max 1"])
d.send(True, "GOODBYE", reason="done")

# E: zstd trailers that break COMP-3 and COMP-4, and a CRC that is not of the data.
e = Conn("E0", 0)
hello(e, bytes(range(0x70, 0x80)), offer=(ZSTD,))
welcome(e, ZSTD, 1)
ready(e)
copy_data(e, 0, text(0, 4096), wire=compress(ZSTD, text(0, 4096))[:-4],
	  expert=["frep.trailer.decompress_failed"], text=["COPY_DATA trailer of", "zstd: "])
copy_data(e, 4096, text(4096, 8192), ZSTD, length=4096, expert=["frep.trailer.decompress_failed"],
	  text=["Destination buffer is too small"])
copy_data(e, 12288, text(12288, 4096), ZSTD, length=-1, expert=["frep.trailer.length_bad"],
	  text=["COPY_DATA with a compressed trailer declares no length (COMP-3)"])
tx = text(0, 4096)
e.send(True, "TX", trailer=compress(ZSTD, tx), data=tx, flags=COMPRESSED, generation=1, txid=1, op=1,
       offset=0, length=40 << 20, data_crc=crc32c(tx), expert=["frep.trailer.length_bad"],
       text=["TX declares 41943040 bytes of data: a compressed trailer holds 1..33554432 (COMP-4)"])
copy_data(e, 16384, text(16384, 4096), ZSTD, crc=crc32c(text(0, 4096)),
	  expert=["frep.trailer.crc_bad"], text=["data_crc does not match"])
e.send(True, "GOODBYE", reason="done")

for conn in a + b + [c, d, e]:
	conn.close()
listener.close()
print(json.dumps(manifest))
