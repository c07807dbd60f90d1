"""structlog configuration, done once in the daemon's entry point.

JSON lines when stderr is not a TTY (journald, files), the console renderer on a TTY.
`merge_contextvars` comes first so `session` and `rpc_id` bound with contextvars appear on
every line logged while they are bound. Every line carries `logger`: the name given to
`structlog.get_logger` for ours (kept by the logger factory), the stdlib logger's for libraries'.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Literal, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


class NamedPrintLogger(structlog.PrintLogger):
    """A `PrintLogger` that knows the name it was asked for, so `add_logger_name` can put it on
    every line (structlog's own loggers have no name; stdlib's have one)."""

    def __init__(self, name: str, file: TextIO | None = None) -> None:
        super().__init__(file)
        self.name = name


class NamedPrintLoggerFactory:
    """`logger_factory` for `structlog.configure`: `structlog.get_logger("wasupd.runner")`
    passes its name here (positional arguments go to the factory), and the logger keeps it."""

    def __init__(self, file: TextIO | None = None) -> None:
        self._file = file

    def __call__(self, *args: Any) -> NamedPrintLogger:
        return NamedPrintLogger(str(args[0]) if args else "wasupd", self._file)


def configure_logging(
    level: str = "info", fmt: Literal["auto", "json", "console"] = "auto"
) -> None:
    """Configure structlog (and stdlib logging, for libraries) for the daemon."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,  # reads `NamedPrintLogger.name`
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=NamedPrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries log through stdlib logging (asyncio, pyppeteer, aiohttp): the same renderer, so
    # journald gets one format. Only their warnings and errors: pyppeteer logs every protocol
    # message at INFO/DEBUG.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


# What pyppeteer leaves behind when a browser goes away with DevTools calls in flight (its
# detach of the page session at close, a call racing a crash): futures nobody awaits any more.
# Expected on every stop and crash, which the runner already reports; not worth a log error.
_LATE_DEVTOOLS_ERRORS = ("Target closed", "No session with given id", "Connection closed")


def loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's handler for exceptions nobody retrieved: a structured log line, and late
    DevTools errors of a browser that is already gone only at debug level."""
    exc = context.get("exception")
    log = structlog.get_logger("wasupd.asyncio")
    if exc is not None and any(m in str(exc) for m in _LATE_DEVTOOLS_ERRORS):
        log.debug("devtools_error_after_close", error=str(exc))
        return
    log.error(
        "unhandled_async_error",
        message=context.get("message", ""),
        error=repr(exc) if exc is not None else None,
        exc_info=exc,
    )


def set_level(level: str) -> None:
    """Change the level live (SIGHUP)."""
    cfg = structlog.get_config()
    structlog.configure(
        processors=cfg["processors"],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=cfg["logger_factory"],
        cache_logger_on_first_use=False,
    )
