#!/usr/bin/env bash
# Fetch MLPerf's official ImageNet calibration list (500 validation image names) into
# $OUTPUT_DIR/build/resnet50-openvino/calibration/ (needs internet). The build then picks it up.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" "$HERE"
URL="${CALIBRATION_LIST_URL:-https://raw.githubusercontent.com/mlcommons/inference/master/calibration/ImageNet/cal_image_list_option_1.txt}"
DEST_DIR="$OUTPUT_DIR/build/resnet50-openvino/calibration"
DEST="$DEST_DIR/cal_image_list_option_1.txt"
mkdir -p "$DEST_DIR"
TMP="$(mktemp "$DEST_DIR/.cal_image_list.XXXXXX")"
trap 'rm -f "$TMP"' EXIT
curl -fsSL --retry 3 -o "$TMP" "$URL"
LINES="$(grep -c 'ILSVRC2012_val_' "$TMP" || true)"
if [ "$LINES" -ne 500 ]; then
  echo "download_imagenet_calibration_list.sh: $URL gave $LINES image names, expected 500; not installed" >&2
  exit 1
fi
mv "$TMP" "$DEST"
trap - EXIT
echo "calibration list: $DEST ($LINES images)"
exec mlperf-bnas config show "$HERE"
