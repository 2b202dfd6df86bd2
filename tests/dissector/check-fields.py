#!/usr/bin/python3
"""Compares the dissector's registered fields (tshark -G fields / -G values) with
frep.proto (messages, fields, numbers, types; enums Phase and TxOp) and common/wire.h
(message types and error codes). Prints a summary, or every difference and exits 1.

usage: check-fields.py frep.proto wire.h FIELDS VALUES
"""
import re
import sys

proto_path, wire_path, fields_path, values_path = sys.argv[1:5]
problems = []

FTYPE = {"uint32": "FT_UINT32", "uint64": "FT_UINT64", "bool": "FT_BOOLEAN",
	 "string": "FT_STRING", "bytes": "FT_BYTES", "fixed32": "FT_UINT32"}


def snake(name):
	return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


text = re.sub(r"//[^\n]*", "", open(proto_path).read())
enums = {m.group(1): {int(v): n for n, v in re.findall(r"(\w+)\s*=\s*(\d+)\s*;", m.group(2))}
	 for m in re.finditer(r"enum\s+(\w+)\s*\{(.*?)\}", text, re.S)}
want = {}	# filter name -> (message, number, label, type)
for m in re.finditer(r"message\s+(\w+)\s*\{(.*?)\}", text, re.S):
	want.setdefault(snake(m.group(1)), {})
	for label, typ, name, num in re.findall(
			r"(required|optional|repeated)\s+(\w+)\s+(\w+)\s*=\s*(\d+)", m.group(2)):
		want["frep.%s.%s" % (snake(m.group(1)), name)] = (m.group(1), int(num), label, typ)
messages = {k for k, v in want.items() if isinstance(v, dict)}

have = {}
for line in open(fields_path):
	cols = line.rstrip("\n").split("\t")
	if cols[0] == "F" and cols[4] == "frep":
		have[cols[2]] = (cols[3], cols[-1])
values = {}
for line in open(values_path):
	cols = line.rstrip("\n").split("\t")
	if cols[0] == "V" and cols[1].startswith("frep."):
		values.setdefault(cols[1], {})[int(cols[2])] = cols[3]

n_fields = 0
for abbrev, spec in want.items():
	if abbrev in messages:
		continue
	n_fields += 1
	msg, num, label, typ = spec
	if abbrev not in have:
		problems.append("%s.%s (field %d) has no dissector field %s" % (msg, abbrev.split(".")[-1], num, abbrev))
		continue
	ftype, blurb = have[abbrev]
	kind = "enum" if typ in enums else typ
	want_blurb = "frep.proto %s field %d (%s%s)" % (msg, num, "repeated " if label == "repeated" else "", kind)
	if blurb != want_blurb:
		problems.append("%s: dissector says '%s', frep.proto says '%s'" % (abbrev, blurb, want_blurb))
	if ftype != FTYPE.get(typ, "FT_UINT32"):
		problems.append("%s: %s, but frep.proto type %s wants %s" % (abbrev, ftype, typ, FTYPE.get(typ, "FT_UINT32")))
	if typ in enums and values.get(abbrev) != enums[typ]:
		problems.append("%s: values %s, frep.proto enum %s has %s" % (abbrev, values.get(abbrev), typ, enums[typ]))
# Under frep.<message>. only frep.proto's fields; the dissector's own (frep.hdr.*,
# frep.ack_in, frep.seq.gap...) use names that are not messages.
for abbrev in have:
	if abbrev.split(".")[1] in messages and abbrev not in want:
		problems.append("dissector field %s is not in frep.proto" % abbrev)

wire = open(wire_path).read()
types = {int(v): n for n, v in re.findall(r"FREP_MSG_(\w+)\s*=\s*(\d+),", wire) if not n.startswith("_")}
codes = {int(v): n for n, v in re.findall(r"FREP_E_(\w+)\s*=\s*(\d+),", wire) if not n.startswith("_")}
if values.get("frep.hdr.type") != types:
	problems.append("frep.hdr.type names %s, wire.h has %s" % (values.get("frep.hdr.type"), types))
if values.get("frep.error.code") != codes:
	problems.append("frep.error.code names %s, wire.h has %s" % (values.get("frep.error.code"), codes))
# Message bodies: one per message type, named as the type (HELLO: Hello, TX_ACK: TxAck).
for num, name in types.items():
	if name.lower() not in messages:
		problems.append("message type %s (%d) has no message %s in frep.proto" % (name, num, name.lower()))

if problems:
	print("\n".join(problems))
	sys.exit(1)
print("%d fields of %d messages, %d message types, %d error codes, enums %s match" %
      (n_fields, len(messages), len(types), len(codes), ", ".join(sorted(enums))))
