#!/usr/bin/env bash
# frep-conform master against frep-client --compress zstd --lanes 2: what a version-2 master offers, and how it speaks version 2, compressed or not, and version 1 to a version-1 mirror (HS-3, NEG-*, FRAME-3, FRAME-5, COMP-*, LANE-4).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform-master.sh"
CONFORM_CLIENT_ARGS="--compress zstd --lanes 2" conform_master 'master.v2.*'
