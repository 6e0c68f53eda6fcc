"""Edit and inspect the GitOps state of iris-gitops: the image each overlay deploys.

`python -m gitops` is the command the release and promotion workflows run, so what CI does to
the repository is exactly what the tests exercise.
"""

import os


def invocation() -> str:
    """The command that runs this tool, as the hints it prints spell it.

    scripts/gitops.sh sets GITOPS_COMMAND to itself, so a developer is told to run what
    works on their machine (a bare `python -m gitops` needs ruamel.yaml); the workflows
    run `python -m gitops`, the default.
    """
    return os.environ.get("GITOPS_COMMAND", "python -m gitops")
