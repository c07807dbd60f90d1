"""wasupd: a supervisor daemon that keeps many WhatsApp Web sessions online."""

from __future__ import annotations

__version__ = "0.1.0"
