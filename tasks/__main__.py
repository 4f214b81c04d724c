"""``python -m tinygrad_ee.tasks``: the same command line as ``tinygrad-ee``."""

import sys

from .cli import main

sys.exit(main())
