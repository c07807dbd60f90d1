"""A local WhatsApp Web simulator: a real web server and page for tests, demos and offline scripts."""

from __future__ import annotations

from wasupd.sim.server import SimServer

__all__ = ["SimServer"]
