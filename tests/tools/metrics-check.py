#!/usr/bin/python3
"""Test tool: checks that a daemon's Prometheus /metrics says what its admin API's Status says.

  metrics-check.py ADMIN_TARGET METRICS_URL

Takes Status, scrapes METRICS_URL, takes Status again, until the two Status answers agree
(the volumes are idle; at most 20 tries), then parses the scrape with prometheus_client's
text_string_to_metric_families and checks every sample against that Status: each value
equal, and no sample missing or extra for what Status holds (its copy, peer, verify and
error parts are present or absent together with their series). Prints the number of
samples checked; exit 1 with every difference otherwise.

Needs Debian's python3-prometheus-client, python3-grpcio and python3-protobuf: run with
/usr/bin/python3. FREP_SRC and FREP_BUILD locate admin-client.py and the generated messages.
"""
import importlib.util
import os
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

spec = importlib.util.spec_from_file_location(
    "admin_client", os.path.join(os.path.dirname(os.path.abspath(__file__)), "admin-client.py"))
ac = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ac)
pb = ac.pb


def ms(x):
    return int(x) / 1000


def flag(x):
    return 1.0 if x else 0.0


# name -> [(role or None for both, path in VolumeStatus, conversion, part that must be present)]
# A path's first part is master/mirror by role; "part" is the message Status leaves out
# when it does not apply (copy: no copy pass; peer: not connected; verify: none yet).
SIMPLE = {
    "frep_state_since_timestamp_seconds": [(None, "state_since_unix_ms", ms, None)],
    "frep_volume_size_bytes": [("MASTER", "master.volume_size_bytes", int, None),
                               ("MIRROR", "mirror.volume_size_bytes", int, None)],
    "frep_committed_txid": [("MASTER", "master.committed_txid", int, None)],
    "frep_acked_txid": [("MASTER", "master.acked_txid", int, None)],
    "frep_applied_txid": [("MASTER", "master.applied_txid", int, None),
                          ("MIRROR", "mirror.last_applied_txid", int, None)],
    "frep_lag_transactions": [("MASTER", "master.lag_tx", int, None)],
    "frep_lag_bytes": [("MASTER", "master.lag_bytes", int, None)],
    "frep_lag_seconds": [("MASTER", "master.lag_seconds", float, None)],
    "frep_buffer_used_bytes": [("MASTER", "master.buffer_used_bytes", int, None)],
    "frep_buffer_free_bytes": [("MASTER", "master.buffer_free_bytes", int, None)],
    "frep_write_rate_bytes_per_second": [("MASTER", "master.write_rate_bps", int, None)],
    "frep_send_rate_bytes_per_second": [("MASTER", "master.send_rate_bps", int, None)],
    "frep_dirty_bytes": [("MASTER", "master.dirty_bytes", int, None)],
    "frep_resync_full": [("MASTER", "master.resync_full", flag, None)],
    "frep_degraded": [("MASTER", "master.degraded", flag, None)],
    "frep_paused": [("MASTER", "master.paused", flag, None)],
    "frep_outrun": [("MASTER", "master.outrun", flag, None)],
    "frep_max_rate_bytes_per_second": [("MASTER", "master.max_rate_bps", int, None)],
    "frep_journal_appends_total": [("MASTER", "master.journal_appends", int, None)],
    "frep_journal_syncs_total": [("MASTER", "master.journal_syncs", int, None)],
    "frep_full_waits_total": [("MASTER", "master.full_waits", int, None)],
    "frep_cracks_total": [("MASTER", "master.cracks", int, None)],
    "frep_consistent": [("MIRROR", "mirror.consistent", flag, None)],
    "frep_consistent_txid": [("MIRROR", "mirror.consistent_txid", int, None)],
    "frep_consistent_timestamp_seconds": [("MIRROR", "mirror.consistent_unix_ms", ms, None)],
    "frep_journal_used_bytes": [("MIRROR", "mirror.journal_used_bytes", int, None)],
    "frep_journal_size_bytes": [("MIRROR", "mirror.journal_size_bytes", int, None)],
    "frep_peer_connected": [("MASTER", "master.peer", flag, "-"),
                            ("MIRROR", "mirror.connected_master", flag, "-")],
}
for field in ("done_bytes", "total_bytes", "rate_bps", "eta_seconds"):
    name = "frep_copy_" + field.replace("_bps", "_bytes_per_second")
    SIMPLE[name] = [(r, "%s.copy.%s" % (r.lower(), field), int, "%s.copy" % r.lower())
                    for r in ("MASTER", "MIRROR")]
