#!/usr/bin/env python3
"""Generic gRPC calls from the .proto alone: no grpc_tools, Debian packages only."""
import os
import sys

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen-py"))
from frep.admin.v1 import admin_pb2 as pb  # noqa: E402  (protoc --python_out)

SVC = "/" + pb.DESCRIPTOR.services_by_name["Admin"].full_name + "/"


def channel(target, tls):
    if not tls:
        return grpc.insecure_channel(target)
    ca, cert, key = (open(p, "rb").read() for p in tls)
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", "frep-mirror")])


def main():
    target = sys.argv[1]
    tls = sys.argv[2:5] if len(sys.argv) >= 5 else None
    with channel(target, tls) as ch:
        status = ch.unary_unary(SVC + "Status", request_serializer=pb.StatusRequest.SerializeToString,
                                response_deserializer=pb.StatusResponse.FromString)
        watch = ch.unary_stream(SVC + "Watch", request_serializer=pb.WatchRequest.SerializeToString,
                                response_deserializer=pb.Event.FromString)
        resp = status(pb.StatusRequest(), timeout=5)
        print("Status:", [(v.name, v.state, v.committed_txid) for v in resp.volumes])
        stream = watch(pb.WatchRequest(volume="db"))
        for i, ev in enumerate(stream):
            print("Watch:", pb.Event.Kind.Name(ev.kind), ev.seq, ev.volume.name, ev.volume.state,
                  ev.volume.progress.done_bytes)
            if i == 3:
                stream.cancel()
                break
        for name, req in (("unknown volume", pb.StatusRequest(volume="nope")),
                          ("NUL in name", pb.StatusRequest(volume="db\0x"))):
            try:
                status(req, timeout=5)
                print(name + ": unexpectedly OK")
            except grpc.RpcError as e:
                print("%s: %s %s" % (name, e.code().name, e.details()))
        nope = ch.unary_unary(SVC + "Nope", request_serializer=pb.StatusRequest.SerializeToString,
                              response_deserializer=pb.StatusResponse.FromString)
        try:
            nope(pb.StatusRequest(), timeout=2)
        except grpc.RpcError as e:
            print("unknown method: %s %s" % (e.code().name, e.details()))


if __name__ == "__main__":
    main()
