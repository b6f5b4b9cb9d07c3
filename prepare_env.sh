#!/usr/bin/env bash
# Create the Python environment and install the pinned dependencies (code/requirements.txt)
# and the harness package (code/, console command `mlperf-bnas`).
#   conda on PATH -> a conda env in ./.conda-env (environment.yml); otherwise ./.venv
# Idempotent: a second run with unchanged pins only checks the environment (seconds).
#
# ./prepare_env.sh --ipex (or MLPERF_BNAS_IPEX=1 ./prepare_env.sh) also creates the IPEX
# environment beside it: ./.venv-ipex (./.conda-env-ipex with conda) with torch 2.8 and
# intel-extension-for-pytorch 2.8 (code/requirements-ipex.txt), for `engine: ipex` of the
# pytorch backend (ENGINE=ipex). About 7 GB; the main environment is left as it is.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$REPO"

fail() { echo "prepare_env.sh: $*" >&2; exit 1; }
quiet_pip() {
  # pip warns about every unreachable extra index on some machines; keep real messages.
  "$PY" -m pip "$@" 2>&1 | { grep -v -e '^WARNING: Location .* is ignored' -e '^WARNING: pip index' || true; }
}

WITH_IPEX="${MLPERF_BNAS_IPEX:-0}"
for arg in "$@"; do
  case "$arg" in
    --ipex) WITH_IPEX=1 ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fail "unknown argument '$arg' (valid: --ipex)" ;;
  esac
done
USE_CONDA=0
if command -v conda >/dev/null 2>&1 && [ "${MLPERF_BNAS_USE_VENV:-0}" != 1 ]; then USE_CONDA=1; fi

# Prefer PyTorch's CPU-only wheels (far smaller) where their index answers; else the default index.
PIP_ARGS=()
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
if [ "${MLPERF_BNAS_NO_CPU_INDEX:-0}" != 1 ] && command -v curl >/dev/null 2>&1 \
   && curl -fsS --max-time 5 -o /dev/null "$TORCH_CPU_INDEX/torch/" 2>/dev/null; then
  echo "Using the PyTorch CPU-only wheel index"
  PIP_ARGS+=(--extra-index-url "$TORCH_CPU_INDEX")
fi

# make_env <label> <venv folder> <conda folder> <conda arguments...>: the environment (conda
# when USE_CONDA=1, else a venv), created when missing; sets ENV_DIR and PY (its python).
make_env() {
  local label="$1" venv_dir="$2" conda_dir="$3"
  shift 3
  if [ "$USE_CONDA" = 1 ]; then
    ENV_DIR="$conda_dir"
    if [ ! -x "$ENV_DIR/bin/python" ]; then
      echo "Creating the $label conda environment in $ENV_DIR"
      conda "$@" --prefix "$ENV_DIR" || fail "conda $* failed; see the message above"
    fi
  else
    ENV_DIR="$venv_dir"
    if [ ! -x "$ENV_DIR/bin/python" ]; then
      echo "Creating the $label virtual environment in $ENV_DIR"
      python3 -m venv "$ENV_DIR" || fail "python3 -m venv failed: install python3 (3.10+) with the venv module"
    fi
  fi
  PY="$ENV_DIR/bin/python"
}

# up_to_date <label> <pins hash> <probe command...>: true (and says so) when ENV_DIR's stamp holds
# the hash of the pins it was installed from and the probe runs (its output is not shown).
STAMP=.mlperf-bnas-installed
up_to_date() {
  local label="$1" want="$2"
  shift 2
  if [ -f "$ENV_DIR/$STAMP" ] && [ "$(cat "$ENV_DIR/$STAMP")" = "$want" ] && "$@" >/dev/null 2>&1; then
    echo "$label environment up to date: $ENV_DIR"
    return 0
  fi
  return 1
}

prepare_main() {
  make_env main "$REPO/.venv" "$REPO/.conda-env" env create --file environment.yml --quiet
  local want
  want="$(cat code/requirements.txt code/pyproject.toml | sha256sum | cut -d' ' -f1)"
  if up_to_date Main "$want" "$PY" -c 'import mlperf_bnas, mlperf_loadgen, openvino, nncf, torch, torchvision'; then
    return 0
  fi

  echo "Installing pinned dependencies (code/requirements.txt): first time takes a few minutes"
  quiet_pip install --quiet --upgrade pip setuptools wheel || fail "could not upgrade pip"
  quiet_pip install --quiet "${PIP_ARGS[@]}" -r code/requirements.txt
  "$PY" -c 'import torch, torchvision, openvino, nncf, mlperf_loadgen, pycocotools, pymoo' \
    || fail "dependencies did not install (see pip's messages above); check network access to the package index"
  quiet_pip install --quiet --no-deps -e code
  "$PY" -c 'import mlperf_bnas' || fail "the harness package (code/) did not install"
  echo "$want" > "$ENV_DIR/$STAMP"
  echo "Environment ready: $ENV_DIR ($("$PY" -c 'import torch, openvino as ov, nncf; print("torch", torch.__version__, "| openvino", ov.__version__, "| nncf", nncf.__version__)'))"
}

# The IPEX environment holds only the pinned packages: `mlperf-bnas` runs this checkout's
# code/ in it through PYTHONPATH (see mlperf_bnas/commands/engine_env.py), so nothing of the
# harness is installed there and it can never run another checkout's code.
prepare_ipex() {
  make_env IPEX "$REPO/.venv-ipex" "$REPO/.conda-env-ipex" create --yes --quiet "python=3.11" pip
  local want
  want="$(sha256sum < code/requirements-ipex.txt | cut -d' ' -f1)"
  # The probe imports the harness's engine-ipex path itself (this checkout's code/), so a
  # module the pins miss fails here, not in the first run.
  local probe='import intel_extension_for_pytorch, mlperf_bnas.backends.ipex, mlperf_bnas.commands.build, mlperf_bnas.commands.run, mlperf_bnas.commands.compliance, mlperf_bnas.accuracy.coco_map'
  if up_to_date IPEX "$want" env PYTHONPATH="$REPO/code" "$PY" -c "$probe"; then
    return 0
  fi
  echo "Installing the IPEX environment (code/requirements-ipex.txt): torch 2.8 + IPEX 2.8, ~7 GB, a few minutes"
  quiet_pip install --quiet --upgrade pip setuptools wheel || fail "could not upgrade pip in $ENV_DIR"
  quiet_pip install --quiet "${PIP_ARGS[@]}" -r code/requirements-ipex.txt
  # IPEX prints import-time notes on stderr (docs/ipex.md); only the exit status counts here.
  PYTHONPATH="$REPO/code" "$PY" -c "$probe" >/dev/null 2>&1 \
    || fail "the IPEX environment cannot run the harness: PYTHONPATH=code $PY -c '$probe' says why (see also pip's messages above)"
  echo "$want" > "$ENV_DIR/$STAMP"
  echo "IPEX environment ready: $ENV_DIR ($("$PY" -c 'from importlib.metadata import version as v; print("torch", v("torch"), "| intel-extension-for-pytorch", v("intel-extension-for-pytorch"))'))"
}

prepare_main
if [ "$WITH_IPEX" = 1 ]; then
  prepare_ipex
fi
