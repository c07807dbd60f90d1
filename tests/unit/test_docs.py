"""The generated references stay in step with the code, and every method of the contract is served."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from wasupd.protocol import METHODS
from wasupd.rpc.methods import documented_dispatcher

ROOT = Path(__file__).resolve().parents[2]


def test_generated_docs_are_current() -> None:
    """docs/configuration.md and docs/rpc.md equal what scripts/gen_docs.py generates now."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout


def test_every_contract_method_is_served_and_documented() -> None:
    """Every method name of the contract has a handler with a docstring."""
    d = documented_dispatcher()
    assert set(METHODS) == set(d.methods)
    assert all(m.doc for m in d.methods.values())
