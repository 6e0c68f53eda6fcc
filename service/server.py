"""`python -m service`: gunicorn with uvicorn workers, configured from Settings only.

This is the single way the service is started: `make serve`, the container image and
the integration tests all run `python -m service`, so the gunicorn configuration below
is the only one there is.
"""

from __future__ import annotations

import gc
import importlib.abc
import importlib.machinery
import logging
import logging.config
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from service.logs import logging_config
from service.ports import PortClaim, PortUnavailableError, probe
from service.settings import Settings

WORKER_CLASS = "uvicorn_worker.UvicornWorker"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BAD_ARTIFACT_EXIT = 3
"""Exit status when the artifact cannot be served: gunicorn's own "worker failed to boot"."""
CONFIG_EXIT = 2
"""Exit status for an invalid IRIS_* setting or an address that cannot be served (port in use)."""
MAX_FAILED_BOOTS = 5
"""Workers in a row that may exit before serving before the master gives up (exit 3)."""


class _BadArtifactError(Exception):
    """The master could not load the artifact; it has logged why."""


class _PortError(Exception):
    """The master could not claim the address; it has logged why."""


class BootWatch:
    """Stops the master when workers keep dying before they serve, instead of respawning forever.

    gunicorn halts on a worker that fails inside the app, but a worker that cannot bind
    its socket exits with status 1 and is replaced, forever. Each worker records its
    spawn number (gunicorn's `age`) in memory shared with the master once it has its
    socket and the app; the master counts the workers that exit without that record.
    """

    SLOTS = 256  # more than the most workers alive at once (Settings allows 64)

    def __init__(self, settings: Settings, limit: int = MAX_FAILED_BOOTS) -> None:
        from multiprocessing.sharedctypes import RawArray

        self._settings = settings
        self._limit = limit
        self._booted = RawArray("q", self.SLOTS)  # anonymous shared memory, kept over fork
        self.failed_in_a_row = 0
        self._halting = False

    def booted(self, worker: Any) -> None:
        """gunicorn's post_worker_init (in the worker): it has its socket and the app."""
        self._booted[worker.age % self.SLOTS] = worker.age

    def exited(self, server: Any, worker: Any) -> None:
        """gunicorn's child_exit (in the master): count a worker that never served."""
        if self._booted[worker.age % self.SLOTS] == worker.age:
            self.failed_in_a_row = 0
            return
        self.failed_in_a_row += 1
        server.log.warning(
            "worker %s exited before serving (%d in a row; the server stops at %d)",
            worker.pid,
            self.failed_in_a_row,
            self._limit,
        )
        if self.failed_in_a_row < self._limit or self._halting:
            return
        # Stopping reaps the other workers through this hook again: halt once.
        self._halting = True
        from gunicorn.errors import HaltServer

        reason = f"{self.failed_in_a_row} workers in a row exited before serving"
        try:
            probe(self._settings.host, self._settings.port)
        except PortUnavailableError as exc:
            reason = f"{reason}: {exc}"
        raise HaltServer(reason, BAD_ARTIFACT_EXIT)


class _RefusePandas(importlib.abc.MetaPathFinder):
    """Makes `import pandas` fail in the serving processes.

    scikit-learn imports pandas whenever it is installed (the image has it, for
    training), only to recognise DataFrames, which the service never passes. Refusing
    the import saves about 0.25 s of start-up and 30 MB per worker, and scikit-learn
    works on without it.
    """

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError("pandas is kept out of the serving process", name=fullname)
        return None


def keep_pandas_out() -> None:
    """Refuse pandas imports in this process and the workers it forks (unless already imported)."""
    if "pandas" in sys.modules or any(isinstance(f, _RefusePandas) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _RefusePandas())


def prepare_metrics_dir(settings: Settings) -> tuple[Path, bool]:
    """The Prometheus multiprocess directory, emptied; True if it is a temporary one."""
    if settings.metrics_dir is None:
        return Path(tempfile.mkdtemp(prefix="iris-metrics-")), True
    directory = settings.metrics_dir
    directory.mkdir(parents=True, exist_ok=True)
    # Files left by a previous server (a restarted container keeps its emptyDir)
    # would be added to this one's counters.
    for stale in directory.glob("*.db"):
        stale.unlink()
    return directory, False


def _bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _child_exit(watch: BootWatch) -> Any:
    def child_exit(server: Any, worker: Any) -> None:
        # A dead worker's live gauges must not be reported any more.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
        watch.exited(server, worker)

    return child_exit


def _post_fork(settings: Settings, port: PortClaim) -> Any:
    """gunicorn's post_fork hook: the worker's uvicorn parses with service.protocol's guard."""
    from service.protocol import GuardedHttpToolsProtocol

    def post_fork(server: Any, worker: Any) -> None:
        port.release()  # the master's lock, not the worker's
        from service import metrics

        metrics.close_inherited()  # the master's metrics socket, not the worker's
        GuardedHttpToolsProtocol.header_timeout = settings.body_timeout
        worker.config.http = GuardedHttpToolsProtocol

    return post_fork


def _when_ready(server: Any) -> None:
    server.log.info("serving http://%s with %d workers", server.cfg.bind[0], server.cfg.workers)


