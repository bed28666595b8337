"""``python -m benchmarks``: the same harness as ``lmukws bench``."""

import sys

from benchmarks.cli import main

sys.exit(main())
