"""The SSH server of a VSM pair, driven as an operator and as automation tools
would: only lab.json's addresses and credentials, SSH clients, and the CLI.

Covers issue 13 points 2 and 4 on loopback: password and public-key logins,
one host key for the pair, exec and shell sessions, accounting under the SSH
user, wrong passwords (delayed, counted, rate-limited), oversized lines and a
client that never reads (none stalls another session), and netmiko and
scrapli (cisco_nxos) unmodified.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from openvsm.lab.common import ipc_call, wait_for
from openvsm.lab.lab import Lab

pytestmark = pytest.mark.integration


def _start(make_lab: Callable[..., Lab], **kw: Any) -> tuple[Lab, dict[str, Any], str]:
    lab = make_lab(timers="fast", rest=False, ssh=True, **kw)
    active = lab.start()
    lab.configure_defaults(active)
    doc = json.loads((lab.root / "lab.json").read_text())
    return lab, doc, active


def _node(doc: dict[str, Any], name: str) -> tuple[str, int]:
    row = next(n for n in doc["nodes"] if n["name"] == name)
    host, _, port = str(row["ssh"]).rpartition(":")
    return host, int(port)


def _connect(addr: tuple[str, int], **kw: Any) -> Any:
    return asyncssh.connect(addr[0], addr[1], known_hosts=None, **kw)


def _accounting(lab: Lab, node: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = lab.cli_json(node, "show accounting log")["TABLE_acct"]["ROW_acct"]
    return rows


def test_ssh_logins_exec_shell_and_accounting(make_lab: Callable[..., Lab], tmp_path: Path) -> None:
    lab, doc, active = _start(make_lab)
    standby = "secondary" if active == "primary" else "primary"
    a_addr, s_addr = _node(doc, active), _node(doc, standby)
    password = doc["password"]
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    pub = client_key.export_public_key("openssh").decode().strip()

    async def scenario() -> None:
        async with _connect(a_addr, username="admin", password=password) as conn:
            key_a = conn.get_server_host_key()
            res = await conn.run("show module", check=False)
            assert res.exit_status == 0 and "Virtual Supervisor Module" in res.stdout
            res = await conn.run("show system redundancy status | json", check=False)
            assert json.loads(res.stdout)["this_sup_rdn_state"] == "Active"
            res = await conn.run("show no-such-thing", check=False)
            assert res.exit_status == 1 and "% Invalid command" in res.stdout
            # A second user, configured over SSH: accounted under admin.
            res = await conn.run(
                "configure terminal ; username oper password oper-pass1 role network-admin"
                f' ; username oper sshkey "{pub}" ; end',
                check=False,
            )
            assert res.exit_status == 0, res.stdout
            res = await conn.run(
                "configure terminal ; username viewer password viewer-pass1"
                " role network-operator ; end",
                check=False,
            )
            assert res.exit_status == 0, res.stdout
        # A network-operator over SSH reads but may not configure.
        async with _connect(a_addr, username="viewer", password="viewer-pass1") as conn:
            res = await conn.run("show module", check=False)
            assert res.exit_status == 0
            res = await conn.run("configure terminal ; vlan 88 ; end", check=False)
            assert res.exit_status == 1 and "Permission denied" in res.stdout, res.stdout
        async with _connect(s_addr, username="admin", password=password) as conn:
            # One host key for the pair: a client behind the shared address sees one key.
            assert conn.get_server_host_key().public_data == key_a.public_data
            res = await conn.run("show system redundancy status | json", check=False)
            assert json.loads(res.stdout)["this_sup_rdn_state"] == "Standby"
        # Public-key login (no password), then a PTY shell as an operator types.
        async with _connect(
            a_addr, username="oper", client_keys=[client_key], password=None
        ) as conn:
            proc = await conn.create_process(term_type="vt100")
            await asyncio.wait_for(proc.stdout.readuntil("switch# "), 10)
            proc.stdin.write("configure terminal\n")
            await asyncio.wait_for(proc.stdout.readuntil("switch(config)# "), 10)
            proc.stdin.write("vlan 77\n")
            await asyncio.wait_for(proc.stdout.readuntil("switch(config-vlan)# "), 10)
            proc.stdin.write("end\n")
            await asyncio.wait_for(proc.stdout.readuntil("switch# "), 10)
            proc.stdin.write("exit\n")
            await asyncio.wait_for(proc.wait_closed(), 10)
        # Wrong password and unknown user: refused after the login delay.
        for user, pw in (("admin", "wrong-password"), ("nobody", "whatever1")):
            t0 = time.monotonic()
            with pytest.raises(asyncssh.PermissionDenied):
                async with _connect(a_addr, username=user, password=pw):
                    pass
            assert time.monotonic() - t0 >= 0.9

    asyncio.run(scenario())
    rows = _accounting(lab, active)
    assert any(r["user"] == "admin" and "username oper" in r["command"] for r in rows), rows
    assert any(r["user"] == "oper" and r["command"] == "vlan 77" for r in rows), rows
    running = lab.cli(active, "show running-config")["output"]
    vlans = [ln for ln in running.splitlines() if ln.startswith("vlan ")]
    assert vlans == ["vlan 10,20,77"], vlans  # the operator's vlan 88 was refused
    status = ipc_call(lab.rundir(active) / "mgmt.sock", "status")
    counters = status["ssh_counters"]
    assert counters["login_ok"] >= 2 and counters["login_wrong"] >= 2
    assert counters["login_unknown_user"] >= 1


def test_ssh_bad_input_stalls_no_one(make_lab: Callable[..., Lab]) -> None:
    lab, doc, active = _start(make_lab, ssh_write_timeout=2)
    addr = _node(doc, active)
    password = doc["password"]
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    pub = client_key.export_public_key("openssh").decode().strip()
    res = lab.cli(active, f'configure terminal ; username admin sshkey "{pub}" ; end')
    assert not res["error"], res

    async def guess() -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            async with _connect(
                addr,
                username="admin",
                password="guess",
                client_keys=None,
                preferred_auth="password",
            ):
                pass

    async def scenario() -> None:
        # A client that stops reading (its socket unread, a 4 kB window): the
        # server's writes block, the session ends at the write deadline (2 s).
        stalled = await _connect(addr, username="admin", password=password)
        sink = await stalled.create_process(window=4096, max_pktsize=1024)
        for _ in range(1000):
            sink.stdin.write("show running-config\n")
        stalled._transport.pause_reading()  # type: ignore[attr-defined]
        async with _connect(addr, username="admin", password=password) as slow:
            # An oversized line in a shell without a PTY is refused, not buffered.
            shell = await slow.create_process()
            await asyncio.wait_for(shell.stdout.readuntil("switch# "), 10)
            shell.stdin.write("show " + "x" * 100_000 + "\n")
            text = await asyncio.wait_for(shell.stdout.readuntil("switch# "), 10)
            assert "% Line too long" in text
            shell.stdin.write("show hostname\n")
            text = await asyncio.wait_for(shell.stdout.readuntil("switch# "), 10)
            assert "switch" in text
            # A flood of wrong passwords while a key holder logs in and works.
            flood = [asyncio.create_task(guess()) for _ in range(12)]
            await asyncio.sleep(0.3)
            t0 = time.monotonic()
            async with _connect(addr, username="admin", client_keys=[client_key]) as conn:
                res = await conn.run("show module", check=False)
                assert res.exit_status == 0
            assert time.monotonic() - t0 < 5.0
            await asyncio.gather(*flood)
            # Rate-limited now: even the right password is refused for a while.
            with pytest.raises(asyncssh.PermissionDenied):
                async with _connect(
                    addr, username="admin", password=password, preferred_auth="password"
                ):
                    pass

            stalled.close()

    asyncio.run(scenario())
    sock = lab.rundir(active) / "mgmt.sock"
    wait_for(
        lambda: ipc_call(sock, "status")["ssh_counters"]["slow_readers_closed"] == 1,
        10,
        "the session of the client that stopped reading to end at its write deadline",
    )
    counters = ipc_call(sock, "status")["ssh_counters"]
    assert counters["login_limited"] >= 1, counters
    assert counters["oversized_lines"] >= 1, counters
    # The node was never stalled: the local CLI answers at once.
    t0 = time.monotonic()
    assert not lab.cli(active, "show module")["error"]
    assert time.monotonic() - t0 < 2.0


@pytest.fixture(scope="module")
def client_lab(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Lab, dict[str, Any], str]]:
    """One pair for the automation clients (each configures its own VLAN)."""
    lab = Lab(tmp_path_factory.mktemp("clients") / "lab", timers="fast", rest=False, ssh=True)
    try:
        active = lab.start()
        lab.configure_defaults(active)
        yield lab, json.loads((lab.root / "lab.json").read_text()), active
    finally:
        lab.stop()


def _vlan_ids(lab: Lab, node: str) -> set[int]:
    out: set[int] = set()
    for line in lab.cli(node, "show running-config")["output"].splitlines():
        if line.startswith("vlan "):
            out |= {int(v) for v in line.split()[1].split(",") if v.isdigit()}
    return out


def test_netmiko_cisco_nxos(client_lab: tuple[Lab, dict[str, Any], str]) -> None:
    from netmiko import ConnectHandler

    lab, doc, active = client_lab
    host, port = _node(doc, active)
    conn = ConnectHandler(
        device_type="cisco_nxos",
        host=host,
        port=port,
        username="admin",
        password=doc["password"],
    )
    try:
        assert conn.find_prompt() == "switch#"
        out = conn.send_command("show module")
        assert "Virtual Supervisor Module" in out
        data = json.loads(str(conn.send_command("show system redundancy status | json")))
        assert data["this_sup_rdn_state"] == "Active"
        out = conn.send_config_set(["vlan 31", "exit"])
        assert "%" not in out, out
        assert "Copy complete" in conn.save_config()
    finally:
        conn.disconnect()
    assert 31 in _vlan_ids(lab, active)


@pytest.mark.skipif(shutil.which("ssh") is None, reason="scrapli's bin transport needs ssh")
def test_scrapli_cisco_nxos(client_lab: tuple[Lab, dict[str, Any], str]) -> None:
    from scrapli import Cli
    from scrapli.auth import Options as AuthOptions
    from scrapli.transport import BinOptions

    lab, doc, active = client_lab
    host, port = _node(doc, active)
    with Cli(
        host,
        port=port,
        definition_file_or_name="cisco_nxos",
        auth_options=AuthOptions(username="admin", password=doc["password"]),
        transport_options=BinOptions(enable_strict_key=False),
    ) as conn:
        assert conn.get_prompt().result == "switch#"
        assert "Virtual Supervisor Module" in conn.send_input("show module").result
        conn.send_inputs(["vlan 41", "exit"], requested_mode="configuration")
        bad = conn.send_input("show bogus")
        assert "% Invalid command" in bad.result
    assert 41 in _vlan_ids(lab, active)


def test_napalm_nxos_ssh(client_lab: tuple[Lab, dict[str, Any], str]) -> None:
    """NAPALM's nxos_ssh driver: facts, interfaces, VLANs, config, merge + commit + rollback."""
    from napalm import get_network_driver

    lab, doc, active = client_lab
    host, port = _node(doc, active)
    driver = get_network_driver("nxos_ssh")(
        host, "admin", doc["password"], optional_args={"port": port}
    )
    driver.open()
    try:
        facts = driver.get_facts()
        assert facts["hostname"] == "switch"
        assert {"1", "10", "20"} <= {str(v) for v in driver.get_vlans()}
        assert "vlan 10,20" in driver.get_config()["running"]
        before = _vlan_ids(lab, active)
        driver.load_merge_candidate(config="vlan 51\n")
        assert "vlan 51" in driver.compare_config()
        driver.commit_config()
        assert _vlan_ids(lab, active) == before | {51}
        assert "Management0" in driver.get_interfaces()
        driver.rollback()
    finally:
        driver.close()
    assert _vlan_ids(lab, active) == before


