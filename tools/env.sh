# shellcheck shell=bash
# Sourced by every run script: activates the environment and resolves the shared
# environment contract (OUTPUT_DIR, DATA_DIR, CHECKPOINT, USER_CONF, SYSTEM).
# Usage in a script:  source "$REPO/tools/env.sh" "<benchmark dir>"
REPO="${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
if [ -x "$REPO/.conda-env/bin/python" ]; then
  PATH="$REPO/.conda-env/bin:$PATH"
elif [ -x "$REPO/.venv/bin/python" ]; then
  PATH="$REPO/.venv/bin:$PATH"
fi
export PATH
# This checkout's own package first: an editable install made from another checkout (a
# shared venv, a git worktree) must never run someone else's code.
export PYTHONPATH="$REPO/code${PYTHONPATH:+:$PYTHONPATH}"
if ! command -v mlperf-bnas >/dev/null 2>&1; then
  echo "mlperf-bnas not found: run ./prepare_env.sh first" >&2
  exit 1
fi
BENCH_DIR="${1:-}"
export OUTPUT_DIR="${OUTPUT_DIR:-$REPO}"
export DATA_DIR="${DATA_DIR:-}"
export CHECKPOINT="${CHECKPOINT:-}"
if [ -z "${SYSTEM:-}" ]; then
  SYSTEM="$(mlperf-bnas package --default-system-name 2>/dev/null || echo local_cpu)"
fi
export SYSTEM
# Common arguments for mlperf-bnas pipeline steps, as an array (no string-built commands).
COMMON_ARGS=(--benchmark "$BENCH_DIR" --output-dir "$OUTPUT_DIR" --system "$SYSTEM")
# `if`, not `[ ] && ...`: a false test as the file's last command would make `source`
# return 1 and stop every `set -e` run script when CHECKPOINT is unset.
if [ -n "$DATA_DIR" ]; then COMMON_ARGS+=(--data-dir "$DATA_DIR"); fi
if [ -n "$CHECKPOINT" ]; then COMMON_ARGS+=(--checkpoint "$CHECKPOINT"); fi
# ENGINE (e.g. ENGINE=ipex) sets backend_options.engine of a benchmark on the pytorch backend;
# benchmarks on other backends have no engine and ignore it. With ENGINE=ipex, mlperf-bnas
# runs the build and the LoadGen runs in the IPEX environment (./prepare_env.sh --ipex).
if [ -n "${ENGINE:-}" ] && [ -n "$BENCH_DIR" ] \
   && grep -Eq '^backend:[[:space:]]*pytorch([[:space:]]|#|$)' "$BENCH_DIR/config.yaml" 2>/dev/null; then
  COMMON_ARGS+=(--set "backend_options.engine=$ENGINE")
fi
# USER_CONF is resolved per benchmark (a caller without a benchmark, like run.sh, leaves it
# alone so each benchmark script picks its own); a value the user set is always kept.
# SIZE_FROM (not exported): set when this script runs the embedded default, whose conf is
# generated on this machine from the benchmark's user.smoke.conf (see prepare_run).
SIZE_FROM=""
if [ -n "$BENCH_DIR" ]; then
  if [ -z "${USER_CONF:-}" ]; then
    if [ -z "$DATA_DIR" ] && [ -f "$BENCH_DIR/user.smoke.conf" ]; then
      # Synthetic data: the short smoke settings plus target_qps measured on this machine,
      # in a generated per-system conf under $OUTPUT_DIR (mlperf-bnas size).
      SIZE_FROM="$BENCH_DIR/user.smoke.conf"
      USER_CONF="$(mlperf-bnas size "${COMMON_ARGS[@]}" --print-path)"
    else
      # Real data: the real rules.
      USER_CONF="$BENCH_DIR/user.conf"
    fi
  elif [ ! -f "$USER_CONF" ] && [ -f "$BENCH_DIR/$USER_CONF" ]; then
    # USER_CONF=user.conf means the benchmark's own file.
    USER_CONF="$BENCH_DIR/$USER_CONF"
  fi
  export USER_CONF
fi

# What a run needs before LoadGen starts, made when missing (and said so):
# prepare_model: the dataset and its preprocessed cache, and the INT8 model.
# prepare_conf <scenario> [check|force]: the LoadGen settings of this machine: the embedded
#   default's generated conf (sized now when missing or stale; "force": re-sized now), or, with "check", a warning
#   when the conf the user set asks a target_qps this machine cannot reach, with the measured
#   figure. Exit status 3: the scenario cannot run here at any load (one line says why).
prepare_model() {
  mlperf-bnas build "${COMMON_ARGS[@]}" --precision int8 --if-missing
}
prepare_conf() {
  local size_args=(--user-conf "$USER_CONF" --scenario "$1")
  if [ -n "$SIZE_FROM" ]; then size_args+=(--from "$SIZE_FROM"); fi
  if [ "${2:-}" = check ]; then size_args+=(--check); fi
  # SIZE_FORCE=1 (run.sh, before re-making a reference run for compliance): fresh probes now.
  if [ "${2:-}" = force ] || [ "${SIZE_FORCE:-}" = 1 ]; then size_args+=(--force); fi
  mlperf-bnas size "${COMMON_ARGS[@]}" "${size_args[@]}"
}
# run_performance <scenario> [mlperf-bnas run arguments]: the LoadGen performance run. With the
# embedded default's generated conf, a run this machine finished faster than it was sized for
# (exit status 4: its Offline query or pre-generated stream queries ended before min_duration,
# because the machine sped up by more than the sizing margin since the probes) is re-sized
# with fresh probes and run once more; the first run's logs go to the archive. Any INVALID run
# is still reported, by the run and by the checker: exit status 4 is not passed on.
run_performance() {
  local scenario="$1"; shift
  local rc=0
  mlperf-bnas run "${COMMON_ARGS[@]}" --scenario "$scenario" --mode performance --user-conf "$USER_CONF" "$@" || rc=$?
  if [ "$rc" -eq 4 ] && [ -n "$SIZE_FROM" ]; then
    echo "run: $scenario was faster than sized: re-sizing on this machine and running it again (once)"
    prepare_conf "$scenario" force || return $?
    rc=0
    mlperf-bnas run "${COMMON_ARGS[@]}" --scenario "$scenario" --mode performance --user-conf "$USER_CONF" "$@" || rc=$?
  fi
  if [ "$rc" -eq 4 ]; then rc=0; fi
  return "$rc"
}
