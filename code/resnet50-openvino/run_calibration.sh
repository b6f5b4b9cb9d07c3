#!/usr/bin/env bash
# Quantize + build: dataset cache -> FP32 IR and NNCF INT8 IR (build/resnet50-openvino/model/{fp32,int8}).
# Environment: OUTPUT_DIR, DATA_DIR (unset: synthetic), CHECKPOINT (unset: seeded weights), SYSTEM.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" "$HERE"
mlperf-bnas dataset "${COMMON_ARGS[@]}"
exec mlperf-bnas build "${COMMON_ARGS[@]}" --precision all "$@"
