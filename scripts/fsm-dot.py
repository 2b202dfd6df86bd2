#!/usr/bin/env python3
"""Turns Ragel's numbered state graph (ragel -V -p) into the spec's named state diagram.

usage: fsm-dot.py master|mirror fsm/fsm.h RAW.dot OUT.dot

Event labels become the enum names of fsm/fsm.h (ME_* for master, MV_* for
mirror, prefix dropped). A node takes the model state named by the actions on
its incoming edges (to_insync, stay_insync, crack_linkdown, ...: the suffix
after the first '_' is the state); Ragel's start node is the enum's first
state. The script fails if a node gets no name or two, or if two nodes share
one: the machine would no longer have one cs per model state. Ragel's entry
and eof/error pseudo-nodes are dropped. Output is deterministic: nodes in enum
order, one edge per (source, target) pair carrying all its events.
"""

import re
import sys

ROLES = {
    "master": ("master_state", "MS_", "master_event", "ME_"),
    "mirror": ("mirror_state", "MR_", "mirror_event", "MV_"),
}

# Escapes ragel -p prints for non-printable keys, after DOT unescaping.
CHAR_ESCAPES = {"0": 0, "a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13,
                "\\": 92, "'": 39, '"': 34}

EDGE_RE = re.compile(r'^\s*(\w+)\s*->\s*(\w+)\s*\[\s*label\s*=\s*"((?:[^"\\]|\\.)*)"\s*\];\s*$')


def fail(msg):
    sys.stderr.write("fsm-dot.py: %s\n" % msg)
    sys.exit(1)


def parse_enum(header_text, enum_name, prefix):
    """Returns [(value, name without prefix)] in declaration order, *__COUNT dropped."""
    text = re.sub(r"/\*.*?\*/", "", header_text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    m = re.search(r"enum\s+%s\s*\{(.*?)\}" % re.escape(enum_name), text, re.S)
    if not m:
        fail("enum %s not found" % enum_name)
    out = []
    value = -1
    for item in m.group(1).split(","):
        item = item.strip()
        if not item:
            continue
        name, _, init = item.partition("=")
        name = name.strip()
        value = int(init.strip(), 0) if init.strip() else value + 1
        if name.endswith("__COUNT"):
            continue
        if not name.startswith(prefix):
            fail("enum %s: %s lacks prefix %s" % (enum_name, name, prefix))
        out.append((value, name[len(prefix):]))
    return out


def dot_unescape(s):
    return re.sub(r"\\(.)", r"\1", s)


def parse_key(tok):
    """One key as ragel -p prints it: a number or a quoted (escaped) character."""
    tok = tok.strip()
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    m = re.fullmatch(r"'(\\?)(.)'", tok)
    if not m:
        fail("unreadable key %r" % tok)
    if m.group(1):
        if m.group(2) not in CHAR_ESCAPES:
            fail("unknown escape in key %r" % tok)
        return CHAR_ESCAPES[m.group(2)]
    return ord(m.group(2))


def parse_keys(text):
    keys = []
    for item in text.split(", "):
        lo, sep, hi = item.partition("..")
        lo = parse_key(lo)
        hi = parse_key(hi) if sep else lo
        keys.extend(range(lo, hi + 1))
    return keys


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ROLES:
        fail("usage: fsm-dot.py master|mirror fsm.h RAW.dot OUT.dot")
    role, header, raw, out = sys.argv[1:]
    state_enum, state_prefix, event_enum, event_prefix = ROLES[role]
    with open(header) as fh:
        header_text = fh.read()
    states = [name for _, name in parse_enum(header_text, state_enum, state_prefix)]
    events = dict(parse_enum(header_text, event_enum, event_prefix))

    start = None
    edges = []  # (src, dst, [event codes], [actions])
    with open(raw) as fh:
        for line in fh:
            m = EDGE_RE.match(line)
            if not m:
                continue
            src, dst, label = m.group(1), m.group(2), dot_unescape(m.group(3))
            if src == "ENTRY":
                start = dst
                continue
            # Entry-point, eof and error pseudo-nodes are Ragel's, not the model's.
            if not (src.isdigit() and dst.isdigit()):
                continue
            keys, _, actions = label.partition(" / ")
            edges.append((src, dst, parse_keys(keys),
                          [a.strip() for a in actions.split(",") if a.strip()]))
    if start is None:
        fail("%s: no ENTRY edge" % raw)

    names = {start: {states[0]}}
    for src, dst, _, actions in edges:
        names.setdefault(src, set())
        for action in actions:
            suffix = action.partition("_")[2].upper()
            if suffix in states:
                names.setdefault(dst, set()).add(suffix)
    node_state = {}
    for node, found in sorted(names.items(), key=lambda kv: int(kv[0])):
        if len(found) != 1:
            fail("node %s: model state %s (one expected)" % (node, sorted(found) or "unknown"))
        node_state[node] = found.pop()
    seen = {}
    for node, state in node_state.items():
        if state in seen:
            fail("states %s and %s are both %s" % (seen[state], node, state))
        seen[state] = node
    missing = [s for s in states if s not in seen]
    if missing:
        fail("model states without a node: %s" % ", ".join(missing))

    order = {s: i for i, s in enumerate(states)}
    grouped = {}
    for src, dst, keys, _ in edges:
        for key in keys:
            if key not in events:
                fail("event code %d is not in enum %s" % (key, event_enum))
        grouped.setdefault((node_state[src], node_state[dst]), set()).update(keys)

    lines = [
        "// %s replication state machine. Generated from fsm/%s.rl by scripts/fsm-dot.py; "
        "do not edit." % (role.capitalize(), role),
        "digraph %s {" % role,
        "\trankdir=TB;",
        "\tnode [shape=box, style=rounded, fontname=\"Helvetica\"];",
        "\tedge [fontname=\"Helvetica\", fontsize=10];",
        "\tstart [shape=point, width=0.15];",
    ]
    for s in states:
        lines.append("\t%s;" % s)
    lines.append("\tstart -> %s;" % states[0])
    for (src, dst) in sorted(grouped, key=lambda e: (order[e[0]], order[e[1]])):
        label = "\\n".join(events[k] for k in sorted(grouped[(src, dst)]))
        # Every state can fail to ERROR: grey those edges so the phases stand out.
        style = ", color=gray55, fontcolor=gray40" if dst == "ERROR" else ""
        lines.append("\t%s -> %s [label=\"%s\"%s];" % (src, dst, label, style))
    lines.append("}")
    with open(out, "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
