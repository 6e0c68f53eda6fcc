"""Edit and inspect the GitOps state of iris-gitops: the image each overlay deploys.

`python -m gitops` is the command the release and promotion workflows run, so what CI does to
the repository is exactly what the tests exercise.
"""
