"""The VEM's port-channel report pacing (openvsm.vem.lacp.ReportPacer), virtual time."""

from __future__ import annotations

from openvsm.vem.lacp import ReportPacer


def test_a_changed_report_goes_at_once_an_unchanged_one_every_interval() -> None:
    p = ReportPacer(5.0)
    assert p.due(("a", 1), 0.0)  # the first one
    p.sent(("a", 1), 0.0)
    assert p.next_deadline() == 5.0
    assert not p.due(("a", 1), 0.25)
    assert not p.due(("a", 1), 4.999)
    assert p.due(("a", 2), 0.5)  # changed (report, active or epoch): at once
    p.sent(("a", 2), 0.5)
    assert not p.due(("a", 2), 5.0)
    assert p.due(("a", 2), 5.5)  # the interval since the last one sent


def test_reset_sends_the_next_report_at_once() -> None:
    p = ReportPacer(5.0)
    p.sent("r", 10.0)
    assert not p.due("r", 11.0)
    p.reset()  # detached meanwhile
    assert p.due("r", 11.0)
