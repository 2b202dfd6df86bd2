#!/usr/bin/env bash
# frep-conform mirror against frep-server: INIT, MAKEPARTS, the READY checks and epochs (HS-*, MP-*, RDY-3, EPO-*).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_mirror 'mirror.hs.*' 'mirror.mp.*' 'mirror.rdy.*' 'mirror.epoch.*'
