"""Node configuration: defaults, ranges, clear errors naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from openvsm.config import ConfigError, load_node_config, node_config_from_dict
from openvsm.modules.vemmgr import Vemmgr
from tests.unit.nodedoc import NODE_DOC

BASE: dict[str, Any] = NODE_DOC


def with_(path: str, value: Any) -> dict[str, Any]:
    import copy

    doc = copy.deepcopy(BASE)
    keys = path.split(".")
    cur = doc
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
    cur[keys[-1]] = value
    return doc


def test_seed_defaults() -> None:
    cfg = node_config_from_dict(BASE, base=Path("/tmp"))
    assert cfg.timers.heartbeat_interval == 1.0
    assert cfg.timers.max_loss_interval == 15.0
    assert cfg.timers.degraded_after == 7.5
    assert cfg.sup_number == 1 and cfg.peer_role == "secondary"
    assert cfg.control.peer is not None and cfg.control.peer.port == 17101


def test_vem_timers_of_the_node_are_typed_fields(tmp_path: Path) -> None:
    # [vem] heartbeat_interval_ms / loss_ms: vemmgr's timers, else [timers]'.
    plain = node_config_from_dict(BASE)
    assert plain.vem_heartbeat_interval is None and plain.vem_loss_time is None
    doc = with_("vem.loss_ms", 2500)
    doc["vem"]["heartbeat_interval_ms"] = 250
    cfg = node_config_from_dict(doc, base=tmp_path)
    assert cfg.vem_loss_time == 2.5 and cfg.vem_heartbeat_interval == 0.25
    table = Vemmgr(cfg).table
    assert (table.loss_time, table.heartbeat_interval) == (2.5, 0.25)


def test_fast_profile_allowed() -> None:
    doc = with_("timers", {"heartbeat_interval_ms": 100, "max_loss_interval_ms": 600})
    cfg = node_config_from_dict(doc)
    assert cfg.timers.heartbeat_interval == 0.1 and cfg.timers.max_loss_interval == 0.6


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        ("node.domain_id", 0, "node.domain_id: 0 is out of range (allowed 1-4095)"),
        ("node.domain_id", 4096, "allowed 1-4095"),
        ("node.role", "tertiary", "node.role"),
        ("node.secret", "short", "node.secret"),
        (
            "timers",
            {"max_loss_interval_ms": 5000},
            "timers.max_loss_interval_ms: 5000 is out of range (allowed 6000-30000)",
        ),
        ("timers", {"max_loss_interval_ms": 31000}, "allowed 6000-30000"),
        (
            "timers",
            {"heartbeat_interval_ms": 100, "max_loss_interval_ms": 500},
            "allowed 600-30000",
        ),
        ("timers", {"heartbeat_interval_ms": 50}, "timers.heartbeat_interval_ms"),
        ("interfaces.control.local", "nowhere", "interfaces.control.local"),
        ("interfaces.control.local", "127.0.0.1:99999", "out of range"),
        ("interfaces.mgmt.transport", "carrier-pigeon", "interfaces.mgmt.transport"),
        ("node.system_mac", "zz:00", "node.system_mac"),
        ("vem.module_limit", 0, "vem.module_limit"),
        ("vem.loss_ms", 50, "vem.loss_ms: 50 is out of range (allowed 100-600000)"),
        ("vem.loss_ms", "15s", "vem.loss_ms"),
        ("vem.heartbeat_interval_ms", 20000, "vem.heartbeat_interval_ms"),
    ],
)
def test_invalid_values_name_the_key(path: str, value: Any, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        node_config_from_dict(with_(path, value))
    assert needle in str(err.value)


def test_missing_section() -> None:
    doc = dict(BASE)
    del doc["interfaces"]
    with pytest.raises(ConfigError, match=r"interfaces\.control: required section is missing"):
        node_config_from_dict(doc)


def test_bad_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[node\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_node_config(path)


def test_daemon_exits_2_on_bad_config_and_starts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        '[node]\ndomain_id = 9000\nrole = "primary"\nsecret = "lab-secret-123"\n'
        'data_dir = "data"\nrun_dir = "run"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "openvsm", "vsm", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "node.domain_id: 9000 is out of range (allowed 1-4095)" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_rest_https_needs_tls_files(tmp_path: Path) -> None:
    import copy

    doc = copy.deepcopy(BASE)
    doc["rest"] = {"listen": "127.0.0.1:8443"}
    with pytest.raises(ConfigError, match=r"rest.listen: HTTPS needs \[tls\]"):
        node_config_from_dict(doc, base=tmp_path)
    doc["tls"] = {"cert": "pair.crt", "key": "pair.key"}
    with pytest.raises(ConfigError, match=r"tls\.cert: .* is not a readable file"):
        node_config_from_dict(doc, base=tmp_path)
    (tmp_path / "pair.crt").write_text("x")
    (tmp_path / "pair.key").write_text("x")
    doc["rest"]["plain_listen"] = "127.0.0.1:8080"
    cfg = node_config_from_dict(doc, base=tmp_path)
    assert cfg.tls_cert == tmp_path / "pair.crt" and cfg.tls_key == tmp_path / "pair.key"
    assert cfg.rest_listen is not None and cfg.rest_listen.port == 8443
    assert cfg.rest_plain_listen is not None and cfg.rest_plain_listen.port == 8080


def test_plain_rest_alone_needs_no_tls(tmp_path: Path) -> None:
    import copy

    doc = copy.deepcopy(BASE)
    doc["rest"] = {"plain_listen": "127.0.0.1:8080"}
    cfg = node_config_from_dict(doc, base=tmp_path)
    assert cfg.rest_listen is None and cfg.tls_cert is None


def test_secret_file(tmp_path: Path) -> None:
    from openvsm.config import read_secret_file

    key = tmp_path / "k"
    key.write_text("short\n")
    with pytest.raises(ConfigError, match="at least 8"):
        read_secret_file(key, "--secret-file")
    key.write_text("long-enough-key\n")
    assert read_secret_file(key, "--secret-file") == "long-enough-key"
    with pytest.raises(ConfigError, match="cannot read"):
        read_secret_file(tmp_path / "missing", "--secret-file")
