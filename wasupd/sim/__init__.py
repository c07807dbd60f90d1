"""A local WhatsApp Web simulator: a real web server and page for tests, demos and offline scripts.

`SimServer` serves the page and the control API; `SimClient` drives the control API over HTTP.
docs/simulator.md describes what is modelled; docs/whatsapp-web.md holds the facts about real
WhatsApp Web it reproduces.
"""

from __future__ import annotations

from wasupd.sim.client import SimClient, SimError
from wasupd.sim.server import SimServer

__all__ = ["SimClient", "SimError", "SimServer"]
