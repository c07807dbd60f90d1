"""Logging: one JSON format for our lines and for libraries', and asyncio's leftovers tamed."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from wasupd.logs import configure_logging, loop_exception_handler, set_level


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """Logging reset after the test (which calls `configure_logging` itself: stderr is only
    the captured one once the test runs)."""
    try:
        yield capsys
    finally:
        logging.getLogger().handlers.clear()
        structlog.reset_defaults()


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.strip()]


def test_library_warnings_are_json_lines_like_ours(json_logs: pytest.CaptureFixture[str]) -> None:
    """A library's stdlib warning comes out as a JSON line with level, logger and timestamp;
    its INFO chatter (pyppeteer's protocol traffic) does not come out at all."""
    configure_logging("info", "json")
    logging.getLogger("aiohttp.client").warning("retrying %s", "x")
    logging.getLogger("pyppeteer.connection").info("SEND: {...}")
    structlog.get_logger("wasupd").info("ours", session="a")
    out = lines(json_logs)
    assert [o["event"] for o in out] == ["retrying x", "ours"]
    assert out[0]["level"] == "warning" and out[0]["logger"] == "aiohttp.client"
    assert "timestamp" in out[0] and out[1]["session"] == "a"


def test_late_devtools_errors_are_quiet_and_others_are_logged(
    json_logs: pytest.CaptureFixture[str],
) -> None:
    """'Future exception was never retrieved' for a call to a browser that is gone is expected
    on every stop: not an error line. Any other unretrieved exception is one, with its trace."""
    configure_logging("info", "json")
    loop = asyncio.new_event_loop()
    try:
        late = RuntimeError("Protocol error Target.detachFromTarget: Target closed.")
        loop_exception_handler(loop, {"message": "never retrieved", "exception": late})
        assert lines(json_logs) == []
        loop_exception_handler(loop, {"message": "never retrieved", "exception": KeyError("k")})
        (out,) = lines(json_logs)
        assert out["event"] == "unhandled_async_error" and out["level"] == "error"
        assert "KeyError" in str(out["error"]) and "never retrieved" in str(out["message"])
    finally:
        loop.close()


def test_every_json_line_names_its_logger(json_logs: pytest.CaptureFixture[str]) -> None:
    """The name given to `structlog.get_logger` is the line's `logger`, also through `bind`
    and after a live level change (SIGHUP); a library's line keeps its stdlib name."""
    configure_logging("info", "json")
    structlog.get_logger("wasupd.runner").bind(session="a").info("browser_started")
    set_level("debug")
    structlog.get_logger("wasupd.rpc").debug("request")
    logging.getLogger("aiohttp.client").warning("retrying")
    out = lines(json_logs)
    assert [(o["event"], o["logger"]) for o in out] == [
        ("browser_started", "wasupd.runner"),
        ("request", "wasupd.rpc"),
        ("retrying", "aiohttp.client"),
    ]
    assert out[0]["session"] == "a"


def test_console_lines_name_their_logger(json_logs: pytest.CaptureFixture[str]) -> None:
    """The console renderer shows the name too (in brackets after the event)."""
    configure_logging("info", "console")
    structlog.get_logger("wasupd.profiles").warning("profile_key_created", path="/k")
    (line,) = json_logs.readouterr().err.splitlines()
    assert "profile_key_created" in line and "[wasupd.profiles]" in line and "path=/k" in line
