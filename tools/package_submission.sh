#!/usr/bin/env bash
# Package finished runs ($OUTPUT_DIR/results, compliance, build records) into an MLPerf v5.1
# open-division tree at $OUTPUT_DIR/submission/open/<submitter>/ (see docs/submission.md).
# An earlier tree is replaced only once the new one is complete (it is moved to build/archive/).
# Usage: tools/package_submission.sh [--benchmark DIR ...] [--precision int8|fp32] [--submitter NAME]
# Environment: OUTPUT_DIR, SYSTEM (same as the run scripts); systems/overrides.yaml for the
# system fields that cannot be detected.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/tools/env.sh" ""
exec mlperf-bnas package --output-dir "$OUTPUT_DIR" --system "$SYSTEM" "$@"
