"""`bench/footprint.py --breakdown`: where one session's memory goes, process by process.

For each build, one browser launched as the daemon launches it (`services.build_request`, the
daemon's flags, its launcher and DevTools pipe) opens the simulator's page (64 MiB of page heap)
and waits for the QR, as in the side-by-side run. Then, in this order (the DevTools dump forces
a garbage collection, so the kernel's figures are read first):

1. /proc/<pid>/smaps_rollup of every process of the tree (bench/footprint_tree.py): PSS split
   into anonymous, file-backed and shared-memory pages, and USS;
2. `Runtime.getHeapUsage` and `Memory.getDOMCounters` of the page;
3. one memory-infra dump (`Tracing.start` with the `disabled-by-default-memory-infra`
   category, `Tracing.requestMemoryDump`): each process's allocators as Chromium accounts
   them (malloc, PartitionAlloc, V8 by heap space, Oilpan's `blink_gc`, cc, gpu, skia...).

The page's own script from the daemon (inject.js) is not injected here: the page is the
simulator's as loaded, which is what the side-by-side run's QR state also shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from bench.footprint_tree import Mem, TreeMem, adopted_crashpads, kind_order, measure
from bench.footprint_wwebjs import SETTLE
from bench.sessions_bare import READY_JS
from wasupd.config import BrowserBuild, parse_config
from wasupd.services import build_request
from wasupd.sim import SimServer
from wasupd.supervision.process import ChromiumLauncher
from wasupd.supervision.reaper import become_subreaper, reap_orphans
from wasupd.supervision.seams import SessionOptions

MIB = 1 << 20
MEMORY_INFRA = {
    "traceConfig": {
        "includedCategories": ["disabled-by-default-memory-infra"],
        "excludedCategories": ["*"],
        "memoryDumpConfig": {"triggers": []},  # no periodic dumps: only the one requested
    },
    "transferMode": "ReportEvents",
}
# Columns of the allocator table; every other top-level allocator is summed into "other".
ALLOCATORS = ("malloc", "partition_alloc", "v8", "blink_gc", "cc", "gpu", "skia", "shared_memory")
V8_SPACES = (
    "new_space",
    "old_space",
    "code_space",
    "large_object_space",
    "new_large_object_space",
    "trusted_space",
)


async def breakdown(root: Path) -> None:
    """Both builds, one after the other, each printed as a table."""
    become_subreaper()  # the full build's crashpad handlers come to us, as to the daemon
    async with SimServer(time_factor=1.0) as sim:
        for build in ("full", "headless-shell"):
            await one_build(sim.url, build, root / build)


async def one_build(url: str, build: BrowserBuild, root: Path) -> None:
    """Launch, load to the QR, settle, measure (kernel first), print, stop."""
    config = parse_config({"browser": {"url": url}})
    req = build_request(config, "breakdown", root / "profile", SessionOptions(build=build))
    handle = await ChromiumLauncher(root / "logs").launch(req)
    try:
        await handle.page.goto(url)
        await handle.page.waitForFunction(READY_JS, timeout=60000)
        await asyncio.sleep(SETTLE)
        crashpads = [p.pid for p in adopted_crashpads()]
        tree = await asyncio.to_thread(lambda: measure(handle.pid, root, crashpads, driver=False))
        client = handle.page._client
        heap = await client.send("Runtime.getHeapUsage")
        dom = await client.send("Memory.getDOMCounters")
        dumps = await memory_dump(handle.browser._connection)
    finally:
        await handle.stop(10)
        await asyncio.to_thread(end_adopted)
        shutil.rmtree(root, ignore_errors=True)
    print_build(build, tree, heap, dom, dumps)


async def memory_dump(conn: Any, timeout: float = 30.0) -> dict[int, dict[str, Any]]:
    """pid -> allocator dumps of one detailed memory-infra dump of every process."""
    events: list[dict[str, Any]] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    conn.on("Tracing.dataCollected", lambda p: events.extend(p["value"]))
    conn.on("Tracing.tracingComplete", lambda _p: done.done() or done.set_result(None))
    async with asyncio.timeout(timeout):
        await conn.send("Tracing.start", MEMORY_INFRA)
        await conn.send("Tracing.requestMemoryDump", {"levelOfDetail": "detailed"})
        await conn.send("Tracing.end")
        await done
    out: dict[int, dict[str, Any]] = {}
    for ev in events:
        allocators = ev.get("args", {}).get("dumps", {}).get("allocators")
        if ev.get("ph") == "v" and allocators and "global" not in allocators:
            out.setdefault(int(ev["pid"]), {}).update(allocators)
    return out


def end_adopted() -> None:
    """Kill and reap the crashpad handlers this process adopted."""
    left = adopted_crashpads()
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, 10)
    reap_orphans()  # any other helper that came to this subreaper


def size(allocators: dict[str, Any], name: str) -> int:
    """The `size` attribute of one allocator dump, in bytes (0 when absent)."""
    attr = allocators.get(name, {}).get("attrs", {}).get("size")
    return int(attr["value"], 16) if attr else 0


def labelled(tree: TreeMem, dumps: dict[int, dict[str, Any]]) -> Iterator[tuple[str, int]]:
    """(label, pid) in kind order; the renderer holding the page's heap is "renderer (page)"."""
    v8 = {pid: size(dumps.get(pid, {}), "v8") for pid, k in tree.pids.items() if k == "renderer"}
    page = max(v8, key=lambda pid: v8[pid]) if v8 else -1
    for pid, kind in sorted(tree.pids.items(), key=lambda item: (kind_order(item[1]), item[0])):
        if kind != "renderer":
            yield kind, pid
        else:
            yield ("renderer (page)" if pid == page else "renderer (spare)"), pid


