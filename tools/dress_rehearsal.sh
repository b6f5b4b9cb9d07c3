#!/usr/bin/env bash
# Full-rules dress rehearsal of the ResNet-50 submission on a 50,000-image synthetic stand-in
# for ImageNet (not run in CI: hours on a small CPU). See tools/dress_rehearsal.py for the steps.
# Usage: tools/dress_rehearsal.sh [--images N] [--output-dir DIR] [--scenarios "Offline SingleStream"]
#                                 [--inference-git /path/to/mlcommons-inference.git[@v5.1.1]]
# Environment: OUTPUT_DIR (default ./rehearsal), CHECKPOINT, SYSTEM, MLPERF_INFERENCE_GIT.
# Ctrl-C keeps what is done; the same command continues from there.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/tools/env.sh" ""
exec python "$REPO/tools/dress_rehearsal.py" "$@"
