"""The campaign checker on synthetic histories: it must catch lost
acknowledgements, phantom changes, two actives and a divergent standby, and
must not flag the outcomes a correct system may produce."""

from __future__ import annotations

from collections.abc import Mapping

from openvsm.lab.checker import (
    UNKNOWN,
    AttachmentCheck,
    ModuleSample,
    NodeView,
    Observation,
    Outcome,
    SplitBrainDecision,
    Violation,
    WriteOp,
    check,
    check_split_brain,
    check_undisturbed,
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


# ---- the seed's rules, from the VEMs' side ---------------------------------------

HOSTS = ("host-1", "host-2", "host-3")


def rnd(
    t: float,
    roles: dict[str, str],
    listed: Mapping[str, Mapping[str, str]],
    where: Mapping[str, str | None],
    after: Mapping[str, str | None] | None = None,
    internal: Mapping[str, str | None] | None = None,
    boots: Mapping[str, int | None] | None = None,
) -> ModuleSample:
    return ModuleSample(
        t,
        t + 0.02,
        roles,
        listed,
        where,
        where if after is None else after,
        internal or {},
        boots or {},
    )


def quick_heal_history(inherited: str) -> list[ModuleSample]:
    """Seed timers scaled: the secondary, cut from the primary and every VEM,
    takes over at t=1 and is healed at t=3; the VEMs never leave the primary.
    ``inherited``: what the new active's show module says of the VEMs it got
    from the store (today's code: ok; the decision: powered-up)."""
    on_primary: dict[str, str | None] = dict.fromkeys(HOSTS, "primary")
    ok = dict.fromkeys(HOSTS, "ok")
    out = [
        rnd(0.1 * i, {"primary": "active", "secondary": "standby"}, {"primary": ok}, on_primary)
        for i in range(10)
    ]
    out += [
        rnd(
            1.0 + 0.1 * i,
            {"primary": "active", "secondary": "active"},
            {"primary": ok, "secondary": dict.fromkeys(HOSTS, inherited)},
            on_primary,
        )
        for i in range(20)
    ]
    return out


def feed_all(check_: AttachmentCheck, samples: list[ModuleSample]) -> list[Violation]:
    out: list[Violation] = []
    for s in samples:
        out += check_.feed(s, "fault 1")
    return out


def test_inherited_modules_listed_ok_are_caught_once_per_vem() -> None:
    found = feed_all(AttachmentCheck(grace=2.0), quick_heal_history("ok"))
    assert kinds(found) == ["module_not_attached"] * 3
    assert all("on secondary listed host-" in v.detail for v in found)
    assert all("attached to primary" in v.detail for v in found)


def test_inherited_modules_powered_up_pass() -> None:
    assert feed_all(AttachmentCheck(grace=2.0), quick_heal_history("powered-up")) == []


def test_a_vem_moving_during_the_round_is_not_judged() -> None:
    check_ = AttachmentCheck(grace=2.0)
    roles = {"primary": "active", "secondary": "active"}
    ok = {"host-1": "ok"}
    # Read "primary" before the table and "secondary" after: it attached meanwhile.
    moving = rnd(1.0, roles, {"secondary": ok}, {"host-1": "primary"}, {"host-1": "secondary"})
    unknown = rnd(1.1, roles, {"secondary": ok}, {"host-1": UNKNOWN})
    attached = rnd(1.2, roles, {"secondary": ok}, {"host-1": "secondary"})
    assert feed_all(check_, [moving, unknown, attached]) == []


def test_a_vem_that_left_stays_ok_only_for_the_grace() -> None:
    roles = {"primary": "active", "secondary": "standby"}
    ok = {"primary": {"host-1": "ok"}}
    here = [rnd(0.1 * i, roles, ok, {"host-1": "primary"}) for i in range(5)]
    gone = [rnd(0.5 + 0.1 * i, roles, ok, {"host-1": None}) for i in range(40)]
    found = feed_all(AttachmentCheck(grace=2.0), here + gone)
    assert kinds(found) == ["module_not_attached"]
    assert "attached to no VSM (left 2.1 s ago)" in found[0].detail
    assert feed_all(AttachmentCheck(grace=5.0), here + gone) == []


def loser_reloading_history(answered_as: str) -> list[ModuleSample]:
    """Recorded (chaos seed 20251125, fault 2, ``stop_node standby`` 1.3 s;
    times from the split): the secondary, continued, takes over at 0.05 and
    loses the resolution at 0.056 (module count primary 2, secondary 0),
    reloading at 0.082. The sampler read its hamgr as active at 0.0, then its
    ``show module``, answered at 0.146 while it was reloading already: its own
    row ``initializing *``, the VEM rows the replicated view (``ok``); the
    VEMs never left the primary. ``answered_as``: the own row's state."""
    on_primary: dict[str, str | None] = {"pxhost-1": "primary", "pxhost-2": "primary"}
    ok = {"pxhost-1": "ok", "pxhost-2": "ok"}
    alone = {"primary": "active", "secondary": None}
    both = {"primary": "active", "secondary": "active"}

    def sample(
        t: float, roles: Mapping[str, str | None], listed: Mapping[str, Mapping[str, str]]
    ) -> ModuleSample:
        return ModuleSample(t, t + 0.02, roles, listed, on_primary, on_primary)

    out = [sample(-1.0 + 0.1 * i, alone, {"primary": ok}) for i in range(10)]
    out.append(
        ModuleSample(
            0.0,
            0.163,
            both,
            {"primary": ok, "secondary": ok},
            on_primary,
            on_primary,
            answered={"primary": "active", "secondary": answered_as},
        )
    )
    out += [sample(0.163 + 0.1 * i, alone, {"primary": ok}) for i in range(10)]
    return out


def test_the_losers_table_answered_while_reloading_is_not_judged() -> None:
    assert feed_all(AttachmentCheck(grace=1.6), loser_reloading_history("initializing")) == []
    # The same round answered as active is the defect the check is for.
    found = feed_all(AttachmentCheck(grace=1.6), loser_reloading_history("active"))
    assert kinds(found) == ["module_not_attached"] * 2
    assert all("on secondary listed pxhost-" in v.detail for v in found)


def test_inherited_ok_on_an_active_that_says_so_is_still_caught() -> None:
    """The own row is what the new active's answer says of itself: active."""
    history = [
        ModuleSample(
            s.t0,
            s.t1,
            s.roles,
            s.listed,
            s.before,
            s.after,
            answered={n: "active" for n in s.listed},
        )
        for s in quick_heal_history("ok")
    ]
    assert kinds(feed_all(AttachmentCheck(grace=2.0), history)) == ["module_not_attached"] * 3


def decision(
    winner: str, reason: str = "module count primary 3, secondary 3"
) -> SplitBrainDecision:
    loser = "secondary" if winner == "primary" else "primary"
    return SplitBrainDecision(
        t=3.05,
        winner=winner,
        loser=loser,
        reason=reason,
        split_start=1.0,
        last_active={"primary": 100.0, "secondary": 201.0},
    )


def test_split_brain_won_by_fewer_attached_modules_is_caught() -> None:
    history = quick_heal_history("ok")
    # Today: 3 = 3 on the module count, the secondary's later change wins.
    found = check_split_brain(
        decision("secondary", "last configuration time primary 1.000, secondary 2.000"),
        history,
        {"secondary": 1},
        label="fault 1",
    )
    assert kinds(found) == ["split_brain_winner"]
    assert "0 attached to the secondary, 3 to the primary" in found[0].detail
    assert check_split_brain(decision("primary"), history, {"secondary": 1}) == []


def test_split_brain_tie_levels() -> None:
    both = dict.fromkeys(HOSTS[:2], "primary") | {"host-3": "secondary"}
    roles = {"primary": "active", "secondary": "active"}
    even: dict[str, str | None] = {"host-1": "primary", "host-2": "secondary"}
    history = [rnd(1.0 + 0.1 * i, roles, {}, even) for i in range(5)]
    # Level 2: changes on one side only: that side must win.
    assert kinds(check_split_brain(decision("primary"), history, {"secondary": 2})) == [
        "split_brain_winner"
    ]
    assert check_split_brain(decision("secondary"), history, {"secondary": 2}) == []
    # Changes on both sides: the times are not observed precisely enough.
    assert check_split_brain(decision("primary"), history, {"primary": 1, "secondary": 1}) == []
    # Level 3: no change anywhere: the longer active (earlier switch) wins.
    assert kinds(check_split_brain(decision("secondary"), history, {})) == ["split_brain_winner"]
    assert check_split_brain(decision("primary"), history, {}) == []
    # Two moving VEMs could make up the difference: not judged.
    moving = [
        rnd(1.0 + 0.1 * i, roles, {}, both, {"host-1": "secondary", "host-2": None, "host-3": None})
        for i in range(5)
    ]
    assert check_split_brain(decision("secondary"), moving, {}) == []
    # Fewer than two rounds inside the split: not judged.
    assert check_split_brain(decision("secondary"), history[:1], {}) == []


def test_pair_undisturbed_by_a_third_vsm() -> None:
    ha = {"primary": "Active with HA standby", "secondary": "HA standby"}
    roles = {"primary": "active", "secondary": "standby"}
    boots: dict[str, int | None] = {"primary": 7, "secondary": 8}
    calm = [rnd(0.1 * i, roles, {}, {}, internal=dict(ha), boots=boots) for i in range(5)]
    assert check_undisturbed(calm, ("primary", "secondary")) == []
    # "standby restarted (discovery from a new boot)": the active lost its standby.
    lost = rnd(0.6, roles, {}, {}, internal=ha | {"primary": "Active with no standby"})
    assert kinds(check_undisturbed([*calm, lost], ("primary", "secondary"))) == ["pair_disturbed"]
    # The standby reset: its hamgr boots again.
    reset = rnd(0.7, roles, {}, {}, internal=dict(ha), boots=boots | {"secondary": 9})
    assert kinds(check_undisturbed([*calm, reset], ("primary", "secondary"))) == ["pair_disturbed"]
    # A round where a node did not answer is not evidence either way.
    silent = rnd(0.8, {}, {}, {}, boots={"primary": None, "secondary": None})
    assert check_undisturbed([*calm, silent], ("primary", "secondary")) == []


def stopped_active_history(boot_after: int) -> list[ModuleSample]:
    """The active's whole node is stopped (SIGSTOP) for 1.9 s: no answer; the
    VEMs move to the secondary, which took over; continued, the primary still
    lists them ok for a moment (its vemmgr has not read their detaches yet)."""
    on = {
        "primary": dict.fromkeys(HOSTS, "primary"),
        "secondary": dict.fromkeys(HOSTS, "secondary"),
    }
    ok = dict.fromkeys(HOSTS, "ok")
    pair = {"primary": "active", "secondary": "standby"}
    out = [
        rnd(0.1 * i, pair, {"primary": ok}, on["primary"], boots={"primary": 7}) for i in range(5)
    ]
    stopped: dict[str, str] = {"secondary": "active"}
    out += [rnd(0.6 + 0.1 * i, stopped, {}, on["secondary"]) for i in range(19)]
    both = {"primary": "active", "secondary": "active"}
    out.append(rnd(2.6, both, {"primary": ok}, on["secondary"], boots={"primary": boot_after}))
    return out


def test_a_stopped_active_answering_again_is_the_same_active_period() -> None:
    # Same hamgr boot: the VEMs were attached to it in this period and left
    # 2 s ago, inside the grace (loss time + 1 s).
    assert feed_all(AttachmentCheck(grace=2.5), stopped_active_history(boot_after=7)) == []
    # A new boot that answers active is a new period: never attached to it.
    found = feed_all(AttachmentCheck(grace=2.5), stopped_active_history(boot_after=8))
    assert kinds(found) == ["module_not_attached"] * 3
    assert all("never attached here since it became active" in v.detail for v in found)
