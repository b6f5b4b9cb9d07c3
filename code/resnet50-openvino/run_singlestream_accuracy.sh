#!/usr/bin/env bash
# SingleStream accuracy run of the INT8 IR (built first when missing).
# Logs: $OUTPUT_DIR/results/$SYSTEM/resnet50/SingleStream/accuracy/
# Environment: OUTPUT_DIR, DATA_DIR (unset: synthetic), CHECKPOINT, USER_CONF, SYSTEM.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" "$HERE"
prepare_model
prepare_conf SingleStream
mlperf-bnas run "${COMMON_ARGS[@]}" --scenario SingleStream --mode accuracy --user-conf "$USER_CONF" "$@"
exec mlperf-bnas accuracy "${COMMON_ARGS[@]}" --scenario SingleStream
