"""Making sure this server is the only one on its port, before any worker starts.

Each gunicorn worker binds its own SO_REUSEPORT socket (see service.server). The kernel
lets any process of the same user do the same, so a second server on the port would
start without error and share the traffic with the first (two models answering at
random), and a port held by another program would make every worker fail to bind,
again and again. The master therefore claims the port before it forks: it holds a lock
named after the address, so two servers starting at once cannot both pass, and it binds
the address once without SO_REUSEPORT, which fails while anything listens there.
"""

from __future__ import annotations

import errno
import socket
import sys


class PortUnavailableError(Exception):
    """The configured address cannot be served; the message says which and what to do."""


def port_in_use_message(port: int) -> str:
    """The one line for a port another process listens on."""
    return f"port {port} is in use; set IRIS_PORT to a free port (or stop the other server)"


def _lock(host: str, port: int) -> socket.socket | None:
    # An abstract Unix socket: the kernel frees the name when the process ends, however it
    # ends, and its namespace is the network namespace, the one TCP ports live in too.
    # Other systems keep only the bind probe below.
    if not sys.platform.startswith("linux"):
        return None
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(f"\0iris-api {host} {port}")
    except OSError as exc:
        lock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailableError(port_in_use_message(port)) from None
        raise
    return lock


def probe(host: str, port: int) -> None:
    """Bind `host`:`port` once without SO_REUSEPORT; raise PortUnavailableError if it fails.

    SO_REUSEADDR is set, as gunicorn sets it, so connections of a previous server still in
    TIME_WAIT do not count; a socket listening on the address (any program's, SO_REUSEPORT
    or not) does.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise PortUnavailableError(
            f"cannot listen on {host}:{port}: the host does not resolve ({exc.strerror}); "
            "set IRIS_HOST"
        ) from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortUnavailableError(port_in_use_message(port)) from None
            raise PortUnavailableError(
                f"cannot listen on {host}:{port}: {exc.strerror}; set IRIS_HOST and IRIS_PORT"
            ) from None


class PortClaim:
    """This server's lock on its address, held by the master for as long as it runs."""

    def __init__(self) -> None:
        self._lock: socket.socket | None = None

    def take(self, host: str, port: int) -> None:
        """Lock the address for this process and check that nothing listens on it.

        Raises PortUnavailableError with one line naming the port and the setting to change.
        """
        self._lock = _lock(host, port)
        try:
            probe(host, port)
        except PortUnavailableError:
            self.release()
            raise

    def release(self) -> None:
        """Drop the lock (each forked worker does: only the master holds the address)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
