#!/usr/bin/env bash
# MLPerf compliance test for one scenario: TEST01 (accuracy in performance mode), a
# LoadGen run with its audit.config, verified against the submitted runs (run them
# first: run_<scenario>.sh and run_<scenario>_accuracy.sh). RetinaNet has no TEST04.
# Usage: run_compliance.sh [Offline|Server|SingleStream|MultiStream] [extra mlperf-bnas arguments]
# Results: $OUTPUT_DIR/compliance/$SYSTEM/retinanet/<Scenario>/TEST01/
# Environment: OUTPUT_DIR, DATA_DIR (unset: synthetic), CHECKPOINT, USER_CONF, SYSTEM.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" "$HERE"
SCENARIO="${1:-Offline}"
shift || true
# The runs it verifies against were made first, so the model exists; the conf is theirs.
prepare_conf "$SCENARIO"
# Responses are float32 detections [qsl_idx, box, score, label]; TEST01 compares the first element.
exec mlperf-bnas compliance TEST01 "${COMMON_ARGS[@]}" --scenario "$SCENARIO" --user-conf "$USER_CONF" \
  --dtype float32 "$@"
