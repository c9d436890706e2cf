"""The VEM scenario table (tests/vem_scenarios.py) on the ``memory`` backend.

The same table runs on the ``ovs`` backend in tests/netns/test_vem_scenarios.py.
"""

from __future__ import annotations

import pytest

from openvsm.vem.memory import MemoryBackend
from tests.vem_scenarios import SCENARIOS, Scenario


@pytest.fixture(params=SCENARIOS, ids=[s.name for s in SCENARIOS])
def scenario(request: pytest.FixtureRequest) -> Scenario:
    result: Scenario = request.param
    return result


def test_scenario(scenario: Scenario) -> None:
    backend = MemoryBackend(scenario.devices())
    backend.start()
    desired, config_errors = scenario.desired()
    scenario.check_errors(config_errors + backend.apply(desired))
    for probe, expected in scenario.frames:
        assert backend.trace(probe) == expected, probe
    for name, up in scenario.admin_up.items():
        assert backend.admin_up(name) is up, name
    for number, members in scenario.bundles.items():
        assert backend.bundle(number) == members, number
    changes = backend.changes
    backend.apply(desired)
    assert backend.changes == changes  # converged: a second apply changes nothing


def test_the_table_covers_every_vem_feature() -> None:
    names = {s.name for s in SCENARIOS}
    assert {"access", "trunk", "vxlan", "port-channel", "shut", "port-security"} <= names
    assert len(names) == len(SCENARIOS)
