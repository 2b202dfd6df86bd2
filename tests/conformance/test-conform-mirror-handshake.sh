#!/usr/bin/env bash
# frep-conform mirror against frep-server: INIT, MAKEPARTS, the READY checks, epochs, fail-back and switchover (HS-*, MP-*, RDY-3, EPO-*, FBK-3, SWO-*).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_mirror 'mirror.hs.*' 'mirror.mp.*' 'mirror.rdy.*' 'mirror.epoch.*' 'mirror.fbk.*' 'mirror.swo.*'
