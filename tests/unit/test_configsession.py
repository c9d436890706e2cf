"""Configuration commands: modes, every command, bad input, running-config replay."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openvsm.cfgmgr.configsession import ConfigResult, ConfigSession, Mode
from openvsm.passwords import hash_password, verify_password
from openvsm.store.pss import Op, Store
from openvsm.store.runningconfig import MemoryView, render_running_config, running_config_lines
from openvsm.vlans import format_vlan_list, parse_vlan_list


class Term:
    """A session whose results are committed to a MemoryView, like cfgmgr does."""

    def __init__(self, view: MemoryView | None = None, mode: Mode = Mode.CONFIG) -> None:
        self.view = view or MemoryView()
        self.session = ConfigSession(self.view, mode=mode)

    def run(self, line: str) -> ConfigResult:
        result = self.session.execute(line)
        if result.error is None:
            self.view.apply(result.ops)
        return result

    def ok(self, *lines: str) -> str:
        out = ""
        for line in lines:
            result = self.run(line)
            assert result.error is None, f"{line!r}: {result.error}"
            out += result.output
        return out

    def err(self, line: str) -> str:
        before = (repr(self.view.objects), self.session.mode, self.session.profile)
        result = self.run(line)
        assert result.error is not None, f"{line!r} was accepted"
        assert result.ops == ()
        assert (repr(self.view.objects), self.session.mode, self.session.profile) == before
        return result.error

    def profile(self, name: str) -> dict[str, object]:
        body = self.view.get("port_profile", name)
        assert body is not None
        return body


def test_modes_and_prompts() -> None:
    t = Term(mode=Mode.EXEC)
    assert t.session.prompt == "switch#"
    r = t.run("configure terminal")
    assert r.mode is Mode.CONFIG and r.prompt == "switch(config)#"
    assert t.run("port-profile web").prompt == "switch(config-port-prof)#"
    assert t.run("exit").mode is Mode.CONFIG
    assert t.run("vlan 10").prompt == "switch(config-vlan)#"
    assert t.run("end").mode is Mode.EXEC
    assert t.run("conf t").mode is Mode.CONFIG
    assert t.run("exit").mode is Mode.EXEC
    assert t.run("exit").close is True


def test_port_profile_commands() -> None:
    t = Term()
    t.ok("vlan 10,20-25,30")
    t.ok(
        "port-profile type vethernet web",
        "description  Web servers  tier 1 ",
        "switchport mode access",
        "switchport access vlan 10",
        "switchport port-security maximum 5",
        "state enabled",
        "no shutdown",
    )
    p = t.profile("web")
    assert p["description"] == "Web servers  tier 1"
    assert (p["type"], p["mode"], p["access_vlan"], p["max_macs"]) == ("vethernet", "access", 10, 5)
    assert p["enabled"] is True and p["shutdown"] is False and p["owner"] == "cli"
    t.ok("shutdown", "no state enabled", "no description", "no switchport port-security maximum")
    p = t.profile("web")
    assert (p["shutdown"], p["enabled"], p["description"], p["max_macs"]) == (True, False, "", 0)
    t.ok("sw mo tr", "switchport trunk allowed vlan 10,20-25")
    assert t.profile("web")["allowed_vlans"] == [10, 20, 21, 22, 23, 24, 25]
    t.ok("switchport trunk allowed vlan add 30")
    t.ok("switchport trunk allowed vlan remove 20-24")
    assert t.profile("web")["allowed_vlans"] == [10, 25, 30]
    t.ok("no switchport trunk allowed vlan")
    assert t.profile("web")["allowed_vlans"] == []
    t.ok("no switchport mode", "no switchport access vlan")
    assert (t.profile("web")["mode"], t.profile("web")["access_vlan"]) == ("access", 1)


def test_ethernet_profile_channel_group() -> None:
    t = Term()
    t.ok(
        "port-profile type ethernet uplink",
        "switchport mode trunk",
        "channel-group auto mode active",
    )
    assert (t.profile("uplink")["channel_group"], t.profile("uplink")["lacp_mode"]) == (1, "active")
    t.ok("port-profile type ethernet uplink2", "channel-group auto")
    assert (t.profile("uplink2")["channel_group"], t.profile("uplink2")["lacp_mode"]) == (2, "")
    assert "used by port-profile uplink" in t.err("channel-group 1")
    t.ok("channel-group 7 mode passive", "no channel-group")
    assert t.profile("uplink2")["channel_group"] == 0
    t.ok("port-profile web")
    assert "only in an ethernet" in t.err("channel-group auto")


def test_submode_falls_back_to_config_commands() -> None:
    t = Term()
    t.ok("port-profile web", "vlan 20")
    assert (t.session.mode, t.session.vlans) == (Mode.VLAN, (20,))
    t.ok("name db", "port-profile web")
    assert (t.session.mode, t.session.profile) == (Mode.PORT_PROFILE, "web")
    t.ok("no vlan 20")
    assert t.view.get("vlan", "20") is None
    assert (t.session.mode, t.session.profile) == (Mode.CONFIG, "")


def test_vlan_commands() -> None:
    t = Term()
    t.ok("vlan 10-12,30")
    assert sorted(t.view.list("vlan")) == ["10", "11", "12", "30"]
    assert t.view.get("vlan", "10") == {"id": 10, "name": "VLAN0010", "owner": "cli"}
    t.ok("name web")  # applies to every VLAN of the range
    assert {v["name"] for v in t.view.list("vlan").values()} == {"web"}
    t.ok("no name")
    assert t.view.get("vlan", "30") == {"id": 30, "name": "VLAN0030", "owner": "cli"}
    t.ok("exit", "no vlan 11-12")
    assert sorted(t.view.list("vlan")) == ["10", "30"]
    assert "did not exist" in t.ok("no vlan 10,99")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("vlan 0", "VLAN 0 is out of range (1-4094)"),
        ("vlan 4095", "VLAN 4095 is out of range (1-4094)"),
        ("vlan 4000", "VLAN 4000 is reserved (3968-4047)"),
        ("vlan 3960-3970", "VLAN 3968 is reserved (3968-4047)"),
        ("vlan 20-10", "reversed"),
        ("vlan 10,10", "more than once"),
        ("vlan abc", "Invalid command"),
        ("vlan 10-", "Invalid command"),
        ("vlan 1,,2", "Invalid command"),
        ("vlan", "Incomplete command"),
        ("vlan 10 20", "Invalid command"),
        ("no vlan 1", "cannot be deleted"),
        ("no port-profile ghost", "port-profile ghost does not exist"),
        ("port-profile type bogus web", "Invalid command"),
        ("port-profile a b", "Invalid command"),
        ("port-profile", "Incomplete command"),
        ("port-profile bad*name", "Invalid port-profile name"),
        ("frobnicate", "Invalid command"),
        ("description outside", "Invalid command"),
        ("username", "Incomplete command"),
        ("username bob", "Incomplete command"),
        ("username bob password", "Incomplete command"),
        ("username bob password abc", "too short"),
        ("username bob password secret role king", "Invalid command"),
        ("username bob password 5 notahash", "Invalid password hash"),
        ("username b@d password secret", "Invalid user name"),
        ("no username ghost", "does not exist"),
        ("no username admin", "cannot be deleted"),
        ("copy running-config startup-config", "Invalid command"),
    ],
)
def test_config_mode_bad_input(line: str, message: str) -> None:
    t = Term()
    t.ok("username admin password secret1 role network-admin")
    error = t.err(line)
    assert message in error


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("switchport access vlan 0", "out of range"),
        ("switchport access vlan 4094x", "Invalid command"),
        ("switchport access vlan 4000", "VLAN 4000 is reserved (3968-4047)"),
        ("switchport access vlan 10-11", "exactly one VLAN"),
        ("switchport trunk allowed vlan 4095", "out of range"),
        ("switchport trunk allowed vlan add 10", "All VLANs are allowed already"),
        ("switchport trunk allowed vlan remove 10", "All VLANs are allowed"),
        ("switchport mode hybrid", "Invalid command"),
        ("switchport port-security maximum 0", "out of range"),
        ("switchport port-security maximum 2000", "out of range"),
        ("switchport port-security maximum x", "Invalid command"),
        ("switchport", "Incomplete command"),
        ("s", "Ambiguous command"),
        ("state", "Incomplete command"),
        ("state disabled", "Invalid command"),
        ("shutdown now", "Invalid command"),
        ("description", "Incomplete command"),
        ("description " + "x" * 81, "longer than 80"),
        ("no bogus", "Invalid command"),
        ("channel-group auto", "only in an ethernet"),
        ("name x", "Invalid command"),
        ("end now", "Invalid command"),
    ],
)
def test_port_profile_mode_bad_input(line: str, message: str) -> None:
    t = Term()
    t.ok("port-profile web")
    error = t.err(line)
    assert message in error


def test_trunk_remove_everything_refused() -> None:
    t = Term()
    t.ok("port-profile web", "switchport trunk allowed vlan 10")
    assert "not supported" in t.err("switchport trunk allowed vlan remove 10")
    assert "already allowed" in t.ok("switchport trunk allowed vlan 10,11", "sw tr al vl add 11")


def test_caret_points_at_bad_word() -> None:
    t = Term()
    error = t.err("vlan abc")
    assert error == "vlan abc\n     ^\n% Invalid command at '^' marker.\n"


def test_access_vlan_missing_is_a_warning() -> None:
    t = Term()
    out = t.ok("port-profile web", "switchport access vlan 99")
    assert "VLAN 99 does not exist" in out
    assert t.profile("web")["access_vlan"] == 99


def test_profile_type_conflict_and_in_use() -> None:
    t = Term()
    t.ok("port-profile type ethernet uplink", "exit")
    assert "already exists with type ethernet" in t.err("port-profile type vethernet uplink")
    t.ok("port-profile uplink", "exit")  # entering without a type is fine
    t.view.apply([Op("veth", "Vethernet1", {"name": "Vethernet1", "port_profile": "uplink"})])
    assert "in use by 1 interface(s) (Vethernet1)" in t.err("no port-profile uplink")
    t.view.apply([Op("veth", "Vethernet1", None)])
    t.ok("no port-profile type ethernet uplink")
    assert t.view.get("port_profile", "uplink") is None


def test_profile_deleted_under_the_session() -> None:
    t = Term()
    t.ok("port-profile web")
    t.view.apply([Op("port_profile", "web", None)])
    assert "no longer exists" in t.err("state enabled")
    t.ok("exit")


def test_openstack_objects_are_refused() -> None:
    view = MemoryView()
    view.apply(
        [
            Op("port_profile", "os-1", {"name": "os-1", "type": "vethernet", "owner": "openstack"}),
            Op("vlan", "100", {"id": 100, "name": "net-a", "owner": "openstack"}),
        ]
    )
    t = Term(view)
    for line in (
        "port-profile os-1",
        "no port-profile os-1",
        "vlan 100",
        "vlan 99-101",
        "no vlan 100",
    ):
        assert "managed by OpenStack" in t.err(line), line
        assert "out of sync" in t.err(line)


def test_users_and_passwords() -> None:
    t = Term()
    t.ok("username bob password s3cret role network-admin")
    bob = t.view.get("user", "bob")
    assert bob is not None and bob["role"] == "network-admin"
    assert bob["password_hash"].startswith("scrypt$")
    assert verify_password(bob["password_hash"], "s3cret")
    assert not verify_password(bob["password_hash"], "wrong")
    t.ok("username bob password other")  # role kept
    bob2 = t.view.get("user", "bob")
    assert bob2 is not None and bob2["role"] == "network-admin"
    assert verify_password(bob2["password_hash"], "other")
    t.ok("username eve password 0 cleartext")
    eve = t.view.get("user", "eve")
    assert eve is not None and eve["role"] == "network-operator"
    assert verify_password(eve["password_hash"], "cleartext")
    t.ok(f"username carl password 5 {bob['password_hash']}")
    carl = t.view.get("user", "carl")
    assert carl is not None and carl["password_hash"] == bob["password_hash"]
    t.ok("no username eve")
    assert t.view.get("user", "eve") is None


def test_password_hash_is_salted_and_bad_hashes_are_false() -> None:
    a, b = hash_password("pw"), hash_password("pw")
    assert a != b and verify_password(a, "pw") and verify_password(b, "pw")
    for bad in ("", "scrypt$", "md5$x", "scrypt$3$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!$AAAA"):
        assert verify_password(bad, "pw") is False
    huge = "scrypt$1048576$32$16$AAAAAAAA$" + "A" * 44
    assert verify_password(huge, "pw") is False


def test_copy_and_comments() -> None:
    t = Term(mode=Mode.EXEC)
    assert "always durable" in t.ok("copy running-config startup-config")
    assert "always durable" in t.ok("copy run start")
    t.ok("conf t", "! a comment", "   ", "  !vlan 10")
    assert t.view.list("vlan") == {}


def test_vlan_list_helpers() -> None:
    assert parse_vlan_list("10,20-25") == [10, 20, 21, 22, 23, 24, 25]
    assert format_vlan_list([1, 2, 3, 5, 7, 8]) == "1-3,5,7-8"
    assert format_vlan_list([]) == ""


# --- running configuration round trip ----------------------------------------------


def replay(lines: list[str]) -> MemoryView:
    fresh = Term()
    for line in lines:
        result = fresh.run(line)
        assert result.error is None, f"replay of {line!r}: {result.error}"
    return fresh.view


def cli_objects(view: MemoryView) -> dict[str, dict[str, dict[str, object]]]:
    return {
        kind: {k: v for k, v in table.items() if v.get("owner") != "openstack"}
        for kind, table in view.objects.items()
        if any(v.get("owner") != "openstack" for v in table.values())
    }


def test_running_config_round_trip_with_openstack_section() -> None:
    t = Term()
    t.ok(
        "username admin password secret1 role network-admin",
        "vlan 10,20-22",
        "vlan 20",
        "name db tier",
        "port-profile type ethernet uplink",
        "switchport mode trunk",
        "switchport trunk allowed vlan 10,20-22",
        "channel-group auto mode active",
        "state enabled",
        "port-profile web",
        "description web servers",
        "switchport access vlan 10",
        "switchport port-security maximum 3",
        "shutdown",
    )
    t.view.apply(
        [
            Op(
                "port_profile",
                "os-dyn",
                {"name": "os-dyn", "type": "vethernet", "owner": "openstack", "inherit": "web"},
            ),
            Op("vlan", "500", {"id": 500, "name": "tenant", "owner": "openstack"}),
        ]
    )
    lines = running_config_lines(t.view)
    assert "vlan 10,20-22" in lines
    assert "  channel-group 1 mode active" in lines
    assert "!port-profile type vethernet os-dyn" in lines
    assert "!  ! inherit port-profile web" in lines
    assert cli_objects(replay(lines)) == cli_objects(t.view)
    text = render_running_config(t.view, now=0.0)
    assert text.startswith("\n!Command: show running-config\n!Time: ")


def test_running_config_replay_into_a_store(tmp_path: Path) -> None:
    t = Term()
    t.ok("vlan 10", "name web", "port-profile web", "switchport access vlan 10", "state enabled")
    with Store(tmp_path / "pss.db") as store:
        session = ConfigSession(store, mode=Mode.CONFIG)
        for line in running_config_lines(t.view):
            result = session.execute(line)
            assert result.error is None
            if result.ops:
                store.commit(result.ops, user="admin", source="cli", command=line, time=1.0)
        assert store.list("vlan") == t.view.list("vlan")
        assert store.list("port_profile") == t.view.list("port_profile")


_names = st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=12).filter(
    lambda s: s.lower() not in ("type",)
)
_vlan_ids = st.integers(1, 3967) | st.integers(4048, 4094)
_text = (
    st.text(string.ascii_letters + string.digits + " !?#-_", min_size=1, max_size=30)
    .map(str.strip)
    .filter(bool)
)


@st.composite
def configs(draw: st.DrawFn) -> list[str]:
    lines: list[str] = []
    for n in draw(st.lists(_vlan_ids, max_size=6, unique=True)):
        lines.append(f"vlan {n}")
        if draw(st.booleans()):
            lines.append(f"name {draw(_text)}")
    for name in draw(st.lists(_names, max_size=5, unique_by=str.lower)):
        ethernet = draw(st.booleans())
        lines.append(f"port-profile type {'ethernet' if ethernet else 'vethernet'} {name}")
        if draw(st.booleans()):
            lines.append(f"description {draw(_text)}")
        lines.append(f"switchport mode {draw(st.sampled_from(['access', 'trunk']))}")
        if draw(st.booleans()):
            lines.append(f"switchport access vlan {draw(_vlan_ids)}")
        if draw(st.booleans()):
            allowed = draw(st.lists(_vlan_ids, min_size=1, max_size=8, unique=True))
            lines.append(f"switchport trunk allowed vlan {format_vlan_list(allowed)}")
        if draw(st.booleans()):
            lines.append(f"switchport port-security maximum {draw(st.integers(1, 1025))}")
        if ethernet and draw(st.booleans()):
            mode = draw(st.sampled_from(["", " mode active", " mode passive", " mode on"]))
            lines.append(f"channel-group auto{mode}")
        lines.append(draw(st.sampled_from(["shutdown", "no shutdown"])))
        if draw(st.booleans()):
            lines.append("state enabled")
        if draw(st.booleans()):
            lines.append("exit")
    return lines


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_running_config_round_trip_property(lines: list[str]) -> None:
    original = replay(lines)
    again = replay(running_config_lines(original))
    assert again.objects == original.objects
    assert running_config_lines(again) == running_config_lines(original)