for field, conv in (("lanes", int), ("compression_ratio", float)):
    SIMPLE["frep_peer_" + field] = [
        ("MASTER", "master.peer." + field, conv, "master.peer"),
        ("MIRROR", "mirror.connected_master." + field, conv, "mirror.connected_master")]
for name, path, conv in (("running", "running", flag),
                         ("done_bytes", "progress.done_bytes", int),
                         ("total_bytes", "progress.total_bytes", int),
                         ("mismatched_regions", "mismatched_regions", int),
                         ("repaired_regions", "repaired_regions", int)):
    SIMPLE["frep_verify_" + name] = [(None, "verify." + path, conv, "verify")]

# Enum series: one per value but UNSPECIFIED, 1 for the volume's.
ENUMS = {
    "frep_role": ("role", None, "role", pb.Role),
    "frep_state": ("state", None, "state", pb.State),
    "frep_mode": ("mode", "MASTER", "master.mode", pb.Mode),
    "frep_on_buffer_full": ("policy", "MASTER", "master.on_buffer_full", pb.OnBufferFull),
}

MISSING = object()


def get(vol, path):
    """The value at path, MISSING where a message is absent; "-" (present?) never is."""
    cur = vol
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def expected(resp):
    """{(name, labels as a sorted tuple): value} for a StatusResponse in JSON form."""
    out = {(("frep_build_info"), (("version", resp["version"]),)): 1.0}
    for vol in resp["volumes"]:
        v = vol["name"]
        key = lambda name, **labels: (name, tuple(sorted(dict(volume=v, **labels).items())))
        for name, rows in SIMPLE.items():
            for role, path, conv, part in rows:
                if role and vol["role"] != role:
                    continue
                if part == "-":  # the message's presence is the value
                    out[key(name)] = conv(get(vol, path) is not MISSING)
                elif part is None or get(vol, part) is not MISSING:
                    val = get(vol, path)
                    # proto3 JSON leaves out nothing with including_default_value_fields,
                    # but a message present with all defaults still reads as {}.
                    out[key(name)] = float(conv(0 if val is MISSING else val))
        for name, (label, role, path, enum) in ENUMS.items():
            if role and vol["role"] != role:
                continue
            for value_name in enum.keys():
                if enum.Value(value_name) != 0:
                    out[key(name, **{label: value_name})] = flag(get(vol, path) == value_name)
        for part in ("master.peer", "mirror.connected_master"):
            p = get(vol, part)
            if p is not MISSING:
                out[key("frep_peer_info", address=p["address"], identity=p["identity"],
                        cipher=p["cipher"])] = 1.0
        if vol["role"] == "MIRROR":
            out[key("frep_owner_info", identity=vol["mirror"]["owner_identity"])] = 1.0
        if "last_error" in vol:
            e = vol["last_error"]
            out[key("frep_last_error_timestamp_seconds", code=e["code"])] = ms(e["time_unix_ms"])
    return out


def status(target):
    with ac.channel(target, None) as ch:
        call = ch.unary_unary("/%s/Status" % ac.SERVICE.full_name,
                              request_serializer=pb.StatusRequest.SerializeToString,
                              response_deserializer=pb.StatusResponse.FromString)
        resp = ac.to_json(call(pb.StatusRequest(), timeout=10))
    resp.pop("now_unix_ms", None)
    return resp


def main():
    target, url = sys.argv[1], sys.argv[2]
    for _ in range(20):
        before = status(target)
        with urllib.request.urlopen(url, timeout=10) as r:
            if r.headers.get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8":
                print("Content-Type: %s" % r.headers.get("Content-Type"))
                return 1
            text = r.read().decode()
        after = status(target)
        if before == after:
            break
        time.sleep(0.2)
    else:
        print("Status kept changing: the volumes are not idle")
        return 1

    got = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            k = (s.name, tuple(sorted(s.labels.items())))
            if k in got:
                print("sample twice: %s %s" % k)
                return 1
            got[k] = s.value
    want = expected(after)
    bad = []
    for k in sorted(set(got) | set(want)):
        if k not in got:
            bad.append("missing  %s%s = %r" % (k[0], dict(k[1]), want[k]))
        elif k not in want:
            bad.append("extra    %s%s = %r" % (k[0], dict(k[1]), got[k]))
        elif got[k] != want[k]:
            bad.append("differs  %s%s: metrics %r, Status %r" % (k[0], dict(k[1]), got[k], want[k]))
    for b in bad:
        print(b)
    if bad:
        return 1
    print("%d samples equal to Status (%d volumes)" % (len(got), len(after["volumes"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
