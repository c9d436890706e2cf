"""The history checker of the fault campaign (Jepsen habit: read the history,
never trust the system's own report).

Inputs are plain data, so the checker runs on synthetic histories in unit
tests exactly as on a real campaign:

- ``history``: every write the campaign's writer attempted, as ``WriteOp``:
  a key (a VLAN id), the value it set (the VLAN's name, unique per attempt),
  and the outcome seen by the client: ``ok`` (acknowledged), ``fail`` (a
  definite refusal: nothing was committed) or ``info`` (unknown: timeout,
  connection lost; the write may or may not have happened).
- ``Observation``: what the campaign read from the nodes after a fault had
  settled: each node's redundancy state, its store (digest, sequence and the
  writer's objects), the commands that split-brain resolutions listed as
  discarded, and the module table of the active.

Checks (each violation names its kind):

- ``lost_ack``: an acknowledged write is not visible on the active (the key
  is missing or holds an older value) and no split-brain resolution listed
  it as discarded. Register semantics per key: the writer writes a key
  sequentially, so the active must hold the value of the last acknowledged,
  non-discarded write, of a later one, or of any write whose outcome is
  unknown (it may take effect late).
- ``phantom``: a value on the active that no write ever carried, or the
  value of a write the client saw definitely refused.
- ``two_actives`` / ``no_active``: exactly one node must be active.
- ``divergent_standby``: a present standby's store digest differs from the
  active's at the same change sequence (``standby_lagging``: it did not
  reach the active's sequence within the settle bound).
- ``vem_detached`` / ``module_renumbered``: every VEM is attached to the
  active with status ok, under the module number it first got.

The seed's rules, from the VEMs' side (``ModuleSample``: one sampling round
of both nodes' role and ``show module`` table and of every VEM's own word on
which VSM it is attached to, read before and after the tables):

- ``module_not_attached`` (``AttachmentCheck``): ``show module`` on an
  active VSM listed a VEM as ``ok`` although that VEM was attached elsewhere
  (another VSM, or none) and had not been attached to this VSM at any round
  since it became active. Sampling skew: a VEM counts as attached elsewhere
  only if it said so both before and after the table was read (stable
  across the round); a VEM that was attached here earlier in this active
  period may stay ``ok`` for ``grace`` seconds after it left (the VSM's own
  loss timer). Modules inherited from the store show ``powered-up`` until
  they attach; only ``ok`` counts as attached. Only a table the node gave
  as active is judged (its own supervisor row in the same ``show module``
  answer says ``active``): hamgr's role is read before the table, and a
  split-brain loser that reloads in between answers with the replicated
  view a standby shows.
- ``split_brain_winner`` (``check_split_brain``): every split-brain was won
  by the side with more attached modules (VEM side, rounds before the
  decision with a stable attachment), then by the later configuration (the
  one side with changes observed during the split), then by the longer
  active (the earlier last standby->active switch, on the nodes' clocks).
  A level the observation cannot decide (VEMs moving, changes on both
  sides) is not judged.
- ``pair_disturbed`` (``check_undisturbed``): during a fault that only adds
  a third VSM (a copy of a node's configuration), the healthy pair keeps its
  roles, "Active with HA standby" / "HA standby", and its boots (no reload,
  no reset, no hamgr restart).
- ``two_address_holders`` (``check_address_holders``, ``AddressSample``):
  never two holders of the shared management address once the split-brain
  resolution bound has passed since the pair could see each other again
  (while partitioned, both actives may hold it).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class Outcome(enum.Enum):
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


@dataclass(frozen=True)
class WriteOp:
    id: int
    key: str
    value: str
    node: str
    start: float
    end: float
    outcome: Outcome
    error: str = ""

    @property
    def command(self) -> str:
        """The accounting text of the committing line (``vlan K ; name V``)."""
        return f"vlan {self.key} ; name {self.value}"


@dataclass(frozen=True)
class NodeView:
    name: str
    state: str | None  # "active" | "standby" | "initializing" | None (down/unreachable)
    digest: str | None = None
    seq: int | None = None
    values: Mapping[str, str] = field(default_factory=dict)  # key -> value (writer's kind)


@dataclass(frozen=True)
class Observation:
    label: str
    nodes: Mapping[str, NodeView]
    discarded_commands: frozenset[str] = frozenset()
    modules: Mapping[str, tuple[int, str]] = field(default_factory=dict)  # host -> (module, status)


@dataclass(frozen=True)
class Violation:
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def is_default_value(key: str, value: str) -> bool:
    """A VLAN created by a write whose ``name`` line did not commit."""
    return key.isdigit() and value == (f"VLAN{int(key):04d}" if int(key) != 1 else "default")


def check_roles(obs: Observation) -> list[Violation]:
    actives = sorted(n for n, v in obs.nodes.items() if v.state == "active")
    if len(actives) > 1:
        return [Violation("two_actives", f"{obs.label}: {', '.join(actives)} are all active")]
    if not actives:
        states = {n: v.state for n, v in obs.nodes.items()}
        return [Violation("no_active", f"{obs.label}: no active node ({states})")]
    return []


def active_view(obs: Observation) -> NodeView | None:
    actives = [v for v in obs.nodes.values() if v.state == "active"]
    return actives[0] if len(actives) == 1 else None


def check_standby(obs: Observation) -> list[Violation]:
    active = active_view(obs)
    if active is None:
        return []
    out = []
    for view in obs.nodes.values():
        if view.state != "standby":
            continue
        if view.digest != active.digest:
            # Behind (or ahead) in the change sequence: not caught up within the
            # bound; the same sequence with another digest: diverged.
            lagging = view.seq is not None and active.seq is not None and view.seq != active.seq
            out.append(
                Violation(
                    "standby_lagging" if lagging else "divergent_standby",
                    f"{obs.label}: standby {view.name} digest {str(view.digest)[:12]} "
                    f"(seq {view.seq}) != active {active.name} digest "
                    f"{str(active.digest)[:12]} (seq {active.seq})",
                )
            )
    return out


def check_history(history: Iterable[WriteOp], obs: Observation, *, prefix: str) -> list[Violation]:
    active = active_view(obs)
    if active is None:
        return []
    by_key: dict[str, list[WriteOp]] = {}
    values_seen: dict[str, WriteOp] = {}
    for op in sorted(history, key=lambda o: o.id):
        by_key.setdefault(op.key, []).append(op)
        values_seen[op.value] = op
    out: list[Violation] = []

    def discarded(op: WriteOp) -> bool:
        return op.command in obs.discarded_commands

    for key, ops in sorted(by_key.items()):
        actual = active.values.get(key)
        last_index = -1
        for i, op in enumerate(ops):
            if op.outcome is Outcome.OK and not discarded(op):
                last_index = i
        last = ops[last_index] if last_index >= 0 else None
        # An indeterminate write may take effect at any time after it began (a
        # frozen daemon applies a queued request when it resumes), even after a
        # later acknowledged one; a completed write only in its own order.
        allowed = {o.value for o in ops[last_index + 1 :] if o.outcome is not Outcome.FAIL}
        allowed |= {o.value for o in ops if o.outcome is Outcome.INFO}
        if last is not None:
            allowed.add(last.value)
        if actual is None:
            if last is not None:
                out.append(
                    Violation(
                        "lost_ack",
                        f"{obs.label}: key {key}: acknowledged write #{last.id} "
                        f"({last.value!r} on {last.node}) missing on active {active.name}",
                    )
                )
            continue
        if actual in allowed:
            continue
        if last is None and is_default_value(key, actual):
            continue
        writer = values_seen.get(actual)
        if writer is None and not is_default_value(key, actual):
            out.append(
                Violation(
                    "phantom",
                    f"{obs.label}: key {key} holds {actual!r}, which no write carried",
                )
            )
        elif writer is not None and writer.outcome is Outcome.FAIL:
            out.append(
                Violation(
                    "phantom",
                    f"{obs.label}: key {key} holds {actual!r} of write #{writer.id}, "
                    f"which the client saw refused ({writer.error.strip()[:80]})",
                )
            )
        elif last is not None:
            out.append(
                Violation(
                    "lost_ack",
                    f"{obs.label}: key {key}: active {active.name} holds {actual!r}, "
                    f"but write #{last.id} ({last.value!r}) was acknowledged after it",
                )
            )
    # Objects of the writer's namespace under keys the writer never wrote.
    for key, value in sorted(active.values.items()):
        if key not in by_key and value.startswith(prefix):
            out.append(Violation("phantom", f"{obs.label}: key {key} = {value!r} never written"))
    return out


def check_modules(obs: Observation, expected: Mapping[str, int]) -> list[Violation]:
    out = []
    for host, module in sorted(expected.items()):
        got = obs.modules.get(host)
        if got is None:
            out.append(Violation("vem_detached", f"{obs.label}: {host} not in the module table"))
            continue
        number, status = got
        if number != module:
            out.append(
                Violation(
                    "module_renumbered",
                    f"{obs.label}: {host} is module {number}, was {module}",
                )
            )
        if status != "ok":
            out.append(Violation("vem_detached", f"{obs.label}: {host} (module {number}) {status}"))
    return out


def check(
    history: Iterable[WriteOp],
    obs: Observation,
    *,
    prefix: str,
    modules: Mapping[str, int] | None = None,
) -> list[Violation]:
    """Every check on one observation."""
    out = check_roles(obs)
    out += check_standby(obs)
    out += check_history(history, obs, prefix=prefix)
    if modules is not None:
        out += check_modules(obs, modules)
    return out


# ---- the seed's rules, observed from the VEMs' side -----------------------------

UNKNOWN = "?"  # a VEM that did not answer: its attachment is not known


@dataclass(frozen=True)
class ModuleSample:
    """One sampling round. Times are the campaign's wall clock (``time.time``).

    ``before`` / ``after``: host -> the node its VEM says it is attached to
    (a pair node's name, another label for any other VSM, None when it is
    attached to none, ``UNKNOWN`` when it did not answer), read before and
    after ``listed`` (node -> host -> ``show module`` status, active nodes
    only). ``answered``: node -> the status of its own supervisor row in
    that same ``show module`` answer (``active``, ``ha-standby``,
    ``initializing``): the state the VEM rows were given in, which may no
    longer be the role read just before (a split-brain loser reloads within
    milliseconds); a node absent here is taken as ``active``.
    ``internal``: each node's ``this_sup_internal_state``; ``boots``: each
    node's hamgr boot id (None when unreadable).
    """

    t0: float
    t1: float
    roles: Mapping[str, str | None]
    listed: Mapping[str, Mapping[str, str]]
    before: Mapping[str, str | None]
    after: Mapping[str, str | None]
    internal: Mapping[str, str | None] = field(default_factory=dict)
    boots: Mapping[str, int | None] = field(default_factory=dict)
    answered: Mapping[str, str | None] = field(default_factory=dict)

    def stable(self, host: str) -> str | None:
        """Where ``host`` was attached through the whole round; ``UNKNOWN`` if
        it did not answer or moved during the round."""
        a, b = self.before.get(host, UNKNOWN), self.after.get(host, UNKNOWN)
        return a if a == b else UNKNOWN


class AttachmentCheck:
    """``show module`` must never list a VEM ``ok`` on a VSM it is not attached to.

    Fed every round in order (``feed``); keeps, per node, when its current
    active period began and, per (host, node), the last round in that period
    where the VEM was stably attached to the node."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._active_since: dict[str, float] = {}
        self._active_boot: dict[str, int | None] = {}
        self._seen_here: dict[tuple[str, str], float] = {}
        self._reported: set[tuple[str, str, float]] = set()

    def _follow_roles(self, s: ModuleSample) -> None:
        """An active period ends on a definite other role or a new hamgr boot.
        A round without an answer (the node stopped, hamgr restarting) ends
        nothing: the same boot answering "active" again is the same period."""
        for node, role in s.roles.items():
            if role is None:
                continue
            boot = s.boots.get(node)
            if role != "active":
                self._active_since.pop(node, None)
                continue
            same = node in self._active_since and (
                boot is None or self._active_boot.get(node) in (None, boot)
            )
            if not same:
                self._active_since[node] = s.t0
                for key in [k for k in self._seen_here if k[1] == node]:
                    del self._seen_here[key]
            if boot is not None:
                self._active_boot[node] = boot

    def feed(self, s: ModuleSample, label: str = "") -> list[Violation]:
        self._follow_roles(s)
        hosts = set(s.before) | set(s.after)
        for host in hosts:
            where = s.stable(host)
            if where is not None and where in self._active_since:
                self._seen_here[(host, where)] = s.t1
        out = []
        for node, table in sorted(s.listed.items()):
            since = self._active_since.get(node)
            if since is None or s.answered.get(node, "active") != "active":
                continue  # not an active's table (e.g. the loser, reloading already)
            for host, status in sorted(table.items()):
                if status != "ok":
                    continue
                where = s.stable(host)
                if where in (UNKNOWN, node):
                    continue
                seen = self._seen_here.get((host, node))
                if seen is not None and s.t0 - seen <= self.grace:
                    continue
                once = (host, node, since)
                if once in self._reported:
                    continue
                self._reported.add(once)
                elsewhere = f"attached to {where}" if where else "attached to no VSM"
                never = (
                    "never attached here since it became active"
                    if seen is None
                    else f"left {s.t0 - seen:.1f} s ago"
                )
                out.append(
                    Violation(
                        "module_not_attached",
                        f"{label}: show module on {node} listed {host} as ok, but the VEM "
                        f"was {elsewhere} ({never})",
                    )
                )
        return out


