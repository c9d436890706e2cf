"""Observability from the outside (issue 14): what a Prometheus server, an
operator's browser or script and a keepalived-style hook see of a real pair.

Driven as an operator would: ``openvsm lab --dir D --no-shell`` and its
``lab.json`` (REST URLs and credentials, VEM metrics URLs, pgids), HTTP GETs,
``openvsm cli -c "... | json"``, SIGKILL of the active's process group, and
files a notify hook wrote.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from openvsm.lab.common import wait_for
from openvsm.lab.lab import Lab

pytestmark = pytest.mark.integration

START = 60.0
LAB = [sys.executable, "-m", "openvsm", "lab"]
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


@pytest.fixture(autouse=True)
def trust_the_pair_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test points requests at its lab's ``ca`` (lab.json) via this variable."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)


def trust(doc: dict[str, Any]) -> None:
    """HTTPS: trust the pair certificate lab.json names (the same on both nodes)."""
    os.environ["REQUESTS_CA_BUNDLE"] = doc["nodes"][0]["ca"]


def scrape(url: str, auth: tuple[str, str] | None) -> Samples:
    r = requests.get(url, auth=auth, timeout=10)
    assert r.status_code == 200, (url, r.status_code, r.text)
    out: Samples = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get(name, {}).get(tuple(sorted(labels.items())))


def cli_json(rundir: str, command: str) -> Any:
    res = subprocess.run(
        [sys.executable, "-m", "openvsm", "cli", "--node", rundir, "-c", f"{command} | json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


def _kill_leftovers(root: Path) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines():
        pid_s, _, args = line.strip().partition(" ")
        if str(root) in args and "openvsm" in args and int(pid_s) != os.getpid():
            pids.append(int(pid_s))
            try:
                os.kill(int(pid_s), signal.SIGKILL)
            except ProcessLookupError:
                pass
    return pids


@pytest.fixture
def lab_doc(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``openvsm lab --dir D --no-shell --vems 1 --timers fast`` until lab.json exists."""
    root = tmp_path / "lab"
    with (tmp_path / "console.log").open("ab") as log:
        proc = subprocess.Popen(
            [*LAB, "--dir", str(root), "--no-shell", "--vems", "1", "--timers", "fast"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START
        while not (root / "lab.json").exists():
            assert proc.poll() is None, (tmp_path / "console.log").read_text()
            assert time.monotonic() < deadline, "openvsm lab did not write lab.json"
            time.sleep(0.1)
        yield json.loads((root / "lab.json").read_text())
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        leaked = _kill_leftovers(tmp_path)
        assert not leaked, f"processes leaked by the test: {leaked}"


def test_metrics_status_and_machine_readable_history_of_a_lab(lab_doc: dict[str, Any]) -> None:
    auth = (lab_doc["user"], lab_doc["password"])
    trust(lab_doc)
    nodes = {n["name"]: n for n in lab_doc["nodes"]}
    # unauthenticated scrapes are refused like any other REST request
    r = requests.get(nodes["primary"]["rest"] + "/metrics", timeout=10)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers

    def states() -> dict[str, Samples]:
        return {name: scrape(n["rest"] + "/metrics", auth) for name, n in nodes.items()}

    def hot_pair() -> dict[str, Samples] | None:
        got = states()
        roles = sorted(
            s
            for m in got.values()
            for s in ("active", "standby")
            if value(m, "openvsm_redundancy_state", state=s) == 1.0
        )
        hot = all(value(m, "openvsm_sync_state", state="hot") == 1.0 for m in got.values())
        return got if roles == ["active", "standby"] and hot else None

    got = wait_for(hot_pair, 30, "an active and an HA standby in /metrics")
    for name, m in got.items():
        assert value(m, "openvsm_build_info", version="0.1.0", role=name, domain="100") == 1.0
        loss = value(m, "openvsm_heartbeat_loss_interval_seconds")
        assert loss is not None and loss == pytest.approx(0.6)
        count = value(m, "openvsm_heartbeat_gap_seconds_count", interface="control")
        assert count is not None and count > 0, name
        max_gap = value(m, "openvsm_heartbeat_gap_max_seconds", interface="control")
        assert max_gap is not None and 0 < max_gap < loss, name
        assert value(m, "openvsm_redundancy_epoch") == 1.0
        assert value(m, "openvsm_service_up", service="hamgr") == 1.0
    active = next(n for n, m in got.items() if value(m, "openvsm_redundancy_state", state="active"))
    assert value(got[active], "openvsm_modules", status="ok") == 1.0
    assert value(got[active], "openvsm_changes_acknowledged_total")  # the lab's defaults

    # REST requests are counted by endpoint template and code (the 401 above too)
    seg = requests.get(nodes[active]["rest"] + "/api/n1k/network-segment", auth=auth, timeout=10)
    assert seg.status_code == 200
    m = scrape(nodes[active]["rest"] + "/metrics", auth)
    assert (
        value(
            m,
            "openvsm_rest_requests_total",
            endpoint="/api/n1k/network-segment",
            method="GET",
            code="200",
        )
        == 1.0
    )
    if active == "primary":
        assert value(
            m, "openvsm_rest_requests_total", endpoint="/metrics", method="GET", code="401"
        )

    # the VEM agent's own listener (lab.json gives its URL)
    (vem,) = lab_doc["vems"]

    def vem_attached() -> Samples | None:
        got = scrape(vem["metrics"], None)
        attached = value(got, "openvsm_vem_state", state="attached") == 1.0
        return got if attached and value(got, "openvsm_vem_ports", state="forwarding") else None

    vm = wait_for(vem_attached, 20, "the VEM attached and forwarding in its /metrics")
    assert value(vm, "openvsm_vem_headless") == 0.0
    assert value(vm, "openvsm_vem_epoch") == 1.0
    assert value(vm, "openvsm_vem_ports", state="forwarding") == 2.0
    assert list(vm["openvsm_vem_attached_vsm"].values()) == [1.0]

    # /status/node: this node's summary as JSON
    summary = requests.get(nodes[active]["rest"] + "/status/node", auth=auth, timeout=10).json()
    assert summary["state"] == "active" and summary["name"] == active
    assert summary["gaps"]["control"], summary

    # machine-readable history with stable keys
    rundir = nodes[active]["rundir"]
    rows = cli_json(rundir, "show system internal redundancy trace")["TABLE_trace"]["ROW_trace"]
    assert rows and all({"time", "timestamp", "event"} <= set(r) for r in rows)
    acct = cli_json(rundir, "show accounting log")["TABLE_acct"]["ROW_acct"]
    assert acct and all(
        {"seq", "time", "timestamp", "user", "command", "result"} <= set(r) for r in acct
    )
    lines = (Path(rundir) / "redundancy-trace.jsonl").read_text().splitlines()
    events = [json.loads(x) for x in lines]
    assert any(e["event"].startswith("became active") for e in events)
    assert all(e["node"] == active and e["domain"] == 100 for e in events)


def hook(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_notify_hooks_run_on_settled_transitions_after_a_sigkill(
    make_lab: Callable[..., Lab], tmp_path: Path
) -> None:
    log = tmp_path / "notify.log"
    generic = hook(tmp_path, "notify.sh", f'echo "$1 $2 $3 $4" >> {log}')
    failing = hook(tmp_path, "standby.sh", "exit 7")
    lab = make_lab(
        timers="fast",
        observe_toml=f'notify = "{generic}"\nnotify_standby = "{failing}"\nnotify_timeout_s = 5',
    )
    active = lab.start()
    standby = "secondary" if active == "primary" else "primary"
    lab.write_lab_json()
    doc = json.loads((lab.root / "lab.json").read_text())
    trust(doc)
    nodes = {n["name"]: n for n in doc["nodes"]}

    def lines() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    first = [f"100 {active} ACTIVE 1", f"100 {standby} STANDBY 1"]
    wait_for(lambda: sorted(lines()) == sorted(first), 20, f"hooks {first}, got {lines()}")
    os.killpg(int(nodes[active]["pgid"]), signal.SIGKILL)
    wait_for(lambda: f"100 {standby} ACTIVE 2" in lines(), 20, f"the ACTIVE hook, got {lines()}")
    mine = [x for x in lines() if x.split()[1] == standby]
    assert mine == [f"100 {standby} STANDBY 1", f"100 {standby} ACTIVE 2"]  # in order
    m = scrape(nodes[standby]["rest"] + "/metrics", ("admin", lab.password))
    assert value(m, "openvsm_notify_hook_runs_total", state="STANDBY", result="failed") == 1.0
    assert value(m, "openvsm_notify_hook_runs_total", state="STANDBY", result="ok") == 1.0
    assert value(m, "openvsm_notify_hook_runs_total", state="ACTIVE", result="ok") == 1.0
    assert value(m, "openvsm_redundancy_state", state="active") == 1.0
    assert value(m, "openvsm_redundancy_epoch") == 2.0
    assert value(m, "openvsm_redundancy_role_changes_total") == 2.0  # initializing, standby, active
