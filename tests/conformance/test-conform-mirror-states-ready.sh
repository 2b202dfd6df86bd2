#!/usr/bin/env bash
# frep-conform mirror against frep-server: every message a master can send, in READY and REPLICATE (FSM-1).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_mirror 'mirror.state.ready.*' 'mirror.state.replicate.*'
