"""Watchdog decisions as pure logic: resource limits, liveness probing, the QR hourly limit."""

from __future__ import annotations

import dataclasses

from wasupd.config import HealthConfig
from wasupd.supervision.seams import TreeUsage
from wasupd.watchdogs.policy import (
    CPU_SAMPLES,
    MIB,
    Limits,
    LivenessPolicy,
    QrLimiter,
    ResourcePolicy,
    hang_reason,
)

HEALTH = HealthConfig(silence_timeout=300, probe_interval=60, probe_timeout=20)


def limits(**kw: float) -> Limits:
    base = {"memory_mib": 0, "fds": 0, "processes": 0, "cpu_percent": 0.0}
    return Limits(**{**base, **kw})  # type: ignore[arg-type]


def test_memory_reason_names_pss_and_limit() -> None:
    """PSS over the limit gives the reason users read, in MiB."""
    p = ResourcePolicy(limits(memory_mib=1536))
    assert p.check(TreeUsage(pss_bytes=1536 * MIB)) is None
    assert p.check(TreeUsage(pss_bytes=1612 * MIB)) == "watchdog: memory 1612 MiB > limit 1536 MiB"


def test_zero_limits_are_off() -> None:
    """A limit of 0 never trips, however large the sample."""
    p = ResourcePolicy(limits())
    huge = TreeUsage(pss_bytes=1 << 40, fds=10**6, processes=10**4, cpu_percent=800)
    assert all(p.check(huge) is None for _ in range(10))


def test_cpu_spikes_reset_the_count() -> None:
    """CPU trips after CPU_SAMPLES samples over the limit in a row; a normal sample resets."""
    p = ResourcePolicy(limits(cpu_percent=50))
    hot, cool = TreeUsage(cpu_percent=90), TreeUsage(cpu_percent=10)
    assert [p.check(hot) for _ in range(CPU_SAMPLES - 1)] == [None] * (CPU_SAMPLES - 1)
    assert p.check(cool) is None
    results = [p.check(hot) for _ in range(CPU_SAMPLES)]
    assert results[:-1] == [None] * (CPU_SAMPLES - 1) and results[-1] is not None


def test_hang_reason_names_the_timeout() -> None:
    """The hang reason says how long DevTools was given."""
    assert hang_reason(30.0) == "watchdog: DevTools did not answer within 30 s"


def test_liveness_probes_only_a_silent_page() -> None:
    """No probe while events flow; one after silence_timeout; then not again within the interval."""
    lp = LivenessPolicy()
    assert not lp.due(1000.0, 900.0, HEALTH)
    assert lp.due(1000.0, 699.0, HEALTH)
    assert lp.probed(1000.0, ok=True) == "ok"
    assert not lp.due(1059.0, 0.0, HEALTH) and lp.due(1060.0, 0.0, HEALTH)


def test_liveness_reload_then_restart() -> None:
    """First failure: reload; the next probe is due after probe_interval even if the page talks;
    a second failure: restart."""
    lp = LivenessPolicy()
    assert lp.probed(0.0, ok=False) == "reload"
    assert lp.due(60.0, 59.0, HEALTH)  # activity after the reload does not cancel the check
    assert lp.probed(60.0, ok=False) == "restart"


def test_liveness_only_a_probe_that_answers_clears_the_pending_reload() -> None:
    """After a reload the next probe is due whatever the page says; a success starts over at
    reload, so a later failure reloads again before restarting."""
    lp = LivenessPolicy()
    lp.probed(0.0, ok=False)
    assert lp.due(60.0, 59.0, HEALTH)
    assert lp.probed(60.0, ok=True) == "ok"
    assert not lp.due(120.0, 119.0, HEALTH)
    assert lp.probed(400.0, ok=False) == "reload"


def test_qr_limiter_blocks_until_the_oldest_leaves_the_hour() -> None:
    """The (n+1)-th generation within an hour is refused until an hour after the first."""
    q = QrLimiter()
    t0 = 1_700_000_000.0  # 22:13:20 UTC
    assert q.admit(t0, 2) and q.admit(t0 + 100, 2)
    assert not q.admit(t0 + 200, 2)
    assert q.blocked(t0 + 3599) and not q.blocked(t0 + 3600)
    assert q.reason() == "QR limit: 2 generations in the last hour; try again after 23:14 UTC"
    assert q.admit(t0 + 3600, 2)


def test_qr_limiter_zero_is_unlimited() -> None:
    """max_per_hour = 0 never refuses."""
    q = QrLimiter()
    assert all(q.admit(float(t), 0) for t in range(100))


def test_usage_as_dict_is_dataclasses_asdict() -> None:
    """`TreeUsage.as_dict` (what status and metrics show per session) has every field, as
    `dataclasses.asdict` gives them: a field added later cannot be left out of status."""
    usage = TreeUsage(pss_bytes=7 << 20, fds=41, processes=6, cpu_percent=2.5)
    assert usage.as_dict() == dataclasses.asdict(usage)
