#!/usr/bin/env bash
# BootstrapNAS demo on scikit-learn's bundled digits (no download, CPU, a few minutes):
#   1. pre-train a small ResNet-style CNN (the "pre-trained model"),
#   2. generate its super-network automatically and train it by progressive shrinking
#      (code/bootstrapnas/configs/digits_progressive_shrinking.json),
#   3. search it (NSGA-II over accuracy and MACs, `mlperf-bnas nas search`) -> search/,
#   4. export a sub-network as a checkpoint that load_subnet / CHECKPOINT= read.
# Outputs: $OUTPUT_DIR/build/bootstrapnas/digits/{pretrained.pt, supernet.pt, supernet_last.pt,
#          train_log.json, demo_summary.json, subnets/subnet_{min,max}.pt, subnet.pt}
# An earlier demo there is moved to $OUTPUT_DIR/build/archive/ first (nothing is deleted).
# Environment: OUTPUT_DIR (default: the repository root); SUBNET (max, min, a JSON config or a
# .json file; default: the search's choice) picks the exported sub-network. Extra arguments go
# to `nas demo`
# (e.g. --pretrain-epochs 4, --resume).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" ""
DEMO_DIR="$OUTPUT_DIR/build/bootstrapnas/digits"
SUBNET_SET=0
if [ -n "${SUBNET:-}" ]; then SUBNET_SET=1; fi
SUBNET="${SUBNET:-min}"

# --- training (super-network engineer): pre-train, super-network, progressive shrinking ---
mlperf-bnas nas demo --output-dir "$OUTPUT_DIR" --config "$HERE/configs/digits_progressive_shrinking.json" "$@"

# --- search step (search engineer): NSGA-II on accuracy x MACs (latency measured too); the
# --- choice: the fewest MACs within 2 points of the maximum sub-network's top-1 ---
# Writes $DEMO_DIR/search/{search_results.csv, pareto.csv, pareto.png, best_config.json,
# best_subnet.pt, nas_record.json}; the chosen configuration is what gets exported below
# unless SUBNET was set. Other search settings: code/bootstrapnas/search.sh.
SEARCH_ARGS=(--supernet "$DEMO_DIR/supernet.pt" --output-dir "$DEMO_DIR/search"
  --search_tactic evolutionary --search_algo nsga2 --num_evals 64 --population 16 --seed 0 --acc_delta 2
  --measurements accuracy macs params latency --latency_iterations 10)
# A resumed demo keeps its folder, and its super-network may have changed since that search:
# move the earlier search aside (never deleted) and search again.
if [ -d "$DEMO_DIR/search" ]; then
  mkdir -p "$OUTPUT_DIR/build/archive"
  mv "$DEMO_DIR/search" "$OUTPUT_DIR/build/archive/digits-search-$(date -u +%Y%m%d-%H%M%S)"
fi
mlperf-bnas nas search "${SEARCH_ARGS[@]}"
if [ "$SUBNET_SET" = 0 ]; then SUBNET="$DEMO_DIR/search/nas_record.json"; fi

# --- export the chosen sub-network ---
exec mlperf-bnas nas export --supernet "$DEMO_DIR/supernet.pt" --subnet "$SUBNET" --output "$DEMO_DIR/subnet.pt"
