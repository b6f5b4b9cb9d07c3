#!/usr/bin/env bash
# Download MLPerf's 500 OpenImages calibration images (train split; list from mlcommons/inference
# calibration/openimages/openimages_cal_images_list.txt) into DATA_DIR/calibration/data
# (default ./open-images-v6-mlperf), as MLPerf's tools/openimages_calibration_mlperf.sh does.
# Use the same folder as openimages_mlperf.sh; run_calibration.sh then calibrates on them.
# Usage: openimages_calibration_mlperf.sh [-d|--dataset-path DIR]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" "$HERE"
DATASET_PATH="${DATA_DIR:-$PWD/open-images-v6-mlperf}"
while [ "$#" -gt 0 ]; do
  case "$1" in
    -d|--dataset-path) DATASET_PATH="$2"; shift 2 ;;
    *) echo "openimages_calibration_mlperf.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
exec mlperf-bnas download openimages calibration --dataset-dir "$DATASET_PATH"