@dataclass(frozen=True)
class SplitBrainDecision:
    """A resolution as the winner's redundancy trace reported it (campaign wall
    clock), with the nodes' last standby->active switches (each node's own
    clock, as the seed's rule compares them; None if unknown)."""

    t: float
    winner: str
    loser: str
    reason: str
    split_start: float
    last_active: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Attached:
    """VEMs attached to each side at a decision (VEM side)."""

    counts: dict[str, int]
    unknown: int  # moving or not answering in the last two rounds
    moved: bool  # some VEM changed VSM during the split


def attached_counts(
    samples: Iterable[ModuleSample], decision: SplitBrainDecision
) -> Attached | None:
    """From the last two rounds of the split before the decision (a VEM counts
    only where it stayed through both). None without two such rounds."""
    rounds = [s for s in samples if decision.split_start <= s.t0 and s.t1 <= decision.t]
    if len(rounds) < 2:
        return None
    a, b = rounds[-2], rounds[-1]
    counts = {decision.winner: 0, decision.loser: 0}
    unknown = 0
    hosts = sorted({h for s in rounds for h in s.before})
    for host in hosts:
        wa, wb = a.stable(host), b.stable(host)
        if wa == UNKNOWN or wa != wb:
            unknown += 1
        elif wa is not None and wa in counts:
            counts[wa] += 1
    moved = any(len({s.stable(h) for s in rounds} - {UNKNOWN}) > 1 for h in hosts)
    return Attached(counts, unknown, moved)


