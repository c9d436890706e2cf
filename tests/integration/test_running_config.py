"""``show running-config`` is re-playable (DESIGN §4): configure a pair with a
varied configuration, replay the text into a fresh pair's active, and the
two stores hold the same configuration (and the fresh standby too)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from openvsm.lab.common import ipc_call, wait_for
from openvsm.lab.lab import Lab

pytestmark = pytest.mark.integration

SETTLE = 15.0

CONFIG = [
    "username alice password s3cret-Alice role network-operator",
    "username bob password B0b-pass-word role network-admin",
    "vlan 100-110,200,3000",
    "vlan 105",
    "name web-tier",
    "vlan 106",
    "name db tier",
    "no vlan 108",
    "port-profile type ethernet uplink-a",
    "switchport mode trunk",
    "switchport trunk allowed vlan 100-107,200",
    "channel-group 5 mode active",
    "description uplinks to the ToR pair",
    "no shutdown",
    "state enabled",
    "port-profile type ethernet uplink-b",
    "switchport mode trunk",
    "channel-group 6 mode passive",
    "shutdown",
    "port-profile type vethernet web",
    "switchport mode access",
    "switchport access vlan 105",
    "switchport port-security maximum 4",
    "description web servers",
    "no shutdown",
    "state enabled",
    "port-profile type vethernet db",
    "switchport access vlan 106",
    "state enabled",
    "port-profile type vethernet scratch",
    "description to be removed",
    "exit",
    "no port-profile scratch",
    "port-profile type vethernet vm-net",
    "description the lab default, edited",
    "switchport access vlan 20",
]


def cli(lab: Lab, node: str, line: str, session: str) -> dict[str, Any]:
    res: dict[str, Any] = ipc_call(
        lab.rundir(node) / "cfgmgr.sock", "cli", line=line, session=session
    )
    return res


def configure(lab: Lab, node: str, lines: list[str], session: str) -> None:
    for line in ["configure terminal", *lines, "end"]:
        res = cli(lab, node, line, session)
        assert not res["error"], (line, res["output"])


def running_config(lab: Lab, node: str) -> list[str]:
    res = cli(lab, node, "show running-config", "show")
    assert not res["error"], res
    return [ln for ln in res["output"].splitlines() if not ln.startswith("!Time:")]


def contents(lab: Lab, node: str) -> dict[str, Any]:
    """The CLI-owned configuration; port profiles without their generated uuid."""
    sock = lab.rundir(node) / "cfgmgr.sock"
    profiles = ipc_call(sock, "list", kind="port_profile")
    for body in profiles.values():
        body.pop("uuid", None)
    return {
        "vlan": ipc_call(sock, "list", kind="vlan"),
        "user": ipc_call(sock, "list", kind="user"),
        "port_profile": profiles,
    }


def test_running_config_replays_into_a_fresh_pair(make_lab: Callable[..., Lab]) -> None:
    src = make_lab(timers="fast", rest=False)
    active = src.start()  # with the lab defaults (admin, vlans 10/20, vm-net)
    configure(src, active, CONFIG, "cfg")
    text = running_config(src, active)
    print("\n".join(text))
    expected = contents(src, active)
    src.stop()
    assert "vlan 10,20,100-107,109-110,200,3000" in text, text
    assert not any("scratch" in ln for ln in text), text

    dst = make_lab(timers="fast", rest=False)
    for name in ("primary", "secondary"):
        dst.start_node(name)
    fresh = dst.wait_pair()  # no lab defaults: an empty store
    assert cli(dst, fresh, "show running-config", "s")["output"].count("port-profile") == 0
    replay = [ln for ln in text if ln.strip() and not ln.startswith("!")]
    configure(dst, fresh, replay, "replay")

    assert running_config(dst, fresh) == text
    assert contents(dst, fresh) == expected
    standby = "secondary" if fresh == "primary" else "primary"
    wait_for(
        lambda: contents(dst, standby) == expected, SETTLE, "the fresh standby to hold the replay"
    )
    # Replaying the same text again changes nothing it shows.
    configure(dst, fresh, replay, "replay-again")
    assert running_config(dst, fresh) == text
