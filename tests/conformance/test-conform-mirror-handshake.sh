#!/usr/bin/env bash
# frep-conform mirror against frep-server: INIT, MAKEPARTS and the READY checks (HS-*, MP-*, RDY-3).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_mirror 'mirror.hs.*' 'mirror.mp.*' 'mirror.rdy.*'
