#!/usr/bin/python3
"""A generic client of frep's admin API, from the .proto alone (Debian's python3-grpcio and
python3-protobuf; messages from `protoc --python_out`, no generated stubs): the proof that a
non-C client works, and the tests' way to call methods frepctl does not shape.

  admin-client.py [--tls CA CERT KEY SERVER_NAME] TARGET METHOD [REQUEST_JSON]
      [--count N] [--stall-until FILE] [--repeat N] [--timeout S] [--field KEY]

TARGET is unix:PATH or HOST:PORT. A unary answer is printed as one JSON document, a stream
as JSON lines (--count N stops after N events; --stall-until FILE reads the first event,
then nothing until FILE exists, then the rest). --repeat N makes the same unary call N times and prints the last answer.
--field KEY prints one field of the answer instead: a top-level one (message), else one of
its (first) volume's VolumeStatus, MasterStatus or MirrorStatus (booleans as true/false), or
"error" for the volume's last error as "CODE: message".
A failed call prints "CODE: details" on stderr and exits 1 (3 for UNAVAILABLE and
DEADLINE_EXCEEDED, as frepctl does).
"""
import argparse
import json
import os
import sys
import time

import grpc
from google.protobuf import json_format

sys.path.insert(0, os.path.join(os.environ.get("FREP_BUILD", "build"), "gen-py"))
from frep.admin.v1 import admin_pb2 as pb  # noqa: E402

SERVICE = pb.DESCRIPTOR.services_by_name["Admin"]


def channel(target, tls, options=()):
    if not tls:
        return grpc.insecure_channel(target, options=list(options))
    ca, cert, key = (open(p, "rb").read() for p in tls[:3])
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                         certificate_chain=cert)
    return grpc.secure_channel(target, creds,
                               options=[("grpc.ssl_target_name_override", tls[3])] + list(options))


def to_json(msg):
    return json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                     including_default_value_fields=True)


def field(resp, key):
    d = to_json(resp)
    if key in d and not isinstance(d[key], (dict, list)):
        return d[key]
    v = d["volumes"][0] if "volumes" in d else d.get("volume") or {}
    if key == "error":
        e = v.get("last_error") or {}
        return "%s: %s" % (e.get("code", ""), e.get("message", "")) if e else ""
    for part in (v, v.get("master") or {}, v.get("mirror") or {}):
        if key in part:
            x = part[key]
            return str(x).lower() if isinstance(x, bool) else x
    raise SystemExit("no field %r in the answer" % key)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", nargs=4, metavar=("CA", "CERT", "KEY", "SERVER_NAME"))
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--stall-until", metavar="FILE")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--field")
    ap.add_argument("target")
    ap.add_argument("method")
    ap.add_argument("request", nargs="?", default="{}")
    a = ap.parse_args()

    m = SERVICE.methods_by_name.get(a.method)
    # An unknown method still goes out (with StatusRequest/StatusResponse): the server's
    # answer to it is what a test checks.
    req_cls = getattr(pb, m.input_type.name) if m else pb.StatusRequest
    resp_cls = getattr(pb, m.output_type.name) if m else pb.StatusResponse
    streaming = m is not None and m.name == "Watch"
    request = json_format.Parse(a.request, req_cls()) if not a.request.startswith("raw:") \
        else None
    path = "/%s/%s" % (SERVICE.full_name, a.method)
    # A stalled reader keeps a small receive window, as a slow client on a slow link
    # would, instead of the megabytes gRPC's window tuning would buffer for it.
    small_window = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384)]
    with channel(a.target, a.tls, small_window if a.stall_until else ()) as ch:
        try:
            if streaming:
                call = ch.unary_stream(path, request_serializer=req_cls.SerializeToString,
                                       response_deserializer=resp_cls.FromString)
                stream = call(request)
                if a.stall_until:
                    # The first event read (the server has started sending), then
                    # nothing: HTTP/2 flow control backs up into the server.
                    next(stream)
                    print("stalled", flush=True)
                    while not os.path.exists(a.stall_until):
                        time.sleep(0.05)
                for n, ev in enumerate(stream, 1):
                    print(json.dumps(to_json(ev)), flush=True)
                    if a.count and n >= a.count:
                        stream.cancel()
                        break
            else:
                if request is None:
                    # raw:HEX sends these bytes as the request (a NUL inside a string).
                    raw = bytes.fromhex(a.request[4:])
                    call = ch.unary_unary(path, request_serializer=lambda _: raw,
                                          response_deserializer=resp_cls.FromString)
                    request = b""
                else:
                    call = ch.unary_unary(path, request_serializer=req_cls.SerializeToString,
                                          response_deserializer=resp_cls.FromString)
                for _ in range(a.repeat):
                    resp = call(request, timeout=a.timeout)
                if a.field:
                    print(field(resp, a.field))
                else:
                    print(json.dumps(to_json(resp), indent=1))
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED and a.count:
                return 0
            print("%s: %s" % (e.code().name, e.details()), file=sys.stderr)
            return 3 if e.code() in (grpc.StatusCode.UNAVAILABLE,
                                     grpc.StatusCode.DEADLINE_EXCEEDED) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
