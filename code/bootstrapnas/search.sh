#!/usr/bin/env bash
# Sub-network search on a trained BootstrapNAS super-network (mlperf-bnas nas search).
# Writes search_results.csv, pareto.csv, pareto.png, best_config.json, best_subnet.pt and
# nas_record.json into SEARCH_DIR. An earlier search there is moved to build/archive/ first,
# unless --resume is given (then it is continued).
# Environment:
#   OUTPUT_DIR  output tree (default: the repository root)
#   SUPERNET    super-network checkpoint (default: the digits demo's,
#               $OUTPUT_DIR/build/bootstrapnas/digits/supernet.pt)
#   SEARCH_DIR  where the results go (default: beside the default super-network,
#               $OUTPUT_DIR/build/bootstrapnas/digits/search; else $OUTPUT_DIR/build/bootstrapnas/search)
#   DATA_DIR    validation data for accuracy (ResNet-50: ImageNet val); unset for the digits demo
# Extra arguments go to `mlperf-bnas nas search` (e.g. --search_tactic linas --num_evals 500).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" ""
DEMO_SUPERNET="$OUTPUT_DIR/build/bootstrapnas/digits/supernet.pt"
SUPERNET="${SUPERNET:-$DEMO_SUPERNET}"
if [ "$SUPERNET" = "$DEMO_SUPERNET" ]; then
  SEARCH_DIR="${SEARCH_DIR:-$OUTPUT_DIR/build/bootstrapnas/digits/search}"
else
  SEARCH_DIR="${SEARCH_DIR:-$OUTPUT_DIR/build/bootstrapnas/search}"
fi
if [ ! -f "$SUPERNET" ]; then
  echo "search.sh: super-network checkpoint $SUPERNET not found: set SUPERNET, or run code/bootstrapnas/run_demo.sh" >&2
  exit 2
fi
RESUME=0
for arg in "$@"; do
  if [ "$arg" = "--resume" ]; then RESUME=1; fi
done
if [ "$RESUME" = 0 ] && [ -d "$SEARCH_DIR" ] && [ -n "$(ls -A "$SEARCH_DIR")" ]; then
  ARCHIVE="$OUTPUT_DIR/build/archive/$(basename "$SEARCH_DIR")-$(date -u +%Y%m%d-%H%M%S)"
  mkdir -p "$(dirname "$ARCHIVE")"
  mv "$SEARCH_DIR" "$ARCHIVE"
  echo "search.sh: the earlier search moved to $ARCHIVE"
fi
mkdir -p "$SEARCH_DIR"
SEARCH_ARGS=(--supernet "$SUPERNET" --output-dir "$SEARCH_DIR")
if [ -n "$DATA_DIR" ]; then SEARCH_ARGS+=(--dataset_path "$DATA_DIR"); fi
# Keep a log beside the results (and still show it).
exec > >(tee -a "$SEARCH_DIR/search.log") 2>&1
exec mlperf-bnas nas search "${SEARCH_ARGS[@]}" "$@"
