#!/usr/bin/env python3
"""Truncate mlperf_log_accuracy.json files and hash them into accuracy.txt (MLPerf rules).

Thin entry point for ``mlperf-bnas truncate`` with the same two modes as MLPerf's
tool: ``--input SUBMISSION --output NEW`` or ``--input SUBMISSION --backup DIR``.
"""

import sys

from mlperf_bnas.cli import main

if __name__ == "__main__":
    sys.exit(main(["truncate", *sys.argv[1:]]))
