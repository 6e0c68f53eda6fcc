"""Entry point for `python -m gitops`."""

from gitops.cli import main

raise SystemExit(main())
