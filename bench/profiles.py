"""Profile archive benchmark: seal/unseal throughput beside raw AES-GCM over the same bytes,
archive vs live size, and how long a checkpoint stalls the event loop.

    python bench/profiles.py [--mib 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wasupd.profiles import archive
from wasupd.profiles.keys import generate_key_file, load_keyring
from wasupd.profiles.lifecycle import SealedProfiles, tree_size


def make_profile(root: Path, mib: int) -> None:
    """A profile after a day of traffic: LevelDB-like IndexedDB (half compressible), local
    storage, and caches (which the archive leaves out)."""
    idb = root / "Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb"
    idb.mkdir(parents=True)
    for i in range(mib // 4):
        data = (
            os.urandom(2 << 20)
            + (b'{"id":"3EB0%08d","body":"hello there","t":1700000000,"ack":3}' % i) * 33000
        )
        (idb / f"{i:06d}.ldb").write_bytes(data[: 4 << 20])
    (root / "Default/Local Storage/leveldb").mkdir(parents=True)
    (root / "Default/Local Storage/leveldb/000003.log").write_bytes(b"WA" * (256 << 10))
    (root / "Local State").write_text("{}")
    cache = root / "Default/Cache/Cache_Data"
    cache.mkdir(parents=True)
    for i in range(40):
        (cache / f"f_{i:06x}").write_bytes(os.urandom(1 << 20))


def best_of(fn, n: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def loop_stall_during_checkpoint(hooks: SealedProfiles) -> tuple[float, float]:
    """(max loop lag ms, checkpoint seconds) while a checkpoint runs."""
    lags: list[float] = []
    done = False

    async def probe() -> None:
        while not done:
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append((time.perf_counter() - t0 - 0.005) * 1000)

    task = asyncio.ensure_future(probe())
    t0 = time.perf_counter()
    await hooks.checkpoint()
    took = time.perf_counter() - t0
    done = True
    await task
    return max(lags), took


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mib", type=int, default=64)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wasupd-bench-"))
    try:
        key = tmp / "key"
        generate_key_file(key)
        ring = load_keyring(key)
        live = tmp / "live"
        make_profile(live, args.mib)
        files = list(archive.essential_files(live))
        payload = sum((live / f).stat().st_size for f in files)
        blob = b"".join((live / f).read_bytes() for f in files)
        aead = AESGCM(ring.current)
        nonce = os.urandom(12)

        def raw() -> None:
            for i in range(0, len(blob), 1 << 20):
                aead.encrypt(nonce, blob[i : i + (1 << 20)], b"")

        t_raw = best_of(raw)
        t_seal = best_of(lambda: archive.seal_dir(live, tmp / "a.wasup", ring, "s"))
        t_unseal = best_of(
            lambda: (
                shutil.rmtree(tmp / "out", ignore_errors=True),
                archive.unseal(tmp / "a.wasup", tmp / "out", ring, "s"),
            )
        )
        mb = payload / 1e6
        print(f"payload (essential files): {mb:.1f} MB")
        print(f"{'':26}{'MB/s':>10}{'ratio to raw':>14}")
        print(f"{'raw AES-256-GCM':26}{mb / t_raw:>10.0f}{1.0:>14.2f}")
        print(f"{'seal (tar+zlib+AES-GCM)':26}{mb / t_seal:>10.0f}{t_seal / t_raw:>14.2f}")
        print(f"{'unseal (verify+extract)':26}{mb / t_unseal:>10.0f}{t_unseal / t_raw:>14.2f}")
        print(
            f"live profile {tree_size(live) / 1e6:.1f} MB -> archive {(tmp / 'a.wasup').stat().st_size / 1e6:.1f} MB"
            " (caches left out, compressible data compressed)"
        )
        hooks = SealedProfiles(
            "s", archive_path=tmp / "c.wasup", live_dir=live, key_file=key, quota_mib=0
        )
        lag, took = asyncio.run(loop_stall_during_checkpoint(hooks))
        print(
            f"checkpoint of the running profile: {took:.2f} s; worst event-loop stall {lag:.1f} ms (target < 100)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
