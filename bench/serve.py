"""Serve a baseline app with exactly the gunicorn options the service uses.

    IRIS_PORT=9001 python -m bench.serve bench.apps.tidy:app

The options come from service.server.gunicorn_options(Settings()), so worker count,
keep-alive, timeouts, SO_REUSEPORT and app preloading cannot differ between the
service and the apps it is compared with. The `post_fork` hook is kept, so every app
parses HTTP with the same slow-header guard (service/protocol.py); the service's other
hooks (its metrics cleanup, its pandas guard) are left out: they belong to the service.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from gunicorn.app.base import BaseApplication

from service.server import gunicorn_options
from service.settings import Settings


class BaselineServer(BaseApplication):  # type: ignore[misc]
    """gunicorn with the service's options, serving another ASGI app."""

    def __init__(self, target: str) -> None:
        self.target = target
        super().__init__()

    def load_config(self) -> None:
        options = gunicorn_options(Settings())
        options.pop("child_exit", None)
        options["proc_name"] = self.target
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


def main() -> int:
    if len(sys.argv) != 2 or ":" not in sys.argv[1]:
        print("usage: python -m bench.serve <module>:<app>", file=sys.stderr)
        return 2
    BaselineServer(sys.argv[1]).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
