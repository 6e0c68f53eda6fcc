"""`python -m bench` runs the side-by-side benchmark (see bench/run.py)."""

from bench.run import main

raise SystemExit(main())
