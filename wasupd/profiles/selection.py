"""Which parts of a Chromium profile are sealed, and which are caches that may be thrown away.

Measured with Chromium 156 (docs/profiles.md "What is sealed"): a page's IndexedDB and Local
Storage come back intact from `Default/IndexedDB` + `Default/Local Storage` alone. A service
worker registration survives only with both `Service Worker/Database` and its
`Service Worker/ScriptCache`; with the database alone Chromium drops the registration (the page
registers it again). Both are small, so both are kept: the page finds its worker as it left it.
`Service Worker/CacheStorage` (the app's offline copy of itself) is large and is fetched again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Units of consistency: each entry is copied as a whole by a checkpoint (a LevelDB and its
# files, a SQLite database and its journal), and together they are what the archive holds.
ESSENTIAL_UNITS: tuple[tuple[str, ...], ...] = (
    ("Local State",),
    ("Default/Preferences",),
    ("Default/IndexedDB",),  # WhatsApp's link credentials and chats
    ("Default/Local Storage",),
    ("Default/Session Storage",),
    ("Default/WebStorage",),  # storage buckets and their quota database
    ("Default/Service Worker/Database", "Default/Service Worker/ScriptCache"),
    ("Default/Cookies", "Default/Cookies-journal"),
)
ESSENTIAL = tuple(path for unit in ESSENTIAL_UNITS for path in unit)

# Never sealed even inside an essential dir: locks, Chromium's own logs, temp files.
SKIP_NAMES = frozenset(
    {
        "LOCK",
        "LOG",
        "LOG.old",
        "SingletonLock",
        "SingletonCookie",
        "SingletonSocket",
        ".wasupd.lock",
    }
)
SKIP_SUFFIXES = (".tmp",)

# Pruned from a live profile over its quota: everything here is fetched or rebuilt on demand.
CACHE_DIRS = (
    "Default/Cache",
    "Default/Code Cache",
    "Default/GPUCache",
    "Default/DawnGraphiteCache",
    "Default/DawnWebGPUCache",
    "Default/Service Worker/CacheStorage",
    "Default/Shared Dictionary/cache",
    "GPUPersistentCache",
    "GrShaderCache",
    "GraphiteDawnCache",
    "ShaderCache",
    "component_crx_cache",
    "Crashpad",
    "Crash Reports",
)


def is_skipped(name: str) -> bool:
    """True for file names never sealed (locks, logs, temp files)."""
    return name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES)


def unit_files(root: Path, unit: tuple[str, ...]) -> Iterator[Path]:
    """The regular files of one unit (relative to `root`, sorted); symlinks are never followed."""
    for rel in unit:
        top = root / rel
        if top.is_symlink():
            continue
        if top.is_file():
            if not is_skipped(top.name):
                yield Path(rel)
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                if not is_skipped(name) and path.is_file() and not path.is_symlink():
                    yield path.relative_to(root)


def essential_files(root: Path) -> Iterator[Path]:
    """Every file of a profile worth sealing (relative paths), caches and locks excluded."""
    for unit in ESSENTIAL_UNITS:
        yield from unit_files(root, unit)
