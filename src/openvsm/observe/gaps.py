"""Heartbeat gaps as hamgr sees them: a fixed-bucket histogram per interface.

A gap is the time between two consecutive heartbeats (request or response)
received from the peer on one interface: how close the pair came to the loss
interval. hamgr calls ``HeartbeatGaps.heard(iface, now, wall)`` on each such
frame; that costs one subtraction, one ``bisect`` and a deque append, never
I/O, so it may run on the heartbeat path. cfgmgr pulls ``snapshot()`` over
IPC at scrape time (``openvsm.observe.export``).

The first heartbeat after a silence longer than ``reset_after`` (the peer
was gone: loss, reload) starts a new run instead of recording the silence as
one huge gap: the loss is already visible as a role change or a missing
standby, and one outlier would hide every later sample in the histogram.
"""

from __future__ import annotations

import bisect
import collections
import math
from typing import Final

from openvsm.observe.export import GapHistogramSnapshot, GapSample

# Seconds; they cover the fast profile (100 ms heartbeats, 600 ms loss) to the
# seed's longest loss interval (30 s).
GAP_BUCKETS: Final = (
    0.05,
    0.1,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
)
RECENT_SAMPLES: Final = 240  # the status page's live chart


class GapHistogram:
    """Cumulative-on-export histogram of gaps (Prometheus ``le`` buckets)."""

    def __init__(self, buckets: tuple[float, ...] = GAP_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # last: above the largest bound (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def snapshot(self) -> GapHistogramSnapshot:
        cumulative: list[int] = []
        running = 0
        for n in self.counts[:-1]:
            running += n
            cumulative.append(running)
        return GapHistogramSnapshot(
            buckets=list(self.buckets), cumulative=cumulative, count=self.count, sum=self.sum
        )


class HeartbeatGaps:
    """Per-interface gap histograms, the largest gap and the recent samples."""

    def __init__(self, interfaces: tuple[str, ...], reset_after: float) -> None:
        self.reset_after = reset_after
        self.hist = {name: GapHistogram() for name in interfaces}
        self.last_heard: dict[str, float] = {name: -math.inf for name in interfaces}
        self.max_gap = dict.fromkeys(interfaces, 0.0)
        self.recent: dict[str, collections.deque[GapSample]] = {
            name: collections.deque(maxlen=RECENT_SAMPLES) for name in interfaces
        }

    def heard(self, iface: str, now: float, wall: float) -> None:
        """A heartbeat from the peer arrived on ``iface`` at monotonic ``now``."""
        last = self.last_heard.get(iface)
        if last is None:
            return  # not an interface of ours: ignore
        self.last_heard[iface] = now
        gap = now - last
        if not math.isfinite(gap) or gap > self.reset_after:
            return
        self.hist[iface].observe(gap)
        if gap > self.max_gap[iface]:
            self.max_gap[iface] = gap
        self.recent[iface].append(GapSample(time=wall, gap=gap))

    def silence(self, iface: str, now: float) -> float | None:
        """Seconds since the last heartbeat on ``iface`` (None: none heard yet)."""
        last = self.last_heard.get(iface, -math.inf)
        return None if not math.isfinite(last) else now - last

    def snapshot(self, iface: str) -> GapHistogramSnapshot:
        return self.hist[iface].snapshot()
