#!/usr/bin/env bash
# Check $OUTPUT_DIR/submission against the MLPerf v5.1 open-division rules (our checker; the
# mapping of each rule to the official checker is in docs/submission.md). Hashes and truncated
# accuracy logs are verified against the full logs in $OUTPUT_DIR/results.
# Usage: tools/submission_checker.sh [--json FILE] [--rules]
# Exit status: 0 when the submission passes, 1 on any error, 2 on bad input.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/tools/env.sh" ""
exec mlperf-bnas check --input "$OUTPUT_DIR/submission" "$@"
