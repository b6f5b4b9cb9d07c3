#!/usr/bin/env bash
# Hand-off, the whole chain for one model:
#   [train its super-network] -> search it -> export the best sub-network -> build it with the
#   model's benchmark directory (its NAS descriptor names it: resnet50 -> code/resnet50-openvino,
#   retinanet -> code/retinanet-pytorch-cpu) -> Offline performance run.
# The benchmark directory is used unchanged: its scripts take the sub-network as CHECKPOINT.
#
# Usage: search_and_benchmark.sh [resnet50|retinanet] [search arguments...]
#
# The model: resnet50 (default) or retinanet.
# Environment:
#   SUPERNET    super-network checkpoint (`mlperf-bnas nas train`). Unset for retinanet: one is
#               trained first with configs/retinanet_progressive_shrinking.json into
#               $OUTPUT_DIR/build/bootstrapnas/retinanet/train (the teacher: PRETRAINED, or the
#               seeded weights; the data: DATA_DIR's OpenImages calibration images, or synthetic
#               images without DATA_DIR). Required for resnet50.
#   NAS_SET     extra `--set KEY=VALUE` overrides of that training config, space-separated, e.g.
#               "input_info.sample_size=[1,3,256,256] bootstrapNAS.training.train_steps=4"
#   PRETRAINED  the full FP32 model's weights (a state dict) for that training
#   DATA_DIR    resnet50: ImageNet validation folder (val_map.txt + JPEGs), required: the search
#               measures accuracy on it and the benchmark runs on it. retinanet: the OpenImages
#               root (optional; unset = synthetic images throughout)
#   OUTPUT_DIR, USER_CONF, SYSTEM   as for every run script
#   SEARCH_DIR  search outputs (default $OUTPUT_DIR/build/bootstrapnas/search)
# Extra arguments go to the search (e.g. --search_tactic linas --num_evals 300).
# Outputs: SEARCH_DIR/{best_subnet.pt,nas_record.json,...}; the benchmark's build/ and results/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
MODEL="resnet50"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  MODEL="$1"
  shift
fi
source "$REPO/tools/env.sh" ""
# The model's descriptor names the benchmark whose backend runs its sub-networks.
BENCH_NAME="$(python -c 'import sys
from mlperf_bnas.errors import UserError
from mlperf_bnas.models import MODELS
try:
    print(MODELS.get(sys.argv[1]).nas_benchmark or "")
except UserError as exc:
    sys.exit(f"search_and_benchmark.sh: {exc}")' "$MODEL")"
if [ -z "$BENCH_NAME" ]; then
  echo "search_and_benchmark.sh: model $MODEL names no benchmark directory that runs its sub-networks" >&2
  exit 2
fi
BENCH="$REPO/code/$BENCH_NAME"
export SEARCH_DIR="${SEARCH_DIR:-$OUTPUT_DIR/build/bootstrapnas/search}"
CONFIG="$HERE/configs/${MODEL}_progressive_shrinking.json"
if [ -z "${SUPERNET:-}" ]; then
  if [ "$MODEL" = "resnet50" ] || [ ! -f "$CONFIG" ]; then
    echo "search_and_benchmark.sh: set SUPERNET (a $MODEL super-network checkpoint, mlperf-bnas nas train)" >&2
    exit 2
  fi
  TRAIN_DIR="$OUTPUT_DIR/build/bootstrapnas/$MODEL/train"
  TRAIN_ARGS=(--config "$CONFIG" --output-dir "$TRAIN_DIR")
  if [ -n "${PRETRAINED:-}" ]; then TRAIN_ARGS+=(--pretrained "$PRETRAINED"); fi
  if [ -n "$DATA_DIR" ]; then
    TRAIN_ARGS+=(--data-dir "$DATA_DIR")
  else
    TRAIN_ARGS+=(--set dataset=synthetic)
  fi
  read -r -a NAS_SETS <<< "${NAS_SET:-}"
  for pair in "${NAS_SETS[@]}"; do TRAIN_ARGS+=(--set "$pair"); done
  if [ -f "$TRAIN_DIR/supernet_last.pt" ]; then TRAIN_ARGS+=(--resume); fi
  mlperf-bnas nas train "${TRAIN_ARGS[@]}"
  SUPERNET="$TRAIN_DIR/supernet.pt"
fi
if [ "$MODEL" = "resnet50" ] && [ -z "$DATA_DIR" ]; then
  echo "search_and_benchmark.sh: set DATA_DIR (ImageNet validation folder, for the search's accuracy)" >&2
  exit 2
fi
# The super-network must be one of MODEL's (its checkpoint names its base model).
python -c 'import sys
from pathlib import Path
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import load_checkpoint
path, model = Path(sys.argv[1]), sys.argv[2]
try:
    ckpt = load_checkpoint(path, "super-network checkpoint", "set SUPERNET to a mlperf-bnas nas train output")
except UserError as exc:
    sys.exit(f"search_and_benchmark.sh: {exc}")
base = ((ckpt if isinstance(ckpt, dict) else {}).get("extra") or {}).get("base_model")
if base != model:
    sys.exit(f"search_and_benchmark.sh: {path} is a super-network of {base!r}, not of {model!r}; "
             "set SUPERNET to one of the model given")' "$SUPERNET" "$MODEL"
export SUPERNET
"$HERE/search.sh" "$@"
# The exported sub-network (nas_record.json beside it) is the benchmark's checkpoint.
export CHECKPOINT="$SEARCH_DIR/best_subnet.pt"
"$BENCH/run_calibration.sh"
source "$REPO/tools/env.sh" "$BENCH"
run_performance Offline
