#!/usr/bin/env bash
# SingleStream performance run of the INT8 IR (built first when missing).
# Logs: $OUTPUT_DIR/results/$SYSTEM/resnet50/SingleStream/performance/run_1/
# Environment: OUTPUT_DIR, DATA_DIR (unset: synthetic), CHECKPOINT, USER_CONF, SYSTEM.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" "$HERE"
prepare_model
prepare_conf SingleStream check
run_performance SingleStream "$@"
