#!/usr/bin/env bash
# frep-conform mirror against frep-server: sequencing, resend, generations and heartbeats (SEQ-*, HB-*).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_mirror 'mirror.seq.*' 'mirror.hb.*'
