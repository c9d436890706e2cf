"""Redundancy engine of hamgr: a sans-IO state machine (DESIGN §3, seed HA chapter).

Frames and time go in (``on_frame``, ``tick``, operator requests); effects
come out as data (``Send``, ``Trace``, ``BecomeActive``, ``Reload`` ...). The
asyncio adapter (``hamgr``) owns sockets, the monotonic clock and the disk:
it must write ``PersistFacts`` durably before acting on later effects.

Theory of operation
===================

States (``HaState``) and the only transitions (``_TRANSITIONS``; any other
raises ``ImpossibleTransition``, a bug is loud)::

    INITIALIZING --no peer during discovery / peer initializing (we are primary)
                   / peer answers as standby / resumed active checkpoint--> ACTIVE
    INITIALIZING --peer heard active (Discovery or HeartbeatRequest)
                   / resumed standby checkpoint--> STANDBY
    STANDBY      --no request on either iface for max_loss_interval / SWITCHOVER
                   flag / crash fast path / active seen initializing--> ACTIVE
    any          --Reload effect--> RELOADING   (inert afterwards)

The active's sub-states (``ActiveState``, ``Engine.active_state``; the only
transitions are ``_ACTIVE_TRANSITIONS``, set by ``_set_active``, any other
raises ``ImpossibleTransition``)::

    ALONE        <--standby up / lost-->  WITH_STANDBY  <--control silent / back-->  DEGRADED
    DEGRADED     --standby lost--> ALONE
    WITH_STANDBY --switchover (operator, or a reload failing over first)--> HANDING_OVER
    ALONE, WITH_STANDBY, DEGRADED --split-brain resolution lost--> LOSING

HANDING_OVER and LOSING end with a reload (their deadline ``_active_deadline``:
the loss interval, ``LOGS_TIMEOUT``). Becoming active starts afresh (ALONE; a
resumed active with its standby: WITH_STANDBY).

ACTIVE never goes to STANDBY: it reloads (seed: "A transition from active to
standby always requires a reload"). Every transition to ACTIVE sets
``epoch = max(own, highest seen) + 1`` and emits ``PersistFacts`` then
``BecomeActive``; a standby taking over also emits ``SwitchRequestNeeded``.
An active that hears a peer that is not active with a higher epoch than its
own (the peer took over while unheard, then reloaded without a split-brain
resolution) takes ``max(own, highest seen) + 1`` too, persisted, and emits
``SwitchRequestNeeded``: VEMs and the peer's sync follow the highest epoch.

Timers (all deadlines on the caller's monotonic clock; ``next_deadline``):

- discovery: ``Discovery(initializing)`` broadcast on both ifaces every
  heartbeat interval until ``discovery_window`` ends, then ACTIVE. A
  secondary that heard the primary initializing waits one more window from
  that moment (the primary is about to become active).
- active heartbeat: every ``heartbeat_interval`` a ``HeartbeatRequest`` on
  control; on control and mgmt while degraded or while no standby is present
  (so a returning peer finds us). Requests carry ``Flag.OUT_OF_SYNC`` while
  the active has no standby (seed one-way case), ``DEGRADED``, ``SWITCHOVER``.
- degraded: no response on control for ``timers.degraded_after`` (half the
  loss interval) -> degraded, requests also on mgmt; a control response
  restores. ``Degraded: control down, mgmt up`` once mgmt answers.
- peer loss (active): no response on either iface for ``max_loss_interval``
  -> ``PeerLost``; that standby incarnation (boot id) is then doomed: if it
  is heard again it gets ``RESET_ORDERED``. A new boot id is a new standby.
- active loss (standby): no accepted request on either iface for
  ``max_loss_interval`` -> ACTIVE.
- crash fast path (HA standby only, ``on_sync_reset``): a round of
  ``LivenessProbe`` on both ifaces every ``probe_timeout / PROBE_ROUNDS``.
  The active is alive only if it answers a probe (``LivenessAck`` echoing
  the episode's fresh random nonce, once): a heartbeat request proves
  nothing, it may have left the active before it died and be read after
  the reset. ACTIVE at once when the peer's host reports the active's ports closed on both ifaces
  (``on_peer_unreachable``: ICMP port unreachable, the adapter's evidence that
  nothing listens there any more), else when no ack came within
  ``probe_timeout``. Only a reset of a stream that had reached streaming
  (``stream_hot``: the bulk sync was done) starts it; any other reset is
  traced and the heartbeat loss interval decides. The reporter's word is
  used, not the engine's sync state, which may already say "cold" for the
  very connection that was reset.
- switchover: requests carry ``SWITCHOVER`` until the new active confirms
  (a response or request with state active) or ``max_loss_interval`` passes;
  then the old active reloads.
- split-brain: resolution info is resent every heartbeat interval on the
  ifaces the other active was heard on until its info arrives. The losing
  active reloads at the latest ``LOGS_TIMEOUT`` after deciding.
- resolution logs (the loser's accounting log and traces for the winner,
  DESIGN §3): once its adapter has collected them, ``send_resolution_logs``
  sends them on both ifaces with a fresh nonce (``EngineConfig.nonces``),
  again every ``LOGS_RETRY`` for ``LOGS_ROUNDS`` rounds; the ack that echoes
  the outstanding nonce reloads the loser, so does the last round unanswered.
  Any other ack is a replay (``drop_replay``). The winner takes logs only
  while it has won a resolution against their sender (MAC checked as any
  frame's), one exchange (nonce) per resolution: ``StoreRemoteLogs`` once,
  an ack (echoing the nonce, on the iface it came in on) for every copy; a
  nonce of another exchange (the last ``LOGS_NONCES_KEPT`` are remembered)
  is a replay, dropped and counted.
- collisions: entries expire one hour after their last collision; what this
  node heard of the peer's role rides its next heartbeat (request or
  response) at most every ``RELAY_INTERVAL``.
- sync hold: a "hot" stream reported "none"/"warm" (reconnecting) stays
  shown "hot" until it is "hot" again or ``sync_grace`` passes (then the
  truth); "cold" (a bulk sync), losing the standby and becoming active end
  the hold at once; cfgmgr exiting (``sync_stream_down``) starts a new
  grace. The status strings and the switchover check use the held state
  (shown "HA standby" = it may take over: writes still wait for its acks);
  the crash fast path uses the reported one.

Stateful restart (hamgr killed, restarted by sysmgr within the node's boot):
the adapter keeps ``checkpoint(now)`` (a ``ResumePoint``, or None while not
settled) in the run dir and gives it to the next process's ``resume``
instead of ``start``; nothing changes for the peer, the VEMs or the status:
same state, epoch and boot id, no ``BecomeActive``, no ``PersistFacts``.

- refused (-> ``start``, discovery with the new boot id, as after a boot):
  another role, an epoch that is not the durable one (a transition the
  checkpoint missed), or ``alive_at`` a loss interval ago or more (the peer
  may have taken over; the active may have declared this standby lost);
- a standby resumes at once, following the same active (boot id, accepted
  epoch); its active-loss timer counts from ``alive_at``;
- an active first sends a ``LivenessProbe`` burst (``resuming``; the
  adapter answers no status query meanwhile). The peer answering as active
  (or as a standby of a newer epoch), or any frame of an active peer:
  the world changed, ``start``. The peer answering otherwise, its
  discovery, or silence for a heartbeat interval: ACTIVE as checkpointed
  (standby present or not), requests at once, the standby-loss timer from
  ``alive_at``. Safety: it never raises the epoch, and an active peer it
  misses (lost ack, partition) is met as in any heal: split-brain resolution.

Standby rules: it sends ``HeartbeatResponse`` only in answer to a request, on
the iface the request came in on. It follows the highest epoch it accepted
from an active; requests from a lower epoch are counted ``stale`` and
ignored. A standby once accepted (it saw a request without ``OUT_OF_SYNC``)
that sees ``OUT_OF_SYNC`` is inconsistent (one-way loss healed) and answers
with ``RESET_REQUESTED``; the active then orders the reset.

Identity, collisions and duplicates (seed "VSM Role Collision Detection";
in a routed deployment a third VSM reaches only the addresses in its config,
and nothing is sent back to it):

- a frame with our role from another MAC, or from our MAC with another boot
  id, is a role collision: recorded in our table, otherwise ignored
  (``collision``);
- a frame of the peer's role from a MAC other than the one learnt on that
  iface is dropped (``bad_mac``, seed SV3(1.1)) and, since it carries the
  domain's key, recorded as *heard*: a VSM of the peer's role that is not our
  partner;
- a frame of the learnt peer MAC is screened by its boot id against the
  partner incarnation this node is bound to (the standby it has, the active
  it follows, the active it is resolving a split-brain with;
  ``collision.Incarnations``): another boot while the partner still talks
  (heard within the loss interval; within two heartbeat intervals for an
  active being resolved with) is held (``stale``), and once the
  partner is heard again it is a *duplicate*: recorded as heard, dropped
  from then on (``collision``), never "standby restarted", never a reset or
  a split-brain resolution. A restart never interleaves: the old boot falls
  silent, and the new boot then goes through the usual flows (discovery,
  a response from a new boot). A new boot whose heartbeat names our boot id
  (``peer_boot``: it heard this node at the partner's address) is the
  partner's successor at once; a held ``Discovery(initializing)`` is still
  answered (to the configured peer) so that a restarted hamgr gets there in
  one round trip;
- heard VSMs are relayed to the partner in heartbeats (``heard``), which
  records them as its own collisions (``relayed``): the duplicated role's
  node shows the seed's WARNING block, the node that heard them shows them
  too (``peer_collisions``). Both tables: 8 entries, overwrite, 1 h.

Other input hygiene: frames that make no sense in the current state are
dropped (``unexpected``); bad relay entries are counted (``malformed``).
Nothing raised.
"""

from __future__ import annotations

import enum
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final

import msgspec

