"""A VSM's system MAC belongs to its data directory, not to its config file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from openvsm import identity
from openvsm.config import ConfigError, NodeConfig, derived_mac, node_config_from_dict
from tests.unit.nodedoc import NODE_DOC

DOC: dict[str, Any] = {**NODE_DOC, "node": {"name": "primary", **NODE_DOC["node"]}}


def config(base: Path, mac: str | None = None) -> NodeConfig:
    doc = {**DOC, "node": {**DOC["node"], **({"system_mac": mac} if mac else {})}}
    return node_config_from_dict(doc, base=base)


def is_local_unicast(mac: str) -> bool:
    first = int(mac.split(":")[0], 16)
    return first & 0x02 == 0x02 and first & 0x01 == 0


def test_first_boot_generates_a_random_mac_and_keeps_it(tmp_path: Path) -> None:
    cfg = identity.resolve_identity(config(tmp_path))
    mac = cfg.system_mac
    assert is_local_unicast(mac)
    path = tmp_path / "data" / identity.MAC_FILE
    assert path.read_text() == f"{mac}\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert not list((tmp_path / "data").glob("*.tmp"))
    # Every later resolution (sysmgr, each service, the next boot) reads it back.
    for _ in range(3):
        assert identity.resolve_identity(config(tmp_path)).system_mac == mac
    assert identity.resolve_mac(config(tmp_path))[1] is identity.MacSource.KEPT


def test_the_same_config_in_two_installations_is_two_vsms(tmp_path: Path) -> None:
    """The cloned-VM mistake: the same file contents, another data directory."""
    a = identity.resolve_identity(config(tmp_path / "a")).system_mac
    b = identity.resolve_identity(config(tmp_path / "b")).system_mac
    assert a != b
    assert derived_mac("100/primary") not in (a, b)  # nothing comes from the file


def test_generated_macs_are_locally_administered_unicast() -> None:
    macs = {identity.random_mac() for _ in range(500)}
    assert len(macs) == 500 and all(is_local_unicast(m) for m in macs)


def test_configured_mac_wins_and_is_recorded(tmp_path: Path) -> None:
    generated = identity.resolve_identity(config(tmp_path)).system_mac
    pinned = "02:aa:00:00:00:01"
    cfg = identity.resolve_identity(config(tmp_path, pinned))
    assert cfg.system_mac == pinned
    assert identity.resolve_mac(cfg)[1] is identity.MacSource.CONFIGURED
    # The directory remembers the MAC it last used: removing the pin keeps it.
    assert identity.resolve_identity(config(tmp_path)).system_mac == pinned != generated


def test_a_data_directory_from_before_keeps_its_derived_mac(tmp_path: Path) -> None:
    for state in identity.STATE_FILES:
        base = tmp_path / state
        (base / "data").mkdir(parents=True)
        (base / "data" / state).write_text("{}")
        mac, source = identity.resolve_mac(config(base))
        assert (mac, source) == (derived_mac("100/primary"), identity.MacSource.MIGRATED)
        assert (base / "data" / identity.MAC_FILE).read_text() == f"{mac}\n"
        assert identity.resolve_mac(config(base)) == (mac, identity.MacSource.KEPT)


def test_a_concurrent_first_boot_keeps_the_first_mac(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = identity._write_mac_file(data, "02:00:00:00:00:0a", replace=False)
    second = identity._write_mac_file(data, "02:00:00:00:00:0b", replace=False)
    assert first == second == "02:00:00:00:00:0a"
    assert identity.resolve_identity(config(tmp_path)).system_mac == first


@pytest.mark.parametrize("text", ["", "garbage\n", "01:00:5e:00:00:01\n", "02:00:00:00:00\n"])
def test_an_unreadable_mac_file_stops_the_node(tmp_path: Path, text: str) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / identity.MAC_FILE).write_text(text)
    with pytest.raises(ConfigError, match=r"system-mac.*refusing to start"):
        identity.resolve_identity(config(tmp_path))


def test_a_multicast_pin_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"node\.system_mac: .* multicast"):
        config(tmp_path, "03:00:00:00:00:01")


def test_an_unresolved_config_has_no_mac(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not resolved"):
        _ = config(tmp_path).system_mac
    assert config(tmp_path, "02:aa:00:00:00:01").system_mac == "02:aa:00:00:00:01"


def test_openvsm_vsm_refuses_a_corrupted_mac_file(tmp_path: Path) -> None:
    """From outside: the node does not start with a new identity, exit 2."""
    text = (
        '[node]\ndomain_id = 100\nrole = "primary"\nsecret = "lab-secret-123"\n'
        'data_dir = "data"\nrun_dir = "run"\n'
        '[interfaces.control]\nlocal = "127.0.0.1:0"\n'
        '[interfaces.mgmt]\nlocal = "127.0.0.1:0"\n'
        '[vem]\nlisten = "127.0.0.1:0"\n'
    )
    (tmp_path / "node.toml").write_text(text)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / identity.MAC_FILE).write_text("not a mac\n")
    out = subprocess.run(
        [sys.executable, "-m", "openvsm", "vsm", "--config", str(tmp_path / "node.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "system-mac" in out.stderr and "refusing to start" in out.stderr
