#!/usr/bin/env bash
# The suite can fail: a mirror built to break one rule (illegal) fails exactly the cases citing FSM-1, and only them.
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_broken illegal FSM-1 'mirror.state.insync.*' 'mirror.state.init.tx' 'mirror.hs.busy'
