"""schemathesis from the served OpenAPI document against a real pair (issue 12 point 7).

Every operation of ``/api/n1k/openapi.json``, positive and negative cases,
over HTTPS (trusting the lab's CA) as the admin and over the plain listener
as a ``network-operator``: never a 5xx, every status and content type is the
document's, 200 bodies match their schemas; the operator's writes are
refused and leave the store as it was; a change acknowledged before the run
is still there after it, on both nodes. ``bench/attack.py`` runs the same
with many more examples.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from openvsm.lab.common import wait_for
from openvsm.lab.lab import Lab
from tests.attacks import cli_text, lab_nodes, md5, rest_schema_fuzz

pytestmark = pytest.mark.integration

OPERATOR = ("watcher", "W4tcher-pass-9")


def test_schemathesis_as_admin_and_operator(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(timers="fast")
    lab.start()
    doc, active, standby = lab_nodes(lab.root / "lab.json")
    admin = (doc["user"], doc["password"])
    cli_text(
        active["rundir"],
        f"configure terminal ; username {OPERATOR[0]} password {OPERATOR[1]}"
        " role network-operator ; vlan 733 ; end",
    )

    got = rest_schema_fuzz(
        active["rest_plain"], OPERATOR, False, examples=3, read_only=True, label="operator"
    )
    assert got.tries > 50 and not got.failures, got.failures
    assert got.statuses["403"] > 0 and not any(s.startswith("5") for s in got.statuses), got

    got = rest_schema_fuzz(active["rest"], admin, active["ca"], examples=3, read_only=False)
    assert got.tries > 50 and not got.failures, got.failures
    assert not any(s.startswith("5") for s in got.statuses), got.statuses

    # The acknowledged change made before is still there, on both nodes.
    for rundir in (active["rundir"], standby["rundir"]):
        wait_for(
            lambda rundir=rundir: re.search(  # type: ignore[misc]
                r"^vlan .*\b733\b", cli_text(rundir, "show running-config"), re.M
            ),
            15.0,
            f"vlan 733 in {rundir}",
        )

    # Both nodes agree on the store the fuzz left behind.
    def same_store() -> bool:
        return md5(active["rest"], admin, active["ca"]) == md5(standby["rest"], admin, active["ca"])

    wait_for(same_store, 15.0, "the standby's md5 equal to the active's")
