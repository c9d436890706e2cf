"""``openvsm init`` and the systemd units, as an installer would use them: the
generated files (mode 0600), then each unit's ExecStart (and ExecReload)
command run as systemd would run it, with /etc/openvsm mapped to the
generated directory. The pair comes up, the bootstrap file creates the
admin user, SSH logs in with the generated password and sees the generated
host key, the VEM host attaches."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shlex
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from openvsm.lab.common import ipc_call, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "packaging" / "systemd"
OPENVSM = str(Path(sys.executable).with_name("openvsm"))


def _unit_lines(name: str, key: str) -> list[str]:
    text = (UNITS / name).read_text()
    return [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith(f"{key}=")]


def _free_base(ips: list[str]) -> int:
    """A port base whose ports +1..+4 and +80 are free (UDP and TCP) on every ip."""
    for _ in range(200):
        base = random.randrange(20000, 60000)
        try:
            for ip in ips:
                for off in (1, 2, 3, 4, 80):
                    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                        with socket.socket(socket.AF_INET, kind) as s:
                            s.bind((ip, base + off))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port base")


def _cli(run: Path, command: str) -> Any:
    out = subprocess.run(
        [OPENVSM, "cli", "--node", str(run), "-c", command],
        capture_output=True,
        text=True,
        timeout=20,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stdout + out.stderr)
    return json.loads(out.stdout) if command.endswith("| json") else out.stdout


def test_init_then_units_exec_start(tmp_path: Path) -> None:
    out, var, run = tmp_path / "deploy", tmp_path / "var", tmp_path / "run"
    ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    base = _free_base(ips)
    ssh_port = base + 5
    res = subprocess.run(
        [
            *(OPENVSM, "init", "--domain", "42", "--hosts", "1", "--out", str(out)),
            *("--vsm-ips", "127.0.0.2,127.0.0.3", "--host-ips", "127.0.0.4"),
            *("--port-base", str(base), "--ssh-port", str(ssh_port), "--vem-backend", "memory"),
            *("--data-dir", str(var), "--run-dir", str(run), "--etc", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "primary/*" in res.stdout and "openvsm-vsm@primary" in res.stdout
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 14
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # Keys per channel and per host: the pair key and the VEM key only on the VSMs,
    # a host only its own derived key (never the pair's or the VEM key).
    host_dir = out / "hosts" / "host-1"
    assert sorted(p.name for p in host_dir.iterdir()) == ["host.secret", "vem.toml"]
    pair, vem = ((out / "primary" / n).read_text() for n in ("pair.secret", "vem.secret"))
    assert pair != vem and len(pair.strip()) == len(vem.strip()) == 64
    for name in ("pair.secret", "vem.secret", "pair.crt", "pair.key"):
        assert (out / "secondary" / name).read_bytes() == (out / "primary" / name).read_bytes()
    host_files = (host_dir / "vem.toml").read_text() + (host_dir / "host.secret").read_text()
    assert pair.strip() not in host_files and vem.strip() not in host_files
    assert 'key_file = "host.secret"' in host_files and "secret =" not in host_files
    node_toml = (out / "primary" / "node.toml").read_text()
    assert "[keys]" in node_toml and "secret =" not in node_toml
    # init never overwrites.
    again = subprocess.run(
        [OPENVSM, "init", "--domain", "42", "--out", str(out)], capture_output=True, text=True
    )
    assert again.returncode == 2 and "not empty" in again.stderr

    (vsm_start,) = _unit_lines("openvsm-vsm@.service", "ExecStart")
    (vem_start,) = _unit_lines("openvsm-vem.service", "ExecStart")
    (vsm_reload,) = _unit_lines("openvsm-vsm@.service", "ExecReload")

    def command(line: str, instance: str = "", etc: Path = out) -> list[str]:
        # Each machine's /etc/openvsm is the generated directory meant for it.
        line = line.replace("%i", instance).replace("/etc/openvsm", str(etc))
        argv = shlex.split(line)
        assert argv[0] == "/usr/local/bin/openvsm"
        return [OPENVSM, *argv[1:]]

    procs: list[subprocess.Popen[bytes]] = []
    try:
        for role in ("primary", "secondary"):
            procs.append(subprocess.Popen(command(vsm_start, role), start_new_session=True))
        procs.append(
            subprocess.Popen(
                command(vem_start, etc=out / "hosts" / "host-1"), start_new_session=True
            )
        )

        def active() -> str | None:
            for role in ("primary", "secondary"):
                st = _cli(run / role, "show system redundancy status | json")
                if st["this_sup_rdn_state"] == "Active" and st["other_sup_rdn_state"] == "Standby":
                    return role
            return None

        act = wait_for(active, 60, "the init-generated pair to form")
        bootstrap = (out / "bootstrap.cli").read_text().strip()
        _cli(run / act, bootstrap)
        password = (out / "admin-password").read_text().strip()
        host_pub = asyncssh.import_public_key(
            (out / "primary" / "ssh_host_ed25519_key.pub").read_bytes()
        )

        async def login(ip: str) -> str:
            async with asyncssh.connect(
                ip, ssh_port, username="admin", password=password, known_hosts=None
            ) as conn:
                seen = conn.get_server_host_key()
                assert seen is not None and seen.public_data == host_pub.public_data
                result = await conn.run("show module", check=True)
                return str(result.stdout)

        wait_for(
            lambda: (
                "Virtual Ethernet Module"
                in asyncio.run(login("127.0.0.2" if act == "primary" else "127.0.0.3"))
            ),
            30,
            "the VEM host to attach, seen over SSH",
        )
        asyncio.run(login("127.0.0.3" if act == "primary" else "127.0.0.2"))

        # ExecReload: the mgmt service restarts, HA does not move, SSH answers again.
        sysmgr_pid = procs[0].pid
        before = ipc_call(run / "primary" / "sysmgr.sock", "services")
        pids = {r["name"]: r["pid"] for r in before["TABLE_service"]["ROW_service"]}
        reload_argv = shlex.split(vsm_reload.replace("$MAINPID", str(sysmgr_pid)))
        assert subprocess.run(reload_argv, timeout=10).returncode == 0

        def mgmt_restarted() -> bool:
            now = ipc_call(run / "primary" / "sysmgr.sock", "services")
            rows = {r["name"]: r for r in now["TABLE_service"]["ROW_service"]}
            return bool(rows["mgmt"]["pid"] and rows["mgmt"]["pid"] != pids["mgmt"]) and (
                rows["hamgr"]["pid"] == pids["hamgr"]
            )

        wait_for(mgmt_restarted, 20, "SIGHUP to restart the mgmt service only")
        wait_for(lambda: asyncio.run(login("127.0.0.2")), 20, "SSH after the reload")
        assert active() == act
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