def check_split_brain(
    decision: SplitBrainDecision,
    samples: Iterable[ModuleSample],
    changes: Mapping[str, int],
    *,
    label: str = "",
) -> list[Violation]:
    """The seed's precedence, judged from observation. ``changes``: node ->
    configuration changes observed on it during the split (acknowledged
    writes, operator changes, VEMs attaching to it: each commits)."""
    got = attached_counts(samples, decision)
    if got is None:
        return []
    counts, unknown = got.counts, got.unknown
    w, lo = decision.winner, decision.loser
    what = (
        f"{label}: split-brain won by the {w} ({decision.reason}); VEM side: "
        f"{counts[w]} attached to the {w}, {counts[lo]} to the {lo}"
        + (f", {unknown} moving" if unknown else "")
    )
    if counts[w] + unknown < counts[lo]:
        return [Violation("split_brain_winner", f"{what}: the side with more modules lost")]
    if unknown or counts[w] != counts[lo] or got.moved:
        return []  # a VEM that moved committed its module state: a change too
    cw, cl = changes.get(w, 0), changes.get(lo, 0)
    if cl and not cw:
        return [
            Violation(
                "split_brain_winner",
                f"{what}; changes during the split only on the {lo}: the later configuration lost",
            )
        ]
    if cw or cl:
        return []
    aw, al = decision.last_active.get(w), decision.last_active.get(lo)
    if aw is not None and al is not None and aw > al + 0.01:
        return [
            Violation(
                "split_brain_winner",
                f"{what}; no change on either side, the {lo} active since {al:.3f}, "
                f"the {w} since {aw:.3f}: the longer active lost",
            )
        ]
    return []


