#!/usr/bin/env bash
# frep-conform master against frep-client: INIT, lanes, MAKEPARTS and every READY row, resume included (HS-*, LANE-*, MP-*, RDY-*).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform-master.sh"
conform_master 'master.hs.*' 'master.mp.*' 'master.rdy.*'
