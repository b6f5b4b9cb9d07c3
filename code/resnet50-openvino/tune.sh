#!/usr/bin/env bash
# Tune this benchmark: the fastest backend settings from config.yaml's `tuning:` grid (Offline)
# and the highest target QPS whose Server run is VALID at the latency bound, with short
# LoadGen runs. Writes user.$SYSTEM.tuned.conf (+ .json, every trial) beside user.conf;
# then run with USER_CONF=<that file> (runs apply the tuned backend options it records).
# Build the model first (run_calibration.sh). Extra arguments go to `mlperf-bnas tune`,
# e.g. --scenario Server, --confirm (one full-length run of the result), --trial-duration-ms 3000.
# Environment: OUTPUT_DIR, DATA_DIR (unset: synthetic), CHECKPOINT, USER_CONF, SYSTEM.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" "$HERE"
mlperf-bnas dataset "${COMMON_ARGS[@]}"
exec mlperf-bnas tune "${COMMON_ARGS[@]}" --user-conf "$USER_CONF" "$@"
