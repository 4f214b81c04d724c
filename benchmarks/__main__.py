"""``python -m benchmarks``: every benchmark in one run (see `benchmarks.suite`)."""

from .suite import main

raise SystemExit(main())
