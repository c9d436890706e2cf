"""The sync sender's reconnect back-off (openvsm.sync.backoff), virtual time."""

from __future__ import annotations

from openvsm.sync.backoff import ReconnectBackoff


def test_failed_attempts_double_up_to_the_maximum() -> None:
    b = ReconnectBackoff(0.05, 1.0)
    assert b.next_deadline() == -float("inf")  # the first attempt at once
    waits = []
    t = 0.0
    for _ in range(8):
        deadline = b.connect_failed(t)
        waits.append(round(deadline - t, 6))
        t = deadline
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert b.next_deadline() == t


def test_a_connection_starts_afresh_and_a_refusal_waits_longest() -> None:
    b = ReconnectBackoff(0.05, 1.0)
    b.connect_failed(0.0)
    b.connect_failed(0.05)
    b.connected()
    assert b.closed(10.0, refused=False) == 10.05
    assert round(b.connect_failed(10.05), 6) == 10.1  # afresh: min_s again
    b.connected()
    assert b.closed(20.0, refused=True) == 21.0
