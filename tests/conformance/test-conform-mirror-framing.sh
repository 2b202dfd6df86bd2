#!/usr/bin/env bash
# frep-conform mirror against frep-server: framing, message encoding and lanes (FRAME-*, MSG-*, LANE-*).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_mirror 'mirror.frame.*' 'mirror.msg.*' 'mirror.lane.*'
