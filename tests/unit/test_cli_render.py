"""Show renderers: golden layouts byte for byte, and the conditional blocks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from openvsm.cli.render import has_renderer, render
from openvsm.cli.views import (
    ModuleView,
    PortProfileRow,
    RedundancyStatus,
    port_profile_row,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"

# The seed's sample: a secondary VSM, active, with the primary as HA standby,
# and the eight colliding secondaries it saw.
SEED_COLLISIONS = [
    ("00:50:56:97:02:3b", "2012-Sep-11 18:59:17"),
    ("00:50:56:97:02:3c", "2012-Sep-11 18:59:17"),
    ("00:50:56:97:02:2f", "2012-Sep-11 18:57:42"),
    ("00:50:56:97:02:35", "2012-Sep-11 18:57:46"),
    ("00:50:56:97:02:29", "2012-Sep-11 18:57:36"),
    ("00:50:56:97:02:30", "2012-Sep-11 18:57:42"),
    ("00:50:56:97:02:36", "2012-Sep-11 18:57:46"),
    ("00:50:56:97:02:2a", "2012-Sep-11 18:57:36"),
]

SEED_STATUS: RedundancyStatus = {
    "rdn_role_admin": "secondary",
    "rdn_role_oper": "secondary",
    "rdn_mode_admin": "HA",
    "rdn_mode_oper": "HA",
    "this_sup": "(sup-2)",
    "this_sup_rdn_state": "Active",
    "this_sup_sup_state": "Active",
    "this_sup_internal_state": "Active with HA standby",
    "other_sup": "(sup-1)",
    "other_sup_rdn_state": "Standby",
    "other_sup_sup_state": "HA standby",
    "other_sup_internal_state": "HA standby",
    "collisions": [{"mac": m, "latest_collision_time": t} for m, t in SEED_COLLISIONS],
    "epoch": 7,
}

SPEC_MODULES: ModuleView = {
    "TABLE_modinfo": {
        "ROW_modinfo": [
            {
                "modinf": 1,
                "ports": 0,
                "modtype": "Virtual Supervisor Module",
                "model": "openvsm",
                "status": "active *",
            },
            {
                "modinf": 2,
                "ports": 0,
                "modtype": "Virtual Supervisor Module",
                "model": "openvsm",
                "status": "ha-standby",
            },
            {
                "modinf": 3,
                "ports": 248,
                "modtype": "Virtual Ethernet Module",
                "model": "NA",
                "status": "ok",
            },
            {
                "modinf": 4,
                "ports": 248,
                "modtype": "Virtual Ethernet Module",
                "model": "NA",
                "status": "ok",
            },
        ]
    },
    "TABLE_modwwninfo": {
        "ROW_modwwninfo": [
            {"modwwn": 1, "sw": "<version>", "hw": "0.0"},
            {"modwwn": 3, "sw": "<version>", "hw": "<host OS / kernel>"},
        ]
    },
    "TABLE_modsrvinfo": {
        "ROW_modsrvinfo": [
            {"modsrv": 1, "srvip": "<mgmt ip>", "srvuuid": "NA", "srvname": "NA"},
            {
                "modsrv": 3,
                "srvip": "<host ip>",
                "srvuuid": "<host uuid>",
                "srvname": "<host name>",
            },
        ]
    },
}


def status(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = copy.deepcopy(dict(SEED_STATUS))
    data.update(changes)
    return data


def test_redundancy_status_golden_is_the_seed_sample() -> None:
    golden = (GOLDEN / "show_system_redundancy_status.txt").read_text()
    assert render("show_redundancy_status", SEED_STATUS) == golden


def test_show_module_golden() -> None:
    golden = (GOLDEN / "show_module.txt").read_text()
    assert render("show_module", SPEC_MODULES) == golden


def test_no_warning_block_without_collisions() -> None:
    text = render("show_redundancy_status", status(collisions=[]))
    assert "WARNING" not in text
    assert "NOTE" not in text
    assert text.endswith("      Internal state:   HA standby\n")


def test_warning_names_this_sup_and_note_the_other() -> None:
    data = status(
        rdn_role_admin="primary",
        rdn_role_oper="primary",
        this_sup="(sup-1)",
        other_sup="(sup-2)",
        collisions=[{"mac": "00:50:56:97:02:3b", "latest_collision_time": "2012-Sep-11 18:59:17"}],
    )
    text = render("show_redundancy_status", data)
    assert "WARNING! Conflicting sup-1(s) detected in same domain\n" in text
    assert "This supervisor (sup-1)\n" in text
    assert text.endswith(
        "NOTE: Please run the same command on sup-2 to check for conflicting(if any)"
        " sup-2(s) in the same domain.\n"
    )


def test_overwrite_lines_follow_the_collisions() -> None:
    data = status(
        overwrites=[
            {
                "old_mac": "00:50:56:97:02:2a",
                "new_mac": "00:50:56:97:02:40",
                "time": "2012-Sep-11 19:01:02",
            },
            "Overwritten: 00:50:56:97:02:29 by 00:50:56:97:02:41 at 2012-Sep-11 19:01:03",
        ]
    )
    lines = render("show_redundancy_status", data).splitlines()
    last_mac = lines.index("00:50:56:97:02:2a      2012-Sep-11 18:57:36")
    assert lines[last_mac + 1 : last_mac + 4] == [
        "Overwritten: 00:50:56:97:02:2a by 00:50:56:97:02:40 at 2012-Sep-11 19:01:02",
        "Overwritten: 00:50:56:97:02:29 by 00:50:56:97:02:41 at 2012-Sep-11 19:01:03",
        "",
    ]
    assert lines[last_mac + 4].startswith("NOTE: ")


def test_heard_collisions_of_the_other_role_have_their_own_block() -> None:
    """A sup-1 heard on this sup-2 (unknown MAC or duplicate boot), relayed to sup-1."""
    heard = [{"mac": "02:aa:00:00:00:99", "latest_collision_time": "2012-Sep-11 19:00:01"}]
    data = status(
        collisions=[],
        peer_collisions=heard,
        peer_overwrites=[
            "Overwritten: 02:aa:00:00:00:01 by 02:aa:00:00:00:99 at 2012-Sep-11 19:00:01"
        ],
    )
    text = render("show_redundancy_status", data)
    assert "WARNING! Conflicting sup-2(s)" not in text
    tail = text.split("      Internal state:   HA standby\n", 1)[1]
    assert tail == (
        "\n"
        "WARNING! Conflicting sup-1(s) detected in same domain\n"
        "-----\n"
        "      MAC                Latest Collision Time\n"
        "02:aa:00:00:00:99      2012-Sep-11 19:00:01\n"
        "Overwritten: 02:aa:00:00:00:01 by 02:aa:00:00:00:99 at 2012-Sep-11 19:00:01\n"
        "      (heard by this supervisor, reported to sup-1)\n"
        "\n"
        "NOTE: Please run the same command on sup-1 to check for conflicting(if any) "
        "sup-1(s) in the same domain.\n"
    )
    # Both blocks: the seed's own block first, then the heard one, one NOTE.
    both = render("show_redundancy_status", status(peer_collisions=heard))
    assert both.index("Conflicting sup-2(s)") < both.index("Conflicting sup-1(s)")
    assert both.count("NOTE: ") == 1


def test_overwrites_without_collisions_show_no_warning() -> None:
    data = status(collisions=[], overwrites=["Overwritten: a by b at c"])
    assert "Overwritten" not in render("show_redundancy_status", data)


def test_no_peer_mode_is_none() -> None:
    data = status(
        rdn_role_admin="primary",
        rdn_role_oper="primary",
        rdn_mode_oper="None",
        this_sup="(sup-1)",
        this_sup_internal_state="Active with no standby",
        other_sup="(sup-2)",
        other_sup_rdn_state="Not present",
        other_sup_sup_state=None,
        other_sup_internal_state=None,
        collisions=[],
    )
    text = render("show_redundancy_status", data)
    assert "Redundancy mode\n-----\n      administrative:  HA\n      operational:    None\n" in text
    assert text.endswith("Other supervisor (sup-2)\n-----\n      Redundancy state:  Not present\n")
    # a JSON null mode renders as None too
    assert "operational:    None\n" in render("show_redundancy_status", status(rdn_mode_oper=None))


def test_one_way_inconsistent_state_is_shown() -> None:
    data = status(
        this_sup_internal_state="Inconsistent: peer believes standby",
        other_sup_rdn_state="Not present",
        collisions=[],
    )
    assert "      Internal state:   Inconsistent: peer believes standby\n" in render(
        "show_redundancy_status", data
    )


def test_status_data_is_json_clean() -> None:
    assert json.loads(json.dumps(SEED_STATUS)) == SEED_STATUS


def test_every_show_handler_has_a_renderer() -> None:
    from openvsm.cli.grammar import BUILTIN_HANDLERS, HANDLERS

    missing = {h for h in HANDLERS - BUILTIN_HANDLERS if not has_renderer(h)}
    assert missing == set()


def test_sysmgr_services() -> None:
    text = render(
        "show_sysmgr_services",
        {
            "TABLE_service": {
                "ROW_service": [
                    {
                        "name": "hamgr",
                        "pid": 123,
                        "state": "running",
                        "restarts": 0,
                        "uptime_s": 42,
                        "last_exit": None,
                    },
                    {
                        "name": "cfgmgr",
                        "pid": None,
                        "state": "backoff",
                        "restarts": 3,
                        "uptime_s": None,
                        "last_exit": "killed by SIGKILL",
                    },
                ]
            }
        },
    )
    lines = text.splitlines()
    assert lines[0].split() == ["Service", "PID", "State", "Restarts", "Uptime", "Last", "exit"]
    assert lines[2].split() == ["hamgr", "123", "running", "0", "00:00:42", "-"]
    assert lines[3].split()[:5] == ["cfgmgr", "-", "backoff", "3", "-"]
    assert lines[3].endswith("killed by SIGKILL")


def test_lone_row_as_dict_is_accepted() -> None:
    # NX-OS sends a table of one row as a bare object
    text = render(
        "show_redundancy_trace",
        {"TABLE_trace": {"ROW_trace": {"time": "2012-Sep-11 18:59:17", "event": "peer lost"}}},
    )
    assert text.splitlines()[2] == "2012-Sep-11 18:59:17  peer lost"


def test_redundancy_counters_per_interface() -> None:
    row = {
        "interface": "control",
        "hb_sent": 10,
        "hb_recv": 9,
        "hb_missed": 1,
        "drop_bad_mac": 2,
        "drop_bad_tag": 3,
        "drop_bad_domain": 0,
        "drop_malformed": 4,
        "drop_bad_version": 5,
    }
    mgmt = dict(row, interface="mgmt")
    text = render("show_redundancy_counters", {"TABLE_interface": {"ROW_interface": [row, mgmt]}})
    assert "Interface control\n" in text and "\n\nInterface mgmt\n" in text
    assert "  Heartbeats missed:     1\n" in text
    assert "  Dropped, bad tag:      3\n" in text
    assert "  Dropped, bad version:  5\n" in text


def test_activeactive_logs_empty_and_saved() -> None:
    assert "No accounting logs" in render(
        "show_activeactive_accounting_logs", {"saved_at": None, "TABLE_acct": {"ROW_acct": []}}
    )
    entry = {
        "seq": 12,
        "time": "2012-Sep-11 18:59:17",
        "user": "admin",
        "source": "cli",
        "command": "vlan 10",
    }
    text = render(
        "show_activeactive_remote_accounting_logs",
        {
            "saved_at": "2012-Sep-11 19:00:00",
            "peer": "(sup-1)",
            "TABLE_acct": {"ROW_acct": [entry]},
            "TABLE_discarded": {"ROW_acct": [dict(entry, seq=13, result="DISCARDED")]},
        },
    )
    assert text.startswith("Accounting log of sup-1 saved at 2012-Sep-11 19:00:00")
    assert "2012-Sep-11 18:59:17:seq=12:source=cli:user=admin:cmd=vlan 10 (SUCCESS)\n" in text
    assert "Discarded changes" in text and "(DISCARDED)" in text
    traces = render(
        "show_activeactive_redundancy_traces",
        {
            "saved_at": "2012-Sep-11 19:00:00",
            "TABLE_trace": {"ROW_trace": [{"time": "t1", "event": "split-brain"}]},
        },
    )
    assert "t1    split-brain" in traces
    assert "No redundancy traces" in render(
        "show_activeactive_redundancy_traces", {"saved_at": None, "TABLE_trace": {"ROW_trace": []}}
    )


def test_interface_virtual_and_port_channel() -> None:
    text = render(
        "show_interface_virtual",
        {
            "TABLE_interface": {
                "ROW_interface": [
                    {
                        "interface": "Vethernet1",
                        "module": 3,
                        "owner": "vm-a",
                        "port_profile": "web",
                        "status": "up",
                    }
                ]
            }
        },
    )
    assert text.splitlines()[3].split() == ["Veth1", "vm-a", "3", "web", "up"]
    pc = render(
        "show_port_channel_summary",
        {
            "TABLE_channel": {
                "ROW_channel": [
                    {
                        "module": 3,
                        "group": 1,
                        "port_channel": "port-channel1",
                        "layer": "S",
                        "status": "U",
                        "type": "Eth",
                        "prtcl": "LACP",
                        "TABLE_member": {
                            "ROW_member": [
                                {"port": "Ethernet3/1", "port_status": "P"},
                                {"port": "Ethernet3/2", "port_status": "D"},
                            ]
                        },
                    }
                ]
            }
        },
    )
    assert pc.splitlines()[-1].split() == [
        "3",
        "1",
        "Po1(SU)",
        "Eth",
        "LACP",
        "Eth3/1(P)",
        "Eth3/2(D)",
    ]


def test_lacp_views() -> None:
    neighbor = render(
        "show_lacp_neighbor",
        {
            "TABLE_lacp_neighbor": {
                "ROW_lacp_neighbor": [
                    {
                        "port_channel": "port-channel1",
                        "port": "Ethernet3/1",
                        "partner_system_id": "32768,00-23-04-ee-be-01",
                        "partner_port_number": "0x101",
                        "age_s": 445,
                        "flags": "SA",
                        "partner_port_priority": 32768,
                        "partner_oper_key": "0x8000",
                        "partner_port_state": "0x3d",
                    }
                ]
            }
        },
    )
    assert "port-channel1 neighbors\n" in neighbor
    assert "Eth3/1      32768,00-23-04-ee-be-01" in neighbor
    counters = render(
        "show_lacp_counters",
        {
            "TABLE_lacp_counters": {
                "ROW_lacp_counters": [
                    {
                        "port_channel": "port-channel1",
                        "port": "Ethernet3/1",
                        "lacpdus_sent": 92,
                        "lacpdus_recv": 85,
                        "markers_sent": 0,
                        "markers_recv": 0,
                        "pkts_err": 0,
                    }
                ]
            }
        },
    )
    assert counters.splitlines()[-1].split() == ["Eth3/1", "92", "85", "0", "0", "0"]


def test_port_profile_from_store_body() -> None:
    body = {
        "name": "web",
        "type": "vethernet",
        "mode": "trunk",
        "allowed_vlans": [10, 11, 12, 20],
        "enabled": True,
        "shutdown": False,
        "description": "web tier",
        "max_macs": 4,
        "owner": "openstack",
    }
    row: PortProfileRow = port_profile_row(body, ["Vethernet1"])
    assert row["config_attributes"] == [
        "switchport mode trunk",
        "switchport trunk allowed vlan 10-12,20",
        "switchport port-security maximum 4",
        "no shutdown",
    ]
    text = render("show_port_profile", {"TABLE_port_profile": {"ROW_port_profile": [row]}})
    assert text.startswith("port-profile web\n type: Vethernet\n description: web tier\n")
    assert " status: enabled\n" in text and " owner: openstack\n" in text
    assert text.endswith(" assigned interfaces:\n  Vethernet1\n")


def test_small_views() -> None:
    assert render("show_hostname", {"hostname": "n1kv"}) == "n1kv\n"
    domain = render(
        "show_svs_domain",
        {"domain_id": 100, "control": "127.0.0.1:7001", "mgmt": "127.0.0.1:7002", "state": "ok"},
    )
    assert domain.startswith("SVS domain config:\n  Domain id:             100\n")
    running = render("show_running_config", {"time": "T", "lines": ["hostname n1kv", "vlan 10"]})
    assert running == "\n!Command: show running-config\n!Time: T\n\nhostname n1kv\nvlan 10\n"
    version = render(
        "show_version",
        {
            "sys_ver_str": "0.1.0",
            "host_name": "n1kv",
            "chassis_id": "openvsm Virtual Supervisor Module",
            "kern_uptm_days": 0,
            "kern_uptm_hrs": 1,
            "kern_uptm_mins": 2,
            "kern_uptm_secs": 3,
        },
    )
    assert "  system:    version 0.1.0\n" in version
    assert "Kernel uptime is 0 day(s), 1 hour(s), 2 minute(s), 3 second(s)\n" in version
    assert render("reload", {"message": "reloading"}) == "reloading\n"
    assert render("clear_peer_mac", {"message": ""}) == ""
    assert render("no_such_handler", {"a": 1, "b": None}) == "a: 1\nb: -\n"


def test_hamgr_saved_active_active_forms_render() -> None:
    entry = {
        "time": "2012-Sep-11 18:59:17",
        "user": "admin",
        "command": "vlan 10",
        "result": "SUCCESS",
        "seq": 4,
    }
    logs = render(
        "show_activeactive_accounting_logs",
        {
            "which": "accounting",
            "saved": "2012-Sep-11 19:00:00",
            "winner": "primary",
            "entries": [entry],
            "discarded": [dict(entry, seq=5, command="vlan 11")],
        },
    )
    assert logs.startswith("Accounting log saved at 2012-Sep-11 19:00:00")
    assert "2012-Sep-11 18:59:17:seq=4:user=admin:cmd=vlan 10 (SUCCESS)\n" in logs
    assert "cmd=vlan 11" in logs.split("Discarded changes")[1]
    assert "No accounting logs" in render("show_activeactive_accounting_logs", {"which": "x"})
    traces = render(
        "show_activeactive_remote_redundancy_traces",
        {
            "saved": "2012-Sep-11 19:00:00",
            "from": "(sup-2)",
            "traces": ["2012-Sep-11 18:59:17 peer lost on control", "odd"],
        },
    )
    assert traces.startswith("Redundancy traces of sup-2 saved at")
    assert "2012-Sep-11 18:59:17  peer lost on control\n" in traces


def test_hamgr_counters_table_renders() -> None:
    text = render(
        "show_redundancy_counters",
        {
            "TABLE_counters": {
                "ROW_counters": [
                    {"interface": "control", "hb_sent": 3, "drop_bad_magic": 1, "socket_errors": 0}
                ]
            }
        },
    )
    assert text.splitlines() == [
        "Interface control",
        "  Heartbeats sent:      3",
        "  Dropped, bad magic:   1",
        "  Socket errors:        0",
    ]


def test_svs_neighbors_lists_the_attached_vems() -> None:
    # vemmgr's rows (only ok modules) with the domain cfgmgr adds.
    data = {
        "domain_id": 100,
        "system_mac": "02:00:00:00:00:01",
        "TABLE_neighbor": {
            "ROW_neighbor": [
                {
                    "src_mac": "02:00:00:00:01:03",
                    "type": "VEM",
                    "domain_id": 100,
                    "node_id": 3,
                    "addr": "127.0.0.1:18003",
                    "host_name": "host-1",
                    "last_learnt_s": 0.4,
                },
                {"src_mac": "02:00:00:00:01:0c", "type": "VEM", "node_id": 12},
            ]
        },
    }
    out = render("show_svs_neighbors", data).splitlines()
    assert out[1] == "Active Domain ID: 100" and out[3] == "System MAC: 02:00:00:00:00:01"
    assert out[-2].split() == ["02:00:00:00:01:03", "VEM", "100", "0302", "0.40"]
    assert out[-1].split() == ["02:00:00:00:01:0c", "VEM", "100", "1202", "-"]
