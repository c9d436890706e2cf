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


__all__ = [
    "NodeView",
    "Observation",
    "Outcome",
    "Violation",
    "WriteOp",
    "check",
    "check_history",
    "check_modules",
    "check_roles",
    "check_standby",
]
