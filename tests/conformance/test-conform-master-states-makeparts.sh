#!/usr/bin/env bash
# frep-conform master against frep-client: every message a mirror may send, or only a master sends, in MAKEPARTS: EXTENT_TABLE read, no PARTS_READY yet (FSM-1, MSG-6, HB-4).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform-master.sh"
conform_master 'master.state.makeparts.*'
