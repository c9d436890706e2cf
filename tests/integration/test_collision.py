"""VSM role collision detection and peer MAC validation, real processes on
loopback (seed: "VSM Role Collision Detection", "Displaying the Role
Collision", SV3(1.1) peer MAC note; DESIGN §2, §3, §8).

- A third VSM started by hand from a copy of the primary's config (new
  ports, new data directory, new system MAC; same role and domain) reaches
  the pair: the primary shows the WARNING block with its MAC, the NOTE line;
  the secondary, which hears a primary from an unknown MAC (``bad_mac``),
  shows it too, in a block naming sup-1 (heard here, reported to sup-1);
  the pair's roles do not move.
- Nine colliders (a frame injector sending properly signed heartbeats from
  nine MACs with the domain secret, via ``openvsm.wire.codec``: the outside
  world) -> eight entries and the overwrite line.
- Frames signed with another secret are counted ``bad_tag`` and change
  nothing; frames of the peer role from a spoofed MAC are counted ``bad_mac``
  and reported as a collision of the partner's role (relayed), nothing else.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from openvsm.lab.common import free_port, wait_for
from openvsm.lab.lab import Lab
from openvsm.wire.codec import Codec
from openvsm.wire.messages import Discovery, HeartbeatRequest, SenderRole

pytestmark = pytest.mark.integration

SETTLE = 20.0
LOSS = 0.6
BOTH = ("primary", "secondary")
MAC_LINE = re.compile(r"^([0-9a-f]{2}(?::[0-9a-f]{2}){5})\s+(\d{4}-\w{3}-\d{2} \d\d:\d\d:\d\d)$")


def other(name: str) -> str:
    return "secondary" if name == "primary" else "primary"


def status(lab: Lab, node: str) -> dict[str, Any]:
    st = lab.status(node)
    assert st is not None, f"{node} does not answer"
    return st


def roles(lab: Lab) -> dict[str, tuple[str, str]]:
    out = {}
    for node in BOTH:
        st = status(lab, node)
        out[node] = (str(st["this_sup_rdn_state"]), str(st["this_sup_internal_state"]))
    return out


def counters(lab: Lab, node: str) -> dict[str, dict[str, Any]]:
    data = lab.cli_json(node, "show system internal redundancy counters")
    return {str(r["interface"]): r for r in data["TABLE_counters"]["ROW_counters"]}


def collision_lines(text: str) -> list[tuple[str, str]]:
    return [(m[1], m[2]) for line in text.splitlines() if (m := MAC_LINE.match(line.strip()))]


class Injector:
    """Sends signed VSM frames to a node's interface from one UDP socket."""

    def __init__(self, lab: Lab, secret: str | None = None) -> None:
        self.codec = Codec(lab.domain_id, (secret or lab.secret).encode())
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.seq = int(time.time() * 1000)

    def send(
        self, dest: tuple[str, int], *, role: SenderRole, mac: str, epoch: int = 1, hb: bool = True
    ) -> None:
        self.seq += 1
        msg = (
            HeartbeatRequest(state="active", boot_id=0x5EED)
            if hb
            else Discovery(state="initializing", boot_id=0x5EED)
        )
        self.sock.sendto(
            self.codec.encode(msg, role=role, mac=mac, epoch=epoch, seq=self.seq), dest
        )

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def injector_factory() -> Iterator[Callable[..., Injector]]:
    made: list[Injector] = []

    def make(lab: Lab, secret: str | None = None) -> Injector:
        inj = Injector(lab, secret)
        made.append(inj)
        return inj

    yield make
    for inj in made:
        inj.close()


