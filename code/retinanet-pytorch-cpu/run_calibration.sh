#!/usr/bin/env bash
# Quantize + build: dataset cache -> FP32 and NNCF INT8 programs (build/retinanet-pytorch-cpu/model/{fp32,int8}).
# Real data: the calibration images come from openimages_calibration_mlperf.sh (same DATA_DIR).
# Environment: OUTPUT_DIR, DATA_DIR (unset: synthetic), CHECKPOINT (unset: seeded weights), SYSTEM.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" "$HERE"
mlperf-bnas dataset "${COMMON_ARGS[@]}"
exec mlperf-bnas build "${COMMON_ARGS[@]}" --precision all "$@"
