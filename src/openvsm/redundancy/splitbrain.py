"""Split-brain resolution: which of two actives reloads (seed, DESIGN §3).

``choose_loser`` is a pure function of both sides' facts, always called with
the primary's side first, so the two actives (each building the arguments
from its own point of view) choose the same loser. Precedence:

1. module count: more modules wins;
2. last configuration time: later wins;
3. last standby->active switch: earlier (longer active) wins;
4. tie: the primary wins.

``Resolution`` is the bookkeeping of one resolution against one incarnation
(boot id) of the peer. Our ``ResolutionInfo`` is frozen when the resolution
starts and the decision is taken once, on the first peer info received, so
duplicated or later-disagreeing data from the peer cannot flip it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from openvsm.wire.messages import ResolutionInfo

RoleName = Literal["primary", "secondary"]


@dataclass(frozen=True)
class Side:
    module_count: int
    last_config_time: float
    last_active_time: float

    @classmethod
    def of(cls, info: ResolutionInfo) -> Side:
        return cls(info.module_count, info.last_config_time, info.last_active_time)


def decide(primary: Side, secondary: Side) -> tuple[RoleName, str]:
    """The loser and the criterion that decided it (for traces)."""
    p, s = primary, secondary
    if p.module_count != s.module_count:
        loser: RoleName = "primary" if p.module_count < s.module_count else "secondary"
        return loser, f"module count primary {p.module_count}, secondary {s.module_count}"
    if p.last_config_time != s.last_config_time:
        loser = "primary" if p.last_config_time < s.last_config_time else "secondary"
        return loser, (
            f"last configuration time primary {p.last_config_time:.3f}, "
            f"secondary {s.last_config_time:.3f}"
        )
    if p.last_active_time != s.last_active_time:
        loser = "primary" if p.last_active_time > s.last_active_time else "secondary"
        return loser, (
            f"last standby->active switch primary {p.last_active_time:.3f}, "
            f"secondary {s.last_active_time:.3f}"
        )
    return "secondary", "all equal: the primary wins the tie"


def choose_loser(primary: Side, secondary: Side) -> RoleName:
    return decide(primary, secondary)[0]


@dataclass
class Resolution:
    peer_boot: int
    ours: ResolutionInfo
    ifaces: set[str] = field(default_factory=set)  # Iface values we heard the peer on
    peer_info: ResolutionInfo | None = None
    peer_seq: int = -1
    loser: RoleName | None = None  # set once decided
    next_send: float = float("inf")
    last_heard: float = float("-inf")  # last frame of any kind from peer_boot
    last_reply: float = float("-inf")  # replies are rate-limited: two replies never ping-pong
    logs_nonce: int | None = None  # the winner: the loser's logs taken in this resolution

    def offer(self, info: ResolutionInfo, seq: int) -> bool:
        """Record peer data (latest by frame seq); True if it was the first."""
        first = self.peer_info is None
        if first or seq > self.peer_seq:
            self.peer_info, self.peer_seq = info, seq
        return first