def start_collider(lab: Lab, copy_of: str, mac: str) -> subprocess.Popen[bytes]:
    """A VSM started by hand from a copy of ``copy_of``'s config: new ports, new
    data directory, new system MAC; same role and domain. Its control peer is
    the node it copies (same role: the collision), its mgmt peer the other node
    of the pair (peer role, unknown MAC: bad_mac)."""
    src = lab.nodes[copy_of]
    peer = lab.nodes[other(copy_of)]
    d = lab.root / "collider"
    d.mkdir(parents=True, exist_ok=True)
    text = src.config.read_text()
    subs = {
        f'local = "{src.control[0]}:{src.control[1]}"': f'local = "127.0.0.1:{free_port()}"',
        f'local = "{src.mgmt[0]}:{src.mgmt[1]}"': f'local = "127.0.0.1:{free_port()}"',
        f'peer = "{src.peer_control[0]}:{src.peer_control[1]}"': (
            f'peer = "{src.control[0]}:{src.control[1]}"'
        ),
        f'peer = "{src.peer_mgmt[0]}:{src.peer_mgmt[1]}"': (
            f'peer = "{peer.mgmt[0]}:{peer.mgmt[1]}"'
        ),
        f'listen = "{src.vem[0]}:{src.vem[1]}"': f'listen = "127.0.0.1:{free_port()}"',
        'hostname = "switch"': f'hostname = "switch"\nsystem_mac = "{mac}"',
    }
    for old, new in subs.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    cfg = d / "node.toml"
    cfg.write_text(text)
    log = (d / "console.log").open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "openvsm", "vsm", "--config", str(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def stop_collider(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass
    # Children that outlived sysmgr for a moment.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_third_vsm_with_the_same_role_is_reported(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(timers="fast", rest=False)
    active = lab.start()
    before = roles(lab)
    epoch = status(lab, active)["epoch"]
    mac = "02:aa:00:00:00:99"
    proc = start_collider(lab, "primary", mac)
    try:

        def warned() -> str | None:
            out = str(lab.cli("primary", "show system redundancy status")["output"])
            return out if mac in out else None

        out = wait_for(warned, SETTLE, "the primary to report the colliding primary")
        lines = out.splitlines()
        i = lines.index("WARNING! Conflicting sup-1(s) detected in same domain")
        assert lines[i + 1] == "-----"
        assert lines[i + 2].split() == ["MAC", "Latest", "Collision", "Time"]
        assert collision_lines(out) and collision_lines(out)[0][0] == mac
        assert (
            "NOTE: Please run the same command on sup-2 to check for conflicting(if any) "
            "sup-2(s) in the same domain."
        ) in lines
        st = status(lab, "primary")
        assert [c["mac"] for c in st["collisions"]] == [mac]
        # The secondary has no same-role collider: no sup-2 WARNING; the frames
        # of a "primary" with an unknown MAC are dropped as bad_mac and shown
        # as heard conflicting sup-1s.
        wait_for(
            lambda: counters(lab, "secondary")["mgmt"]["drop_bad_mac"] > 0,
            SETTLE,
            "the secondary to count the collider's frames as bad_mac",
        )
        st2 = status(lab, "secondary")
        assert st2["collisions"] == [] and [c["mac"] for c in st2["peer_collisions"]] == [mac]
        out2 = str(lab.cli("secondary", "show system redundancy status")["output"])
        assert "WARNING! Conflicting sup-2(s)" not in out2
        assert "WARNING! Conflicting sup-1(s) detected in same domain" in out2
        assert "      (heard by this supervisor, reported to sup-1)" in out2
        assert collision_lines(out2)[0][0] == mac
        events = lab.cli_json("primary", "show system internal redundancy trace")
        assert any(
            "role collision" in r["event"] and mac in r["event"]
            for r in events["TABLE_trace"]["ROW_trace"]
        )
        time.sleep(LOSS * 3)
        assert roles(lab) == before
        assert status(lab, active)["epoch"] == epoch
    finally:
        stop_collider(proc)


def test_nine_colliders_eight_entries_and_overwrite(
    make_lab: Callable[..., Lab], injector_factory: Callable[..., Injector]
) -> None:
    lab = make_lab(timers="fast", rest=False)
    active = lab.start()
    before = roles(lab)
    target = "secondary"
    inj = injector_factory(lab)
    macs = [f"02:bb:00:00:00:{i:02x}" for i in range(1, 10)]
    node = lab.nodes[target]
    for i, mac in enumerate(macs):
        iface = node.control if i % 2 == 0 else node.mgmt  # both interfaces detect
        inj.send(iface, role=SenderRole.SECONDARY, mac=mac, hb=i % 3 != 0)
        time.sleep(1.1 if i == 0 else 0.05)  # the first is clearly the oldest

    def nine_seen() -> dict[str, Any] | None:
        st = status(lab, target)
        return st if st.get("overwrites") else None

    st = wait_for(nine_seen, SETTLE, "the ninth collider to overwrite an entry")
    seen = [c["mac"] for c in st["collisions"]]
    assert len(seen) == 8 and set(seen) == set(macs[1:]), seen
    out = str(lab.cli(target, "show system redundancy status")["output"])
    assert "WARNING! Conflicting sup-2(s) detected in same domain" in out
    assert len(collision_lines(out)) == 8
    over = [line for line in out.splitlines() if line.startswith("Overwritten:")]
    assert len(over) == 1 and over[0].startswith(f"Overwritten: {macs[0]} by {macs[8]} at "), over
    assert "NOTE: Please run the same command on sup-1" in out
    # The same-role node only: the primary shows nothing (it heard no secondary).
    assert "WARNING" not in str(lab.cli("primary", "show system redundancy status")["output"])
    trace = lab.cli_json(target, "show system internal redundancy trace")
    assert any("overwritten" in r["event"] for r in trace["TABLE_trace"]["ROW_trace"])
    time.sleep(LOSS * 2)
    assert roles(lab) == before
    assert lab.active() == active


def test_bad_tag_and_spoofed_peer_mac_change_nothing(
    make_lab: Callable[..., Lab], injector_factory: Callable[..., Injector]
) -> None:
    lab = make_lab(timers="fast", rest=False)
    active = lab.start()
    standby = other(active)
    before = roles(lab)
    epoch = status(lab, active)["epoch"]
    c0 = {n: counters(lab, n) for n in BOTH}

    # A third VSM of another domain secret: every frame fails the tag.
    stranger = injector_factory(lab, secret="not-the-domain-secret")
    # The outside world with the right secret, claiming the peer role from a MAC
    # that is not the learnt one; a high epoch that would fence the pair if taken.
    spoofer = injector_factory(lab)
    spoofed_mac = "02:cc:00:00:00:01"
    for _ in range(5):
        for name in BOTH:
            node = lab.nodes[name]
            peer_role = SenderRole.SECONDARY if name == "primary" else SenderRole.PRIMARY
            own_role = SenderRole.PRIMARY if name == "primary" else SenderRole.SECONDARY
            for dest in (node.control, node.mgmt):
                stranger.send(dest, role=own_role, mac="02:dd:00:00:00:01", epoch=999)
                stranger.send(dest, role=peer_role, mac="02:dd:00:00:00:02", epoch=999)
                spoofer.send(dest, role=peer_role, mac=spoofed_mac, epoch=999)
        time.sleep(0.05)

    def counted() -> bool:
        for name in BOTH:
            c = counters(lab, name)
            for iface in ("control", "mgmt"):
                if c[iface].get("drop_bad_tag", 0) - c0[name][iface].get("drop_bad_tag", 0) < 10:
                    return False
                if c[iface].get("drop_bad_mac", 0) - c0[name][iface].get("drop_bad_mac", 0) < 5:
                    return False
        return True

    wait_for(counted, SETTLE, "bad_tag and bad_mac drops to be counted on both nodes")
    time.sleep(LOSS * 3)
    assert roles(lab) == before
    for name in BOTH:
        # The spoofer carries the domain's key: a VSM of the partner's role that is
        # not the partner, heard here and relayed to the partner; nothing else.

        def relayed(node: str = name) -> dict[str, Any] | None:
            st = status(lab, node)
            return st if st["collisions"] else None

        st = wait_for(relayed, SETTLE, f"the {name} to show the spoofer relayed by its peer")
        assert st["epoch"] == epoch, st
        assert [c["mac"] for c in st["peer_collisions"]] == [spoofed_mac], st
        assert [c["mac"] for c in st["collisions"]] == [spoofed_mac], st
    trace = lab.cli_json(standby, "show system internal redundancy trace")
    assert not any(
        "became active" in r["event"] or "02:dd:00:00:00" in r["event"]
        for r in trace["TABLE_trace"]["ROW_trace"]
    )
    res = lab.cli(active, "show system internal redundancy counters | json")
    assert not res.get("error") and "drop_bad_mac" in res["output"]
