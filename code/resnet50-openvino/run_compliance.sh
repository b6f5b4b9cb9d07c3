#!/usr/bin/env bash
# MLPerf compliance tests for one scenario: TEST01 (accuracy in performance mode) and
# TEST04 (no caching), each a LoadGen run with its audit.config, then verified against
# the submitted runs (run them first: run_<scenario>.sh and run_<scenario>_accuracy.sh).
# Both tests run even if the first fails; the exit status is non-zero if either fails.
# Usage: run_compliance.sh [Offline|Server|SingleStream|MultiStream] [extra mlperf-bnas arguments]
# Results: $OUTPUT_DIR/compliance/$SYSTEM/resnet50/<Scenario>/TEST0{1,4}/
# Environment: OUTPUT_DIR, DATA_DIR (unset: synthetic), CHECKPOINT, USER_CONF, SYSTEM.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" "$HERE"
SCENARIO="${1:-Offline}"
shift || true
# The runs it verifies against were made first, so the model exists; the conf is theirs.
prepare_conf "$SCENARIO"
# Responses are int32 class ids (postprocess: argmax).
exec mlperf-bnas compliance TEST01 TEST04 "${COMMON_ARGS[@]}" --scenario "$SCENARIO" --user-conf "$USER_CONF" \
  --dtype int32 "$@"