ANSIBLE = Path(sys.executable).with_name("ansible-playbook")

PLAYBOOK = """\
- hosts: vsm
  gather_facts: false
  tasks:
    - cisco.nxos.nxos_command:
        commands: ["show system redundancy status | json"]
      register: status
    - assert:
        that: ["status.stdout[0].this_sup_rdn_state == 'Active'"]
    - cisco.nxos.nxos_config:
        lines: ["vlan 61"]
    - cisco.nxos.nxos_facts:
        gather_subset: min
      register: facts
    - assert:
        that: ["facts.ansible_facts.ansible_net_hostname == 'switch'"]
"""


@pytest.mark.skipif(not ANSIBLE.exists(), reason="ansible (with cisco.nxos) not installed")
def test_ansible_cisco_nxos_network_cli(
    client_lab: tuple[Lab, dict[str, Any], str], tmp_path: Path
) -> None:
    lab, doc, active = client_lab
    host, port = _node(doc, active)
    (tmp_path / "inventory.yml").write_text(
        "all:\n  hosts:\n    vsm:\n"
        f"      ansible_host: {host}\n      ansible_port: {port}\n"
        "      ansible_network_os: cisco.nxos.nxos\n"
        "      ansible_connection: ansible.netcommon.network_cli\n"
        f'      ansible_user: admin\n      ansible_password: "{doc["password"]}"\n'
    )
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    env = {
        **os.environ,
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
    }
    res = subprocess.run(
        [str(ANSIBLE), "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "site.yml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "failed=0" in res.stdout
    assert 61 in _vlan_ids(lab, active)
