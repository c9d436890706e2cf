"""The campaign checker on synthetic histories: it must catch lost
acknowledgements, phantom changes, two actives and a divergent standby, and
must not flag the outcomes a correct system may produce."""

from __future__ import annotations

from openvsm.lab.checker import (
    NodeView,
    Observation,
    Outcome,
    Violation,
    WriteOp,
    check,
)

PREFIX = "cw-"


def op(i: int, key: str, outcome: Outcome = Outcome.OK, node: str = "primary") -> WriteOp:
    return WriteOp(i, key, f"{PREFIX}{i}", node, float(i), float(i) + 0.1, outcome)


def obs(
    values: dict[str, str],
    *,
    standby_digest: str | None = "d1",
    primary_state: str | None = "active",
    secondary_state: str | None = "standby",
    discarded: frozenset[str] = frozenset(),
    modules: dict[str, tuple[int, str]] | None = None,
) -> Observation:
    return Observation(
        label="fault 1",
        nodes={
            "primary": NodeView("primary", primary_state, "d1", 10, values),
            "secondary": NodeView("secondary", secondary_state, standby_digest, 10, values),
        },
        discarded_commands=discarded,
        modules=modules or {},
    )


def kinds(violations: list[Violation]) -> list[str]:
    return [v.kind for v in violations]


def test_clean_history_passes() -> None:
    history = [op(1, "100"), op(2, "101"), op(3, "100")]
    assert check(history, obs({"100": "cw-3", "101": "cw-2"}), prefix=PREFIX) == []


def test_lost_ack_missing_key() -> None:
    history = [op(1, "100"), op(2, "101")]
    assert kinds(check(history, obs({"100": "cw-1"}), prefix=PREFIX)) == ["lost_ack"]


def test_lost_ack_stale_value() -> None:
    history = [op(1, "100"), op(2, "100")]
    assert kinds(check(history, obs({"100": "cw-1"}), prefix=PREFIX)) == ["lost_ack"]


def test_indeterminate_writes_may_or_may_not_apply() -> None:
    history = [op(1, "100"), op(2, "100", Outcome.INFO), op(3, "101", Outcome.INFO)]
    assert check(history, obs({"100": "cw-2"}), prefix=PREFIX) == []
    assert check(history, obs({"100": "cw-1", "101": "cw-3"}), prefix=PREFIX) == []


def test_partially_applied_write_leaves_default_name() -> None:
    # "vlan 102" committed, "name ..." did not: only fine when nothing was acked.
    assert check([op(1, "102", Outcome.INFO)], obs({"102": "VLAN0102"}), prefix=PREFIX) == []
    assert kinds(check([op(1, "102")], obs({"102": "VLAN0102"}), prefix=PREFIX)) == ["lost_ack"]


def test_phantom_value_never_written() -> None:
    history = [op(1, "100")]
    got = check(history, obs({"100": "cw-77"}), prefix=PREFIX)
    assert kinds(got) == ["phantom"]
    got = check(history, obs({"100": "cw-1", "200": "cw-9"}), prefix=PREFIX)
    assert kinds(got) == ["phantom"]


def test_phantom_refused_write_applied() -> None:
    history = [op(1, "100"), op(2, "100", Outcome.FAIL)]
    assert kinds(check(history, obs({"100": "cw-2"}), prefix=PREFIX)) == ["phantom"]


def test_split_brain_discarded_change_is_excused() -> None:
    history = [op(1, "100"), op(2, "100", node="secondary")]
    lost = op(2, "100", node="secondary")
    assert kinds(check(history, obs({"100": "cw-1"}), prefix=PREFIX)) == ["lost_ack"]
    assert (
        check(history, obs({"100": "cw-1"}, discarded=frozenset({lost.command})), prefix=PREFIX)
        == []
    )


def test_two_actives() -> None:
    got = check([], obs({}, secondary_state="active"), prefix=PREFIX)
    assert kinds(got) == ["two_actives"]


def test_no_active() -> None:
    got = check([], obs({}, primary_state=None), prefix=PREFIX)
    assert kinds(got) == ["no_active"]


def test_divergent_standby() -> None:
    got = check([op(1, "100")], obs({"100": "cw-1"}, standby_digest="d2"), prefix=PREFIX)
    assert kinds(got) == ["divergent_standby"]


def test_modules_detached_or_renumbered() -> None:
    expected = {"host-1": 3, "host-2": 4}
    good = obs({}, modules={"host-1": (3, "ok"), "host-2": (4, "ok")})
    assert check([], good, prefix=PREFIX, modules=expected) == []
    bad = obs({}, modules={"host-1": (5, "ok")})
    assert sorted(kinds(check([], bad, prefix=PREFIX, modules=expected))) == [
        "module_renumbered",
        "vem_detached",
    ]
    headless = obs({}, modules={"host-1": (3, "ok"), "host-2": (4, "headless")})
    assert kinds(check([], headless, prefix=PREFIX, modules=expected)) == ["vem_detached"]


def test_indeterminate_write_may_land_after_a_later_ack() -> None:
    # A write queued at a frozen cfgmgr is applied when it resumes.
    history = [op(1, "100", Outcome.INFO), op(2, "100")]
    assert check(history, obs({"100": "cw-1"}), prefix=PREFIX) == []
    history = [op(1, "100"), op(2, "100")]
    assert kinds(check(history, obs({"100": "cw-1"}), prefix=PREFIX)) == ["lost_ack"]


def test_lagging_standby_is_told_apart() -> None:
    o = obs({"100": "cw-1"})
    lagging = Observation(
        label="fault 1",
        nodes={
            "primary": o.nodes["primary"],
            "secondary": NodeView("secondary", "standby", "d0", 9, {"100": "cw-1"}),
        },
    )
    assert kinds(check([op(1, "100")], lagging, prefix=PREFIX)) == ["standby_lagging"]
