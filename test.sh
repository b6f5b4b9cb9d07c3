#!/usr/bin/env bash
# Run the test suite (after ./prepare_env.sh). Extra arguments go to pytest.
#   ./test.sh          everything (what CI runs)
#   ./test.sh --fast   the fast subset: tests marked `slow` (full-size models, minutes each) left out
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$REPO"
source "$REPO/tools/env.sh" ""
args=()
if [ "${1:-}" = "--fast" ]; then
  shift
  args=(-m "not slow")
fi
exec python -m pytest -q -p no:cacheprovider tests "${args[@]}" "$@"
