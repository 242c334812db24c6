"""structlog set-up. CURPs and bearer tokens are masked before anything is written."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# A CURP-shaped token anywhere in a log value: keep the first 4 characters only.
_CURP = re.compile(r"\b([A-Z][AEIOUX][A-Z]{2})\d{6}[HMX][A-Z]{5}[0-9A-Z]\d\b")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str) -> str:
    return _BEARER.sub(r"\1[redacted]", _CURP.sub(r"\1**************", text))


def _redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if isinstance(value, str):
            event_dict[key] = redact(value)
    return event_dict


class RedactingFilter(logging.Filter):
    """Masks CURPs and bearer tokens in a standard-library record (a library's message, and
    the traceback of an error, where a database error may quote a statement's values) before
    any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# The loggers that have handlers of their own (the server's), besides the root's.
_HANDLED = ("uvicorn", "uvicorn.error", "uvicorn.access")


class _CurrentStderr:
    """sys.stderr as it is when a line is written (not when the logger was made), so that a
    cached logger follows a redirected stderr."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", json: bool = False, *, to_stderr: bool = False) -> None:
    """Masked logs at `level`. Structured logs go to stdout, or to stderr with `to_stderr`
    (the command line, whose stdout carries data)."""
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    masking = RedactingFilter()
    for name in ("", *_HANDLED):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(masking)
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,  # the traceback as text, then masked
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(_CurrentStderr() if to_stderr else None),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