def check_undisturbed(
    samples: Iterable[ModuleSample], pair: tuple[str, str], *, label: str = ""
) -> list[Violation]:
    """The pair (active, standby) kept its roles, HA states and boots."""
    active, standby = pair
    want = {active: ("active", "Active with HA standby"), standby: ("standby", "HA standby")}
    boots: dict[str, int] = {}
    for s in samples:
        for node, (role, internal) in want.items():
            boot = s.boots.get(node)
            if boot is not None and boots.setdefault(node, boot) != boot:
                return [
                    Violation(
                        "pair_disturbed",
                        f"{label}: the {node}'s hamgr booted again (boot id "
                        f"{boots[node]} -> {boot})",
                    )
                ]
            got_role, got_internal = s.roles.get(node), s.internal.get(node)
            if got_role is None and got_internal is None:
                continue  # not read this round
            if got_role != role or got_internal != internal:
                return [
                    Violation(
                        "pair_disturbed",
                        f"{label}: the {node} was {got_role} / {got_internal!r}, "
                        f"not {role} / {internal!r}",
                    )
                ]
    return []


@dataclass(frozen=True)
class AddressSample:
    """One round of every node's mgmt service: does it hold the shared address?
    ``partitioned``: the campaign had cut the pair apart when it read them."""

    time: float
    holders: frozenset[str]
    partitioned: bool = False


