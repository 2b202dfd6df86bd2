#!/usr/bin/python3
# Test tool: stands in for systemd's notify socket (sd_notify(3), Type=notify units).
#
#   notify-socket.py SOCKET OUT [--on-ready CMD]
#
# Binds an AF_UNIX datagram socket at SOCKET (give the daemon NOTIFY_SOCKET=SOCKET)
# and appends every field of every message it receives to OUT, one "KEY=VALUE"
# line each, in arrival order. When READY=1 arrives, it runs CMD through bash
# before it reads the next message, and appends "ON_READY rc=N": CMD sees the
# daemon exactly as the service manager would when it starts the units ordered
# after this one. Runs until killed.

import argparse
import socket
import subprocess


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("out")
    ap.add_argument("--on-ready")
    a = ap.parse_args()

    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(a.socket)
    with open(a.out, "a", buffering=1) as out:
        while True:
            msg = s.recv(65536).decode("utf-8", "replace")
            fields = [f for f in msg.split("\n") if f]
            for f in fields:
                out.write(f + "\n")
            if "READY=1" in fields and a.on_ready:
                rc = subprocess.run(["bash", "-c", a.on_ready], stdin=subprocess.DEVNULL).returncode
                out.write("ON_READY rc=%d\n" % rc)


if __name__ == "__main__":
    main()
