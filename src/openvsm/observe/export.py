"""What hamgr answers on its ``metrics`` IPC op, as typed structs.

hamgr builds a ``HamgrMetrics`` from counters it already keeps (no I/O, no
waiting) and sends it as msgpack builtins; cfgmgr converts it back with
``msgspec.convert`` (``decode_hamgr_metrics``) and renders Prometheus text.
A field added here must get a default so that a cfgmgr and a hamgr of
different builds still understand each other during an upgrade.
"""

from __future__ import annotations

from typing import Any

import msgspec


class GapSample(msgspec.Struct, frozen=True):
    time: float  # wall clock, seconds since the epoch (display only)
    gap: float  # seconds since the previous heartbeat on that interface


class GapHistogramSnapshot(msgspec.Struct, frozen=True):
    buckets: list[float]  # upper bounds (le), seconds
    cumulative: list[int]  # samples <= each bound
    count: int
    sum: float


class InterfaceMetrics(msgspec.Struct, frozen=True):
    name: str  # control | mgmt
    heartbeats_sent: int = 0
    heartbeats_received: int = 0
    heartbeats_missed: int = 0
    frames_dropped: int = 0
    gaps: GapHistogramSnapshot | None = None
    max_gap: float = 0.0
    silence: float | None = None  # seconds since the last heartbeat heard (None: never)
    recent: list[GapSample] = []


class HamgrMetrics(msgspec.Struct, frozen=True):
    role: str  # primary | secondary
    state: str  # HaState value
    epoch: int
    degraded: bool
    peer_present: bool
    peer_state: str
    sync_state: str
    state_since: float  # wall clock of the last state change of this hamgr
    started: float  # wall clock when this hamgr process started
    role_changes: int  # state changes seen by this hamgr process
    split_brain_won: int
    split_brain_lost: int
    collisions: int  # entries present now (both roles)
    max_loss_interval: float
    heartbeat_interval: float
    interfaces: list[InterfaceMetrics]
    mode_oper: str = ""
    shared_address_held: bool | None = None  # None: no shared address configured


def encode_hamgr_metrics(m: HamgrMetrics) -> Any:
    return msgspec.to_builtins(m)


def decode_hamgr_metrics(raw: Any) -> HamgrMetrics:
    """Raises ``msgspec.ValidationError`` on a malformed answer."""
    return msgspec.convert(raw, HamgrMetrics)
