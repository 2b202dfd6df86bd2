#!/usr/bin/env bash
# frep-conform master against frep-client: online verify (VFY-*) on a 4 MiB volume, four
# of frep's 1 MiB regions, and VERIFY and VERIFY_RESULT in every state.
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform-master.sh"
CONFORM_VOLUME=4M
conform_master 'master.vfy.*' 'master.state.*.verify' 'master.state.*.verify-result'
