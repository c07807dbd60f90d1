"""The service user's Python for tests that run wasupd as another user (`setpriv`).

The test run's own interpreter and its editable install are no use to that user when the
checkout sits in a directory it cannot enter (a clone under /root, any `mktemp -d`) or the
interpreter does (pyenv under /root). So once per test run this builds what the README's
systemd install builds: a virtualenv made with Debian's `/usr/bin/python3`, with wasupd installed
non-editable from a copy of this checkout, all under a 0755 directory in /tmp named with the
run's `TMP_PREFIX`. It is removed when the run ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.daemon import TMP_PREFIX

SYSTEM_PYTHON = Path("/usr/bin/python3")
REPO = Path(__file__).resolve().parents[2]
# What `pip install` needs from the checkout (the pyproject names README.md and the license).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "wasupd", "wasupctl")
# A cold pip cache downloads every dependency; a warm one takes about 20 s here.
INSTALL_TIMEOUT = 100.0


@dataclass(frozen=True, slots=True)
class ServiceEnv:
    """A virtualenv any user can run, with this checkout's wasupd installed in it."""

    root: Path

    @property
    def python(self) -> Path:
        """The virtualenv's interpreter (a link to Debian's /usr/bin/python3)."""
        return self.root / "venv" / "bin" / "python"

    @property
    def argv(self) -> list[str]:
        """The interpreter, importing only from the venv: `-P` keeps the cwd (maybe this
        checkout, readable or not) off `sys.path`."""
        return [str(self.python), "-P"]

    @property
    def wasupd(self) -> list[str]:
        """The argv prefix of `wasupd` from this environment."""
        return [*self.argv, "-m", "wasupd.daemon"]

    @property
    def site_packages(self) -> Path:
        """Where wasupd and its dependencies are installed."""
        return next((self.root / "venv" / "lib").glob("python3.*/site-packages"))


def _run(argv: list[str], what: str) -> None:
    # umask 022: a root with umask 077 would otherwise install files only root can read.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, umask=0o022, env=env
    )
    if out.returncode != 0:
        pytest.fail(f"{what} failed ({' '.join(argv)}):\n{out.stdout}{out.stderr}")


def build_service_env() -> ServiceEnv:
    """Make the environment: copy the sources, create the venv, `pip install` (not editable)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.fail(f"{SYSTEM_PYTHON} is missing: apt-get install -y python3 python3-venv")
    root = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}svc-"))
    root.chmod(0o755)  # mkdtemp makes it 0700: the other user must enter it
    try:
        src = root / "src"
        src.mkdir(mode=0o755)
        for name in SOURCES:
            path = REPO / name
            if path.is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
                shutil.copytree(path, src / name, ignore=ignore)
            else:
                shutil.copy(path, src / name)
        venv = [str(SYSTEM_PYTHON), "-m", "venv", str(root / "venv")]
        _run(venv, "creating the venv (apt-get install -y python3-venv if ensurepip is missing)")
        pip = [str(root / "venv" / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        _run([*pip, str(src)], "pip install of wasupd into the service user's venv")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return ServiceEnv(root)


@pytest.fixture(scope="session")
def service_env() -> Iterator[ServiceEnv]:
    """The service user's environment, built at its first use in the run, removed at the end."""
    env = build_service_env()
    yield env
    shutil.rmtree(env.root, ignore_errors=True)
