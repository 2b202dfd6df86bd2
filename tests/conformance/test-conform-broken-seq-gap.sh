#!/usr/bin/env bash
# The suite can fail: a mirror built to break one rule (seq-gap) fails exactly the cases citing SEQ-6, and only them.
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_broken seq-gap SEQ-6 'mirror.seq.*' 'mirror.frame.order'
