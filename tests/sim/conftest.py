"""Fixtures for the simulator tests: a simulator per test, one Chromium per test module.

The shared browser lives in its own temp dir (outside the per-test leak check, since it
outlives tests) and is stopped, swept and checked for leftovers when the module ends. Each
test gets a page in a fresh incognito context, i.e. a fresh profile with its own IndexedDB.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from tests.helpers.sim import browser_on, new_page
from wasupd.sim import SimServer

A, B, C = "15550001111", "15550002222", "15550003333"
TIME_FACTOR = 0.05  # first QR ref 3 s, later ones 1 s, sync 0.25 s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Any]:
    """One headless Chromium for the whole module."""
    root = Path(tempfile.mkdtemp(prefix="wasupd-simtest-"))
    try:
        async with browser_on(root / "profile") as b:
            yield b
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="module")
async def sim() -> AsyncIterator[SimServer]:
    """A simulator with three registered old-world accounts A, B, C (numbers only; the LID
    tests register migrated ones)."""
    async with SimServer(time_factor=TIME_FACTOR) as s:
        for phone, name in ((A, "Alice"), (B, "Bob"), (C, "Carol")):
            await s.control("add_account", {"phone": phone, "name": name, "lid": False})
        yield s


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Any) -> AsyncIterator[Any]:
    """A page with a fresh profile (incognito context), with the event recorder attached."""
    p = await new_page(browser)
    try:
        yield p
    finally:
        async with asyncio.timeout(10):
            await p.target.browserContext.close()
