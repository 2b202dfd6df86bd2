#!/usr/bin/env bash
# frep-conform mirror against frep-server: power loss of the mirror (crashfs shim) and restart: what it acknowledged survives (DUR-*).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_mirror 'mirror.dur.*'
