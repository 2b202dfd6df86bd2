#!/usr/bin/env bash
# frep-conform mirror against frep-server: TLS, framing, message encoding and lanes (TLS-*, FRAME-*, MSG-*, LANE-*).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_mirror 'mirror.tls.*' 'mirror.frame.*' 'mirror.msg.*' 'mirror.lane.*'
