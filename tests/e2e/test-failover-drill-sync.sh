#!/usr/bin/env bash
# The failover drill in sync mode: nothing acknowledged to a writer is lost (tests/e2e/failover-drill.sh).
MODE=sync source "$(dirname "$0")/failover-drill.sh"