from openvsm.config import Timers
from openvsm.errors import ImpossibleTransition, LocalProtocolError, OperatorRefused
from openvsm.redundancy.collision import (
    EXPIRY,
    MAX_ENTRIES,
    CollisionEntry,
    CollisionTable,
    Incarnations,
    Overwrite,
    Recorded,
    Verdict,
)
from openvsm.redundancy.splitbrain import Resolution, RoleName, Side, decide
from openvsm.wire.codec import Frame, mac_to_bytes
from openvsm.wire.freshness import new_nonce
from openvsm.wire.messages import (
    Discovery,
    Flag,
    HeardVsm,
    HeartbeatRequest,
    HeartbeatResponse,
    LivenessAck,
    LivenessProbe,
    Message,
    ResolutionInfo,
    ResolutionLogs,
    ResolutionLogsAck,
    SenderRole,
)

INF: Final = float("inf")
LOGS_TIMEOUT: Final = 5.0  # the split-brain loser reloads at the latest after this
LOGS_RETRY: Final = 0.2  # the loser resends its logs this often until acknowledged
LOGS_ROUNDS: Final = 5  # ... this many rounds; then it reloads unacknowledged
LOGS_NONCES_KEPT: Final = 64  # the winner remembers this many logs exchanges (replays)
PROBE_ROUNDS: Final = 10  # rounds of liveness probes (one per iface) within probe_timeout
RESUME_PROBES: Final = 3  # liveness probes per iface when an active resumes after a restart
RELAY_INTERVAL: Final = 1.0  # heard collisions ride a heartbeat at most this often
SYNC_STATES: Final = ("none", "cold", "warm", "hot")
# How long a sync stream that was "hot" is still shown in sync while it
# reconnects (a cfgmgr restart on either node, up to ~3 s on a loaded
# 2-core machine, plus the sender's reconnect back-off): bounded, then the truth.
SYNC_GRACE: Final = 5.0


class HaState(enum.Enum):
    INITIALIZING = "initializing"
    ACTIVE = "active"
    STANDBY = "standby"
    RELOADING = "reloading"


class ActiveState(enum.Enum):
    """The active's sub-state (``Engine.active_state``; ``_ACTIVE_TRANSITIONS``)."""

    ALONE = "alone"  # no standby present
    WITH_STANDBY = "with standby"
    DEGRADED = "degraded"  # the standby's responses stopped on control
    HANDING_OVER = "handing over"  # switchover: until the new active confirms, then reload
    LOSING = "losing"  # lost a split-brain resolution: logs to the winner, then reload


class Iface(enum.Enum):
    CONTROL = "control"
    MGMT = "mgmt"


BOTH: Final = (Iface.CONTROL, Iface.MGMT)

_TRANSITIONS: Final = frozenset(
    {
        (HaState.INITIALIZING, HaState.ACTIVE),
        (HaState.INITIALIZING, HaState.STANDBY),
        (HaState.INITIALIZING, HaState.RELOADING),
        (HaState.STANDBY, HaState.ACTIVE),
        (HaState.STANDBY, HaState.RELOADING),
        (HaState.ACTIVE, HaState.RELOADING),
    }
)


def fresh_nonce() -> int:
    """A nonce for one resolution-logs exchange: random, never 0."""
    return secrets.randbelow(2**63 - 1) + 1


_ACTIVE_TRANSITIONS: Final = frozenset(
    {
        (ActiveState.ALONE, ActiveState.WITH_STANDBY),
        (ActiveState.WITH_STANDBY, ActiveState.ALONE),
        (ActiveState.WITH_STANDBY, ActiveState.DEGRADED),
        (ActiveState.DEGRADED, ActiveState.WITH_STANDBY),
        (ActiveState.DEGRADED, ActiveState.ALONE),
        (ActiveState.WITH_STANDBY, ActiveState.HANDING_OVER),
        (ActiveState.ALONE, ActiveState.LOSING),
        (ActiveState.WITH_STANDBY, ActiveState.LOSING),
        (ActiveState.DEGRADED, ActiveState.LOSING),
    }
)


@dataclass(frozen=True)
class EngineConfig:
    role: str  # "primary" | "secondary"
    system_mac: str
    timers: Timers
    boot_id: int  # random per boot
    probe_timeout: float = 0.05
    # With a replicated store (hamgr), the pair is "HA" only once the sync
    # stream reports "hot"; an engine without one treats "none" as in sync.
    require_sync: bool = False
    sync_grace: float = SYNC_GRACE
    nonces: Callable[[], int] = fresh_nonce  # tests give a deterministic source


@dataclass
class PersistedFacts:
    epoch: int = 0
    peer_macs: dict[str, str] = field(default_factory=dict)  # iface value -> mac
    last_active_time: float = 0.0  # wall clock


@dataclass(frozen=True)
class ResumePoint:
    """What a restarted hamgr needs to resume without discovery (its checkpoint).

    Taken by ``Engine.checkpoint`` while the state is settled; given back to
    ``Engine.resume`` by the next hamgr process of the same node boot.
    ``peer_boot`` is the standby's boot id on an active (None: no standby)
    and the followed active's on a standby. ``alive_at`` (monotonic) is the
    latest moment the checkpointing process is known to have run: the adapter
    raises it to the process's exit time when it knows it.
    """

    state: HaState
    role: str
    epoch: int
    boot_id: int
    alive_at: float
    sync_state: str = "none"
    peer_boot: int | None = None
    peer_mac: str | None = None
    doomed_boot: int | None = None  # active: the standby incarnation to reset when heard
    accepted_epoch: int = -1  # standby: highest epoch accepted from the active
    acknowledged: bool = False  # standby: accepted as HA standby by that active


# ---- effects ---------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    iface: Iface
    msg: Message
    broadcast: bool = False


@dataclass(frozen=True)
class Trace:
    text: str


@dataclass(frozen=True)
class BecomeActive:
    epoch: int
    reason: str


@dataclass(frozen=True)
class BecomeStandby:
    peer_mac: str


@dataclass(frozen=True)
class PeerUp:
    peer_mac: str


@dataclass(frozen=True)
class PeerLost:
    reason: str


@dataclass(frozen=True)
class Reload:
    reason: str


@dataclass(frozen=True)
class PersistFacts:
    facts: PersistedFacts


@dataclass(frozen=True)
class SplitBrainWon:
    loser_role: str
    info: str


@dataclass(frozen=True)
class SplitBrainLost:
    winner_role: str
    reason: str


@dataclass(frozen=True)
class StoreRemoteLogs:
    """The winner took the loser's logs (once per exchange): keep them on disk."""

    logs: ResolutionLogs
    mac: str


@dataclass(frozen=True)
class SwitchRequestNeeded:
    pass


@dataclass(frozen=True)
class StatusChanged:
    pass


Effect = (
    Send
    | Trace
    | BecomeActive
    | BecomeStandby
    | PeerUp
    | PeerLost
    | Reload
    | PersistFacts
    | SplitBrainWon
    | SplitBrainLost
    | StoreRemoteLogs
    | SwitchRequestNeeded
    | StatusChanged
)


@dataclass(frozen=True)
class RedundancyStatus:
    """Everything ``show system redundancy status`` needs (specs/cli-output.md)."""

    state: HaState
    role: str
    epoch: int
    peer_present: bool
    degraded: bool
    inconsistent: bool  # one-way case: the active believes it has no standby
    split_brain: bool
    mode_oper: str  # "HA" | "None"
    this_rdn_state: str
    this_sup_state: str
    this_internal_state: str
    other_rdn_state: str
    other_sup_state: str | None
    other_internal_state: str | None
    collisions: tuple[CollisionEntry, ...]  # our role; times are monotonic
    overwrites: tuple[Overwrite, ...]
    peer_macs: dict[str, str]
    # VSMs of the peer's role heard here that are not our partner (relayed to it).
    peer_collisions: tuple[CollisionEntry, ...] = ()
    peer_overwrites: tuple[Overwrite, ...] = ()


_DROP_REASONS: Final = ("bad_mac", "collision", "stale", "unexpected", "malformed")
_COUNTERS: Final = (
    "hb_req_sent",
    "hb_req_recv",
    "hb_resp_sent",
    "hb_resp_recv",
    "hb_missed",
    "discovery_sent",
    "discovery_recv",
    "probe_sent",
    "probe_recv",
    "relay_sent",
    "relay_recv",
)


def _norm_mac(mac: str) -> str:
    return mac.strip().lower()


def _valid_mac(text: str) -> str | None:
    try:
        mac_to_bytes(text)
    except (ValueError, AttributeError):
        return None
    return _norm_mac(text)


def _boot_of(msg: Message) -> int | None:
    """The sender's boot id, for the messages that carry one."""
    if isinstance(msg, Discovery | HeartbeatRequest | HeartbeatResponse | ResolutionInfo):
        return msg.boot_id
    return None