def print_build(
    build: str,
    tree: TreeMem,
    heap: dict[str, Any],
    dom: dict[str, Any],
    dumps: dict[int, dict[str, Any]],
) -> None:
    """The per-process table (kernel and Chromium's own accounts), then the page's heap."""
    print(f"\n[{build}] one session at the QR, MiB; PSS = anon + file + shmem (smaps_rollup)")
    head = ["process", "PSS", "anon", "file", "shmem", "USS", *ALLOCATORS, "other"]
    print("| " + " | ".join(head) + " |")
    print("|---" * len(head) + "|")
    for label, pid in labelled(tree, dumps):
        print(row(label, tree.each[pid], dumps.get(pid, {})))
    print(row("**total**", tree.total, {}))
    print_heap(heap, dom, page_dump(tree, dumps))


def row(label: str, mem: Mem, allocators: dict[str, Any]) -> str:
    """One markdown table row."""
    kernel = [mem.pss, mem.pss_anon, mem.pss_file, mem.pss_shmem, mem.uss]
    tops = {n: size(allocators, n) for n in allocators if "/" not in n}
    named = [tops.get(n, 0) for n in ALLOCATORS]
    other = sum(tops.values()) - sum(named)
    cells = [f"{v / MIB:.1f}" for v in kernel]
    cells += [f"{v / MIB:.1f}" if allocators else "" for v in [*named, other]]
    return "| " + " | ".join([label, *cells]) + " |"


def page_dump(tree: TreeMem, dumps: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The allocator dumps of the renderer holding the page."""
    for label, pid in labelled(tree, dumps):
        if label == "renderer (page)":
            return dumps.get(pid, {})
    return {}


def print_heap(heap: dict[str, Any], dom: dict[str, Any], page: dict[str, Any]) -> None:
    """The page's V8 heap by space, Oilpan, and the DevTools heap and DOM counters."""
    spaces = ", ".join(f"{s} {size(page, f'v8/main/heap/{s}') / MIB:.1f}" for s in V8_SPACES)
    print(f"  page's V8 heap (memory-infra, MiB): {spaces}")
    print(
        f"  read-only space shared by the process {size(page, 'v8/shared') / MIB:.1f},"
        f" Oilpan (blink_gc) {size(page, 'blink_gc') / MIB:.1f},"
        f" PartitionAlloc {size(page, 'partition_alloc') / MIB:.1f}"
    )
    print(
        f"  Runtime.getHeapUsage: used {heap['usedSize'] / MIB:.1f} of"
        f" {heap['totalSize'] / MIB:.1f} MiB, embedder heap"
        f" {heap.get('embedderHeapUsedSize', 0) / MIB:.1f}, backing stores"
        f" {heap.get('backingStorageSize', 0) / MIB:.2f};"
        f" Memory.getDOMCounters: {dom['documents']} documents, {dom['nodes']} nodes,"
        f" {dom['jsEventListeners']} listeners"
    )
