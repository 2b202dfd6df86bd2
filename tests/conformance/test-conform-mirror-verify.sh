#!/usr/bin/env bash
# frep-conform mirror against frep-server: online verify (VFY-*), and VERIFY in every state.
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
conform_mirror 'mirror.vfy.*' 'mirror.state.*.verify' 'mirror.state.*.verify-result'
