"""LACP 8-active / 8-standby selection (virtual time, no OVS)."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from openvsm.vem.lacp import (
    LacpConfigError,
    MemberConfig,
    MemberState,
    MemberStatus,
    PartnerInfo,
    PortChannelSelector,
    member_configs,
    validate,
)


def names(n: int) -> list[str]:
    return [f"eth{i}" for i in range(1, n + 1)]


def up(selector: PortChannelSelector, down: Collection[str] = ()) -> dict[str, MemberStatus]:
    """Everything released is up and in sync, except ``down``."""
    return {
        m.name: MemberStatus(name=m.name, link_up=m.name not in down, lacp_current=True)
        for m in selector.members
    }


def test_ten_members_give_eight_active_two_standby() -> None:
    sel = PortChannelSelector(1, member_configs(names(10)))
    s = sel.update(0.0, {})
    assert s.active == tuple(names(8))
    assert s.standby == ("eth9", "eth10")
    assert s.down == ()
    s = sel.update(1.0, up(sel))
    assert s.active == tuple(names(8))
    assert all(sel.state(n) is MemberState.BUNDLED for n in names(8))
    assert sel.state("eth9") is MemberState.HOT_STANDBY


def test_priority_then_port_number_decides() -> None:
    prios = [("eth10", 100), ("eth9", 100), ("eth1", 40000)]
    sel = PortChannelSelector(2, member_configs(names(10), prios))
    s = sel.update(0.0, {})
    assert s.active[:2] == ("eth9", "eth10")  # priority 100 < 32768; then port number
    assert set(s.standby) == {"eth1", "eth8"}  # eth1 has the worst priority, eth8 the worst number
    assert s.standby == ("eth8", "eth1")


def test_more_than_sixteen_is_a_configuration_error() -> None:
    with pytest.raises(LacpConfigError, match="at most 16"):
        PortChannelSelector(1, member_configs(names(17)))
    validate(member_configs(names(16)), "active")
    with pytest.raises(LacpConfigError, match="static"):
        validate(member_configs(names(9)), "")
    with pytest.raises(LacpConfigError, match="duplicate"):
        validate([MemberConfig("a", 1), MemberConfig("a", 2)], "active")
    with pytest.raises(LacpConfigError, match="mode"):
        validate(member_configs(names(2)), "on")


def test_sixteen_members_eight_and_eight() -> None:
    sel = PortChannelSelector(1, member_configs(names(16)))
    s = sel.update(0.0, {})
    assert len(s.active) == 8 and len(s.standby) == 8


def test_active_failure_promotes_best_standby() -> None:
    sel = PortChannelSelector(1, member_configs(names(10)), promote_timeout=3.0)
    sel.update(0.0, {})
    sel.update(1.0, up(sel))
    s = sel.update(2.0, up(sel, down={"eth3"}))
    assert "eth3" in s.down
    assert "eth9" in s.active and s.promoted == ("eth9",)
    assert s.standby == ("eth10",)
    assert sel.promotions == 1
    # The promoted member's link is not up yet: still active while on probation.
    s = sel.update(3.0, up(sel, down={"eth3", "eth9"}))
    assert "eth9" in s.active
    s = sel.update(4.0, up(sel, down={"eth3"}))
    assert sel.state("eth9") is MemberState.BUNDLED
    assert len(s.active) == 8


def test_promoted_member_that_never_comes_up_is_skipped() -> None:
    sel = PortChannelSelector(1, member_configs(names(10)), promote_timeout=3.0)
    sel.update(0.0, {})
    sel.update(1.0, up(sel))
    sel.update(2.0, up(sel, down={"eth1"}))
    s = sel.update(4.9, up(sel, down={"eth1", "eth9"}))
    assert "eth9" in s.active
    s = sel.update(5.1, up(sel, down={"eth1", "eth9"}))
    assert "eth9" in s.down and "eth10" in s.active
    assert s.standby == ()
    # eth9's link shows up later: it is a candidate again (standby, as 8 are active).
    s = sel.update(6.0, up(sel, down={"eth1"}))
    assert "eth9" in s.standby or "eth9" in s.active


def test_recovered_better_member_displaces_worst_active() -> None:
    sel = PortChannelSelector(1, member_configs(names(10)))
    sel.update(0.0, {})
    sel.update(1.0, up(sel))
    sel.update(2.0, up(sel, down={"eth2"}))
    sel.update(3.0, up(sel, down={"eth2"}))
    s = sel.update(4.0, up(sel))  # eth2 back
    assert s.active == tuple(names(8))
    assert s.demoted == ("eth9",)
    assert s.standby == ("eth9", "eth10")
    assert sel.demotions == 1


def test_held_member_link_is_not_trusted() -> None:
    """A held-down standby reports link down (we downed it); it stays standby."""
    sel = PortChannelSelector(1, member_configs(names(9)))
    sel.update(0.0, {})
    s = sel.update(1.0, up(sel, down={"eth9"}))
    assert s.standby == ("eth9",)


def test_static_channel_has_no_standby() -> None:
    sel = PortChannelSelector(5, member_configs(names(4)), lacp_mode="")
    s = sel.update(0.0, {})
    assert s.active == tuple(names(4)) and s.standby == ()
    s = sel.update(5.0, up(sel, down={"eth4"}))
    assert s.down == ("eth4",)
    assert sel.state("eth1") is MemberState.BUNDLED  # no LACP: link up is enough


def test_link_up_without_partner_is_suspended() -> None:
    sel = PortChannelSelector(1, member_configs(names(2)))
    sel.update(0.0, {})
    s = sel.update(1.0, {"eth1": MemberStatus(name="eth1", link_up=True, lacp_current=False)})
    assert sel.state("eth1") is MemberState.SUSPENDED
    assert "eth1" in s.active


def test_show_data() -> None:
    sel = PortChannelSelector(7, member_configs(names(10)))
    sel.update(0.0, {})
    partner = PartnerInfo(system_id="aa:bb:cc:00:00:01", system_priority=65534, port_number=3)
    st = up(sel)
    st["eth1"] = MemberStatus(name="eth1", link_up=True, lacp_current=True, partner=partner)
    sel.update(1.0, st)
    summary = sel.summary()
    assert summary["port-channel"] == "port-channel7" and summary["status"] == "SU"
    flags = {r["port"]: r["port-status"] for r in summary["TABLE_member"]["ROW_member"]}
    assert flags["eth1"] == "P" and flags["eth10"] == "H"
    rows = sel.neighbors()["TABLE_interface"]["ROW_interface"]
    assert rows[0]["partner-system-id"] == "65534,aa:bb:cc:00:00:01"
    assert sel.counters()["promotions"] == 0
