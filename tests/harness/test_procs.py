"""What the harness reads about a server process from /proc."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from harness import procs
from harness.ports import free_port

# A process that listens on a port with its event loop running, but watches the socket only
# once told to: as a forked worker holds its master's socket before it starts serving.
SERVER = textwrap.dedent(
    """
    import asyncio, socket, sys

    async def main(port):
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", port))
        print("listening", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        await loop.create_server(asyncio.Protocol, sock=listener)
        print("serving", flush=True)
        await asyncio.sleep(600)

    asyncio.run(main(int(sys.argv[1])))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_accepting_is_true_only_once_the_event_loop_watches_the_listening_socket() -> None:
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == "listening\n"
        # The loop's epoll exists and watches its own wake-up socket, not the listener.
        assert not procs.accepting(child.pid, port)
        assert not procs.accepting(child.pid, free_port())
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "serving\n"
        assert procs.accepting(child.pid, port)
        assert not procs.accepting(child.pid, free_port())
    finally:
        child.kill()
        child.communicate(timeout=30)
    assert not procs.accepting(child.pid, port)  # gone
