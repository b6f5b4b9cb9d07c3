#!/usr/bin/env bash
# Download MLPerf's OpenImages validation subset (264 classes, 24781 images) into DATA_DIR
# (default ./open-images-v6-mlperf), as MLPerf's tools/openimages_mlperf.sh does: class list
# from mlcommons/inference, boxes from Open Images v6, images from the public S3 bucket
# (boto3, unsigned). Needs internet and boto3. Reruns resume; existing files are kept.
# Usage: openimages_mlperf.sh [-d|--dataset-path DIR] [-m|--max-images N]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" "$HERE"
DATASET_PATH="${DATA_DIR:-$PWD/open-images-v6-mlperf}"
EXTRA=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    -d|--dataset-path) DATASET_PATH="$2"; shift 2 ;;
    -m|--max-images) EXTRA+=(--max-images "$2"); shift 2 ;;
    *) echo "openimages_mlperf.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
exec mlperf-bnas download openimages validation --dataset-dir "$DATASET_PATH" "${EXTRA[@]}"
