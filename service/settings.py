"""Every knob of the service, read once from IRIS_* environment variables.

The same Settings object configures the app (service.app.create_app) and gunicorn
(service.server), so `make serve`, the container image and the tests cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service configuration; each field is read from the environment variable IRIS_<FIELD>."""

    model_config = SettingsConfigDict(
        env_prefix="IRIS_",
        # The docstring under each field is its description (docs/service.md repeats them).
        use_attribute_docstrings=True,
        frozen=True,
        extra="forbid",
    )

    model_dir: Path = Path("artifacts/model")
    """Directory of the model artifact (model.joblib + metadata.json) every worker loads at boot."""

    host: str = "127.0.0.1"
    """Address gunicorn binds; the container image sets 0.0.0.0."""

    port: int = Field(default=8000, ge=1, le=65535)
    """TCP port gunicorn binds."""

    metrics_port: int = Field(default=9090, ge=1, le=65535)
    """TCP port of GET /metrics (Prometheus), apart from the API so that what exposes
    IRIS_PORT never exposes the metrics; must differ from IRIS_PORT."""

    workers: int = Field(default=2, ge=1, le=64)
    """Number of gunicorn worker processes; one per CPU core is the usual choice."""

    timeout: int = Field(default=30, ge=1)
    """Seconds a silent worker may take before gunicorn kills and replaces it."""

    graceful_timeout: int = Field(default=20, ge=1)
    """Seconds workers get after SIGTERM to drain and finish in-flight requests before SIGKILL."""

    keepalive: int = Field(default=5, ge=0)
    """Seconds an idle keep-alive connection stays open."""

    drain_seconds: float = Field(default=0.0, ge=0, le=300)
    """Seconds a worker keeps serving after SIGTERM with /readyz answering 503, so load balancers
    stop sending traffic before the listener closes; keep it below graceful_timeout."""

    max_body_bytes: int = Field(default=65536, ge=1024)
    """Largest request body accepted, in bytes; larger bodies get 413."""

    max_batch_rows: int = Field(default=1000, ge=1)
    """Most rows accepted in one batch request (/predict/batch, v2 infer); more get 413."""

    body_timeout: float = Field(default=10.0, gt=0, le=300)
    """Seconds a client gets to send the request line and headers, and again the whole body;
    a slower one gets 408 and is disconnected."""

    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    """Lowest level logged, for the service and gunicorn alike."""

    log_format: Literal["auto", "json", "console"] = "auto"
    """Log line format: json, console (human-readable), or auto (console on a terminal, else
    json)."""

    docs_enabled: bool = True
    """Serve the interactive API docs at /docs (the schema at /openapi.json stays available)."""

    git_revision: str = "unknown"
    """Git commit the running image was built from, reported by /version; set by the image build."""

    metrics_dir: Path | None = None
    """Directory for Prometheus multiprocess files shared by the workers; unset means a fresh
    temporary directory per server start."""

    @model_validator(mode="after")
    def _ports_differ(self) -> Settings:
        if self.metrics_port == self.port:
            raise ValueError(
                f"IRIS_METRICS_PORT and IRIS_PORT are both {self.port}: /metrics needs a port "
                "of its own"
            )
        return self
