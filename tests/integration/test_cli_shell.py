"""The NX-OS shell from the outside: ``openvsm cli -c`` and the interactive
shell over a pty, against a real pair (one lab for the module).

What an operator or an automation tool expects: the new shows and their
``| json`` keys, ``show version`` in the layout parsers read (the regexes of
the ntc-templates NX-OS template), help with ``?``, filters, checkpoint and
rollback as one replicated change (the standby has it too), the read-only
role refused configuration with the real user in the accounting log (a
second Unix user on the local socket, via SO_PEERCRED), and the
interactive shell's ``end``, Ctrl-Z, ``?`` and Tab.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openvsm.lab.common import wait_for
from openvsm.lab.lab import Lab

pytestmark = pytest.mark.integration

OPERATOR_UNIX = "nobody"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r|\x08")
FORWARD = re.compile(r"\x1b\[(\d*)C")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    # Not under pytest's 0700 tmp dirs: a second Unix user must reach the socket.
    root = Path(tempfile.mkdtemp(prefix="ovsm-shell-"))
    os.chmod(root, 0o755)
    lab = Lab(
        root / "lab",
        vems=1,
        timers="fast",
        rest=False,
        extra_node_toml=f'\n[cli]\nusers = {{ {OPERATOR_UNIX} = "olga" }}\n',
    )
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)


def active(lab: Lab) -> str:
    name: str = wait_for(lab.active, 20, "an active VSM")
    return name


def cli(lab: Lab, node: str, command: str, *, as_user: str | None = None) -> tuple[int, str]:
    """``openvsm cli --node RUNDIR -c COMMAND`` as an operator runs it."""
    argv = [sys.executable, "-m", "openvsm", "cli", "--node", str(lab.rundir(node)), "-c", command]
    if as_user is not None:
        argv = ["setpriv", f"--reuid={as_user}", "--regid=nogroup", "--clear-groups", *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout + out.stderr


def ok(lab: Lab, node: str, command: str) -> str:
    code, text = cli(lab, node, command)
    assert code == 0, f"{command!r}: {text}"
    return text


def as_json(lab: Lab, node: str, command: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(lab, node, f"{command} | json"))
    return data


def rows(data: dict[str, Any], table: str, row: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = data[table][row]
    return found


def test_show_version_parses_as_nxos_and_says_openvsm(lab: Lab) -> None:
    text = ok(lab, active(lab), "show version")
    # the lines ntc-templates' cisco_nxos_show_version reads (Record on Reason:)
    assert re.search(r"^\s+system:\s+version\s+\d+.\d+(.+)?\s*$", text, re.M)
    assert re.search(r"^\s+Device\s+name:\s+switch$", text, re.M)
    assert re.search(r"^Kernel\s+uptime\s+is\s+((\d+\s\w+.s.,?\s?){4})", text, re.M)
    assert re.search(r"^\s+Reason:\s.+", text, re.M)
    assert "openvsm" in text and "Cisco Nexus" not in text
    data = as_json(lab, active(lab), "show version")
    assert data["host_name"] == "switch" and data["sys_ver_str"]


def test_new_shows_have_text_and_nxos_json(lab: Lab) -> None:
    node = active(lab)
    assert ok(lab, node, "show hostname") == "switch\n"
    assert re.match(
        r"\d\d:\d\d:\d\d\.\d{3} \S+ \w{3} \w{3} \d\d \d{4}\n", ok(lab, node, "show clock")
    )
    users = rows(as_json(lab, node, "show users"), "TABLE_sessions", "ROW_sessions")
    me = [u for u in users if u["cur_session"] == "true"]
    assert len(me) == 1 and me[0]["u_name"] == "admin"  # root maps to admin
    inv = rows(as_json(lab, node, "show inventory"), "TABLE_inv", "ROW_inv")
    assert [r["productid"] for r in inv][:2] == ["OVSM-CHASSIS", "OVSM-VSM"]
    assert "OVSM-VEM" in [r["productid"] for r in inv]
    brief = rows(as_json(lab, node, "show interface brief"), "TABLE_interface", "ROW_interface")
    assert brief[0]["interface"] == "mgmt0"
    wait_for(lambda: "Veth1" in ok(lab, node, "show interface status"), 20, "the VEM's vEthernet")
    status = rows(as_json(lab, node, "show interface status"), "TABLE_interface", "ROW_interface")
    assert {"interface", "name", "state", "vlan", "duplex", "speed", "type"} <= set(status[1])
    mgmt = rows(as_json(lab, node, "show interface mgmt0"), "TABLE_interface", "ROW_interface")
    assert mgmt[0]["eth_ip_addr"] and "mgmt0 is up" in ok(lab, node, "show interface mgmt0")
    vlans = rows(
        as_json(lab, node, "show vlan brief"), "TABLE_vlanbriefxbrief", "ROW_vlanbriefxbrief"
    )
    by_id = {r["vlanshowbr-vlanid"]: r for r in vlans}
    assert by_id[1]["vlanshowbr-vlanname"] == "default" and 10 in by_id
    assert "Vethernet1" in by_id[10]["vlanshowplist-ifidx"]  # the lab's vm-net is access VLAN 10
    assert "VLAN Name" in ok(lab, node, "show vlan brief")
    startup = ok(lab, node, "show startup-config")
    assert (
        "!Command: show startup-config" in startup
        and "port-profile type vethernet vm-net" in startup
    )
    assert ok(lab, node, "copy running-config startup-config").endswith("Copy complete.\n")


def test_help_filters_and_abbreviations(lab: Lab) -> None:
    node = active(lab)
    help_text = ok(lab, node, "show ?")
    assert re.search(r"^  version +Show the software and hardware version$", help_text, re.M)
    assert not re.search(r"^% \w+", help_text, re.M)  # Ansible would call that an error
    assert ok(lab, node, "sh ver | inc system:").strip().startswith("system:    version")
    plain = ok(lab, node, "show running-config").splitlines()
    wanted = [ln for ln in plain if re.search("vm-net|vlan 10", ln)]
    assert len(wanted) >= 2
    assert ok(lab, node, "show running-config | include vm-net|vlan 10") == "".join(
        ln + "\n" for ln in wanted
    )
    assert ok(lab, node, "show running-config | include vm-net|vlan 10 | count") == (
        f"{len(wanted)}\n"
    )
    assert json.loads(ok(lab, node, "sh hostn | json-pretty")) == {"hostname": "switch"}
    code, text = cli(lab, node, "show modle")
    assert code == 1 and "% Invalid command at '^' marker." in text
    assert "term_length" in ok(
        lab, node, "terminal length 0 ; terminal width 511 ; show terminal | json"
    )


def running_lines(lab: Lab, node: str) -> list[str]:
    return [
        ln for ln in ok(lab, node, "show running-config").splitlines() if not ln.startswith("!Time")
    ]


def test_checkpoint_rollback_is_one_replicated_change(lab: Lab) -> None:
    node = active(lab)
    standby = "secondary" if node == "primary" else "primary"
    before = running_lines(lab, node)
    ok(lab, node, "checkpoint before-web")
    ok(
        lab,
        node,
        "conf t ; vlan 300 ; port-profile type vethernet web300 ; switchport access vlan 300 ; end",
    )
    ok(lab, node, "conf t ; port-profile vm-net ; description changed ; end")
    assert running_lines(lab, node) != before
    seq0 = max(
        r["seq"] for r in rows(as_json(lab, node, "show accounting log"), "TABLE_acct", "ROW_acct")
    )
    out = ok(lab, node, "rollback running-config checkpoint before-web")
    assert out.endswith("Rollback completed successfully.\n")
    assert running_lines(lab, node) == before
    acct = rows(as_json(lab, node, "show accounting log"), "TABLE_acct", "ROW_acct")
    after = [r for r in acct if r["seq"] > seq0]
    assert [r["command"] for r in after] == ["rollback running-config checkpoint before-web"]
    wait_for(lambda: running_lines(lab, standby) == before, 10, "the standby to have the rollback")
    summary = rows(as_json(lab, standby, "show checkpoint summary"), "TABLE_ckpt", "ROW_ckpt")
    assert [r["name"] for r in summary] == ["before-web"]
    code, text = cli(lab, node, "rollback running-config checkpoint nope")
    assert code == 1 and text.startswith("% Checkpoint nope does not exist")
    ok(lab, node, "no checkpoint before-web")


def _open_socket_to(lab: Lab, node: str) -> None:
    """The operator lets a second Unix user reach the node's CLI socket."""
    path = lab.rundir(node) / "cfgmgr.sock"
    for d in (path.parent, path.parent.parent, path.parent.parent.parent):
        os.chmod(d, os.stat(d).st_mode | 0o011)
    os.chmod(path, 0o666)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_read_only_role_from_the_unix_peer(lab: Lab) -> None:
    node = active(lab)
    ok(lab, node, "conf t ; username olga password olga-pass-1 role network-operator ; end")
    _open_socket_to(lab, node)
    code, text = cli(lab, node, "show hostname", as_user=OPERATOR_UNIX)
    assert (code, text) == (0, "switch\n")
    code, text = cli(lab, node, "configure terminal", as_user=OPERATOR_UNIX)
    assert code == 1 and text == "% Permission denied for the role\n"
    code, text = cli(lab, node, "system switchover", as_user=OPERATOR_UNIX)
    assert code == 1 and "Permission denied" in text
    assert active(lab) == node
    ok(lab, node, "conf t ; username olga password olga-pass-1 role network-admin ; end")
    code, text = cli(lab, node, "conf t ; vlan 377 ; end", as_user=OPERATOR_UNIX)
    assert code == 0, text
    acct = rows(as_json(lab, node, "show accounting log"), "TABLE_acct", "ROW_acct")
    olga = [(r["command"], r["result"]) for r in acct if r["user"] == "olga"]
    assert ("configure terminal", "FAILURE") in olga
    assert ("system switchover", "FAILURE") in olga
    assert ("vlan 377", "SUCCESS") in olga
    ok(lab, node, "conf t ; no vlan 377 ; no username olga ; end")


