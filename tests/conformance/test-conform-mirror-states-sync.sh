#!/usr/bin/env bash
# frep-conform mirror against frep-server: every message a master can send, in OUTOFSYNC, INSYNC and IDLE (FSM-1).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_mirror 'mirror.state.outofsync.*' 'mirror.state.insync.*' 'mirror.state.idle.*'
