"""`make reliability`: the service and the GitOps tool under load, faults and hostile input.

Each scenario starts what it needs (the real service under gunicorn through
harness.servers, real git clones, the real GitOps tool), applies load or faults on
loopback only, bounded in time, and returns an `Outcome`: the figure and the checks it
passed or failed. One module per concern: `serving` (load, shutdown, worker crash),
`artifacts` (a broken model at start), `hostile` (fuzzing, swarms, slow clients),
`gitops_safety` (interrupted and concurrent bumps), with `load` (the load generator) and
`workload` (the requests sent) beside them.

`make reliability` runs the long forms (reliability/run.py); tests/reliability runs the same
functions with short parameters inside `make test`.
"""
