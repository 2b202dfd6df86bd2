#!/usr/bin/env bash
# The suite can fail: a mirror built to break one rule (unsynced-ack) fails exactly the cases citing DUR-7, and only them.
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
CONFORM_TIMEOUT_S=3 conform_broken unsynced-ack DUR-7 'mirror.dur.*' 'mirror.frame.cut-tx'