def gunicorn_options(
    settings: Settings, port: PortClaim | None = None, watch: BootWatch | None = None
) -> dict[str, Any]:
    """The complete gunicorn configuration for `settings`.

    `port` is the master's claim on its address, which each worker drops; `watch` counts
    the workers that exit before serving.
    """
    shm = Path("/dev/shm")  # noqa: S108 - a tmpfs for gunicorn's heartbeat files, not a temp file
    port = port if port is not None else PortClaim()
    watch = watch if watch is not None else BootWatch(settings)
    return {
        "bind": [_bind_address(settings.host, settings.port)],
        "workers": settings.workers,
        "worker_class": WORKER_CLASS,
        "timeout": settings.timeout,
        "graceful_timeout": settings.graceful_timeout,
        "keepalive": settings.keepalive,
        # Each worker listens on its own SO_REUSEPORT socket and the kernel spreads new
        # connections over them. With one shared socket, a worker that wins the accept
        # race can take every keep-alive connection of a client while the other idles
        # (seen in about one benchmark run in five), halving throughput.
        "reuse_port": True,
        # Import the app and its libraries, and load the model, once in the master:
        # workers fork with all of it in memory (shared copy-on-write) and serve at once,
        # and a bad artifact stops the server before any worker starts (IrisServer.load).
        "preload_app": True,
        "proc_name": "iris-api",
        "loglevel": settings.log_level,
        "accesslog": None,
        "errorlog": "-",
        "logconfig_dict": logging_config(
            settings.log_level,
            settings.log_format,
            # With reuse_port the master holds no socket, so gunicorn's "Listening at"
            # line would name no address; the log config fills in where workers listen.
            listening=f"http://{_bind_address(settings.host, settings.port)}",
        ),
        # gunicorn's runtime control socket is not needed here, and its default path
        # is shared by every gunicorn of the user.
        "control_socket_disable": True,
        # Heartbeat files in memory: a slow disk must not make gunicorn kill workers.
        "worker_tmp_dir": str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None,
        "child_exit": _child_exit(watch),
        "post_worker_init": watch.booted,
        "when_ready": _when_ready,
        # uvicorn limits neither the time nor the size of request headers; this does.
        "post_fork": _post_fork(settings, port),
    }


def _application(settings: Settings) -> Any:
    from gunicorn.app.base import BaseApplication

    port = PortClaim()

    class IrisServer(BaseApplication):  # type: ignore[misc]
        """gunicorn fed from Settings instead of a command line or config file."""

        def load_config(self) -> None:
            for key, value in gunicorn_options(settings, port).items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # gunicorn calls this in the master before it forks (preload_app): claim the
            # address first (a second server must not load a model to learn the port is
            # taken), then load the model.
            from service import metrics

            try:
                port.take(settings.host, settings.port)
                # /metrics on its own port, from a thread of this process: the master
                # outlives every worker and reads all their files (service.metrics).
                metrics.serve(settings.host, settings.metrics_port)
            except (PortUnavailableError, metrics.MetricsPortError) as exc:
                logging.getLogger("iris").error("cannot serve: %s", exc)
                raise _PortError from None

            from model.artifact import ArtifactError
            from service.app import app

            try:
                app.preload()
            except ArtifactError as exc:
                logging.getLogger("iris").error("cannot serve the model: %s", exc)
                raise _BadArtifactError from None
            # Python's advice for servers that fork without exec: no collections while
            # the long-lived objects are built, then freeze them so that no worker's
            # collector ever writes to (and so copies) their pages. Collecting during
            # start-up cost ~0.2 s of it and would free less than 1 MiB.
            gc.freeze()
            gc.enable()
            return app

    return IrisServer()


def artifact_acceptable(settings: Settings) -> bool:
    """Every check of the artifact short of unpickling it, before gunicorn, the app and
    their libraries are imported; False, with the one log line gunicorn's master would
    write, when the artifact cannot be served.

    A bad artifact (missing, from other library versions, other classes, a corrupted
    model file, ...) is so refused in the time Python takes to start and read two
    files, well before any server could: model.artifact.check imports neither
    scikit-learn nor joblib (nor, to refuse, numpy). The master loads the artifact
    (and repeats these checks, a millisecond) once it holds its address.
    """
    from model.artifact import ArtifactError, check

    try:
        check(settings.model_dir)
    except ArtifactError as exc:
        logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
        logging.getLogger("iris").error("cannot serve the model: %s", exc)
        return False
    return True


def main() -> int:
    """Start the server; returns gunicorn's exit status (non-zero when a worker cannot boot).

    Returns BAD_ARTIFACT_EXIT, before any worker starts, when the artifact fails its check.
    """
    # Re-enabled in IrisServer.load once the app and the model are built (see there).
    gc.disable()
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid IRIS_* configuration:\n{exc}", file=sys.stderr)  # noqa: T201
        return 2
    if not artifact_acceptable(settings):
        return BAD_ARTIFACT_EXIT
    metrics_dir, temporary = prepare_metrics_dir(settings)
    os.environ[MULTIPROC_ENV] = str(metrics_dir)
    keep_pandas_out()
    master = os.getpid()
    from gunicorn.errors import HaltServer

    try:
        # gunicorn ends the master with sys.exit(status): 3 when a worker cannot boot.
        _application(settings).run()
    except _BadArtifactError:
        return BAD_ARTIFACT_EXIT
    except _PortError:
        return CONFIG_EXIT
    except HaltServer as halt:
        # When several workers fail to boot at once, gunicorn 27 meets the second
        # failure while halting for the first and lets HaltServer escape; report it
        # as gunicorn would have, without a traceback.
        logging.getLogger("gunicorn.error").error("Reason: %s", halt.reason)
        return int(halt.exit_status)
    finally:
        # Forked workers leave through here too; only the master owns the directory.
        if temporary and os.getpid() == master:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
