"""Attack: forge VSM frames with a VEM host's key (issue 12 points 1, 7).

An attacker who owns one hypervisor has what its VEM has: ``lab.json`` names
the VEM's configuration, which names its key file. With that key the test
sends what a VSM would send, to both VSMs' heartbeat ports (control and mgmt)
and VEM ports: Discovery as the active, heartbeat requests ordering the
standby to reset or to take over (switchover flag), the VSM->VEM messages a
host receives (reflected back with a VSM role), the same HA messages with the
host's UUID added, and a replication-stream connection (TLS without the pair
certificate, and the sync handshake under the host key in the clear).

Expected: every frame dropped and counted (``drop_vem_key_vsm_role`` where the
frame names the host whose key signed it, ``drop_bad_tag`` otherwise, in
``show system internal redundancy counters``; ``vem_key_vsm_role`` in
``show module vem counters | json`` drops), the sync connections refused;
and nothing changes: same roles, epochs and service pids (no reset, no
reload), the standby stays in sync, the VEM stays attached.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from openvsm.lab.lab import Lab, ipc_call, wait_for
from openvsm.wire.keys import tag
from tests.attacks import forged_frames, stolen_key

pytestmark = pytest.mark.integration
ROUNDS = 5


def cli_json(lab: Lab, node: str, command: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "openvsm", "cli", "--node", str(lab.rundir(node)), "-c",
         f"{command} | json"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def hamgr_drops(lab: Lab, node: str) -> dict[str, int]:
    rows = cli_json(lab, node, "show system internal redundancy counters")
    out: dict[str, int] = {}
    for row in rows["TABLE_counters"]["ROW_counters"]:
        for k, v in row.items():
            if k.startswith("drop_"):
                out[k] = out.get(k, 0) + int(v)
    return out


def vemmgr_drops(lab: Lab, node: str) -> dict[str, int]:
    return dict(cli_json(lab, node, "show module vem counters").get("drops", {}))


def state(lab: Lab, node: str) -> tuple[Any, ...]:
    st = cli_json(lab, node, "show system redundancy status")
    services = ipc_call(lab.rundir(node) / "sysmgr.sock", "services")
    pids = sorted((r["name"], r["pid"]) for r in services["TABLE_service"]["ROW_service"])
    trace = lab.cli_json(node, "show system internal redundancy trace")["TABLE_trace"]
    resets = [r for r in trace["ROW_trace"] if "reset" in r["event"].lower()]
    return st["this_sup_internal_state"], st["epoch"], tuple(pids), len(resets)


def active_mac(lab: Lab, node: str) -> str:
    trace = lab.cli_json(node, "show system internal redundancy trace")["TABLE_trace"]
    for row in trace["ROW_trace"]:
        found = re.search(r"system MAC ([0-9a-f:]{17})", row["event"])
        if found:
            return found.group(1)
    raise AssertionError("no boot line with the system MAC in the trace")


def sync_attempts(addr: tuple[str, int], key: bytes) -> list[str]:
    """Connections to the standby's replication port: TLS without the pair
    certificate, and plain bytes (the handshake's hello under the host key)."""
    outcomes = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for _ in range(2):
        try:
            with (
                socket.create_connection(addr, timeout=5) as raw,
                ctx.wrap_socket(raw) as tls,
            ):
                tls.sendall(b"\x00" * 32)
                got = tls.recv(64)
                outcomes.append("refused (closed)" if not got else f"answered {got!r}")
        except (OSError, ssl.SSLError) as exc:
            outcomes.append(f"refused ({type(exc).__name__})")
        try:
            with socket.create_connection(addr, timeout=5) as raw:
                hello = b"OVSYNC" + tag(key, b"hello")
                raw.sendall(len(hello).to_bytes(4, "big") + hello)
                raw.settimeout(6)
                got = raw.recv(64)
                outcomes.append("refused (closed)" if not got else f"answered {got!r}")
        except OSError as exc:
            outcomes.append(f"refused ({type(exc).__name__})")
    return outcomes


def test_vsm_frames_forged_with_a_vem_key_are_dropped_and_change_nothing(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(vems=1, timers="fast", rest=False)
    active = lab.start()
    standby = "secondary" if active == "primary" else "primary"
    lab.write_lab_json()
    info = json.loads((lab.root / "lab.json").read_text())
    host, key = stolen_key(info)
    nodes = {n["name"]: n for n in info["nodes"]}
    mac = active_mac(lab, active)  # what a sniffer on the control network learns
    before = {n: state(lab, n) for n in (active, standby)}
    assert before[active][0] == "Active with HA standby" and before[standby][0] == "HA standby"
    h0 = {n: hamgr_drops(lab, n) for n in (active, standby)}
    v0 = {n: vemmgr_drops(lab, n) for n in (active, standby)}

    frames = forged_frames(info["domain_id"], host, key, mac)
    targets = [
        (name, kind, tuple(nodes[name][kind].rsplit(":", 1)))
        for name in (active, standby)
        for kind in ("control", "mgmt", "vem")
    ]
    sent = {(name, kind): 0 for name, kind, _ in targets}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(ROUNDS):
            for name, kind, (ip, port) in targets:
                for frame in frames:
                    sock.sendto(frame, (ip, int(port)))
                    sent[(name, kind)] += 1
                time.sleep(0.02)  # no datagram lost to a full buffer
    claimed = sum(1 for f in frames if host.encode() in f)
    per_target = ROUNDS * len(frames)

    def hamgr_counted(node: str) -> bool:
        d = hamgr_drops(lab, node)
        named = d.get("drop_vem_key_vsm_role", 0) - h0[node].get("drop_vem_key_vsm_role", 0)
        bad = d.get("drop_bad_tag", 0) - h0[node].get("drop_bad_tag", 0)
        return named == 2 * ROUNDS * claimed and named + bad == 2 * per_target

    def vemmgr_counted(node: str) -> bool:
        d = vemmgr_drops(lab, node)
        named = d.get("vem_key_vsm_role", 0) - v0[node].get("vem_key_vsm_role", 0)
        bad = d.get("bad_tag", 0) - v0[node].get("bad_tag", 0)
        return named == ROUNDS * claimed and named + bad == per_target

    for node in (active, standby):
        wait_for(partial(hamgr_counted, node), 20, f"{node}'s hamgr to count every frame")
        wait_for(partial(vemmgr_counted, node), 20, f"{node}'s vemmgr to count every frame")

    control = nodes[standby]["control"].rsplit(":", 1)
    outcomes = sync_attempts((control[0], int(control[1])), key)
    assert all(o.startswith("refused") for o in outcomes), outcomes

    # Watched for several loss intervals of the fast profile: a reset, a reload or a
    # role change caused by a frame still queued would show in one of these reads.
    watch_until = time.monotonic() + 2.0
    while True:
        assert {n: state(lab, n) for n in (active, standby)} == before
        if time.monotonic() > watch_until:
            break
    mods = cli_json(lab, active, "show module")["TABLE_modinfo"]["ROW_modinfo"]
    assert [r["status"] for r in mods if r.get("modtype") == "Virtual Ethernet Module"] == ["ok"]
    # The pair still works: a change reaches the standby.
    res = lab.cli(active, "configure terminal ; vlan 77 ; end")
    assert not res["error"], res
    wait_for(
        lambda: re.search(
            r"^vlan [0-9,-]*\b77\b", lab.cli(standby, "show running-config")["output"], re.M
        ),
        15,
        "vlan 77 on the standby",
    )
