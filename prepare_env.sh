#!/usr/bin/env bash
# Create the Python environment and install the pinned dependencies (code/requirements.txt)
# and the harness package (code/, console command `mlperf-bnas`).
#   conda on PATH -> a conda env in ./.conda-env (environment.yml); otherwise ./.venv
# Idempotent: a second run with unchanged pins only checks the environment (seconds).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$REPO"

fail() { echo "prepare_env.sh: $*" >&2; exit 1; }
quiet_pip() {
  # pip warns about every unreachable extra index on some machines; keep real messages.
  "$PY" -m pip "$@" 2>&1 | { grep -v -e '^WARNING: Location .* is ignored' -e '^WARNING: pip index' || true; }
}

if command -v conda >/dev/null 2>&1 && [ "${MLPERF_BNAS_USE_VENV:-0}" != 1 ]; then
  ENV_DIR="$REPO/.conda-env"
  if [ ! -x "$ENV_DIR/bin/python" ]; then
    echo "Creating conda environment in $ENV_DIR (environment.yml)"
    conda env create --prefix "$ENV_DIR" --file environment.yml --quiet || fail "conda env create failed; see the message above"
  fi
else
  ENV_DIR="$REPO/.venv"
  if [ ! -x "$ENV_DIR/bin/python" ]; then
    echo "Creating virtual environment in $ENV_DIR"
    python3 -m venv "$ENV_DIR" || fail "python3 -m venv failed: install python3 (3.10+) with the venv module"
  fi
fi
PY="$ENV_DIR/bin/python"

STAMP="$ENV_DIR/.mlperf-bnas-installed"
WANT="$(cat code/requirements.txt code/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$PY" -c 'import mlperf_bnas, mlperf_loadgen, openvino, nncf, torch, torchvision' 2>/dev/null; then
  echo "Environment up to date: $ENV_DIR"
  exit 0
fi

# Prefer PyTorch's CPU-only wheels (far smaller) where their index answers; else the default index.
PIP_ARGS=()
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
if [ "${MLPERF_BNAS_NO_CPU_INDEX:-0}" != 1 ] && command -v curl >/dev/null 2>&1 \
   && curl -fsS --max-time 5 -o /dev/null "$TORCH_CPU_INDEX/torch/" 2>/dev/null; then
  echo "Using the PyTorch CPU-only wheel index"
  PIP_ARGS+=(--extra-index-url "$TORCH_CPU_INDEX")
fi

echo "Installing pinned dependencies (code/requirements.txt): first time takes a few minutes"
quiet_pip install --quiet --upgrade pip setuptools wheel || fail "could not upgrade pip"
quiet_pip install --quiet "${PIP_ARGS[@]}" -r code/requirements.txt
"$PY" -c 'import torch, torchvision, openvino, nncf, mlperf_loadgen, pycocotools, pymoo' \
  || fail "dependencies did not install (see pip's messages above); check network access to the package index"
quiet_pip install --quiet --no-deps -e code
"$PY" -c 'import mlperf_bnas' || fail "the harness package (code/) did not install"
echo "$WANT" > "$STAMP"
echo "Environment ready: $ENV_DIR ($("$PY" -c 'import torch, openvino as ov, nncf; print("torch", torch.__version__, "| openvino", ov.__version__, "| nncf", nncf.__version__)'))"
