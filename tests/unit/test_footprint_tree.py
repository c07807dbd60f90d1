"""bench/footprint_tree.py: Chromium's processes sorted into kinds, smaps_rollup read right."""

from __future__ import annotations

import os

import psutil
import pytest

from bench.footprint_tree import kind_of, rollup

MIB = 1 << 20
EXE = "/usr/lib/chromium/chromium"


@pytest.mark.parametrize(
    ("cmdline", "kind"),
    [
        ([EXE, "--headless=new", "--user-data-dir=/p"], "browser"),
        ([EXE, "--type=renderer", "--renderer-client-id=6"], "renderer"),
        (
            [EXE, "--type=renderer", "--top-chrome-webui", "--renderer-client-id=5"],
            "renderer (browser UI)",
        ),
        ([EXE, "--type=gpu-process", "--use-angle=swiftshader-webgl"], "gpu"),
        (
            ["/proc/self/exe", "--type=utility", "--utility-sub-type=storage.mojom.StorageService"],
            "storage",
        ),
        ([EXE, "--type=utility", "--utility-sub-type=network.mojom.NetworkService"], "network"),
        ([EXE, "--type=utility", "--utility-sub-type=audio.mojom.AudioService"], "audio"),
        (
            [EXE, "--type=utility", "--utility-sub-type=video_capture.mojom.VideoCaptureService"],
            "utility (other)",
        ),
        ([EXE, "--type=zygote", "--no-zygote-sandbox"], "zygote"),
        (["/usr/lib/chromium/chrome_crashpad_handler", "--monitor-self"], "crashpad"),
        (["/bin/sh", "-e", "/usr/bin/chromium-headless-shell", "--headless"], "wrapper"),
        # A helper that rewrote its title: one space-separated string, as /proc shows it.
        ([f"{EXE} --type=renderer --renderer-client-id=7"], "renderer"),
        (["/usr/bin/python3", "-m", "http.server"], "other"),
    ],
)
def test_kind_of_names_each_chromium_process(cmdline: list[str], kind: str) -> None:
    """Each process of a Chromium tree gets its kind from its `--type=` (and sub-type)."""
    assert kind_of(cmdline) == kind


def test_rollup_agrees_with_psutil_on_this_process() -> None:
    """PSS and USS from smaps_rollup match psutil's own reading of smaps (within 2 MiB: the
    two reads are not at the same instant), and PSS splits into anon + file + shmem."""
    ours = rollup(os.getpid())
    theirs = psutil.Process().memory_full_info()
    assert abs(ours.pss - theirs.pss) < 2 * MIB
    assert abs(ours.uss - theirs.uss) < 2 * MIB
    assert abs(ours.pss - (ours.pss_anon + ours.pss_file + ours.pss_shmem)) < MIB
    assert ours.processes == 1


def test_rollup_of_a_gone_process_raises() -> None:
    """A process that is gone is an OSError, which the tree measurement skips."""
    proc = psutil.Popen(["true"])
    proc.wait()
    with pytest.raises(OSError):
        rollup(proc.pid)
