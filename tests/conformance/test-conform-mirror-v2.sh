#!/usr/bin/env bash
# frep-conform mirror against frep-server: protocol version 2, its negotiation, framing and compression (HS-3, NEG-*, FRAME-3, FRAME-5, COMP-*, LANE-*).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_mirror 'mirror.v2.*' 'mirror.comp.*' 'mirror.lanes.*'
