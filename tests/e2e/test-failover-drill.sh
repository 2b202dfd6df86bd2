#!/usr/bin/env bash
# The failover drill in async mode (tests/e2e/failover-drill.sh).
MODE=async source "$(dirname "$0")/failover-drill.sh"
