"""structlog configuration, done once in the daemon's entry point.

JSON lines when stderr is not a TTY (journald, files), the console renderer on a TTY.
`merge_contextvars` comes first so `session` and `rpc_id` bound with contextvars appear on
every line logged while they are bound.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


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
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    # pyppeteer logs every protocol message at INFO/DEBUG; keep only its warnings.
    logging.getLogger("pyppeteer").setLevel(logging.WARNING)


def set_level(level: str) -> None:
    """Change the level live (SIGHUP)."""
    cfg = structlog.get_config()
    structlog.configure(
        processors=cfg["processors"],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=cfg["logger_factory"],
        cache_logger_on_first_use=False,
    )
