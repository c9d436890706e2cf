"""Accounting text of configuration lines: context for sub-mode commands, no passwords."""

from __future__ import annotations

from typing import Any, cast

from openvsm.cfgmgr.configmode import ConfigExecutor
from openvsm.cfgmgr.configsession import ConfigSession, Mode
from openvsm.store.runningconfig import MemoryView


def _context(cs: ConfigSession, line: str) -> str:
    executor = ConfigExecutor(cast(Any, None))
    return executor._context(cs, line)


def test_passwords_never_reach_the_accounting_log() -> None:
    cs = ConfigSession(MemoryView(), mode=Mode.CONFIG)
    assert _context(cs, "username admin password s3cret role network-admin") == (
        "username admin password ******** role network-admin"
    )
    assert "scrypt" not in _context(cs, "username bob password 5 scrypt$1$2$3$a$b")


def test_sub_mode_lines_carry_their_port_profile() -> None:
    view = MemoryView()
    cs = ConfigSession(view, mode=Mode.CONFIG)
    view.apply(cs.execute("port-profile type vethernet web").ops)
    assert (
        _context(cs, "switchport access vlan 10") == "port-profile web ; switchport access vlan 10"
    )
    assert _context(cs, "vlan 20") == "vlan 20"
