import sys

from mlperf_bnas.cli import main

sys.exit(main())
