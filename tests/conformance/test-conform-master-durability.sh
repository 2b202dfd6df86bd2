#!/usr/bin/env bash
# frep-conform master against frep-client: power loss of the master (crashfs shim) and restart: every replied write is committed, redone and resent as it was (DUR-*); and a full buffer cracks (CRK-2).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform-master.sh"
conform_master 'master.dur.*' 'master.crk.*'
