#!/usr/bin/env bash
# Tune this benchmark: the fastest backend settings from config.yaml's `tuning:` grid (Offline)
# and the highest target QPS whose Server run is VALID at the latency bound, with short
# LoadGen runs. Writes user.$SYSTEM.tuned.conf (+ .json, every trial) beside user.conf;
# then run with USER_CONF=<that file> (runs apply the tuned backend options it records).
# Extra arguments go to `mlperf-bnas tune`,
# e.g. --scenario Server, --confirm (one full-length run of the result), --trial-duration-ms 3000.
# Environment: OUTPUT_DIR, DATA_DIR (unset: synthetic), CHECKPOINT, USER_CONF, SYSTEM.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" "$HERE"
# Dataset and model are built first when missing; on the embedded default the search starts
# from user.smoke.conf (its own trials measure this machine).
prepare_model
exec mlperf-bnas tune "${COMMON_ARGS[@]}" --user-conf "${SIZE_FROM:-$USER_CONF}" "$@"
