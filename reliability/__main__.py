"""`python -m reliability` runs the long reliability scenarios (see reliability/run.py)."""

from reliability.run import main

raise SystemExit(main())
