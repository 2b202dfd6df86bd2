#!/usr/bin/env bash
# frep-conform master against frep-client: the bulk copy's records and sequencing: order, window, resend (COPY-*, SEQ-*).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform-master.sh"
conform_master 'master.copy.*' 'master.seq.*'
