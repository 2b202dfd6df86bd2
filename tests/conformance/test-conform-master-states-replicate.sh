#!/usr/bin/env bash
# frep-conform master against frep-client: every message in REPLICATE: a full pass started, no CONSISTENT yet (FSM-1, MSG-6).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform-master.sh"
conform_master 'master.state.replicate.*'
