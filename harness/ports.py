"""Free loopback ports."""

from __future__ import annotations

import socket

# kubectl's embedded kustomize probes this port; never hand it to a test server.
RESERVED_PORTS = frozenset({8080})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in RESERVED_PORTS:
            return port
