"""What a check says: one `Finding` per thing checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict: `what` was checked, `detail` says what was found or what to do."""

    level: Level
    what: str
    detail: str
