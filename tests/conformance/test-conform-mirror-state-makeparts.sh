#!/usr/bin/env bash
# frep-conform mirror against frep-server: every message a master can send, in MAKEPARTS (FSM-1 for the illegal ones, FSM-10 for the legal ones).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_mirror 'mirror.state.makeparts.*'
