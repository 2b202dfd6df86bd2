#!/usr/bin/env bash
# frep-conform mirror against frep-server: the bulk copy, its cursor and resume, and IDLE (COPY-*, IDLE-*).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_mirror 'mirror.copy.*' 'mirror.idle.*'
