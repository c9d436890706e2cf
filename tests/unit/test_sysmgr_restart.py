"""sysmgr's crash-loop restart policy on virtual time (openvsm.sysmgr.restart)."""

from __future__ import annotations

from openvsm.sysmgr.restart import (
    BACKOFF_MAX,
    BACKOFF_START,
    CRASH_LOOP_COUNT,
    CRASH_LOOP_WINDOW,
    CrashLoop,
    Restart,
    RestartPolicy,
)


def crash_at(p: RestartPolicy, t: float, *, ran: float = 1.0) -> Restart | CrashLoop:
    p.started(t - ran)
    return p.exited(t)


def test_first_crash_restarts_at_once_then_backs_off_doubling() -> None:
    p = RestartPolicy("cfgmgr")
    assert p.next_deadline() == float("inf")
    assert crash_at(p, 10.0) == Restart(10.0)
    assert p.next_deadline() == 10.0
    assert crash_at(p, 11.0) == Restart(11.0 + 2 * BACKOFF_START)
    assert crash_at(p, 12.0) == Restart(12.0 + 4 * BACKOFF_START)
    p.started(12.2)
    assert p.next_deadline() == float("inf")  # running: nothing to wait for


def test_backoff_is_capped() -> None:
    p = RestartPolicy("vemmgr")
    delays = []
    t = 0.0
    for _ in range(12):
        t += CRASH_LOOP_WINDOW  # never a loop: every crash alone in its window
        p.crashes = [t - 1.0]  # but a second crash in the window: backs off
        out = crash_at(p, t)
        assert isinstance(out, Restart)
        delays.append(round(out.at - t, 6))
    assert delays[0] == BACKOFF_START and max(delays) == BACKOFF_MAX == delays[-1]


def test_crash_loop_within_the_window() -> None:
    p = RestartPolicy("hamgr")
    for i in range(CRASH_LOOP_COUNT - 1):
        assert isinstance(crash_at(p, 100.0 + i), Restart)
    out = crash_at(p, 100.0 + CRASH_LOOP_COUNT)
    assert out == CrashLoop(f"hamgr crashed {CRASH_LOOP_COUNT} times in {CRASH_LOOP_WINDOW:.0f} s")


def test_old_crashes_are_forgotten() -> None:
    p = RestartPolicy("hamgr")
    for i in range(CRASH_LOOP_COUNT - 1):
        crash_at(p, float(i))
    out = crash_at(p, CRASH_LOOP_WINDOW + CRASH_LOOP_COUNT)
    assert out == Restart(CRASH_LOOP_WINDOW + CRASH_LOOP_COUNT)  # alone in the window: at once


def test_manual_restarts_are_not_crashes() -> None:
    p = RestartPolicy("mgmt")
    for i in range(3 * CRASH_LOOP_COUNT):
        p.started(float(i))
        assert p.exited(float(i) + 0.5, manual=True) == Restart(float(i) + 0.5)
    assert p.crashes == []


def test_a_stable_run_starts_the_backoff_afresh() -> None:
    p = RestartPolicy("cfgmgr")
    crash_at(p, 1.0)
    crash_at(p, 2.0)
    crash_at(p, 3.0)  # backoff now 8 x start
    out = crash_at(p, 40.0, ran=31.0)
    assert out == Restart(40.0 + BACKOFF_START)
