"""The campaign's pure parts: its schedule (old seeds keep their faults), the
settle rule, copied configs, and reading decisions from redundancy traces."""

from __future__ import annotations

import dataclasses
import json
import random
import tomllib
from pathlib import Path

import pytest

from openvsm.config import node_config_from_dict
from openvsm.lab import chaos
from openvsm.lab.chaos import (
    BASE_KINDS,
    EXTRA_KINDS,
    KINDS,
    Fault,
    Settle,
    copied_config,
    lab_ports,
    random_mac,
    schedule,
)
from openvsm.lab.lab import Lab
from openvsm.lab.sampler import TraceReader, module_statuses, own_state


def plain(faults: list[Fault]) -> list[Fault]:
    return [dataclasses.replace(f, index=0, base_index=0) for f in faults]


def test_added_kinds_keep_the_faults_of_old_seeds() -> None:
    for seed in (6005, 20251125, 1000):
        old = schedule(seed, 300, BASE_KINDS)
        new = schedule(seed, 420, KINDS)
        base = [f for f in new if f.base_index]
        assert plain(base[:300]) == plain(old)
        assert [f.base_index for f in base[:300]] == list(range(1, 301))
        added = [f for f in new if not f.base_index]
        assert {f.kind for f in added} == set(EXTRA_KINDS)
        assert [f.index for f in new] == list(range(1, 421))
    assert schedule(7, 50) == schedule(7, 50)
    assert schedule(7, 50) != schedule(8, 50)
    only = schedule(7, 20, ("quick_heal_split",))
    assert {f.kind for f in only} == {"quick_heal_split"}
    assert all(0.2 <= f.duration <= 1.2 for f in only)


def test_settle_waits_for_the_quiet_point_and_an_unbroken_run() -> None:
    rule = Settle.after(10.0, max_loss=0.6, heartbeat=0.1)  # quiet from 10.8
    assert not rule.sample(10.5, True)  # healthy right after a 0.5 s cut
    assert not rule.sample(10.6, False)  # the standby's loss timer fired
    assert rule.since is None
    assert not rule.sample(10.9, True)
    assert not rule.sample(11.0, True)
    assert rule.sample(11.15, True)
    assert rule.since == 10.9
    long = Settle.after(0.0, max_loss=0.6, heartbeat=0.1)
    assert not long.sample(5.0, True) and long.sample(5.2, True)


def test_copied_config_is_a_new_installation_with_a_pinned_mac(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = Lab(tmp_path / "lab", timers="fast", proxy=True, rest=False)
    src, peer = lab.nodes["secondary"], lab.nodes["primary"]
    mac = random_mac(random.Random(3))
    assert int(mac.split(":")[0], 16) & 0x03 == 0x02  # locally administered, unicast
    text = copied_config(src.config.read_text(), mac, peer.control, peer.mgmt)
    copy = tmp_path / "copy" / "node.toml"
    copy.parent.mkdir()
    copy.write_text(text)
    cfg = node_config_from_dict(tomllib.loads(text), copy.parent)
    orig = node_config_from_dict(tomllib.loads(src.config.read_text()), src.dir)
    assert cfg.system_mac == mac and cfg.role == orig.role and cfg.domain_id == orig.domain_id
    assert cfg.data_dir != orig.data_dir and cfg.run_dir != orig.run_dir
    assert cfg.control.local.addr != orig.control.local.addr
    assert cfg.mgmt.local.addr != orig.mgmt.local.addr
    assert cfg.vem_listen.addr != orig.vem_listen.addr
    assert cfg.control.peer is not None and cfg.control.peer.addr == peer.control
    assert cfg.mgmt.peer is not None and cfg.mgmt.peer.addr == peer.mgmt
    again = copied_config(text, "02:00:00:00:00:09", peer.control, peer.mgmt)
    assert again.count("system_mac") == 1 and '"02:00:00:00:00:09"' in again
    # Never a port of the lab's own nodes, even one that is free at the moment
    # (its service down): the copy would take it from the real node.
    own = lab_ports(src.config.read_text(), peer.config.read_text())
    assert {src.vem[1], src.control[1], peer.vem[1]} <= own
    offers = iter([src.vem[1], src.control[1], *range(41000, 41100)])
    monkeypatch.setattr(chaos, "free_port", lambda host: next(offers))  # the OS offers those
    avoided = copied_config(src.config.read_text(), mac, peer.control, peer.mgmt, set(own))
    assert not (lab_ports(avoided) - {peer.control[1], peer.mgmt[1]}) & own


def test_module_statuses_reads_show_module_json() -> None:
    data = {
        "TABLE_modinfo": {
            "ROW_modinfo": [
                {"modinf": 1, "modtype": "Virtual Supervisor Module", "status": "active *"},
                {"modinf": 3, "modtype": "Virtual Ethernet Module", "status": "ok"},
                {"modinf": 4, "modtype": "Virtual Ethernet Module", "status": "powered-up"},
            ]
        },
        "TABLE_modsrvinfo": {
            "ROW_modsrvinfo": [
                {"modsrv": 3, "srvname": "host-1"},
                {"modsrv": 4, "srvname": "host-2"},
            ]
        },
    }
    assert module_statuses(data) == {"host-1": "ok", "host-2": "powered-up"}
    assert module_statuses("garbage") == {}
    assert own_state(data) == "active"
    reloading = {
        "TABLE_modinfo": {
            "ROW_modinfo": [
                {"modinf": 1, "modtype": "Virtual Supervisor Module", "status": "active"},
                {"modinf": 2, "modtype": "Virtual Supervisor Module", "status": "initializing *"},
            ]
        }
    }
    assert own_state(reloading) == "initializing"
    assert own_state("garbage") is None


def test_trace_reader_yields_each_decision_once_on_the_campaign_clock(tmp_path: Path) -> None:
    paths = {n: tmp_path / f"{n}.log" for n in ("primary", "secondary")}
    offsets = {"primary": 0.0, "secondary": 3600.0}

    def write(node: str, *lines: tuple[float, str]) -> None:
        with paths[node].open("a") as fh:
            for t, text in lines:
                fh.write(json.dumps([t, text]) + "\n")

    write("primary", (100.0, "became active (epoch 1): no active supervisor found"))
    write(
        "secondary",
        (3600.0 + 200.0, "became active (epoch 2): no heartbeat request ..."),
        (
            3600.0 + 202.0,
            "split-brain resolution: this secondary stays active, epoch 3 "
            "(last configuration time primary 1.000, secondary 2.000)",
        ),
        (3600.0 + 202.0, "split-brain resolution: this supervisor stays active (...)"),
    )
    reader = TraceReader(paths, offset=lambda n: offsets[n])
    [d] = reader.decisions()
    assert (d.winner, d.loser, d.t, d.split_start) == ("secondary", "primary", 202.0, 200.0)
    assert d.reason.startswith("last configuration time")
    assert d.last_active == {"secondary": 3800.0, "primary": 100.0}  # each node's own clock
    assert reader.decisions() == []  # read once
    with paths["primary"].open("a") as fh:
        fh.write('[300.0, "split-brain resolution: this primary stays active, epoch 5 (x)"')
    assert reader.decisions() == []  # a line still being written waits
    with paths["primary"].open("a") as fh:
        fh.write("]\n")
    [d2] = reader.decisions()
    assert (d2.winner, d2.t) == ("primary", 300.0)
