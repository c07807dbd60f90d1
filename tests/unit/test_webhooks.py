"""Webhook signing, retry rules and backoff, and fan-out to per-session URLs (no network)."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from pathlib import Path

import pytest

from tests.helpers.postgres import StoreTarget
from wasupd.config import WebhooksConfig
from wasupd.errors import ConfigError
from wasupd.messaging.webhooks import Webhooks, read_secret, retry_delay, retryable, sign


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    """A receiver verifies with the documented recipe; a changed body or timestamp does not verify."""
    body, ts = b'{"id":"d1"}', "1795593295"
    expected = "sha256=" + hmac.new(b"k", b"1795593295." + body, hashlib.sha256).hexdigest()
    assert sign(b"k", ts, body) == expected
    assert sign(b"k", ts, body + b" ") != expected and sign(b"k", "1795593296", body) != expected


def test_only_server_errors_timeouts_and_throttling_are_retried() -> None:
    """5xx, 408 and 429 are retried; every other 4xx is final."""
    assert [s for s in (400, 401, 403, 404, 408, 410, 422, 429, 500, 502, 503) if retryable(s)] == [
        408,
        429,
        500,
        502,
        503,
    ]


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    """Delays double from backoff_initial (+-20 %), never beyond backoff_max (+20 %)."""
    cfg = WebhooksConfig(backoff_initial=2.0, backoff_max=60.0)
    rng = random.Random(4)
    for attempts, base in ((1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0), (40, 60.0)):
        delays = [retry_delay(cfg, attempts, rng) for _ in range(200)]
        assert base * 0.8 <= min(delays) and max(delays) <= base * 1.2
        assert max(delays) - min(delays) > base * 0.2  # jittered, not constant


def test_unreadable_secret_is_a_config_error(tmp_path: Path) -> None:
    """A missing secret file names the key to fix."""
    with pytest.raises(ConfigError, match=r"webhooks\.secret_file"):
        read_secret(str(tmp_path / "missing"))
    (tmp_path / "s").write_text("  abc\n")
    assert read_secret(str(tmp_path / "s")) == b"abc"


async def test_events_fan_out_to_daemon_and_session_urls_with_their_own_ids(
    store_target: StoreTarget,
) -> None:
    """One delivery per URL (daemon and session), distinct ids; unsubscribed event types are dropped."""
    db = await store_target.open()
    try:
        cfg = WebhooksConfig(url="http://127.0.0.1:9/a", events=["message"])
        hooks = Webhooks(cfg, db)  # not started: deliveries stay queued
        await hooks.enqueue("message", {"body": "hi"}, extra_url="http://127.0.0.1:9/b")
        await hooks.enqueue("message", {"body": "again"}, extra_url="http://127.0.0.1:9/a")
        await hooks.enqueue("ack", {"id": "m1"}, extra_url="http://127.0.0.1:9/b")
        rows = await db.fetchall("SELECT id, url, payload FROM webhook_deliveries ORDER BY url")
    finally:
        await db.close()
    assert sorted(r["url"][-1] for r in rows) == ["a", "a", "b"]
    assert len({r["id"] for r in rows}) == 3
    assert all(json.loads(r["payload"])["id"] == r["id"] for r in rows)
