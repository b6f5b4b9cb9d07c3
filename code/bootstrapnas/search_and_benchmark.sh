#!/usr/bin/env bash
# Hand-off: search a ResNet-50 super-network -> export the best sub-network -> build it with
# code/resnet50-openvino (NNCF INT8, OpenVINO IR) -> Offline performance run.
# The benchmark directory is used unchanged: its scripts take the sub-network as CHECKPOINT.
# Environment:
#   SUPERNET    ResNet-50 super-network checkpoint (required; `mlperf-bnas nas train`)
#   DATA_DIR    ImageNet validation folder (val_map.txt + JPEGs): the search measures accuracy on
#               it (required), and the benchmark runs on it
#   OUTPUT_DIR, USER_CONF, SYSTEM   as for every run script
#   SEARCH_DIR  search outputs (default $OUTPUT_DIR/build/bootstrapnas/search)
# Extra arguments go to the search (e.g. --search_tactic linas --num_evals 300).
# Outputs: SEARCH_DIR/{best_subnet.pt,nas_record.json,...}; the benchmark's build/ and results/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BENCH="$REPO/code/resnet50-openvino"
if [ -z "${SUPERNET:-}" ] || [ -z "${DATA_DIR:-}" ]; then
  echo "search_and_benchmark.sh: set SUPERNET (a ResNet-50 super-network checkpoint, mlperf-bnas nas train)" \
       "and DATA_DIR (ImageNet validation folder, for the search's accuracy)" >&2
  exit 2
fi
export OUTPUT_DIR="${OUTPUT_DIR:-$REPO}"
export SEARCH_DIR="${SEARCH_DIR:-$OUTPUT_DIR/build/bootstrapnas/search}"
"$HERE/search.sh" "$@"
# The exported sub-network (nas_record.json beside it) is the benchmark's checkpoint.
export CHECKPOINT="$SEARCH_DIR/best_subnet.pt"
"$BENCH/run_calibration.sh"
source "$REPO/tools/env.sh" "$BENCH"
exec mlperf-bnas run "${COMMON_ARGS[@]}" --scenario Offline --mode performance --user-conf "$USER_CONF"
