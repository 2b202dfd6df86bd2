#!/usr/bin/env bash
# frep-conform master against frep-client: heartbeats and their timeout, ERROR in both classes, backoff and GOODBYE (HB-*, ERR-*, FSM-3..6, BYE-1).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform-master.sh"
conform_master 'master.hb.*' 'master.err.*' 'master.bye.*'