def check_address_holders(
    samples: Iterable[AddressSample], *, bound: float, label: str = ""
) -> list[Violation]:
    """``two_address_holders``: two nodes held the shared management address
    more than ``bound`` seconds (the split-brain resolution bound) after the
    pair could last see each other again. While partitioned both sides may be
    active and hold it (neither can know); after the heal, the resolution must
    leave one holder within the bound."""
    healed_at: float | None = None
    out: list[Violation] = []
    for s in sorted(samples, key=lambda x: x.time):
        if s.partitioned:
            healed_at = None
            continue
        if healed_at is None:
            healed_at = s.time
        if len(s.holders) > 1 and s.time - healed_at > bound:
            out.append(
                Violation(
                    "two_address_holders",
                    f"{label}: {', '.join(sorted(s.holders))} held the shared management "
                    f"address {s.time - healed_at:.2f} s after the heal (bound {bound:.2f} s)",
                )
            )
            break
    return out


__all__ = [
    "UNKNOWN",
    "AddressSample",
    "Attached",
    "AttachmentCheck",
    "ModuleSample",
    "NodeView",
    "Observation",
    "Outcome",
    "SplitBrainDecision",
    "Violation",
    "WriteOp",
    "attached_counts",
    "check",
    "check_address_holders",
    "check_history",
    "check_modules",
    "check_roles",
    "check_split_brain",
    "check_standby",
    "check_undisturbed",
]
