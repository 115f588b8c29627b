"""JSON logs, one event per line, each carrying the tracekey of the work in hand."""

import logging
import sys
import time
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

__all__ = ["configure_logging", "tracekey_var"]

tracekey_var: ContextVar[str | None] = ContextVar("tracekey", default=None)


class _TracekeyFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self._service
        record.__dict__.pop("color_message", None)  # uvicorn's terminal colours, useless in JSON
        if not hasattr(record, "tracekey"):
            record.tracekey = tracekey_var.get()
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_TracekeyFilter(service))
    formatter = JsonFormatter(
        "{asctime}{levelname}{name}{message}{service}{tracekey}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )
    # Timestamps in UTC, like everything else in FLOW.
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own handlers would print plain text; route them through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
