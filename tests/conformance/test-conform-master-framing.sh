#!/usr/bin/env bash
# frep-conform master against frep-client: bad headers and bodies from the mirror (FRAME-*, MSG-*).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform-master.sh"
conform_master 'master.frame.*' 'master.msg.*'