class Engine:
    def __init__(self, config: EngineConfig, facts: PersistedFacts) -> None:
        if config.role not in ("primary", "secondary"):
            raise LocalProtocolError(f"role must be primary or secondary, not {config.role!r}")
        self.config = config
        self._timers = config.timers
        self._role_name: RoleName = "primary" if config.role == "primary" else "secondary"
        self._peer_name: RoleName = "secondary" if config.role == "primary" else "primary"
        self._role = SenderRole.PRIMARY if config.role == "primary" else SenderRole.SECONDARY
        self._peer_role = (
            SenderRole.SECONDARY if self._role is SenderRole.PRIMARY else SenderRole.PRIMARY
        )
        self._mac = _norm_mac(config.system_mac)
        self.state = HaState.INITIALIZING
        self.epoch = facts.epoch
        self._peer_macs = {k: _norm_mac(v) for k, v in facts.peer_macs.items()}
        self._last_active_time = facts.last_active_time
        self._max_epoch_seen = facts.epoch
        # local facts pushed by the adapter (for split-brain resolution)
        self._module_count = 0
        self._last_config_time = 0.0
        self._change_seq = 0
        self._sync_state = "none"  # as cfgmgr last reported it
        # What the status shows: the reported state, except that a "hot" stream
        # reconnecting ("none"/"warm") is still shown "hot" until
        # ``_sync_hold_until`` (bounded by ``sync_grace``).
        self._sync_shown = "none"
        self._sync_hold_until = INF
        self._sync_hot_in: HaState | None = None  # the state "hot" was reported in
        # stateful restart (``resume``): an active checkpoint awaiting the peer's word
        self._resume: ResumePoint | None = None
        self._resume_deadline = INF
        self._resume_nonce = 0
        # discovery
        self._next_discovery = INF
        self._window_end = INF
        self._primary_init_heard: float | None = None
        # active side
        self._next_hb = INF
        self._peer_present = False
        self._peer_boot: int | None = None
        self._peer_mac: str | None = None
        self._doomed_boot: int | None = None  # standby incarnation to reset when heard
        self._reset_on_next_response = False
        self._last_resp: dict[Iface, float] = {Iface.CONTROL: -INF, Iface.MGMT: -INF}
        self._awaiting: dict[Iface, bool] = {Iface.CONTROL: False, Iface.MGMT: False}
        self._degraded = False
        self._mgmt_ok = False  # a mgmt response was heard while degraded
        # The active's sub-state; HANDING_OVER and LOSING end (reload) at
        # ``_active_deadline`` at the latest.
        self._active = ActiveState.ALONE
        self._active_deadline = INF
        self._switch_reason = ""
        self._resolution: Resolution | None = None
        # resolution logs: the loser's outstanding message, the winner's past nonces
        self._logs_out: ResolutionLogs | None = None
        self._logs_next = INF
        self._logs_rounds = 0
        self._logs_seen: OrderedDict[int, None] = OrderedDict()
        self._init_standby_side()
        self._collisions = CollisionTable()
        self._heard = CollisionTable()  # the peer's role, not our partner
        self._incarnations = Incarnations(
            live_window=2 * self._timers.heartbeat_interval,
            separation=self._timers.heartbeat_interval / 2,
        )
        self._last_relay = -INF
        self._last_peer_boot = 0  # boot id of the peer in the last frame taken from it
        self._relay_payload: tuple[HeardVsm, ...] = ()
        self._counters: dict[Iface, dict[str, int]] = {
            i: dict.fromkeys(_COUNTERS + tuple(f"drop_{r}" for r in _DROP_REASONS), 0) for i in BOTH
        }

    def _init_standby_side(self) -> None:
        """The standby's view of its active, and the crash fast path's probes."""
        self._active_boot: int | None = None
        self._accepted_active_epoch = -1
        self._last_req: dict[Iface, float] = {Iface.CONTROL: -INF, Iface.MGMT: -INF}
        self._acknowledged = False
        self._inconsistent = False
        self._active_degraded = False
        self._probe_nonce: int | None = None
        self._probe_deadline = INF
        self._probe_next = INF  # next round of probes
        self._probe_refused: set[Iface] = set()  # ifaces whose port the peer's host closed

    # ---- public API ---------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        """Begin discovery: broadcast ``Discovery(initializing)`` on both ifaces."""
        if self.state is not HaState.INITIALIZING or self._window_end != INF or self.resuming:
            raise LocalProtocolError("engine already started")
        self._window_end = now + self._timers.discovery_window
        effects: list[Effect] = [
            Trace(
                f"discovery: {self._role_name} supervisor initializing, epoch {self.epoch}, "
                f"window {self._timers.discovery_window:g} s"
            )
        ]
        effects += self._send_discovery(now)
        return effects

    @property
    def resuming(self) -> bool:
        """An active's checkpoint waits for the peer's word (``resume``)."""
        return self._resume is not None

    def resume(self, point: ResumePoint, now: float) -> list[Effect]:
        """Stateful restart of hamgr: continue from ``point`` instead of discovering.

        A checkpoint that does not fit (another role, not the durable epoch,
        taken a loss interval ago or more: the peer may have taken over) is
        not used: ``start`` (discovery, as after a boot). A standby resumes at
        once; an active first probes the peer (module docstring).
        """
        if self.state is not HaState.INITIALIZING or self._window_end != INF or self.resuming:
            raise LocalProtocolError("engine already started")
        refusal = self._resume_refusal(point, now)
        if refusal:
            return [Trace(f"restart: checkpoint not used ({refusal}); discovery"), *self.start(now)]
        if point.state is HaState.STANDBY:
            return self._resume_standby(point, now)
        self._resume = point
        self._resume_deadline = now + self._timers.heartbeat_interval
        self._resume_nonce = new_nonce()  # fresh: no captured ack of an earlier resume matches
        effects: list[Effect] = [
            Trace(
                f"restart: resuming as active (epoch {point.epoch}) unless the "
                f"{self._peer_name} answers as active"
            )
        ]
        for _ in range(RESUME_PROBES):
            for iface in BOTH:
                self._count(iface, "probe_sent")
                effects.append(Send(iface, LivenessProbe(nonce=self._resume_nonce)))
        return effects

    def checkpoint(self, now: float) -> ResumePoint | None:
        """The settled state a restarted hamgr may resume from; None: rediscover.

        Settled: an active not handing over, not in or just after a split-brain
        resolution, not degraded, no standby reset pending; a standby that is
        consistent, not degraded, not probing its active."""
        if self.state is HaState.ACTIVE:
            res = self._resolution
            if (
                self._active is ActiveState.HANDING_OVER
                or self._active is ActiveState.LOSING
                or self._degraded
                or self._reset_on_next_response
                or (
                    res is not None
                    and (res.loser is None or now < res.last_heard + self._timers.max_loss_interval)
                )
            ):
                return None
            present = self._peer_present
            return ResumePoint(
                HaState.ACTIVE,
                self._role_name,
                self.epoch,
                self.config.boot_id,
                now,
                sync_state=self._sync_shown,
                peer_boot=self._peer_boot if present else None,
                peer_mac=self._peer_mac if present else None,
                doomed_boot=self._doomed_boot,
            )
        if self.state is HaState.STANDBY:
            if (
                self._inconsistent
                or self._active_degraded
                or self._probe_nonce is not None
                or self._active_boot is None
            ):
                return None
            return ResumePoint(
                HaState.STANDBY,
                self._role_name,
                self.epoch,
                self.config.boot_id,
                now,
                sync_state=self._sync_shown,
                peer_boot=self._active_boot,
                accepted_epoch=self._accepted_active_epoch,
                acknowledged=self._acknowledged,
            )
        return None

    def on_frame(
        self, frame: Frame, iface: Iface, now: float, src_mac: str | None = None
    ) -> list[Effect]:
        if self.state is HaState.RELOADING:
            return []
        mac = _norm_mac(src_mac or frame.mac)
        if frame.role is SenderRole.VEM:
            return self._drop(iface, "unexpected")
        msg = frame.msg
        boot = _boot_of(msg)
        if frame.role is self._role:
            if mac == self._mac and boot in (None, self.config.boot_id):
                return []  # our own broadcast looped back
            return self._on_collision(mac, iface, now)
        effects: list[Effect] = []
        learnt = self._peer_macs.get(iface.value)
        if learnt is None:
            self._peer_macs[iface.value] = mac
            effects += [
                Trace(f"peer MAC learnt: {self._peer_name} {mac} on {iface.value}"),
                self._persist(),
            ]
        elif learnt != mac:
            return self._on_foreign_peer(mac, iface, now)
        if boot is not None:
            drop, screened = self._screen_boot(msg, boot, mac, iface, now)
            effects += screened
            if drop:
                return effects
            self._last_peer_boot = boot
        self._max_epoch_seen = max(self._max_epoch_seen, frame.epoch)
        if self._resume is not None and not isinstance(msg, LivenessProbe):
            return effects + self._on_frame_resuming(frame, iface, now, src_mac)
        effects += self._outrank(frame, msg)
        if isinstance(msg, Discovery):
            effects += self._on_discovery(frame, msg, iface, now, mac)
        elif isinstance(msg, HeartbeatRequest):
            effects += self._on_request(frame, msg, iface, now, mac)
        elif isinstance(msg, HeartbeatResponse):
            effects += self._on_response(msg, iface, now, mac)
        elif isinstance(msg, LivenessProbe):
            self._count(iface, "probe_recv")
            effects.append(Send(iface, LivenessAck(nonce=msg.nonce, state=self.state.value)))
        elif isinstance(msg, LivenessAck):
            effects += self._on_liveness_ack(msg)
        elif isinstance(msg, ResolutionInfo):
            effects += self._on_resolution_info(frame, msg, iface, now)
        elif isinstance(msg, ResolutionLogs):
            effects += self._on_logs(msg, iface, mac)
        elif isinstance(msg, ResolutionLogsAck):
            effects += self._on_logs_ack(msg, iface)
        else:
            effects += self._drop(iface, "unexpected")
        return effects

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for gone in self._collisions.expire(now):
            effects += [
                Trace(f"role collision entry expired: {gone.mac} (silent for 1 hour)"),
                StatusChanged(),
            ]
        if now >= self._sync_hold_until:
            effects += self._show_sync_truth(f"not resumed within {self.config.sync_grace:g} s")
        for gone in self._heard.expire(now):
            effects += [
                Trace(
                    f"heard {self._peer_name} collision entry expired: {gone.mac} "
                    "(silent for 1 hour)"
                ),
                StatusChanged(),
            ]
        self._incarnations.expire(now)
        if self.state is HaState.INITIALIZING:
            if self._resume is not None:
                effects += self._tick_resuming(now)
            else:
                effects += self._tick_initializing(now)
        elif self.state is HaState.STANDBY:
            effects += self._tick_standby(now)
        elif self.state is HaState.ACTIVE:
            effects += self._tick_active(now)
        return effects

    def next_deadline(self) -> float:
        if self.state is HaState.RELOADING:
            return INF
        times = [
            self._collisions.next_expiry(),
            self._heard.next_expiry(),
            self._sync_hold_until,
        ]
        if self.state is HaState.INITIALIZING:
            times += [self._next_discovery, self._discovery_end(), self._resume_deadline]
        elif self.state is HaState.STANDBY:
            times += [self._active_loss_deadline(), self._probe_deadline, self._probe_next]
        elif self.state is HaState.ACTIVE:
            if self._active is ActiveState.LOSING:
                times += [self._active_deadline, self._logs_next]
            else:
                times.append(self._next_hb)
                if self._active is ActiveState.HANDING_OVER:
                    times.append(self._active_deadline)
                elif self._peer_present:
                    times.append(self._standby_loss_deadline())
                    if not self._degraded:
                        times.append(self._degraded_deadline())
                res = self._resolution
                if res is not None and res.peer_info is None:
                    times.append(res.next_send)
        return min(times)

    def request_switchover(self, now: float) -> list[Effect]:
        self._check_can_switchover()
        return self._begin_switchover(now, "switchover requested by operator")

    def request_reload(self, now: float) -> list[Effect]:
        if self.state is HaState.RELOADING:
            return []
        if self.state is HaState.ACTIVE and self._active is ActiveState.HANDING_OVER:
            return []  # already handing over; it reloads when done
        if self._can_switchover():
            return self._begin_switchover(now, "reload requested by operator: failing over first")
        return self._reload("reload requested by operator")

    def set_local_facts(
        self, *, module_count: int, last_config_time: float, change_seq: int
    ) -> None:
        self._module_count = module_count
        self._last_config_time = last_config_time
        self._change_seq = change_seq

    def set_last_active_time(self, wall: float) -> None:
        """Wall-clock time of the last standby->active switch (the adapter knows the wall)."""
        self._last_active_time = wall

    def set_sync_state(self, state: str, now: float | None = None) -> list[Effect]:
        """cfgmgr's report of the sync stream. With ``now``, a "hot" stream that
        goes down to reconnect ("none", or "warm": a tail to catch up) is still
        shown "hot" for up to ``sync_grace``; "cold" (a bulk sync) and the
        grace's end show the truth (module docstring)."""
        if state not in SYNC_STATES:
            raise LocalProtocolError(
                f"sync state must be one of {', '.join(SYNC_STATES)}: {state!r}"
            )
        self._sync_state = state
        if state == "hot":
            self._sync_hot_in = self.state
        if now is None or state not in ("none", "warm") or not self._may_hold_sync():
            return self._show_sync_truth("resumed" if state == "hot" else f"reported {state}")
        if self._sync_hold_until == INF:
            self._sync_hold_until = now + self.config.sync_grace
            return [
                Trace(
                    f"sync stream reconnecting ({state}): still shown in sync for up to "
                    f"{self.config.sync_grace:g} s"
                )
            ]
        return []

    def sync_stream_down(self, now: float) -> list[Effect]:
        """cfgmgr exited (its stream is down): reported "none", and a "hot" stream
        gets a new grace for the restarted cfgmgr to resume it. Bounded: sysmgr
        reloads the node after a few crashes in a row."""
        self._sync_hold_until = INF
        return self.set_sync_state("none", now)

    def _may_hold_sync(self) -> bool:
        """A hold needs a stream that was "hot" in this state, towards a present peer."""
        if self._sync_shown != "hot" or self._sync_hot_in is not self.state:
            return False
        if self.state is HaState.ACTIVE:
            return self._peer_present
        return self.state is HaState.STANDBY

    def _show_sync_truth(self, why: str) -> list[Effect]:
        """End any hold: the status shows the reported state again."""
        held = self._sync_hold_until != INF
        self._sync_hold_until = INF
        changed = self._sync_shown != self._sync_state
        self._sync_shown = self._sync_state
        effects: list[Effect] = []
        if held and why:
            effects.append(Trace(f"sync stream {why}: shown as {self._sync_state}"))
        if changed:
            effects.append(StatusChanged())
        return effects

    def mark_standby_out_of_sync(self, now: float) -> list[Effect]:
        if self.state is not HaState.ACTIVE:
            return []
        if self._peer_present:
            self._reset_on_next_response = True
            return [
                Trace("sync buffer overflow: standby out of sync, its reset is ordered when heard"),
                StatusChanged(),
            ]
        return [Trace("sync buffer overflow with no standby present: it is reset when it returns")]

    def on_sync_reset(self, now: float, *, stream_hot: bool) -> list[Effect]:
        """Crash fast path (DESIGN §3): probe the active, take over if nobody answers.

        ``stream_hot``: the reset connection had reached streaming (the bulk
        sync was done), as its receiver saw it. Only then is this an HA
        standby's reset. A standby still loading its bulk sync would take
        over without the active's state (module table, changes in flight) on
        what may be a service restart on the active; it waits for the
        heartbeat loss interval like any other loss.
        """
        if self.state is not HaState.STANDBY or self._probe_nonce is not None:
            return []
        if not stream_hot:
            return [
                Trace(
                    "sync connection reset while not in sync: no fast takeover, "
                    "the heartbeat loss interval decides"
                )
            ]
        # A fresh random nonce per episode (a counter restarts with the process: an
        # ack captured in an earlier boot would echo it), forgotten once answered.
        self._probe_nonce = new_nonce()
        self._probe_deadline = now + self.config.probe_timeout
        self._probe_refused = set()
        return [
            Trace("sync connection reset by the active's host: probing the active's liveness"),
            *self._probe_round(now),
        ]

    def on_peer_unreachable(self, iface: Iface, now: float) -> list[Effect]:
        """The peer's host reports its port on ``iface`` closed (ICMP port unreachable).

        Evidence for the crash fast path only, while probing: once both of the
        active's ports are closed, nothing is left to answer, the standby takes
        over without waiting for ``probe_timeout``. A single closed port
        (a wrong mgmt address, say) is not enough."""
        if self.state is not HaState.STANDBY or self._probe_nonce is None:
            return []
        if iface in self._probe_refused:
            return []
        self._probe_refused.add(iface)
        if len(self._probe_refused) < len(BOTH):
            return [Trace(f"crash fast path: the active's {iface.value} port is closed")]
        return self._become_active(
            now,
            "crash fast path: the active's host reports its control and mgmt ports closed",
            switch_request=True,
        )

    def _probe_round(self, now: float) -> list[Effect]:
        step = self.config.probe_timeout / PROBE_ROUNDS
        self._probe_next = now + step if now + step < self._probe_deadline else INF
        effects: list[Effect] = []
        for iface in BOTH:
            self._count(iface, "probe_sent")
            effects.append(Send(iface, LivenessProbe(nonce=self._probe_nonce or 0)))
        return effects

    def _end_probing(self) -> None:
        self._probe_nonce = None
        self._probe_deadline = self._probe_next = INF
        self._probe_refused = set()

    def clear_peer_macs(self) -> list[Effect]:
        self._peer_macs.clear()
        return [Trace("learnt peer MAC addresses cleared"), self._persist(), StatusChanged()]

    def send_resolution_logs(self, logs: ResolutionLogs, now: float) -> list[Effect]:
        """The split-brain loser's adapter has collected its logs: send them.

        On both ifaces with a fresh nonce (``logs.nonce`` is replaced), again
        every ``LOGS_RETRY`` until an ack echoing that nonce arrives (then it
        reloads) or ``LOGS_ROUNDS`` rounds went unanswered (it reloads anyway)."""
        if self.state is not HaState.ACTIVE or self._active is not ActiveState.LOSING:
            return []
        if self._logs_out is not None:
            return []  # one exchange per resolution
        self._logs_out = msgspec.structs.replace(logs, nonce=self.config.nonces())
        self._logs_rounds = 0
        return self._send_logs(now)

    def _send_logs(self, now: float) -> list[Effect]:
        assert self._logs_out is not None
        self._logs_rounds += 1
        self._logs_next = now + LOGS_RETRY
        return [Send(iface, self._logs_out) for iface in BOTH]

    def status(self, now: float) -> RedundancyStatus:
        collisions, overwrites = self._collisions.live(now)
        peer_collisions, peer_overwrites = self._heard.live(now)
        this_rdn, this_sup, this_int, o_rdn, o_sup, o_int, mode = self._state_strings()
        return RedundancyStatus(
            state=self.state,
            role=self._role_name,
            epoch=self.epoch,
            peer_present=self._peer_present_view(),
            degraded=self._degraded if self.state is HaState.ACTIVE else self._active_degraded,
            inconsistent=self.state is HaState.STANDBY and self._inconsistent,
            split_brain=self._resolution is not None and self._resolution.loser is None,
            mode_oper=mode,
            this_rdn_state=this_rdn,
            this_sup_state=this_sup,
            this_internal_state=this_int,
            other_rdn_state=o_rdn,
            other_sup_state=o_sup,
            other_internal_state=o_int,
            collisions=collisions,
            overwrites=overwrites,
            peer_macs=dict(self._peer_macs),
            peer_collisions=peer_collisions,
            peer_overwrites=peer_overwrites,
        )

    def counters(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for iface, ctr in self._counters.items():
            row = dict(ctr)
            row["hb_sent"] = ctr["hb_req_sent"] + ctr["hb_resp_sent"]
            row["hb_recv"] = ctr["hb_req_recv"] + ctr["hb_resp_recv"]
            out[iface.value] = row
        return out

    # ---- transitions (the one place state changes) --------------------------

    def _transition(self, new: HaState, reason: str) -> Trace:
        old = self.state
        if (old, new) not in _TRANSITIONS:
            raise ImpossibleTransition(
                f"impossible transition {old.value} -> {new.value} ({reason})"
            )
        self.state = new
        return Trace(f"redundancy state {old.value} -> {new.value}: {reason}")

    @property
    def active_state(self) -> ActiveState | None:
        """The active's sub-state (None unless active)."""
        return self._active if self.state is HaState.ACTIVE else None

    def _set_active(self, new: ActiveState, deadline: float = INF) -> None:
        """The one place the active's sub-state changes (``_ACTIVE_TRANSITIONS``)."""
        old = self._active
        if old is new:
            return
        if (old, new) not in _ACTIVE_TRANSITIONS:
            raise ImpossibleTransition(f"impossible active sub-state {old.value} -> {new.value}")
        self._active, self._active_deadline = new, deadline

    def _settle_active(self) -> None:
        """Alone, with a standby or degraded, as the standby's last word says
        (handing over and losing end with a reload only)."""
        if self._active in (ActiveState.HANDING_OVER, ActiveState.LOSING):
            return
        if not self._peer_present:
            self._set_active(ActiveState.ALONE)
        else:
            self._set_active(ActiveState.DEGRADED if self._degraded else ActiveState.WITH_STANDBY)

    def _enter_active(self) -> None:
        """Becoming active (a takeover, a resume): the sub-state starts afresh."""
        self._active, self._active_deadline = ActiveState.ALONE, INF
        self._settle_active()

    def _become_active(self, now: float, reason: str, *, switch_request: bool) -> list[Effect]:
        effects: list[Effect] = [self._transition(HaState.ACTIVE, reason)]
        effects += self._show_sync_truth("of the old active: no longer held")
        self.epoch = max(self.epoch, self._max_epoch_seen) + 1
        self._max_epoch_seen = self.epoch
        effects += [self._persist(), BecomeActive(self.epoch, reason)]
        if switch_request:
            effects.append(SwitchRequestNeeded())
        effects.append(StatusChanged())
        self._next_discovery = INF
        self._end_probing()
        self._peer_present, self._peer_boot, self._doomed_boot = False, None, None
        self._enter_active()
        self._inconsistent = False
        self._next_hb = now + self._timers.heartbeat_interval
        effects += self._send_requests(now)
        return effects

    def _become_standby(self, frame: Frame, now: float, mac: str, how: str) -> list[Effect]:
        effects: list[Effect] = [
            self._transition(HaState.STANDBY, f"{self._peer_name} is active ({how})")
        ]
        self._next_discovery = INF
        self._last_req = {Iface.CONTROL: now, Iface.MGMT: now}
        self._accepted_active_epoch = frame.epoch
        if frame.epoch > self.epoch:
            self.epoch = frame.epoch
            effects.append(self._persist())
        effects += [BecomeStandby(mac), StatusChanged()]
        return effects

    def _reload(self, reason: str) -> list[Effect]:
        trace = self._transition(HaState.RELOADING, reason)
        return [trace, Reload(reason), StatusChanged()]

    # ---- stateful restart (resume) ------------------------------------------

    def _resume_refusal(self, point: ResumePoint, now: float) -> str:
        """Why ``point`` must not be resumed from ("" when it may)."""
        if point.role != self._role_name:
            return f"taken as {point.role}"
        if point.state not in (HaState.ACTIVE, HaState.STANDBY):
            return f"state {point.state.value}"
        if point.epoch != self.epoch:
            return f"epoch {point.epoch}, durable epoch {self.epoch}"
        if point.sync_state not in SYNC_STATES:
            return f"sync state {point.sync_state!r}"
        down, loss = now - point.alive_at, self._timers.max_loss_interval
        if not down < loss:
            return (
                f"hamgr was down {down:.3g} s, not less than the {loss:g} s loss interval: "
                f"the {self._peer_name} may have taken over"
            )
        return ""

    def _restore_sync(self, point: ResumePoint, now: float) -> None:
        """The sync state the old process showed. cfgmgr tells the new process
        again at once; until then a "hot" stream is held, bounded by the grace."""
        self._sync_shown = point.sync_state
        if point.sync_state == "hot":
            self._sync_state, self._sync_hot_in = "none", self.state
            self._sync_hold_until = now + self.config.sync_grace
        else:
            self._sync_state = point.sync_state

    def _resume_standby(self, point: ResumePoint, now: float) -> list[Effect]:
        self.config = replace(self.config, boot_id=point.boot_id)
        effects: list[Effect] = [
            self._transition(
                HaState.STANDBY,
                f"resumed from the checkpoint: following the active (epoch {point.epoch})",
            )
        ]
        self._active_boot = point.peer_boot
        self._accepted_active_epoch = point.accepted_epoch
        self._acknowledged = point.acknowledged
        alive = min(now, point.alive_at)
        self._last_req = {Iface.CONTROL: alive, Iface.MGMT: alive}
        self._restore_sync(point, now)
        effects.append(StatusChanged())
        return effects

    def _resume_active(self, now: float, how: str) -> list[Effect]:
        point = self._resume
        assert point is not None
        self._resume, self._resume_deadline = None, INF
        self.config = replace(self.config, boot_id=point.boot_id)
        effects: list[Effect] = [
            self._transition(HaState.ACTIVE, f"resumed from the checkpoint: {how}")
        ]
        self._peer_present = point.peer_boot is not None
        self._enter_active()
        self._peer_boot, self._peer_mac = point.peer_boot, point.peer_mac
        self._doomed_boot = point.doomed_boot
        # The standby's loss counts from the old process's last sign of life.
        alive = min(now, point.alive_at)
        self._last_resp = {Iface.CONTROL: alive, Iface.MGMT: alive}
        self._restore_sync(point, now)
        self._next_hb = now + self._timers.heartbeat_interval
        effects.append(StatusChanged())
        effects += self._send_requests(now)
        return effects

    def _abandon_resume(self, now: float, why: str) -> list[Effect]:
        self._resume, self._resume_deadline = None, INF
        return [Trace(f"restart: not resuming as active ({why}); discovery"), *self.start(now)]

    def _tick_resuming(self, now: float) -> list[Effect]:
        if now < self._resume_deadline:
            return []
        ms = self._timers.heartbeat_interval * 1000
        return self._resume_active(now, f"no answer from the {self._peer_name} in {ms:g} ms")

    def _on_frame_resuming(
        self, frame: Frame, iface: Iface, now: float, src_mac: str | None
    ) -> list[Effect]:
        """An active's checkpoint holds unless the peer shows it is active now."""
        msg = frame.msg
        point = self._resume
        assert point is not None
        if isinstance(msg, LivenessAck):
            if msg.nonce != self._resume_nonce:
                return self._drop(iface, "stale")
            if msg.state == HaState.ACTIVE.value or frame.epoch > point.epoch:
                return self._abandon_resume(
                    now, f"the {self._peer_name} answered as {msg.state}, epoch {frame.epoch}"
                )
            return self._resume_active(now, f"the {self._peer_name} answered as {msg.state}")
        claims_active = isinstance(msg, ResolutionInfo) or (
            isinstance(msg, Discovery | HeartbeatRequest) and msg.state == HaState.ACTIVE.value
        )
        if claims_active:
            why = f"the {self._peer_name} is active ({type(msg).__name__}, epoch {frame.epoch})"
            return [*self._abandon_resume(now, why), *self.on_frame(frame, iface, now, src_mac)]
        if isinstance(msg, Discovery):
            how = f"the {self._peer_name} is {msg.state}"
            return [*self._resume_active(now, how), *self.on_frame(frame, iface, now, src_mac)]
        return self._drop(iface, "unexpected")

    # ---- initializing -------------------------------------------------------

    def _discovery_end(self) -> float:
        end = self._window_end
        if self._primary_init_heard is not None:
            end = max(end, self._primary_init_heard + self._timers.discovery_window)
        return end

    def _send_discovery(self, now: float) -> list[Effect]:
        self._next_discovery = now + self._timers.heartbeat_interval
        msg = Discovery(state=HaState.INITIALIZING.value, boot_id=self.config.boot_id)
        for iface in BOTH:
            self._count(iface, "discovery_sent")
        return [Send(iface, msg, broadcast=True) for iface in BOTH]

    def _tick_initializing(self, now: float) -> list[Effect]:
        if now >= self._discovery_end():
            return self._become_active(
                now, "no active supervisor found during discovery", switch_request=False
            )
        if now >= self._next_discovery:
            return self._send_discovery(now)
        return []

    def _on_discovery(
        self, frame: Frame, msg: Discovery, iface: Iface, now: float, mac: str
    ) -> list[Effect]:
        self._count(iface, "discovery_recv")
        if self.state is HaState.INITIALIZING:
            if msg.state == HaState.ACTIVE.value:
                if frame.epoch < self._accepted_active_epoch:
                    return self._drop(iface, "stale")
                self._active_boot = msg.boot_id
                return self._become_standby(frame, now, mac, f"discovery on {iface.value}")
            if msg.state == HaState.STANDBY.value:
                return self._become_active(
                    now, f"{self._peer_name} answered discovery as standby", switch_request=False
                )
            if msg.state != HaState.INITIALIZING.value:
                return self._drop(iface, "unexpected")
            if self._role is SenderRole.PRIMARY:
                became = self._become_active(
                    now,
                    "secondary also initializing: the primary has priority",
                    switch_request=False,
                )
                return [*became, self._discovery_reply(iface, HaState.ACTIVE)]
            self._primary_init_heard = now
            if msg.reply:
                return []
            return [self._discovery_reply(iface, HaState.INITIALIZING)]
        if self.state is HaState.STANDBY:
            if msg.state == HaState.INITIALIZING.value and msg.boot_id != self._active_boot:
                # Our active's hamgr restarted: tell it it has a standby so it resumes.
                return [self._discovery_reply(iface, HaState.STANDBY)]
            return []
        # ACTIVE
        if self._active is ActiveState.LOSING:
            return []
        if msg.state == HaState.ACTIVE.value:
            return self._on_peer_active(frame, msg.boot_id, iface, now)
        if msg.state != HaState.INITIALIZING.value or self._active is ActiveState.HANDING_OVER:
            return []
        effects: list[Effect] = []
        if self._peer_present and msg.boot_id != self._peer_boot:
            effects += self._lose_peer("standby restarted (discovery from a new boot)")
        effects.append(self._discovery_reply(iface, HaState.ACTIVE))
        effects += self._request(iface, now)
        return effects

    def _discovery_reply(self, iface: Iface, state: HaState) -> Send:
        self._count(iface, "discovery_sent")
        return Send(iface, Discovery(state=state.value, boot_id=self.config.boot_id, reply=True))

    # ---- standby ------------------------------------------------------------

    def _active_loss_deadline(self) -> float:
        return max(self._last_req.values()) + self._timers.max_loss_interval

    def _tick_standby(self, now: float) -> list[Effect]:
        if now >= self._probe_deadline:
            ms = self.config.probe_timeout * 1000
            return self._become_active(
                now,
                f"crash fast path: the active did not answer liveness probes in {ms:g} ms",
                switch_request=True,
            )
        effects: list[Effect] = []
        if now >= self._probe_next:
            effects += self._probe_round(now)
        if now >= self._active_loss_deadline():
            loss = self._timers.max_loss_interval
            return self._become_active(
                now,
                f"no heartbeat request from the active on control or mgmt for {loss:g} s",
                switch_request=True,
            )
        return effects

    def _on_request(
        self, frame: Frame, msg: HeartbeatRequest, iface: Iface, now: float, mac: str
    ) -> list[Effect]:
        self._count(iface, "hb_req_recv")
        if msg.state != HaState.ACTIVE.value:
            return self._drop(iface, "unexpected")
        if self.state is HaState.ACTIVE:
            return self._on_request_as_active(frame, msg, iface, now)
        return self._on_request_as_standby(frame, msg, iface, now, mac)

    def _on_request_as_active(
        self, frame: Frame, msg: HeartbeatRequest, iface: Iface, now: float
    ) -> list[Effect]:
        """Another active's request: the switchover's confirmation, or a split-brain."""
        if self._active is ActiveState.HANDING_OVER and frame.epoch > self.epoch:
            return self._reload(f"switchover complete: the {self._peer_name} is active")
        if self._active is ActiveState.LOSING:
            return []
        return self._on_peer_active(frame, msg.boot_id, iface, now)

    def _on_request_as_standby(
        self, frame: Frame, msg: HeartbeatRequest, iface: Iface, now: float, mac: str
    ) -> list[Effect]:
        """The active's request (initializing: it makes this node its standby)."""
        if frame.epoch < self._accepted_active_epoch:
            return self._drop(iface, "stale")
        effects: list[Effect] = []
        if self.state is HaState.INITIALIZING:
            effects += self._become_standby(frame, now, mac, f"heartbeat on {iface.value}")
        # STANDBY from here. A request does not end a crash fast path probe: it
        # may have been sent before the active died and be read after the reset.
        effects += self._follow_active(frame, msg, iface, now)
        flags = msg.flags
        if flags & Flag.RESET_ORDERED:
            return [*effects, *self._reload("reset ordered by the active")]
        if flags & Flag.SWITCHOVER:
            return effects + self._take_over_on_request(frame, iface, now)
        degraded = bool(flags & Flag.DEGRADED)
        effects += self._note_active_flags(flags, degraded)
        out = Flag.RESET_REQUESTED if self._inconsistent else Flag.NONE
        if degraded:
            out |= Flag.DEGRADED
        self._count(iface, "hb_resp_sent")
        effects.append(
            Send(
                iface,
                HeartbeatResponse(
                    state=HaState.STANDBY.value,
                    flags=int(out),
                    applied_seq=self._change_seq,
                    echo_seq=frame.seq,
                    boot_id=self.config.boot_id,
                    peer_present=not self._inconsistent,
                    heard=self._relay(iface, now),
                    peer_boot=self._last_peer_boot,
                ),
            )
        )
        return effects

    def _follow_active(
        self, frame: Frame, msg: HeartbeatRequest, iface: Iface, now: float
    ) -> list[Effect]:
        """A standby follows the request's active: its epoch, boot and relay."""
        effects: list[Effect] = []
        self._accepted_active_epoch = frame.epoch
        if frame.epoch > self.epoch:
            self.epoch = frame.epoch
            effects.append(self._persist())
        if msg.boot_id != self._active_boot:
            self._active_boot = msg.boot_id
            self._acknowledged = False
        self._last_req[iface] = now
        return effects + self._take_relay(msg.heard, iface, now)

    def _take_over_on_request(self, frame: Frame, iface: Iface, now: float) -> list[Effect]:
        """The active asks this standby to take over (``SWITCHOVER``): do, and confirm."""
        effects = self._become_active(
            now, "switchover requested by the active", switch_request=True
        )
        confirm = HeartbeatResponse(
            state=HaState.ACTIVE.value,
            flags=int(Flag.SWITCHOVER),
            applied_seq=self._change_seq,
            echo_seq=frame.seq,
            boot_id=self.config.boot_id,
            peer_present=False,
        )
        self._count(iface, "hb_resp_sent")
        # After PersistFacts: the epoch the confirmation claims is durable.
        return [*effects, Send(iface, confirm)]

    def _note_active_flags(self, flags: int, degraded: bool) -> list[Effect]:
        """A standby's view of the active's flags: degraded, and whether it has us."""
        effects: list[Effect] = []
        if degraded != self._active_degraded:
            self._active_degraded = degraded
            effects.append(StatusChanged())
        if flags & Flag.OUT_OF_SYNC:
            if self._acknowledged and not self._inconsistent:
                self._inconsistent = True
                effects += [
                    Trace(
                        "one-way communication: the active reports no standby; "
                        "redundancy state inconsistent, asking to be reset"
                    ),
                    StatusChanged(),
                ]
        elif not self._acknowledged:
            self._acknowledged = True
            effects += [Trace("accepted as HA standby by the active"), StatusChanged()]
        return effects

    def _on_liveness_ack(self, msg: LivenessAck) -> list[Effect]:
        if self.state is HaState.STANDBY and msg.nonce == self._probe_nonce:
            self._end_probing()
            return [Trace(f"crash fast path: the active is alive (answered as {msg.state})")]
        return []

    # ---- active -------------------------------------------------------------

    def _standby_loss_deadline(self) -> float:
        return max(self._last_resp.values()) + self._timers.max_loss_interval

    def _degraded_deadline(self) -> float:
        return self._last_resp[Iface.CONTROL] + self._timers.degraded_after

    def _request(self, iface: Iface, now: float) -> list[Effect]:
        flags = Flag.NONE
        if self._active is ActiveState.HANDING_OVER:
            flags |= Flag.SWITCHOVER
        if self._degraded:
            flags |= Flag.DEGRADED
        if not self._peer_present:
            flags |= Flag.OUT_OF_SYNC
        if self._peer_present and self._awaiting[iface]:
            self._count(iface, "hb_missed")
        self._awaiting[iface] = True
        self._count(iface, "hb_req_sent")
        msg = HeartbeatRequest(
            state=HaState.ACTIVE.value,
            flags=int(flags),
            change_seq=self._change_seq,
            boot_id=self.config.boot_id,
            heard=self._relay(iface, now),
            peer_boot=self._last_peer_boot,
        )
        return [Send(iface, msg)]

    def _send_requests(self, now: float) -> list[Effect]:
        ifaces = BOTH if (self._degraded or not self._peer_present) else (Iface.CONTROL,)
        effects: list[Effect] = []
        for iface in ifaces:
            effects += self._request(iface, now)
        return effects

    def _tick_active(self, now: float) -> list[Effect]:
        if self._active is ActiveState.LOSING:
            if now >= self._active_deadline:
                return self._reload(
                    f"split-brain resolution lost to the {self._peer_name} "
                    f"(logs not confirmed within {LOGS_TIMEOUT:g} s)"
                )
            if now >= self._logs_next:
                if self._logs_rounds < LOGS_ROUNDS:
                    return self._send_logs(now)
                # Sent, never acknowledged: the winner keeps what it got.
                return self._reload(f"split-brain resolution lost to the {self._peer_name}")
            return []
        effects: list[Effect] = []
        if self._active is ActiveState.HANDING_OVER:
            if now >= self._active_deadline:
                return self._reload(
                    f"{self._switch_reason}; no confirmation from the {self._peer_name} "
                    f"within {self._timers.max_loss_interval:g} s, reloading anyway"
                )
        elif self._peer_present:
            if now >= self._standby_loss_deadline():
                loss = self._timers.max_loss_interval
                effects += self._lose_peer(
                    f"no heartbeat response on control or mgmt for {loss:g} s"
                )
            elif not self._degraded and now >= self._degraded_deadline():
                self._degraded, self._mgmt_ok = True, False
                self._settle_active()
                after = self._timers.degraded_after
                effects += [
                    Trace(
                        f"degraded: no heartbeat response on control for {after:g} s, "
                        "heartbeats also on mgmt"
                    ),
                    StatusChanged(),
                ]
                if now < self._next_hb:
                    effects += self._request(Iface.MGMT, now)
        if now >= self._next_hb:
            self._next_hb += self._timers.heartbeat_interval
            if self._next_hb <= now:
                self._next_hb = now + self._timers.heartbeat_interval
            effects += self._send_requests(now)
        res = self._resolution
        if res is not None and res.peer_info is None and now >= res.next_send:
            res.next_send = now + self._timers.heartbeat_interval
            effects += [Send(Iface(i), res.ours) for i in sorted(res.ifaces)]
        return effects

    def _lose_peer(self, reason: str) -> list[Effect]:
        held = self._show_sync_truth("gone with the standby")
        self._peer_present = False
        self._doomed_boot = self._peer_boot
        self._peer_boot = None
        self._degraded = self._mgmt_ok = self._reset_on_next_response = False
        self._awaiting = {Iface.CONTROL: False, Iface.MGMT: False}
        self._settle_active()
        return [*held, Trace(f"standby lost: {reason}"), PeerLost(reason), StatusChanged()]

    def _on_response(
        self, msg: HeartbeatResponse, iface: Iface, now: float, mac: str
    ) -> list[Effect]:
        self._count(iface, "hb_resp_recv")
        if self.state is not HaState.ACTIVE or self._active is ActiveState.LOSING:
            return self._drop(iface, "unexpected")
        if self._active is ActiveState.HANDING_OVER:
            if msg.state == HaState.ACTIVE.value and msg.flags & Flag.SWITCHOVER:
                return self._reload(f"switchover complete: the {self._peer_name} is active")
            return []
        if msg.state != HaState.STANDBY.value:
            return self._drop(iface, "unexpected")
        self._last_resp[iface] = now
        self._awaiting[iface] = False
        present = self._peer_present and msg.boot_id == self._peer_boot
        why = ""
        if msg.flags & Flag.RESET_REQUESTED:
            # Seed one-way case: the standby asks first; say so in the trace.
            why = "it asked to be reset (two-way communication resumed)"
        elif msg.boot_id == self._doomed_boot:
            why = "it was declared lost or out of sync earlier"
        elif present and self._reset_on_next_response:
            why = "sync buffer overflow: it is out of sync"
        if why:
            return self._order_reset(msg.boot_id, iface, now, why)
        effects: list[Effect] = []
        if not present:
            if self._peer_present:
                effects += self._lose_peer("standby restarted (response from a new boot)")
            self._peer_present, self._peer_boot, self._peer_mac = True, msg.boot_id, mac
            self._last_resp = {Iface.CONTROL: now, Iface.MGMT: now}
            self._awaiting = {Iface.CONTROL: False, Iface.MGMT: False}
            self._degraded = self._mgmt_ok = False
            self._settle_active()
            effects += [
                Trace(f"standby {self._peer_name} ({mac}) is up on {iface.value}"),
                PeerUp(mac),
                StatusChanged(),
            ]
        elif self._degraded and iface is Iface.CONTROL:
            self._degraded = self._mgmt_ok = False
            self._settle_active()
            effects += [
                Trace("control interface restored: heartbeat responses on control again"),
                StatusChanged(),
            ]
        elif self._degraded and iface is Iface.MGMT and not self._mgmt_ok:
            self._mgmt_ok = True
            effects += [
                Trace("degraded mode: control down, mgmt up (heartbeats on mgmt)"),
                StatusChanged(),
            ]
        return effects + self._take_relay(msg.heard, iface, now)

    def _order_reset(self, boot: int, iface: Iface, now: float, why: str) -> list[Effect]:
        effects: list[Effect] = []
        if self._peer_present and boot == self._peer_boot:
            effects += self._lose_peer(f"standby reset ordered: {why}")
        self._doomed_boot = boot
        effects.append(Trace(f"ordering the standby to reset: {why}"))
        self._count(iface, "hb_req_sent")
        order = HeartbeatRequest(
            state=HaState.ACTIVE.value,
            flags=int(Flag.RESET_ORDERED | Flag.OUT_OF_SYNC),
            change_seq=self._change_seq,
            boot_id=self.config.boot_id,
        )
        effects.append(Send(iface, order))
        return effects

    def _can_switchover(self) -> bool:
        return (
            self.state is HaState.ACTIVE
            and self._peer_present
            and not self._degraded
            and not self._is_cold(self._sync_shown)  # as shown: a reconnecting stream is held
            and self._active is not ActiveState.HANDING_OVER
            and self._active is not ActiveState.LOSING
            and not self._reset_on_next_response
        )

    def _sync_cold(self) -> bool:
        """Until the sync stream is "hot" the standby cannot take over statefully."""
        return self._is_cold(self._sync_state)

    def _is_cold(self, sync_state: str) -> bool:
        if self.config.require_sync:
            return sync_state != "hot"
        return sync_state in ("cold", "warm")

    def _check_can_switchover(self) -> None:
        if self.state is not HaState.ACTIVE:
            raise OperatorRefused("this supervisor is not active")
        if self._active is ActiveState.HANDING_OVER:
            raise OperatorRefused("a switchover is already in progress")
        if not self._peer_present:
            raise OperatorRefused("no standby supervisor present")
        if not self._can_switchover():
            raise OperatorRefused("the standby supervisor is not in HA standby state")

    def _begin_switchover(self, now: float, reason: str) -> list[Effect]:
        self._set_active(ActiveState.HANDING_OVER, now + self._timers.max_loss_interval)
        self._switch_reason = reason
        effects: list[Effect] = [Trace(f"switchover: {reason}; handing over to the standby")]
        effects.append(StatusChanged())
        self._next_hb = now + self._timers.heartbeat_interval
        effects += self._send_requests(now)
        return effects

    # ---- split-brain --------------------------------------------------------

    def _our_info(self) -> ResolutionInfo:
        return ResolutionInfo(
            module_count=self._module_count,
            last_config_time=self._last_config_time,
            last_active_time=self._last_active_time,
            boot_id=self.config.boot_id,
            change_seq=self._change_seq,
        )

    def _on_peer_active(self, frame: Frame, boot: int, iface: Iface, now: float) -> list[Effect]:
        """Another active of the peer role is heard: resolve (DESIGN §3)."""
        res = self._resolution
        if res is not None and res.peer_boot == boot:
            res.last_heard = now
            if iface.value in res.ifaces:
                return []
            res.ifaces.add(iface.value)
            return [] if res.peer_info is not None else [Send(iface, res.ours)]
        if (
            res is not None
            and res.loser is None
            and now < res.last_heard + 2 * self._timers.heartbeat_interval
        ):
            # Another incarnation while the current one still talks: a stale or
            # reordered frame. Once the current one falls silent, the peer has
            # restarted and the resolution starts over with its new boot.
            return self._drop(iface, "stale")
        self._resolution = Resolution(
            last_heard=now,
            peer_boot=boot,
            ours=self._our_info(),
            ifaces={iface.value},
            next_send=now + self._timers.heartbeat_interval,
        )
        return [
            Trace(
                f"split-brain: the {self._peer_name} is also active (epoch {frame.epoch}, "
                f"heard on {iface.value}); exchanging resolution information"
            ),
            StatusChanged(),
            Send(iface, self._resolution.ours),
        ]

    def _on_resolution_info(
        self, frame: Frame, msg: ResolutionInfo, iface: Iface, now: float
    ) -> list[Effect]:
        if self.state is not HaState.ACTIVE or self._active is ActiveState.HANDING_OVER:
            return self._drop(iface, "unexpected")
        effects: list[Effect] = []
        res = self._resolution
        if res is None or res.peer_boot != msg.boot_id:
            if self._active is ActiveState.LOSING:
                return self._drop(iface, "stale")
            effects += self._on_peer_active(frame, msg.boot_id, iface, now)
            res = self._resolution
            if res is None or res.peer_boot != msg.boot_id:
                return effects
        res.ifaces.add(iface.value)
        res.last_heard = now
        first = res.offer(msg, frame.seq)
        if not first:
            # The peer still sends, so it may lack ours; at most one reply per
            # heartbeat interval so that two replying sides cannot ping-pong.
            if now < res.last_reply + self._timers.heartbeat_interval:
                return effects
            res.last_reply = now
            return [*effects, Send(iface, res.ours)]
        return [*effects, *self._decide(res, now)]

    def _decide(self, res: Resolution, now: float) -> list[Effect]:
        assert res.peer_info is not None
        ours, theirs = Side.of(res.ours), Side.of(res.peer_info)
        if self._role is SenderRole.PRIMARY:
            loser, why = decide(ours, theirs)
        else:
            loser, why = decide(theirs, ours)
        res.loser = loser
        if loser == self._role_name:
            self._set_active(ActiveState.LOSING, now + LOGS_TIMEOUT)
            return [
                Trace(f"split-brain resolution: this {self._role_name} reloads ({why})"),
                SplitBrainLost(self._peer_name, why),
                StatusChanged(),
            ]
        self.epoch = max(self.epoch, self._max_epoch_seen) + 1
        self._max_epoch_seen = self.epoch
        return [
            Trace(
                f"split-brain resolution: this {self._role_name} stays active, "
                f"epoch {self.epoch} ({why})"
            ),
            self._persist(),
            SplitBrainWon(self._peer_name, why),
            StatusChanged(),
        ]

    def _on_logs(self, msg: ResolutionLogs, iface: Iface, mac: str) -> list[Effect]:
        """The loser's logs (its MAC already checked by ``on_frame``): taken
        once per exchange, acknowledged on every copy of that exchange (an ack
        may be lost); another exchange's nonce is a replay."""
        res = self._resolution
        if (
            self.state is not HaState.ACTIVE
            or self._active is ActiveState.LOSING
            or res is None
            or res.loser != self._peer_name
        ):
            return self._drop(iface, "unexpected")
        if msg.nonce != res.logs_nonce:
            if res.logs_nonce is not None or msg.nonce in self._logs_seen or msg.nonce == 0:
                return self._replayed(iface)
            res.logs_nonce = msg.nonce
            self._logs_seen[msg.nonce] = None
            while len(self._logs_seen) > LOGS_NONCES_KEPT:
                self._logs_seen.popitem(last=False)
            taken: list[Effect] = [StoreRemoteLogs(msg, mac)]
        else:
            taken = []
        return [*taken, Send(iface, ResolutionLogsAck(count=len(msg.accounting), nonce=msg.nonce))]

    def _on_logs_ack(self, msg: ResolutionLogsAck, iface: Iface) -> list[Effect]:
        """The winner has the loser's logs: reload now (only for the outstanding nonce)."""
        out = self._logs_out
        if self.active_state is not ActiveState.LOSING or out is None:
            return self._drop(iface, "unexpected")
        if msg.nonce != out.nonce:
            return self._replayed(iface)
        self._logs_out = None
        return self._reload(f"split-brain resolution lost to the {self._peer_name}")

    def _replayed(self, iface: Iface) -> list[Effect]:
        """A resolution-logs message or ack of another exchange (``drop_replay``)."""
        ctr = self._counters[iface]
        ctr["drop_replay"] = ctr.get("drop_replay", 0) + 1
        return []

    def learnt_peer_mac(self, iface: Iface) -> str | None:
        """The peer's MAC learnt on ``iface`` (L2: its interface MAC), if any."""
        return self._peer_macs.get(iface.value)

    def _outrank(self, frame: Frame, msg: Message) -> list[Effect]:
        """An active that hears a peer that is not active with a higher epoch
        takes a new epoch above it.

        The peer was active at that epoch while this node did not hear it (an
        isolated takeover, then a reload of that node that was not a
        split-brain resolution: its crash-loop, a kill) and keeps the epoch
        durably. VEMs that attached to it then refuse this active's frames as
        stale, and the peer's sync would refuse this active's stream: the
        pair would stay degraded for good. A new epoch (persisted, then switch
        requests to every VEM) fences the old one, as a takeover does.
        """
        if (
            self.state is not HaState.ACTIVE
            or frame.epoch <= self.epoch
            or self._resolution is not None
            or not isinstance(msg, Discovery | HeartbeatRequest | HeartbeatResponse)
            or msg.state == HaState.ACTIVE.value
        ):
            return []
        old, self.epoch = self.epoch, max(self.epoch, self._max_epoch_seen) + 1
        self._max_epoch_seen = self.epoch
        return [
            Trace(
                f"epoch {old} -> {self.epoch}: the {self._peer_name} ({msg.state}) was active "
                f"at epoch {frame.epoch}, unheard here"
            ),
            self._persist(),
            SwitchRequestNeeded(),
            StatusChanged(),
        ]

    # ---- collisions and bookkeeping -----------------------------------------

    def _on_collision(self, mac: str, iface: Iface, now: float) -> list[Effect]:
        """A VSM with our role (another MAC, or ours with another boot) sends to us."""
        return self._drop(iface, "collision") + self._record_collision(
            mac, iface.value, now, f"detected on {iface.value}"
        )

    def _record_collision(self, mac: str, where: str, t: float, how: str) -> list[Effect]:
        rec = self._collisions.record(mac, where, t)
        effects: list[Effect] = []
        if rec.new:
            effects += [
                Trace(f"role collision: another {self._role_name} supervisor {mac} {how}"),
                StatusChanged(),
            ]
        if rec.overwrite is not None:
            effects.append(
                Trace(
                    f"role collision table full: entry {rec.overwrite.old_mac} "
                    f"overwritten by {rec.overwrite.new_mac}"
                )
            )
        return effects

    def _record_heard(self, mac: str, iface: Iface, t: float) -> tuple[Recorded, list[Effect]]:
        """A VSM of the peer's role that is not our partner: kept and relayed to it."""
        rec = self._heard.record(mac, iface.value, t)
        effects: list[Effect] = [StatusChanged()] if rec.new else []
        if rec.overwrite is not None:
            effects.append(
                Trace(
                    f"heard {self._peer_name} collision table full: entry "
                    f"{rec.overwrite.old_mac} overwritten by {rec.overwrite.new_mac}"
                )
            )
        return rec, effects

    def _on_foreign_peer(self, mac: str, iface: Iface, now: float) -> list[Effect]:
        """The peer's role from a MAC that is not the learnt one: dropped (seed
        SV3(1.1)) and, since it carries the domain's key, a collision for the partner."""
        rec, effects = self._record_heard(mac, iface, now)
        if rec.new:
            effects.insert(
                0,
                Trace(
                    f"role collision heard: a {self._peer_name} supervisor {mac} that is not "
                    f"the learnt {self._peer_name} sends on {iface.value}; "
                    f"reported to the {self._peer_name}"
                ),
            )
        return self._drop(iface, "bad_mac") + effects

    def _partner(self) -> tuple[int, float] | None:
        """The peer incarnation this node is bound to: (boot id, last heard)."""
        if self.state is HaState.ACTIVE:
            res = self._resolution
            if res is not None and res.loser is None:
                return res.peer_boot, res.last_heard
            if self._peer_present and self._peer_boot is not None:
                return self._peer_boot, max(self._last_resp.values())
            return None
        if self.state is HaState.STANDBY and self._active_boot is not None:
            return self._active_boot, max(self._last_req.values())
        return None

    def _partner_window(self) -> float:
        """How long the partner counts as alive after it was last heard: an
        active being resolved with, two heartbeat intervals (as
        ``_on_peer_active``); the standby this active has, or the active this
        standby follows, the loss interval: this node's own rule for "alive".
        Shorter, a stall of the real partner (a loaded host, a queue) just as a
        duplicate's first frames arrive would take the duplicate for its
        restart; a real restart proves itself (``peer_boot``) in one round trip."""
        res = self._resolution
        if self.state is HaState.ACTIVE and res is not None and res.loser is None:
            return 2 * self._timers.heartbeat_interval
        return self._timers.max_loss_interval

    def _screen_boot(
        self, msg: Message, boot: int, mac: str, iface: Iface, now: float
    ) -> tuple[bool, list[Effect]]:
        """(drop the frame?, effects) for a frame of the learnt peer MAC (``Incarnations``)."""
        partner = self._partner()
        proven = (
            isinstance(msg, HeartbeatRequest | HeartbeatResponse)
            and msg.peer_boot == self.config.boot_id
        )
        screened = self._incarnations.screen(
            boot, partner, now, proven=proven, live_window=self._partner_window()
        )
        effects: list[Effect] = []
        for dup, seen in screened.found:
            effects.append(
                Trace(
                    f"role collision heard: a duplicate {self._peer_name} {mac} "
                    f"(boot {dup:x}) talks while this node's {self._peer_name} "
                    f"(boot {partner[0] if partner else 0:x}) does; reported to the "
                    f"{self._peer_name}, never taken as its restart"
                )
            )
            effects += self._record_heard(mac, iface, seen)[1]
        if screened.verdict is Verdict.DUPLICATE:
            return True, self._drop(iface, "collision") + self._record_heard(mac, iface, now)[1]
        if screened.verdict is Verdict.HELD:
            effects = self._drop(iface, "stale")
            if isinstance(msg, Discovery) and msg.state == HaState.INITIALIZING.value:
                # Only the reply: it goes to the configured peer, so a restarted
                # partner learns its role at once, and the partner itself, if
                # this was a duplicate, ignores it. Nothing else acts until the
                # old boot falls silent.
                calm = self._active not in (ActiveState.HANDING_OVER, ActiveState.LOSING)
                if not msg.reply and (self.state is HaState.STANDBY or calm):
                    effects.append(self._discovery_reply(iface, self.state))
            return True, effects
        return False, effects

    def _relay(self, iface: Iface, now: float) -> tuple[HeardVsm, ...]:
        """What this node heard since its last relay, at most every ``RELAY_INTERVAL``
        (on every interface of that heartbeat round: control may be the one down)."""
        if now == self._last_relay and self._relay_payload:
            self._count(iface, "relay_sent")
            return self._relay_payload
        if now < self._last_relay + RELAY_INTERVAL:
            return ()
        fresh = [e for e in self._heard.entries if e.last_seen > self._last_relay]
        if not fresh:
            return ()
        self._last_relay = now
        self._relay_payload = tuple(
            HeardVsm(mac=e.mac, age_ms=max(0, round((now - e.last_seen) * 1000))) for e in fresh
        )
        self._count(iface, "relay_sent")
        return self._relay_payload

    def _take_relay(self, heard: tuple[HeardVsm, ...], iface: Iface, now: float) -> list[Effect]:
        """The partner heard VSMs of our role: collisions of ours (seed: both report)."""
        effects: list[Effect] = []
        for i, item in enumerate(heard):
            mac = _valid_mac(item.mac)
            if i >= MAX_ENTRIES or mac is None or not 0 <= item.age_ms <= EXPIRY * 1000:
                self._count(iface, "drop_malformed")
                continue
            self._count(iface, "relay_recv")
            effects += self._record_collision(
                mac, "relayed", now - item.age_ms / 1000, f"reported by the {self._peer_name}"
            )
        return effects

    def _persist(self) -> PersistFacts:
        return PersistFacts(
            PersistedFacts(
                epoch=self.epoch,
                peer_macs=dict(self._peer_macs),
                last_active_time=self._last_active_time,
            )
        )

    def _count(self, iface: Iface, name: str) -> None:
        self._counters[iface][name] += 1

    def _drop(self, iface: Iface, reason: str) -> list[Effect]:
        self._counters[iface][f"drop_{reason}"] += 1
        return []

    def _peer_present_view(self) -> bool:
        if self.state is HaState.ACTIVE:
            return self._peer_present
        return self.state is HaState.STANDBY

    def _state_strings(
        self,
    ) -> tuple[str, str, str, str, str | None, str | None, str]:
        """(this rdn, this sup, this internal, other rdn, other sup, other internal, mode)."""
        cold = self._is_cold(self._sync_shown)  # a reconnecting stream is held "hot"
        if self.state is HaState.ACTIVE:
            if not self._peer_present:
                return ("Active", "Active", "Active with no standby",
                        "Not present", "Not present", None, "None")  # fmt: skip
            if self._degraded and self._mgmt_ok:
                internal = "Degraded: control down, mgmt up"
            elif cold:
                internal = "Active with warm standby"
            else:
                internal = "Active with HA standby"
            if cold:
                return ("Active", "Active", internal, "Standby", "Cold standby",
                        "Cold standby (sync in progress)", "HA")  # fmt: skip
            return ("Active", "Active", internal, "Standby", "HA standby", "HA standby", "HA")
        if self.state is HaState.STANDBY:
            if self._inconsistent:
                internal = "Inconsistent: peer believes standby"
                other = "Active with no standby"
            elif self._active_degraded:
                internal = other = "Degraded: control down, mgmt up"
            elif cold:
                internal, other = "Cold standby (sync in progress)", "Active with warm standby"
            else:
                internal, other = "HA standby", "Active with HA standby"
            sup = "Cold standby" if cold else "HA standby"
            return ("Standby", sup, internal, "Active", "Active", other, "HA")
        if self.state is HaState.RELOADING:
            return ("Initializing", "Not present", "Reloading",
                    "Not present", "Not present", None, "None")  # fmt: skip
        return ("Initializing", "Initializing", "Initializing",
                "Not present", "Not present", None, "None")  # fmt: skip
