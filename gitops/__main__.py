"""Entry point for `python -m gitops` (scripts/gitops.sh runs it in an environment of its own)."""

import sys

try:
    import ruamel.yaml  # noqa: F401 - the tool's one dependency, checked before anything else
except ModuleNotFoundError:
    sys.stderr.write(
        "gitops: error: this Python lacks ruamel.yaml (requirements/gitops.lock); run "
        "scripts/gitops.sh instead, which installs that lock into .venv-gitops on first use\n"
    )
    raise SystemExit(2) from None

from gitops.cli import main

raise SystemExit(main())
