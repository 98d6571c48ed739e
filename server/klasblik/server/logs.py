"""Logging for ``klasblik serve`` and the other commands: one line per event, as text or
as JSON (``log_format``), with the chatty libraries kept quiet.

Every record becomes exactly one line: in text, a traceback or a message with line breaks
has them written as ``\\n``; in JSON, the traceback is a field of the one object. The Azure
SDK's request and response logging (headers, URLs) stays at warning, whatever
``log_level`` says.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, TextIO

__all__ = ["JsonFormatter", "OneLineFormatter", "configure_logging"]

#: Loggers held at warning: their INFO lines are bookkeeping, or (the Azure SDK's HTTP
#: logging policy) every request's URL and headers.
QUIET = (
    "alembic",
    "apscheduler",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.identity",
    "azure",
    "aiohttp.access",
)

#: attributes every LogRecord has; anything else was passed as ``extra=``
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class OneLineFormatter(logging.Formatter):
    """The usual text format, with line breaks inside a record written as ``\\n``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r", "").replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the
    traceback as ``exc`` when there is one, and whatever was passed as ``extra=``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        return json.dumps(out, default=str, ensure_ascii=False)


class _Handler(logging.StreamHandler[TextIO]):
    """The handler Klasblik installs (so that a second call replaces it)."""


def configure_logging(level: str, log_format: str = "text", stream: TextIO | None = None) -> None:
    """Send log records to stderr, one line each, at ``level``.

    Like ``logging.basicConfig`` it leaves a root logger alone that has handlers of
    someone else's (a test runner's); a handler of its own it replaces."""
    root = logging.getLogger()
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else OneLineFormatter())
    ours = [h for h in root.handlers if isinstance(h, _Handler)]
    others = [h for h in root.handlers if not isinstance(h, _Handler)]
    if not others:
        for h in ours:
            root.removeHandler(h)
        root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
