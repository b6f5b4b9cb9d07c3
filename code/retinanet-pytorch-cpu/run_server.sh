#!/usr/bin/env bash
# Server performance run of the INT8 program (built first when missing).
# Logs: $OUTPUT_DIR/results/$SYSTEM/retinanet/Server/performance/run_1/
# Environment: OUTPUT_DIR, DATA_DIR (unset: synthetic), CHECKPOINT, USER_CONF, SYSTEM.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" "$HERE"
prepare_model
prepare_conf Server check
run_performance Server "$@"
