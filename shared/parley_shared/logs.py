"""Logging set up once per process: structured records, JSON for machines and aligned text on a terminal.

Every record, Parley's and its libraries' (uvicorn, aiokafka, faststream), goes through the same processors, so a
line that concerns one conversation carries its ``conversationId``, ``jobId`` and ``requestId`` (bound with
:func:`bind_ids` where the work starts) and the ``traceId``/``spanId`` of the current span.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor

LogFormat = Literal["auto", "json", "console"]

# uvicorn installs handlers of its own; they must go to the root handler instead, or its lines skip the format.
_RELAYED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
_CHATTY_LOGGERS = ("aiokafka", "faststream", "faststream.access.kafka")


class ParleyLogHandler(logging.StreamHandler):
    """The one handler Parley installs on the root logger (stderr)."""


def add_trace_ids(_: Any, __: str, event: EventDict) -> EventDict:
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event.setdefault("traceId", format(span_context.trace_id, "032x"))
        event.setdefault("spanId", format(span_context.span_id, "016x"))
    return event


def bind_ids(*, conversation_id: str | None = None, job_id: str | None = None, request_id: str | None = None) -> None:
    """Name the conversation the current task works on: on its log lines and on the current span.

    Bound in a context variable, so it stays with this task (asyncio copies the context into each new task) and
    never leaks into other records handled concurrently.
    """
    ids = {"conversationId": conversation_id, "jobId": job_id, "requestId": request_id}
    known = {name: value for name, value in ids.items() if value}
    if not known:
        return
    structlog.contextvars.bind_contextvars(**known)
    span = trace.get_current_span()
    if span.is_recording():
        for name, value in known.items():
            span.set_attribute(f"parley.{name}", value)


def _renderer(log_format: LogFormat) -> Processor:
    console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    if console:
        return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    return structlog.processors.JSONRenderer()


def configure_logging(level: str, log_format: LogFormat = "auto") -> None:
    """Route every logger in the process through one structured handler on stderr."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
    ]
    renderer = _renderer(log_format)
    # A JSON line carries an exception as one text field (never its frames' locals, which may hold secrets);
    # the console renderer prints it as a traceback of its own.
    json_only: list[Processor] = (
        []
        if isinstance(renderer, structlog.dev.ConsoleRenderer)
        else [structlog.processors.format_exc_info, structlog.processors.EventRenamer("message")]
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *json_only, renderer],
    )
    handler = ParleyLogHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    # Replace the handler of an earlier call (a test builds many apps), keep anyone else's (pytest's capture).
    root.handlers = [h for h in root.handlers if not isinstance(h, ParleyLogHandler)] + [handler]
    root.setLevel(level.upper())
    for name in _RELAYED_LOGGERS:
        relayed = logging.getLogger(name)
        relayed.handlers = []
        relayed.propagate = True
    # aiokafka is chatty about routine group membership at INFO, faststream logs every message it handles.
    quiet = max(logging.WARNING, root.level)
    for chatty in _CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(quiet)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
