#!/usr/bin/env bash
# BootstrapNAS demo on scikit-learn's bundled digits (no download, CPU, a few minutes):
#   1. pre-train a small ResNet-style CNN (the "pre-trained model"),
#   2. generate its super-network automatically and train it by progressive shrinking
#      (code/bootstrapnas/configs/digits_progressive_shrinking.json),
#   3. [search step: see the marked place below],
#   4. export a sub-network as a checkpoint that load_subnet / CHECKPOINT= read.
# Outputs: $OUTPUT_DIR/build/bootstrapnas/digits/{pretrained.pt, supernet.pt, supernet_last.pt,
#          train_log.json, demo_summary.json, subnets/subnet_{min,max}.pt, subnet.pt}
# An earlier demo there is moved to $OUTPUT_DIR/build/archive/ first (nothing is deleted).
# Environment: OUTPUT_DIR (default: the repository root); SUBNET (max, min, a JSON config or a
# .json file; default: min) picks the exported sub-network. Extra arguments go to `nas demo`
# (e.g. --pretrain-epochs 4, --resume).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
source "$REPO/tools/env.sh" ""
DEMO_DIR="$OUTPUT_DIR/build/bootstrapnas/digits"
SUBNET="${SUBNET:-min}"

# --- training (super-network engineer): pre-train, super-network, progressive shrinking ---
mlperf-bnas nas demo --output-dir "$OUTPUT_DIR" --config "$HERE/configs/digits_progressive_shrinking.json" "$@"

# --- search step (search engineer): search $DEMO_DIR/supernet.pt here and set SUBNET to the
# --- chosen configuration (e.g. SUBNET="$DEMO_DIR/search/best_config.json") ---

# --- export the chosen sub-network ---
exec mlperf-bnas nas export --supernet "$DEMO_DIR/supernet.pt" --subnet "$SUBNET" --output "$DEMO_DIR/subnet.pt"
