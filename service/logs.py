"""Log lines: JSON for machines, a readable line for people, the same fields in both.

Structured fields travel in `extra={"fields": {...}}`. gunicorn and uvicorn log through
the same formatters (service.server builds the logging config), so a container's
stdout is one JSON object per line.
"""

from __future__ import annotations

import atexit
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from service.turns import EndOfTurn

REQUEST_LOGGER = "iris.access"
SERVICE_LOGGER = "iris"

LogFormat = Literal["auto", "json", "console"]


_second: tuple[int, str] = (-1, "")
_millisecond: tuple[int, str] = (-1, "")


def iso_timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds; the date part is formatted once a second, the
    whole string once a millisecond (under load many lines share one)."""
    global _second, _millisecond  # one-entry caches, replaced whole (no lock needed)
    millis = int(created * 1000)
    cached = _millisecond
    if cached[0] == millis:
        return cached[1]
    whole, fraction = divmod(millis, 1000)
    date = _second
    if date[0] != whole:
        date = (whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        _second = date
    text = f"{date[1]}.{fraction:03d}+00:00"
    _millisecond = (millis, text)
    return text


def json_line(
    created: float, level: str, logger: str, message: str, fields: dict[str, Any] | None
) -> str:
    """A log line as one JSON object: ts, level, logger, message, then `fields`."""
    line: dict[str, Any] = {
        "ts": iso_timestamp(created),
        "level": level.lower(),
        "logger": logger,
        "message": message,
    }
    if fields:
        line.update(fields)
    return orjson.dumps(line, default=str).decode()


def console_line(
    created: float, level: str, logger: str, message: str, fields: dict[str, Any] | None
) -> str:
    """A log line for people: `time LEVEL logger: message key=value ...`."""
    text = f"{iso_timestamp(created)} {level.upper():<7} {logger}: {message}"
    if fields:
        text += " " + " ".join(f"{key}={value}" for key, value in fields.items())
    return text


def _fields(record: logging.LogRecord) -> dict[str, Any] | None:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record`; a traceback, if any, goes into the `exception` field."""
        fields = _fields(record)
        if record.exc_info:
            fields = {**(fields or {}), "exception": self.formatException(record.exc_info)}
        return json_line(record.created, record.levelname, record.name, record.getMessage(), fields)


class ConsoleFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` on one line (plus the traceback, if any)."""
        text = console_line(
            record.created, record.levelname, record.name, record.getMessage(), _fields(record)
        )
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class RequestLog:
    """The one line per request, in the configured format, written straight to stdout.

    It goes around the logging machinery (LogRecord, handler lock, formatter lookup,
    a dict per line): a JSON request line is one f-string with the same keys, in the same
    order, as `json_line` writes (tests/service/test_logs.py holds them together), a
    quarter of the cost. The level still comes from the `iris.access` logger, so
    IRIS_LOG_LEVEL=warning silences successful requests as it would through logging.

    Lines are held until the end of the turn of the event loop they were made in, and
    go out together when it ends (service.turns): under load many requests finish in
    one turn, and their lines cost one write system call instead of one each. No line
    waits longer than that turn; without a running loop a line is written at once.
    """

    def __init__(self, log_format: LogFormat) -> None:
        self._json = resolve_format(log_format) == "json"
        self._logger = logging.getLogger(REQUEST_LOGGER)
        self._held: list[str] = []  # lines of this turn
        self._end_of_turn = EndOfTurn(self.flush)
        # JSON strings of the values that repeat (model versions), and the middle of the
        # JSON line for the (level, method, path, status) that repeat.
        self._quoted: dict[str, str] = {}
        self._middles: dict[tuple[int, str, str, int], str] = {}
        atexit.register(self.flush)

    def write(
        self,
        level: int,
        method: str,
        path: str,
        status: int,
        seconds: float,
        request_id: str,
        model_version: str,
    ) -> None:
        """Write the line for one request if `level` is enabled.

        `request_id` is written as it is: it must need no JSON escaping (the front admits
        only letters, digits and `._:-`, and makes its own ids of hex digits).
        """
        if not self._logger.isEnabledFor(level):
            return
        created = time.time()
        if self._json:
            line = (
                f'{{"ts":"{iso_timestamp(created)}",{self._middle(level, method, path, status)}'
                f'{seconds * 1000:.3f},"request_id":"{request_id}",'
                f'"model_version":{self._quote(model_version)}}}'
            )
        else:
            fields = {
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": f"{seconds * 1000:.3f}",
                "request_id": request_id,
                "model_version": model_version,
            }
            line = console_line(created, _level_name(level), REQUEST_LOGGER, "request", fields)
        self._held.append(line)
        self._end_of_turn.schedule()

    def _middle(self, level: int, method: str, path: str, status: int) -> str:
        # The JSON line from its level to "duration_ms":, the same for every request with
        # the same level, method, path and status: made once for the first ones seen.
        key = (level, method, path, status)
        middle = self._middles.get(key)
        if middle is None:
            middle = (
                f'"level":"{_level_name(level)}","logger":"{REQUEST_LOGGER}",'
                f'"message":"request","method":{_quote(method)},"path":{_quote(path)},'
                f'"status":{status},"duration_ms":'
            )
            if len(self._middles) < _QUOTED_KEPT:
                self._middles[key] = middle
        return middle

    def _quote(self, value: str) -> str:
        quoted = self._quoted.get(value)
        if quoted is None:
            quoted = _quote(value)
            if len(self._quoted) < _QUOTED_KEPT:
                self._quoted[value] = quoted
        return quoted

    def flush(self) -> None:
        """Write the lines held back in this turn of the event loop."""
        held, self._held = self._held, []
        if held:
            stream = sys.stdout
            stream.write("\n".join(held) + "\n")
            stream.flush()


_QUOTED_KEPT = 256
"""Values (and line middles) whose JSON RequestLog keeps: the first ones seen, so that
clients sending endless new paths or methods cannot grow it."""

_LEVEL_NAMES = {logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error"}


def _level_name(level: int) -> str:
    return _LEVEL_NAMES.get(level) or logging.getLevelName(level).lower()


def _quote(value: str) -> str:
    """`value` as a JSON string, escaped as orjson escapes it."""
    return orjson.dumps(value).decode()


def resolve_format(log_format: LogFormat) -> Literal["json", "console"]:
    """`auto` means console on a terminal and JSON everywhere else (containers, CI)."""
    if log_format == "auto":
        return "console" if sys.stdout.isatty() else "json"
    return log_format


class ListeningAddress(logging.Filter):
    """Fills the address into gunicorn's "Listening at" line when gunicorn has none.

    gunicorn names the master's sockets there; with one SO_REUSEPORT socket per worker
    the master has none, and the line would read `Listening at:  (pid)`.
    """

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the "Listening at" record in place; let every record through."""
        args = record.args
        if (
            isinstance(record.msg, str)
            and record.msg.startswith("Listening at:")
            and isinstance(args, tuple)
            and args
            and not args[0]
        ):
            record.args = (self.address, *args[1:])
        return True


def logging_config(level: str, log_format: LogFormat, listening: str = "") -> dict[str, Any]:
    """A logging.config.dictConfig for the server: everything to stdout in one format.

    gunicorn's and uvicorn's access logs are off: the service writes its own request
    line, with the request id and model version they do not know. `listening` is the
    address gunicorn's "Listening at" line names (see ListeningAddress).
    """
    formatter = JsonFormatter if resolve_format(log_format) == "json" else ConsoleFormatter
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"iris": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "filters": {
            "listening": {"()": f"{__name__}.{ListeningAddress.__qualname__}", "address": listening}
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "iris",
            }
        },
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {
                "level": level,
                "handlers": ["stdout"],
                "propagate": False,
                "filters": ["listening"],
            },
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            "uvicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            SERVICE_LOGGER: {"level": level, "handlers": ["stdout"], "propagate": False},
        },
    }
