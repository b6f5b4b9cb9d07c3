#!/usr/bin/env bash
# Run the test suite (after ./prepare_env.sh). Extra arguments go to pytest.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$REPO"
source "$REPO/tools/env.sh" ""
exec python -m pytest -q -p no:cacheprovider tests "$@"
