"""TLS from an operator's seat (issue 12 points 5 and 6): lab.json names the
HTTPS URL, the plain listener and the certificate to trust; the sync port
admits only a holder of the pair key; the lab's files are private."""

from __future__ import annotations

import json
import re
import socket
import ssl
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from openvsm.lab.common import wait_for
from openvsm.lab.lab import Lab

pytestmark = pytest.mark.integration


def cli_text(node: dict[str, Any], command: str) -> str:
    argv = [sys.executable, "-m", "openvsm", "cli", "--node", node["rundir"], "-c", command]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return out.stdout


def cli(node: dict[str, Any], command: str) -> Any:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "openvsm",
            "cli",
            "--node",
            node["rundir"],
            "-c",
            f"{command} | json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(out.stdout)


def _change_reaches_standby(active: dict[str, Any], standby: dict[str, Any], vlan: int) -> None:
    cli_text(active, f"configure terminal ; vlan {vlan} ; end")
    wait_for(
        lambda: re.search(rf"^vlan .*\b{vlan}\b", cli_text(standby, "show running-config"), re.M),
        15.0,
        f"vlan {vlan} to reach the standby over the TLS stream",
    )


def test_rest_https_plain_listener_and_sync_tls(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(timers="fast")
    active_name = lab.start()
    doc = json.loads((lab.root / "lab.json").read_text())
    nodes = {n["name"]: n for n in doc["nodes"]}
    active, standby = nodes[active_name], nodes[next(n for n in nodes if n != active_name)]
    auth = (doc["user"], doc["password"])

    # Files with secrets are the owner's only.
    for path in (lab.root / "lab.json", Path(active["config"]), Path(active["ca"])):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    key = Path(active["ca"]).with_name("pair.key")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600

    # One certificate for the pair; HTTPS against the lab's CA, the driver's plain HTTP.
    assert active["ca"] == standby["ca"]
    for node in (active, standby):
        assert node["rest"].startswith("https://") and node["rest_plain"].startswith("http://")
        r = requests.get(
            f"{node['rest']}/api/n1k/network-segment", auth=auth, verify=node["ca"], timeout=10
        )
        assert r.status_code == 200, r.text
        r = requests.get(f"{node['rest_plain']}/api/n1k/network-segment", auth=auth, timeout=10)
        assert r.status_code == 200, r.text
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{node['rest']}/api/n1k/network-segment", auth=auth, timeout=10)
        plain_to_https = node["rest"].replace("https://", "http://")
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(
                f"{plain_to_https}/api/n1k/network-segment", auth=auth, timeout=10
            ).raise_for_status()

    # The standby's sync port: plain junk, and TLS without the pair key, get nowhere.
    host, port = standby["control"].rsplit(":", 1)
    for _ in range(5):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"\x00" * 64 + b"GET / HTTP/1.0\r\n\r\n")
            s.settimeout(5)
            try:
                s.recv(100)
            except (TimeoutError, ConnectionError):
                pass
    ctx = ssl.create_default_context(cafile=active["ca"])
    ctx.check_hostname = False
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            try:
                with ctx.wrap_socket(raw) as tls:  # no client certificate
                    tls.settimeout(5)
                    assert tls.recv(100) == b""
            except (ssl.SSLError, ConnectionError, TimeoutError):
                pass

    # A flood of connects that never finish a handshake, held open meanwhile.
    flood = [socket.create_connection((host, int(port)), timeout=5) for _ in range(50)]
    try:
        for s in flood[::2]:
            s.sendall(b"\x16\x03\x01\x00\x05junk")  # a TLS record header, then junk
        _change_reaches_standby(active, standby, 66)
    finally:
        for s in flood:
            s.close()

    # The pair is undisturbed: still HA standby, and a change reaches the standby.
    status = cli(standby, "show system redundancy status")
    assert status["this_sup_internal_state"] == "HA standby", status
    subprocess.run(
        [
            sys.executable,
            "-m",
            "openvsm",
            "cli",
            "--node",
            active["rundir"],
            "-c",
            "configure terminal ; vlan 77 ; end",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    wait_for(
        lambda: re.search(r"^vlan .*\b77\b", cli_text(standby, "show running-config"), re.M),
        15.0,
        "vlan 77 to reach the standby over the TLS stream",
    )
    assert cli(active, "show system redundancy status")["this_sup_internal_state"] == (
        "Active with HA standby"
    )
