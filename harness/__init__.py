"""One way to start and talk to the things under test, shared by tests/, bench/ and reliability/.

- `harness.ports`: free loopback ports (never 8080, which kubectl's kustomize probes);
- `harness.http`: one request on a fresh connection;
- `harness.procs`: CPU time, memory and children of processes, read from /proc;
- `harness.servers`: a server process in its own process group, and `python -m service`
  started on a free port and waited for;
- `harness.git`: real git repositories holding a copy of the project's deploy/.

Standard library only, so the benchmark's and the tests' environments both have it.
"""