class Pty:
    """The interactive shell on a pseudo-terminal, read with deadlines."""

    def __init__(self, argv: list[str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.environ["TERM"] = "vt100"
            os.execv(argv[0], argv)
        self.seen = ""

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, pattern: str, timeout: float = 15.0) -> str:
        """Wait for ``pattern`` in the screen text (escapes dropped, cursor
        moves right read as spaces); consume up to the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.seen)
            if m:
                text, self.seen = self.seen[: m.end()], self.seen[m.end() :]
                return text
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} in {self.seen[-600:]!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    data = os.read(self.fd, 65536).decode(errors="replace")
                except OSError:
                    data = ""
                if "\x1b[6n" in data:  # cursor position request: answer it
                    self.send("\x1b[1;1R")
                data = FORWARD.sub(lambda f: " " * int(f.group(1) or 1), data)
                self.seen += ANSI.sub("", data)

    def close(self) -> int:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return status


def test_interactive_shell_over_a_pty(lab: Lab) -> None:
    node = active(lab)
    shell = Pty([sys.executable, "-m", "openvsm", "cli", "--node", str(lab.rundir(node))])
    try:
        shell.expect(r"switch#")
        shell.send("conf t\r")
        shell.expect(r"switch\(config\)#")
        shell.send("port-profile vm-net\r")
        shell.expect(r"switch\(config-port-prof\)#")
        shell.send("switchport mode ?")
        out = shell.expect(r"(?m)^  trunk +Set trunking mode[^\n]*\n")
        assert re.search(r"(?m)^  access +Set access mode", out)
        shell.expect(r"switch\(config-port-prof\)# switchport mode")  # the line, redrawn
        shell.send("\x15end\r")  # Ctrl-U clears the line; end leaves configuration mode
        shell.expect(r"switch#")
        shell.send("conf t\r")
        shell.expect(r"switch\(config\)#")
        shell.send("\x1a")  # Ctrl-Z
        shell.expect(r"switch#")
        shell.send("sh hostn\t")
        shell.expect(r"sh hostn\n*\s*ame")  # Tab inserted the rest of the word
        shell.send("\r")
        shell.expect(r"(?m)^switch\n(.|\n)*switch#")
        shell.send("exit\r")
        wait_for(lambda: os.waitpid(shell.pid, os.WNOHANG)[0] != 0, 10, "the shell to end")
        shell.pid = -1
    finally:
        if shell.pid > 0:
            shell.close()
        else:
            os.close(shell.fd)


def test_napalm_style_checkpoint_file_and_rollback(lab: Lab) -> None:
    """The command sequence NAPALM's nxos_ssh driver sends for commit/rollback."""
    node = active(lab)
    before = running_lines(lab, node)
    ok(lab, node, "terminal dont-ask ; checkpoint file bootflash:rollback_config.txt")
    ok(lab, node, "conf t ; vlan 399 ; end")
    assert "vlan 399" not in ok(lab, node, "show file rollback_config.txt")
    out = ok(lab, node, "terminal dont-ask ; rollback running-config file rollback_config.txt")
    assert "completed" in out.lower()
    assert running_lines(lab, node) == before
    ok(lab, node, "delete bootflash:rollback_config.txt ; no terminal dont-ask")
    code, text = cli(lab, node, "show file rollback_config.txt")
    assert code == 1 and "No such file" in text
    facts = ok(lab, node, "show interface")
    assert re.search(r"^mgmt0 is up\nadmin state is up,", facts, re.M)
    assert re.search(r"^Vethernet1 is up$", facts, re.M)
    assert "Default domain" not in ok(lab, node, "show hosts")
