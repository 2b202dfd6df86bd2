#!/usr/bin/env bash
# frep-conform master against frep-client: an operator's pause, and every message in IDLE (IDLE-*, FSM-1, MSG-6).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform-master.sh"
conform_master 'master.idle.*' 'master.state.idle.*'
